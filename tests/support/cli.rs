//! Runs the operator CLI (`bearer-guard`, built by cargo for tests with `--features cli`) as
//! a process: its exit code, stdout and stderr.

use std::io::Write;
use std::process::{Command, Stdio};

/// The CLI binary; only tests built with `--features cli` (`required-features` in
/// Cargo.toml) have it.
pub fn bin() -> &'static str {
    match option_env!("CARGO_BIN_EXE_bearer-guard") {
        Some(path) => path,
        None => panic!("no CLI binary: build this test with --features cli"),
    }
}

pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

pub fn run_with_input(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap(),
        out: String::from_utf8(output.stdout).unwrap(),
        err: String::from_utf8(output.stderr).unwrap(),
    }
}

pub fn run(args: &[&str]) -> Run {
    run_with_input(args, "")
}
