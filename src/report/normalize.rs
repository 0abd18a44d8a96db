//! Turns a [`Transcript`] into stable text for snapshots and diffs.
//!
//! Each protocol message becomes one line, prefixed with its direction and session (`C1:`,
//! `S1:`; `C:`/`S:` for session `""`; `C1 setup:` for the harness's own setup exchanges).
//! A literal is shown as its `{N}` announcement followed by its content lines (`    | ...`),
//! and whatever follows the literal in the same message continues on a `    > ...` line.
//!
//! Values that change from run to run are replaced by fixed placeholders so that two runs
//! against the same server give the same text: UIDVALIDITY values, date-times, the
//! human-readable text after a status (`OK`, `NO`, ...), credentials, Message-ID, Date and
//! trace headers inside literals (`report::headers`), ID response values, and whatever the
//! caller names (the run's fresh mailbox names, account logins). The lines are tokenized with
//! a small IMAP lexer so that a replacement only ever hits a whole value in the right
//! position.

use super::{Direction, Transcript};

/// Replaces a UIDVALIDITY value.
pub const UIDVALIDITY: &str = "<uidvalidity>";
/// Replaces an IMAP date-time or a Date header value.
pub const DATE: &str = "<date>";
/// Replaces a LOGIN password or SASL data.
pub const PASSWORD: &str = "<password>";
/// Replaces a Message-ID header value or an ENVELOPE message-id.
pub const MESSAGE_ID: &str = "<message-id>";
/// Stands for the server's hierarchy separator where a caller substitutes it (`compare`).
pub const SEPARATOR: &str = "{sep}";
/// Replaces each value of an ID response.
pub const ID_VALUE: &str = "<id>";
/// Replaces the count in the `{N}` announcement of a literal whose content was normalized
/// (the count would vary): `{<size>}`, `{<size>+}`, `~{<size>}`.
pub const LITERAL_SIZE: &str = "<size>";

/// Normalizes a whole transcript; `substitutions` are `(value, placeholder)` pairs, e.g.
/// `("INBOX.mt-1a2b-append", "{mailbox}")`. Empty values are ignored; where two values
/// could match at one position, the longer one wins.
pub fn normalize(transcript: &Transcript, substitutions: &[(String, String)]) -> String {
    normalize_entries(transcript, substitutions, false).concat()
}

/// [`normalize`], one text per transcript entry (each one or more whole lines), so that a
/// caller can tell which message a line of the text came from.
///
/// `canonical` also writes what RFC 3501 leaves unordered in one order, for comparing two
/// servers (a replay): flag lists and capability lists sorted, FETCH attributes sorted by
/// name, and a quoted string that could be an atom written as the atom.
pub fn normalize_entries(
    transcript: &Transcript,
    substitutions: &[(String, String)],
    canonical: bool,
) -> Vec<String> {
    let subs = Substitutions::new(substitutions);
    let mut sessions: Vec<SessionState> = Vec::new();
    let mut all = Vec::with_capacity(transcript.entries.len());
    for entry in &transcript.entries {
        let mut out = String::new();
        let state = match sessions.iter().position(|s| s.name == entry.session) {
            Some(i) => &mut sessions[i],
            None => {
                sessions.push(SessionState {
                    name: entry.session.clone(),
                    auth_tag: None,
                });
                let last = sessions.len() - 1;
                &mut sessions[last]
            }
        };
        let prefix = line_prefix(&entry.session, entry.direction, entry.setup);
        let mut toks = normalize_message(&entry.bytes, entry.direction, state, &subs);
        if canonical && entry.direction == Direction::Server {
            canonical_order(&mut toks);
        }
        render(&prefix, &toks, &mut out);
        all.push(out);
    }
    all
}

/// Applies `(value, placeholder)` pairs to one piece of text the way [`normalize`] does
/// (longest value first, one pass), for callers that render other protocols' text.
pub fn substitute(text: &str, substitutions: &[(String, String)]) -> String {
    Substitutions::new(substitutions).apply(text)
}

/// The prefix of a message line, e.g. `C1:`, `S:` or `C1 setup:`.
pub fn line_prefix(session: &str, direction: Direction, setup: bool) -> String {
    let d = match direction {
        Direction::Client => 'C',
        Direction::Server => 'S',
    };
    if setup {
        format!("{d}{session} setup:")
    } else {
        format!("{d}{session}:")
    }
}

/// Lossy UTF-8 text with control characters escaped (`\r`, `\n`, `\t`, `\xNN`), so that
/// bytes from the wire can be printed on one line without garbling a terminal.
pub fn escape_lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                // Only C0/C1 controls get here, all below U+0100.
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Per-session memory needed across messages.
struct SessionState {
    name: String,
    /// Tag of an AUTHENTICATE in progress: client lines until its completion are SASL data.
    auth_tag: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

/// One lexical item of an IMAP message. Text is already escaped for display.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A run of spaces (kept so that the output shows the original spacing).
    Space(String),
    /// `(`, `)`, `[` or `]`.
    Punct(char),
    /// Anything else up to a delimiter: atoms, numbers, `*`, `+`, tags, flags, sequence sets.
    Atom(String),
    /// A quoted string, with its quotes, as written.
    Quoted(String),
    /// A literal: its announcement (`{12}`, `{12+}`, `~{12}`) and content bytes.
    Literal { announce: String, data: Vec<u8> },
    /// A placeholder that replaced one or more items; never touched again.
    Replaced(String),
}

