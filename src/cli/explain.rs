//! `explain --config FILE TOKEN`: the filter's decision for one token, made by the guard's own
//! pipeline at `--now` on `--method`/`--path` (`Guard::decide_traced`), with each step it took
//! spelled out and the response it would send. What a proxy fetches (remote JWKS, the polled list, status lists,
//! introspection) the CLI cannot: it says so, and takes keys and the list from files.

use std::io::Write;
use std::rc::Rc;

use super::args::Explain;
use super::check::{load_one, summary};
use super::time::{describe, span, unix_now};
use super::{read_input, read_token, CliError, Outcome};
use crate::config::{Config, CryptoMode, JwksLocation, Provider};
use crate::decide::decision::{Decision, Denial, Upstream};
use crate::decide::guard::{Guard, HeldList, HeldSet, Request, Verdict};
use crate::decide::header_map::as_str_pairs;
use crate::decide::trace::{Detail, Mark, Step};
use crate::keys::host_crypto::software::RustCryptoHost;
use crate::keys::jwks::{self, KeySet};
use crate::observe::fingerprint::{fingerprint, hex};
use crate::policy::mode::Mode;
use crate::policy::rules::{is_cors_preflight, Requirement};
use crate::revocation::list::{accept_response, ListUpdate};
use crate::revocation::set::RevocationSet;
use crate::token::claims::Audience;
use crate::token::extract::TokenSource;
use crate::token::jwt_authn::VerifiedPayloads;
use crate::token::verify::{self, ParsedToken};

pub fn run(args: &Explain, out: &mut dyn Write, err: &mut dyn Write) -> Result<Outcome, CliError> {
    let token = read_token(&args.token)?;
    let now = args.now.map_or_else(unix_now, |when| when.at(unix_now()));
    let (method, path, mut headers) = request_args(args)?;
    let path = path.as_str();
    let (at, configured, written) = load_one(&args.config, err)?;
    let config = configured.config;
    let mut notes = Vec::new();
    let jwks = args.jwks.iter().map(String::as_str);
    let keys = provider_keys(&config, &written, jwks, &mut notes)?;
    let list = revocation_list(&config, args.revocation_list.as_deref(), now, &mut notes)?;
    let etcd = etcd_set(
        &config,
        args.etcd.as_deref(),
        args.etcd_user.as_deref(),
        now,
        &mut notes,
    )?;
    let parsed = verify::parse(&token);
    let iss = parsed
        .as_ref()
        .ok()
        .and_then(|p| p.unverified_claims().iss.as_deref());
    let chosen = placed_for(&config, &method, path, &headers, iss);
    let source = chosen
        .and_then(|i| config.providers.get(i))
        .and_then(|p| p.sources.first())
        .cloned()
        .unwrap_or_else(TokenSource::authorization_bearer);
    let payloads = args
        .jwt_authn
        .as_deref()
        .map(|key| jwt_authn_payload(key, &token))
        .transpose()?;
    let (request_path, placed) = if args.not_forwarded {
        (
            path.to_owned(),
            "was removed by jwt_authn (only its payload is here)".to_owned(),
        )
    } else {
        place_token(&source, &token, path, &mut headers)
    };
    let tls = !args.plaintext;
    let headers = as_str_pairs(&headers);

    // The verdict and the steps shown are the guard's own pipeline's.
    let guard = build_guard(config.clone(), &keys, list.clone(), now);
    if let Some(set) = etcd {
        guard
            .state()
            .install_etcd(Some(HeldSet::Whole(Rc::new(set))));
        guard.state().etcd_confirmed(now);
    }
    let request = Request {
        method: &method,
        path: &request_path,
        headers: &headers,
        tls,
        not_utf8: &[],
        jwt_authn: payloads.as_ref(),
    };
    let Traced {
        verdict,
        steps,
        waited,
        decided,
    } = traced_decision(&guard, &request, now);

    writeln!(out, "config    {at}: {}", summary(&config))?;
    for warning in &configured.warnings {
        writeln!(out, "          warning: {warning}")?;
    }
    writeln!(out, "time      {}", describe(now, unix_now()))?;
    describe_identity(out, &token)?;
    if let Ok(parsed) = &parsed {
        describe_token(out, parsed, now)?;
    }
    writeln!(
        out,
        "request   {method} {path}{} over {}; the token {placed}",
        if request_path != path {
            " (+ the token parameter)"
        } else {
            ""
        },
        if tls { "TLS" } else { "plaintext" }
    )?;
    let placement = Placement {
        method: &method,
        path: &request_path,
        headers: &headers,
        decided,
        chosen,
    };
    describe_rule(out, &config, &keys, &placement)?;
    if let Some(revocation) = &config.revocation {
        notes.push(format!(
            "revocation: config {} entries{}; what a proxy learns at run time (revocation \
             headers, misuse) is not known here",
            revocation.static_set.len(),
            list.as_ref()
                .map(|l| format!(", list {} entries", l.len()))
                .unwrap_or_default()
        ));
    }
    describe_steps(out, &steps, &notes, waited.as_deref(), now)?;
    report_verdict(out, &verdict, &guard)
}

