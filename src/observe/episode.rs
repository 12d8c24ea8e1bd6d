//! A remote source that keeps failing is logged once per episode: its first failure, then one
//! line when it works again (with how many attempts failed in between). The counters count
//! every failure; the log does not repeat itself every few seconds during an outage.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Episode {
    failures: u64,
}

impl Episode {
    /// A failed attempt: `true` when it starts an episode (write the line).
    pub fn failed(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.failures == 1
    }

    /// A good attempt: `Some(n)` when it ends an episode of `n` failed attempts.
    pub fn recovered(&mut self) -> Option<u64> {
        (self.failures > 0).then(|| std::mem::take(&mut self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_to_start_an_episode_and_one_to_end_it() {
        let mut episode = Episode::default();
        assert_eq!(episode.recovered(), None, "nothing to report while healthy");
        assert!(episode.failed());
        assert!(!episode.failed());
        assert!(!episode.failed());
        assert_eq!(episode.recovered(), Some(3));
        assert_eq!(episode.recovered(), None);
        assert!(episode.failed(), "the next outage is a new episode");
    }
}
