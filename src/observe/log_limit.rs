//! Bounds how many denial lines a worker writes per second: under a flood of bad tokens the
//! log must not become the bottleneck (or fill the disk). What is dropped is counted and
//! reported once the next second begins; the counters still see every denial.

/// Lines per second per worker VM.
pub const DENIAL_LINES_PER_SECOND: u32 = 20;

#[derive(Debug)]
pub struct LogLimiter {
    second: i64,
    written: u32,
    suppressed: u64,
    /// Lines per second; 0 = no limit.
    limit: u32,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::with_limit(DENIAL_LINES_PER_SECOND)
    }
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPermit {
    pub write: bool,
    /// Lines dropped in earlier seconds, to report before this one (0: nothing to report).
    pub report_suppressed: u64,
}

impl LogLimiter {
    pub fn with_limit(limit: u32) -> Self {
        LogLimiter {
            second: 0,
            written: 0,
            suppressed: 0,
            limit,
        }
    }

    /// Whether a line at `now` would be written (nothing is counted).
    pub fn has_room(&self, now: i64) -> bool {
        self.limit == 0 || now != self.second || self.written < self.limit
    }

    pub fn permit(&mut self, now: i64) -> LogPermit {
        let mut report_suppressed = 0;
        if now != self.second {
            self.second = now;
            self.written = 0;
            report_suppressed = std::mem::take(&mut self.suppressed);
        }
        let write = self.limit == 0 || self.written < self.limit;
        if write {
            self.written += 1;
        } else {
            self.suppressed += 1;
        }
        LogPermit {
            write,
            report_suppressed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_up_to_the_limit_then_reports_what_it_dropped() {
        let mut limiter = LogLimiter::default();
        for _ in 0..DENIAL_LINES_PER_SECOND {
            assert!(limiter.has_room(100));
            assert!(limiter.permit(100).write);
        }
        assert!(!limiter.has_room(100));
        assert!(limiter.has_room(101));
        for _ in 0..5 {
            assert_eq!(
                limiter.permit(100),
                LogPermit {
                    write: false,
                    report_suppressed: 0
                }
            );
        }
        assert_eq!(
            limiter.permit(101),
            LogPermit {
                write: true,
                report_suppressed: 5
            }
        );
        assert_eq!(limiter.permit(101).report_suppressed, 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let mut limiter = LogLimiter::with_limit(0);
        assert!((0..10_000).all(|_| limiter.permit(100).write));
    }
}
