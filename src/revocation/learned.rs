//! Revocations learned at run time from the revocation response header: what the header
//! says, and the log of learned entries every worker of the process shares.

use crate::decide::decision::Authorized;
use crate::observe::fingerprint::digest_to_hex;
use crate::revocation::doc::PublishEntry;
use crate::revocation::set::{fingerprint, Kind, RevocationSet, SetBuilder, ANY_PROVIDER};

/// Learned entries kept at most; beyond it the oldest go (they are also in the list service
/// when publishing is on). A bound keeps the per-request sync cheap.
pub const MAX_LEARNED_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnedKind {
    /// From a revocation header: a token (jti or SHA-256) fingerprint.
    Exact(u64),
    /// From misuse detection (`anomaly.action: revoke`): a token fingerprint.
    Misuse(u64),
    /// Subject fingerprint and its cutoff.
    Subject(u64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedEntry {
    pub kind: LearnedKind,
    /// After this the token is dead anyway (`None`: kept until evicted or cleared).
    pub exp: Option<i64>,
}

/// One directive of the header that could not be applied, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// `self` on a request no token authorized.
    SelfWithoutToken,
    Empty(&'static str),
    Unknown(String),
    /// A directive `revocation.response_header_directives` does not allow.
    NotAllowed(&'static str),
    /// The value does not follow the grammar (e.g. an unterminated quoted string, or text after
    /// one): nothing in it is applied, since what the upstream meant is unknown.
    Unparsable(&'static str),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::SelfWithoutToken => {
                f.write_str("`self` on a request that no token authorized")
            }
            HeaderProblem::Empty(what) => write!(f, "`{what}=` without a value"),
            HeaderProblem::Unknown(directive) => write!(
                f,
                "unknown directive {} (expected self, jti=<id> or sub=<subject>; a value with \
                 a comma must be quoted): value refused as a whole; nothing revoked",
                loggable_name(directive)
            ),
            HeaderProblem::NotAllowed(what) => write!(
                f,
                "`{what}` is not in revocation.response_header_directives: ignored"
            ),
            HeaderProblem::Unparsable(why) => {
                write!(f, "value refused as a whole ({why}); nothing revoked")
            }
        }
    }
}

/// A directive name as the log may show it: a short word, quoted; anything else (an upstream
/// that put a token in the header) only by its length.
fn loggable_name(name: &str) -> String {
    let word = name.len() <= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
    if word {
        format!("{name:?}")
    } else {
        format!("of {} bytes (not shown)", name.len())
    }
}

/// Which directives upstreams may send (`revocation.response_header_directives`), and what
/// `sub=` cutoffs need on a request that no token authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    pub allow_self: bool,
    /// `jti=<id>`: revokes any token of the issuer with that `jti`.
    pub allow_jti: bool,
    /// `sub=<subject>`: revokes every token of that subject issued so far.
    pub allow_sub: bool,
    /// The largest clock skew of any provider (for `sub=` without an authorizing token).
    pub max_clock_skew_seconds: i64,
    /// The largest `max_lifetime_seconds` when every provider has one.
    pub max_lifetime_seconds: Option<i64>,
}

impl HeaderPolicy {
    /// Only `self`: an upstream can end the session it served, nobody else's.
    pub fn self_only() -> Self {
        HeaderPolicy {
            allow_self: true,
            allow_jti: false,
            allow_sub: false,
            max_clock_skew_seconds: 0,
            max_lifetime_seconds: None,
        }
    }

    pub fn all() -> Self {
        HeaderPolicy {
            allow_jti: true,
            allow_sub: true,
            ..HeaderPolicy::self_only()
        }
    }
}

/// What one header value revokes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FromHeader {
    /// `self` named the authorizing token (which can then also be revoked at the IdP).
    pub self_revoked: bool,
    pub learned: Vec<LearnedEntry>,
    pub publish: Vec<PublishEntry>,
    pub problems: Vec<HeaderProblem>,
}

