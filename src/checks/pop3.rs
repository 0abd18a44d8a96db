//! Always-on POP3 checks (RFC 1939, RFC 2449, RFC 2595 STLS, RFC 5034 AUTH). Pure: the engine
//! reports each client line and each whole server reply; the checks answer with violations.
//!
//! Only what the replies themselves prove is modelled: the session state (from `+OK` to the
//! login commands and QUIT), the messages marked deleted (from `+OK` to DELE, cleared by RSET)
//! and the sizes LIST, STAT and RETR reported in the same session.
//!
//! Across sessions of one scenario run, one fact is provable: when a session saw the whole
//! maildrop (a full LIST and a full UIDL before any DELE) and a later session of the same
//! account sees the same messages again (the sizes of what the first left behind open the
//! second's listing, in order), a message whose unique-id changed to one the first session
//! never saw, while its old id is gone, broke RFC 1939 7 persistence. See [`crossing`].
//! Nothing is carried across scenarios: they reseed and clean maildrops behind the checks' back.

mod crossing;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use mailtape_proto::pop3::{Command, Expect, parse_command};

pub use rules::{ALL, Rule};

use crate::checks::Violation;
use crate::proto::imap::LineEnding;
use crate::proto::line::{LineReply, ReplyKind};

/// Longest unique-id (RFC 1939 7).
const MAX_UID_LEN: usize = 70;

/// What all scenarios of one target share. Empty on purpose: maildrops are reseeded between
/// scenarios, so no POP3 fact seen in one session is provable in another (see the module
/// paragraph). It exists so the engine's wiring stays the same if a provable one turns up.
#[derive(Debug, Default)]
pub struct TargetModel {}

pub type SharedModel = Arc<Mutex<TargetModel>>;

/// RFC 1939 3 session states, as far as the replies show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Authorization,
    Transaction,
    /// After QUIT got `+OK`: nothing more is expected.
    Done,
}

/// What a reply answers.
#[derive(Debug, Clone)]
enum Pending {
    Command(Command),
    /// A SASL response line sent after a `+ ` continuation.
    SaslResponse,
    /// A line the codec cannot parse; the server answers it somehow (usually `-ERR`).
    Unparsed,
}

/// Sizes seen for one message number in this session.
#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    list: Option<u64>,
    retr: Option<u64>,
}

/// A count and total, tagged with the deletion generation it was seen in.
#[derive(Debug, Clone, Copy)]
struct Totals {
    generation: u64,
    count: u64,
    octets: u64,
}

#[derive(Debug)]
struct Session {
    greeted: bool,
    state: State,
    pending: VecDeque<Pending>,
    /// The last reply was a `+ ` continuation: the next client line is a SASL response.
    sasl_open: bool,
    deleted: BTreeSet<u32>,
    /// Bumped by every DELE or RSET that succeeds, so STAT and LIST are compared only when
    /// no deletion happened between them.
    generation: u64,
    sizes: BTreeMap<u32, Sizes>,
    /// The unique-id each message had when UIDL first named it in this session.
    uids: BTreeMap<u32, Vec<u8>>,
    stat: Option<Totals>,
    listing: Option<Totals>,
    /// The login the session authenticated as (USER's argument, else the opened account).
    account: String,
    /// The login sent with USER, taken once PASS succeeds.
    user_sent: Option<String>,
    /// Sizes and unique-ids of the whole maildrop, from a LIST and a UIDL before any DELE.
    whole: crossing::Whole,
}

impl Session {
    fn new() -> Self {
        Session {
            account: String::new(),
            user_sent: None,
            whole: crossing::Whole::default(),
            greeted: false,
            state: State::Authorization,
            pending: VecDeque::new(),
            sasl_open: false,
            deleted: BTreeSet::new(),
            generation: 0,
            sizes: BTreeMap::new(),
            uids: BTreeMap::new(),
            stat: None,
            listing: None,
        }
    }
}

/// The POP3 checks of one scenario run.
pub struct Pop3Checks {
    /// Kept for the engine's wiring; see [`TargetModel`].
    #[allow(dead_code)]
    shared: SharedModel,
    sessions: HashMap<String, Session>,
    /// Per account: what the last session that saw the whole maildrop left in it.
    maildrops: crossing::Maildrops,
}

impl Pop3Checks {
    pub fn new(shared: SharedModel) -> Self {
        Pop3Checks {
            shared,
            sessions: HashMap::new(),
            maildrops: crossing::Maildrops::default(),
        }
    }

