//! The operator CLI (`bearer-guard`, feature `cli`): a thin host shell over the filter's core.
//! `check-config` runs the filter's own config parser, `explain` the filter's own decision,
//! `revoke` edits a list (or etcd's keys) with the filter's parser as the judge, `revocations`
//! lists etcd's; `mint` and `jwks` use the demo keys. Nothing here is in the wasm module.

pub mod args;
pub mod check;
pub mod etcd;
pub mod explain;
pub mod hint;
pub mod mint;
pub mod revoke;
pub mod schema;
pub mod sources;
pub mod time;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use args::Command;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Why a command could not do its work.
#[derive(Debug)]
pub enum CliError {
    /// Wrong arguments.
    Usage(String),
    /// A file or value that cannot be used.
    Input(String),
    /// The report could not be written (e.g. a closed pipe).
    Output(io::Error),
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(why) | CliError::Input(why) => f.write_str(why),
            CliError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

/// A command's verdict: exit 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Valid, allowed, done.
    Success,
    /// Invalid config, a refused token: reported on the way.
    Failure,
}

pub fn main() -> ExitCode {
    let code = run(
        std::env::args_os(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// Runs one command line (the program's name first); returns the exit status.
pub fn run<I, T>(words: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (name, cli) = match args::parse(words) {
        Ok(parsed) => parsed,
        Err(e) => return parse_failure(e, out, err),
    };
    let result = match cli.command {
        Command::CheckConfig(args) => check::run(&args.files, out, err),
        Command::Explain(args) => explain::run(&args, out, err),
        Command::Mint(args) => mint::run(&args, out),
        Command::Jwks(args) => mint::jwks(&args, out),
        Command::Revoke(args) => revoke::run(&args, out),
        Command::Revocations(args) => revoke::list_etcd(&args, out),
        Command::TokenId(args) => print_token_id(&args.token, out),
        Command::Schema => schema::run(out),
        Command::Completions(args) => print_completions(args.shell, out),
        Command::Version => writeln!(out, "bearer-guard {}", env!("CARGO_PKG_VERSION"))
            .map(|()| Outcome::Success)
            .map_err(CliError::from),
    };
    // Best effort: there is nowhere else to report a failed write.
    let _ = match result {
        Ok(Outcome::Success) => return 0,
        Ok(Outcome::Failure) => return 1,
        Err(CliError::Usage(why)) => writeln!(
            err,
            "bearer-guard {name}: {why} (`bearer-guard {name} --help` lists the options)"
        ),
        Err(e) => writeln!(err, "bearer-guard {name}: {e}"),
    };
    2
}

/// clap's word on a command line it cannot parse, or the help or version asked for: on
/// standard output for those (exit 0), else on standard error (exit 2).
fn parse_failure(mut e: clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    redact_operand(&mut e);
    let text = e.render().to_string();
    // Best effort, as in `run`.
    let _ = if e.use_stderr() {
        err.write_all(text.as_bytes())
    } else {
        out.write_all(text.as_bytes())
    };
    u8::try_from(e.exit_code()).unwrap_or(2)
}

/// clap quotes a word it did not expect: an operand where none belongs (`revoke --list f
/// TOKEN`), a value for a switch (`--remove=TOKEN`). Either may be a token, so the error gives
/// its length instead. Option names (`--tokn`, `-x`) stay: they are no secret.
fn redact_operand(e: &mut clap::Error) {
    let context = match e.kind() {
        ErrorKind::UnknownArgument => ContextKind::InvalidArg,
        ErrorKind::TooManyValues => ContextKind::InvalidValue,
        _ => return,
    };
    let length = match e.get(context) {
        Some(ContextValue::String(word)) if !word.starts_with('-') => word.chars().count(),
        _ => return,
    };
    e.insert(
        context,
        ContextValue::String(format!("<{length} characters, not shown>")),
    );
    // Its tips (`use -- WORD`) would quote it again.
    e.remove(ContextKind::Suggested);
    e.remove(ContextKind::SuggestedArg);
}

/// `completions SHELL`: the script, from the same definitions as the parser.
fn print_completions(
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    // Made in memory first: the generator cannot report a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut args::command(), "bearer-guard", &mut script);
    out.write_all(&script)?;
    Ok(Outcome::Success)
}

/// `token-id TOKEN|-`: one line, the identity in hex.
fn print_token_id(operand: &str, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let token = read_token(operand)?;
    writeln!(
        out,
        "{}",
        crate::observe::fingerprint::hex(&crate::token::id::token_id(&token))
    )?;
    Ok(Outcome::Success)
}

/// A file's text, or standard input for `-`.
pub fn read_input(path: &str) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if path == "-" {
        io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| CliError::Input(format!("cannot read {path}: {e}")))?;
    Ok(text)
}

/// A token operand: the token, or standard input for `-` (so it stays out of shell history
/// and process lists).
pub fn read_token(operand: &str) -> Result<String, CliError> {
    let token = if operand == "-" {
        read_input("-")?.trim().to_owned()
    } else {
        operand.trim().to_owned()
    };
    if token.is_empty() {
        return Err(CliError::Usage("the token is empty".to_owned()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_words(words: &[&str]) -> (u8, String, String) {
        let line = std::iter::once("bearer-guard").chain(words.iter().copied());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(line, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn help_for_the_cli_and_each_command_exits_0() {
        let (code, out, _) = run_words(&["--help"]);
        assert_eq!(code, 0);
        for command in COMMANDS {
            assert!(out.contains(&format!("\n  {command} ")), "{command}: {out}");
        }
        let (code, out, _) = run_words(&["mint", "--help"]);
        assert_eq!(code, 0);
        for option in [
            "--alg <ALG>",
            "--lifetime <D>",
            "--no-exp",
            "--claim <NAME=JSON>",
        ] {
            assert!(out.contains(option), "{option}: {out}");
        }
        assert!(out.contains("T: Unix seconds, RFC 3339"), "{out}");
        let (code, out, _) = run_words(&["help", "revoke"]);
        assert_eq!(code, 0);
        assert!(out.contains("--issued-before <T>"), "{out}");
        let (code, out, _) = run_words(&["--version"]);
        assert_eq!(
            (code, out.trim()),
            (0, concat!("bearer-guard ", env!("CARGO_PKG_VERSION")))
        );
        // `version`, as scripts have called it.
        assert_eq!(run_words(&["version"]), run_words(&["--version"]));
    }

    #[test]
    fn usage_errors_exit_2_and_say_what() {
        // No command: the help, on standard error.
        let (code, out, err) = run_words(&[]);
        assert_eq!((code, out.as_str()), (2, ""));
        assert!(err.contains("Usage: bearer-guard <COMMAND>"), "{err}");
        let (code, _, err) = run_words(&["chek-config"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("a similar subcommand exists: 'check-config'"),
            "{err}"
        );
        let (code, _, err) = run_words(&["mint", "--lifetme", "1h"]);
        assert_eq!(code, 2);
        assert!(err.contains("unexpected argument '--lifetme'"), "{err}");
        assert!(
            err.contains("a similar argument exists: '--lifetime'"),
            "{err}"
        );
        let (code, _, err) = run_words(&["mint", "--exp", "soon"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("invalid value 'soon' for '--exp <T>'"),
            "{err}"
        );
        let (code, _, err) =
            run_words(&["revoke", "--etcd", "e", "--clock-skew", "5y", "--jti", "a"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("invalid value '5y' for '--clock-skew <SECONDS>'"),
            "{err}"
        );
        let (code, _, err) = run_words(&["mint", "--now", "1", "--now", "2"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("'--now <T>' cannot be used multiple times"),
            "{err}"
        );
        // Errors of a command's own checks name the command whose help to read.
        let (code, _, err) = run_words(&["revoke", "--etcd", "e", "--prefix", "p", "--jti", "a"]);
        assert_eq!(code, 2);
        assert!(
            err.starts_with("bearer-guard revoke: --prefix must end with /"),
            "{err}"
        );
        assert!(
            err.contains("(`bearer-guard revoke --help` lists the options)"),
            "{err}"
        );
    }

    #[test]
    fn a_word_where_no_operand_belongs_is_not_echoed() {
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzZWNyZXQifQ.c2ln";
        let switch_value = format!("--plaintext={token}");
        for words in [
            vec!["mint", token],
            vec!["revoke", "--list", "f", "--jti", "a", token],
            vec!["token-id", "a", token],
            vec!["explain", "--config", "c", &switch_value, "t"],
        ] {
            let (code, out, err) = run_words(&words);
            assert_eq!(code, 2, "{words:?}");
            assert!(!out.contains("c2ln") && !err.contains("c2ln"), "{err}");
            assert!(err.contains("characters, not shown>"), "{err}");
        }
    }

    #[test]
    fn completions_name_every_command() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let (code, out, err) = run_words(&["completions", shell]);
            assert_eq!(code, 0, "{shell}: {err}");
            for command in COMMANDS {
                assert!(out.contains(command), "{shell}: {command}");
            }
            assert!(out.contains("--issued-before"), "{shell}");
        }
        let (code, _, err) = run_words(&["completions", "tcsh"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("[possible values: bash, elvish, fish, powershell, zsh]"),
            "{err}"
        );
    }

    const COMMANDS: [&str; 9] = [
        "check-config",
        "explain",
        "mint",
        "jwks",
        "revoke",
        "revocations",
        "token-id",
        "schema",
        "completions",
    ];
}