/// `--jwt-authn KEY`: the token's payload as jwt_authn writes it into dynamic metadata.
fn jwt_authn_payload(key: &str, token: &str) -> Result<VerifiedPayloads, CliError> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|segment| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            CliError::Input("--jwt-authn: the token has no readable JWT payload".to_owned())
        })?;
    Ok(VerifiedPayloads::from_json([(key, payload.as_str())]))
}

/// The pipeline's steps, what the CLI could not know, and whether the filter would wait.
fn describe_steps(
    out: &mut dyn Write,
    steps: &[Step],
    notes: &[String],
    waited: Option<&str>,
    now: i64,
) -> Result<(), CliError> {
    if !steps.is_empty() {
        writeln!(out, "checks")?;
        for step in steps {
            writeln!(out, "  {}", step_line(step, now))?;
        }
    }
    for note in notes {
        writeln!(out, "note      {note}")?;
    }
    if let Some(what) = waited {
        writeln!(
            out,
            "waits     the filter would pause the request: {what}. The CLI cannot; this is \
             its answer when that fetch brings nothing:"
        )?;
    }
    Ok(())
}

/// The guard's decision and the steps it took.
struct Traced {
    verdict: Verdict,
    steps: Vec<Step>,
    /// What the filter would pause the request for (the CLI cannot fetch it).
    waited: Option<String>,
    /// The provider the decision names, or the one it waited for.
    decided: Option<usize>,
}

/// The decision as the filter makes it; where it would wait, its answer when the wait brings
/// nothing.
fn traced_decision(guard: &Guard, request: &Request<'_>, now: i64) -> Traced {
    let config = guard.config();
    let (first, steps) = guard.decide_traced(request, now, true);
    let waited_for = decided_provider(&first.decision, config);
    let (verdict, steps, waited) = match waiting_for(&first, config) {
        None => (first, steps, None),
        Some(what) => {
            let (verdict, steps) = guard.decide_traced(request, now, false);
            (verdict, steps, Some(what))
        }
    };
    let decided = decided_provider(&verdict.decision, config).or(waited_for);
    Traced {
        verdict,
        steps,
        waited,
        decided,
    }
}

/// Where the request landed: its line and headers, and which provider the filter chose (or
/// the token was placed for).
struct Placement<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    decided: Option<usize>,
    chosen: Option<usize>,
}

/// The rule the request matches and the provider whose checks follow.
fn describe_rule(
    out: &mut dyn Write,
    config: &Config,
    keys: &[Keys],
    placement: &Placement<'_>,
) -> Result<(), CliError> {
    let (method, headers, decided, chosen) = (
        placement.method,
        placement.headers,
        placement.decided,
        placement.chosen,
    );
    let route = config
        .rules
        .requirement_for(method, placement.path, headers);
    match route {
        None => writeln!(
            out,
            "rule      none matches: refused (403), as unmatched requests are"
        )?,
        Some((requirement, scopes)) => {
            writeln!(
                out,
                "rule      needs {}{}",
                requirement_text(requirement, &config.providers),
                if scopes.is_empty() {
                    String::new()
                } else {
                    format!("; scopes {}", scopes.join(" "))
                }
            )?;
            if config.bypass_cors_preflight && is_cors_preflight(method, headers) {
                writeln!(
                    out,
                    "          a CORS preflight: let through without a token"
                )?;
            }
            let eligible = route_providers(requirement, config.providers.len());
            let shown = decided
                .filter(|i| eligible.contains(i))
                .or_else(|| chosen.filter(|i| eligible.contains(i)));
            if let Some((provider, keys)) =
                shown.and_then(|i| config.providers.get(i).zip(keys.get(i)))
            {
                writeln!(
                    out,
                    "provider  {} (its issuer is the token's iss{}); {}",
                    provider.name,
                    if decided.is_some() {
                        "; the filter's choice"
                    } else {
                        ""
                    },
                    key_text(provider, keys)
                )?;
            }
        }
    }
    Ok(())
}

