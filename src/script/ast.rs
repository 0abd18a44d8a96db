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

impl Protocol {
    /// The name used in scenario files and target URLs.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
        }
    }
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
    #[serde(serialize_with = "bytes")]
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
    #[serde(serialize_with = "bytes")]
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
    /// Written `S~:`: a must-line whose step polls (the batch before it is sent again until
    /// the step matches, up to the scenario's `poll_seconds`).
    pub poll: bool,
}

/// Serialises bytes as a byte string (RON `b"..."`) rather than a list of numbers.
fn bytes<S: serde::Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(data)
}

/// A template variable with no value at render time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable `{{{0}}}` has no value")]
pub struct TemplateError(pub String);

/// A `{` in a client line that looks like a variable but is not a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct TemplateParseError {
    /// 1-based column (in bytes) within the parsed text.
    pub column: usize,
    pub message: String,
}

impl Template {
    /// Splits client-line text into text and `{name}` references.
    ///
    /// `{` followed by digits (a literal announcement such as `{310}` or `{5+}`) and any `{`
    /// that does not start `{name}` stay text. `{name:type}` and `{_}` are for `S` lines only
    /// and are errors here.
    pub fn parse(text: &str) -> Result<Template, TemplateParseError> {
        let mut parts = Vec::new();
        let mut plain = String::new();
        let mut rest = text;
        let mut offset = 0;
        // The first `}` after the current `{`, remembered while still ahead: searching afresh
        // for each `{` made a line of many `{` quadratic (minutes for a 1 MiB recorded line).
        let mut next_close: Option<Option<usize>> = None;
        while let Some(open) = rest.find('{') {
            plain.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let from = offset + open + 1;
            let close_at = match next_close {
                Some(Some(at)) if at >= from => Some(at),
                Some(None) => None,
                _ => {
                    let at = text[from..].find('}').map(|i| from + i);
                    next_close = Some(at);
                    at
                }
            };
            let close = close_at.map(|at| at - from);
            let inner = close.map(|c| &after[..c]);
            match inner {
                Some(name) if super::pattern::is_var_name(name) && name != "_" => {
                    if !plain.is_empty() {
                        parts.push(TemplatePart::Text(std::mem::take(&mut plain)));
                    }
                    parts.push(TemplatePart::Var(name.to_owned()));
                    let used = open + 1 + name.len() + 1;
                    rest = &rest[used..];
                    offset += used;
                    continue;
                }
                Some(inner) => {
                    // `{_}` or `{name:...}`. Only the name-like head is read: looking through
                    // all of `inner` for a `:` was quadratic as well.
                    let head_len = inner
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(inner.len());
                    let head = &inner[..head_len];
                    let typed = inner[head_len..].starts_with(':');
                    if inner == "_" || (typed && (head == "_" || super::pattern::is_var_name(head)))
                    {
                        return Err(TemplateParseError {
                            column: offset + open + 1,
                            message: format!(
                                "`{{{inner}}}` is a capture; captures belong in S lines, C lines use `{{name}}`"
                            ),
                        });
                    }
                }
                None => {}
            }
            plain.push('{');
            rest = after;
            offset += open + 1;
        }
        plain.push_str(rest);
        if !plain.is_empty() {
            parts.push(TemplatePart::Text(plain));
        }
        Ok(Template(parts))
    }

    /// The text with every variable replaced by its value
    /// ([`super::pattern::Value::to_template_text`]).
    pub fn render(&self, vars: &super::pattern::Bindings) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Var(name) => match vars.get(name) {
                    Some(v) => out.push_str(&v.to_template_text()),
                    None => return Err(TemplateError(name.clone())),
                },
            }
        }
        Ok(out)
    }

    /// Names of the variables the template uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            TemplatePart::Var(v) => Some(v.as_str()),
            TemplatePart::Text(_) => None,
        })
    }
}

impl std::fmt::Display for Template {
    /// The source form, with `{name}` references.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.0 {
            match part {
                TemplatePart::Text(t) => f.write_str(t)?,
                TemplatePart::Var(v) => write!(f, "{{{v}}}")?,
            }
        }
        Ok(())
    }
}