impl Tok {
    fn is_space(&self) -> bool {
        matches!(self, Tok::Space(_))
    }

    /// The atom text, if this is an atom.
    fn atom(&self) -> Option<&str> {
        match self {
            Tok::Atom(a) => Some(a),
            _ => None,
        }
    }

    fn is_atom_ci(&self, word: &str) -> bool {
        self.atom().is_some_and(|a| a.eq_ignore_ascii_case(word))
    }

    fn is_punct(&self, c: char) -> bool {
        matches!(self, Tok::Punct(p) if *p == c)
    }
}

/// Splits one message (without its final CRLF) into tokens.
fn lex(bytes: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' => {
                let start = i;
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
                toks.push(Tok::Space(" ".repeat(i - start)));
            }
            b'(' | b')' | b'[' | b']' => {
                toks.push(Tok::Punct(b as char));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    // A backslash quotes the next character (RFC 3501 quoted-specials).
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                toks.push(Tok::Quoted(escape_lossy(&bytes[start..i])));
            }
            _ => {
                if let Some((announce, data_start)) = literal_at(bytes, i) {
                    let len = literal_len(&announce);
                    let end = data_start.saturating_add(len).min(bytes.len());
                    toks.push(Tok::Literal {
                        announce,
                        data: bytes[data_start..end].to_vec(),
                    });
                    i = end;
                    continue;
                }
                let start = i;
                i += 1;
                while i < bytes.len()
                    && !matches!(bytes[i], b' ' | b'(' | b')' | b'[' | b']' | b'"')
                    && literal_at(bytes, i).is_none()
                {
                    i += 1;
                }
                toks.push(Tok::Atom(escape_lossy(&bytes[start..i])));
            }
        }
    }
    toks
}

/// If a literal announcement (`{N}`, `{N+}`, `~{N}`) followed by a line end starts at `i`,
/// returns it and the index where its data begins.
fn literal_at(bytes: &[u8], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    if bytes.get(j) == Some(&b'~') {
        j += 1;
    }
    if bytes.get(j) != Some(&b'{') {
        return None;
    }
    j += 1;
    let digits_start = j;
    while bytes.get(j).is_some_and(u8::is_ascii_digit) {
        j += 1;
    }
    if j == digits_start {
        return None;
    }
    if bytes.get(j) == Some(&b'+') || bytes.get(j) == Some(&b'-') {
        j += 1;
    }
    if bytes.get(j) != Some(&b'}') {
        return None;
    }
    j += 1;
    let announce = String::from_utf8_lossy(&bytes[i..j]).into_owned();
    // Strict IMAP wants CRLF; a bare LF is accepted here so a broken server still renders.
    if bytes[j..].starts_with(b"\r\n") {
        Some((announce, j + 2))
    } else if bytes.get(j) == Some(&b'\n') {
        Some((announce, j + 1))
    } else {
        None
    }
}

/// The byte count of a literal announcement made by [`literal_at`].
fn literal_len(announce: &str) -> usize {
    announce
        .chars()
        .filter(char::is_ascii_digit)
        .fold(0usize, |n, c| {
            n.saturating_mul(10)
                .saturating_add(c as usize - '0' as usize)
        })
}

/// Indices of the tokens that are not spaces.
fn significant(toks: &[Tok]) -> Vec<usize> {
    (0..toks.len()).filter(|&i| !toks[i].is_space()).collect()
}

/// Given the index of an opening `(`, the significant-token indices of each item of the list
/// (the index of its first token; a nested list counts as one item) and the index of the
/// matching `)` (or `toks.len()` when unbalanced).
fn list_items(toks: &[Tok], open: usize) -> (Vec<usize>, usize) {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut i = open + 1;
    while i < toks.len() {
        let t = &toks[i];
        if t.is_punct(')') && depth == 0 {
            return (items, i);
        }
        if depth == 0 && !t.is_space() {
            // Items are separated by spaces: `BODY[]<0.5>` is one item, not four.
            let prev = &toks[i - 1];
            if i == open + 1 || prev.is_space() {
                items.push(i);
            }
        }
        if t.is_punct('(') || t.is_punct('[') {
            depth += 1;
        } else if (t.is_punct(')') || t.is_punct(']')) && depth > 0 {
            depth -= 1;
        }
        i += 1;
    }
    (items, toks.len())
}

// ---------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------

const STATUS_WORDS: [&str; 5] = ["OK", "NO", "BAD", "BYE", "PREAUTH"];