/// Header names and values, as the guard reads them.
type Headers = Vec<(String, String)>;

/// `--method`, `--path` and `--header`: the request the token comes with.
fn request_args(args: &Explain) -> Result<(String, String, Headers), CliError> {
    let method = args.method.to_ascii_uppercase();
    let path = args.path.as_str();
    if !path.starts_with('/') {
        return Err(CliError::Usage(format!(
            "--path {path:?} must start with /"
        )));
    }
    let mut headers = header_args(args.header.iter().map(String::as_str))?;
    // The request's host, as Envoy gives it (`match.hosts` compares it).
    headers.push((":authority".to_owned(), args.authority.clone()));
    Ok((method, path.to_owned(), headers))
}

/// `--header 'NAME: VALUE'` arguments, names lower-cased.
fn header_args<'a>(args: impl Iterator<Item = &'a str>) -> Result<Vec<(String, String)>, CliError> {
    args.map(|header| {
        let (name, value) = header
            .split_once(':')
            // Not echoed: the value may be a credential.
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--header takes 'NAME: VALUE', and this one ({} characters) has no colon",
                    header.chars().count()
                ))
            })?;
        Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
    })
    .collect()
}

/// The provider whose token source the credential goes in (as a client of the route would
/// send it): the first of the route's providers, in the route's order, whose issuer is the
/// token's `iss`; else any provider with that issuer. `None`: `Authorization: Bearer`.
fn placed_for(
    config: &Config,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    iss: Option<&str>,
) -> Option<usize> {
    let issued = |i: &usize| config.providers.get(*i).is_some_and(|p| p.issues(iss));
    config
        .rules
        .requirement_for(method, path, &as_str_pairs(headers))
        .map(|(requirement, _)| route_providers(requirement, config.providers.len()))
        .unwrap_or_default()
        .into_iter()
        .find(issued)
        .or_else(|| (0..config.providers.len()).find(issued))
}

/// The hashes the decision log and revocations know the token by (never the token).
fn describe_identity(out: &mut dyn Write, token: &str) -> Result<(), CliError> {
    let digest = crate::token::id::whole_token_sha256(token);
    let id = crate::token::id::token_id(token);
    writeln!(
        out,
        "token     fingerprint {} (as in the decision log); token id {} (what `token_sha256` \
         revocations name); sha256 of the whole token {}",
        fingerprint(&digest),
        hex(&id),
        hex(&digest)
    )?;
    Ok(())
}

/// One pipeline step as a line: `ok`, `--` (not checked), `wait` or `FAIL` with the reason.
fn step_line(step: &Step, now: i64) -> String {
    let detail = match &step.detail {
        Detail::Text(text) => text.clone(),
        Detail::Times { times, policy } => format!(
            "exp {}, nbf {}, iat {}; clock skew {}{}{}",
            when(times.exp, now),
            when(times.nbf, now),
            when(times.iat, now),
            span(i64::try_from(policy.clock_skew_seconds).unwrap_or(i64::MAX)),
            if policy.require_expiration {
                ", exp required"
            } else {
                ""
            },
            policy
                .max_lifetime_seconds
                .map(|max| format!(", lifetime at most {max}s"))
                .unwrap_or_default()
        ),
    };
    match step.mark {
        Mark::Pass => format!("ok    {}: {detail}", step.name),
        Mark::NotChecked => format!("--    {}: {detail}", step.name),
        Mark::Waits => format!("wait  {}: {detail}", step.name),
        Mark::Fail(reason) => format!(
            "FAIL  {}: {} ({}; {detail})",
            step.name,
            reason.description(),
            reason.code()
        ),
    }
}

/// A provider's keys as the CLI has them.
struct Keys {
    set: KeySet,
    /// From `--jwks` rather than the config.
    from_file: bool,
}