impl Step {
    /// The session the step belongs to.
    pub fn session(&self) -> &str {
        match self {
            Step::Send { session, .. } | Step::Expect { session, .. } => session,
        }
    }
}

impl ClientMessage {
    /// The whole message on the wire: each segment's text (variables substituted), then CRLF
    /// and the literal's bytes if it has one; CRLF after the last segment. The engine sends a
    /// synchronizing literal's part only after the continuation request.
    pub fn to_bytes(&self, vars: &super::pattern::Bindings) -> Result<Vec<u8>, TemplateError> {
        let mut out = Vec::new();
        for segment in &self.segments {
            out.extend_from_slice(segment.text.render(vars)?.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(literal) = &segment.literal {
                out.extend_from_slice(&literal.data);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::pattern::{Bindings, Value};
    use super::*;

    #[test]
    fn template_parse_and_render() {
        let t = Template::parse("a1 APPEND {mailbox} (\\Seen) {310}").unwrap();
        assert_eq!(
            t.0,
            vec![
                TemplatePart::Text("a1 APPEND ".into()),
                TemplatePart::Var("mailbox".into()),
                TemplatePart::Text(" (\\Seen) {310}".into()),
            ]
        );
        assert_eq!(t.vars().collect::<Vec<_>>(), vec!["mailbox"]);
        let mut vars = Bindings::default();
        assert_eq!(t.render(&vars), Err(TemplateError("mailbox".into())));
        vars.insert("mailbox", Value::String(b"INBOX.mt 1".to_vec()));
        assert_eq!(
            t.render(&vars).unwrap(),
            "a1 APPEND \"INBOX.mt 1\" (\\Seen) {310}"
        );
        assert_eq!(t.to_string(), "a1 APPEND {mailbox} (\\Seen) {310}");
        // Not variables: literal announcements, stray braces.
        let t = Template::parse("x SEARCH SUBJECT \"{ }\" {5+}").unwrap();
        assert_eq!(t.vars().count(), 0);
        assert_eq!(t.render(&vars).unwrap(), "x SEARCH SUBJECT \"{ }\" {5+}");
    }

    /// Found by review while fuzzing: each `{` searched the rest of the line for a `}`, so a
    /// recorded client line of 1 MiB (the recorder's cap) of `{` took minutes to load. Linear
    /// now; the meaning of stray braces is unchanged.
    #[test]
    fn many_open_braces_parse_as_text() {
        let line = format!("{}}}{{n}}", "{".repeat(1 << 20));
        let t = Template::parse(&line).unwrap();
        assert_eq!(
            t.0,
            vec![
                TemplatePart::Text(format!("{}}}", "{".repeat(1 << 20))),
                TemplatePart::Var("n".into()),
            ]
        );
        let t = Template::parse("{{a} {{{b}}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(t.to_string(), "{{a} {{{b}}");
        assert!(Template::parse("{{a:{b}").is_err());
    }

    #[test]
    fn client_message_bytes() {
        let m = ClientMessage {
            loc: Loc {
                file: "f".into(),
                line: 1,
                column: 1,
            },
            tag: Some("a1".into()),
            segments: vec![
                Segment {
                    text: Template::parse("a1 LOGIN {user} {3}").unwrap(),
                    literal: Some(Literal {
                        data: b"a b".to_vec(),
                        non_sync: false,
                    }),
                },
                Segment {
                    text: Template::parse("").unwrap(),
                    literal: None,
                },
            ],
        };
        let mut vars = Bindings::default();
        vars.insert("user", Value::Atom("alice".into()));
        assert_eq!(m.to_bytes(&vars).unwrap(), b"a1 LOGIN alice {3}\r\na b\r\n");
        assert!(m.to_bytes(&Bindings::default()).is_err());
        let step = Step::Send {
            session: "2".into(),
            messages: vec![m],
        };
        assert_eq!(step.session(), "2");
    }

    #[test]
    fn template_rejects_captures() {
        let e = Template::parse("a1 FETCH {n:number} FLAGS").unwrap_err();
        assert_eq!(e.column, 10);
        let e = Template::parse("a1 FETCH {_}").unwrap_err();
        assert_eq!(e.column, 10);
    }
}