fn normalize_message(
    raw: &[u8],
    direction: Direction,
    state: &mut SessionState,
    subs: &Substitutions,
) -> Vec<Tok> {
    let body = raw.strip_suffix(b"\r\n").unwrap_or(raw);
    let mut toks = lex(body);
    match direction {
        Direction::Client => client_rules(&mut toks, state),
        Direction::Server => server_rules(&mut toks, state),
    }
    for t in &mut toks {
        match t {
            Tok::Quoted(q) if is_date_time(q) => *t = Tok::Replaced(DATE.to_string()),
            _ => {}
        }
    }
    for t in &mut toks {
        match t {
            Tok::Atom(a) => *a = subs.apply(a),
            Tok::Quoted(q) => *q = subs.apply(q),
            Tok::Literal { announce, data } => {
                let filtered = super::headers::normalize_message(data);
                let headers_changed = filtered.as_ref() != data.as_slice();
                let shown = escape_literal(&filtered);
                let normal = subs.apply(&shown);
                if headers_changed || normal != shown {
                    let digits: String = announce.chars().filter(char::is_ascii_digit).collect();
                    *announce = announce.replacen(&digits, LITERAL_SIZE, 1);
                }
                *data = normal.into_bytes();
            }
            _ => {}
        }
    }
    toks
}

/// ATOM-CHARs only (RFC 3501 9): no space, control, `(){%*"\]` or 8-bit byte (and no
/// `[` either, to keep section-like text quoted).
fn could_be_atom(text: &str) -> bool {
    text.bytes()
        .all(|b| b > b' ' && b < 0x7f && !b"(){%*\"\\[]".contains(&b))
}