/// One directive as written: `self`, or `name=value` with the value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Directive {
    SelfToken,
    Jti(String),
    Sub(String),
    Unknown(String),
}

/// The header's grammar: directives separated by commas; `self`, `jti=<value>` or
/// `sub=<value>`, names ASCII case-insensitive, whitespace around them ignored. A value is
/// either bare (no comma, quote or backslash; surrounding whitespace trimmed) or an RFC 8941
/// §3.3.3 string (`"CN=alice,OU=eng"`, with `\"` and `\\` escapes) for values with commas.
/// Any part that does not parse refuses the whole value: applying half of it could revoke
/// the wrong subject (`sub=CN=alice,OU=eng` unquoted is exactly that).
fn parse_directives(value: &str) -> Result<Vec<Directive>, &'static str> {
    let mut directives = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Ok(directives);
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        let (directive, after) = parse_directive(rest)?;
        directives.push(directive);
        let after = after.trim_start_matches([' ', '\t']);
        rest = match after.strip_prefix(',') {
            Some(next) => next,
            None if after.is_empty() => after,
            None => return Err("text after a quoted value"),
        };
    }
}

fn parse_directive(input: &str) -> Result<(Directive, &str), &'static str> {
    let end = input.find([',', '=']).unwrap_or(input.len());
    let (name, rest) = input.split_at(end);
    let name = name.trim_end_matches([' ', '\t']);
    let Some(after_equals) = rest.strip_prefix('=') else {
        let directive = if name.eq_ignore_ascii_case("self") {
            Directive::SelfToken
        } else {
            Directive::Unknown(name.to_owned())
        };
        return Ok((directive, rest));
    };
    let (value, rest) = parse_value(after_equals.trim_start_matches([' ', '\t']))?;
    let directive = if name.eq_ignore_ascii_case("jti") {
        Directive::Jti(value)
    } else if name.eq_ignore_ascii_case("sub") {
        Directive::Sub(value)
    } else {
        Directive::Unknown(name.to_owned())
    };
    Ok((directive, rest))
}

/// A bare value up to the next comma, or a quoted string.
fn parse_value(input: &str) -> Result<(String, &str), &'static str> {
    let Some(quoted) = input.strip_prefix('"') else {
        let end = input.find(',').unwrap_or(input.len());
        let (value, rest) = input.split_at(end);
        let value = value.trim_end_matches([' ', '\t']);
        if value.contains(['"', '\\']) {
            return Err("a quote or backslash in an unquoted value");
        }
        return Ok((value.to_owned(), rest));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, quoted.get(at + 1..).unwrap_or_default())),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                _ => return Err("a backslash not followed by a quote or backslash"),
            },
            ' '..='~' => value.push(c),
            _ => return Err("a control or non-ASCII character in a quoted value"),
        }
    }
    Err("an unterminated quoted value")
}

/// `self`, `jti=<id>`, `sub=<subject>` (see `parse_directives`), as far as `policy` allows.
/// Entries are scoped to the provider whose token authorized the request (and so apply to
/// every provider of its issuer); on a request without a token they apply to every provider.
pub fn from_header(
    value: &str,
    authorized: Option<&Authorized>,
    policy: &HeaderPolicy,
    now: i64,
) -> FromHeader {
    let mut out = FromHeader::default();
    let directives = match checked_directives(value) {
        Ok(directives) => directives,
        Err(problem) => {
            out.problems.push(problem);
            return out;
        }
    };
    let scope = authorized.map_or(ANY_PROVIDER, |a| a.provider.as_str());
    for directive in directives {
        match directive {
            Directive::SelfToken if !policy.allow_self => {
                out.problems.push(HeaderProblem::NotAllowed("self"))
            }
            Directive::SelfToken => match authorized {
                Some(token) => revoke_self(&mut out, token, scope),
                None => out.problems.push(HeaderProblem::SelfWithoutToken),
            },
            Directive::Jti(_) if !policy.allow_jti => {
                out.problems.push(HeaderProblem::NotAllowed("jti"))
            }
            Directive::Jti(jti) if jti.is_empty() => out.problems.push(HeaderProblem::Empty("jti")),
            Directive::Jti(jti) => revoke_jti(&mut out, jti, authorized, scope),
            Directive::Sub(_) if !policy.allow_sub => {
                out.problems.push(HeaderProblem::NotAllowed("sub"))
            }
            Directive::Sub(sub) if sub.is_empty() => out.problems.push(HeaderProblem::Empty("sub")),
            Directive::Sub(sub) => revoke_subject(&mut out, sub, authorized, policy, now, scope),
            Directive::Unknown(name) => out.problems.push(HeaderProblem::Unknown(name)),
        }
    }
    out.dedup();
    out
}

