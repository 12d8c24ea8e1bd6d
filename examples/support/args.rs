//! The `--name value` command line of the bench examples (`bench_tokens`, `decision_cost`),
//! each a binary of its own: this file is included by path, not a crate.

pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }

    /// The value after `--name`, if it is given.
    pub fn value(&self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|a| a == name)?;
        self.0.get(at + 1).cloned()
    }

    /// Whether the flag `--name` is given.
    #[allow(dead_code)] // `bench_tokens` has no flags
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}