/// Each provider's keys: the config's, or a `--jwks` file's (`PROVIDER=FILE`, or `FILE` for
/// every provider with `remote_jwks`).
fn provider_keys<'a>(
    config: &Config,
    written: &serde_json::Value,
    jwks_args: impl Iterator<Item = &'a str>,
    notes: &mut Vec<String>,
) -> Result<Vec<Keys>, CliError> {
    let mut keys: Vec<Keys> = config
        .providers
        .iter()
        .map(|p| Keys {
            set: p.keys.clone(),
            from_file: false,
        })
        .collect();
    for arg in jwks_args {
        let (targets, file) = jwks_targets(config, arg)?;
        let parsed = jwks::parse_jwks_str(&read_input(file)?)
            .map_err(|e| CliError::Input(format!("{file}: not a JWKS: {e}")))?;
        for (index, skip) in &parsed.skipped {
            notes.push(format!("{file}: key {index} skipped: {skip}"));
        }
        if parsed.key_set.keys.is_empty() {
            return Err(CliError::Input(format!("{file}: no usable key")));
        }
        for index in targets {
            if let Some(slot) = keys.get_mut(index) {
                *slot = Keys {
                    set: parsed.key_set.clone(),
                    from_file: true,
                };
            }
        }
    }
    note_unfetched_keys(config, written, &keys, notes);
    Ok(keys)
}

/// The providers a `--jwks` argument is for: `PROVIDER=FILE`, or `FILE` for every provider
/// with `remote_jwks`.
fn jwks_targets<'a>(config: &Config, arg: &'a str) -> Result<(Vec<usize>, &'a str), CliError> {
    if let Some((name, file)) = arg.split_once('=') {
        let index = config
            .providers
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| CliError::Usage(format!("--jwks: no provider named {name:?}")))?;
        return Ok((vec![index], file));
    }
    let remote: Vec<usize> = config
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.remote_jwks.is_some())
        .map(|(i, _)| i)
        .collect();
    if remote.is_empty() {
        return Err(CliError::Usage(
            "--jwks FILE is for providers with remote_jwks; name one with --jwks PROVIDER=FILE"
                .to_owned(),
        ));
    }
    Ok((remote, arg))
}

/// A note for each provider whose remote keys the CLI has no file for.
fn note_unfetched_keys(
    config: &Config,
    written: &serde_json::Value,
    keys: &[Keys],
    notes: &mut Vec<String>,
) {
    for (provider, keys) in config.providers.iter().zip(keys) {
        if let (Some(remote), false) = (&provider.remote_jwks, keys.from_file) {
            // The URI as configured (https or not); the parsed config keeps only its parts.
            let (key, how) = match remote.location {
                JwksLocation::Direct => ("uri", "fetches its keys from"),
                JwksLocation::Discovery { .. } => {
                    ("discovery_uri", "finds its keys by OpenID discovery at")
                }
            };
            let uri = written
                .get("providers")
                .and_then(|p| p.get(&provider.name))
                .and_then(|p| p.get("remote_jwks"))
                .and_then(|r| r.get(key))
                .and_then(serde_json::Value::as_str)
                .map_or_else(
                    || format!("{}{}", remote.authority, remote.path),
                    str::to_owned,
                );
            notes.push(format!(
                "provider {} {how} {uri} through cluster {}: the CLI cannot \
                 (pass --jwks {}=FILE with the JWKS)",
                provider.name, remote.cluster, provider.name
            ));
        }
    }
}

/// The polled list, from `--revocation-list FILE` through the filter's own response parser;
/// without a file, an empty list just fetched (so the token's own checks show).
fn revocation_list(
    config: &Config,
    file: Option<&str>,
    now: i64,
    notes: &mut Vec<String>,
) -> Result<Option<RevocationSet>, CliError> {
    let polled = config.revocation.as_ref().and_then(|r| r.list.as_ref());
    let file = match (polled, file) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(CliError::Usage(
                "--revocation-list: the configuration polls no revocation list".to_owned(),
            ))
        }
        (Some(list), None) => {
            notes.push(format!(
                "the revocation list (cluster {}, {}) is taken as just fetched and empty: pass \
                 --revocation-list FILE to use one",
                list.endpoint.cluster, list.endpoint.path
            ));
            return Ok(Some(RevocationSet::empty()));
        }
        (Some(_), Some(file)) => file,
    };
    let text = read_input(file)?;
    // As the filter does: entries are kept until their token's `exp` plus the grace.
    let dropped_before = now.saturating_sub(config.expiry_grace_seconds());
    match accept_response(
        Some("200"),
        None,
        text.as_bytes(),
        None,
        None,
        dropped_before,
    ) {
        Ok(ListUpdate::Replaced {
            base,
            expired_dropped,
            ..
        }) => {
            if expired_dropped > 0 {
                notes.push(format!(
                    "{file}: {expired_dropped} entries left out: their tokens expired before {}",
                    super::time::rfc3339(dropped_before)
                ));
            }
            Ok(Some(base))
        }
        Ok(_) => Err(CliError::Input(format!("{file}: not a whole list"))),
        Err(e) => Err(CliError::Input(format!("{file}: {e}"))),
    }
}

