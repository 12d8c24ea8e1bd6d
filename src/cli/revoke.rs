//! `revoke`: adds (or `--remove`s) revocations in one of two stores, the same edits read from
//! the same options for both.
//!
//! `--list FILE`: entries in a revocation list file, the document the filter polls
//! (`revocation::doc`; `examples/revocation_server.py` serves the same shape). Merges as the
//! reference service does: an entry again keeps the later `exp` (no `exp` beats any), cutoffs
//! keep the later time. The file is judged by the filter's list parser before and after,
//! created when missing, and replaced atomically (a symlink's target, keeping its mode) under
//! a lock beside it, so concurrent runs all land; an edit that changes nothing leaves it
//! untouched. Idempotent for the same absolute values only: `--exp +1h` and the default
//! subject cutoff (now) are read from the clock on each run.
//!
//! `--etcd ENDPOINT`: one key per revocation under a prefix, in the layout the filter's etcd
//! reader reads (`revocation::etcd::layout`, which judges each key before it is written),
//! merged with the key's value in etcd as the list merges, with a lease that ends when the
//! token is dead on every proxy (`exp` plus the largest clock skew). `revocations --etcd`
//! lists what is under the prefix. The gateway calls are `etcd.rs`'s.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::args::{Revocations, Revoke};
use super::etcd::{Gateway, StoredKey};
use super::time::{describe, unix_now};
use super::{read_token, CliError, Outcome};
use crate::observe::fingerprint::hex;
use crate::observe::fingerprint::{digest_to_hex, hex_to_digest};
use crate::revocation::doc::{parse_value, with_exp, Source};
use crate::revocation::etcd::layout::{
    key_for, lease_seconds, parse_entry, skipped_line, value_for, Revoked, StoreEntry,
};

/// Where the etcd store's keys are, unless `--prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/bearer-guard/revoked/";

/// jwt_authn's default `clock_skew_seconds`, so a lease outlives a token on a default proxy.
const DEFAULT_CLOCK_SKEW_SECONDS: i64 = 60;

/// The list's entry keys, which `Edit::Entry` names.
const JTI: &str = "jti";
const TOKEN_SHA256: &str = "token_sha256";

/// One change asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    /// `jti` or `token_sha256` (the identity in lowercase hex).
    Entry {
        key: &'static str,
        value: String,
    },
    Subject {
        sub: String,
        cutoff: i64,
    },
    Cutoff(i64),
}

/// What a run asks for, whichever store it goes to.
struct Request {
    edits: Vec<Edit>,
    remove: bool,
    exp: Option<i64>,
    now: i64,
}

/// The store a run edits.
enum Target<'a> {
    List(&'a str),
    Etcd(&'a str),
}

pub fn run(args: &Revoke, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let target = target_of(args)?;
    let request = read_request(args)?;
    match target {
        Target::List(path) => edit_list(Path::new(path), args.provider.as_deref(), &request, out),
        Target::Etcd(endpoints) => edit_etcd(endpoints, args, &request, out),
    }
}

/// `--list` or `--etcd`: clap lets exactly one through, each with only its own options
/// (`--provider` the list's, `--prefix`, `--issuer`, `--clock-skew` and `--user` etcd's).
fn target_of(args: &Revoke) -> Result<Target<'_>, CliError> {
    match (&args.list, &args.etcd) {
        (Some(path), None) => Ok(Target::List(path)),
        (None, Some(endpoints)) => Ok(Target::Etcd(endpoints)),
        _ => Err(CliError::Usage(
            "give --list FILE or --etcd ENDPOINT (one of them)".to_owned(),
        )),
    }
}

/// The edits of `--jti`, `--token`, `--token-sha256`, `--subject` and `--issued-before` (clap
/// asks for one at least), and `--remove` / `--exp` (not both): the same for both stores.
fn read_request(args: &Revoke) -> Result<Request, CliError> {
    let now = unix_now();
    let mut edits = entry_edits(args)?;
    edits.extend(subject_edits(args, now)?);
    Ok(Request {
        edits,
        remove: args.remove,
        exp: args.exp.map(|when| when.at(now)),
        now,
    })
}

