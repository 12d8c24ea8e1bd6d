//! The command line (clap derive): every command, its options and their help. The doc
//! comments are the help text (`bearer-guard --help`, `bearer-guard COMMAND --help`), and the
//! completion scripts are made from the same definitions.

use std::ffi::OsString;

use clap::{
    ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum, ValueHint,
};
use clap_complete::Shell;

use super::time::{parse_duration, When};

/// What T and D are, and the exit statuses: below every command's help.
const AFTER_HELP: &str = "\
T: Unix seconds, RFC 3339, 'now', or relative to now: +90s, -2h, +1d. D: 3600, 30m, 1h, 7d.
Exit status: 0 valid / allowed, 1 invalid / denied, 2 usage or input error (or etcd unreachable).";

/// Operator CLI of bearer-guard, the Envoy/Istio filter that verifies and revokes bearer
/// tokens: its config parser and its decisions on the command line.
#[derive(Debug, Parser)]
#[command(
    name = "bearer-guard",
    version,
    arg_required_else_help = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The command line as parsed and completed: `Cli`'s definitions, with an option's value the
/// next word whatever it starts with (`--iat -2h`, `--jti -x`), as the CLI has always read it
/// (clap would take `-2h` for an option). Operands keep clap's rule, so a mistyped option is
/// not taken for a token.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sub| {
        sub.mut_args(|arg| {
            if arg.get_long().is_some() && arg.get_action().takes_values() {
                arg.allow_hyphen_values(true)
            } else {
                arg
            }
        })
    })
}

/// The words (the program's name first) as a command line, and the name of its command.
pub fn parse<I, T>(words: I) -> Result<(String, Cli), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(words)?;
    let name = matches.subcommand_name().unwrap_or_default().to_owned();
    Cli::from_arg_matches(&matches).map(|cli| (name, cli))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check plugin configurations with the filter's own parser
    ///
    /// Check plugin configurations with the filter's own parser: a JSON file, an Envoy config
    /// (YAML/JSON, the envoy.filters.http.wasm filters' configuration) or Istio WasmPlugin
    /// manifests (spec.pluginConfig). Errors name the key, with a hint.
    #[command(after_help = AFTER_HELP)]
    CheckConfig(CheckConfig),
    /// What the filter decides for a token, and why
    ///
    /// What the filter decides for TOKEN: the rule, the provider, every check, and the
    /// response it would send. The token is never printed.
    #[command(after_help = AFTER_HELP)]
    Explain(Explain),
    /// A token signed with the demo keys (or DIR's)
    ///
    /// A token signed with the demo keys (envoy/demo-keys, built in; not secret), or with
    /// DIR's rsa-demo.pem and ec-demo.pem.
    #[command(after_help = AFTER_HELP)]
    Mint(Mint),
    /// The demo keys' public JWKS (or DIR's keys')
    ///
    /// The demo keys' public JWKS (what envoy/demo.yaml embeds), or DIR's keys'.
    #[command(after_help = AFTER_HELP)]
    Jwks(Jwks),
    /// Add or remove revocations in a list file or in etcd
    ///
    /// Add (or --remove) entries in a revocation list file (--list), the document the filter
    /// polls, or as keys in etcd v3 (--etcd). Give --list or --etcd; --provider is the list's
    /// only.
    ///
    /// With --subject, --issued-before is the subjects' cutoff (default: now); without, it is
    /// the global cutoff.
    ///
    /// --list creates the file; edits a symlink's target; writes atomically, under a lock
    /// (.FILE.lock beside it) so concurrent runs all land. Running it again with the same
    /// absolute values changes nothing (relative times and the default cutoff are taken from
    /// now, so they may move an exp or a cutoff later).
    ///
    /// --etcd writes the same entries as keys in etcd v3 (its JSON gateway on the client
    /// port, plain HTTP), one per revocation under P (default /bearer-guard/revoked/), under
    /// iss/ISS/ with --issuer; merged with a key already there as a list merges. An entry
    /// with an exp gets a lease ending at exp + SECONDS, so etcd deletes it once its token is
    /// dead everywhere: pass the largest clock_skew_seconds of your providers (default 60,
    /// jwt_authn's). --remove deletes the keys.
    #[command(after_help = AFTER_HELP)]
    Revoke(Revoke),
    /// What is in etcd's revocation store
    ///
    /// What is in etcd under P: a line per entry (issuer, kind, jti / sub / token identity,
    /// times, lease left), then the keys the filter would skip (by fingerprint), then counts.
    /// Exit 2 when etcd cannot be reached. Never prints a token.
    #[command(after_help = AFTER_HELP)]
    Revocations(Revocations),
    /// The token identity in hex (what token_sha256 revocation entries name)
    ///
    /// The token identity in hex: SHA-256 of a JWS's signing input (header.payload), of the
    /// whole token otherwise. What `token_sha256` revocation entries name (the same for every
    /// signature twin of the token); `revoke --token` writes it. The token is never printed.
    #[command(after_help = AFTER_HELP)]
    TokenId(TokenId),
    /// The plugin configuration's JSON Schema
    Schema,
    /// A shell completion script, printed to standard output
    ///
    /// A completion script for SHELL, printed to standard output. To install it:
    ///
    ///   bearer-guard completions bash > ~/.local/share/bash-completion/completions/bearer-guard
    ///   bearer-guard completions zsh > ~/.zfunc/_bearer-guard    # ~/.zfunc in $fpath
    ///   bearer-guard completions fish > ~/.config/fish/completions/bearer-guard.fish
    #[command(verbatim_doc_comment)]
    Completions(Completions),
    /// The version (as --version prints it); kept for scripts that call it
    #[command(hide = true)]
    Version,
}

