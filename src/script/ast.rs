//! The parsed form of a scenario file. Produced by [`super::parse`], consumed by the engine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::pattern::Pattern;

/// A position in a scenario file, 1-based, for error messages and reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

/// The state the harness brings a session to before the script's first line for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum InitialState {
    /// Connected, greeting read (and matched by leading `S:` lines if the script has them).
    NotAuthenticated,
    /// Logged in as the session's account (default).
    Authenticated,
    /// Logged in and `SELECT {mailbox}` done.
    Selected,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionSpec {
    /// Account name (e.g. `alice`), looked up among the target's accounts.
    /// `None`: the target's first account.
    pub user: Option<String>,
    pub protocol: Protocol,
    pub state: InitialState,
}

/// A message put into a fresh mailbox before the script runs (by APPEND).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeedMessage {
    /// Name of the mailbox variable (one of `Scenario::mailboxes`).
    pub mailbox: String,
    /// Flags given to APPEND, e.g. `\Seen`.
    pub flags: Vec<String>,
    /// The RFC 5322 message, CRLF line endings.
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    pub file: PathBuf,
    pub protocol: Protocol,
    /// RFC sections the scenario exercises, e.g. `RFC 3501 6.3.11`.
    pub spec: Vec<String>,
    /// Capabilities the server must announce; a missing one skips the scenario.
    pub requires: Vec<String>,
    /// Sessions by name; the script's `C1:`/`S1:` prefix names them (`C:` is the session "").
    pub sessions: BTreeMap<String, SessionSpec>,
    /// Names of the fresh, uniquely named mailboxes created per run (variables `{name}`).
    pub mailboxes: Vec<String>,
    pub seed: Vec<SeedMessage>,
    /// Target name -> reason (should cite the RFC).
    pub expected_failures: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

/// One piece of a script, in file order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Step {
    /// Consecutive client lines of one session, sent before reading.
    Send {
        session: String,
        messages: Vec<ClientMessage>,
    },
    /// Consecutive server lines of one session, matched against what arrives.
    Expect {
        session: String,
        lines: Vec<ExpectLine>,
    },
}

/// One client message (a command, or a continuation line such as `DONE`), possibly with literals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClientMessage {
    pub loc: Loc,
    /// The tag if the first word looks like one (used to wait for its completion).
    pub tag: Option<String>,
    pub segments: Vec<Segment>,
}

/// Text up to (and including) a literal announcement, then the literal's bytes.
/// The last segment has no literal; CRLF follows its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    /// Text with variables; if `literal` is set it ends with the `{N}` / `{N+}` announcement.
    pub text: Template,
    pub literal: Option<Literal>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Literal {
    /// The literal's bytes (no variable substitution inside literals).
    pub data: Vec<u8>,
    /// `{N+}` (LITERAL+, RFC 7888): sent without waiting for `+`.
    pub non_sync: bool,
}

/// Text with `{var}` references, substituted at run time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Template(pub Vec<TemplatePart>);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TemplatePart {
    Text(String),
    Var(String),
}

/// `S:` must appear, `S?:` may appear, `S!:` must not appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Presence {
    Must,
    May,
    MustNot,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExpectLine {
    pub loc: Loc,
    pub presence: Presence,
    /// The source text of the line (after the prefix), for reports.
    pub source: String,
    #[serde(skip)]
    pub pattern: Pattern,
}