/// `--list FILE`: the edits applied to the file, under its lock.
fn edit_list(
    path: &Path,
    provider: Option<&str>,
    request: &Request,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    // Edits go to the file itself, never over a symlink to it; messages name the path given.
    let real = resolve(path)
        .map_err(|e| CliError::Input(format!("cannot use {}: {e}", path.display())))?;
    // Held from the read to the rename: a concurrent `revoke` waits, then reads this edit.
    let _lock =
        lock(&real).map_err(|e| CliError::Input(format!("cannot lock {}: {e}", path.display())))?;
    let (original, before) = read_list(&real, path)?;
    let mut document = before.clone();
    let changes = apply_edits(
        &mut document,
        provider,
        &request.edits,
        request.remove,
        request.exp,
    )?;
    for change in changes {
        writeln!(out, "{}: {change}", path.display())?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(document.clone()))
        .map_err(|e| CliError::Input(e.to_string()))?;
    check(&document)
        .map_err(|why| CliError::Input(format!("the edited list would be invalid: {why}")))?;
    if original.is_some() && document == before {
        writeln!(out, "{}: unchanged", path.display())?;
        return Ok(Outcome::Success);
    }
    write_atomically(&real, &format!("{text}\n"))
        .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?;
    note_passed_exp(request, &path.display().to_string(), out)?;
    Ok(Outcome::Success)
}

/// An `exp` already past is kept, but the filter ignores such entries: say so.
fn note_passed_exp(request: &Request, place: &str, out: &mut dyn Write) -> io::Result<()> {
    match request.exp.filter(|exp| *exp <= request.now) {
        Some(exp) => writeln!(
            out,
            "{place}: note: exp {exp} has passed: the filter drops such entries (their tokens have expired)"
        ),
        None => Ok(()),
    }
}

/// `--jti`, `--token` and `--token-sha256`: entries of the lists, a token by its identity.
fn entry_edits(args: &Revoke) -> Result<Vec<Edit>, CliError> {
    let mut edits = Vec::new();
    for jti in &args.jti {
        if jti.is_empty() {
            return Err(CliError::Usage("--jti must not be empty".to_owned()));
        }
        edits.push(Edit::Entry {
            key: JTI,
            value: jti.clone(),
        });
    }
    for token in &args.token {
        // The identity, not the whole token's hash: it also revokes the token's signature twins.
        let digest = crate::token::id::token_id(&read_token(token)?);
        edits.push(Edit::Entry {
            key: TOKEN_SHA256,
            value: hex(&digest),
        });
    }
    for value in &args.token_sha256 {
        // The value is not echoed: a token given here by mistake stays off the terminal.
        let digest = hex_to_digest(value).ok_or_else(|| {
            CliError::Usage(format!(
                "--token-sha256 takes 64 hex characters (a SHA-256), not {} characters of \
                 something else; for the token itself use --token",
                value.chars().count()
            ))
        })?;
        edits.push(Edit::Entry {
            key: TOKEN_SHA256,
            value: hex(&digest),
        });
    }
    Ok(edits)
}

/// `--subject` and `--issued-before`: a cutoff per subject (now by default), or without a
/// subject one for every token.
fn subject_edits(args: &Revoke, now: i64) -> Result<Vec<Edit>, CliError> {
    let issued_before = args.issued_before.map(|when| when.at(now));
    if args.subject.is_empty() {
        return Ok(issued_before.map(Edit::Cutoff).into_iter().collect());
    }
    let mut edits = Vec::with_capacity(args.subject.len());
    for sub in &args.subject {
        if sub.is_empty() {
            return Err(CliError::Usage("--subject must not be empty".to_owned()));
        }
        edits.push(Edit::Subject {
            sub: sub.clone(),
            cutoff: issued_before.unwrap_or(now),
        });
    }
    Ok(edits)
}