/// The etcd store's set, read from `--etcd ENDPOINT` as the filter's reader builds it;
/// without an endpoint, an empty store just read (so the token's own checks show).
fn etcd_set(
    config: &Config,
    endpoints: Option<&str>,
    user: Option<&str>,
    now: i64,
    notes: &mut Vec<String>,
) -> Result<Option<RevocationSet>, CliError> {
    let store = config.revocation.as_ref().and_then(|r| r.etcd.as_ref());
    let (store, endpoints) = match (store, endpoints) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(CliError::Usage(
                "--etcd: the configuration has no revocation.etcd".to_owned(),
            ))
        }
        (Some(store), None) => {
            notes.push(format!(
                "etcd (cluster {}, prefix {}) is taken as just read and empty: pass --etcd \
                 ENDPOINT to read it",
                store.cluster, store.prefix
            ));
            return Ok(Some(RevocationSet::empty()));
        }
        (Some(store), Some(endpoints)) => (store, endpoints),
    };
    let mut gateway = super::etcd::Gateway::open(endpoints, user)?;
    let changes = crate::remote::watch::Changes {
        reset: true,
        puts: gateway
            .under_prefix(store.prefix.as_bytes())?
            .into_iter()
            .map(|stored| crate::revocation::etcd::proto::KeyValue {
                key: stored.key,
                value: stored.value,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut held = crate::revocation::etcd::held::HeldStore::new(&store.prefix);
    let applied = held.apply(&changes, &|issuer| config.provider_names_of_issuer(issuer));
    if applied.skipped > 0 {
        notes.push(format!(
            "etcd {}: {} keys skipped (they do not parse)",
            gateway.describe(),
            applied.skipped
        ));
    }
    Ok(Some(held.build(
        now.saturating_sub(config.expiry_grace_seconds()),
        "",
    )))
}

fn build_guard(config: Config, keys: &[Keys], list: Option<RevocationSet>, now: i64) -> Guard {
    // Envoy verifies RSA and ECDSA in BoringSSL (`crypto: auto`); the CLI's stand-in for it
    // verifies the same algorithms, so ES384/ES512 verify here as they do in Envoy.
    let host = config.crypto == CryptoMode::Auto;
    let mut guard = Guard::new(config);
    if host {
        guard = guard.with_host_crypto(Box::new(RustCryptoHost));
    }
    for (index, keys) in keys.iter().enumerate().filter(|(_, k)| k.from_file) {
        guard.state().install_keys(index, keys.set.clone(), now);
    }
    if let Some(base) = list {
        guard
            .state()
            .install_revocation_list(HeldList::whole(base, None), now);
    }
    guard
}

/// Puts the token where `source` reads it; returns the request path and where it went.
fn place_token(
    source: &TokenSource,
    token: &str,
    path: &str,
    headers: &mut Vec<(String, String)>,
) -> (String, String) {
    match source {
        TokenSource::Header { name, value_prefix } => {
            headers.push((name.to_string(), format!("{value_prefix}{token}")));
            (
                path.to_owned(),
                format!("in header {name} ({value_prefix:?} prefix)"),
            )
        }
        TokenSource::Cookie { name } => {
            headers.push(("cookie".to_owned(), format!("{name}={token}")));
            (path.to_owned(), format!("in cookie {name}"))
        }
        TokenSource::Param { name } => {
            let separator = if path.contains('?') { '&' } else { '?' };
            (
                format!("{path}{separator}{name}={token}"),
                format!("in query parameter {name}"),
            )
        }
    }
}

fn describe_token(out: &mut dyn Write, parsed: &ParsedToken<'_>, now: i64) -> Result<(), CliError> {
    writeln!(
        out,
        "header    alg {}, kid {}, typ {}",
        parsed.algorithm.name(),
        shown(parsed.kid.as_deref()),
        shown(parsed.typ.as_deref())
    )?;
    let claims = parsed.unverified_claims();
    let aud = match &claims.aud {
        None => "-".to_owned(),
        Some(Audience::One(aud)) => format!("{aud:?}"),
        Some(Audience::Many(auds)) => format!("{auds:?}"),
    };
    writeln!(
        out,
        "claims    iss {}, sub {}, aud {aud}, jti {}, scopes {:?} (unverified until the signature is)",
        shown(claims.iss.as_deref()),
        shown(claims.sub.as_deref()),
        shown(claims.jti.as_deref()),
        claims.scopes,
    )?;
    let times = parsed.times;
    for (name, value) in [("iat", times.iat), ("nbf", times.nbf), ("exp", times.exp)] {
        if let Some(t) = value {
            writeln!(out, "          {name} {}", describe(t, now))?;
        }
    }
    Ok(())
}

/// A claim for display: quoted and escaped (it is the token's, so anyone's), or `-`.
fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:?}"))
}