/// `text` without the `{name}` placeholders the caller's substitutions put in: they stand
/// for values such as the run's fresh mailbox names, which are atoms on every server, so a
/// quoted `"{mailbox}/new"` and a bare `{mailbox}/new` compare equal.
fn without_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let name_len = rest[open + 1..].find('}').filter(|&n| {
            n > 0
                && rest[open + 1..open + 1 + n]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b))
        });
        match name_len {
            Some(n) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + n + 2..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// See [`normalize_entries`]: sets in one order, equal values in one spelling.
fn canonical_order(toks: &mut Vec<Tok>) {
    for t in toks.iter_mut() {
        if let Tok::Quoted(q) = t
            && let Some(inner) = q.strip_prefix('"').and_then(|q| q.strip_suffix('"'))
            && !inner.is_empty()
            && !inner.eq_ignore_ascii_case("NIL")
            // The hierarchy delimiter is a quoted char in the grammar (RFC 3501 9, LIST).
            && inner != SEPARATOR
            && could_be_atom(&without_placeholders(inner))
        {
            *t = Tok::Atom(inner.to_string());
        }
    }
    let text = |t: &[Tok]| -> String {
        let mut out = String::new();
        render_toks(t, &mut out);
        out.to_ascii_uppercase()
    };
    // Lists of flags: sorted items.
    let mut i = 0;
    while i < toks.len() {
        let opens_set = ["FLAGS", "PERMANENTFLAGS"]
            .iter()
            .any(|w| toks[i].is_atom_ci(w))
            && toks.get(i + 2).is_some_and(|t| t.is_punct('('));
        if opens_set {
            sort_items(toks, i + 2, 1, &text);
        }
        i += 1;
    }
    // Capability lists: `* CAPABILITY a b` and `[CAPABILITY a b]`, items up to the end or `]`.
    if let Some(cap) = toks.iter().position(|t| t.is_atom_ci("CAPABILITY")) {
        let end = toks[cap..]
            .iter()
            .position(|t| t.is_punct(']'))
            .map_or(toks.len(), |p| cap + p);
        let mut words: Vec<Tok> = toks[cap + 1..end]
            .iter()
            .filter(|t| !t.is_space())
            .cloned()
            .collect();
        words.sort_by_key(|t| text(std::slice::from_ref(t)));
        let mut spaced = Vec::new();
        for w in words {
            spaced.push(Tok::Space(" ".to_string()));
            spaced.push(w);
        }
        toks.splice(cap + 1..end, spaced);
    }
    // FETCH attributes: name/value pairs sorted by name.
    let sig = significant(toks);
    if sig.get(2).is_some_and(|&i| toks[i].is_atom_ci("FETCH"))
        && let Some(&open) = sig.get(3)
        && toks[open].is_punct('(')
    {
        sort_items(toks, open, 2, &text);
    }
}

/// Sorts the items of the list opening at `open`, `group` items at a time (2 for FETCH
/// name/value pairs), by the text of each group's first item; one space between items.
fn sort_items(toks: &mut Vec<Tok>, open: usize, group: usize, text: &dyn Fn(&[Tok]) -> String) {
    let (items, close) = list_items(toks, open);
    if items.is_empty() || close >= toks.len() {
        return;
    }
    let mut groups: Vec<(String, Vec<Tok>)> = Vec::new();
    for chunk in items.chunks(group) {
        let start = chunk[0];
        let end = items
            .iter()
            .find(|&&x| x > *chunk.last().unwrap_or(&start))
            .copied()
            .unwrap_or(close);
        let mut part: Vec<Tok> = toks[start..end].to_vec();
        while part.last().is_some_and(Tok::is_space) {
            part.pop();
        }
        let key_end = chunk.get(1).copied().unwrap_or(end);
        groups.push((text(&toks[start..key_end]), part));
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut joined = Vec::new();
    for (n, (_, part)) in groups.into_iter().enumerate() {
        if n > 0 {
            joined.push(Tok::Space(" ".to_string()));
        }
        joined.extend(part);
    }
    toks.splice(open + 1..close, joined);
}

fn client_rules(toks: &mut Vec<Tok>, state: &mut SessionState) {
    let sig = significant(toks);
    if state.auth_tag.is_some() {
        // Inside AUTHENTICATE every client line is SASL data, except `*` which cancels.
        let is_cancel = sig.len() == 1 && toks[sig[0]].atom() == Some("*");
        if !is_cancel && !sig.is_empty() {
            *toks = vec![Tok::Replaced(PASSWORD.to_string())];
        }
        return;
    }
    let Some(&cmd) = sig.get(1) else { return };
    let tag = toks[sig[0]].atom().map(str::to_string);
    if toks[cmd].is_atom_ci("LOGIN") {
        if let Some(&pw) = sig.get(3) {
            toks[pw] = Tok::Replaced(PASSWORD.to_string());
        }
    } else if toks[cmd].is_atom_ci("AUTHENTICATE") {
        // SASL-IR (RFC 4959): the initial response carries the credentials; `=` is empty.
        if let Some(&ir) = sig.get(3)
            && toks[ir].atom() != Some("=")
        {
            toks[ir] = Tok::Replaced(PASSWORD.to_string());
        }
        state.auth_tag = tag;
    }
}

fn server_rules(toks: &mut Vec<Tok>, state: &mut SessionState) {
    let sig = significant(toks);
    let Some(&first) = sig.first() else { return };
    if let Some(tag) = &state.auth_tag
        && toks[first].atom() == Some(tag.as_str())
    {
        state.auth_tag = None;
    }
    if toks[first].atom() == Some("+") {
        // Continuation text is human-readable or a SASL challenge: both vary.
        truncate_after_code(toks, &sig, 0);
        return;
    }
    let Some(&second) = sig.get(1) else { return };
    if STATUS_WORDS.iter().any(|w| toks[second].is_atom_ci(w)) {
        truncate_after_code(toks, &sig, 1);
        return;
    }
    if toks[first].atom() != Some("*") {
        return;
    }
    if toks[second].is_atom_ci("STATUS") {
        status_rule(toks);
    } else if toks[second].is_atom_ci("ID") {
        id_rule(toks, &sig);
    } else if sig.get(2).is_some_and(|&i| toks[i].is_atom_ci("FETCH")) {
        fetch_rule(toks);
    }
}

/// Keeps the tokens up to `sig[keep]` and an optional `[code]` right after it; drops the
/// human-readable text. Volatile values inside the code are replaced.
fn truncate_after_code(toks: &mut Vec<Tok>, sig: &[usize], keep: usize) {
    let Some(&last_kept) = sig.get(keep) else {
        return;
    };
    let mut end = last_kept + 1;
    if let Some(&open) = sig.get(keep + 1)
        && toks[open].is_punct('[')
    {
        let mut depth = 0usize;
        let mut close = toks.len();
        for (i, t) in toks.iter().enumerate().skip(open) {
            if t.is_punct('[') {
                depth += 1;
            } else if t.is_punct(']') {
                depth -= 1;
                if depth == 0 {
                    close = i;
                    break;
                }
            }
        }
        end = (close + 1).min(toks.len());
        code_rule(toks, open, end);
    }
    toks.truncate(end);
}

/// Replaces the UIDVALIDITY in `[UIDVALIDITY n]`, `[APPENDUID n ...]`, `[COPYUID n ...]`.
fn code_rule(toks: &mut [Tok], open: usize, end: usize) {
    let inner: Vec<usize> = (open + 1..end).filter(|&i| !toks[i].is_space()).collect();
    let Some(&name) = inner.first() else { return };
    let volatile_first_arg = ["UIDVALIDITY", "APPENDUID", "COPYUID"];
    if volatile_first_arg.iter().any(|w| toks[name].is_atom_ci(w))
        && let Some(&value) = inner.get(1)
        && toks[value].atom().is_some()
    {
        toks[value] = Tok::Replaced(UIDVALIDITY.to_string());
    }
}

/// `* STATUS mailbox (MESSAGES 1 UIDVALIDITY n ...)`.
fn status_rule(toks: &mut [Tok]) {
    let Some(open) = toks.iter().position(|t| t.is_punct('(')) else {
        return;
    };
    let (items, _) = list_items(toks, open);
    for pair in items.chunks(2) {
        if let [name, value] = pair
            && toks[*name].is_atom_ci("UIDVALIDITY")
        {
            toks[*value] = Tok::Replaced(UIDVALIDITY.to_string());
        }
    }
}

/// `* ID ("name" "Dovecot" "version" "2.3.21")`: the values go, the field names stay.
fn id_rule(toks: &mut [Tok], sig: &[usize]) {
    let Some(&open) = sig.get(2) else { return };
    if !toks[open].is_punct('(') {
        return;
    }
    let (items, _) = list_items(toks, open);
    for pair in items.chunks(2) {
        if let [_, value] = pair
            && !toks[*value].is_atom_ci("NIL")
        {
            toks[*value] = Tok::Replaced(ID_VALUE.to_string());
        }
    }
}

/// FETCH data: INTERNALDATE, and the date and message-id of an ENVELOPE.
fn fetch_rule(toks: &mut [Tok]) {
    for i in 0..toks.len() {
        if toks[i].is_atom_ci("INTERNALDATE") {
            if let Some(v) = (i + 1..toks.len()).find(|&j| !toks[j].is_space())
                && !toks[v].is_punct('(')
            {
                toks[v] = Tok::Replaced(DATE.to_string());
            }
        } else if toks[i].is_atom_ci("ENVELOPE")
            && let Some(open) = (i + 1..toks.len()).find(|&j| !toks[j].is_space())
            && toks[open].is_punct('(')
        {
            // RFC 3501 7.4.2: envelope = date subject from sender reply-to to cc bcc
            // in-reply-to message-id.
            let (items, _) = list_items(toks, open);
            for (pos, placeholder) in [(0, DATE), (9, MESSAGE_ID)] {
                if let Some(&v) = items.get(pos)
                    && !toks[v].is_atom_ci("NIL")
                    && !toks[v].is_punct('(')
                {
                    toks[v] = Tok::Replaced(placeholder.to_string());
                }
            }
        }
    }
}

/// An IMAP date-time (RFC 3501 9): `"dd-Mon-yyyy hh:mm:ss +zzzz"`, day may be space-padded.
fn is_date_time(quoted: &str) -> bool {
    let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) else {
        return false;
    };
    let b = inner.trim_start().as_bytes();
    // After trimming a padding space: d-Mon-yyyy or dd-Mon-yyyy, then " hh:mm:ss +zzzz".
    let day_len = match b.iter().position(|&c| c == b'-') {
        Some(n @ 1..=2) => n,
        _ => return false,
    };
    let rest = &b[day_len..];
    let shape = b"-Mon-yyyy hh:mm:ss +zzzz";
    rest.len() == shape.len()
        && b[..day_len].iter().all(u8::is_ascii_digit)
        && rest.iter().zip(shape).all(|(&c, &s)| match s {
            b'M' => c.is_ascii_uppercase(),
            b'o' | b'n' => c.is_ascii_lowercase(),
            b'y' | b'h' | b'm' | b's' | b'z' => c.is_ascii_digit(),
            b'+' => c == b'+' || c == b'-',
            _ => c == s,
        })
}

/// Literal content as display text: lines split at CRLF, other controls escaped.
fn escape_literal(data: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = data;
    while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
        parts.push(escape_lossy(&rest[..pos]));
        rest = &rest[pos + 2..];
    }
    let mut text = parts.join("\n");
    if !parts.is_empty() {
        text.push('\n');
    }
    text.push_str(&escape_lossy(rest));
    text
}

