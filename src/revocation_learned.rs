//! Revocations learned at run time from the revocation response header: what the header
//! says, and the log of learned entries every worker of the process shares.

use crate::revocation::{fingerprint, Kind, RevocationSet, SetBuilder, ANY_PROVIDER};
use crate::revocation_doc::{digest_to_hex, PublishEntry};

/// Learned entries kept at most; beyond it the oldest go (they are also in the list service
/// when publishing is on). A bound keeps the per-request sync cheap.
pub const MAX_LEARNED_ENTRIES: usize = 100_000;

/// The token that authorized a request, for a `self` revocation in its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub provider: String,
    pub jti: Option<String>,
    pub sub: Option<String>,
    pub token_sha256: [u8; 32],
    pub exp: Option<i64>,
    /// Decided by introspection: a revocation also drops the cached answer.
    pub introspected: bool,
    /// The token itself, kept only while the request lasts and only when revocations are
    /// forwarded to the identity provider (RFC 7009 needs the token). Never logged.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
                "unknown directive {:?} (expected self, jti=<id> or sub=<subject>)",
                directive.chars().take(40).collect::<String>()
            ),
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

/// `self`, `jti=<id>`, `sub=<subject>`, comma-separated. Entries are scoped to the provider
/// whose token authorized the request (jti and sub are unique per issuer only); on a request
/// without a token they apply to every provider.
pub fn from_header(value: &str, authorized: Option<&Authorized>, now: i64) -> FromHeader {
    let scope = authorized.map_or(ANY_PROVIDER, |a| a.provider.as_str());
    let provider = authorized.map(|a| a.provider.clone());
    let mut out = FromHeader::default();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if directive.eq_ignore_ascii_case("self") {
            let Some(token) = authorized else {
                out.problems.push(HeaderProblem::SelfWithoutToken);
                continue;
            };
            let (fp, entry) = match &token.jti {
                Some(jti) => (
                    fingerprint(Kind::Jti, scope, jti.as_bytes()),
                    PublishEntry::Jti {
                        provider: provider.clone(),
                        jti: jti.clone(),
                        exp: token.exp,
                    },
                ),
                None => (
                    fingerprint(Kind::TokenSha256, scope, &token.token_sha256),
                    PublishEntry::TokenSha256 {
                        provider: provider.clone(),
                        hex: digest_to_hex(&token.token_sha256),
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
        } else if let Some(jti) = strip_prefix_ignore_case(directive, "jti=") {
            if jti.is_empty() {
                out.problems.push(HeaderProblem::Empty("jti"));
                continue;
            }
            out.learned.push(LearnedEntry {
                kind: LearnedKind::Exact(fingerprint(Kind::Jti, scope, jti.as_bytes())),
                exp: None,
            });
            out.publish.push(PublishEntry::Jti {
                provider: provider.clone(),
                jti: jti.to_owned(),
                exp: None,
            });
        } else if let Some(sub) = strip_prefix_ignore_case(directive, "sub=") {
            if sub.is_empty() {
                out.problems.push(HeaderProblem::Empty("sub"));
                continue;
            }
            out.learned.push(LearnedEntry {
                kind: LearnedKind::Subject(fingerprint(Kind::Subject, scope, sub.as_bytes()), now),
                exp: None,
            });
            out.publish.push(PublishEntry::Subject {
                provider: provider.clone(),
                sub: sub.to_owned(),
                issued_before: now,
            });
        } else {
            out.problems
                .push(HeaderProblem::Unknown(directive.to_owned()));
        }
    }
    out
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..).unwrap_or_default().trim())
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
pub fn misuse_entries(authorized: &Authorized, now: i64) -> FromHeader {
    let mut out = from_header("self", Some(authorized), now);
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

    /// Adds entries, drops those whose token expired more than `grace` seconds ago (a token
    /// is accepted until `exp` + clock skew) and, past the bound, the oldest. Returns how many
    /// live entries were evicted by the bound.
    pub fn append(&mut self, new: &[LearnedEntry], now: i64, grace: i64) -> usize {
        self.entries
            .retain(|e| e.exp.is_none_or(|exp| exp.saturating_add(grace) > now));
        self.entries.extend_from_slice(new);
        let excess = self.entries.len().saturating_sub(MAX_LEARNED_ENTRIES);
        self.entries.drain(..excess);
        excess
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
    use crate::revocation::Probe;

    fn token(jti: Option<&str>) -> Authorized {
        Authorized {
            provider: "corp".into(),
            jti: jti.map(str::to_owned),
            sub: Some("alice".into()),
            token_sha256: [3; 32],
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

    #[test]
    fn self_revokes_the_authorizing_token_by_jti_else_by_hash() {
        let out = from_header("self", Some(&token(Some("j1"))), 1_000);
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
        let out = from_header("SELF", Some(&token(None)), 1_000);
        assert!(revokes(
            &out,
            &Probe::new("corp", None, None, None, Some(&[3; 32]))
        ));
        assert!(!revokes(
            &out,
            &Probe::new("corp", None, None, None, Some(&[4; 32]))
        ));
        assert_eq!(
            from_header("self", None, 1_000).problems,
            vec![HeaderProblem::SelfWithoutToken]
        );
    }

    #[test]
    fn jti_and_sub_directives_comma_separated() {
        let out = from_header(" jti=abc , sub=bob,bogus, sub=", Some(&token(None)), 1_000);
        assert_eq!(out.learned.len(), 2);
        assert_eq!(out.publish.len(), 2);
        assert_eq!(
            out.problems,
            vec![
                HeaderProblem::Unknown("bogus".into()),
                HeaderProblem::Empty("sub")
            ]
        );
        assert!(revokes(
            &out,
            &Probe::new("corp", Some("abc"), None, Some(1), None)
        ));
        assert!(revokes(
            &out,
            &Probe::new("corp", None, Some("bob"), Some(1_000), None)
        ));
        assert!(!revokes(
            &out,
            &Probe::new("corp", None, Some("bob"), Some(1_001), None)
        ));
        // Without an authorizing token, entries are for every provider.
        let out = from_header("sub=bob", None, 1_000);
        assert!(revokes(
            &out,
            &Probe::new("any", None, Some("bob"), Some(5), None)
        ));
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
            .map(|i| entry(i, None))
            .collect();
        assert_eq!(learned.append(&many, 0, 600), 2);
        assert_eq!(learned.entries.len(), MAX_LEARNED_ENTRIES);
    }
}