fn requirement_text(requirement: &Requirement, providers: &[Provider]) -> String {
    let name = |index: &usize| {
        providers
            .get(*index)
            .map_or("?", |p| p.name.as_str())
            .to_owned()
    };
    let list = |parts: &[Requirement], joiner: &str| {
        parts
            .iter()
            .map(|r| requirement_text(r, providers))
            .collect::<Vec<_>>()
            .join(joiner)
    };
    match requirement {
        Requirement::Public => "no token (public route)".to_owned(),
        Requirement::Provider {
            index,
            audiences: None,
        } => format!("a token of provider {}", name(index)),
        Requirement::Provider {
            index,
            audiences: Some(audiences),
        } => format!(
            "a token of provider {} with audience {}",
            name(index),
            audiences.join(" or ")
        ),
        Requirement::AnyProvider => "a token of any provider".to_owned(),
        Requirement::AllowMissing => "no token, or a valid one of any provider".to_owned(),
        Requirement::Any(parts) => format!("any of ({})", list(parts, " | ")),
        Requirement::All(parts) => format!("all of ({})", list(parts, " & ")),
    }
}

/// The providers a route may accept a token of, in the route's order.
fn route_providers(requirement: &Requirement, count: usize) -> Vec<usize> {
    match requirement {
        Requirement::Public => Vec::new(),
        Requirement::Provider { index, .. } => vec![*index],
        Requirement::AnyProvider | Requirement::AllowMissing => (0..count).collect(),
        Requirement::Any(parts) | Requirement::All(parts) => {
            // In the route's order (the guard tries `requires_any` options in order).
            let mut all: Vec<usize> = Vec::new();
            for index in parts.iter().flat_map(|p| route_providers(p, count)) {
                if !all.contains(&index) {
                    all.push(index);
                }
            }
            all
        }
    }
}

fn key_text(provider: &Provider, keys: &Keys) -> String {
    let kids: Vec<&str> = keys
        .set
        .keys
        .iter()
        .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
        .collect();
    let from = match (&provider.remote_jwks, keys.from_file) {
        (_, true) => "from --jwks",
        (Some(_), false) => "remote JWKS, not fetched",
        (None, false) if provider.introspection.is_some() && kids.is_empty() => {
            "introspection only"
        }
        (None, false) => "local JWKS",
    };
    format!("{} keys ({from}): {}", kids.len(), kids.join(", "))
}

fn when(t: Option<i64>, now: i64) -> String {
    t.map_or_else(|| "-".to_owned(), |t| describe(t, now))
}

/// The provider the guard's decision names, if any.
fn decided_provider(decision: &Decision, config: &Config) -> Option<usize> {
    let named = |name: &str| config.providers.iter().position(|p| p.name == name);
    match decision {
        Decision::Allow { provider, .. } => provider.as_deref().and_then(named),
        Decision::Deny(denial) => denial.provider.as_deref().and_then(named),
        Decision::WaitForKeys { provider }
        | Decision::Introspect { provider, .. }
        | Decision::WaitForStatusList { provider, .. } => Some(*provider),
        Decision::WaitForRevocationList => None,
    }
}