/// A header value's directives, or the one problem that refuses the value as a whole.
fn checked_directives(value: &str) -> Result<Vec<Directive>, HeaderProblem> {
    let directives = parse_directives(value).map_err(HeaderProblem::Unparsable)?;
    if directives.len() > MAX_DIRECTIVES_PER_VALUE {
        return Err(HeaderProblem::Unparsable(
            "more directives than a response needs",
        ));
    }
    // An unknown directive is most often the tail of a value cut at a comma
    // (`sub=CN=alice,OU=eng`): the rest of the value cannot be trusted to mean what it says.
    if let Some(Directive::Unknown(name)) = directives
        .iter()
        .find(|d| matches!(d, Directive::Unknown(_)))
    {
        return Err(HeaderProblem::Unknown(name.clone()));
    }
    Ok(directives)
}

/// `jti=<id>`: any token of the issuer with that `jti`, kept until evicted (its `exp` is not
/// known here).
fn revoke_jti(out: &mut FromHeader, jti: String, authorized: Option<&Authorized>, scope: &str) {
    out.learned.push(LearnedEntry {
        kind: LearnedKind::Exact(fingerprint(Kind::Jti, scope, jti.as_bytes())),
        exp: None,
    });
    out.publish.push(PublishEntry::Jti {
        provider: authorized.map(|a| a.provider.clone()),
        jti,
        exp: None,
    });
}

/// `sub=<subject>`: every token of the subject issued up to the cutoff.
fn revoke_subject(
    out: &mut FromHeader,
    sub: String,
    authorized: Option<&Authorized>,
    policy: &HeaderPolicy,
    now: i64,
    scope: &str,
) {
    let cutoff = SubjectCutoff::at(now, authorized, policy);
    out.learned.push(LearnedEntry {
        kind: LearnedKind::Subject(
            fingerprint(Kind::Subject, scope, sub.as_bytes()),
            cutoff.issued_before,
        ),
        exp: cutoff.matters_until,
    });
    out.publish.push(PublishEntry::Subject {
        provider: authorized.map(|a| a.provider.clone()),
        sub,
        issued_before: cutoff.issued_before,
    });
}

/// Directives one header value may carry: a logout needs one or two. More is refused whole:
/// repeated or many entries would only crowd out other revocations of the bounded log.
pub const MAX_DIRECTIVES_PER_VALUE: usize = 16;

impl FromHeader {
    /// The same entry twice (`self, self`) is learned and published once.
    fn dedup(&mut self) {
        let mut seen = Vec::with_capacity(self.learned.len());
        let mut keep = Vec::with_capacity(self.learned.len());
        for entry in &self.learned {
            keep.push(!seen.contains(&entry.kind));
            seen.push(entry.kind);
        }
        let mut flags = keep.iter();
        self.learned
            .retain(|_| flags.next().copied().unwrap_or(true));
        let mut flags = keep.iter();
        self.publish
            .retain(|_| flags.next().copied().unwrap_or(true));
    }
}

