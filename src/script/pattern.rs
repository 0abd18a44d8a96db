//! Server-line patterns: IMAP response text with captures, matched on parsed values.
//!
//! A pattern (the text of an `S:` line, literals joined in) and an actual server message are
//! both read by one small lexer of IMAP's generic data syntax into a tree of [`Item`]s; the
//! matcher then walks both trees with the rules of `docs/scenario-language.md` (case-insensitive
//! atoms, human text ignored, flag lists as sets, FETCH/STATUS attributes as unordered pairs).

use std::collections::BTreeMap;
use std::fmt;

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
    ///
    /// Numbers and atoms as they are, NIL as `NIL`, lists as `(a b)`; a string bare when it is
    /// a valid IMAP atom (and not `NIL`), quoted with `\` escapes otherwise.
    pub fn to_template_text(&self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Atom(a) => a.clone(),
            Value::Nil => "NIL".to_owned(),
            Value::String(s) => {
                if is_atom_safe(s) {
                    String::from_utf8_lossy(s).into_owned()
                } else {
                    quote(s)
                }
            }
            Value::List(items) => {
                let inner: Vec<String> = items.iter().map(Value::to_template_text).collect();
                format!("({})", inner.join(" "))
            }
        }
    }

    /// The capture type name this value has (`number`, `atom`, `string`, `list`, `nil`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Number(_) => "number",
            Value::Atom(_) => "atom",
            Value::String(_) => "string",
            Value::Nil => "nil",
            Value::List(_) => "list",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_template_text())
    }
}

/// True if `s` can be sent as an IMAP atom (RFC 3501 ATOM-CHAR, plus `]` as in astring).
fn is_atom_safe(s: &[u8]) -> bool {
    !s.is_empty()
        && !s.eq_ignore_ascii_case(b"NIL")
        && s.iter()
            .all(|&b| b > b' ' && b < 0x7f && !b"(){%*\"\\".contains(&b))
}

/// An IMAP quoted string; CR, LF and 8-bit bytes cannot be quoted, they are kept lossily.
fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in String::from_utf8_lossy(s).chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Variables known at a point of the run: predefined ones and captures so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings(pub BTreeMap<String, Value>);

impl Bindings {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.0.insert(name.into(), value);
    }
    /// Adds (overwrites) every binding of `other`, e.g. the captures of a matched line.
    pub fn extend(&mut self, other: Bindings) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternKind {
    /// `A1 OK ...`; `statuses` upper-case, more than one for `OK|NO`.
    Tagged {
        tag: String,
        statuses: Vec<String>,
    },
    Untagged,
    Continuation,
}

/// The type a capture `{name:type}` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureType {
    Number,
    Atom,
    String,
    List,
    Nil,
}

impl CaptureType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "number" => Self::Number,
            "atom" => Self::Atom,
            "string" => Self::String,
            "list" => Self::List,
            "nil" => Self::Nil,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Atom => "atom",
            Self::String => "string",
            Self::List => "list",
            Self::Nil => "nil",
        }
    }
}

/// One IMAP value as lexed from a pattern or an actual message. `Capture` and `Rest` only
/// occur in patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Atom(String),
    Number(u64),
    /// A quoted string or a literal (they are equal when their contents are).
    Str(Vec<u8>),
    Nil,
    List(Vec<Item>),
    /// A bracketed section standing alone, e.g. a response code `[UIDVALIDITY 3]`.
    Code(Vec<Item>),
    /// An atom with a section attached, e.g. `BODY[HEADER.FIELDS (A B)]<0>`.
    Sectioned {
        head: String,
        section: Vec<Item>,
        partial: String,
    },
    /// `{name}`, `{name:type}`, `{_}`: `name` is `None` for `_`.
    Capture {
        name: Option<String>,
        ty: Option<CaptureType>,
    },
    /// `...`: any remaining items.
    Rest,
    /// `250|554` in a text-protocol pattern: any one of these plain words.
    Either(Vec<Item>),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Atom(a) => f.write_str(a),
            Item::Number(n) => write!(f, "{n}"),
            Item::Str(s) => {
                if s.iter().all(|&b| (b' '..0x7f).contains(&b)) {
                    f.write_str(&quote(s))
                } else {
                    // A literal: its size, then a readable preview (escaped, cut at 60 bytes).
                    const PREVIEW: usize = 60;
                    let shown: String = s
                        .iter()
                        .take(PREVIEW)
                        .flat_map(|&b| std::ascii::escape_default(b))
                        .map(char::from)
                        .collect();
                    let more = if s.len() > PREVIEW { "..." } else { "" };
                    write!(f, "{{{}}}\"{shown}{more}\"", s.len())
                }
            }
            Item::Nil => f.write_str("NIL"),
            Item::List(items) => write!(f, "({})", Joined(items)),
            Item::Code(items) => write!(f, "[{}]", Joined(items)),
            Item::Sectioned {
                head,
                section,
                partial,
            } => write!(f, "{head}[{}]{partial}", Joined(section)),
            Item::Either(alternatives) => {
                let words: Vec<String> = alternatives.iter().map(Item::to_string).collect();
                f.write_str(&words.join("|"))
            }
            Item::Capture { name, ty } => {
                f.write_str("{")?;
                f.write_str(name.as_deref().unwrap_or("_"))?;
                if let Some(t) = ty {
                    write!(f, ":{}", t.name())?;
                }
                f.write_str("}")
            }
            Item::Rest => f.write_str("..."),
        }
    }
}

/// Displays items separated by spaces.
struct Joined<'a>(&'a [Item]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// The shape of a message after its tag (or `*`, or `+`).
#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// `+ text`; in a pattern, `capture` is set by `+ {name}` (binds the text).
    Continuation { capture: Option<Item> },
    /// `OK|NO|BAD|BYE|PREAUTH [code] text`; text is never compared.
    Status {
        statuses: Vec<String>,
        code: Option<Vec<Item>>,
    },
    /// Untagged data: the items after `*`.
    Data(Vec<Item>),
    /// A line of a text protocol (POP3, SMTP), compared word by word.
    Words(Vec<Item>),
}

/// A lexed message: tag (`*` for untagged, `+` for continuation) and body.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    tag: String,
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    kind: PatternKind,
    message: Message,
}

impl Default for Pattern {
    /// A pattern that matches any untagged message.
    fn default() -> Self {
        Pattern {
            kind: PatternKind::Untagged,
            message: Message {
                tag: "*".to_owned(),
                body: Body::Data(vec![Item::Rest]),
            },
        }
    }
}

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

const STATUS_WORDS: [&str; 5] = ["OK", "NO", "BAD", "BYE", "PREAUTH"];

fn is_status(word: &str) -> bool {
    STATUS_WORDS.iter().any(|s| s.eq_ignore_ascii_case(word))
}

// ---------------------------------------------------------------------------------------------
// Lexer

/// Reads IMAP's generic data syntax. In pattern mode it also reads captures and `...`.
struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
    pattern: bool,
    /// Start offsets of a data line's top-level items (for error columns).
    starts: Vec<usize>,
    /// Lists and sections open around the current position (see [`MAX_NESTING`]).
    depth: usize,
}

/// How deeply lists and sections may nest. The lexer recurses once per level, so without a cap
/// a server line (or a pattern) of many `(` would overflow the stack; a real response nests a
/// few levels (BODYSTRUCTURE of nested multiparts, a dozen or so).
pub const MAX_NESTING: usize = 100;

type LexResult<T> = Result<T, PatternError>;

