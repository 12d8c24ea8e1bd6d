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

use std::fmt;
use std::io::{self, Read, Write};
use std::process::ExitCode;

pub const USAGE: &str = "\
usage: bearer-guard COMMAND [OPTIONS]

  check-config FILE...
      Check plugin configurations with the filter's own parser: a JSON file, an Envoy
      config (YAML/JSON, the envoy.filters.http.wasm filters' configuration) or Istio
      WasmPlugin manifests (spec.pluginConfig). Errors name the key, with a hint.
  explain --config FILE [--now T] [--method M] [--path P] [--authority HOST]
          [--header 'NAME: VALUE']...
          [--plaintext] [--jwks [PROVIDER=]FILE]... [--revocation-list FILE]
          [--etcd ENDPOINT[,...] [--etcd-user NAME:PASSWORD]] TOKEN
      What the filter decides for TOKEN ('-': read it from standard input): the rule, the
      provider, every check, and the response it would send. The token is never printed.
  mint [--alg RS256|ES256] [--iss S] [--sub S] [--aud A]... [--lifetime D | --exp T | --no-exp]
       [--iat T] [--nbf T] [--now T] [--jti S] [--scope S] [--kid K] [--typ T]
       [--claim NAME=JSON]... [--keys DIR]
      A token signed with the demo keys (envoy/demo-keys, built in; not secret), or with
      DIR's rsa-demo.pem and ec-demo.pem.
  jwks [--keys DIR]
      The demo keys' public JWKS (what envoy/demo.yaml embeds), or DIR's keys'.
  revoke --list FILE [--provider NAME] [--remove] [--exp T] [--jti ID]...
         [--token TOKEN|-]... [--token-sha256 HEX]... [--subject SUB]... [--issued-before T]
      Add (or --remove) entries in a revocation list file, the document the filter polls.
      With --subject, --issued-before is the subjects' cutoff (default: now); without, it is
      the global cutoff. Creates the file; edits a symlink's target; writes atomically, under
      a lock (.FILE.lock beside it) so concurrent runs all land. Running it again with the
      same absolute values changes nothing (relative times and the default cutoff are taken
      from now, so they may move an exp or a cutoff later).
  revoke --etcd ENDPOINT[,ENDPOINT...] [--prefix P] [--issuer ISS] [--clock-skew SECONDS]
         [--user NAME:PASSWORD] [--remove] [--exp T] [--jti ID]... [--token TOKEN|-]...
         [--token-sha256 HEX]... [--subject SUB]... [--issued-before T]
      The same entries as keys in etcd v3 (its JSON gateway on the client port, plain HTTP),
      one per revocation under P (default /bearer-guard/revoked/), under iss/ISS/ with
      --issuer; merged with a key already there as a list merges. An entry with an exp gets
      a lease ending at exp + SECONDS, so etcd deletes it once its token is dead everywhere:
      pass the largest clock_skew_seconds of your providers (default 60, jwt_authn's).
      --remove deletes the keys. Give --list or --etcd; --provider is the list's only.
  revocations --etcd ENDPOINT[,ENDPOINT...] [--prefix P] [--user NAME:PASSWORD]
      What is in etcd under P: a line per entry (issuer, kind, jti / sub / token identity,
      times, lease left), then the keys the filter would skip (by fingerprint), then counts.
      Exit 2 when etcd cannot be reached. Never prints a token.
  token-id TOKEN|-
      The token identity in hex: SHA-256 of a JWS's signing input (header.payload), of the
      whole token otherwise. What `token_sha256` revocation entries name (the same for every
      signature twin of the token); `revoke --token` writes it. The token is never printed.
  schema
      The plugin configuration's JSON Schema.

T: Unix seconds, RFC 3339, 'now', or relative to now: +90s, -2h, +1d. D: 3600, 30m, 1h, 7d.
Exit status: 0 valid / allowed, 1 invalid / denied, 2 usage or input error (or etcd unreachable).
";

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

pub fn main(args: Vec<String>) -> ExitCode {
    let code = run(&args, &mut io::stdout().lock(), &mut io::stderr().lock());
    ExitCode::from(code)
}

/// Runs one command; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let Some((command, rest)) = args.split_first() else {
        // Best effort: there is nowhere else to report a failed write.
        let _ = err.write_all(USAGE.as_bytes());
        return 2;
    };
    let result = match command.as_str() {
        "check-config" => check::run(rest, out, err),
        "explain" => explain::run(rest, out, err),
        "mint" => mint::run(rest, out),
        "jwks" => mint::jwks(rest, out),
        "revoke" => revoke::run(rest, out),
        "revocations" => revoke::list_etcd(rest, out),
        "schema" => schema::run(rest, out),
        "token-id" => print_token_id(rest, out),
        "help" | "--help" | "-h" => out
            .write_all(USAGE.as_bytes())
            .map(|()| Outcome::Success)
            .map_err(CliError::from),
        "--version" | "version" => writeln!(out, "bearer-guard {}", env!("CARGO_PKG_VERSION"))
            .map(|()| Outcome::Success)
            .map_err(CliError::from),
        other => Err(CliError::Usage(match hint::suggest(other, COMMANDS) {
            Some(near) => format!("unknown command {other:?} (did you mean {near}?)"),
            None => format!("unknown command {other:?}"),
        })),
    };
    // Best effort, as above.
    let _ = match result {
        Ok(Outcome::Success) => return 0,
        Ok(Outcome::Failure) => return 1,
        Err(CliError::Usage(why)) => writeln!(
            err,
            "bearer-guard {command}: {why} (`bearer-guard --help` lists the options)"
        ),
        Err(e) => writeln!(err, "bearer-guard {command}: {e}"),
    };
    2
}

const COMMANDS: [&str; 8] = [
    "check-config",
    "explain",
    "mint",
    "jwks",
    "revoke",
    "revocations",
    "schema",
    "token-id",
];

/// `token-id TOKEN|-`: one line, the identity in hex.
fn print_token_id(args: &[String], out: &mut dyn Write) -> Result<Outcome, CliError> {
    let [operand] = args else {
        return Err(CliError::Usage(format!(
            "token-id takes one token (or - for standard input), not {} arguments",
            args.len()
        )));
    };
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
        let args: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn usage_errors_exit_2_with_the_usage() {
        let (code, _, err) = run_words(&[]);
        assert_eq!(code, 2);
        assert!(err.starts_with("usage: bearer-guard"));
        let (code, _, err) = run_words(&["chek-config"]);
        assert_eq!(code, 2);
        assert!(err.contains("did you mean check-config?"), "{err}");
        let (code, out, _) = run_words(&["--help"]);
        assert_eq!((code, out.as_str()), (0, USAGE));
    }
}
