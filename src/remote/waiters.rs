//! Requests paused until something a remote source brings arrives (keys, a list, an answer),
//! sans I/O: who waits for what and until when, which of them are due when something arrives
//! or time passes, and whether a request may wait once more. The shell pauses, resumes and
//! decides again.

/// A request waits at most this many times in a row (keys, then a status or revocation list).
pub const MAX_WAITS: u8 = 3;

/// One paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter<T> {
    /// The host's id of the request's stream.
    pub context: u32,
    pub target: T,
    /// Answered with what there is from then on.
    pub deadline: i64,
    /// Waits so far, this one included.
    pub waits: u8,
}

impl<T> Waiter<T> {
    /// Whether, decided again at `now`, it may pause once more for something else.
    pub fn may_wait_again(&self, now: i64) -> bool {
        self.waits < MAX_WAITS && now < self.deadline
    }
}

/// Every paused request of one worker.
#[derive(Debug)]
pub struct Waiters<T> {
    waiting: Vec<Waiter<T>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            waiting: Vec::new(),
        }
    }
}

impl<T: PartialEq> Waiters<T> {
    pub fn push(&mut self, waiter: Waiter<T>) {
        self.waiting.push(waiter);
    }

    /// Takes out the requests whose target is among `ready`, or whose deadline has come.
    pub fn take_due(&mut self, ready: &[T], now: i64) -> Vec<Waiter<T>> {
        let (due, keep) = self
            .waiting
            .drain(..)
            .partition(|w| ready.contains(&w.target) || now >= w.deadline);
        self.waiting = keep;
        due
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(context: u32, target: char, deadline: i64, waits: u8) -> Waiter<char> {
        Waiter {
            context,
            target,
            deadline,
            waits,
        }
    }

    #[test]
    fn what_arrived_or_timed_out_is_due_the_rest_waits() {
        let mut waiters = Waiters::default();
        waiters.push(waiter(1, 'k', 100, 1));
        waiters.push(waiter(2, 'l', 100, 1));
        waiters.push(waiter(3, 'k', 50, 1));
        assert_eq!(waiters.take_due(&['x'], 10), vec![]);
        let due = waiters.take_due(&['k'], 10);
        assert_eq!(due.iter().map(|w| w.context).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(waiters.len(), 1);
        assert_eq!(waiters.take_due(&[], 99), vec![]);
        assert_eq!(waiters.take_due(&[], 100).len(), 1, "its deadline came");
        assert!(waiters.is_empty());
    }

    #[test]
    fn a_request_waits_a_bounded_number_of_times_and_never_past_its_deadline() {
        assert!(waiter(1, 'k', 100, 1).may_wait_again(10));
        assert!(!waiter(1, 'k', 100, MAX_WAITS).may_wait_again(10));
        assert!(!waiter(1, 'k', 100, 1).may_wait_again(100));
    }
}