/// The caller's `(value, placeholder)` pairs, longest value first.
struct Substitutions<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Substitutions<'a> {
    fn new(pairs: &'a [(String, String)]) -> Self {
        let mut pairs: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(v, _)| !v.is_empty())
            .map(|(v, p)| (v.as_str(), p.as_str()))
            .collect();
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        Substitutions { pairs }
    }

    /// One left-to-right pass, so a placeholder is never itself substituted.
    fn apply(&self, text: &str) -> String {
        if self.pairs.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        'outer: while i < text.len() {
            for (value, placeholder) in &self.pairs {
                if text[i..].starts_with(value) {
                    out.push_str(placeholder);
                    i += value.len();
                    continue 'outer;
                }
            }
            let Some(c) = text[i..].chars().next() else {
                break;
            };
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Indentation of literal content (`    | `) and of text after a literal (`    > `).
const LITERAL_LINE: &str = "    |";
const AFTER_LITERAL: &str = "    >";

fn render(prefix: &str, toks: &[Tok], out: &mut String) {
    let mut line = String::from(prefix);
    line.push(' ');
    // After a literal, a space token that follows serves as the separator.
    let mut after_literal = false;
    for t in toks {
        if after_literal && !t.is_space() {
            line.push(' ');
        }
        after_literal = false;
        match t {
            Tok::Space(s) => line.push_str(s),
            Tok::Punct(c) => line.push(*c),
            Tok::Atom(s) | Tok::Quoted(s) | Tok::Replaced(s) => line.push_str(s),
            Tok::Literal { announce, data } => {
                line.push_str(announce);
                push_line(out, &line);
                let text = String::from_utf8_lossy(data);
                let ends_with_newline = text.ends_with('\n') || text.is_empty();
                let body = text.strip_suffix('\n').unwrap_or(&text);
                if !text.is_empty() {
                    for l in body.split('\n') {
                        push_line(out, &format!("{LITERAL_LINE} {l}"));
                    }
                }
                if !ends_with_newline {
                    push_line(out, "    \\ no CRLF at end of literal");
                }
                line = String::from(AFTER_LITERAL);
                after_literal = true;
            }
        }
    }
    if line != AFTER_LITERAL {
        push_line(out, &line);
    }
}

/// The tokens as one string (literal content included), for sort keys.
fn render_toks(toks: &[Tok], out: &mut String) {
    for t in toks {
        match t {
            Tok::Space(s) | Tok::Atom(s) | Tok::Quoted(s) | Tok::Replaced(s) => out.push_str(s),
            Tok::Punct(c) => out.push(*c),
            Tok::Literal { announce, data } => {
                out.push_str(announce);
                out.push_str(&String::from_utf8_lossy(data));
            }
        }
    }
}

/// Appends one output line without trailing spaces (they would make diffs noisy).
fn push_line(out: &mut String, line: &str) {
    out.push_str(line.trim_end_matches(' '));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TranscriptEntry;

    fn entry(session: &str, direction: Direction, setup: bool, text: &str) -> TranscriptEntry {
        TranscriptEntry {
            session: session.to_string(),
            direction,
            setup,
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn c(session: &str, text: &str) -> TranscriptEntry {
        entry(session, Direction::Client, false, text)
    }

    fn s(session: &str, text: &str) -> TranscriptEntry {
        entry(session, Direction::Server, false, text)
    }

    fn norm(entries: Vec<TranscriptEntry>) -> String {
        normalize(&Transcript { entries }, &[])
    }

    #[test]
    fn canonical_form_reads_quoted_names_with_placeholders_as_atoms() {
        let t = |text: &str| Transcript {
            entries: vec![s("1", text)],
        };
        let subs = [("mt-1a2b".to_string(), "{mailbox}".to_string())];
        let canon = |text: &str| normalize_entries(&t(text), &subs, true).concat();
        assert_eq!(
            canon("* LIST () \"/\" \"mt-1a2b/new\"\r\n"),
            canon("* LIST () \"/\" mt-1a2b/new\r\n")
        );
        assert_eq!(
            canon("* STATUS \"mt-1a2b\" (MESSAGES 2)\r\n"),
            "S1: * STATUS {mailbox} (MESSAGES 2)\n"
        );
        // Not an atom once the placeholders are gone: stays quoted.
        assert_eq!(
            canon("* STATUS \"mt-1a2b two\" (MESSAGES 2)\r\n"),
            "S1: * STATUS \"{mailbox} two\" (MESSAGES 2)\n"
        );
        assert_eq!(without_placeholders("{a}x{b:c}{"), "x{");
        assert_eq!(without_placeholders("{}{no space}"), "{}{no space}");
    }

    #[test]
    fn canonical_order_sorts_sets_and_fetch_attributes() {
        let t = |text: &str| Transcript {
            entries: vec![s("1", text)],
        };
        let canon = |text: &str| normalize_entries(&t(text), &[], true).concat();
        assert_eq!(
            canon("* 2 FETCH (FLAGS (\\Recent \\Flagged) UID 2)\r\n"),
            canon("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n")
        );
        assert_eq!(
            canon("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n"),
            "S1: * 2 FETCH (FLAGS (\\Flagged \\Recent) UID 2)\n"
        );
        assert_eq!(
            canon("* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] hi\r\n"),
            "S1: * OK [CAPABILITY AUTH=PLAIN IDLE IMAP4rev1]\n"
        );
        assert_eq!(
            canon("* STATUS \"box\" (MESSAGES 2)\r\n"),
            canon("* STATUS box (MESSAGES 2)\r\n")
        );
        // A literal value moves with its name.
        assert_eq!(
            canon("* 1 FETCH (UID 3 BODY[] {2}\r\nab FLAGS ())\r\n"),
            "S1: * 1 FETCH (BODY[] {2}\n    | ab\n    \\ no CRLF at end of literal\n    > FLAGS () UID 3)\n"
        );
        // Snapshots keep the server's order.
        assert_eq!(
            normalize(&t("* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"), &[]),
            "S1: * 2 FETCH (UID 2 FLAGS (\\Seen))\n"
        );
    }

    #[test]
    fn greeting_text_and_status_text_are_dropped() {
        let out = norm(vec![
            s(
                "",
                "* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot ready.\r\n",
            ),
            s("", "a1 NO [TRYCREATE] Mailbox doesn't exist: foo\r\n"),
            s("", "a2 OK Logged in\r\n"),
            s("", "* BYE Logging out\r\n"),
        ]);
        assert_eq!(
            out,
            "S: * OK [CAPABILITY IMAP4rev1 LITERAL+]\nS: a1 NO [TRYCREATE]\nS: a2 OK\nS: * BYE\n"
        );
    }

    #[test]
    fn uidvalidity_in_codes_and_status_is_replaced() {
        let out = norm(vec![
            s("1", "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"),
            s("1", "a1 OK [APPENDUID 1700000000 4] Append completed.\r\n"),
            s("1", "a2 OK [COPYUID 1700000000 1:2 5:6] Done\r\n"),
            s(
                "1",
                "* STATUS \"INBOX\" (MESSAGES 2 UIDVALIDITY 1700000000 UIDNEXT 7)\r\n",
            ),
            s("1", "* OK [UIDNEXT 7] Predicted next UID\r\n"),
        ]);
        insta::assert_snapshot!(out, @r#"
        S1: * OK [UIDVALIDITY <uidvalidity>]
        S1: a1 OK [APPENDUID <uidvalidity> 4]
        S1: a2 OK [COPYUID <uidvalidity> 1:2 5:6]
        S1: * STATUS "INBOX" (MESSAGES 2 UIDVALIDITY <uidvalidity> UIDNEXT 7)
        S1: * OK [UIDNEXT 7]
        "#);
    }

    #[test]
    fn credentials_are_hidden() {
        let out = norm(vec![
            entry(
                "1",
                Direction::Client,
                true,
                "a0 LOGIN alice \"s3cret pw\"\r\n",
            ),
            entry(
                "1",
                Direction::Server,
                true,
                "a0 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
            ),
            c("2", "b1 AUTHENTICATE PLAIN\r\n"),
            s("2", "+ \r\n"),
            c("2", "AGFsaWNlAHNlY3JldA==\r\n"),
            s("2", "b1 OK done\r\n"),
            c("2", "b2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
            s("2", "b2 NO [AUTHENTICATIONFAILED] nope\r\n"),
            c("2", "b3 AUTHENTICATE LOGIN\r\n"),
            s("2", "+ VXNlcm5hbWU6\r\n"),
            c("2", "*\r\n"),
            s("2", "b3 BAD cancelled\r\n"),
            c("2", "b4 NOOP\r\n"),
        ]);
        insta::assert_snapshot!(out, @r#"
        C1 setup: a0 LOGIN alice <password>
        S1 setup: a0 OK [CAPABILITY IMAP4rev1]
        C2: b1 AUTHENTICATE PLAIN
        S2: +
        C2: <password>
        S2: b1 OK
        C2: b2 AUTHENTICATE PLAIN <password>
        S2: b2 NO [AUTHENTICATIONFAILED]
        C2: b3 AUTHENTICATE LOGIN
        S2: +
        C2: *
        S2: b3 BAD
        C2: b4 NOOP
        "#);
    }

    #[test]
    fn login_with_literal_password_hides_the_literal() {
        let out = norm(vec![c("", "a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n")]);
        assert_eq!(
            out,
            "C: a1 LOGIN {5}\n    | alice\n    \\ no CRLF at end of literal\n    > <password>\n"
        );
    }

    #[test]
    fn literals_are_shown_with_their_lines() {
        let msg = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
                   Message-ID: <B27397-0100000@cac.washington.edu>\r\n\
                   Subject: afternoon meeting\r\n\r\nHello Joe\r\n";
        let append = format!(
            "a1 APPEND saved (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {{{}}}\r\n{msg}\r\n",
            msg.len()
        );
        let fetch = "* 1 FETCH (UID 4 BODY[TEXT] {11}\r\nHello Joe\r\n)\r\n";
        let out = norm(vec![
            c("", &append),
            s("", "+ Ready for literal data\r\n"),
            s("", fetch),
        ]);
        insta::assert_snapshot!(out, @r#"
        C: a1 APPEND saved (\Seen) <date> {<size>}
            | Date: <date>
            | Message-ID: <message-id>
            | Subject: afternoon meeting
            |
            | Hello Joe
        S: +
        S: * 1 FETCH (UID 4 BODY[TEXT] {11}
            | Hello Joe
            > )
        "#);
    }

    #[test]
    fn fetch_dates_and_envelope_are_replaced() {
        let line = "* 2 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" ENVELOPE \
                    (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"Subj\" ((NIL NIL \"a\" \"b.c\")) \
                    NIL NIL NIL NIL NIL NIL \"<x@y>\") FLAGS (\\Seen))\r\n";
        let out = norm(vec![s("", line)]);
        assert_eq!(
            out,
            "S: * 2 FETCH (INTERNALDATE <date> ENVELOPE (<date> \"Subj\" ((NIL NIL \"a\" \"b.c\")) \
             NIL NIL NIL NIL NIL NIL <message-id>) FLAGS (\\Seen))\n"
        );
    }

    #[test]
    fn id_values_are_replaced_but_names_kept() {
        let out = norm(vec![
            c("", "a1 ID (\"name\" \"mailtape\")\r\n"),
            s(
                "",
                "* ID (\"name\" \"Dovecot\" \"version\" \"2.3.21\" \"os\" NIL)\r\n",
            ),
            s("", "* ID NIL\r\n"),
        ]);
        insta::assert_snapshot!(out, @r#"
        C: a1 ID ("name" "mailtape")
        S: * ID ("name" <id> "version" <id> "os" NIL)
        S: * ID NIL
        "#);
    }

    #[test]
    fn caller_substitutions_longest_first() {
        let subs = vec![
            ("INBOX.mt-1a2b-append".to_string(), "{mailbox}".to_string()),
            ("INBOX.mt-1a2b-append2".to_string(), "{other}".to_string()),
            ("alice".to_string(), "{user}".to_string()),
            (String::new(), "{never}".to_string()),
        ];
        let t = Transcript {
            entries: vec![
                c("1", "a1 LOGIN alice pw\r\n"),
                c("1", "a2 SELECT \"INBOX.mt-1a2b-append\"\r\n"),
                s("1", "* LIST () \".\" INBOX.mt-1a2b-append2\r\n"),
                s("1", "* LIST () \".\" INBOX.mt-1a2b-append.child\r\n"),
            ],
        };
        insta::assert_snapshot!(normalize(&t, &subs), @r#"
        C1: a1 LOGIN {user} <password>
        C1: a2 SELECT "{mailbox}"
        S1: * LIST () "." {other}
        S1: * LIST () "." {mailbox}.child
        "#);
    }

    #[test]
    fn control_bytes_are_escaped_and_bare_lf_shown() {
        let out = norm(vec![
            s("", "* 1 EXISTS\n"),
            s("", "* OK\x00 [ALERT] x\r\n"),
            c("", "a\x07b\r\n"),
        ]);
        assert_eq!(
            out,
            "S: * 1 EXISTS\\n\nS: * OK\\x00 [ALERT] x\nC: a\\x07b\n"
        );
    }

    #[test]
    fn date_time_shape() {
        assert!(is_date_time("\"17-Jul-1996 02:44:25 -0700\""));
        assert!(is_date_time("\" 7-Feb-1994 21:52:25 +0000\""));
        assert!(!is_date_time("\"17-Jul-1996\""));
        assert!(!is_date_time("\"hello\""));
        assert!(!is_date_time("\"17-jul-1996 02:44:25 -0700\""));
    }

    #[test]
    fn literal_announcements_need_a_line_end() {
        assert_eq!(lex(b"{3}"), vec![Tok::Atom("{3}".into())]);
        assert_eq!(
            lex(b"x ~{2}\r\nab"),
            vec![
                Tok::Atom("x".into()),
                Tok::Space(" ".into()),
                Tok::Literal {
                    announce: "~{2}".into(),
                    data: b"ab".to_vec()
                }
            ]
        );
        // A count larger than what arrived takes what is there instead of panicking.
        assert_eq!(
            lex(b"{99}\r\nab"),
            vec![Tok::Literal {
                announce: "{99}".into(),
                data: b"ab".to_vec()
            }]
        );
    }

    /// A whole two-session run as the engine would record it: the file snapshot shows the
    /// format end to end.
    #[test]
    fn whole_transcript() {
        let setup = |session: &str, direction, text: &str| entry(session, direction, true, text);
        let msg = "Date: Sat, 28 Nov 2026 05:30:00 +0000\r\nMessage-ID: <1a2b@example.org>\r\nSubject: one\r\n\r\nbody\r\n";
        let entries = vec![
            setup(
                "1",
                Direction::Server,
                "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n",
            ),
            setup(
                "1",
                Direction::Client,
                "m1 LOGIN \"alice\" \"pa55word\"\r\n",
            ),
            setup(
                "1",
                Direction::Server,
                "m1 OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] Logged in\r\n",
            ),
            c("1", "a1 SELECT \"INBOX.mt-7f3e-select\"\r\n"),
            s(
                "1",
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            ),
            s(
                "1",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n",
            ),
            s("1", "* 0 EXISTS\r\n"),
            s("1", "* OK [UIDVALIDITY 1764307800] UIDs valid\r\n"),
            s("1", "* OK [UIDNEXT 1] Predicted next UID\r\n"),
            s(
                "1",
                "a1 OK [READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).\r\n",
            ),
            c(
                "2",
                &format!(
                    "b1 APPEND \"INBOX.mt-7f3e-select\" (\\Seen) {{{}+}}\r\n{msg}\r\n",
                    msg.len()
                ),
            ),
            s(
                "2",
                "b1 OK [APPENDUID 1764307800 1] Append completed (0.004 + 0.000 secs).\r\n",
            ),
            s("1", "* 1 EXISTS\r\n"),
            c(
                "1",
                "a2 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BODY[TEXT])\r\n",
            ),
            s(
                "1",
                "* 1 FETCH (FLAGS (\\Seen) INTERNALDATE \"28-Nov-2026 05:30:01 +0000\" RFC822.SIZE 95 BODY[TEXT] {6}\r\nbody\r\n)\r\n",
            ),
            s("1", "a2 OK Fetch completed (0.001 + 0.000 secs).\r\n"),
            c("1", "a3 LOGOUT\r\n"),
            s("1", "* BYE Logging out\r\n"),
            s("1", "a3 OK Logout completed (0.001 + 0.000 secs).\r\n"),
        ];
        let subs = vec![
            ("INBOX.mt-7f3e-select".to_string(), "{mailbox}".to_string()),
            ("alice".to_string(), "{user}".to_string()),
        ];
        insta::assert_snapshot!(
            "whole_transcript",
            normalize(&Transcript { entries }, &subs)
        );
    }
}