/// The list file's text as read (`None`: it does not exist yet) and its document, which the
/// filter's parser must accept before it is edited.
fn read_list(real: &Path, path: &Path) -> Result<(Option<String>, Map<String, Value>), CliError> {
    let original = match fs::read_to_string(real) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CliError::Input(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let before = match &original {
        None => Map::new(),
        Some(text) => {
            load(text).map_err(|why| CliError::Input(format!("{}: {why}", path.display())))?
        }
    };
    Ok((original, before))
}

/// Applies the edits, in `--provider`'s scope when given, and drops what they emptied; a
/// line per edit says what it changed.
fn apply_edits(
    document: &mut Map<String, Value>,
    provider: Option<&str>,
    edits: &[Edit],
    remove: bool,
    exp: Option<i64>,
) -> Result<Vec<String>, CliError> {
    let scope = match provider {
        None => &mut *document,
        Some(name) => scope_of(document, name)?,
    };
    let prefix = provider.map_or(String::new(), |p| format!("providers.{p}."));
    let changes = edits
        .iter()
        .map(|edit| {
            let change = if remove {
                remove_from(scope, edit)
            } else {
                add_to(scope, edit, exp)
            };
            format!("{prefix}{change}")
        })
        .collect();
    tidy(document);
    Ok(changes)
}

/// A list file's document, accepted by the filter's parser and not a delta.
fn load(text: &str) -> Result<Map<String, Value>, String> {
    let document = match serde_json::from_str(text) {
        Ok(Value::Object(document)) => document,
        Ok(_) => return Err("not a revocation list (a JSON object)".to_owned()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    check(&document)?;
    if document.contains_key("delta_since") {
        return Err("a delta (delta_since), not a whole list".to_owned());
    }
    Ok(document)
}

/// The filter's own list parser is the judge (every entry kept, whatever its `exp`).
fn check(document: &Map<String, Value>) -> Result<(), String> {
    parse_value(&Value::Object(document.clone()), Source::List, i64::MIN)
        .map(|_| ())
        .map_err(|why| format!("not a revocation list: {why}"))
}

fn scope_of<'d>(
    document: &'d mut Map<String, Value>,
    provider: &str,
) -> Result<&'d mut Map<String, Value>, CliError> {
    if provider.is_empty() {
        return Err(CliError::Usage("--provider must not be empty".to_owned()));
    }
    let providers = document.entry("providers").or_insert_with(|| json!({}));
    let scope = providers
        .as_object_mut()
        .map(|p| p.entry(provider.to_owned()).or_insert_with(|| json!({})));
    match scope {
        Some(Value::Object(scope)) => Ok(scope),
        // The parser accepted the file, so `providers` and its scopes are objects.
        _ => Err(CliError::Input("providers is not an object".to_owned())),
    }
}

/// `exp` of an entry or subject, as the parser reads it (integer or not).
fn exp_of(value: &Value) -> Option<i64> {
    value.get("exp").and_then(Value::as_f64).map(|f| f as i64)
}

/// An entry again keeps the later `exp`; one without `exp` never expires, so it wins.
fn merged_exp(held: Option<i64>, new: Option<i64>) -> Option<i64> {
    held.zip(new).map(|(a, b)| a.max(b))
}

fn entry_value<'v>(entry: &'v Value, key: &str) -> Option<&'v str> {
    match entry {
        Value::String(value) => Some(value),
        other => other.get(key).and_then(Value::as_str),
    }
}

fn subject_cutoff(value: &Value) -> Option<i64> {
    value
        .as_f64()
        .or_else(|| value.get("issued_before").and_then(Value::as_f64))
        .map(|f| f as i64)
}

/// Adds one edit to the scope, merging with what is held; the line says what changed.
fn add_to(scope: &mut Map<String, Value>, edit: &Edit, exp: Option<i64>) -> String {
    match edit {
        Edit::Entry { key, value } => add_entry(scope, key, value, exp),
        Edit::Subject { sub, cutoff } => add_subject(scope, sub, *cutoff, exp),
        Edit::Cutoff(cutoff) => {
            let held = scope
                .get("issued_before")
                .and_then(Value::as_f64)
                .map(|f| f as i64);
            let new_cutoff = held.map_or(*cutoff, |h| h.max(*cutoff));
            if held == Some(new_cutoff) {
                return format!("issued_before is {new_cutoff} already");
            }
            scope.insert("issued_before".to_owned(), json!(new_cutoff));
            format!("issued_before: every token issued up to {new_cutoff} revoked")
        }
    }
}

/// A `jti` or `token_sha256` entry: added, or its `exp` merged into the one held.
fn add_entry(scope: &mut Map<String, Value>, key: &str, value: &str, exp: Option<i64>) -> String {
    let Some(list) = scope.entry(key).or_insert_with(|| json!([])).as_array_mut() else {
        return format!("{key} is not an array");
    };
    match list.iter_mut().find(|e| entry_value(e, key) == Some(value)) {
        None => {
            list.push(with_exp(key, value, exp));
            format!("added {key} {value}")
        }
        Some(held) => {
            let exp = merged_exp(exp_of(held), exp);
            if exp == exp_of(held) {
                format!("{key} {value} is listed already")
            } else {
                *held = with_exp(key, value, exp);
                format!(
                    "{key} {value}: exp now {}",
                    exp.map_or("none".to_owned(), |e| e.to_string())
                )
            }
        }
    }
}