/// A `sub=` revocation: tokens issued up to `issued_before` are refused.
struct SubjectCutoff {
    /// `now` plus the clock skew the provider allows: an IdP whose clock runs ahead by up to
    /// the skew stamps `iat` in the proxy's future, and such a token, issued before the
    /// revocation, must not outlive it. (Tokens issued in the next `skew` seconds are refused
    /// too: the price of not trusting `iat` more than the time checks do.)
    issued_before: i64,
    /// With a `max_lifetime_seconds`, every token the cutoff can refuse has expired by then,
    /// so the entry need not be kept (nor count against the bound) after it.
    matters_until: Option<i64>,
}

impl SubjectCutoff {
    fn at(now: i64, authorized: Option<&Authorized>, policy: &HeaderPolicy) -> Self {
        let (skew, lifetime) = match authorized {
            Some(token) => (token.clock_skew_seconds, token.max_lifetime_seconds),
            None => (policy.max_clock_skew_seconds, policy.max_lifetime_seconds),
        };
        let issued_before = now.saturating_add(skew);
        SubjectCutoff {
            issued_before,
            matters_until: lifetime.map(|l| issued_before.saturating_add(l)),
        }
    }
}

/// `self`: the authorizing token, by `jti` when it has one, else by its identity.
fn revoke_self(out: &mut FromHeader, token: &Authorized, scope: &str) {
    let provider = Some(token.provider.clone());
    let (fp, entry) = match &token.jti {
        Some(jti) => (
            fingerprint(Kind::Jti, scope, jti.as_bytes()),
            PublishEntry::Jti {
                provider,
                jti: jti.clone(),
                exp: token.exp,
            },
        ),
        None => (
            fingerprint(Kind::TokenSha256, scope, &token.id),
            PublishEntry::TokenSha256 {
                provider,
                hex: digest_to_hex(&token.id),
                exp: token.exp,
            },
        ),
    };
    out.self_revoked = true;
    out.learned.push(LearnedEntry {
        kind: LearnedKind::Exact(fp),
        exp: token.exp,
    });
    out.publish.push(entry);
}

/// What this process learned at run time, by source.
#[derive(Debug, Clone, Default)]
pub struct LearnedSets {
    pub by_header: RevocationSet,
    pub by_anomaly: RevocationSet,
}

impl LearnedSets {
    pub fn len(&self) -> usize {
        self.by_header.len() + self.by_anomaly.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `more` to these sets (when the shared log could not be written).
    pub fn extended(&self, more: &LearnedSets) -> LearnedSets {
        let merge = |a: &RevocationSet, b: &RevocationSet| {
            let mut builder = SetBuilder::default();
            builder.add_set(a);
            builder.add_set(b);
            builder.build("", "")
        };
        LearnedSets {
            by_header: merge(&self.by_header, &more.by_header),
            by_anomaly: merge(&self.by_anomaly, &more.by_anomaly),
        }
    }
}

/// `self` for a token revoked by misuse detection: the same fingerprint a `self` header
/// would learn, marked as the detector's.
pub fn misuse_entries(authorized: &Authorized) -> FromHeader {
    let mut out = FromHeader::default();
    revoke_self(&mut out, authorized, &authorized.provider);
    for entry in &mut out.learned {
        if let LearnedKind::Exact(fp) = entry.kind {
            entry.kind = LearnedKind::Misuse(fp);
        }
    }
    out
}

const MAGIC: &[u8; 4] = b"BGL1";
const ENTRY_BYTES: usize = 1 + 8 + 8 + 8;
const NO_EXP: i64 = i64::MAX;
/// In the cutoff field of an exact entry (unused there): recorded by misuse detection.
const MISUSE_MARK: i64 = 1;

/// The shared log of learned entries. `generation` is the config's `learned_generation`:
/// a configure with another value starts an empty log (how an operator clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    pub generation: u64,
    pub entries: Vec<LearnedEntry>,
}

impl Learned {
    pub fn new(generation: u64) -> Self {
        Learned {
            generation,
            entries: Vec::new(),
        }
    }

