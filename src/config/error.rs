//! A configuration that could not be used, naming the key: what every compile step returns.

use std::fmt;

/// A configuration that could not be used, with the path of the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() || self.key == "." {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(f, "invalid configuration at {}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}
