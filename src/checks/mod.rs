//! Always-on protocol checks. Pure: events in, violations out; no I/O, no printing.

pub mod imap;
pub mod pop3;
pub mod smtp;

use crate::script::Loc;

/// The requirement level of the RFC text a rule comes from (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Breaking it fails the scenario.
    Must,
    /// Departing from it is a warning; it fails only under `--strict`.
    Should,
}

/// One rule a server can break: a stable id, the RFC's level and section, and one line
/// saying what it requires. Each protocol keeps its catalogue in a `rules` list of these,
/// and every violation is built from an entry (`docs/checks.md` lists the same tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub level: Level,
    pub rfc: &'static str,
    /// One line: what the rule requires.
    pub summary: &'static str,
}

impl Rule {
    /// A violation of this rule seen in `session`, with the offending bytes.
    pub fn violation(&self, session: &str, message: impl Into<String>, bytes: &[u8]) -> Violation {
        Violation {
            rule: self.id,
            level: self.level,
            rfc: self.rfc,
            message: message.into(),
            session: session.to_string(),
            bytes: bytes.to_vec(),
            loc: None,
        }
    }
}

/// A rule from RFC text that says MUST, MUST NOT, SHALL or the formal syntax.
pub(crate) const fn must(id: &'static str, rfc: &'static str, summary: &'static str) -> Rule {
    Rule {
        id,
        level: Level::Must,
        rfc,
        summary,
    }
}

/// A rule from RFC text that says SHOULD or RECOMMENDED.
pub(crate) const fn should(id: &'static str, rfc: &'static str, summary: &'static str) -> Rule {
    Rule {
        id,
        level: Level::Should,
        rfc,
        summary,
    }
}

/// A rule broken by the server.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// Stable id, e.g. `imap.tag.echo`.
    pub rule: &'static str,
    pub level: Level,
    /// e.g. `RFC 3501 7.1`.
    pub rfc: &'static str,
    pub message: String,
    pub session: String,
    /// The bytes seen (the offending server message, lossy in reports).
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The script line being run when it was seen; filled by the engine.
    pub loc: Option<Loc>,
}
