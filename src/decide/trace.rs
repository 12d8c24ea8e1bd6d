//! What the pipeline did for one request, step by step, when asked (the CLI's `explain`): the
//! same decision the filter makes, with its reasons spelled out. Off in the filter: a step's
//! detail is only built when a trace is being kept.

use std::cell::RefCell;

use crate::decide::decision::DenyReason;
use crate::token::claims::{TimeClaims, TimePolicy};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Pass,
    Fail(DenyReason),
    /// Not checked (nothing configured for it, or nothing to check it with).
    NotChecked,
    /// The request would pause for a fetch (or an IdP's answer) and be decided again.
    Waits,
}

impl Mark {
    pub fn of<T>(result: &Result<T, DenyReason>) -> Self {
        match result {
            Ok(_) => Mark::Pass,
            Err(reason) => Mark::Fail(*reason),
        }
    }
}

/// What a step looked at, for a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Text(String),
    /// The time claims and the provider's time policy (the CLI renders dates against `now`).
    Times {
        times: TimeClaims,
        policy: TimePolicy,
    },
}

/// One step of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub mark: Mark,
    pub detail: Detail,
}

/// The steps of one decision, when kept.
#[derive(Debug, Default)]
pub struct Trace {
    steps: RefCell<Vec<Step>>,
}

impl Trace {
    pub fn note(&self, name: &'static str, mark: Mark, detail: Detail) {
        self.steps.borrow_mut().push(Step { name, mark, detail });
    }

    pub fn into_steps(self) -> Vec<Step> {
        self.steps.into_inner()
    }
}

/// Where a pipeline writes its steps: nowhere unless a trace is kept.
#[derive(Clone, Copy, Default)]
pub struct Tracer<'t> {
    trace: Option<&'t Trace>,
}

impl<'t> Tracer<'t> {
    pub fn into(trace: &'t Trace) -> Self {
        Tracer { trace: Some(trace) }
    }

    /// Notes a step; `detail` is only called when a trace is kept.
    pub fn step(&self, name: &'static str, mark: Mark, detail: impl FnOnce() -> Detail) {
        if let Some(trace) = self.trace {
            trace.note(name, mark, detail());
        }
    }

    /// Notes a check's result with a text detail, and hands the result on.
    pub fn check<T>(
        &self,
        name: &'static str,
        result: Result<T, DenyReason>,
        detail: impl FnOnce() -> String,
    ) -> Result<T, DenyReason> {
        self.step(name, Mark::of(&result), || Detail::Text(detail()));
        result
    }
}