/// A subject's cutoff: the later of the held and the new one, `exp` merged likewise.
fn add_subject(scope: &mut Map<String, Value>, sub: &str, cutoff: i64, exp: Option<i64>) -> String {
    let Some(subjects) = scope
        .entry("subjects")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    else {
        return "subjects is not an object".to_owned();
    };
    let held = subjects.get(sub);
    let new_cutoff = held
        .and_then(subject_cutoff)
        .map_or(cutoff, |c| c.max(cutoff));
    let new_exp = match held {
        None => exp,
        Some(held) => merged_exp(exp_of(held), exp),
    };
    let value = match new_exp {
        None => json!(new_cutoff),
        Some(exp) => json!({ "issued_before": new_cutoff, "exp": exp }),
    };
    if held == Some(&value) {
        return format!("subject {sub} is revoked up to {new_cutoff} already");
    }
    subjects.insert(sub.to_owned(), value);
    format!("subject {sub}: tokens issued up to {new_cutoff} revoked")
}

fn remove_from(scope: &mut Map<String, Value>, edit: &Edit) -> String {
    match edit {
        Edit::Entry { key, value } => {
            let list = scope.get_mut(*key).and_then(Value::as_array_mut);
            let Some(list) = list else {
                return format!("{key} {value} is not listed");
            };
            let before = list.len();
            list.retain(|e| entry_value(e, key) != Some(value));
            if list.len() == before {
                format!("{key} {value} is not listed")
            } else {
                format!("removed {key} {value}")
            }
        }
        Edit::Subject { sub, .. } => {
            match scope
                .get_mut("subjects")
                .and_then(Value::as_object_mut)
                .and_then(|s| s.remove(sub))
            {
                Some(_) => format!("removed subject {sub}"),
                None => format!("subject {sub} is not listed"),
            }
        }
        Edit::Cutoff(_) => match scope.remove("issued_before") {
            Some(_) => "removed issued_before".to_owned(),
            None => "issued_before is not set".to_owned(),
        },
    }
}

/// Drops what edits emptied: empty entry lists, subject maps and provider scopes.
fn tidy(document: &mut Map<String, Value>) {
    fn empty(value: &Value) -> bool {
        match value {
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    if let Some(Value::Object(providers)) = document.get_mut("providers") {
        for scope in providers.values_mut() {
            if let Value::Object(scope) = scope {
                scope.retain(|_, v| !empty(v));
            }
        }
    }
    document.retain(|_, v| !empty(v));
}

/// The file to edit: through a symlink, its target (the link stays a link). A path that
/// does not exist yet is used as given, unless it is a dangling link.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if path.symlink_metadata().is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "a symbolic link to a file that does not exist",
                ));
            }
            Ok(path.to_owned())
        }
        Err(e) => Err(e),
    }
}

fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map_or("list".into(), |n| n.to_string_lossy().into_owned())
}

/// An exclusive lock on `.NAME.lock` beside the list, released when the file is dropped. The
/// lock file stays (removing it would let two runs lock different files).
fn lock(path: &Path) -> io::Result<fs::File> {
    let lock_path = directory_of(path).join(format!(".{}.lock", file_name_of(path)));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)?;
    file.lock()?;
    Ok(file)
}