    /// A new connection for the account with `login`; the greeting is its first reply.
    pub fn session_opened(&mut self, session: &str, login: &str) {
        let mut s = Session::new();
        s.account = login.to_string();
        self.sessions.insert(session.to_string(), s);
    }

    /// One client line as sent, CRLF included (commands, and SASL response lines after a `+ `).
    pub fn client_line(&mut self, session: &str, bytes: &[u8]) -> Vec<Violation> {
        let s = self
            .sessions
            .entry(session.to_string())
            .or_insert_with(Session::new);
        let pending = if std::mem::take(&mut s.sasl_open) {
            Pending::SaslResponse
        } else {
            match parse_command(bytes) {
                Ok(cmd) => Pending::Command(cmd),
                Err(_) => Pending::Unparsed,
            }
        };
        s.pending.push_back(pending);
        Vec::new()
    }

    /// One whole reply (the first one of a session is the greeting).
    pub fn server_reply(&mut self, session: &str, reply: &LineReply) -> Vec<Violation> {
        let s = self
            .sessions
            .entry(session.to_string())
            .or_insert_with(Session::new);
        let mut out = Vec::new();
        let v = |rule: &Rule, msg: String| rule.violation(session, msg, &reply.raw);
        if reply.line_ending == LineEnding::Lf {
            out.push(v(
                &rules::SYNTAX_CRLF,
                "a reply line ends in a bare LF".into(),
            ));
        }
        if reply.kind == ReplyKind::Malformed {
            out.push(v(
                &rules::SYNTAX_STATUS,
                "the status indicator is neither `+OK` nor `-ERR`".into(),
            ));
        }
        if !std::mem::replace(&mut s.greeted, true) {
            match reply.kind {
                ReplyKind::Negative | ReplyKind::Intermediate => out.push(v(
                    &rules::GREETING,
                    "the greeting is not a positive response".into(),
                )),
                ReplyKind::Positive | ReplyKind::Malformed => {}
            }
            return out;
        }
        let Some(pending) = s.pending.pop_front() else {
            // Unsolicited: nothing to hold it against beyond its syntax.
            return out;
        };
        let in_auth = matches!(
            pending,
            Pending::SaslResponse
                | Pending::Command(Command::Auth {
                    mechanism: Some(_),
                    ..
                })
        );
        if reply.kind == ReplyKind::Intermediate {
            if in_auth {
                s.sasl_open = true;
            } else {
                out.push(v(
                    &rules::SYNTAX_STATUS,
                    "a `+ ` continuation answers a command that is not AUTH".into(),
                ));
            }
            return out;
        }
        let Pending::Command(cmd) = pending else {
            if matches!(pending, Pending::SaslResponse)
                && reply.kind == ReplyKind::Positive
                && s.state == State::Authorization
            {
                s.state = State::Transaction;
            }
            return out;
        };
        let multiline = reply.kind == ReplyKind::Positive
            && cmd.expect() == Expect::MultiLine
            && reply.lines.len() >= 2;
        if multiline {
            check_dot_stuffing(session, reply, &mut out);
        }
        if reply.kind != ReplyKind::Positive {
            return out;
        }
        check_positive(s, session, &cmd, reply, multiline, &mut out);
        out.extend(self.maildrops.compare(session, s));
        out
    }

    /// The connection ended: what it saw of the maildrop is held against the account's last
    /// whole view, then replaces it.
    pub fn session_closed(&mut self, session: &str) -> Vec<Violation> {
        match self.sessions.remove(session) {
            Some(mut s) => self.maildrops.session_ended(session, &mut s),
            None => Vec::new(),
        }
    }
}

/// Body lines as they came on the wire (stuffed), between the status line and the final `.`.
fn raw_body_lines(raw: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    // `raw` ends with LF, so the split leaves an empty piece after it.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.len() < 2 {
        return Vec::new();
    }
    lines[1..lines.len() - 1].to_vec()
}

fn check_dot_stuffing(session: &str, reply: &LineReply, out: &mut Vec<Violation>) {
    let missed = raw_body_lines(&reply.raw)
        .into_iter()
        .position(|l| l.first() == Some(&b'.') && l.get(1) != Some(&b'.'));
    if let Some(i) = missed {
        out.push(rules::DOT_STUFFING.violation(
            session,
            format!(
                "body line {} starts with `.` but was not dot-stuffed",
                i + 1
            ),
            &reply.raw,
        ));
    }
}

/// The body lines of a multi-line reply, unstuffed (no status line, no final `.`).
fn body(reply: &LineReply) -> &[Vec<u8>] {
    let n = reply.lines.len();
    if n >= 2 { &reply.lines[1..n - 1] } else { &[] }
}