    /// Adds entries and drops those whose token expired more than `grace` seconds ago (a
    /// token is accepted until `exp` + clock skew). Past the bound, entries still in force
    /// must go: those that stop mattering soonest (earliest `exp`) first, entries without an
    /// `exp` (which never stop mattering) last and oldest first. Returns how many entries in
    /// force were evicted, for the caller to count and log: each is a revocation that no
    /// longer applies in this process (the list service, when publishing, still has it).
    pub fn append(&mut self, new: &[LearnedEntry], now: i64, grace: i64) -> usize {
        self.entries
            .retain(|e| e.exp.is_none_or(|exp| exp.saturating_add(grace) > now));
        self.add_all(new);
        let excess = self.entries.len().saturating_sub(MAX_LEARNED_ENTRIES);
        if excess > 0 {
            // A stable sort by `exp` keeps insertion order among equals (and among `None`).
            let mut order: Vec<usize> = (0..self.entries.len()).collect();
            order.sort_by_key(|&i| self.entries.get(i).and_then(|e| e.exp).unwrap_or(i64::MAX));
            let mut evict = vec![false; self.entries.len()];
            for &i in order.iter().take(excess) {
                if let Some(slot) = evict.get_mut(i) {
                    *slot = true;
                }
            }
            let mut at = 0;
            self.entries.retain(|_| {
                let keep = !evict.get(at).copied().unwrap_or(false);
                at += 1;
                keep
            });
        }
        excess
    }

