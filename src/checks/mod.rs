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
