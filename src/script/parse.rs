//! Loading scenario files: RON into a raw struct, then validation and conversion into
//! [`Scenario`], with every error placed at file:line:column.
//!
//! RON itself reports line:column. For everything checked after deserialising, a small scanner
//! of the RON text (`Source`) finds where top-level fields and their strings are, and where the
//! `script` string's content starts, so script lines carry their real file line numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ast::{
    ClientMessage, ExpectLine, InitialState, Literal, Loc, Presence, Protocol, Scenario,
    SeedMessage, Segment, SessionSpec, Step, Template,
};
use super::pattern::Pattern;

/// A malformed scenario: where and why, with the offending text.
#[derive(Debug, thiserror::Error)]
#[error("{loc}: {message}\n    {snippet}")]
pub struct ScriptError {
    pub loc: Loc,
    pub message: String,
    pub snippet: String,
}

/// Variables every scenario has besides its mailbox variables.
pub const PREDEFINED_VARS: [&str; 6] = [
    "user",
    "password",
    "sep",
    "auth_plain",
    "user_b64",
    "password_b64",
];

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScriptError> {
    parse_str(path, &read(path, "the scenario file")?)
}

/// A file's text; an error at its first line naming `what` could not be read.
fn read(path: &Path, what: &str) -> Result<String, ScriptError> {
    std::fs::read_to_string(path).map_err(|e| ScriptError {
        loc: Loc {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
        },
        message: format!("cannot read {what}: {e}"),
        snippet: String::new(),
    })
}

/// Parses scenario text; `path` is used for locations and kept in [`Scenario::file`].
pub fn parse_str(path: &Path, text: &str) -> Result<Scenario, ScriptError> {
    parse_with(path, text, false)
}

/// Reads and parses a recording (`mailtape replay`, `shrink`): a scenario file whose `S`
/// lines are what a server said, compared as text rather than matched. A server line that is
/// no valid pattern (unbalanced brackets or quotes in a server's text) still loads, as a line
/// whose only meaning is its tag and status, instead of making the whole recording unusable.
pub fn load_recording(path: &Path) -> Result<Scenario, ScriptError> {
    parse_recording(path, &read(path, "the recording")?)
}

/// [`load_recording`] from text.
pub fn parse_recording(path: &Path, text: &str) -> Result<Scenario, ScriptError> {
    parse_with(path, text, true)
}

fn parse_with(path: &Path, text: &str, recording: bool) -> Result<Scenario, ScriptError> {
    let src = Source::new(path, text);
    let options =
        ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let raw: RawScenario = options.from_str(text).map_err(|e| {
        src.error_at_line_col(e.span.start.line, e.span.start.col, e.code.to_string())
    })?;
    convert(&src, raw, recording)
}

// ---------------------------------------------------------------------------------------------
// The RON shape

#[derive(Debug, Deserialize)]
#[serde(rename = "Scenario", deny_unknown_fields)]
struct RawScenario {
    id: String,
    title: String,
    spec: Vec<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    sessions: BTreeMap<String, RawSession>,
    #[serde(default)]
    mailboxes: Option<Vec<String>>,
    #[serde(default)]
    seed: Vec<RawSeed>,
    #[serde(default)]
    expected_failures: BTreeMap<String, String>,
    script: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeed {
    mailbox: String,
    #[serde(default)]
    flags: Vec<String>,
    message: String,
}

// ---------------------------------------------------------------------------------------------
// Locating things in the RON text

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokKind {
    Ident,
    /// A string (plain or raw); `start..end` is its content.
    Str,
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: TokKind,
    /// Where the token is written (a string's opening quote or `r#"`).
    open: usize,
    /// For strings, where the content starts; otherwise equal to `open`.
    start: usize,
    end: usize,
    depth: usize,
}

/// The scenario text with a token list, for turning byte offsets into file:line:column.
struct Source<'a> {
    file: PathBuf,
    text: &'a str,
    toks: Vec<Tok>,
    /// Byte offset of each line's start: every script message gets a location, and counting
    /// newlines from the file start for each was quadratic in the length of a long recording.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(path: &Path, text: &'a str) -> Self {
        Source {
            file: path.to_path_buf(),
            text,
            toks: scan(text),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        }
    }

    fn line_text(&self, line: usize) -> &str {
        self.text
            .split('\n')
            .nth(line.saturating_sub(1))
            .unwrap_or_default()
            .trim_end_matches('\r')
    }

    fn error_at_line_col(&self, line: usize, column: usize, message: String) -> ScriptError {
        ScriptError {
            loc: Loc {
                file: self.file.clone(),
                line,
                column,
            },
            message,
            snippet: self.line_text(line).to_owned(),
        }
    }

    /// Line and (character) column of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        if !self.text.is_char_boundary(offset) {
            return (1, 1);
        }
        // Lines starting at or before `offset`; the first starts at 0, so there is one.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn loc(&self, offset: usize) -> Loc {
        let (line, column) = self.line_col(offset);
        Loc {
            file: self.file.clone(),
            line,
            column,
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> ScriptError {
        let (line, column) = self.line_col(offset);
        self.error_at_line_col(line, column, message.into())
    }

    /// Index of the first token of a top-level field's value, and the token range of the value.
    fn field(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let is_field = |i: usize| {
            let t = self.toks[i];
            t.kind == TokKind::Ident
                && t.depth == 1
                && self
                    .toks
                    .get(i + 1)
                    .is_some_and(|n| n.kind == TokKind::Punct && &self.text[n.start..n.end] == ":")
        };
        let at = (0..self.toks.len())
            .find(|&i| is_field(i) && &self.text[self.toks[i].start..self.toks[i].end] == name)?;
        let end = (at + 2..self.toks.len())
            .find(|&i| is_field(i))
            .unwrap_or(self.toks.len());
        Some(at + 2..end)
    }

    /// Offset of a top-level field's value, or of the file start if it is absent.
    fn field_offset(&self, name: &str) -> usize {
        self.field(name)
            .and_then(|r| self.toks.get(r.start))
            .map_or(0, |t| t.open)
    }

    /// Offset of the `nth` string with content `content` inside a top-level field's value.
    fn string_in(&self, field: &str, content: &str, nth: usize) -> Option<usize> {
        let range = self.field(field)?;
        self.toks[range]
            .iter()
            .filter(|t| matches!(t.kind, TokKind::Str) && self.str_content(t) == content)
            .nth(nth)
            .map(|t| t.open)
    }

    /// Offset of the value after the `nth` `ident:` inside a top-level field's value.
    fn ident_value_in(&self, field: &str, ident: &str, nth: usize) -> Option<usize> {
        let range = self.field(field)?;
        let toks = &self.toks[range];
        toks.windows(3)
            .filter(|w| {
                w[0].kind == TokKind::Ident
                    && &self.text[w[0].start..w[0].end] == ident
                    && &self.text[w[1].start..w[1].end] == ":"
            })
            .nth(nth)
            .map(|w| w[2].open)
    }

    /// A string's content as written (escapes not decoded; enough to find plain names).
    fn str_content(&self, t: &Tok) -> &str {
        &self.text[t.start..t.end]
    }
}

/// Tokens of RON text with nesting depth: identifiers, strings, punctuation; comments skipped.
fn scan(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                let open = i;
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                let end = i.min(b.len());
                toks.push(Tok {
                    kind: TokKind::Str,
                    open,
                    start,
                    end,
                    depth,
                });
                i += 1;
            }
            b'r' if matches!(b.get(i + 1), Some(b'#') | Some(b'"')) => {
                let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    // `r#ident` (a raw identifier) or something odd: skip the `r`.
                    i += 1;
                    continue;
                }
                let start = i + 2 + hashes;
                let closing: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[start..]
                    .windows(closing.len())
                    .position(|w| w == closing.as_slice())
                    .map_or(b.len(), |p| start + p);
                toks.push(Tok {
                    kind: TokKind::Str,
                    open: i,
                    start,
                    end,
                    depth,
                });
                i = end + closing.len();
            }
            b'(' | b'[' | b'{' => {
                toks.push(Tok {
                    kind: TokKind::Punct,
                    open: i,
                    start: i,
                    end: i + 1,
                    depth,
                });
                depth += 1;
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                toks.push(Tok {
                    kind: TokKind::Punct,
                    open: i,
                    start: i,
                    end: i + 1,
                    depth,
                });
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                toks.push(Tok {
                    kind: TokKind::Ident,
                    open: start,
                    start,
                    end: i,
                    depth,
                });
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                toks.push(Tok {
                    kind: TokKind::Punct,
                    open: i,
                    start: i,
                    end: i + 1,
                    depth,
                });
                i += 1;
            }
        }
    }
    toks
}