    /// An entry already held is not held twice (a repeated revocation must not crowd out
    /// others): it keeps the later `exp` (`None`, for ever, is the latest).
    fn add_all(&mut self, new: &[LearnedEntry]) {
        let mut at: std::collections::HashMap<LearnedKind, usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.kind, i))
            .collect();
        for entry in new {
            match at.get(&entry.kind).and_then(|&i| self.entries.get_mut(i)) {
                Some(held) => {
                    held.exp = match (held.exp, entry.exp) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    }
                }
                None => {
                    at.insert(entry.kind, self.entries.len());
                    self.entries.push(*entry);
                }
            }
        }
    }

    /// The entries as searchable sets, one per source (so refusals can be counted by source).
    pub fn to_sets(&self) -> LearnedSets {
        let mut by_header = SetBuilder::default();
        let mut by_anomaly = SetBuilder::default();
        for entry in &self.entries {
            match entry.kind {
                LearnedKind::Exact(fp) => by_header.add_exact_fingerprint(fp),
                LearnedKind::Misuse(fp) => by_anomaly.add_exact_fingerprint(fp),
                LearnedKind::Subject(fp, cutoff) => by_header.add_subject_fingerprint(fp, cutoff),
            }
        }
        LearnedSets {
            by_header: by_header.build("", ""),
            by_anomaly: by_anomaly.build("", ""),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12 + self.entries.len() * ENTRY_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.generation.to_le_bytes());
        for entry in &self.entries {
            let (tag, fp, cutoff) = match entry.kind {
                LearnedKind::Exact(fp) => (0u8, fp, 0),
                LearnedKind::Subject(fp, cutoff) => (1u8, fp, cutoff),
                // Tag 0 (exact) as before, so a VM on an older build reads it too; the unused
                // cutoff marks the source.
                LearnedKind::Misuse(fp) => (0u8, fp, MISUSE_MARK),
            };
            bytes.push(tag);
            bytes.extend_from_slice(&fp.to_le_bytes());
            bytes.extend_from_slice(&cutoff.to_le_bytes());
            bytes.extend_from_slice(&entry.exp.unwrap_or(NO_EXP).to_le_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let generation = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let body = rest.get(8..)?;
        if body.len() % ENTRY_BYTES != 0 {
            return None;
        }
        let entries = body
            .chunks_exact(ENTRY_BYTES)
            .map(|chunk| {
                let word =
                    |at: usize| -> Option<[u8; 8]> { chunk.get(at..at + 8)?.try_into().ok() };
                let fp = u64::from_le_bytes(word(1)?);
                let cutoff = i64::from_le_bytes(word(9)?);
                let exp = i64::from_le_bytes(word(17)?);
                let kind = match chunk.first()? {
                    0 if cutoff == MISUSE_MARK => LearnedKind::Misuse(fp),
                    0 => LearnedKind::Exact(fp),
                    1 => LearnedKind::Subject(fp, cutoff),
                    _ => return None,
                };
                Some(LearnedEntry {
                    kind,
                    exp: (exp != NO_EXP).then_some(exp),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Learned {
            generation,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::set::Probe;

    fn token(jti: Option<&str>) -> Authorized {
        Authorized {
            provider: "corp".into(),
            jti: jti.map(str::to_owned),
            sub: Some("alice".into()),
            token_sha256: [9; 32],
            id: [3; 32],
            clock_skew_seconds: 60,
            max_lifetime_seconds: None,
            exp: Some(2_000),
            introspected: false,
            token: None,
        }
    }

    fn revokes(out: &FromHeader, probe: &Probe) -> bool {
        let mut learned = Learned::new(0);
        learned.append(&out.learned, 1_000, 600);
        learned.to_sets().by_header.revokes(probe)
    }

    fn all() -> HeaderPolicy {
        HeaderPolicy::all()
    }

    #[test]
    fn self_revokes_the_authorizing_token_by_jti_else_by_identity() {
        let out = from_header("self", Some(&token(Some("j1"))), &all(), 1_000);
        assert!(out.problems.is_empty());
        assert!(revokes(
            &out,
            &Probe::new("corp", Some("j1"), Some("alice"), Some(900), None)
        ));
        assert!(!revokes(
            &out,
            &Probe::new("corp", Some("j2"), Some("alice"), Some(900), None)
        ));
        assert!(!revokes(
            &out,
            &Probe::new("other", Some("j1"), None, None, None)
        ));
        assert_eq!(
            out.publish,
            vec![PublishEntry::Jti {
                provider: Some("corp".into()),
                jti: "j1".into(),
                exp: Some(2_000)
            }]
        );
        // Without a jti: the identity ([3; 32]), never the whole-token hash ([9; 32]).
        let out = from_header("SELF", Some(&token(None)), &all(), 1_000);
        assert!(revokes(
            &out,
            &Probe::new("corp", None, None, None, Some(&[3; 32]))
        ));
        assert!(!revokes(
            &out,
            &Probe::new("corp", None, None, None, Some(&[9; 32]))
        ));
        assert_eq!(
            from_header("self", None, &all(), 1_000).problems,
            vec![HeaderProblem::SelfWithoutToken]
        );
    }

    #[test]
    fn jti_and_sub_directives_comma_separated() {
        let out = from_header(
            " jti=abc , sub=bob,, sub=",
            Some(&token(None)),
            &all(),
            1_000,
        );
        assert_eq!(out.learned.len(), 2);
        assert_eq!(out.publish.len(), 2);
        assert_eq!(out.problems, vec![HeaderProblem::Empty("sub")]);
        // An unknown directive refuses the whole value.
        let refused = from_header("jti=abc, bogus", Some(&token(None)), &all(), 1_000);
        assert!(refused.learned.is_empty() && refused.publish.is_empty());
        assert_eq!(
            refused.problems,
            vec![HeaderProblem::Unknown("bogus".into())]
        );
        assert!(revokes(
            &out,
            &Probe::new("corp", Some("abc"), None, Some(1), None)
        ));
        // The cutoff is now + the provider's skew (60 s): an IdP clock ahead by up to the skew
        // cannot mint a token that outlives the revocation.
        assert!(revokes(
            &out,
            &Probe::new("corp", None, Some("bob"), Some(1_060), None)
        ));
        assert!(!revokes(
            &out,
            &Probe::new("corp", None, Some("bob"), Some(1_061), None)
        ));
        // Without an authorizing token, entries are for every provider, with the largest skew.
        let policy = HeaderPolicy {
            max_clock_skew_seconds: 30,
            ..all()
        };
        let out = from_header("sub=bob", None, &policy, 1_000);
        assert!(revokes(
            &out,
            &Probe::new("any", None, Some("bob"), Some(1_030), None)
        ));
        assert!(!revokes(
            &out,
            &Probe::new("any", None, Some("bob"), Some(1_031), None)
        ));
    }

    /// Values with commas are quoted (RFC 8941 strings); anything that does not parse refuses
    /// the whole value, so `sub=CN=alice,OU=eng` never revokes `CN=alice`.
    #[test]
    fn quoted_values_and_unparsable_values() {
        let t = token(None);
        let out = from_header(
            r#"sub="CN=alice,OU=eng", jti="a\"b\\c""#,
            Some(&t),
            &all(),
            1_000,
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(
            out.publish,
            vec![
                PublishEntry::Subject {
                    provider: Some("corp".into()),
                    sub: "CN=alice,OU=eng".into(),
                    issued_before: 1_060
                },
                PublishEntry::Jti {
                    provider: Some("corp".into()),
                    jti: r#"a"b\c"#.into(),
                    exp: None
                },
            ]
        );
        // Unquoted, the comma splits it: `OU=eng` is an unknown directive, so nothing applies.
        let out = from_header("sub=CN=alice,OU=eng", Some(&t), &all(), 1_000);
        assert!(out.learned.is_empty() && out.publish.is_empty());
        assert_eq!(out.problems, vec![HeaderProblem::Unknown("OU".into())]);
        for bad in [
            r#"sub="unterminated"#,
            r#"sub="x" trailing"#,
            r#"sub=a"b"#,
            r#"sub="bad\escape""#,
            "sub=\"tab\there\"",
            "sub=\"caf\u{e9}\"",
            r#"jti=x\y"#,
        ] {
            let out = from_header(bad, Some(&t), &all(), 1_000);
            assert!(out.learned.is_empty(), "{bad}: {:?}", out.learned);
            assert!(
                matches!(out.problems.as_slice(), [HeaderProblem::Unparsable(_)]),
                "{bad}: {:?}",
                out.problems
            );
        }
    }

    /// Least privilege: by default an upstream may only end the session it served.
    #[test]
    fn directives_outside_the_policy_are_refused() {
        let t = token(Some("j1"));
        let out = from_header(
            "self, jti=other, sub=bob",
            Some(&t),
            &HeaderPolicy::self_only(),
            1_000,
        );
        assert_eq!(out.learned.len(), 1);
        assert!(out.self_revoked);
        assert_eq!(
            out.problems,
            vec![
                HeaderProblem::NotAllowed("jti"),
                HeaderProblem::NotAllowed("sub")
            ]
        );
        let none = HeaderPolicy {
            allow_self: false,
            ..HeaderPolicy::self_only()
        };
        let out = from_header("self", Some(&t), &none, 1_000);
        assert!(out.learned.is_empty() && !out.self_revoked);
    }

    /// With `max_lifetime_seconds`, a subject cutoff stops mattering once every token it can
    /// refuse has expired, and is pruned then.
    #[test]
    fn subject_cutoffs_are_bounded_by_the_max_lifetime() {
        let t = Authorized {
            max_lifetime_seconds: Some(3_600),
            ..token(None)
        };
        let out = from_header("sub=bob", Some(&t), &all(), 1_000);
        assert_eq!(out.learned.first().and_then(|e| e.exp), Some(1_060 + 3_600));
        let out = from_header("sub=bob", Some(&token(None)), &all(), 1_000);
        assert_eq!(out.learned.first().and_then(|e| e.exp), None);
    }

    #[test]
    fn log_round_trips_prunes_and_is_bounded() {
        let mut learned = Learned::new(7);
        let entry = |fp, exp| LearnedEntry {
            kind: LearnedKind::Exact(fp),
            exp,
        };
        learned.append(&[entry(1, Some(100)), entry(2, None)], 50, 600);
        learned.entries.push(LearnedEntry {
            kind: LearnedKind::Subject(3, 40),
            exp: None,
        });
        assert_eq!(Learned::decode(&learned.encode()), Some(learned.clone()));
        assert!(Learned::decode(b"BGL1").is_none());
        assert!(Learned::decode(&learned.encode()[..20]).is_none());
        learned.append(&[], 100 + 600, 600);
        assert_eq!(
            learned.entries.len(),
            2,
            "the dead token's entry is dropped"
        );
        let many: Vec<LearnedEntry> = (0..MAX_LEARNED_ENTRIES as u64)
            .map(|i| entry(i + 10, None))
            .collect();
        assert_eq!(learned.append(&many, 0, 600), 2);
        assert_eq!(learned.entries.len(), MAX_LEARNED_ENTRIES);
        // Over the bound, what stops mattering soonest goes first; then the oldest without exp.
        let mut learned = Learned::new(0);
        let filler: Vec<LearnedEntry> = (0..MAX_LEARNED_ENTRIES as u64 - 1)
            .map(|i| entry(i + 10, None))
            .collect();
        learned.append(&filler, 0, 600);
        let (soon, later) = (entry(1, Some(5_000)), entry(2, Some(9_000)));
        assert_eq!(learned.append(&[later, soon], 0, 600), 1);
        assert!(!learned.entries.contains(&soon) && learned.entries.contains(&later));
        assert_eq!(learned.append(&[entry(3, None)], 0, 600), 1);
        assert!(!learned.entries.contains(&later));
        assert_eq!(learned.append(&[entry(4, None)], 0, 600), 1);
        assert!(!learned.entries.contains(&entry(10, None)));
        assert!(
            learned.entries.contains(&entry(11, None)) && learned.entries.contains(&entry(4, None))
        );
    }

    /// A repeated directive is learned and published once, and many directives in one value
    /// are refused: an upstream cannot crowd other revocations out of the bounded log.
    #[test]
    fn repetitions_are_learned_once_and_floods_refused() {
        let t = token(Some("j1"));
        let out = from_header(
            "self, self,SELF",
            Some(&t),
            &HeaderPolicy::self_only(),
            1_000,
        );
        assert_eq!((out.learned.len(), out.publish.len()), (1, 1));
        let flood = "self,".repeat(MAX_DIRECTIVES_PER_VALUE + 1);
        let out = from_header(&flood, Some(&t), &HeaderPolicy::self_only(), 1_000);
        assert!(out.learned.is_empty());
        assert!(matches!(
            out.problems.as_slice(),
            [HeaderProblem::Unparsable(_)]
        ));
        // The log holds an entry once, with the later exp; a live revocation is not evicted by
        // the same entry arriving again and again.
        let mut learned = Learned::new(0);
        let victim = LearnedEntry {
            kind: LearnedKind::Exact(42),
            exp: Some(1_500),
        };
        learned.append(&[victim], 1_000, 600);
        let repeated = LearnedEntry {
            kind: LearnedKind::Exact(7),
            exp: Some(9_000),
        };
        let later = LearnedEntry {
            exp: Some(9_500),
            ..repeated
        };
        for _ in 0..1_000 {
            assert_eq!(learned.append(&[repeated, repeated], 1_000, 600), 0);
        }
        learned.append(&[later], 1_000, 600);
        assert_eq!(learned.entries, vec![victim, later]);
    }

    /// The header's name invites an upstream to put a token in it: never echoed to the log.
    #[test]
    fn an_unknown_directive_is_logged_without_its_text() {
        let secret = "2YotnFZFEjr1zCsicMWpAA";
        let out = from_header(secret, Some(&token(None)), &all(), 1_000);
        let logged: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
        assert!(!logged.iter().any(|l| l.contains(secret)), "{logged:?}");
        assert!(
            logged.iter().any(|l| l.contains("of 22 bytes")),
            "{logged:?}"
        );
        let out = from_header("bogus", Some(&token(None)), &all(), 1_000);
        assert!(out.problems[0].to_string().contains("\"bogus\""));
    }
}
