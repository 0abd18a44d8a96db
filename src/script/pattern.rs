//! Server-line patterns: IMAP response text with captures, matched on parsed values.
//! CONTRACT STUB - the script-language helper replaces this file.

use std::collections::BTreeMap;

/// A value captured from a server line (or bound before the run, e.g. `{mailbox}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Value {
    Number(u64),
    Atom(String),
    String(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl Value {
    /// How the value is written into a client line when a template uses it.
    pub fn to_template_text(&self) -> String {
        todo!()
    }
}

/// Variables known at a point of the run: predefined ones and captures so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings(pub BTreeMap<String, Value>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternKind {
    /// `A1 OK ...`; `statuses` upper-case, more than one for `OK|NO`.
    Tagged { tag: String, statuses: Vec<String> },
    Untagged,
    Continuation,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pattern {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct PatternError {
    /// 1-based column within the pattern text.
    pub column: usize,
    pub message: String,
}

/// Why an actual server message did not match a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

impl Pattern {
    pub fn parse(_text: &[u8]) -> Result<Pattern, PatternError> {
        todo!()
    }
    pub fn kind(&self) -> &PatternKind {
        todo!()
    }
    /// Match one whole server message (line plus any literals, CRLF included).
    /// On success returns the new captures (not yet merged into `vars`).
    pub fn matches(&self, _actual: &[u8], _vars: &Bindings) -> Result<Bindings, Mismatch> {
        todo!()
    }
}