#[derive(Debug, Args)]
pub struct CheckConfig {
    /// Files to check ('-': standard input)
    #[arg(value_name = "FILE", required = true, value_hint = ValueHint::FilePath)]
    pub files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Explain {
    /// The plugin configuration (JSON, Envoy config or WasmPlugin)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: String,
    /// When the filter decides (default: now)
    #[arg(long, value_name = "T", value_parser = When::parse)]
    pub now: Option<When>,
    /// The request's method
    #[arg(long, value_name = "M", default_value = "GET")]
    pub method: String,
    /// The request's path (with its query)
    #[arg(long, value_name = "P", default_value = "/")]
    pub path: String,
    /// The request's host, which match.hosts compares
    #[arg(long, value_name = "HOST", default_value = "localhost")]
    pub authority: String,
    /// A request header (repeatable)
    #[arg(long, value_name = "'NAME: VALUE'")]
    pub header: Vec<String>,
    /// The request comes over plain HTTP, not TLS
    #[arg(long)]
    pub plaintext: bool,
    /// Keys for a provider from a JWKS file (FILE alone: every provider with remote_jwks;
    /// repeatable)
    #[arg(long, value_name = "[PROVIDER=]FILE", value_hint = ValueHint::FilePath)]
    pub jwks: Vec<String>,
    /// The polled revocation list, from a file
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub revocation_list: Option<String>,
    /// Read the etcd revocation store from these endpoints
    #[arg(long, value_name = "ENDPOINT[,...]")]
    pub etcd: Option<String>,
    /// Log in to etcd (with its auth enabled)
    #[arg(long, value_name = "NAME:PASSWORD", requires = "etcd")]
    pub etcd_user: Option<String>,
    /// jwt_authn verified TOKEN earlier in the chain and wrote its payload under KEY (a
    /// companion provider's jwt_authn.payload_in_metadata; Istio: payload)
    #[arg(long, value_name = "KEY")]
    pub jwt_authn: Option<String>,
    /// With --jwt-authn: jwt_authn removed the token (forward: false, Istio's default), so
    /// only its payload reaches the filter
    #[arg(long, requires = "jwt_authn")]
    pub not_forwarded: bool,
    /// The token ('-': read it from standard input)
    #[arg(value_name = "TOKEN")]
    pub token: String,
}

/// The demo keys' algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Alg {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("expiry").args(["lifetime", "exp", "no_exp"])))]
pub struct Mint {
    /// The signing key: demo-rsa or demo-ec
    #[arg(long, value_enum, default_value = "RS256")]
    pub alg: Alg,
    /// iss (default: the demo issuer)
    #[arg(long, value_name = "S")]
    pub iss: Option<String>,
    /// sub (default: demo-user)
    #[arg(long, value_name = "S")]
    pub sub: Option<String>,
    /// aud (repeatable; default: the demo audience)
    #[arg(long, value_name = "A")]
    pub aud: Vec<String>,
    /// exp after iat (default: 1h)
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub lifetime: Option<i64>,
    /// exp
    #[arg(long, value_name = "T", value_parser = When::parse)]
    pub exp: Option<When>,
    /// No exp claim
    #[arg(long)]
    pub no_exp: bool,
    /// iat (default: now)
    #[arg(long, value_name = "T", value_parser = When::parse)]
    pub iat: Option<When>,
    /// nbf (default: none)
    #[arg(long, value_name = "T", value_parser = When::parse)]
    pub nbf: Option<When>,
    /// The time the other times are relative to (default: the clock's)
    #[arg(long, value_name = "T", value_parser = When::parse)]
    pub now: Option<When>,
    /// jti (default: a fresh one)
    #[arg(long, value_name = "S")]
    pub jti: Option<String>,
    /// scope
    #[arg(long, value_name = "S")]
    pub scope: Option<String>,
    /// The header's kid (default: the key's)
    #[arg(long, value_name = "K")]
    pub kid: Option<String>,
    /// The header's typ
    #[arg(long, value_name = "T")]
    pub typ: Option<String>,
    /// Any claim, JSON or else a string; last, so it overrides (repeatable)
    #[arg(long, value_name = "NAME=JSON")]
    pub claim: Vec<String>,
    /// Sign with DIR's rsa-demo.pem and ec-demo.pem
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub keys: Option<String>,
}

#[derive(Debug, Args)]
pub struct Jwks {
    /// The JWKS of DIR's rsa-demo.pem and ec-demo.pem
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub keys: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("store").args(["list", "etcd"]).required(true)))]
#[command(group(
    ArgGroup::new("edits")
        .args(["jti", "token", "token_sha256", "subject", "issued_before"])
        .required(true)
        .multiple(true)
))]
pub struct Revoke {
    /// The revocation list file to edit
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub list: Option<String>,
    /// Scope the list's entries to this provider (etcd entries are scoped by --issuer)
    #[arg(long, value_name = "NAME", conflicts_with = "etcd")]
    pub provider: Option<String>,
    /// The etcd endpoints to write to
    #[arg(long, value_name = "ENDPOINT[,ENDPOINT...]")]
    pub etcd: Option<String>,
    /// etcd's key prefix (default: /bearer-guard/revoked/)
    #[arg(long, value_name = "P", conflicts_with = "list")]
    pub prefix: Option<String>,
    /// Scope the etcd entries to this issuer (in a list file: --provider)
    #[arg(long, value_name = "ISS", conflicts_with = "list")]
    pub issuer: Option<String>,
    /// The largest clock skew of the providers, which leases outlive exp by (default: 60)
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_duration,
        conflicts_with = "list"
    )]
    pub clock_skew: Option<i64>,
    /// Log in to etcd (with its auth enabled)
    #[arg(long, value_name = "NAME:PASSWORD", conflicts_with = "list")]
    pub user: Option<String>,
    /// Remove the entries instead
    #[arg(long)]
    pub remove: bool,
    /// The entries' exp (they are dropped after it)
    #[arg(long, value_name = "T", value_parser = When::parse, conflicts_with = "remove")]
    pub exp: Option<When>,
    /// A token's jti (repeatable)
    #[arg(long, value_name = "ID")]
    pub jti: Vec<String>,
    /// A token, written as its identity ('-': standard input; repeatable)
    #[arg(long, value_name = "TOKEN|-")]
    pub token: Vec<String>,
    /// A token identity (repeatable)
    #[arg(long, value_name = "HEX")]
    pub token_sha256: Vec<String>,
    /// Every token of this subject issued up to --issued-before (repeatable)
    #[arg(long, value_name = "SUB")]
    pub subject: Vec<String>,
    /// The subjects' cutoff (default: now); without --subject, every token's
    #[arg(long, value_name = "T", value_parser = When::parse)]
    pub issued_before: Option<When>,
}