/// What a paused request waits for, when the guard asks to wait.
fn waiting_for(verdict: &Verdict, config: &Config) -> Option<String> {
    let name = |index: &usize| {
        config
            .providers
            .get(*index)
            .map_or("?", |p| p.name.as_str())
            .to_owned()
    };
    match &verdict.decision {
        Decision::Allow { .. } | Decision::Deny(_) => None,
        Decision::WaitForKeys { provider } => Some(format!(
            "it fetches provider {}'s keys (pass --jwks {}=FILE)",
            name(provider),
            name(provider)
        )),
        Decision::WaitForRevocationList => Some(
            "it fetches the revocation list or reads etcd (pass --revocation-list FILE or \
             --etcd ENDPOINT)"
                .to_owned(),
        ),
        Decision::Introspect { provider, .. } => Some(format!(
            "it asks provider {}'s introspection endpoint about the token",
            name(provider)
        )),
        Decision::WaitForStatusList { uri, .. } => {
            Some(format!("it fetches the status list at {uri:?}"))
        }
    }
}

fn report_verdict(
    out: &mut dyn Write,
    verdict: &Verdict,
    guard: &Guard,
) -> Result<Outcome, CliError> {
    match &verdict.decision {
        Decision::Deny(denial) if verdict.mode == Mode::Shadow => {
            report_shadowed(out, denial, &guard.shadowed_upstream())?;
            Ok(Outcome::Failure)
        }
        Decision::Allow {
            provider, upstream, ..
        } => {
            writeln!(
                out,
                "verdict   allowed{}: the request goes upstream",
                provider
                    .as_ref()
                    .map(|p| format!(" (provider {p})"))
                    .unwrap_or_default()
            )?;
            report_removed_headers(out, upstream)?;
            for (name, value) in &upstream.set_headers {
                writeln!(out, "  sets {name}: {}", abbreviated(value))?;
            }
            if upstream.path.is_some() {
                writeln!(out, "  the token parameter is taken out of :path")?;
            }
            Ok(Outcome::Success)
        }
        Decision::Deny(denial) => {
            report_denial(out, denial)?;
            Ok(Outcome::Failure)
        }
        _ => {
            writeln!(out, "verdict   undecided: the filter is still waiting")?;
            Ok(Outcome::Failure)
        }
    }
}

/// Shadow mode: the denial as enforcing would send it, and what happens instead.
fn report_shadowed(
    out: &mut dyn Write,
    denial: &Denial,
    upstream: &Upstream,
) -> Result<(), CliError> {
    writeln!(
        out,
        "verdict   shadow-denied: {}, mode shadow: not answered, the request goes upstream",
        denial_summary(denial)
    )?;
    writeln!(
        out,
        "  counted as shadow_denied.{}{}; logged with \"shadow\": true",
        denial.reason.code(),
        denial
            .provider
            .as_ref()
            .map(|p| format!(", provider.{p}.shadow_denied.{}", denial.reason.code()))
            .unwrap_or_default()
    )?;
    writeln!(out, "  upstream: the request as sent, credential kept")?;
    report_removed_headers(out, upstream)?;
    writeln!(out, "  enforced, it would answer:")?;
    report_answer(out, denial, "    ")
}

fn report_denial(out: &mut dyn Write, denial: &Denial) -> Result<(), CliError> {
    writeln!(out, "verdict   denied: {}", denial_summary(denial))?;
    report_answer(out, denial, "  ")
}

/// The headers taken out of the request before it goes upstream, if any.
fn report_removed_headers(out: &mut dyn Write, upstream: &Upstream) -> Result<(), CliError> {
    if !upstream.remove_headers.is_empty() {
        writeln!(
            out,
            "  removes headers: {}",
            upstream.remove_headers.join(", ")
        )?;
    }
    Ok(())
}

/// `401 token revoked (reason revoked, revoked by etcd)`.
fn denial_summary(denial: &Denial) -> String {
    format!(
        "{} {} (reason {}{})",
        denial.status,
        denial.reason.description(),
        denial.reason.code(),
        denial
            .revoked_by
            .map(|source| format!(", revoked by {}", source.code()))
            .unwrap_or_default()
    )
}

/// The response a denial is answered with.
fn report_answer(out: &mut dyn Write, denial: &Denial, indent: &str) -> Result<(), CliError> {
    writeln!(out, "{indent}status: {}", denial.status)?;
    for (name, value) in &denial.headers {
        writeln!(out, "{indent}{name}: {value}")?;
    }
    writeln!(out, "{indent}body: {}", denial.body)?;
    Ok(())
}

/// Header values derived from the token (the payload) can be long: the start is enough.
fn abbreviated(value: &str) -> String {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((at, _)) => format!(
            "{}... ({} bytes)",
            value.get(..at).unwrap_or_default(),
            value.len()
        ),
        None => value.to_owned(),
    }
}
