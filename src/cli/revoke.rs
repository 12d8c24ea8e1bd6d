//! `revoke --list FILE`: adds (or `--remove`s) entries in a revocation list file, the document
//! the filter polls (`revocation::doc`; `examples/revocation_server.py` serves the same shape).
//! Merges as the reference service does: an entry again keeps the later `exp` (no `exp` beats
//! any), cutoffs keep the later time. The file is judged by the filter's list parser before
//! and after, created when missing, and replaced atomically (a symlink's target, keeping its
//! mode) under a lock beside it, so concurrent runs all land; an edit that changes nothing
//! leaves it untouched. Idempotent for the same absolute values only: `--exp +1h` and the
//! default subject cutoff (now) are read from the clock on each run.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::args::{Args, Spec};
use super::time::unix_now;
use super::{read_token, CliError, Outcome};
use crate::observe::fingerprint::hex;
use crate::observe::fingerprint::hex_to_digest;
use crate::revocation::doc::{parse_value, with_exp, Source};

const SPEC: Spec = Spec {
    options: &[
        "list",
        "provider",
        "exp",
        "jti",
        "token",
        "token-sha256",
        "subject",
        "issued-before",
    ],
    switches: &["remove"],
};

/// One change asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    /// `jti` or `token_sha256`.
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

pub fn run(words: &[String], out: &mut dyn Write) -> Result<Outcome, CliError> {
    let args = SPEC.parse(words)?;
    args.no_operands()?;
    let path = args
        .one("list")?
        .ok_or_else(|| CliError::Usage("--list FILE is missing".to_owned()))?;
    let remove = args.switch("remove");
    let now = unix_now();
    let exp = args.time("exp", now)?;
    if remove && exp.is_some() {
        return Err(CliError::Usage("--exp is for adding entries".to_owned()));
    }
    let mut edits = entry_edits(&args)?;
    edits.extend(subject_edits(&args, now)?);
    if edits.is_empty() {
        return Err(CliError::Usage(
            "nothing to do: give --jti, --token, --token-sha256, --subject or --issued-before"
                .to_owned(),
        ));
    }

    let path = Path::new(path);
    // Edits go to the file itself, never over a symlink to it; messages name the path given.
    let real = resolve(path)
        .map_err(|e| CliError::Input(format!("cannot use {}: {e}", path.display())))?;
    // Held from the read to the rename: a concurrent `revoke` waits, then reads this edit.
    let _lock =
        lock(&real).map_err(|e| CliError::Input(format!("cannot lock {}: {e}", path.display())))?;
    let (original, before) = read_list(&real, path)?;
    let mut document = before.clone();
    let provider = args.one("provider")?;
    for change in apply_edits(&mut document, provider, &edits, remove, exp)? {
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
    if let Some(exp) = exp.filter(|exp| *exp <= now) {
        writeln!(
            out,
            "{}: note: exp {exp} has passed: the filter drops such entries (their tokens have expired)",
            path.display()
        )?;
    }
    Ok(Outcome::Success)
}

/// `--jti`, `--token` and `--token-sha256`: entries of the lists, a token by its identity.
fn entry_edits(args: &Args) -> Result<Vec<Edit>, CliError> {
    let mut edits = Vec::new();
    for jti in args.all("jti") {
        if jti.is_empty() {
            return Err(CliError::Usage("--jti must not be empty".to_owned()));
        }
        edits.push(Edit::Entry {
            key: "jti",
            value: jti.to_owned(),
        });
    }
    for token in args.all("token") {
        // The identity, not the whole token's hash: it also revokes the token's signature twins.
        let digest = crate::token::id::token_id(&read_token(token)?);
        edits.push(Edit::Entry {
            key: "token_sha256",
            value: hex(&digest),
        });
    }
    for value in args.all("token-sha256") {
        // The value is not echoed: a token given here by mistake stays off the terminal.
        let digest = hex_to_digest(value).ok_or_else(|| {
            CliError::Usage(format!(
                "--token-sha256 takes 64 hex characters (a SHA-256), not {} characters of \
                 something else; for the token itself use --token",
                value.chars().count()
            ))
        })?;
        edits.push(Edit::Entry {
            key: "token_sha256",
            value: hex(&digest),
        });
    }
    Ok(edits)
}

/// `--subject` and `--issued-before`: a cutoff per subject (now by default), or without a
/// subject one for every token.
fn subject_edits(args: &Args, now: i64) -> Result<Vec<Edit>, CliError> {
    let issued_before = args.time("issued-before", now)?;
    let subjects: Vec<&str> = args.all("subject").collect();
    if subjects.is_empty() {
        return Ok(issued_before.map(Edit::Cutoff).into_iter().collect());
    }
    let mut edits = Vec::with_capacity(subjects.len());
    for sub in subjects {
        if sub.is_empty() {
            return Err(CliError::Usage("--subject must not be empty".to_owned()));
        }
        edits.push(Edit::Subject {
            sub: sub.to_owned(),
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
}
