//! Values that differ from server to server for the same exchange: UIDVALIDITY, UIDs (FETCH
//! UID, UID SEARCH results, APPENDUID/COPYUID, UIDNEXT), POP3 unique-ids and message sizes.
//!
//! A [`Context`] per session and side reads each message in order and says where such values
//! sit ([`Found`]); the replay pairs the recorded step's messages with the live step's
//! ([`Captures::learn_step`]) and so learns which live value stands for which recorded one.
//! Later client lines get the live value before they are sent ([`Captures::map_client`]),
//! and in the diff both sides of a pair show one placeholder ([`Captures::placeholders`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use crate::script::Protocol;

/// What a per-server value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    UidValidity,
    Uid,
    /// A POP3 UIDL unique-id (RFC 1939 7).
    Uidl,
    /// A POP3 message or maildrop size: a message delivered by SMTP gets trace headers
    /// whose length depends on the server.
    Size,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::UidValidity => "uidvalidity",
            Kind::Uid => "uid",
            Kind::Uidl => "uidl",
            Kind::Size => "size",
        }
    }
}

/// A per-server value inside one message: its byte range and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub range: Range<usize>,
    pub kind: Kind,
}

/// What a session has said so far that decides how the next server message reads.
#[derive(Debug, Clone)]
pub struct Context {
    protocol: Protocol,
    /// IMAP: tags of UID SEARCH / UID SORT commands not completed yet: `* SEARCH` and
    /// `* SORT` then list UIDs, not sequence numbers.
    uid_search: BTreeSet<String>,
    /// POP3: commands waiting for their reply, oldest first; the greeting is owed from
    /// the start.
    pop3_queue: VecDeque<Pop3Command>,
    /// POP3: the verb whose multi-line reply is being read.
    pop3_body: Option<String>,
    /// SMTP: the last line was `ddd-...`, so the reply goes on.
    smtp_open: bool,
}

impl Context {
    pub fn new(protocol: Protocol) -> Context {
        Context {
            protocol,
            uid_search: BTreeSet::new(),
            pop3_queue: VecDeque::from([Pop3Command::default()]),
            pop3_body: None,
            smtp_open: false,
        }
    }

    /// Whether the next server line starts a new reply (every IMAP message does; a POP3
    /// multi-line body and SMTP `ddd-` lines continue one).
    pub fn starts_reply(&self) -> bool {
        match self.protocol {
            Protocol::Imap => true,
            Protocol::Pop3 => self.pop3_body.is_none(),
            Protocol::Smtp => !self.smtp_open,
        }
    }

    /// A client message: note what its replies will mean, and say where it holds UIDs.
    pub fn client(&mut self, bytes: &[u8]) -> Vec<Found> {
        match self.protocol {
            Protocol::Imap => {
                let toks = imap_tokens(bytes);
                let words: Vec<String> = toks
                    .iter()
                    .take(3)
                    .map(|(r, _)| String::from_utf8_lossy(&bytes[r.clone()]).to_ascii_uppercase())
                    .collect();
                if let [tag, uid, verb] = words.as_slice()
                    && uid == "UID"
                    && matches!(verb.as_str(), "SEARCH" | "SORT")
                {
                    self.uid_search.insert(tag.clone());
                }
                imap_found(bytes, &toks, false)
            }
            Protocol::Pop3 => {
                let text = String::from_utf8_lossy(bytes);
                let mut words = text.split_whitespace();
                // The reply's shape from the codec the harness frames replies with.
                let multi = mailtape_proto::pop3::parse_command(bytes)
                    .is_ok_and(|c| c.expect() == mailtape_proto::pop3::Expect::MultiLine);
                self.pop3_queue.push_back(Pop3Command {
                    verb: words.next().unwrap_or_default().to_ascii_uppercase(),
                    multi,
                });
                Vec::new()
            }
            Protocol::Smtp => Vec::new(),
        }
    }