#[derive(Debug, Args)]
pub struct Revocations {
    /// The etcd endpoints to read
    #[arg(long, value_name = "ENDPOINT[,ENDPOINT...]")]
    pub etcd: String,
    /// etcd's key prefix (default: /bearer-guard/revoked/)
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Log in to etcd (with its auth enabled)
    #[arg(long, value_name = "NAME:PASSWORD")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenId {
    /// The token ('-': read it from standard input)
    #[arg(value_name = "TOKEN|-")]
    pub token: String,
}

#[derive(Debug, Args)]
pub struct Completions {
    /// The shell the script is for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, clap::Error> {
        let words = std::iter::once("bearer-guard").chain(line.split(' '));
        parse(words).map(|(_, cli)| cli.command)
    }

    #[test]
    fn the_definitions_hold_together() {
        // clap's own checks: ids in groups and conflicts exist, no name is taken twice.
        command().debug_assert();
    }

    #[test]
    fn options_keep_their_syntax() {
        let Ok(Command::Explain(explain)) = parse_line(
            "explain --config=c.yaml --header a:1 --header b:2 --jwks p=k.json --jwks all.json \
             --now +1h -- -not-an-option",
        ) else {
            panic!("explain")
        };
        assert_eq!(explain.config, "c.yaml");
        assert_eq!(explain.header, ["a:1", "b:2"]);
        assert_eq!(explain.jwks, ["p=k.json", "all.json"]);
        assert_eq!(explain.now, Some(When::FromNow(3600)));
        // `--` ends the options: what follows is the token.
        assert_eq!(explain.token, "-not-an-option");
        assert_eq!(
            (explain.method.as_str(), explain.path.as_str()),
            ("GET", "/")
        );

        let Ok(Command::Revoke(revoke)) = parse_line(
            "revoke --etcd e --jti a --jti b --token - --token t --token-sha256 h --subject s \
             --subject u --clock-skew 5m",
        ) else {
            panic!("revoke")
        };
        assert_eq!(revoke.jti, ["a", "b"]);
        assert_eq!(revoke.token, ["-", "t"]);
        assert_eq!(revoke.subject, ["s", "u"]);
        assert_eq!(revoke.clock_skew, Some(300));

        let Ok(Command::Mint(mint)) =
            parse_line("mint --alg ES256 --aud a --aud b --claim x=1 --claim y=2 --no-exp")
        else {
            panic!("mint")
        };
        assert_eq!(mint.alg, Alg::Es256);
        assert_eq!(mint.aud, ["a", "b"]);
        assert_eq!(mint.claim, ["x=1", "y=2"]);
        assert!(mint.no_exp);

        // A value is the next word, a leading hyphen too.
        let Ok(Command::Mint(mint)) = parse_line("mint --iat -2h --exp -1h --jti -x --sub --odd")
        else {
            panic!("mint")
        };
        assert_eq!(
            (mint.iat, mint.exp),
            (Some(When::FromNow(-7200)), Some(When::FromNow(-3600)))
        );
        assert_eq!(
            (mint.jti.as_deref(), mint.sub.as_deref()),
            (Some("-x"), Some("--odd"))
        );

        let Ok(Command::TokenId(id)) = parse_line("token-id -") else {
            panic!("token-id")
        };
        assert_eq!(id.token, "-");
    }

    #[test]
    fn options_that_exclude_each_other() {
        use clap::error::ErrorKind::{ArgumentConflict, MissingRequiredArgument};
        let kind = |line: &str| parse_line(line).err().map(|e| e.kind());
        assert_eq!(kind("mint --exp +1h --lifetime 1h"), Some(ArgumentConflict));
        assert_eq!(kind("mint --no-exp --lifetime 1h"), Some(ArgumentConflict));
        assert_eq!(kind("mint --no-exp --exp 5"), Some(ArgumentConflict));
        assert_eq!(
            kind("explain --config c --etcd-user u:p t"),
            Some(MissingRequiredArgument)
        );
        assert_eq!(kind("explain t"), Some(MissingRequiredArgument));
        assert_eq!(kind("check-config"), Some(MissingRequiredArgument));
        assert_eq!(
            kind("revocations --prefix /p/"),
            Some(MissingRequiredArgument)
        );
        assert_eq!(
            kind("mint --alg HS256"),
            Some(clap::error::ErrorKind::InvalidValue)
        );
    }
}