/// The first two space-separated words of a line, e.g. `1 120` of a scan listing.
fn two_words(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    Some((words.next()?, words.next()?))
}

fn number<T: std::str::FromStr>(word: &[u8]) -> Option<T> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The text of a single-line `+OK` after the indicator.
fn status_text(reply: &LineReply) -> &[u8] {
    let line = reply.lines.first().map_or(&[][..], |l| l.as_slice());
    let rest = line.strip_prefix(b"+OK").unwrap_or(line);
    rest.strip_prefix(b" ").unwrap_or(rest)
}

fn check_positive(
    s: &mut Session,
    session: &str,
    cmd: &Command,
    reply: &LineReply,
    multiline: bool,
    out: &mut Vec<Violation>,
) {
    let v = |rule: &Rule, msg: String| rule.violation(session, msg, &reply.raw);
    let kw = cmd.keyword();
    let transaction_only = matches!(
        cmd,
        Command::Stat
            | Command::List { .. }
            | Command::Retr { .. }
            | Command::Dele { .. }
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl { .. }
    );
    // A bare AUTH (mechanism list) is a pre-CAPA convention with no state restriction.
    let authorization_only = matches!(
        cmd,
        Command::User { .. }
            | Command::Pass { .. }
            | Command::Apop { .. }
            | Command::Stls
            | Command::Auth {
                mechanism: Some(_),
                ..
            }
    );
    match s.state {
        State::Authorization if transaction_only => {
            out.push(v(
                &rules::STATE_AUTHORIZATION,
                format!("{kw} answered +OK before login (AUTHORIZATION state)"),
            ));
            return;
        }
        State::Authorization => {
            if let Command::User { name } = cmd {
                s.user_sent = Some(name.clone());
            }
            if matches!(cmd, Command::Pass { .. })
                && let Some(user) = s.user_sent.take()
            {
                s.account = user;
            }
            if matches!(
                cmd,
                Command::Pass { .. } | Command::Apop { .. } | Command::Auth { .. }
            ) && !matches!(
                cmd,
                Command::Auth {
                    mechanism: None,
                    ..
                }
            ) {
                s.state = State::Transaction;
            }
            return;
        }
        State::Transaction if authorization_only => {
            out.push(v(
                &rules::STATE_TRANSACTION,
                format!("{kw} answered +OK after login (TRANSACTION state)"),
            ));
            return;
        }
        State::Transaction => {}
        State::Done => return,
    }
    let msg_arg = match cmd {
        Command::Retr { msg } | Command::Dele { msg } | Command::Top { msg, .. } => Some(*msg),
        Command::List { msg } | Command::Uidl { msg } => *msg,
        _ => None,
    };
    if let Some(n) = msg_arg
        && s.deleted.contains(&n)
    {
        out.push(v(
            &rules::DELETED,
            format!("{kw} {n} answered +OK, but message {n} is marked deleted"),
        ));
    }
    match cmd {
        Command::Quit => s.state = State::Done,
        Command::Dele { msg } => {
            s.whole.dele_seen = true;
            s.deleted.insert(*msg);
            s.generation += 1;
        }
        Command::Rset => {
            s.deleted.clear();
            s.generation += 1;
        }
        Command::Stat => {
            if let Some((count, octets)) = two_words(status_text(reply))
                && let (Some(count), Some(octets)) = (number(count), number(octets))
            {
                s.stat = Some(Totals {
                    generation: s.generation,
                    count,
                    octets,
                });
                check_totals(s, session, reply, out);
            }
        }
        Command::List { msg: Some(n) } => {
            if let Some((_, size)) = two_words(status_text(reply))
                && let Some(size) = number(size)
            {
                record_size(s, session, reply, *n, Some(size), None, out);
            }
        }
        Command::List { msg: None } if multiline => list_all(s, session, reply, out),
        Command::Uidl { msg: Some(n) } => {
            if let Some((_, uid)) = two_words(status_text(reply)) {
                check_uid(session, reply, uid, out);
                record_uid(s, session, reply, *n, uid, out);
            }
        }
        Command::Uidl { msg: None } if multiline => uidl_all(s, session, reply, out),
        Command::Retr { msg } if multiline => {
            let octets = body(reply).iter().map(|l| l.len() as u64 + 2).sum();
            record_size(s, session, reply, *msg, None, Some(octets), out);
        }
        _ => {}
    }
}