// ---------------------------------------------------------------------------------------------
// Validation and conversion

fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "imap" => Some(Protocol::Imap),
        "pop3" => Some(Protocol::Pop3),
        "smtp" => Some(Protocol::Smtp),
        _ => None,
    }
}

fn is_session_name(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn convert(src: &Source<'_>, raw: RawScenario, recording: bool) -> Result<Scenario, ScriptError> {
    let at = |field: &str| src.field_offset(field);
    if raw.id.trim().is_empty() {
        return Err(src.error(at("id"), "`id` must not be empty"));
    }
    if raw.id.chars().any(char::is_whitespace) {
        return Err(src.error(at("id"), "`id` must not contain whitespace"));
    }
    if raw.title.trim().is_empty() {
        return Err(src.error(at("title"), "`title` must not be empty"));
    }
    if raw.spec.is_empty() {
        return Err(src.error(
            at("spec"),
            "`spec` must name at least one RFC section, e.g. [\"RFC 3501 6.3.11\"]",
        ));
    }
    if let Some(i) = raw.spec.iter().position(|s| s.trim().is_empty()) {
        let off = src.string_in("spec", &raw.spec[i], 0).unwrap_or(at("spec"));
        return Err(src.error(off, format!("`spec` entry {} is empty", i + 1)));
    }
    let protocol = match &raw.protocol {
        None => Protocol::Imap,
        Some(p) => parse_protocol(p).ok_or_else(|| {
            src.error(
                at("protocol"),
                format!("unknown protocol `{p}` (imap, pop3, smtp)"),
            )
        })?,
    };
    if let Some(r) = raw.requires.iter().find(|r| r.trim().is_empty()) {
        let off = src.string_in("requires", r, 0).unwrap_or(at("requires"));
        return Err(src.error(off, "`requires` entries must not be empty"));
    }

    let mailboxes = raw.mailboxes.unwrap_or_else(|| vec!["mailbox".to_owned()]);
    let mut seen = BTreeSet::new();
    for name in &mailboxes {
        // Where the name is written, looked up only for an error: each lookup scans the
        // file's tokens, so doing it for every name was quadratic in the number of names.
        let off = || {
            src.string_in("mailboxes", name, 0)
                .unwrap_or_else(|| at("mailboxes"))
        };
        if !super::pattern::is_var_name(name) || name == "_" {
            return Err(src.error(
                off(),
                format!(
                    "mailbox variable `{name}` must be letters, digits and `_`, not starting with a digit"
                ),
            ));
        }
        if PREDEFINED_VARS.contains(&name.as_str()) {
            return Err(src.error(
                off(),
                format!("mailbox variable `{name}` clashes with the predefined `{{{name}}}`"),
            ));
        }
        if !seen.insert(name.as_str()) {
            let off = src.string_in("mailboxes", name, 1).unwrap_or_else(off);
            return Err(src.error(off, format!("mailbox variable `{name}` is listed twice")));
        }
    }

    let mut sessions = BTreeMap::new();
    let has_mailbox = mailboxes.iter().any(|m| m == "mailbox");
    for (name, s) in &raw.sessions {
        // Looked up only for an error, like the mailbox names above.
        let off = || {
            src.string_in("sessions", name, 0)
                .unwrap_or_else(|| at("sessions"))
        };
        if !is_session_name(name) {
            return Err(src.error(
                off(),
                format!("session name `{name}` may only hold letters, digits and `_`"),
            ));
        }
        let state = match s.state.as_deref() {
            None | Some("authenticated") => InitialState::Authenticated,
            Some("not-authenticated") => InitialState::NotAuthenticated,
            Some("selected") => InitialState::Selected,
            Some(other) => {
                let off = src.string_in("sessions", other, 0).unwrap_or_else(off);
                return Err(src.error(
                    off,
                    format!("unknown state `{other}` (not-authenticated, authenticated, selected)"),
                ));
            }
        };
        if state == InitialState::Selected && !has_mailbox {
            return Err(src.error(
                off(),
                "state `selected` does SELECT {mailbox}, but there is no mailbox variable `mailbox`",
            ));
        }
        let session_protocol = match &s.protocol {
            None => protocol,
            Some(p) => parse_protocol(p).ok_or_else(|| {
                let off = src.string_in("sessions", p, 0).unwrap_or_else(off);
                src.error(off, format!("unknown protocol `{p}` (imap, pop3, smtp)"))
            })?,
        };
        if let Some(u) = &s.user
            && u.trim().is_empty()
        {
            return Err(src.error(off(), format!("session `{name}` has an empty `user`")));
        }
        sessions.insert(
            name.clone(),
            SessionSpec {
                user: s.user.clone(),
                protocol: session_protocol,
                state,
            },
        );
    }
    let declared = !sessions.is_empty();
    if !declared {
        sessions.insert(
            String::new(),
            SessionSpec {
                user: None,
                protocol,
                state: InitialState::Authenticated,
            },
        );
    }

    let mut seed = Vec::new();
    for (i, s) in raw.seed.iter().enumerate() {
        // `INBOX` (RFC 3501 5.1) is where POP3 and SMTP scenarios find their mail.
        if !mailboxes.contains(&s.mailbox) && s.mailbox != "INBOX" {
            let off = src
                .ident_value_in("seed", "mailbox", i)
                .unwrap_or(at("seed"));
            return Err(src.error(
                off,
                format!(
                    "seed message {} goes to `{}`, which is neither INBOX nor a mailbox variable (mailboxes: {})",
                    i + 1,
                    s.mailbox,
                    mailboxes.join(", ")
                ),
            ));
        }
        if let Some(f) = s
            .flags
            .iter()
            .find(|f| f.trim().is_empty() || f.contains(' '))
        {
            let off = src.ident_value_in("seed", "flags", i).unwrap_or(at("seed"));
            return Err(src.error(off, format!("seed flag `{f}` is empty or has a space")));
        }
        if s.message.is_empty() {
            let off = src
                .ident_value_in("seed", "message", i)
                .unwrap_or(at("seed"));
            return Err(src.error(off, "seed message is empty"));
        }
        seed.push(SeedMessage {
            mailbox: s.mailbox.clone(),
            flags: s.flags.clone(),
            message: crlf(&s.message),
        });
    }

    for (target, reason) in &raw.expected_failures {
        if reason.trim().is_empty() {
            let off = src
                .string_in("expected_failures", target, 0)
                .unwrap_or(at("expected_failures"));
            return Err(src.error(
                off,
                format!("expected failure for `{target}` needs a reason citing the RFC"),
            ));
        }
    }

    let script = ScriptSource::locate(src, &raw.script);
    let mut known: BTreeSet<String> = mailboxes.iter().cloned().collect();
    known.extend(PREDEFINED_VARS.iter().map(|s| s.to_string()));
    let steps = ScriptParser {
        src,
        script: &script,
        sessions: &sessions,
        declared,
        known,
        steps: Vec::new(),
        recording,
    }
    .run()?;

    Ok(Scenario {
        id: raw.id,
        title: raw.title,
        file: src.file.clone(),
        protocol,
        spec: raw.spec,
        requires: raw.requires,
        sessions,
        mailboxes,
        seed,
        expected_failures: raw.expected_failures,
        steps,
    })
}

/// Bare LF becomes CRLF, so seed messages written with plain newlines are valid RFC 5322.
fn crlf(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 16);
    let mut prev = 0u8;
    for &b in s.as_bytes() {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The script

/// Where the script's text sits in the file.
struct ScriptSource<'a> {
    text: &'a str,
    /// Byte offset of the script content in the file when it is written there verbatim
    /// (a raw string, or a plain one without escapes).
    exact: Option<usize>,
    /// Offset of the `script` value (approximate positions use its line).
    value: usize,
}

impl<'a> ScriptSource<'a> {
    fn locate(src: &Source<'_>, text: &'a str) -> Self {
        let tok = src
            .field("script")
            .and_then(|r| src.toks.get(r.start).copied());
        let exact = tok.and_then(|t| {
            let verbatim =
                matches!(t.kind, TokKind::Str) && src.text.get(t.start..t.end) == Some(text);
            verbatim.then_some(t.start)
        });
        ScriptSource {
            text,
            exact,
            value: tok.map_or(0, |t| t.start),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Client,
    Server(Presence),
    /// `S~:` a must-line of a polling step: the batch before it is sent again until the
    /// step matches, up to the scenario's `poll_seconds`.
    Poll,
}

/// One script line after its prefix.
#[derive(Debug, Clone)]
struct Line<'a> {
    /// 0-based index among the script's lines.
    index: usize,
    /// Byte offset of the line's start within the script.
    start: usize,
    dir: Dir,
    session: &'a str,
    content: &'a str,
    /// Byte offset of `content` within the script line.
    content_col: usize,
}

/// A literal being collected from the lines after its announcement.
struct Collecting<'a> {
    announced: Line<'a>,
    remaining: usize,
    data: Vec<u8>,
    /// A continuation request line was seen (client literals only).
    saw_plus: bool,
}

/// A client message being built.
struct PendingClient<'a> {
    first: Line<'a>,
    segments: Vec<Segment>,
    literal: Option<(Collecting<'a>, bool)>,
    /// The literal ended at a line end: the next C line continues the message.
    continues: Option<Line<'a>>,
}

/// A server message with literals being joined.
struct PendingServer<'a> {
    first: Line<'a>,
    joined: Vec<u8>,
    /// (offset in `joined`, line, offset of the piece within the line's content)
    pieces: Vec<(usize, Line<'a>, usize)>,
    literal: Option<Collecting<'a>>,
    continues: bool,
}

struct ScriptParser<'s, 'a> {
    src: &'s Source<'s>,
    script: &'s ScriptSource<'a>,
    sessions: &'s BTreeMap<String, SessionSpec>,
    declared: bool,
    known: BTreeSet<String>,
    steps: Vec<Step>,
    /// Parsing a recording: a server line that is no valid pattern is kept with a fallback.
    recording: bool,
}

/// The pattern a recorded server line that does not parse stands for: its tag and status
/// (`a1 OK`), a continuation request, or any untagged message.
fn fallback_pattern(text: &[u8]) -> Pattern {
    let mut words = text.split(|b| *b == b' ');
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default().to_ascii_uppercase();
    let short = if first.starts_with(b"+") {
        b"+".to_vec()
    } else if first != b"*" && matches!(second.as_slice(), b"OK" | b"NO" | b"BAD") {
        [first, b" ", second.as_slice()].concat()
    } else {
        return Pattern::default();
    };
    Pattern::parse(&short).unwrap_or_default()
}

/// The prefix a line was written with, e.g. `S1?`.
fn prefix_of(line: &Line<'_>) -> String {
    let (letter, mark) = match line.dir {
        Dir::Client => ("C", ""),
        Dir::Server(Presence::Must) => ("S", ""),
        Dir::Server(Presence::May) => ("S", "?"),
        Dir::Server(Presence::MustNot) => ("S", "!"),
        Dir::Poll => ("S", "~"),
    };
    format!("{letter}{}{mark}", line.session)
}

/// A `{N}` / `{N+}` at the end of a line: (count, non-synchronizing).
fn trailing_literal(text: &str) -> Option<(usize, bool)> {
    let body = text.strip_suffix('}')?;
    let open = body.rfind('{')?;
    let inner = &body[open + 1..];
    let (digits, non_sync) = match inner.strip_suffix('+') {
        Some(d) => (d, true),
        None => (inner, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, non_sync))
}

/// The tag of a client line: its first word, when a second word follows and the first is a
/// valid IMAP tag (so `DONE` or a bare base64 line is a continuation, not a command).
fn detect_tag(text: &str) -> Option<String> {
    let mut words = text.split(' ');
    let first = words.next()?;
    words.next()?;
    let valid = !first.is_empty()
        && first
            .bytes()
            .all(|b| b > b' ' && b < 0x7f && !b"(){%*\"\\]+".contains(&b));
    valid.then(|| first.to_owned())
}

impl<'s, 'a> ScriptParser<'s, 'a> {
    /// Literals, tags and IMAP patterns apply to IMAP sessions only.
    fn is_imap(&self, session: &str) -> bool {
        self.sessions
            .get(session)
            .is_none_or(|s| s.protocol == Protocol::Imap)
    }

    // -- locations

    fn loc(&self, line: &Line<'_>, col: usize) -> Loc {
        match self.script.exact {
            Some(base) => self.src.loc(base + line.start + col),
            None => {
                let (l, _) = self.src.line_col(self.script.value);
                Loc {
                    file: self.src.file.clone(),
                    line: l + line.index,
                    column: col + 1,
                }
            }
        }
    }

    fn error(&self, line: &Line<'_>, col: usize, message: impl Into<String>) -> ScriptError {
        let loc = self.loc(line, col);
        let snippet = match self.script.exact {
            Some(_) => self.src.line_text(loc.line).to_owned(),
            None => self
                .script
                .text
                .split('\n')
                .nth(line.index)
                .unwrap_or_default()
                .trim_end_matches('\r')
                .to_owned(),
        };
        ScriptError {
            loc,
            message: message.into(),
            snippet,
        }
    }

    fn line_label(&self, line: &Line<'_>) -> String {
        format!("line {}", self.loc(line, 0).line)
    }

    // -- lines

    /// Splits a script line into prefix and content; `None` for blank and comment lines.
    fn split_line(
        &self,
        index: usize,
        start: usize,
        raw: &'a str,
    ) -> Result<Option<Line<'a>>, ScriptError> {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        let probe = Line {
            index,
            start,
            dir: Dir::Client,
            session: "",
            content: "",
            content_col: 0,
        };
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(None);
        }
        let bad_prefix = || {
            self.error(
                &probe,
                indent,
                "unknown line prefix: expected `C:`, `S:`, `S?:`, `S!:`, `S~:` (optionally with a session name, e.g. `C1:`) or a `#` comment",
            )
        };
        let Some(colon) = trimmed.find(':') else {
            return Err(bad_prefix());
        };
        let prefix = &trimmed[..colon];
        let first_len = prefix.chars().next().map_or(0, char::len_utf8);
        let (letter, rest) = prefix.split_at(first_len);
        let (session, mark) = match rest.strip_suffix(['?', '!', '~']) {
            Some(s) => (s, &rest[s.len()..]),
            None => (rest, ""),
        };
        if !matches!(letter, "C" | "S") || !is_session_name(session) {
            return Err(bad_prefix());
        }
        let dir = match (letter, mark) {
            ("C", "") => Dir::Client,
            ("C", m) => {
                return Err(self.error(
                    &probe,
                    indent + 1 + session.len(),
                    format!("`{m}` only applies to S lines: C lines are always sent"),
                ));
            }
            (_, "?") => Dir::Server(Presence::May),
            (_, "!") => Dir::Server(Presence::MustNot),
            (_, "~") => Dir::Poll,
            _ => Dir::Server(Presence::Must),
        };
        let mut content_col = indent + colon + 1;
        if raw[content_col..].starts_with(' ') {
            content_col += 1;
        }
        let line = Line {
            index,
            start,
            dir,
            session,
            content: &raw[content_col..],
            content_col,
        };
        if self.sessions.contains_key(session) {
            return Ok(Some(line));
        }
        let message = if self.declared {
            let names: Vec<String> = self.sessions.keys().map(|k| format!("`{k}`")).collect();
            let what = if session.is_empty() {
                format!("the unnamed session (`{letter}:`)")
            } else {
                format!("session `{session}`")
            };
            format!(
                "{what} is not declared in `sessions` (declared: {})",
                names.join(", ")
            )
        } else {
            format!(
                "session `{session}` is used but `sessions` is not declared; declare it or write `{letter}:`"
            )
        };
        Err(self.error(&line, indent, message))
    }

    fn run(mut self) -> Result<Vec<Step>, ScriptError> {
        let mut lines = Vec::new();
        let mut start = 0;
        for (index, raw) in self.script.text.split('\n').enumerate() {
            if let Some(line) = self.split_line(index, start, raw)? {
                lines.push(line);
            }
            start += raw.len() + 1;
        }
        if lines.is_empty() {
            return Err(self
                .src
                .error(self.script.value, "the script has no C or S lines"));
        }
        let mut client: Option<PendingClient<'a>> = None;
        let mut server: Option<PendingServer<'a>> = None;
        for line in lines {
            if let Some(p) = client.take() {
                client = self.client_continue(p, &line)?;
                continue;
            }
            if let Some(p) = server.take() {
                server = self.server_continue(p, &line)?;
                continue;
            }
            match line.dir {
                Dir::Client => {
                    let p = PendingClient {
                        first: line.clone(),
                        segments: Vec::new(),
                        literal: None,
                        continues: None,
                    };
                    client = self.client_text(p, &line, line.content, line.content_col)?;
                }
                Dir::Server(_) | Dir::Poll => {
                    let p = PendingServer {
                        first: line.clone(),
                        joined: Vec::new(),
                        pieces: Vec::new(),
                        literal: None,
                        continues: false,
                    };
                    server = self.server_text(p, &line, line.content, line.content_col)?;
                }
            }
        }
        if let Some(p) = client {
            return Err(self.unfinished(
                p.literal.as_ref().map(|(c, _)| c),
                p.continues.as_ref(),
                &p.first,
            ));
        }
        if let Some(p) = server {
            if p.continues {
                return Err(self.error(
                    &p.first,
                    p.first.content_col,
                    "the server message's literal ends at a line end, so the message continues on a next S line (e.g. `S: )`), but the script ends",
                ));
            }
            return Err(self.unfinished(p.literal.as_ref(), None, &p.first));
        }
        Ok(self.steps)
    }

    fn unfinished(
        &self,
        literal: Option<&Collecting<'_>>,
        continues: Option<&Line<'_>>,
        first: &Line<'_>,
    ) -> ScriptError {
        match (literal, continues) {
            (Some(c), _) => self.error(
                &c.announced,
                c.announced.content_col,
                format!(
                    "literal of {} bytes announced here, but the script ends after {} bytes of it",
                    c.data.len() + c.remaining,
                    c.data.len()
                ),
            ),
            (None, Some(l)) => self.error(
                l,
                l.content_col,
                "the literal ends with this line, so the command continues on a next C line (an empty `C:` ends it), but the script ends",
            ),
            (None, None) => self.error(first, first.content_col, "unfinished message"),
        }
    }

    // -- client messages

    /// Adds text (a whole line, or the rest of one after a literal) to a client message.
    fn client_text(
        &mut self,
        mut p: PendingClient<'a>,
        line: &Line<'a>,
        text: &'a str,
        col: usize,
    ) -> Result<Option<PendingClient<'a>>, ScriptError> {
        let template =
            Template::parse(text).map_err(|e| self.error(line, col + e.column - 1, e.message))?;
        for var in template.vars() {
            if !self.known.contains(var) {
                let at = text.find(&format!("{{{var}}}")).unwrap_or(0);
                return Err(self.error(
                    line,
                    col + at,
                    format!(
                        "unknown variable `{{{var}}}`: not a mailbox variable, not one of user, password, sep, auth_plain, user_b64, password_b64, and not captured by an earlier S line"
                    ),
                ));
            }
        }
        let literal = if self.is_imap(line.session) {
            trailing_literal(text)
        } else {
            None
        };
        match literal {
            Some((count, non_sync)) => {
                p.segments.push(Segment {
                    text: template,
                    literal: None,
                });
                p.literal = Some((
                    Collecting {
                        announced: line.clone(),
                        remaining: count,
                        data: Vec::new(),
                        saw_plus: false,
                    },
                    non_sync,
                ));
                if count == 0 {
                    return self.client_literal_done(p, line, None);
                }
                Ok(Some(p))
            }
            None => {
                p.segments.push(Segment {
                    text: template,
                    literal: None,
                });
                self.finish_client(p);
                Ok(None)
            }
        }
    }

    /// A literal's bytes are complete; `rest` is what remains of the current line, if the
    /// bytes ended mid-line.
    fn client_literal_done(
        &mut self,
        mut p: PendingClient<'a>,
        line: &Line<'a>,
        rest: Option<(&'a str, usize)>,
    ) -> Result<Option<PendingClient<'a>>, ScriptError> {
        let Some((collected, non_sync)) = p.literal.take() else {
            return Ok(Some(p));
        };
        if let Some(last) = p.segments.last_mut() {
            last.literal = Some(Literal {
                data: collected.data,
                non_sync,
            });
        }
        match rest {
            Some((text, col)) => self.client_text(p, line, text, col),
            None => {
                // A zero-length literal continues on the announcing line's successor too.
                p.continues = Some(line.clone());
                Ok(Some(p))
            }
        }
    }

    fn client_continue(
        &mut self,
        mut p: PendingClient<'a>,
        line: &Line<'a>,
    ) -> Result<Option<PendingClient<'a>>, ScriptError> {
        let same = line.session == p.first.session;
        if let Some(ended) = p.continues.take() {
            if line.dir != Dir::Client || !same {
                return Err(self.error(
                    line,
                    0,
                    format!(
                        "the literal of the command on {} ended at the end of {}, so the command continues on the next C{} line (an empty `C{}:` ends it)",
                        self.line_label(&p.first),
                        self.line_label(&ended),
                        p.first.session,
                        p.first.session
                    ),
                ));
            }
            return self.client_text(p, line, line.content, line.content_col);
        }
        let Some((mut c, non_sync)) = p.literal.take() else {
            return Ok(Some(p));
        };
        if let Dir::Server(presence) = line.dir {
            let is_plus = same
                && presence == Presence::Must
                && c.data.is_empty()
                && !c.saw_plus
                && Pattern::parse(line.content.as_bytes())
                    .is_ok_and(|pat| *pat.kind() == super::pattern::PatternKind::Continuation);
            if is_plus && non_sync {
                return Err(self.error(
                    line,
                    0,
                    "a `{N+}` (LITERAL+) literal is sent without waiting, so no continuation request may stand here",
                ));
            }
            if is_plus {
                // The harness always waits for `+` before a synchronizing literal's data;
                // the line documents that and is checked to be a continuation pattern.
                c.saw_plus = true;
                p.literal = Some((c, non_sync));
                return Ok(Some(p));
            }
        }
        if line.dir != Dir::Client || !same {
            return Err(self.error(
                line,
                0,
                format!(
                    "the literal announced on {} still needs {} bytes, from C{} lines (only an `S{}: + ...` line may come before its data)",
                    self.line_label(&c.announced),
                    c.remaining,
                    p.first.session,
                    p.first.session
                ),
            ));
        }
        let content = line.content.as_bytes();
        let with_crlf = content.len() + 2;
        if c.remaining >= with_crlf {
            c.data.extend_from_slice(content);
            c.data.extend_from_slice(b"\r\n");
            c.remaining -= with_crlf;
            p.literal = Some((c, non_sync));
            if p.literal.as_ref().is_some_and(|(c, _)| c.remaining == 0) {
                return self.client_literal_done(p, line, None);
            }
            return Ok(Some(p));
        }
        if c.remaining == content.len() + 1 {
            return Err(self.error(
                line,
                line.content_col + content.len(),
                format!(
                    "the literal announced on {} ends between CR and LF of this line",
                    self.line_label(&c.announced)
                ),
            ));
        }
        let cut = c.remaining;
        if !line.content.is_char_boundary(cut) {
            return Err(self.error(
                line,
                line.content_col + cut,
                "the literal ends inside a UTF-8 character",
            ));
        }
        c.data.extend_from_slice(&content[..cut]);
        c.remaining = 0;
        p.literal = Some((c, non_sync));
        self.client_literal_done(
            p,
            line,
            Some((&line.content[cut..], line.content_col + cut)),
        )
    }

    fn finish_client(&mut self, p: PendingClient<'a>) {
        let imap = self.is_imap(p.first.session);
        let tag = p
            .segments
            .first()
            .filter(|_| imap)
            .and_then(|s| match s.text.0.first() {
                Some(super::ast::TemplatePart::Text(t)) => detect_tag(t),
                _ => None,
            });
        let message = ClientMessage {
            loc: self.loc(&p.first, p.first.content_col),
            tag,
            segments: p.segments,
        };
        let session = p.first.session;
        if let Some(Step::Send {
            session: s,
            messages,
        }) = self.steps.last_mut()
            && s == session
        {
            messages.push(message);
            return;
        }
        self.steps.push(Step::Send {
            session: session.to_owned(),
            messages: vec![message],
        });
    }

    // -- server messages

    fn server_text(
        &mut self,
        mut p: PendingServer<'a>,
        line: &Line<'a>,
        text: &'a str,
        col: usize,
    ) -> Result<Option<PendingServer<'a>>, ScriptError> {
        p.pieces
            .push((p.joined.len(), line.clone(), col - line.content_col));
        p.joined.extend_from_slice(text.as_bytes());
        let literal = if self.is_imap(line.session) {
            trailing_literal(text)
        } else {
            None
        };
        match literal {
            Some((count, false)) => {
                p.joined.extend_from_slice(b"\r\n");
                p.literal = Some(Collecting {
                    announced: line.clone(),
                    remaining: count,
                    data: Vec::new(),
                    saw_plus: false,
                });
                if count == 0 {
                    p.literal = None;
                    p.continues = true;
                }
                Ok(Some(p))
            }
            Some((_, true)) => Err(self.error(
                line,
                col + text.rfind('{').unwrap_or(0),
                "servers send only synchronizing literals `{N}`, not `{N+}`",
            )),
            None => {
                self.finish_server(p)?;
                Ok(None)
            }
        }
    }

    fn server_continue(
        &mut self,
        mut p: PendingServer<'a>,
        line: &Line<'a>,
    ) -> Result<Option<PendingServer<'a>>, ScriptError> {
        if line.dir != p.first.dir || line.session != p.first.session {
            let what = if p.continues {
                "the message continues after its literal".to_owned()
            } else {
                let c = p.literal.as_ref().map_or(0, |c| c.remaining);
                format!("its literal still needs {c} bytes")
            };
            let prefix = prefix_of(&p.first);
            return Err(self.error(
                line,
                0,
                format!(
                    "the server message on {} is not finished ({what}): expected a `{prefix}:` line",
                    self.line_label(&p.first)
                ),
            ));
        }
        if p.continues {
            p.continues = false;
            return self.server_text(p, line, line.content, line.content_col);
        }
        let Some(mut c) = p.literal.take() else {
            return Ok(Some(p));
        };
        let content = line.content.as_bytes();
        let with_crlf = content.len() + 2;
        if c.remaining >= with_crlf {
            p.pieces.push((p.joined.len(), line.clone(), 0));
            p.joined.extend_from_slice(content);
            p.joined.extend_from_slice(b"\r\n");
            c.remaining -= with_crlf;
            if c.remaining == 0 {
                p.continues = true;
            } else {
                p.literal = Some(c);
            }
            return Ok(Some(p));
        }
        if c.remaining == content.len() + 1 {
            return Err(self.error(
                line,
                line.content_col + content.len(),
                format!(
                    "the literal announced on {} ends between CR and LF of this line",
                    self.line_label(&c.announced)
                ),
            ));
        }
        let cut = c.remaining;
        if !line.content.is_char_boundary(cut) {
            return Err(self.error(
                line,
                line.content_col + cut,
                "the literal ends inside a UTF-8 character",
            ));
        }
        p.pieces.push((p.joined.len(), line.clone(), 0));
        p.joined.extend_from_slice(&content[..cut]);
        self.server_text(p, line, &line.content[cut..], line.content_col + cut)
    }

    fn finish_server(&mut self, p: PendingServer<'a>) -> Result<(), ScriptError> {
        let (presence, poll) = match p.first.dir {
            Dir::Server(presence) => (presence, false),
            Dir::Poll => (Presence::Must, true),
            Dir::Client => return Ok(()),
        };
        let pattern = if self.is_imap(p.first.session) {
            Pattern::parse(&p.joined)
        } else {
            // Text-protocol replies end in human-readable text (RFC 5321 4.2, RFC 1939 3): the
            // pattern's words must open the line and the rest is ignored, as if it ended in `...`.
            let ends_open = p
                .joined
                .split(|b| *b == b' ')
                .rfind(|w| !w.is_empty())
                .is_some_and(|w| w == b"...");
            let mut words = p.joined.clone();
            if !ends_open {
                words.extend_from_slice(b" ...");
            }
            Pattern::parse_words(&words)
        };
        let pattern = match pattern {
            Err(_) if self.recording => Ok(fallback_pattern(&p.joined)),
            other => other,
        };
        let pattern = pattern.map_err(|e| {
            let offset = e.column.saturating_sub(1);
            let (start, line, piece_col) = p
                .pieces
                .iter()
                .rev()
                .find(|(s, _, _)| *s <= offset)
                .cloned()
                .unwrap_or((0, p.first.clone(), 0));
            self.error(
                &line,
                line.content_col + piece_col + (offset - start),
                e.message,
            )
        })?;
        if presence != Presence::MustNot {
            self.known.extend(pattern.capture_names());
        }
        let expect = ExpectLine {
            loc: self.loc(&p.first, p.first.content_col),
            presence,
            source: String::from_utf8_lossy(&p.joined).into_owned(),
            pattern,
            poll,
        };
        let session = p.first.session;
        if let Some(Step::Expect { session: s, lines }) = self.steps.last_mut()
            && s == session
        {
            lines.push(expect);
            return Ok(());
        }
        self.steps.push(Step::Expect {
            session: session.to_owned(),
            lines: vec![expect],
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ast::TemplatePart;
    use super::super::pattern::{Bindings, PatternKind, Value};
    use super::*;

    /// The script's first line is file line 6 (line 5 holds `r#"`).
    fn with_script(extra: &str, script: &str) -> String {
        format!(
            "Scenario(\n    id: \"t.x\",\n    title: \"t\",\n    spec: [\"RFC 3501 6.3.11\"],\n    script: r#\"\n{script}\"#,\n{extra})\n"
        )
    }

    fn parse(text: &str) -> Scenario {
        match parse_str(Path::new("t.ron"), text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn fail(text: &str) -> ScriptError {
        match parse_str(Path::new("t.ron"), text) {
            Ok(s) => panic!("parsed: {s:?}"),
            Err(e) => e,
        }
    }

    /// `line:col: message` of an error, for compact asserts.
    fn where_(e: &ScriptError) -> (usize, usize) {
        (e.loc.line, e.loc.column)
    }

    fn sends(s: &Scenario, i: usize) -> (&str, &[ClientMessage]) {
        match &s.steps[i] {
            Step::Send { session, messages } => (session, messages),
            other => panic!("step {i} is {other:?}"),
        }
    }

    fn expects(s: &Scenario, i: usize) -> (&str, &[ExpectLine]) {
        match &s.steps[i] {
            Step::Expect { session, lines } => (session, lines),
            other => panic!("step {i} is {other:?}"),
        }
    }

    fn text(t: &Template) -> String {
        t.to_string()
    }

    /// The RFC 3501 6.3.11 example, with the mailbox as a variable.
    const APPEND: &str = "C: A003 APPEND {mailbox} (\\Seen) {310}
S: + Ready for literal data
C: Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)
C: From: Fred Foobar <foobar@Blurdybloop.COM>
C: Subject: afternoon meeting
C: To: mooch@owatagu.siam.edu
C: Message-Id: <B27397-0100000@Blurdybloop.COM>
C: MIME-Version: 1.0
C: Content-Type: TEXT/PLAIN; CHARSET=US-ASCII
C:
C: Hello Joe, do you think we can meet at 3:30 tomorrow?
C:
S: A003 OK APPEND completed
";

    #[test]
    fn rfc3501_append_example() {
        let s = parse(&with_script("", APPEND));
        assert_eq!(s.steps.len(), 2);
        let (session, msgs) = sends(&s, 0);
        assert_eq!(session, "");
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.tag.as_deref(), Some("A003"));
        assert_eq!((m.loc.line, m.loc.column), (6, 4));
        assert_eq!(m.segments.len(), 2);
        assert_eq!(
            text(&m.segments[0].text),
            "A003 APPEND {mailbox} (\\Seen) {310}"
        );
        let lit = m.segments[0].literal.as_ref().unwrap();
        assert!(!lit.non_sync);
        // 310 octets are the nine lines up to "Hello Joe..." with their CRLFs; the last,
        // empty `C:` line is the command's own CRLF.
        assert_eq!(lit.data.len(), 310);
        assert!(lit.data.starts_with(b"Date: Mon, 7 Feb 1994"));
        assert!(lit.data.ends_with(b"3:30 tomorrow?\r\n"));
        assert_eq!(m.segments[1].text, Template(vec![]));
        assert!(m.segments[1].literal.is_none());
        let (_, lines) = expects(&s, 1);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].loc.line, 18);
        assert_eq!(lines[0].presence, Presence::Must);
        assert_eq!(
            lines[0].pattern.kind(),
            &PatternKind::Tagged {
                tag: "A003".into(),
                statuses: vec!["OK".into()]
            }
        );
        insta::assert_ron_snapshot!(s);
    }

    #[test]
    fn append_without_closing_line_is_an_error() {
        // Without the final `C:` the command never ends.
        let script = APPEND.replace("C:\nS: A003", "S: A003");
        let e = fail(&with_script("", &script));
        assert_eq!(where_(&e), (17, 1));
        assert!(e.message.contains("continues on the next C line"), "{e}");
        assert_eq!(e.snippet, "S: A003 OK APPEND completed");
    }

    /// Found by review while fuzzing: an `S` line of thousands of `(` overflowed the pattern
    /// lexer's stack and aborted the loader; now it is an error at the line, and a recording
    /// (where a server's odd line must still load) keeps it as a line with no pattern.
    #[test]
    fn deeply_nested_server_line_is_an_error_not_a_crash() {
        let script = format!("C: a1 NOOP\nS: * {}\nS: a1 OK\n", "(".repeat(50_000));
        let e = fail(&with_script("", &script));
        assert_eq!(where_(&e), (7, 106));
        assert!(e.message.contains("nested more than 100 deep"), "{e}");
        let text = with_script("", &script);
        assert!(parse_recording(Path::new("t.ron"), &text).is_ok());
    }

    /// Found by review while fuzzing: every mailbox name (and session name) had
    /// its position in the file looked up, each lookup a scan of the whole file, so 20 000
    /// names (190 KB) took minutes to load. Positions are looked up for errors only now.
    #[test]
    fn many_mailbox_names_load() {
        let names: Vec<String> = (0..20_000).map(|i| format!("\"m{i}\"")).collect();
        let extra = format!("    mailboxes: [{}],\n", names.join(", "));
        let s = parse(&with_script(&extra, "C: a1 SELECT {m19999}\nS: a1 OK\n"));
        assert_eq!(s.mailboxes.len(), 20_000);
        // A duplicate at the end is still reported where it is written.
        let extra = format!("    mailboxes: [{}, \"m7\"],\n", names.join(", "));
        let e = fail(&with_script(&extra, "C: a1 NOOP\nS: a1 OK\n"));
        assert!(e.message.contains("`m7` is listed twice"), "{e}");
        assert_eq!(e.loc.line, 9);
        assert_eq!(
            e.loc.column,
            17 + names.iter().map(|n| n.len() + 2).sum::<usize>()
        );
    }

    /// Found by review while fuzzing: each message's location counted the newlines from the
    /// file start, so a recording of 100 000 lines (1.6 MB) did not load in ten minutes.
    /// Locations come from an index of line starts now; they must stay exact.
    #[test]
    fn long_script_locations() {
        let mut script: String = (0..20_000)
            .map(|i| format!("C: a{i} NOOP\nS: a{i} OK done\n"))
            .collect();
        let s = parse(&with_script("", &script));
        assert_eq!(s.steps.len(), 40_000);
        let (_, msgs) = sends(&s, 39_998);
        assert_eq!((msgs[0].loc.line, msgs[0].loc.column), (6 + 39_998, 4));
        script.push_str("C: a1 NOOP {x:number}\n");
        let e = fail(&with_script("", &script));
        assert_eq!(where_(&e), (6 + 40_000, 12));
    }

    #[test]
    fn literal_count_too_large() {
        let script = APPEND.replace("{310}", "{400}");
        let e = fail(&with_script("", &script));
        assert_eq!(where_(&e), (18, 1));
        assert!(e.message.contains("still needs"), "{e}");
        let e = fail(&with_script("", "C: a1 APPEND {mailbox} {10}\nC: abc\n"));
        assert_eq!(where_(&e), (6, 4));
        assert_eq!(
            e.message,
            "literal of 10 bytes announced here, but the script ends after 5 bytes of it"
        );
    }

    #[test]
    fn literal_plus_and_mid_line() {
        let s = parse(&with_script(
            "",
            "C: a1 LOGIN {5+}\nC: alice {8}\nS: + go\nC: password\nS: a1 OK\n",
        ));
        let (_, msgs) = sends(&s, 0);
        let m = &msgs[0];
        assert_eq!(m.segments.len(), 3);
        assert_eq!(
            m.segments[0].literal,
            Some(Literal {
                data: b"alice".to_vec(),
                non_sync: true
            })
        );
        assert_eq!(text(&m.segments[1].text), " {8}");
        assert_eq!(
            m.segments[1].literal,
            Some(Literal {
                data: b"password".to_vec(),
                non_sync: false
            })
        );
        assert_eq!(text(&m.segments[2].text), "");
        assert_eq!(s.steps.len(), 2);
        // No continuation request for LITERAL+.
        let e = fail(&with_script("", "C: a1 LOGIN {5+}\nS: + go\nC: alice x\n"));
        assert_eq!(where_(&e), (7, 1));
        assert!(e.message.contains("LITERAL+"), "{e}");
        // A literal may not end between CR and LF.
        let e = fail(&with_script("", "C: a1 LOGIN {6}\nC: alice\n"));
        assert_eq!(where_(&e), (7, 9));
    }

    #[test]
    fn server_literal_joined() {
        let s = parse(&with_script(
            "",
            "C: a1 FETCH 1 BODY[]\nS: * 1 FETCH (BODY[] {12}\nS: Subject: x\nS: )\nS: a1 OK\n",
        ));
        let (_, lines) = expects(&s, 1);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].source, "* 1 FETCH (BODY[] {12}\r\nSubject: x\r\n)");
        lines[0]
            .pattern
            .matches(
                b"* 1 FETCH (BODY[] {12}\r\nSubject: x\r\n)\r\n",
                &Bindings::default(),
            )
            .unwrap();
        let e = fail(&with_script("", "S: * 1 FETCH (BODY[] {5}\nS: abc\n"));
        assert_eq!(where_(&e), (6, 4));
        assert!(e.message.contains("continues on a next S line"), "{e}");
        // Mid-line end.
        let s = parse(&with_script(
            "",
            "S: * 1 FETCH (BODY[] {3}\nS: abc UID 4)\n",
        ));
        let (_, lines) = expects(&s, 0);
        assert_eq!(lines[0].source, "* 1 FETCH (BODY[] {3}\r\nabc UID 4)");
        // An S line of another kind cannot interrupt it.
        let e = fail(&with_script("", "S: * 1 FETCH (BODY[] {12}\nS?: x\n"));
        assert_eq!(where_(&e), (7, 1));
        assert!(e.message.contains("expected a `S:` line"), "{e}");
    }

    #[test]
    fn multi_session_steps() {
        let extra = "    sessions: {\"1\": (user: \"alice\"), \"2\": (state: \"selected\"), \"g\": (state: \"not-authenticated\")},\n";
        let s = parse(&with_script(
            extra,
            "S g: nothing\n",
        ).replace("S g: nothing\n", "Sg: * OK ...\n# a comment\n\nC1: a1 SELECT {mailbox}\nC1: a2 NOOP\nS1: * {n:number} EXISTS\nS1?: * 0 RECENT\nS1: a1 OK [READ-WRITE]\nC2: b1 IDLE\nS2: + idling\nC1: a3 STORE {n} +FLAGS (\\Seen)\nS2: * {n} FETCH (FLAGS (\\Seen))\nS2!: * BYE\nC2: DONE\nS2: b1 OK\n"));
        assert_eq!(s.sessions.len(), 3);
        assert_eq!(s.sessions["1"].user.as_deref(), Some("alice"));
        assert_eq!(s.sessions["2"].state, InitialState::Selected);
        assert_eq!(s.sessions["g"].state, InitialState::NotAuthenticated);
        let shape: Vec<String> = s
            .steps
            .iter()
            .map(|st| match st {
                Step::Send { session, messages } => format!("C{session}x{}", messages.len()),
                Step::Expect { session, lines } => format!("S{session}x{}", lines.len()),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "Sgx1", "C1x2", "S1x3", "C2x1", "S2x1", "C1x1", "S2x2", "C2x1", "S2x1"
            ]
        );
        let (_, msgs) = sends(&s, 1);
        assert_eq!(msgs[0].loc.line, 9);
        assert_eq!(msgs[1].tag.as_deref(), Some("a2"));
        let (_, msgs) = sends(&s, 7);
        assert_eq!(msgs[0].tag, None);
        let (_, lines) = expects(&s, 2);
        assert_eq!(lines[1].presence, Presence::May);
        let (_, lines) = expects(&s, 6);
        assert_eq!(lines[1].presence, Presence::MustNot);
        let (_, msgs) = sends(&s, 5);
        assert_eq!(msgs[0].segments[0].text.0[1], TemplatePart::Var("n".into()));
    }

    #[test]
    fn full_metadata() {
        let text = r##"// a comment
Scenario(
    id: "imap.append.rfc3501-example",
    title: "APPEND",
    spec: ["RFC 3501 6.3.11"],
    protocol: "imap",
    requires: ["UIDPLUS"],
    mailboxes: ["mailbox", "other"],
    seed: [
        (mailbox: "other", flags: ["\\Seen"], message: "Subject: one\n\nbody\n"),
    ],
    expected_failures: {
        "courier": "RFC 3501 7.3.1 says SHOULD",
    },
    script: r#"C: a1 SELECT {other}
S: a1 OK"#,
)
"##;
        let s = parse(text);
        assert_eq!(s.id, "imap.append.rfc3501-example");
        assert_eq!(s.requires, ["UIDPLUS"]);
        assert_eq!(s.mailboxes, ["mailbox", "other"]);
        assert_eq!(s.seed[0].message, b"Subject: one\r\n\r\nbody\r\n");
        assert_eq!(s.seed[0].flags, ["\\Seen"]);
        assert_eq!(s.expected_failures["courier"], "RFC 3501 7.3.1 says SHOULD");
        assert_eq!(s.sessions[""].state, InitialState::Authenticated);
        let (_, msgs) = sends(&s, 0);
        // The script starts on the `script:` line itself.
        assert_eq!((msgs[0].loc.line, msgs[0].loc.column), (15, 19));
        let (_, lines) = expects(&s, 1);
        assert_eq!((lines[0].loc.line, lines[0].loc.column), (16, 4));
    }

    #[test]
    fn captures_make_variables_known() {
        let ok = with_script(
            "",
            "C: a1 SELECT {mailbox}\nS: * OK [UIDVALIDITY {uidv}]\nS: a1 OK\nC: a2 UID FETCH {uidv} UID\n",
        );
        parse(&ok);
        let e = fail(&with_script(
            "",
            "C: a1 FETCH {uid} UID\nS: * 1 FETCH (UID {uid})\n",
        ));
        assert_eq!(where_(&e), (6, 13));
        assert!(e.message.contains("unknown variable `{uid}`"), "{e}");
        // `S!:` lines bind nothing.
        let e = fail(&with_script("", "S!: * {x} EXISTS\nC: a1 FETCH {x} UID\n"));
        assert_eq!(where_(&e), (7, 13));
        // Predefined variables.
        parse(&with_script(
            "",
            "C: a1 LOGIN {user} {password}\nC: a2 LIST \"\" {sep}\n",
        ));
        let e = fail(&with_script("", "C: a1 FETCH {n:number}\n"));
        assert_eq!(where_(&e), (6, 13));
    }

    #[test]
    fn ron_errors_have_positions() {
        let e = fail("Scenario(\n    id: \"x\",\n    title: 5,\n)\n");
        assert_eq!(e.loc.line, 3);
        assert_eq!(e.snippet, "    title: 5,");
        let e = fail(&with_script("    colour: \"red\",\n", "C: a1 NOOP\n"));
        assert_eq!(e.loc.line, 8);
        assert!(e.message.contains("colour"), "{e}");
        let e = fail("Scenario(\n    id: \"x\",\n    title: \"t\",\n    spec: [],\n");
        assert!(e.loc.line >= 4, "{e}");
        let e = fail(&with_script(
            "    sessions: {\"1\": (user: \"a\", mood: 1)},\n",
            "C1: a\n",
        ));
        assert!(e.message.contains("mood"), "{e}");
        assert_eq!(e.loc.line, 8);
    }

    #[test]
    fn metadata_errors() {
        let base = with_script("", "C: a1 NOOP\n");
        let e = fail(&base.replace("id: \"t.x\"", "id: \"\""));
        assert_eq!(
            (where_(&e), e.message.as_str()),
            ((2, 9), "`id` must not be empty")
        );
        let e = fail(&base.replace("[\"RFC 3501 6.3.11\"]", "[]"));
        assert_eq!(where_(&e), (4, 11));
        let e = fail(&base.replace("[\"RFC 3501 6.3.11\"]", "[\"RFC 3501\", \" \"]"));
        assert_eq!(where_(&e), (4, 24));
        assert_eq!(e.message, "`spec` entry 2 is empty");
        let e = fail(&base.replace("title: \"t\"", "title: \" \""));
        assert_eq!(where_(&e), (3, 12));
        let e = fail(&with_script("    protocol: \"nntp\",\n", "C: a1 NOOP\n"));
        assert_eq!(where_(&e), (8, 15));
        let e = fail(&with_script(
            "    seed: [(mailbox: \"mailbox\", message: \"x\"), (mailbox: \"nope\", message: \"x\")],\n",
            "C: a1 NOOP\n",
        ));
        assert_eq!(where_(&e), (8, 58));
        assert!(e.message.contains("`nope`"), "{e}");
        let e = fail(&with_script(
            "    mailboxes: [\"a\", \"a\"],\n",
            "C: a1 NOOP\n",
        ));
        assert_eq!(where_(&e), (8, 22));
        let e = fail(&with_script("    mailboxes: [\"user\"],\n", "C: a1 NOOP\n"));
        assert!(e.message.contains("clashes"), "{e}");
        let e = fail(&with_script(
            "    sessions: {\"1\": (state: \"idle\")},\n",
            "C1: a1 NOOP\n",
        ));
        assert_eq!(where_(&e), (8, 29));
        let e = fail(&with_script(
            "    mailboxes: [\"other\"],\n    sessions: {\"1\": (state: \"selected\")},\n",
            "C1: a1 NOOP\n",
        ));
        assert_eq!(where_(&e), (9, 16));
        let e = fail(&with_script(
            "    expected_failures: {\"dovecot\": \"\"},\n",
            "C: a1 NOOP\n",
        ));
        assert_eq!(where_(&e), (8, 25));
        let e = fail(&with_script("", "# only a comment\n"));
        assert_eq!(e.message, "the script has no C or S lines");
    }

    #[test]
    fn line_errors() {
        let e = fail(&with_script("", "C: a1 NOOP\nX: what\n"));
        assert_eq!(where_(&e), (7, 1));
        assert_eq!(e.snippet, "X: what");
        assert!(e.message.starts_with("unknown line prefix"), "{e}");
        let e = fail(&with_script("", "C: a1 NOOP\n  C?: a2 NOOP\n"));
        assert_eq!(where_(&e), (7, 4));
        assert!(e.message.contains("only applies to S lines"), "{e}");
        let e = fail(&with_script("", "C: a1 NOOP\nno colon\n"));
        assert_eq!(where_(&e), (7, 1));
        let e = fail(&with_script("", "C-1: a1 NOOP\n"));
        assert_eq!(where_(&e), (6, 1));
        let e = fail(&with_script("", "C: a1 NOOP\nC1: a2 NOOP\n"));
        assert_eq!(where_(&e), (7, 1));
        assert!(e.message.contains("`sessions` is not declared"), "{e}");
        let e = fail(&with_script(
            "    sessions: {\"1\": ()},\n",
            "C1: a1 NOOP\nC: a2 NOOP\n",
        ));
        assert_eq!(where_(&e), (7, 1));
        assert!(e.message.contains("not declared in `sessions`"), "{e}");
        // A bad pattern points at its column in the file.
        let e = fail(&with_script("", "C: a1 NOOP\nS: * 1 FETCH (UID 1\n"));
        assert_eq!(where_(&e), (7, 20));
        assert_eq!(e.message, "missing `)`");
        let e = fail(&with_script("", "S: a1 MAYBE\n"));
        assert_eq!(where_(&e), (6, 7));
        let e = fail(&with_script("", "S: * {n:float} EXISTS\n"));
        assert_eq!(where_(&e), (6, 6));
        // A pattern error after a literal maps to the right line.
        let e = fail(&with_script("", "S: * 1 FETCH (BODY[] {3}\nS: abc \"x)\n"));
        assert_eq!(where_(&e), (7, 8));
        let e = fail(&with_script("", "S: * 1 FETCH (BODY[] {3+}\nS: abc)\n"));
        assert_eq!(where_(&e), (6, 22));
        // The display form is file:line:col: reason, then the line.
        assert_eq!(
            e.to_string(),
            "t.ron:6:22: servers send only synchronizing literals `{N}`, not `{N+}`\n    S: * 1 FETCH (BODY[] {3+}"
        );
    }

    #[test]
    fn tags_and_continuations() {
        assert_eq!(detect_tag("a1 NOOP").as_deref(), Some("a1"));
        assert_eq!(detect_tag("DONE"), None);
        assert_eq!(detect_tag("dGVzdA=="), None);
        assert_eq!(detect_tag(""), None);
        assert_eq!(detect_tag("{5} x"), None);
        assert_eq!(detect_tag("+ x"), None);
        assert_eq!(trailing_literal("a {12}"), Some((12, false)));
        assert_eq!(trailing_literal("a {12+}"), Some((12, true)));
        assert_eq!(trailing_literal("a {x}"), None);
        assert_eq!(trailing_literal("a {}"), None);
        assert_eq!(trailing_literal("a {12} b"), None);
        let s = parse(&with_script("", "C: a1 LOGIN {0}\nC:  x\nS: a1 NO\n"));
        let (_, msgs) = sends(&s, 0);
        assert_eq!(msgs[0].segments[0].literal.as_ref().unwrap().data, b"");
        assert_eq!(text(&msgs[0].segments[1].text), " x");
    }

    #[test]
    fn text_protocol_sessions() {
        let s = parse(&with_script(
            "    protocol: \"pop3\",\n",
            "S: +OK ...\nC: USER {user}\nS: +OK\nC: STAT {5}\nS: +OK {n:number} {_}\n",
        ));
        assert_eq!(s.protocol, Protocol::Pop3);
        assert_eq!(s.sessions[""].protocol, Protocol::Pop3);
        let (_, msgs) = sends(&s, 1);
        assert_eq!(msgs[0].tag, None);
        let (_, msgs) = sends(&s, 3);
        assert_eq!(msgs[0].segments.len(), 1);
        let (_, lines) = expects(&s, 4);
        assert!(
            lines[0]
                .pattern
                .matches(b"+OK 2 320\r\n", &Bindings::default())
                .is_ok()
        );
        // A mixed scenario: an SMTP session beside IMAP ones.
        let s = parse(&with_script(
            "    sessions: {\"m\": (protocol: \"smtp\"), \"1\": ()},\n",
            "Sm: 220 ...\nC1: a1 NOOP\nS1: a1 OK\n",
        ));
        assert_eq!(s.sessions["m"].protocol, Protocol::Smtp);
        assert_eq!(s.sessions["1"].protocol, Protocol::Imap);
    }

    #[test]
    fn text_protocol_lines_ignore_the_human_text_after_the_pattern() {
        let s = parse(&with_script(
            "    protocol: \"smtp\",\n",
            "C: NOOP\nS: 250 2.0.0\nC: QUIT\nS: 221\n",
        ));
        let (_, lines) = expects(&s, 1);
        let p = &lines[0].pattern;
        assert!(p.matches(b"250 2.0.0 Ok\r\n", &Bindings::default()).is_ok());
        assert!(p.matches(b"250 2.0.0\r\n", &Bindings::default()).is_ok());
        assert!(
            p.matches(b"250 2.1.0 Ok\r\n", &Bindings::default())
                .is_err()
        );
        // `250` is a final line; `250-PIPELINING` continues a reply and is another word.
        assert!(
            p.matches(b"250-2.0.0 Ok\r\n", &Bindings::default())
                .is_err()
        );
    }

    #[test]
    fn recordings_keep_server_lines_that_are_no_patterns() {
        let text = with_script(
            "sessions: {\"1\": (state: \"not-authenticated\")},",
            "S1: * OK ready\nC1: a1 FETCH 1 FLAGS\nS1: * 1 FETCH (FLAGS (\\Seen)\nS1: a1 OK [BROKEN done\n",
        );
        assert!(parse_str(Path::new("t.ron"), &text).is_err());
        let s = match parse_recording(Path::new("t.ron"), &text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let (_, lines) = expects(&s, 2);
        assert_eq!(lines[0].source, "* 1 FETCH (FLAGS (\\Seen)");
        assert_eq!(*lines[0].pattern.kind(), PatternKind::Untagged);
        assert!(matches!(lines[1].pattern.kind(), PatternKind::Tagged { tag, .. } if tag == "a1"));
    }

    #[test]
    fn polling_lines_mark_their_step() {
        let s = parse(&with_script(
            "",
            "C: a1 STATUS INBOX (MESSAGES)\nS~: * STATUS INBOX (MESSAGES 1)\nS: a1 OK\n",
        ));
        let (_, lines) = expects(&s, 1);
        assert!(lines[0].poll);
        assert_eq!(lines[0].presence, Presence::Must);
        assert!(!lines[1].poll);
    }

    #[test]
    fn render_a_client_line() {
        let s = parse(&with_script("", "C: a1 SELECT {mailbox}\n"));
        let (_, msgs) = sends(&s, 0);
        let mut vars = Bindings::default();
        vars.insert("mailbox", Value::String(b"INBOX.mt-1".to_vec()));
        assert_eq!(
            msgs[0].segments[0].text.render(&vars).unwrap(),
            "a1 SELECT INBOX.mt-1"
        );
    }

    #[test]
    fn load_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ron");
        std::fs::write(&path, with_script("", "C: a1 NOOP\n")).unwrap();
        assert_eq!(load(&path).unwrap().file, path);
        let e = load(&dir.path().join("missing.ron")).unwrap_err();
        assert!(e.message.starts_with("cannot read"), "{e}");
        // CRLF files work too.
        let crlf_text = with_script("", "C: a1 NOOP\nS: a1 OK\n").replace('\n', "\r\n");
        let s = parse(&crlf_text);
        assert_eq!(s.steps.len(), 2);
    }

    /// Arbitrary scripts give an error or a scenario, never a panic.
    #[test]
    fn arbitrary_scripts_do_not_panic() {
        const PIECES: &[&str] = &[
            "C: ",
            "S: ",
            "S?: ",
            "S!: ",
            "C1: ",
            "\n",
            "a1 ",
            "OK",
            "{3}",
            "{0}",
            "{2+}",
            "{x}",
            "{mailbox}",
            "(",
            ")",
            "[",
            "]",
            "\"",
            "é",
            "...",
            "+ ",
            "* ",
            "# ",
            "\r",
            " ",
            "ab",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        let mut parsed = 0;
        for _ in 0..3_000 {
            let n = (next() % 30) as usize;
            let script: String = (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if parse_str(Path::new("f.ron"), &with_script("", &script)).is_ok() {
                parsed += 1;
            }
        }
        // Some random scripts are valid, so the generator reaches the step builder.
        assert!(parsed > 0);
    }

    /// The examples in docs/scenario-language.md parse: the RON example as a whole file, each
    /// `text` block of script lines as a script.
    #[test]
    fn spec_examples_parse() {
        let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scenario-language.md");
        let doc = std::fs::read_to_string(&doc_path).unwrap();
        let mut blocks = Vec::new();
        let mut current: Option<(String, String)> = None;
        for line in doc.lines() {
            match (&mut current, line.strip_prefix("```")) {
                (None, Some(lang)) => current = Some((lang.to_owned(), String::new())),
                (Some(_), Some(_)) => blocks.extend(current.take()),
                (Some((_, body)), None) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
        let mut scripts = 0;
        for (lang, body) in &blocks {
            match lang.as_str() {
                "ron" => {
                    let s = parse(body);
                    assert_eq!(s.sessions.len(), 3);
                    assert_eq!(s.seed.len(), 1);
                }
                "text" if body.starts_with("C") || body.starts_with("S") => {
                    parse(&with_script("", body));
                    scripts += 1;
                }
                _ => {}
            }
        }
        assert!(scripts >= 3, "{blocks:?}");
    }

    /// The messages users see for broken scenarios.
    #[test]
    fn error_catalogue() {
        let cases = [
            ("", "X: a1 NOOP\n"),
            ("", "C!: a1 NOOP\n"),
            ("", "C2: a1 NOOP\n"),
            ("    sessions: {\"1\": ()},\n", "C: a1 NOOP\n"),
            ("", "C: a1 FETCH 1:* {x}\n"),
            ("", "C: a1 FETCH {x:number}\n"),
            ("", "C: a1 APPEND {mailbox} {20}\nC: short\nS: a1 OK\n"),
            ("", "C: a1 APPEND {mailbox} {20}\nC: short\n"),
            ("", "C: a1 APPEND {mailbox} {7}\nC: short\nS: a1 OK\n"),
            ("", "C: a1 APPEND {mailbox} {3+}\nS: + ok\n"),
            ("", "S: a1 MAYBE\n"),
            ("", "S: a1 FETCH\n"),
            ("", "S: * {x:float} EXISTS\n"),
            ("", "S: * 1 FETCH (UID 1\n"),
            ("", "S: * 1 FETCH (UID 1 FLAGS)\n"),
            ("", "S: * SEARCH ... 1\n"),
            ("", "S: * 1 FETCH (BODY[] {3+}\n"),
            (
                "    seed: [(mailbox: \"inbox\", message: \"x\")],\n",
                "C: a1 NOOP\n",
            ),
            ("    mailboxes: [\"1x\"],\n", "C: a1 NOOP\n"),
            ("    sessions: {\"a-b\": ()},\n", "C: a1 NOOP\n"),
            ("    protocol: \"nntp\",\n", "C: a1 NOOP\n"),
            ("    colour: 1,\n", "C: a1 NOOP\n"),
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|(extra, script)| fail(&with_script(extra, script)).to_string())
            .collect();
        insta::assert_snapshot!(out.join("\n\n"));
    }

    /// Every scenario in the repository parses.
    #[test]
    fn all_repository_scenarios_parse() {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|e| e == "ron") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"),
            &mut files,
        );
        let mut ids = BTreeSet::new();
        let errors: Vec<String> = files
            .iter()
            .filter_map(|f| match load(f) {
                Ok(s) => (!ids.insert(s.id.clone())).then(|| format!("duplicate id {}", s.id)),
                Err(e) => Some(e.to_string()),
            })
            .collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}