impl<'a> Lexer<'a> {
    fn err<T>(&self, pos: usize, message: impl Into<String>) -> LexResult<T> {
        Err(PatternError {
            column: pos + 1,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The rest of the current line (not including CRLF); moves to the line end.
    fn rest_of_line(&mut self) -> &'a [u8] {
        let start = self.pos;
        while !self.at_eol() {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// Reads a whole message: tag, then status or data items.
    fn message(&mut self) -> LexResult<Message> {
        if self.peek() == Some(b'+')
            && matches!(
                self.input.get(1),
                None | Some(b' ') | Some(b'\r') | Some(b'\n')
            )
        {
            self.pos = 1;
            self.skip_spaces();
            let text = self.rest_of_line();
            let capture = if self.pattern {
                let mut sub = Lexer {
                    input: text,
                    pos: 0,
                    pattern: true,
                    starts: Vec::new(),
                    depth: 0,
                };
                match sub.item() {
                    Ok(c @ Item::Capture { .. }) if sub.at_eol() => Some(c),
                    Ok(_) | Err(_) => None,
                }
            } else {
                None
            };
            return Ok(Message {
                tag: "+".to_owned(),
                body: Body::Continuation { capture },
            });
        }
        let tag_start = self.pos;
        if self.pattern && self.peek() == Some(b'{') {
            return self.err(tag_start, "the tag must be written out, not captured");
        }
        let tag = self.atom_text();
        if tag.is_empty() {
            return self.err(
                tag_start,
                "expected a tag, `*` or `+` at the start of the line",
            );
        }
        self.skip_spaces();
        // Status responses: only the optional [code] is read, the text is ignored.
        let word_start = self.pos;
        let save = self.pos;
        let word = self.atom_text();
        let alternatives: Vec<&str> = word.split('|').collect();
        let status_like = !word.is_empty()
            && (alternatives.iter().all(|w| is_status(w))
                || (self.pattern && alternatives.len() > 1));
        if status_like {
            if let Some(bad) = alternatives.iter().find(|w| !is_status(w)) {
                return self.err(
                    word_start,
                    format!("`{bad}` is not a status (OK, NO, BAD, BYE, PREAUTH)"),
                );
            }
            let statuses = alternatives
                .iter()
                .map(|w| w.to_ascii_uppercase())
                .collect();
            self.skip_spaces();
            let code = if self.peek() == Some(b'[') {
                let code_start = self.pos;
                match self.item() {
                    Ok(Item::Code(items)) => Some(items),
                    Ok(_) => None,
                    // A server's text may start with an unbalanced `[`; it is only text then.
                    Err(e) if self.pattern => return Err(e),
                    Err(_) => {
                        self.pos = code_start;
                        None
                    }
                }
            } else {
                None
            };
            self.rest_of_line();
            return Ok(Message {
                tag,
                body: Body::Status { statuses, code },
            });
        }
        // A tagged line that is not a status is a server bug; the server's items are kept as
        // data, but a pattern must say which status it expects.
        if tag != "*" && self.pattern {
            return self.err(
                word_start,
                "a tagged line needs a status: OK, NO or BAD (or `OK|NO`)",
            );
        }
        self.pos = save;
        let items = self.items_until(None)?;
        Ok(Message {
            tag,
            body: Body::Data(items),
        })
    }

    /// Reads atom characters (anything but space, parentheses, brackets, quote, line end).
    fn atom_text(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'(' | b')' | b'[' | b']' | b'"' | b'\r' | b'\n') {
                break;
            }
            // `{` at the start of an item is a literal or capture, handled by the caller.
            if b == b'{' && self.pos == start {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.input[start..self.pos]).into_owned()
    }

    /// Items up to `close` (`)` or `]`), or to the line end when `close` is `None`.
    fn items_until(&mut self, close: Option<u8>) -> LexResult<Vec<Item>> {
        if close.is_none() {
            return self.items_in(None);
        }
        if self.depth >= MAX_NESTING {
            // The opening bracket was just consumed.
            return self.err(
                self.pos.saturating_sub(1),
                format!("lists nested more than {MAX_NESTING} deep"),
            );
        }
        self.depth += 1;
        let items = self.items_in(close);
        self.depth -= 1;
        items
    }

    fn items_in(&mut self, close: Option<u8>) -> LexResult<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            match (self.peek(), close) {
                (Some(c), Some(want)) if c == want => {
                    self.pos += 1;
                    return Ok(items);
                }
                (None | Some(b'\r') | Some(b'\n'), None) => return Ok(items),
                (None | Some(b'\r') | Some(b'\n'), Some(want)) => {
                    return self.err(self.pos, format!("missing `{}`", want as char));
                }
                (Some(c @ (b')' | b']')), _) => {
                    return self.err(self.pos, format!("unexpected `{}`", c as char));
                }
                _ => {}
            }
            let start = self.pos;
            if close.is_none() {
                self.starts.push(start);
            }
            let item = self.item()?;
            if let Some(Item::Rest) = items.last() {
                return self.err(start, "`...` must be the last item of a line or list");
            }
            items.push(item);
        }
    }

    fn item(&mut self) -> LexResult<Item> {
        let start = self.pos;
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                Ok(Item::List(self.items_until(Some(b')'))?))
            }
            Some(b'[') => {
                self.pos += 1;
                Ok(Item::Code(self.items_until(Some(b']'))?))
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.brace(),
            Some(b'~') if self.input.get(self.pos + 1) == Some(&b'{') => {
                // literal8 (RFC 3516): same content rules as a literal.
                self.pos += 1;
                match self.brace()? {
                    lit @ Item::Str(_) => Ok(lit),
                    _ => self.err(start, "`~` must be followed by a literal `{N}`"),
                }
            }
            _ => {
                let text = self.atom_text();
                if text.is_empty() {
                    return self.err(start, "expected a value");
                }
                if self.pattern && text == "..." {
                    return Ok(Item::Rest);
                }
                if self.peek() == Some(b'[') {
                    self.pos += 1;
                    let section = self.items_until(Some(b']'))?;
                    let partial = self.atom_text();
                    return Ok(Item::Sectioned {
                        head: text,
                        section,
                        partial,
                    });
                }
                if text.eq_ignore_ascii_case("NIL") {
                    return Ok(Item::Nil);
                }
                if text.bytes().all(|b| b.is_ascii_digit())
                    && let Ok(n) = text.parse::<u64>()
                {
                    return Ok(Item::Number(n));
                }
                Ok(Item::Atom(text))
            }
        }
    }