    /// One server message (IMAP) or one reply line (POP3, SMTP).
    pub fn server(&mut self, bytes: &[u8]) -> Vec<Found> {
        match self.protocol {
            Protocol::Imap => {
                let toks = imap_tokens(bytes);
                let first = toks
                    .first()
                    .map(|(r, _)| String::from_utf8_lossy(&bytes[r.clone()]).into_owned());
                let search = toks.get(1).is_some_and(|(r, _)| {
                    let w = &bytes[r.clone()];
                    w.eq_ignore_ascii_case(b"SEARCH") || w.eq_ignore_ascii_case(b"SORT")
                });
                let found = imap_found(bytes, &toks, search && !self.uid_search.is_empty());
                if let Some(tag) = first {
                    self.uid_search.remove(&tag.to_ascii_uppercase());
                }
                found
            }
            Protocol::Pop3 => self.pop3_line(bytes),
            Protocol::Smtp => {
                self.smtp_open = bytes.len() >= 4
                    && bytes[..3].iter().all(u8::is_ascii_digit)
                    && bytes[3] == b'-';
                Vec::new()
            }
        }
    }

    fn pop3_line(&mut self, line: &[u8]) -> Vec<Found> {
        let words = word_ranges(line);
        let word = |i: usize, kind: Kind| {
            words.get(i).map(|r| Found {
                range: r.clone(),
                kind,
            })
        };
        if let Some(verb) = &self.pop3_body {
            if trim_eol(line) == b"." {
                self.pop3_body = None;
                return Vec::new();
            }
            return match verb.as_str() {
                "LIST" => word(1, Kind::Size).into_iter().collect(),
                "UIDL" => word(1, Kind::Uidl).into_iter().collect(),
                _ => Vec::new(),
            };
        }
        let Pop3Command { verb, multi } = self.pop3_queue.pop_front().unwrap_or_default();
        if !line.starts_with(b"+OK") {
            return Vec::new();
        }
        if multi {
            self.pop3_body = Some(verb);
            return Vec::new();
        }
        match verb.as_str() {
            "STAT" | "LIST" => word(2, Kind::Size).into_iter().collect(),
            "UIDL" => word(2, Kind::Uidl).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// A POP3 command whose reply is awaited.
#[derive(Debug, Clone, Default)]
struct Pop3Command {
    /// Upper case.
    verb: String,
    /// A `+OK` is followed by lines up to `.` (RFC 1939, RFC 2449, RFC 5034 bare AUTH).
    multi: bool,
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn word_ranges(line: &[u8]) -> Vec<Range<usize>> {
    let line = trim_eol(line);
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in line.iter().enumerate() {
        match (b == &b' ', start) {
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..line.len());
    }
    out
}

/// IMAP tokens as byte ranges: atoms (which include sequence sets) and quoted strings;
/// `(`, `)`, `[`, `]` are kept as one-byte tokens and literal contents are skipped.
fn imap_tokens(b: &[u8]) -> Vec<(Range<usize>, bool)> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\r' | b'\n' => i += 1,
            b'(' | b')' | b'[' | b']' => {
                toks.push((i..i + 1, false));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                toks.push((start..i, false));
            }
            _ => {
                let start = i;
                while i < b.len() && !b" ()[]\"\r\n".contains(&b[i]) {
                    i += 1;
                }
                let word = &b[start..i];
                // A literal announcement: skip its content.
                if let Some(n) = literal_count(word)
                    && b[i..].starts_with(b"\r\n")
                {
                    i = (i + 2).saturating_add(n).min(b.len());
                    continue;
                }
                toks.push((start..i, true));
            }
        }
    }
    toks
}

fn literal_count(word: &[u8]) -> Option<usize> {
    let w = word.strip_prefix(b"~").unwrap_or(word);
    let inner = w.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    std::str::from_utf8(inner).ok()?.parse().ok()
}

fn is_number(w: &[u8]) -> bool {
    !w.is_empty() && w.iter().all(u8::is_ascii_digit)
}

fn is_set(w: &[u8]) -> bool {
    w.iter().any(u8::is_ascii_digit) && w.iter().all(|c| c.is_ascii_digit() || b":,*".contains(c))
}

/// The numbers inside a sequence set such as `304,319:320` (not `*`).
fn set_numbers(base: usize, w: &[u8], kind: Kind, out: &mut Vec<Found>) {
    let mut i = 0;
    while i < w.len() {
        if w[i].is_ascii_digit() {
            let s = i;
            while i < w.len() && w[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Found {
                range: base + s..base + i,
                kind,
            });
        } else {
            i += 1;
        }
    }
}

fn imap_found(b: &[u8], toks: &[(Range<usize>, bool)], search_uids: bool) -> Vec<Found> {
    let mut out = Vec::new();
    let word = |i: usize| {
        toks.get(i)
            .filter(|(_, atom)| *atom)
            .map(|(r, _)| &b[r.clone()])
    };
    let upper = |i: usize| word(i).map(|w| w.to_ascii_uppercase());
    if search_uids {
        for (r, atom) in toks.iter().skip(2) {
            if *atom && is_number(&b[r.clone()]) {
                out.push(Found {
                    range: r.clone(),
                    kind: Kind::Uid,
                });
            }
        }
        return out;
    }
    let mut i = 0;
    while i < toks.len() {
        let Some(w) = upper(i) else {
            i += 1;
            continue;
        };
        let set_at = |j: usize, kind: Kind, out: &mut Vec<Found>| {
            if let Some(v) = word(j)
                && is_set(v)
            {
                set_numbers(toks[j].0.start, v, kind, out);
            }
        };
        match w.as_slice() {
            // `UID FETCH 4827`, `UID 5` in FETCH data, the search key `UID 1:4`.
            b"UID" => {
                let next = upper(i + 1);
                let command = next.as_deref().is_some_and(|n| {
                    matches!(n, b"FETCH" | b"STORE" | b"COPY" | b"MOVE" | b"EXPUNGE")
                });
                set_at(if command { i + 2 } else { i + 1 }, Kind::Uid, &mut out);
            }
            b"UIDVALIDITY" => set_at(i + 1, Kind::UidValidity, &mut out),
            b"UIDNEXT" => set_at(i + 1, Kind::Uid, &mut out),
            b"APPENDUID" => {
                set_at(i + 1, Kind::UidValidity, &mut out);
                set_at(i + 2, Kind::Uid, &mut out);
                i += 2;
            }
            b"COPYUID" => {
                set_at(i + 1, Kind::UidValidity, &mut out);
                set_at(i + 2, Kind::Uid, &mut out);
                set_at(i + 3, Kind::Uid, &mut out);
                i += 3;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Replace each found value by what `f` says (values it returns `None` for stay).
pub fn rewrite(bytes: &[u8], found: &[Found], f: impl Fn(Kind, &str) -> Option<String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    let mut sorted: Vec<&Found> = found.iter().collect();
    sorted.sort_by_key(|f| f.range.start);
    for fd in sorted {
        if fd.range.start < at || fd.range.end > bytes.len() {
            continue;
        }
        out.extend_from_slice(&bytes[at..fd.range.start]);
        let value = String::from_utf8_lossy(&bytes[fd.range.clone()]);
        match f(fd.kind, &value) {
            Some(new) => out.extend_from_slice(new.as_bytes()),
            None => out.extend_from_slice(value.as_bytes()),
        }
        at = fd.range.end;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

/// One recorded value and the live value that stands for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pair {
    pub kind: Kind,
    pub recorded: String,
    pub live: String,
}

/// The pairs learnt so far, recorded -> live, one live value per recorded value and back.
#[derive(Debug, Clone, Default)]
pub struct Captures {
    forward: BTreeMap<(Kind, String), String>,
    backward: BTreeMap<(Kind, String), String>,
    /// Placeholder number of each recorded value, per kind in order of learning.
    number: BTreeMap<(Kind, String), usize>,
    order: Vec<(Kind, String)>,
}

impl Captures {
    /// Pair `recorded` with `live` unless either already has a partner: the first pairing
    /// wins, and a later contradiction shows up in the diff.
    pub fn learn(&mut self, kind: Kind, recorded: &str, live: &str) {
        let r = (kind, recorded.to_string());
        let l = (kind, live.to_string());
        if self.forward.contains_key(&r) || self.backward.contains_key(&l) {
            return;
        }
        let n = self.order.iter().filter(|(k, _)| *k == kind).count() + 1;
        self.forward.insert(r.clone(), live.to_string());
        self.backward.insert(l, recorded.to_string());
        self.number.insert(r.clone(), n);
        self.order.push(r);
    }

    pub fn live(&self, kind: Kind, recorded: &str) -> Option<&str> {
        self.forward
            .get(&(kind, recorded.to_string()))
            .map(String::as_str)
    }

    pub fn pairs(&self) -> Vec<Pair> {
        self.order
            .iter()
            .filter_map(|(k, r)| {
                self.forward.get(&(*k, r.clone())).map(|l| Pair {
                    kind: *k,
                    recorded: r.clone(),
                    live: l.clone(),
                })
            })
            .collect()
    }

    /// Pair the recorded step's messages with the live step's: messages of the same shape
    /// (their opening words, numbers aside) in order, then their values position by position
    /// when both hold the same kinds.
    pub fn learn_step(&mut self, recorded: &[(&[u8], &[Found])], live: &[(&[u8], &[Found])]) {
        let mut used = vec![false; live.len()];
        for (rb, rf) in recorded {
            if rf.is_empty() {
                continue;
            }
            let key = shape(rb, rf);
            let Some(j) = (0..live.len()).find(|&j| !used[j] && shape(live[j].0, live[j].1) == key)
            else {
                continue;
            };
            used[j] = true;
            let (lb, lf) = live[j];
            let kinds = |f: &[Found]| f.iter().map(|x| x.kind).collect::<Vec<_>>();
            if kinds(rf) != kinds(lf) {
                continue;
            }
            for (a, b) in rf.iter().zip(lf.iter()) {
                let (Some(rv), Some(lv)) = (rb.get(a.range.clone()), lb.get(b.range.clone()))
                else {
                    continue;
                };
                self.learn(
                    a.kind,
                    &String::from_utf8_lossy(rv),
                    &String::from_utf8_lossy(lv),
                );
            }
        }
    }

    /// A client line with each recorded UID replaced by its live partner.
    pub fn map_client(&self, text: &str) -> String {
        let found = imap_found(text.as_bytes(), &imap_tokens(text.as_bytes()), false);
        let out = rewrite(text.as_bytes(), &found, |k, v| {
            self.live(k, v).map(str::to_string)
        });
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A message with its paired values replaced by their placeholder (`<uid#1>`): recorded
    /// values on the recorded side, their live partners on the live side.
    pub fn placeholders(&self, bytes: &[u8], found: &[Found], live: bool) -> Vec<u8> {
        rewrite(bytes, found, |k, v| {
            let recorded = if live {
                self.backward.get(&(k, v.to_string()))?.clone()
            } else {
                v.to_string()
            };
            let n = self.number.get(&(k, recorded))?;
            Some(format!("<{}#{n}>", k.name()))
        })
    }
}

/// The opening words of a message up to its first per-server value, numbers as `#`: what
/// pairs a recorded message with a live one.
fn shape(bytes: &[u8], found: &[Found]) -> Vec<Vec<u8>> {
    let end = found
        .iter()
        .map(|f| f.range.start)
        .min()
        .unwrap_or(bytes.len());
    bytes[..end]
        .split(|b| b" ()[]\"\r\n".contains(b))
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| {
            if is_number(w) {
                b"#".to_vec()
            } else {
                w.to_ascii_uppercase()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(bytes: &[u8], found: &[Found]) -> Vec<(Kind, String)> {
        found
            .iter()
            .map(|f| {
                (
                    f.kind,
                    String::from_utf8_lossy(&bytes[f.range.clone()]).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn imap_values_are_found_where_they_mean_uids() {
        let mut c = Context::new(Protocol::Imap);
        let m = b"* OK [UIDVALIDITY 1733] ok".as_slice();
        assert_eq!(
            values(m, &c.server(m)),
            vec![(Kind::UidValidity, "1733".into())]
        );
        let m = b"* 3 FETCH (FLAGS (\\Seen) UID 4827)".as_slice();
        assert_eq!(values(m, &c.server(m)), vec![(Kind::Uid, "4827".into())]);
        let m = b"a2 OK [COPYUID 38505 304,319:320 3956:3958] Done".as_slice();
        assert_eq!(
            values(m, &c.server(m)),
            vec![
                (Kind::UidValidity, "38505".into()),
                (Kind::Uid, "304".into()),
                (Kind::Uid, "319".into()),
                (Kind::Uid, "320".into()),
                (Kind::Uid, "3956".into()),
                (Kind::Uid, "3958".into()),
            ]
        );
        // A literal's content is not looked into.
        let m = b"* 1 FETCH (BODY[] {9}\r\nUID 12345 UID 7)".as_slice();
        assert_eq!(values(m, &c.server(m)), vec![(Kind::Uid, "7".into())]);
        // SEARCH results are UIDs only while a UID SEARCH is outstanding.
        let m = b"* SEARCH 2 3".as_slice();
        assert!(c.server(m).is_empty());
        let cmd = b"a5 UID SEARCH ALL".as_slice();
        assert!(c.client(cmd).is_empty());
        assert_eq!(c.server(m).len(), 2);
        assert!(c.server(b"a5 OK done").is_empty());
        assert!(c.server(m).is_empty());
        let cmd = b"a6 UID FETCH 4827:4830,9 (FLAGS)".as_slice();
        assert_eq!(
            values(cmd, &c.client(cmd)),
            vec![
                (Kind::Uid, "4827".into()),
                (Kind::Uid, "4830".into()),
                (Kind::Uid, "9".into())
            ]
        );
        // Sequence numbers are not UIDs.
        assert!(c.client(b"a7 FETCH 1:4 (UID)").is_empty());
    }

    #[test]
    fn pop3_sizes_and_unique_ids_follow_the_command() {
        let mut c = Context::new(Protocol::Pop3);
        assert!(c.server(b"+OK ready").is_empty());
        c.client(b"UIDL");
        c.client(b"LIST 1");
        c.client(b"STAT");
        assert!(c.server(b"+OK").is_empty());
        assert_eq!(
            values(b"1 abc", &c.server(b"1 abc")),
            vec![(Kind::Uidl, "abc".into())]
        );
        assert!(c.server(b".").is_empty());
        let m = b"+OK 1 420".as_slice();
        assert_eq!(values(m, &c.server(m)), vec![(Kind::Size, "420".into())]);
        let m = b"+OK 2 900".as_slice();
        assert_eq!(values(m, &c.server(m)), vec![(Kind::Size, "900".into())]);
        // A bare AUTH lists mechanisms (RFC 5034 4): the lines belong to its reply.
        c.client(b"AUTH");
        assert!(c.starts_reply());
        c.server(b"+OK mechanisms");
        assert!(!c.starts_reply());
        c.server(b"PLAIN");
        c.server(b".");
        assert!(c.starts_reply());
    }

    #[test]
    fn steps_pair_values_and_client_lines_get_the_live_ones() {
        let mut caps = Captures::default();
        let mut rc = Context::new(Protocol::Imap);
        let mut lc = Context::new(Protocol::Imap);
        let rec: Vec<&[u8]> = vec![
            b"* 1 EXISTS",
            b"* OK [UIDVALIDITY 1733] x",
            b"* 1 FETCH (UID 4827)",
        ];
        let live: Vec<&[u8]> = vec![
            b"* OK [UIDVALIDITY 99] y",
            b"* 1 EXISTS",
            b"* 1 FETCH (UID 3)",
        ];
        let rf: Vec<Vec<Found>> = rec.iter().map(|m| rc.server(m)).collect();
        let lf: Vec<Vec<Found>> = live.iter().map(|m| lc.server(m)).collect();
        let r: Vec<(&[u8], &[Found])> = rec
            .iter()
            .zip(&rf)
            .map(|(m, f)| (*m, f.as_slice()))
            .collect();
        let l: Vec<(&[u8], &[Found])> = live
            .iter()
            .zip(&lf)
            .map(|(m, f)| (*m, f.as_slice()))
            .collect();
        caps.learn_step(&r, &l);
        assert_eq!(caps.live(Kind::UidValidity, "1733"), Some("99"));
        assert_eq!(caps.live(Kind::Uid, "4827"), Some("3"));
        assert_eq!(
            caps.map_client("a3 UID FETCH 4827 (FLAGS)"),
            "a3 UID FETCH 3 (FLAGS)"
        );
        assert_eq!(
            caps.map_client("a4 FETCH 4827 (FLAGS)"),
            "a4 FETCH 4827 (FLAGS)"
        );
        let shown = caps.placeholders(rec[2], &rf[2], false);
        assert_eq!(shown, caps.placeholders(live[2], &lf[2], true));
        assert_eq!(shown, b"* 1 FETCH (UID <uid#1>)");
        // A contradicting pair is not learnt: the first one stands.
        caps.learn(Kind::Uid, "4827", "5");
        assert_eq!(caps.live(Kind::Uid, "4827"), Some("3"));
        assert_eq!(caps.pairs().len(), 2);
    }
}