/// Remembers a LIST or RETR size and compares the two once both are known.
fn record_size(
    s: &mut Session,
    session: &str,
    reply: &LineReply,
    n: u32,
    list: Option<u64>,
    retr: Option<u64>,
    out: &mut Vec<Violation>,
) {
    let sizes = s.sizes.entry(n).or_default();
    sizes.list = list.or(sizes.list);
    sizes.retr = retr.or(sizes.retr);
    if let (Some(l), Some(r)) = (sizes.list, sizes.retr)
        && l != r
    {
        out.push(rules::SIZE_LIST_RETR.violation(
            session,
            format!("LIST gives message {n} {l} octets, RETR delivered {r}"),
            &reply.raw,
        ));
    }
}

fn list_all(s: &mut Session, session: &str, reply: &LineReply, out: &mut Vec<Violation>) {
    let mut count = 0u64;
    let mut octets = 0u64;
    let mut reported = false;
    for line in body(reply) {
        let Some((n, size)) = two_words(line) else {
            continue;
        };
        let (Some(n), Some(size)) = (number::<u32>(n), number::<u64>(size)) else {
            continue;
        };
        count += 1;
        octets = octets.saturating_add(size);
        if s.deleted.contains(&n) && !reported {
            reported = true;
            out.push(rules::DELETED.violation(
                session,
                format!("LIST lists message {n}, which is marked deleted"),
                &reply.raw,
            ));
        }
        record_size(s, session, reply, n, Some(size), None, out);
    }
    s.listing = Some(Totals {
        generation: s.generation,
        count,
        octets,
    });
    s.whole.listed(body(reply));
    check_totals(s, session, reply, out);
}

fn uidl_all(s: &mut Session, session: &str, reply: &LineReply, out: &mut Vec<Violation>) {
    s.whole.uidl(body(reply), &reply.raw);
    let mut seen: HashMap<&[u8], u32> = HashMap::new();
    let mut reported_deleted = false;
    for line in body(reply) {
        let Some((n, uid)) = two_words(line) else {
            continue;
        };
        let Some(n) = number::<u32>(n) else {
            continue;
        };
        if s.deleted.contains(&n) && !reported_deleted {
            reported_deleted = true;
            out.push(rules::DELETED.violation(
                session,
                format!("UIDL lists message {n}, which is marked deleted"),
                &reply.raw,
            ));
        }
        check_uid(session, reply, uid, out);
        record_uid(s, session, reply, n, uid, out);
        if let Some(first) = seen.insert(uid, n)
            && first != n
        {
            out.push(rules::UIDL_UNIQUE.violation(
                session,
                format!(
                    "messages {first} and {n} share the unique-id {:?}",
                    String::from_utf8_lossy(uid)
                ),
                &reply.raw,
            ));
        }
    }
}

/// Message numbers are fixed for the whole session (RFC 1939 5), so a message that UIDL names
/// twice must have the same unique-id both times (RFC 1939 7: it persists).
fn record_uid(
    s: &mut Session,
    session: &str,
    reply: &LineReply,
    n: u32,
    uid: &[u8],
    out: &mut Vec<Violation>,
) {
    match s.uids.get(&n) {
        Some(first) if first.as_slice() != uid => out.push(rules::UIDL_STABLE.violation(
            session,
            format!(
                "message {n} had the unique-id {:?}, now {:?}",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(uid)
            ),
            &reply.raw,
        )),
        Some(_) => {}
        None => {
            s.uids.insert(n, uid.to_vec());
        }
    }
}

fn check_uid(session: &str, reply: &LineReply, uid: &[u8], out: &mut Vec<Violation>) {
    let ok =
        (1..=MAX_UID_LEN).contains(&uid.len()) && uid.iter().all(|b| (0x21..=0x7e).contains(b));
    if !ok {
        out.push(rules::UIDL_SYNTAX.violation(
            session,
            format!(
                "unique-id {:?} is not 1 to 70 characters in 0x21-0x7E",
                String::from_utf8_lossy(uid)
            ),
            &reply.raw,
        ));
    }
}

/// STAT against the last full LIST, when no DELE or RSET came between them.
fn check_totals(s: &Session, session: &str, reply: &LineReply, out: &mut Vec<Violation>) {
    let (Some(stat), Some(list)) = (s.stat, s.listing) else {
        return;
    };
    if stat.generation != s.generation || list.generation != s.generation {
        return;
    }
    if stat.count != list.count || stat.octets != list.octets {
        out.push(rules::SIZE_STAT_LIST.violation(
            session,
            format!(
                "STAT says {} messages, {} octets; LIST lists {} messages, {} octets",
                stat.count, stat.octets, list.count, list.octets
            ),
            &reply.raw,
        ));
    }
}