    fn quoted(&mut self) -> LexResult<Item> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => {
                    return self.err(start, "unterminated quoted string");
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Item::Str(out));
                }
                Some(b'\\') => {
                    match self.input.get(self.pos + 1) {
                        Some(&c) if c != b'\r' && c != b'\n' => out.push(c),
                        _ => return self.err(start, "unterminated quoted string"),
                    }
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{N}` / `{N+}` followed by CRLF and N bytes, or (patterns) a capture `{name[:type]}`.
    fn brace(&mut self) -> LexResult<Item> {
        let start = self.pos;
        let Some(len) = self.input[start..].iter().position(|&b| b == b'}') else {
            return self.err(start, "missing `}`");
        };
        let inner = &self.input[start + 1..start + len];
        self.pos = start + len + 1;
        let digits = inner.strip_suffix(b"+").unwrap_or(inner);
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            let count: usize = match std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
            {
                Some(n) => n,
                None => return self.err(start, "literal length too large"),
            };
            // The announcement ends the line; the data follows the line's CRLF.
            let after = match self.input.get(self.pos..) {
                Some(rest) if rest.starts_with(b"\r\n") => self.pos + 2,
                Some(rest) if rest.starts_with(b"\n") => self.pos + 1,
                _ => return self.err(start, "a literal announcement must end the line"),
            };
            let data = after
                .checked_add(count)
                .and_then(|end| self.input.get(after..end));
            let Some(data) = data else {
                return self.err(
                    start,
                    format!(
                        "literal of {count} bytes, only {} follow",
                        self.input.len().saturating_sub(after)
                    ),
                );
            };
            self.pos = after + count;
            return Ok(Item::Str(data.to_vec()));
        }
        if !self.pattern {
            return self.err(start, "malformed literal announcement");
        }
        let inner = String::from_utf8_lossy(inner);
        let (name, ty) = match inner.split_once(':') {
            Some((n, t)) => match CaptureType::parse(t) {
                Some(ty) => (n, Some(ty)),
                None => {
                    return self.err(
                        start,
                        format!("unknown capture type `{t}` (number, atom, string, list, nil)"),
                    );
                }
            },
            None => (&*inner, None),
        };
        if !is_var_name(name) {
            return self.err(
                start,
                format!("`{{{inner}}}` is neither a capture `{{name}}` nor a literal `{{N}}`"),
            );
        }
        Ok(Item::Capture {
            name: (name != "_").then(|| name.to_owned()),
            ty,
        })
    }
}

/// Variable names: letters, digits and `_`, not starting with a digit.
pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------------
// Pattern

impl Pattern {
    pub fn parse(text: &[u8]) -> Result<Pattern, PatternError> {
        let mut lexer = Lexer {
            input: text,
            pos: 0,
            pattern: true,
            starts: Vec::new(),
            depth: 0,
        };
        let message = lexer.message()?;
        // Anything after the line (and its literals) is not part of one message.
        let rest = &text[lexer.pos..];
        let rest = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))
            .unwrap_or(rest);
        if !rest.is_empty() {
            return Err(PatternError {
                column: lexer.pos + 1,
                message: "text after the end of the message".to_owned(),
            });
        }
        if let Body::Data(items) = &message.body {
            for (i, item) in items.iter().enumerate() {
                if let (Item::List(list), Shape::Pairs(name)) =
                    (item, Matcher::list_shape(Shape::Line, items, i))
                {
                    let n = list.iter().filter(|x| **x != Item::Rest).count();
                    if !n.is_multiple_of(2) {
                        return Err(PatternError {
                            column: lexer.starts.get(i).map_or(1, |p| p + 1),
                            message: format!(
                                "{name} attributes must be name/value pairs: ({})",
                                Joined(list)
                            ),
                        });
                    }
                }
            }
        }
        let kind = match (&message.tag[..], &message.body) {
            ("+", _) => PatternKind::Continuation,
            ("*", _) => PatternKind::Untagged,
            (tag, Body::Status { statuses, .. }) => PatternKind::Tagged {
                tag: tag.to_owned(),
                statuses: statuses.clone(),
            },
            (_, _) => PatternKind::Untagged,
        };
        Ok(Pattern { kind, message })
    }

    /// A pattern for a line of a text protocol (POP3, SMTP): words separated by spaces, compared
    /// case-insensitively in order; a word may be a capture `{name}` / `{name:type}` / `{_}`, and
    /// `...` as the last word matches the rest of the line. Its kind is `Untagged`.
    pub fn parse_words(text: &[u8]) -> Result<Pattern, PatternError> {
        let mut items = Vec::new();
        let mut pos = 0;
        for word in text.split(|&b| b == b' ') {
            let start = pos;
            pos += word.len() + 1;
            if word.is_empty() {
                continue;
            }
            if items.last() == Some(&Item::Rest) {
                return Err(PatternError {
                    column: start + 1,
                    message: "`...` must be the last word".to_owned(),
                });
            }
            let item = if word == b"..." {
                Item::Rest
            } else if word.starts_with(b"{") && word.ends_with(b"}") {
                let mut lexer = Lexer {
                    input: word,
                    pos: 0,
                    pattern: true,
                    starts: Vec::new(),
                    depth: 0,
                };
                match lexer.brace() {
                    Ok(c @ Item::Capture { .. }) => c,
                    Ok(_) => word_item(&String::from_utf8_lossy(word)),
                    Err(e) => {
                        return Err(PatternError {
                            column: start + e.column,
                            message: e.message,
                        });
                    }
                }
            } else if word.contains(&b'|') {
                let alternatives: Vec<&[u8]> = word.split(|&b| b == b'|').collect();
                if alternatives
                    .iter()
                    .any(|a| a.is_empty() || a.contains(&b'{'))
                {
                    return Err(PatternError {
                        column: start + 1,
                        message: "alternatives `a|b` are plain words, none empty".to_owned(),
                    });
                }
                Item::Either(
                    alternatives
                        .iter()
                        .map(|a| word_item(&String::from_utf8_lossy(a)))
                        .collect(),
                )
            } else {
                word_item(&String::from_utf8_lossy(word))
            };
            items.push(item);
        }
        Ok(Pattern {
            kind: PatternKind::Untagged,
            message: Message {
                tag: String::new(),
                body: Body::Words(items),
            },
        })
    }

    pub fn kind(&self) -> &PatternKind {
        &self.kind
    }

    /// Names this pattern binds when it matches and they are not bound yet (not `_`).
    pub fn capture_names(&self) -> Vec<String> {
        fn walk(items: &[Item], out: &mut Vec<String>) {
            for item in items {
                match item {
                    Item::Capture { name: Some(n), .. } if !out.contains(n) => out.push(n.clone()),
                    Item::List(inner) | Item::Code(inner) => walk(inner, out),
                    Item::Sectioned { section, .. } => walk(section, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        match &self.message.body {
            Body::Continuation { capture: Some(c) } => walk(std::slice::from_ref(c), &mut out),
            Body::Continuation { capture: None } => {}
            Body::Status { code, .. } => walk(code.as_deref().unwrap_or(&[]), &mut out),
            Body::Data(items) | Body::Words(items) => walk(items, &mut out),
        }
        out
    }

    /// Match one whole server message (line plus any literals, CRLF included).
    /// On success returns the new captures (not yet merged into `vars`).
    pub fn matches(&self, actual: &[u8], vars: &Bindings) -> Result<Bindings, Mismatch> {
        if let Body::Words(want) = &self.message.body {
            let mut m = Matcher {
                vars,
                new: Bindings::default(),
            };
            let line = actual
                .split(|&b| b == b'\n')
                .next()
                .unwrap_or_default()
                .strip_suffix(b"\r")
                .unwrap_or(actual.split(|&b| b == b'\n').next().unwrap_or_default());
            let got: Vec<Item> = line
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .map(|w| word_item(&String::from_utf8_lossy(w)))
                .collect();
            m.seq(want, &got, Shape::Ordered)?;
            return Ok(m.new);
        }
        let mut lexer = Lexer {
            input: actual,
            pos: 0,
            pattern: false,
            starts: Vec::new(),
            depth: 0,
        };
        let got = lexer.message().map_err(|e| {
            Mismatch(format!(
                "cannot read the server message at column {}: {}",
                e.column, e.message
            ))
        })?;
        let mut m = Matcher {
            vars,
            new: Bindings::default(),
        };
        let want = &self.message;
        match (&want.body, &got.body) {
            // Word patterns returned above; the lexer never produces them.
            (Body::Words(_), _) | (_, Body::Words(_)) => {}
            (Body::Continuation { capture }, Body::Continuation { .. }) => {
                if let Some(c) = capture {
                    let text = continuation_text(actual);
                    m.item(c, &Item::Str(text), "continuation text")?;
                }
            }
            (Body::Continuation { .. }, _) => {
                return Err(Mismatch(format!(
                    "expected a continuation request, got {}",
                    describe(&got)
                )));
            }
            (_, Body::Continuation { .. }) => {
                return Err(Mismatch(format!(
                    "expected {}, got a continuation request",
                    describe_want(want)
                )));
            }
            (
                Body::Status { statuses, code },
                Body::Status {
                    statuses: got_status,
                    code: got_code,
                },
            ) => {
                m.tag(&want.tag, &got.tag)?;
                let got_status = &got_status[0];
                if !statuses.iter().any(|s| s.eq_ignore_ascii_case(got_status)) {
                    return Err(Mismatch(format!(
                        "expected status {}, got {got_status}",
                        statuses.join("|")
                    )));
                }
                if let Some(code) = code {
                    match got_code {
                        None => {
                            return Err(Mismatch(format!(
                                "expected response code [{}], got none",
                                Joined(code)
                            )));
                        }
                        Some(got_code) => m.seq(code, got_code, Shape::Code).map_err(|e| {
                            Mismatch(format!(
                                "response code: {e} (expected [{}], got [{}])",
                                Joined(code),
                                Joined(got_code)
                            ))
                        })?,
                    }
                }
            }
            (Body::Status { .. }, Body::Data(_)) | (Body::Data(_), Body::Status { .. }) => {
                m.tag(&want.tag, &got.tag)?;
                return Err(Mismatch(format!(
                    "expected {}, got {}",
                    describe_want(want),
                    describe(&got)
                )));
            }
            (Body::Data(items), Body::Data(got_items)) => {
                m.tag(&want.tag, &got.tag)?;
                m.seq(items, got_items, Shape::Line)?;
            }
        }
        Ok(m.new)
    }
}

/// A word of a text-protocol line: a number if all digits, else an atom.
fn word_item(word: &str) -> Item {
    match word.parse::<u64>() {
        Ok(n) if word.bytes().all(|b| b.is_ascii_digit()) => Item::Number(n),
        _ => Item::Atom(word.to_owned()),
    }
}

/// The text of a continuation request, after `+ `.
fn continuation_text(actual: &[u8]) -> Vec<u8> {
    let rest = actual.get(1..).unwrap_or_default();
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    rest[..end].to_vec()
}

fn describe(m: &Message) -> String {
    match &m.body {
        Body::Continuation { .. } => "a continuation request".to_owned(),
        Body::Status { statuses, code } => {
            let code = code
                .as_ref()
                .map(|c| format!(" [{}]", Joined(c)))
                .unwrap_or_default();
            format!("`{} {}{code}`", m.tag, statuses.join("|"))
        }
        Body::Data(items) => format!("`{} {}`", m.tag, Joined(items)),
        Body::Words(items) => format!("`{}`", Joined(items)),
    }
}

fn describe_want(m: &Message) -> String {
    match m.tag.as_str() {
        "+" => "a continuation request".to_owned(),
        "*" => format!("untagged {}", describe(m)),
        _ => format!("tagged {}", describe(m)),
    }
}

// ---------------------------------------------------------------------------------------------
// Matcher

/// How the items of a sequence compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The items after `*` of an untagged data line.
    Line,
    /// A response code's items.
    Code,
    /// A plain list or section: in order.
    Ordered,
    /// Flags: a set. The `&str` names the list for messages (e.g. `FLAGS`).
    Set(&'static str),
    /// FETCH / STATUS attributes: unordered name/value pairs.
    Pairs(&'static str),
}

struct Matcher<'a> {
    vars: &'a Bindings,
    new: Bindings,
}

impl Matcher<'_> {
    fn lookup(&self, name: &str) -> Option<&Value> {
        self.new.get(name).or_else(|| self.vars.get(name))
    }

    fn tag(&self, want: &str, got: &str) -> Result<(), Mismatch> {
        if want.eq_ignore_ascii_case(got) {
            return Ok(());
        }
        Err(Mismatch(match (want, got) {
            ("*", _) => format!("expected an untagged response, got tag {got}"),
            (_, "*") => format!("expected tag {want}, got an untagged response"),
            _ => format!("expected tag {want}, got {got}"),
        }))
    }

    /// Which shape a list at `index` of a sequence has, from what precedes it.
    fn list_shape(parent: Shape, items: &[Item], index: usize) -> Shape {
        let atom_at = |i: usize| match items.get(i) {
            Some(Item::Atom(a)) => a.to_ascii_uppercase(),
            _ => String::new(),
        };
        if index > 0 {
            match atom_at(index - 1).as_str() {
                "FLAGS" => return Shape::Set("FLAGS"),
                "PERMANENTFLAGS" => return Shape::Set("PERMANENTFLAGS"),
                _ => {}
            }
        }
        if parent == Shape::Line {
            match (index, atom_at(0).as_str()) {
                (1, "LIST") => return Shape::Set("LIST attributes"),
                (1, "LSUB") => return Shape::Set("LSUB attributes"),
                (2, "STATUS") => return Shape::Pairs("STATUS"),
                _ => {}
            }
            if index == 2 && atom_at(1) == "FETCH" {
                return Shape::Pairs("FETCH");
            }
        }
        Shape::Ordered
    }

    fn seq(&mut self, want: &[Item], got: &[Item], shape: Shape) -> Result<(), Mismatch> {
        match shape {
            Shape::Set(name) => return self.set(want, got, name),
            Shape::Pairs(name) => return self.pairs(want, got, name),
            Shape::Line | Shape::Code | Shape::Ordered => {}
        }
        // `CAPABILITY a b`, `SEARCH 1 2`, `ENABLED x`: the items after the keyword are a set.
        if let (Shape::Line | Shape::Code, Some(Item::Atom(head)), Some(g0)) =
            (shape, want.first(), got.first())
        {
            let name = match head.to_ascii_uppercase().as_str() {
                "CAPABILITY" => Some("CAPABILITY"),
                "SEARCH" if shape == Shape::Line => Some("SEARCH"),
                "ENABLED" if shape == Shape::Line => Some("ENABLED"),
                _ => None,
            };
            if let Some(name) = name {
                self.item(&want[0], g0, "item 1")?;
                return self.set(&want[1..], &got[1..], name);
            }
        }
        for (i, w) in want.iter().enumerate() {
            if *w == Item::Rest {
                return Ok(());
            }
            let Some(g) = got.get(i) else {
                return Err(Mismatch(format!(
                    "expected {w} after `{}`, got nothing more",
                    Joined(got)
                )));
            };
            let child = match w {
                Item::List(_) => Self::list_shape(shape, want, i),
                _ => Shape::Ordered,
            };
            self.item_in(w, g, child).map_err(|e| {
                // Say where, unless a nested message already did.
                if matches!(w, Item::List(_) | Item::Code(_) | Item::Sectioned { .. }) {
                    e
                } else {
                    Mismatch(format!("item {}: {e}", i + 1))
                }
            })?;
        }
        if got.len() > want.len() {
            return Err(Mismatch(format!(
                "unexpected `{}` after `{}`",
                Joined(&got[want.len()..]),
                Joined(&got[..want.len()])
            )));
        }
        Ok(())
    }

    fn item(&mut self, w: &Item, g: &Item, what: &str) -> Result<(), Mismatch> {
        self.item_in(w, g, Shape::Ordered)
            .map_err(|e| Mismatch(format!("{what}: {e}")))
    }

    /// Matches one item; `shape` applies when both are lists.
    fn item_in(&mut self, w: &Item, g: &Item, shape: Shape) -> Result<(), Mismatch> {
        let differ = || Mismatch(format!("expected {w}, got {g}"));
        match (w, g) {
            (Item::Rest, _) => Ok(()),
            (Item::Either(alternatives), _) => {
                match alternatives
                    .iter()
                    .any(|a| self.item_in(a, g, shape).is_ok())
                {
                    true => Ok(()),
                    false => Err(differ()),
                }
            }
            (Item::Capture { name, ty }, _) => {
                if let Some(ty) = ty {
                    let ok = matches!(
                        (ty, g),
                        (CaptureType::Number, Item::Number(_))
                            | (CaptureType::Atom, Item::Atom(_) | Item::Sectioned { .. })
                            | (CaptureType::String, Item::Str(_))
                            | (CaptureType::List, Item::List(_))
                            | (CaptureType::Nil, Item::Nil)
                    );
                    if !ok {
                        return Err(Mismatch(format!(
                            "expected {w}, got {} {g}",
                            item_type_name(g)
                        )));
                    }
                }
                let Some(name) = name else { return Ok(()) };
                match self.lookup(name) {
                    Some(bound) => {
                        let set = matches!(shape, Shape::Set(_));
                        if value_eq(bound, g, set) {
                            Ok(())
                        } else {
                            Err(Mismatch(format!(
                                "expected {{{name}}} = {}, got {g}",
                                bound.to_template_text()
                            )))
                        }
                    }
                    None => {
                        self.new.insert(name.clone(), to_value(g));
                        Ok(())
                    }
                }
            }
            (Item::List(ws), Item::List(gs)) => self.seq(ws, gs, shape),
            (Item::Code(ws), Item::Code(gs)) => self.seq(ws, gs, Shape::Code),
            (
                Item::Sectioned {
                    head,
                    section,
                    partial,
                },
                Item::Sectioned {
                    head: gh,
                    section: gsec,
                    partial: gp,
                },
            ) => {
                if !head.eq_ignore_ascii_case(gh) || !partial.eq_ignore_ascii_case(gp) {
                    return Err(differ());
                }
                self.seq(section, gsec, Shape::Ordered)
                    .map_err(|e| Mismatch(format!("in {w}: {e}")))
            }
            (Item::Nil, Item::Nil) => Ok(()),
            (Item::Atom(_) | Item::Number(_) | Item::Str(_), _) => {
                if scalar_eq(w, g) {
                    Ok(())
                } else {
                    Err(differ())
                }
            }
            _ => Err(differ()),
        }
    }

    /// Flag lists: every pattern item matches a distinct actual item; without `...` nothing
    /// else may be there. Written-out items are placed before captures.
    fn set(&mut self, want: &[Item], got: &[Item], name: &str) -> Result<(), Mismatch> {
        let open = want.last() == Some(&Item::Rest);
        let mut used = vec![false; got.len()];
        let mut order: Vec<&Item> = want
            .iter()
            .filter(|w| !matches!(w, Item::Capture { .. } | Item::Rest))
            .collect();
        order.extend(want.iter().filter(|w| matches!(w, Item::Capture { .. })));
        let fail = |why: String| {
            Mismatch(format!(
                "expected {name} ({}), got ({}): {why}",
                Joined(want),
                Joined(got)
            ))
        };
        for w in order {
            let mut found = false;
            for (i, g) in got.iter().enumerate() {
                if used[i] {
                    continue;
                }
                let saved = self.new.clone();
                if self.item_in(w, g, Shape::Ordered).is_ok() {
                    used[i] = true;
                    found = true;
                    break;
                }
                self.new = saved;
            }
            if !found {
                return Err(fail(format!("{w} is missing")));
            }
        }
        if !open {
            let extra: Vec<Item> = got
                .iter()
                .zip(&used)
                .filter(|(_, u)| !**u)
                .map(|(g, _)| g.clone())
                .collect();
            if !extra.is_empty() {
                return Err(fail(format!("{} not expected", Joined(&extra))));
            }
        }
        Ok(())
    }

    /// FETCH / STATUS attributes: pattern pairs found by name in any order.
    fn pairs(&mut self, want: &[Item], got: &[Item], name: &str) -> Result<(), Mismatch> {
        let open = want.last() == Some(&Item::Rest);
        let want = if open { &want[..want.len() - 1] } else { want };
        if !want.len().is_multiple_of(2) {
            return Err(Mismatch(format!(
                "{name} attributes in the pattern are not name/value pairs: ({})",
                Joined(want)
            )));
        }
        if !got.len().is_multiple_of(2) {
            return Err(Mismatch(format!(
                "{name} attributes from the server are not name/value pairs: ({})",
                Joined(got)
            )));
        }
        let mut used = vec![false; got.len() / 2];
        for w in want.chunks(2) {
            let (wn, wv) = (&w[0], &w[1]);
            let found = got
                .chunks(2)
                .enumerate()
                .find(|(i, g)| !used[*i] && attr_name_eq(wn, &g[0]));
            let Some((i, g)) = found else {
                return Err(Mismatch(format!(
                    "expected {name} attribute {wn}, not in ({})",
                    Joined(got)
                )));
            };
            used[i] = true;
            let shape = match wn {
                Item::Atom(a) if a.eq_ignore_ascii_case("FLAGS") => Shape::Set("FLAGS"),
                _ => Shape::Ordered,
            };
            self.item_in(wv, &g[1], shape).map_err(|e| {
                if matches!(shape, Shape::Set(_)) {
                    e
                } else {
                    Mismatch(format!("{name} {wn}: {e}"))
                }
            })?;
        }
        if !open {
            let extra: Vec<String> = got
                .chunks(2)
                .zip(&used)
                .filter(|(_, u)| !**u)
                .map(|(g, _)| format!("{} {}", g[0], g[1]))
                .collect();
            if !extra.is_empty() {
                return Err(Mismatch(format!(
                    "unexpected {name} attribute {} (end the pattern's list with `...` to allow more)",
                    extra.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn item_type_name(g: &Item) -> &'static str {
    match g {
        Item::Atom(_) | Item::Sectioned { .. } => "atom",
        Item::Number(_) => "number",
        Item::Str(_) => "string",
        Item::Nil => "nil",
        Item::List(_) => "list",
        Item::Code(_) => "section",
        Item::Capture { .. } | Item::Rest | Item::Either(_) => "pattern",
    }
}

/// Attribute names compare like atoms, sections included (`BODY[HEADER.FIELDS (A B)]`).
fn attr_name_eq(w: &Item, g: &Item) -> bool {
    match (w, g) {
        (Item::Atom(a), Item::Atom(b)) => a.eq_ignore_ascii_case(b),
        (
            Item::Sectioned {
                head,
                section,
                partial,
            },
            Item::Sectioned {
                head: gh,
                section: gs,
                partial: gp,
            },
        ) => {
            head.eq_ignore_ascii_case(gh)
                && partial.eq_ignore_ascii_case(gp)
                && section.len() == gs.len()
                && section.iter().zip(gs).all(|(a, b)| loose_item_eq(a, b))
        }
        _ => false,
    }
}

/// Equality without captures, for attribute names.
fn loose_item_eq(w: &Item, g: &Item) -> bool {
    match (w, g) {
        (Item::List(a), Item::List(b)) | (Item::Code(a), Item::Code(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| loose_item_eq(x, y))
        }
        (Item::Sectioned { .. }, _) => attr_name_eq(w, g),
        (Item::Nil, Item::Nil) => true,
        _ => scalar_eq(w, g),
    }
}

/// Atoms, numbers and strings: atoms case-insensitively, strings by content.
fn scalar_eq(w: &Item, g: &Item) -> bool {
    match (scalar_bytes(w), scalar_bytes(g)) {
        (Some(a), Some(b)) => {
            if matches!((w, g), (Item::Atom(_), Item::Atom(_))) {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        }
        _ => false,
    }
}

fn scalar_bytes(i: &Item) -> Option<Vec<u8>> {
    match i {
        Item::Atom(a) => Some(a.as_bytes().to_vec()),
        Item::Number(n) => Some(n.to_string().into_bytes()),
        Item::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// The value a capture binds.
fn to_value(g: &Item) -> Value {
    match g {
        Item::Atom(a) => Value::Atom(a.clone()),
        Item::Number(n) => Value::Number(*n),
        Item::Str(s) => Value::String(s.clone()),
        Item::Nil => Value::Nil,
        Item::List(items) => Value::List(items.iter().map(to_value).collect()),
        // Sections have no Value form; their text is what a later command would send.
        Item::Code(_)
        | Item::Sectioned { .. }
        | Item::Capture { .. }
        | Item::Rest
        | Item::Either(_) => Value::Atom(g.to_string()),
    }
}

/// Whether an actual item equals a bound value, with the same loose rules as matching.
fn value_eq(v: &Value, g: &Item, set: bool) -> bool {
    match (v, g) {
        (Value::Nil, Item::Nil) => true,
        (Value::List(vs), Item::List(gs)) => {
            if vs.len() != gs.len() {
                return false;
            }
            if set {
                let mut used = vec![false; gs.len()];
                vs.iter().all(|v| {
                    let hit = gs
                        .iter()
                        .enumerate()
                        .find(|(i, g)| !used[*i] && value_eq(v, g, false));
                    match hit {
                        Some((i, _)) => {
                            used[i] = true;
                            true
                        }
                        None => false,
                    }
                })
            } else {
                vs.iter().zip(gs).all(|(v, g)| value_eq(v, g, false))
            }
        }
        (Value::Atom(a), Item::Code(_) | Item::Sectioned { .. }) => {
            a.eq_ignore_ascii_case(&g.to_string())
        }
        (Value::Atom(a), _) => scalar_eq(&Item::Atom(a.clone()), g),
        (Value::Number(n), _) => scalar_eq(&Item::Number(*n), g),
        (Value::String(s), _) => scalar_eq(&Item::Str(s.clone()), g),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        match Pattern::parse(s.as_bytes()) {
            Ok(p) => p,
            Err(e) => panic!("pattern {s:?}: {e}"),
        }
    }

    fn ok(p: &str, actual: &str) -> Bindings {
        match pat(p).matches(actual.as_bytes(), &Bindings::default()) {
            Ok(b) => b,
            Err(e) => panic!("{p:?} vs {actual:?}: {e}"),
        }
    }

    fn no(p: &str, actual: &str) -> String {
        match pat(p).matches(actual.as_bytes(), &Bindings::default()) {
            Ok(b) => panic!("{p:?} matched {actual:?} with {b:?}"),
            Err(e) => e.0,
        }
    }

    fn perr(s: &str) -> PatternError {
        match Pattern::parse(s.as_bytes()) {
            Ok(p) => panic!("pattern {s:?} parsed: {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(
            pat("a1 OK|NO").kind(),
            &PatternKind::Tagged {
                tag: "a1".into(),
                statuses: vec!["OK".into(), "NO".into()]
            }
        );
        assert_eq!(
            pat("A2 bad [PARSE] x").kind(),
            &PatternKind::Tagged {
                tag: "A2".into(),
                statuses: vec!["BAD".into()]
            }
        );
        assert_eq!(pat("* 3 EXISTS").kind(), &PatternKind::Untagged);
        assert_eq!(pat("* OK [ALERT]").kind(), &PatternKind::Untagged);
        assert_eq!(pat("+ ...").kind(), &PatternKind::Continuation);
        assert_eq!(pat("+").kind(), &PatternKind::Continuation);
    }

    #[test]
    fn atoms_case_insensitive_and_numbers() {
        ok("* 3 exists", "* 3 EXISTS\r\n");
        ok("a1 ok", "A1 OK done\r\n");
        no("* 3 EXISTS", "* 4 EXISTS\r\n");
        let m = no("* 3 EXISTS", "* 3 RECENT\r\n");
        assert_eq!(m, "item 2: expected EXISTS, got RECENT");
    }

    #[test]
    fn human_text_ignored_and_codes() {
        ok(
            "A1 OK [READ-WRITE] SELECT completed",
            "A1 OK [READ-WRITE] done\r\n",
        );
        ok("A1 OK", "A1 OK [READ-WRITE] whatever [ text\r\n");
        ok("A1 OK anything here", "A1 OK\r\n");
        let m = no("A1 OK [READ-WRITE]", "A1 OK [READ-ONLY] done\r\n");
        assert!(m.contains("expected READ-WRITE, got READ-ONLY"), "{m}");
        assert_eq!(
            no("A1 OK [READ-WRITE]", "A1 OK done\r\n"),
            "expected response code [READ-WRITE], got none"
        );
        // An unbalanced `[` in server text is only text.
        ok("* OK", "* OK [unbalanced text\r\n");
    }

    #[test]
    fn status_alternation() {
        ok("a1 OK|NO", "a1 NO [TRYCREATE] no\r\n");
        ok("a1 OK|NO", "a1 ok fine\r\n");
        assert_eq!(
            no("a1 OK|NO", "a1 BAD what\r\n"),
            "expected status OK|NO, got BAD"
        );
        assert_eq!(no("a1 OK", "a2 OK\r\n"), "expected tag a1, got a2");
        assert_eq!(
            no("a1 OK", "* OK hi\r\n"),
            "expected tag a1, got an untagged response"
        );
        assert!(perr("a1 OK|MAYBE").message.contains("MAYBE"));
        assert!(perr("a1 FETCH").message.contains("needs a status"));
    }

    #[test]
    fn strings_literals_atoms_equal() {
        ok("* LIST () \"/\" foo", "* LIST () / \"foo\"\r\n");
        ok("* LIST () \"/\" \"a b\"", "* LIST () \"/\" {3}\r\na b\r\n");
        ok("* SEARCH 2 3", "* SEARCH \"2\" 3\r\n");
        no("* LIST () \"/\" \"Foo\"", "* LIST () \"/\" foo\r\n");
        ok(
            "* LIST () \"/\" \"a\\\"b\"",
            "* LIST () \"/\" {3}\r\na\"b\r\n",
        );
    }

    #[test]
    fn flag_sets() {
        ok(
            "* FLAGS (\\Seen \\Deleted)",
            "* FLAGS (\\deleted \\Seen)\r\n",
        );
        assert_eq!(
            no(
                "* 1 FETCH (FLAGS (\\Seen))",
                "* 1 FETCH (FLAGS (\\Seen \\Deleted))\r\n"
            ),
            "expected FLAGS (\\Seen), got (\\Seen \\Deleted): \\Deleted not expected"
        );
        assert_eq!(
            no("* FLAGS (\\Seen \\Flagged)", "* FLAGS (\\Seen)\r\n"),
            "expected FLAGS (\\Seen \\Flagged), got (\\Seen): \\Flagged is missing"
        );
        ok("* FLAGS (\\Seen ...)", "* FLAGS (\\Answered \\Seen)\r\n");
        ok(
            "* OK [PERMANENTFLAGS (\\* \\Seen)]",
            "* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n",
        );
        ok(
            "* LIST (\\HasNoChildren \\Marked) \"/\" INBOX",
            "* LIST (\\Marked \\HasNoChildren) \"/\" INBOX\r\n",
        );
        // A capture in a set takes what written-out items leave.
        let b = ok("* FLAGS ({f} \\Seen)", "* FLAGS (\\Seen $Junk)\r\n");
        assert_eq!(b.get("f"), Some(&Value::Atom("$Junk".into())));
        // Other lists stay ordered.
        no("* SEARCH (1 2)", "* SEARCH (2 1)\r\n");
    }

    #[test]
    fn keyword_lists_as_sets() {
        ok(
            "* CAPABILITY IDLE ...",
            "* CAPABILITY IMAP4rev1 IDLE UIDPLUS\r\n",
        );
        ok(
            "* capability idle imap4rev1",
            "* CAPABILITY IMAP4rev1 IDLE\r\n",
        );
        assert_eq!(
            no("* CAPABILITY IMAP4rev1", "* CAPABILITY IMAP4rev1 IDLE\r\n"),
            "expected CAPABILITY (IMAP4rev1), got (IMAP4rev1 IDLE): IDLE not expected"
        );
        assert_eq!(
            no(
                "* OK [CAPABILITY MOVE ...]",
                "* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n"
            ),
            "response code: expected CAPABILITY (MOVE ...), got (IMAP4rev1 IDLE): MOVE is missing (expected [CAPABILITY MOVE ...], got [CAPABILITY IMAP4rev1 IDLE])"
        );
        ok("* SEARCH 3 1 2", "* SEARCH 1 2 3\r\n");
        ok("* SEARCH", "* SEARCH\r\n");
        no("* SEARCH 1", "* SEARCH\r\n");
        ok("* ENABLED CONDSTORE", "* ENABLED condstore\r\n");
        assert_eq!(
            no("* SEARCH 1", "* SORT 1\r\n"),
            "item 1: expected SEARCH, got SORT"
        );
    }

    #[test]
    fn fetch_pairs_any_order() {
        ok(
            "* 1 FETCH (UID 5 FLAGS (\\Seen))",
            "* 1 FETCH (FLAGS (\\Seen) UID 5)\r\n",
        );
        let m = no("* 1 FETCH (UID 5)", "* 1 FETCH (FLAGS () UID 5)\r\n");
        assert!(m.contains("unexpected FETCH attribute FLAGS ()"), "{m}");
        ok("* 1 FETCH (UID 5 ...)", "* 1 FETCH (FLAGS () UID 5)\r\n");
        let m = no("* 1 FETCH (UID 6)", "* 1 FETCH (UID 5)\r\n");
        assert_eq!(m, "FETCH UID: expected 6, got 5");
        let m = no("* 1 FETCH (RFC822.SIZE 4)", "* 1 FETCH (UID 5)\r\n");
        assert_eq!(m, "expected FETCH attribute RFC822.SIZE, not in (UID 5)");
        ok(
            "* STATUS blurdybloop (UIDNEXT 44292 MESSAGES 231)",
            "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        );
    }

    #[test]
    fn fetch_sections_and_literals() {
        let actual = "* 12 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT)] {22}\r\nSubject: hi\r\nFrom: x\r\n UID 4)\r\n";
        ok(
            "* 12 FETCH (UID 4 body[header.fields (from subject)] {22}\r\nSubject: hi\r\nFrom: x\r\n)",
            actual,
        );
        let b = ok(
            "* 12 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT)] {h:string} ...)",
            actual,
        );
        assert_eq!(
            b.get("h"),
            Some(&Value::String(b"Subject: hi\r\nFrom: x\r\n".to_vec()))
        );
        no("* 12 FETCH (BODY[HEADER.FIELDS (FROM)] {_} ...)", actual);
        ok(
            "* 1 FETCH (BODY[]<0> \"abc\")",
            "* 1 FETCH (BODY[]<0> {3}\r\nabc)\r\n",
        );
        let m = no(
            "* 1 FETCH (BODY[] {3}\r\nabc)",
            "* 1 FETCH (BODY[] {3}\r\nabd)\r\n",
        );
        assert_eq!(m, "FETCH BODY[]: expected \"abc\", got \"abd\"");
        let m = no(
            "* 1 FETCH (BODY[] {4}\r\nab\r\n)",
            "* 1 FETCH (BODY[] {4}\r\nabc\n)\r\n",
        );
        assert_eq!(
            m,
            "FETCH BODY[]: expected {4}\"ab\\r\\n\", got {4}\"abc\\n\""
        );
    }

    #[test]
    fn literal8_and_quoted_braces() {
        ok(
            "* 1 FETCH (BINARY[] \"abc\")",
            "* 1 FETCH (BINARY[] ~{3}\r\nabc)\r\n",
        );
        // A capture only stands for a whole value.
        assert!(pat("* LIST () \"/\" \"{x}\"").capture_names().is_empty());
        ok("* LIST () \"/\" \"{x}\"", "* LIST () \"/\" {3}\r\n{x}\r\n");
    }

    #[test]
    fn captures_bind_and_compare() {
        let b = ok("* {n:number} EXISTS", "* 17 EXISTS\r\n");
        assert_eq!(b.get("n"), Some(&Value::Number(17)));
        let b = ok(
            "* OK [UIDVALIDITY {uidv}] x",
            "* OK [UIDVALIDITY 3857529045] UIDs\r\n",
        );
        assert_eq!(b.get("uidv"), Some(&Value::Number(3857529045)));
        // Bound before: must be equal.
        let mut vars = Bindings::default();
        vars.insert("n", Value::Number(17));
        assert!(
            pat("* {n} EXISTS")
                .matches(b"* 17 EXISTS\r\n", &vars)
                .is_ok()
        );
        let e = pat("* {n} EXISTS")
            .matches(b"* 18 EXISTS\r\n", &vars)
            .unwrap_err();
        assert_eq!(e.0, "item 1: expected {n} = 17, got 18");
        // Bound twice in one line.
        ok("* SEARCH {a} {a}", "* SEARCH 4 4\r\n");
        no("* SEARCH {a} {a}", "* SEARCH 4 5\r\n");
        // `_` binds nothing; mailbox variables compare by content.
        assert!(ok("* {_} EXISTS", "* 1 EXISTS\r\n").is_empty());
        vars.insert("mailbox", Value::String(b"INBOX.mt-1".to_vec()));
        assert!(
            pat("* LIST () \".\" {mailbox}")
                .matches(b"* LIST () \".\" INBOX.mt-1\r\n", &vars)
                .is_ok()
        );
        let b = ok("* 1 FETCH (FLAGS {f})", "* 1 FETCH (FLAGS (\\Seen a))\r\n");
        assert_eq!(
            b.get("f"),
            Some(&Value::List(vec![
                Value::Atom("\\Seen".into()),
                Value::Atom("a".into())
            ]))
        );
        // A bound list compares as a set after FLAGS.
        let mut vars = Bindings::default();
        vars.extend(b);
        assert!(
            pat("* 2 FETCH (FLAGS {f})")
                .matches(b"* 2 FETCH (FLAGS (a \\seen))\r\n", &vars)
                .is_ok()
        );
    }

    #[test]
    fn typed_captures() {
        assert_eq!(
            no("* {n:number} EXISTS", "* x EXISTS\r\n"),
            "item 1: expected {n:number}, got atom x"
        );
        ok(
            "* LIST {l:list} {d:string} {m:atom}",
            "* LIST () \"/\" INBOX\r\n",
        );
        ok("* LIST () {d:nil} INBOX", "* LIST () NIL INBOX\r\n");
        no("* LIST () {d:string} INBOX", "* LIST () NIL INBOX\r\n");
        assert!(perr("* {n:float} EXISTS").message.contains("float"));
    }

    #[test]
    fn rest_marker() {
        ok(
            "* CAPABILITY IMAP4rev1 ...",
            "* CAPABILITY IMAP4rev1 IDLE UIDPLUS\r\n",
        );
        ok("* CAPABILITY ...", "* CAPABILITY\r\n");
        let m = no("* LIST () \"/\"", "* LIST () \"/\" INBOX\r\n");
        assert_eq!(m, "unexpected `INBOX` after `LIST () \"/\"`");
        assert!(perr("* SEARCH ... 1").message.contains("last item"));
        let m = no("* SORT 1 2", "* SORT 1\r\n");
        assert_eq!(m, "expected 2 after `SORT 1`, got nothing more");
        no("* SORT 2 1", "* SORT 1 2\r\n");
    }

    #[test]
    fn continuation() {
        ok("+ ...", "+ Ready for literal data\r\n");
        ok("+ go ahead", "+\r\n");
        ok("+", "+ idling\r\n");
        let b = ok("+ {challenge}", "+ YWJj\r\n");
        assert_eq!(b.get("challenge"), Some(&Value::String(b"YWJj".to_vec())));
        assert_eq!(
            no("+ ...", "A1 OK done\r\n"),
            "expected a continuation request, got `A1 OK`"
        );
        assert_eq!(
            no("A1 OK", "+ more\r\n"),
            "expected tagged `A1 OK`, got a continuation request"
        );
    }

    #[test]
    fn untagged_status_vs_data() {
        ok("* BYE", "* BYE logging out\r\n");
        ok(
            "* PREAUTH [CAPABILITY IMAP4rev1 ...]",
            "* PREAUTH [CAPABILITY IMAP4rev1 X] hi\r\n",
        );
        let m = no("* BYE", "* 1 EXISTS\r\n");
        assert_eq!(m, "expected untagged `* BYE`, got `* 1 EXISTS`");
    }

    #[test]
    fn pattern_errors_have_columns() {
        let e = perr("* 1 FETCH (UID 1");
        assert_eq!((e.column, e.message.as_str()), (17, "missing `)`"));
        let e = perr("* SEARCH \"abc");
        assert_eq!(e.column, 10);
        let e = perr("* 1 FETCH (BODY[] {10}\r\nabc\r\n)");
        assert_eq!(e.message, "literal of 10 bytes, only 6 follow");
        let e = perr("* LIST {a b}");
        assert_eq!(e.column, 8);
        let e = perr("* LIST )");
        assert_eq!(e.message, "unexpected `)`");
        let e = perr("* 1 FETCH (UID 1 FLAGS ...)");
        assert_eq!(
            e.message,
            "FETCH attributes must be name/value pairs: (UID 1 FLAGS ...)"
        );
        let e = perr("{x} OK");
        assert_eq!(e.message, "the tag must be written out, not captured");
        let e = perr("(x) OK");
        assert_eq!(
            e.message,
            "expected a tag, `*` or `+` at the start of the line"
        );
    }

    #[test]
    fn template_text() {
        assert_eq!(Value::Number(5).to_template_text(), "5");
        assert_eq!(Value::Atom("\\Seen".into()).to_template_text(), "\\Seen");
        assert_eq!(
            Value::String(b"INBOX.x".to_vec()).to_template_text(),
            "INBOX.x"
        );
        assert_eq!(Value::String(b"a b".to_vec()).to_template_text(), "\"a b\"");
        assert_eq!(Value::String(b"".to_vec()).to_template_text(), "\"\"");
        assert_eq!(Value::String(b"nil".to_vec()).to_template_text(), "\"nil\"");
        assert_eq!(
            Value::String(b"a\"\\".to_vec()).to_template_text(),
            "\"a\\\"\\\\\""
        );
        assert_eq!(Value::Nil.to_template_text(), "NIL");
        assert_eq!(
            Value::List(vec![Value::Atom("\\Seen".into()), Value::Number(3)]).to_template_text(),
            "(\\Seen 3)"
        );
    }

    #[test]
    fn text_protocol_words() {
        let p = Pattern::parse_words(b"+OK {n:number} messages ...").unwrap();
        assert_eq!(p.kind(), &PatternKind::Untagged);
        let b = p
            .matches(b"+ok 2 MESSAGES (320 octets)\r\n", &Bindings::default())
            .unwrap();
        assert_eq!(b.get("n"), Some(&Value::Number(2)));
        let e = p.matches(b"-ERR no\r\n", &Bindings::default()).unwrap_err();
        assert_eq!(e.0, "item 1: expected +OK, got -ERR");
        let p = Pattern::parse_words(b"250 OK").unwrap();
        assert!(
            p.matches(b"250 OK extra\r\n", &Bindings::default())
                .is_err()
        );
        let e = Pattern::parse_words(b"250 ... x").unwrap_err();
        assert_eq!(e.column, 9);
        let e = Pattern::parse_words(b"250 {a:zzz}").unwrap_err();
        assert_eq!(e.column, 5);
    }

    #[test]
    fn text_protocol_alternatives() {
        let p = Pattern::parse_words(b"250|554 ...").unwrap();
        let none = Bindings::default();
        assert!(p.matches(b"250 2.1.5 Ok\r\n", &none).is_ok());
        assert!(p.matches(b"554 5.7.1 denied\r\n", &none).is_ok());
        let e = p.matches(b"550 5.1.1 no\r\n", &none).unwrap_err();
        assert_eq!(e.0, "item 1: expected 250|554, got 550");
        let p = Pattern::parse_words(b"+OK|-ERR").unwrap();
        assert!(p.matches(b"-err\r\n", &none).is_ok());
        assert_eq!(Pattern::parse_words(b"250 |554").unwrap_err().column, 5);
        assert_eq!(Pattern::parse_words(b"250|{x}").unwrap_err().column, 1);
    }

    /// Arbitrary input never panics the lexer or the matcher (a cheap, deterministic fuzz).
    #[test]
    fn arbitrary_input_does_not_panic() {
        const ALPHABET: &[u8] =
            b"* +aA1 0()[]{}\"\\\r\n.|:_~<>OKNOFETCHFLAGS99999999999999999999{_}{x:number}...";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let seeds = [
            pat("* 1 FETCH (FLAGS ({f} ...) UID {u})"),
            pat("a1 OK|NO [CAPABILITY ...]"),
            pat("+ {c}"),
        ];
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            if let Ok(p) = Pattern::parse(&input) {
                let _ = p.matches(&input, &Bindings::default());
            }
            let _ = Pattern::parse_words(&input);
            for p in &seeds {
                let _ = p.matches(&input, &Bindings::default());
            }
        }
    }

    /// Found by review while fuzzing: one recursion per `(`, so a server line of 50 000 `(`
    /// (or a pattern) overflowed the stack and aborted the whole run.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("* {}", "(".repeat(100_000));
        let e = Pattern::parse(deep.as_bytes()).unwrap_err();
        assert_eq!(e.column, 3 + MAX_NESTING);
        assert!(e.message.contains("nested more than 100 deep"), "{e}");
        let e = pat("* ...").matches(deep.as_bytes(), &Bindings::default());
        assert!(e.unwrap_err().0.contains("nested more than"));
        // Sections count as well.
        let deep = format!("* {}", "a[".repeat(100_000));
        assert!(Pattern::parse(deep.as_bytes()).is_err());
        // Up to the cap is fine.
        let ok = format!("* {}{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        let p = pat(&ok);
        assert!(p.matches(ok.as_bytes(), &Bindings::default()).is_ok());
    }

    #[test]
    fn capture_names_listed() {
        assert_eq!(
            pat("* OK [COPYUID {v} {a} {b}] x").capture_names(),
            vec!["v", "a", "b"]
        );
        assert_eq!(
            pat("* 1 FETCH (UID {u} FLAGS ({_} {f}))").capture_names(),
            vec!["u", "f"]
        );
    }
}