/// Written beside the file under a new name (never an existing file or link), with the
/// list's permissions, flushed, then renamed over it and the directory flushed: a poller
/// never reads half a list, and a crash leaves the old list or the new one.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = directory_of(path);
    let name = file_name_of(path);
    let permissions = match fs::metadata(path) {
        Ok(metadata) => Some(metadata.permissions()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let (temporary, mut file) = create_temporary(dir, &name, permissions.as_ref())?;
    let written = (|| {
        if let Some(permissions) = permissions {
            // Again after creation: the umask may have narrowed the mode given to open.
            file.set_permissions(permissions)?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        // Best effort: the edit failed either way; do not leave the partial file behind.
        let _ = fs::remove_file(&temporary);
    }
    written?;
    sync_directory(dir)
}

/// A file that did not exist (`create_new`: a planted file or link makes it fail), under a
/// name no other run uses.
fn create_temporary(
    dir: &Path,
    name: &str,
    permissions: Option<&fs::Permissions>,
) -> io::Result<(PathBuf, fs::File)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut attempt = 0u32;
    loop {
        let temporary = dir.join(format!(
            ".{name}.{}.{nanos:x}{attempt:x}.tmp",
            std::process::id()
        ));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            options.mode(permissions.map_or(0o666, |p| p.mode() & 0o7777));
        }
        #[cfg(not(unix))]
        let _ = permissions;
        match options.open(&temporary) {
            Ok(file) => return Ok((temporary, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The rename is durable once the directory is flushed (where the system can open one).
fn sync_directory(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// `--etcd ENDPOINT`: each edit as its key, put (merged with what etcd holds) or deleted.
/// Every key is judged before the first is written, so a bad one leaves etcd as it was.
fn edit_etcd(
    endpoints: &str,
    args: &Revoke,
    request: &Request,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let prefix = prefix_of(args.prefix.as_deref())?;
    let issuer = issuer_of(args.issuer.as_deref())?;
    let clock_skew = args.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    let entries = request
        .edits
        .iter()
        .map(|edit| store_entry(edit, issuer.as_deref(), request.exp))
        .collect::<Result<Vec<_>, _>>()?;
    for entry in &entries {
        judge(&prefix, entry)?;
    }
    let mut etcd = Gateway::open(endpoints, args.user.as_deref())?;
    let mut writer = EtcdWriter {
        etcd: &mut etcd,
        prefix: &prefix,
        clock_skew,
        now: request.now,
        leases: BTreeMap::new(),
    };
    for entry in &entries {
        let change = if request.remove {
            writer.delete(entry)?
        } else {
            writer.put(entry)?
        };
        writeln!(out, "{change}")?;
    }
    note_passed_exp(request, &etcd.describe(), out)?;
    Ok(Outcome::Success)
}

/// `--prefix`, or the default; it ends in `/`, as the filter's config makes it.
fn prefix_of(prefix: Option<&str>) -> Result<String, CliError> {
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
    if !prefix.ends_with('/') {
        return Err(CliError::Usage(format!(
            "--prefix must end with / (the default is {DEFAULT_PREFIX})"
        )));
    }
    Ok(prefix.to_owned())
}

fn issuer_of(issuer: Option<&str>) -> Result<Option<String>, CliError> {
    match issuer {
        Some("") => Err(CliError::Usage("--issuer must not be empty".to_owned())),
        issuer => Ok(issuer.map(str::to_owned)),
    }
}

/// An edit as the etcd store's entry: the list's `exp` rules (a global cutoff has none).
fn store_entry(
    edit: &Edit,
    issuer: Option<&str>,
    exp: Option<i64>,
) -> Result<StoreEntry, CliError> {
    let revoked = match edit {
        Edit::Entry { key, value } if *key == JTI => Revoked::Jti {
            jti: value.clone(),
            exp,
        },
        Edit::Entry { value, .. } => Revoked::Token {
            // `entry_edits` wrote it from a digest: it reads back.
            id: hex_to_digest(value)
                .ok_or_else(|| CliError::Input("a token identity that is not hex".to_owned()))?,
            exp,
        },
        Edit::Subject { sub, cutoff } => Revoked::Subject {
            sub: sub.clone(),
            issued_before: *cutoff,
            exp,
        },
        Edit::Cutoff(cutoff) => Revoked::IssuedBefore(*cutoff),
    };
    Ok(StoreEntry {
        issuer: issuer.map(str::to_owned),
        revoked,
    })
}

/// The filter's etcd reader is the judge: what is written must read back as this entry.
fn judge(prefix: &str, entry: &StoreEntry) -> Result<(), CliError> {
    let key = key_for(prefix, entry);
    match parse_entry(prefix, key.as_bytes(), value_for(entry).as_bytes()) {
        Ok(read) if read == *entry => Ok(()),
        Ok(_) => Err(CliError::Input(format!(
            "{}: the filter would read this entry back differently",
            kind_of(entry)
        ))),
        // The key is not shown: a jti that is too long may well be a pasted token.
        Err(why) => Err(CliError::Input(format!(
            "{}: the filter's etcd reader would skip this entry ({why})",
            kind_of(entry)
        ))),
    }
}

fn kind_of(entry: &StoreEntry) -> &'static str {
    match entry.revoked {
        Revoked::Jti { .. } => "jti",
        Revoked::Token { .. } => "token",
        Revoked::Subject { .. } => "sub",
        Revoked::IssuedBefore(_) => "issued_before",
    }
}

/// Writes entries' keys in one run: one lease per length, shared by the keys that need it.
struct EtcdWriter<'a> {
    etcd: &'a mut Gateway,
    prefix: &'a str,
    clock_skew: i64,
    now: i64,
    /// Leases granted in this run, by TTL.
    leases: BTreeMap<i64, String>,
}

impl EtcdWriter<'_> {
    /// Puts the entry merged with the one at its key (as the list merges: the later `exp`, no
    /// `exp` beating any, the later cutoff), so a second revoke never shortens the first.
    /// Two writers of one key at the same moment may still both read before either writes.
    fn put(&mut self, entry: &StoreEntry) -> Result<String, CliError> {
        let key = key_for(self.prefix, entry);
        let held = self.etcd.get(key.as_bytes())?;
        let held = held.and_then(|h: StoredKey| parse_entry(self.prefix, &h.key, &h.value).ok());
        let merged = held.map_or_else(|| entry.clone(), |held| merge(&held, entry));
        let value = value_for(&merged);
        let ttl = lease_seconds(merged.revoked.exp(), self.clock_skew, self.now);
        let lease = ttl.map(|ttl| self.lease(ttl)).transpose()?;
        self.etcd
            .put(key.as_bytes(), value.as_bytes(), lease.as_deref())?;
        let lease = match ttl {
            Some(ttl) => format!("lease {ttl}s"),
            None => "no lease: stays until removed".to_owned(),
        };
        let kept = if merged == *entry {
            ""
        } else {
            "; merged with what etcd held"
        };
        Ok(format!("put {key} {value} ({lease}{kept})"))
    }

    fn delete(&mut self, entry: &StoreEntry) -> Result<String, CliError> {
        let key = key_for(self.prefix, entry);
        Ok(if self.etcd.delete(key.as_bytes())? {
            format!("deleted {key}")
        } else {
            format!("{key} is not in etcd")
        })
    }

    fn lease(&mut self, ttl: i64) -> Result<String, CliError> {
        if let Some(id) = self.leases.get(&ttl) {
            return Ok(id.clone());
        }
        let id = self.etcd.grant_lease(ttl)?;
        self.leases.insert(ttl, id.clone());
        Ok(id)
    }
}

/// `new` merged with what its key held (the same kind and name: they share the key).
fn merge(held: &StoreEntry, new: &StoreEntry) -> StoreEntry {
    let revoked = match (&held.revoked, &new.revoked) {
        (Revoked::Jti { exp: held, .. }, Revoked::Jti { jti, exp }) => Revoked::Jti {
            jti: jti.clone(),
            exp: merged_exp(*held, *exp),
        },
        (Revoked::Token { exp: held, .. }, Revoked::Token { id, exp }) => Revoked::Token {
            id: *id,
            exp: merged_exp(*held, *exp),
        },
        (
            Revoked::Subject {
                issued_before: held_cutoff,
                exp: held_exp,
                ..
            },
            Revoked::Subject {
                sub,
                issued_before,
                exp,
            },
        ) => Revoked::Subject {
            sub: sub.clone(),
            issued_before: (*held_cutoff).max(*issued_before),
            exp: merged_exp(*held_exp, *exp),
        },
        (Revoked::IssuedBefore(held), Revoked::IssuedBefore(cutoff)) => {
            Revoked::IssuedBefore((*held).max(*cutoff))
        }
        (_, other) => other.clone(),
    };
    StoreEntry {
        issuer: new.issuer.clone(),
        revoked,
    }
}

/// `revocations --etcd ENDPOINT`: every entry under the prefix, a line each, then the keys
/// the filter would skip (by fingerprint, never the key), then the counts.
pub fn list_etcd(args: &Revocations, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let prefix = prefix_of(args.prefix.as_deref())?;
    let mut etcd = Gateway::open(&args.etcd, args.user.as_deref())?;
    let now = unix_now();
    let mut lease_left = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut entries = 0usize;
    for stored in etcd.under_prefix(prefix.as_bytes())? {
        match parse_entry(&prefix, &stored.key, &stored.value) {
            Ok(entry) => {
                let lease = match &stored.lease {
                    Some(id) => Some(ttl_of(&mut etcd, &mut lease_left, id)?),
                    None => None,
                };
                writeln!(out, "{}", entry_line(&entry, lease, now))?;
                entries += 1;
            }
            Err(why) => skipped.push(skipped_line(why, &stored.key)),
        }
    }
    for line in &skipped {
        writeln!(out, "{line}")?;
    }
    let noun = if entries == 1 { "entry" } else { "entries" };
    writeln!(
        out,
        "{entries} {noun}, {} skipped, under {prefix} in etcd at {}",
        skipped.len(),
        etcd.describe()
    )?;
    Ok(Outcome::Success)
}

/// A lease's seconds left (`None`: it has ended), asked once per lease.
fn ttl_of(
    etcd: &mut Gateway,
    known: &mut BTreeMap<String, Option<i64>>,
    lease: &str,
) -> Result<Option<i64>, CliError> {
    if let Some(ttl) = known.get(lease) {
        return Ok(*ttl);
    }
    let ttl = etcd.lease_ttl(lease)?;
    known.insert(lease.to_owned(), ttl);
    Ok(ttl)
}

/// `[iss "ISSUER"  ]KIND NAME  TIMES  LEASE`: names quoted (escaped, so a line stays one
/// line), a token by its identity, times as Unix seconds and RFC 3339.
fn entry_line(entry: &StoreEntry, lease: Option<Option<i64>>, now: i64) -> String {
    let mut fields = Vec::new();
    if let Some(issuer) = &entry.issuer {
        fields.push(format!("iss {issuer:?}"));
    }
    match &entry.revoked {
        Revoked::Jti { jti, .. } => fields.push(format!("jti {jti:?}")),
        Revoked::Token { id, .. } => fields.push(format!("token {}", digest_to_hex(id))),
        Revoked::Subject {
            sub, issued_before, ..
        } => {
            fields.push(format!("sub {sub:?}"));
            fields.push(format!("issued_before {}", describe(*issued_before, now)));
        }
        Revoked::IssuedBefore(cutoff) => {
            fields.push(format!("issued_before {}", describe(*cutoff, now)))
        }
    }
    if !matches!(entry.revoked, Revoked::IssuedBefore(_)) {
        fields.push(match entry.revoked.exp() {
            Some(exp) => format!("exp {}", describe(exp, now)),
            None => "no exp".to_owned(),
        });
    }
    fields.push(match lease {
        None => "no lease".to_owned(),
        Some(Some(ttl)) => format!("lease {ttl}s left"),
        Some(None) => "lease ended".to_owned(),
    });
    fields.join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_as_the_reference_service_does() {
        assert_eq!(merged_exp(Some(5), Some(9)), Some(9));
        assert_eq!(merged_exp(None, Some(9)), None);
        assert_eq!(merged_exp(Some(5), None), None);
        let mut scope = Map::new();
        let jti = Edit::Entry {
            key: "jti",
            value: "a".into(),
        };
        assert_eq!(add_to(&mut scope, &jti, Some(100)), "added jti a");
        assert_eq!(
            add_to(&mut scope, &jti, Some(50)),
            "jti a is listed already"
        );
        assert_eq!(add_to(&mut scope, &jti, Some(200)), "jti a: exp now 200");
        assert_eq!(add_to(&mut scope, &jti, None), "jti a: exp now none");
        assert_eq!(scope["jti"], json!(["a"]));
        let sub = |cutoff| Edit::Subject {
            sub: "alice".into(),
            cutoff,
        };
        add_to(&mut scope, &sub(10), None);
        add_to(&mut scope, &sub(5), None);
        assert_eq!(scope["subjects"], json!({ "alice": 10 }));
        add_to(&mut scope, &Edit::Cutoff(7), None);
        add_to(&mut scope, &Edit::Cutoff(3), None);
        assert_eq!(scope["issued_before"], json!(7));
        assert_eq!(remove_from(&mut scope, &jti), "removed jti a");
        assert_eq!(remove_from(&mut scope, &jti), "jti a is not listed");
        assert_eq!(
            remove_from(&mut scope, &Edit::Cutoff(0)),
            "removed issued_before"
        );
        tidy(&mut scope);
        assert_eq!(Value::Object(scope), json!({ "subjects": { "alice": 10 } }));
    }

    #[test]
    fn files_must_be_whole_lists() {
        assert!(load("{}").is_ok());
        assert!(load(r#"{"version": "v1", "jti": ["a"]}"#).is_ok());
        assert!(load(r#"{"delta_since": "v1"}"#)
            .unwrap_err()
            .contains("delta"));
        assert!(load(r#"{"jtis": []}"#)
            .unwrap_err()
            .contains("unknown field `jtis`"));
        assert!(load("[]").is_err());
        assert!(load("{").unwrap_err().starts_with("not JSON"));
    }

    /// `revoke` with these words, as clap reads them.
    fn revoke_args(text: &str) -> Result<Revoke, clap::Error> {
        use clap::Parser;
        let words = ["bearer-guard", "revoke"]
            .into_iter()
            .chain(text.split(' '));
        match super::super::args::Cli::try_parse_from(words)?.command {
            super::super::args::Command::Revoke(args) => Ok(args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_store_with_its_own_options() {
        let args = revoke_args("--etcd e --issuer i --jti a").unwrap();
        assert!(matches!(target_of(&args), Ok(Target::Etcd("e"))));
        let args = revoke_args("--list f --provider p --jti a").unwrap();
        assert!(matches!(target_of(&args), Ok(Target::List("f"))));
        let refused = |text: &str| revoke_args(text).unwrap_err().to_string();
        // clap names the two options, in its order.
        let conflict = |text: &str, option: &str| {
            let why = refused(text);
            assert!(why.contains("cannot be used with"), "{text}: {why}");
            assert!(why.contains(option), "{text}: {why}");
        };
        conflict("--etcd e --provider p --jti a", "'--provider <NAME>'");
        for etcd_only in ["--issuer i", "--clock-skew 5", "--prefix /p/", "--user u:p"] {
            let name = etcd_only.split(' ').next().unwrap();
            conflict(&format!("--list f {etcd_only} --jti a"), name);
        }
        conflict("--list f --etcd e --jti a", "'--list <FILE>'");
        conflict("--list f --remove --exp +1h --jti a", "'--exp <T>'");
        let neither = refused("--jti a");
        assert!(neither.contains("<--list <FILE>|--etcd"), "{neither}");
        let nothing = refused("--list f");
        assert!(nothing.contains("<--jti <ID>|--token"), "{nothing}");
    }

    #[test]
    fn edits_become_the_store_entries_of_the_layout() {
        let id = [7u8; 32];
        let token = Edit::Entry {
            key: TOKEN_SHA256,
            value: hex(&id),
        };
        let entry = store_entry(&token, Some("https://idp"), Some(9)).unwrap();
        assert_eq!(
            entry,
            StoreEntry {
                issuer: Some("https://idp".into()),
                revoked: Revoked::Token { id, exp: Some(9) },
            }
        );
        // A global cutoff has no exp, so no lease, whatever --exp says.
        let cutoff = store_entry(&Edit::Cutoff(5), None, Some(9)).unwrap();
        assert_eq!(cutoff.revoked, Revoked::IssuedBefore(5));
        assert_eq!(cutoff.revoked.exp(), None);
        judge(DEFAULT_PREFIX, &entry).unwrap();
        let huge = Edit::Entry {
            key: JTI,
            value: "j".repeat(5000),
        };
        let why = match judge(DEFAULT_PREFIX, &store_entry(&huge, None, None).unwrap()) {
            Err(CliError::Input(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            why,
            "jti: the filter's etcd reader would skip this entry (key too large)"
        );
    }

    #[test]
    fn etcd_entries_merge_as_the_list_does() {
        let jti = |exp| StoreEntry {
            issuer: None,
            revoked: Revoked::Jti {
                jti: "a".into(),
                exp,
            },
        };
        assert_eq!(merge(&jti(Some(5)), &jti(Some(9))), jti(Some(9)));
        assert_eq!(merge(&jti(Some(9)), &jti(Some(5))), jti(Some(9)));
        assert_eq!(merge(&jti(None), &jti(Some(5))), jti(None), "no exp wins");
        let sub = |issued_before, exp| StoreEntry {
            issuer: Some("i".into()),
            revoked: Revoked::Subject {
                sub: "alice".into(),
                issued_before,
                exp,
            },
        };
        assert_eq!(merge(&sub(10, Some(3)), &sub(7, Some(4))), sub(10, Some(4)));
        let cutoff = |t| StoreEntry {
            issuer: None,
            revoked: Revoked::IssuedBefore(t),
        };
        assert_eq!(merge(&cutoff(8), &cutoff(3)), cutoff(8));
    }

    #[test]
    fn listed_entries_show_names_times_and_leases_never_a_token() {
        const NOW: i64 = 1_800_000_000;
        let line = entry_line(
            &StoreEntry {
                issuer: Some("https://idp".into()),
                revoked: Revoked::Subject {
                    sub: "al\nice".into(),
                    issued_before: NOW,
                    exp: None,
                },
            },
            Some(Some(42)),
            NOW,
        );
        assert_eq!(
            line,
            "iss \"https://idp\"  sub \"al\\nice\"  issued_before 1800000000 \
             (2027-01-15T08:00:00Z, now)  no exp  lease 42s left"
        );
        let token = StoreEntry {
            issuer: None,
            revoked: Revoked::Token {
                id: [0xab; 32],
                exp: Some(NOW + 3600),
            },
        };
        assert_eq!(
            entry_line(&token, None, NOW),
            format!(
                "token {}  exp 1800003600 (2027-01-15T09:00:00Z, in 1h)  no lease",
                "ab".repeat(32)
            )
        );
        assert!(entry_line(&token, Some(None), NOW).ends_with("lease ended"));
    }
}
