//! Unique-ids across sessions (RFC 1939 7: a unique-id "persists across sessions").
//!
//! Message numbers are per session, so the checks need another way to tell that a later
//! session sees the same messages. They use the whole maildrop: a session that ran a full
//! LIST and a full UIDL before any DELE knows every message's size and id. What it leaves
//! behind (everything, less what QUIT committed as deleted) is kept per account. When a later
//! session of that account sees the whole maildrop too, and those sizes open its listing in
//! the same order (new mail may follow), its first messages are the same messages. One of
//! them with an id the earlier session never saw, while its earlier id is nowhere in the new
//! listing, got a new unique-id.
//!
//! Both "never seen" conditions keep the rule quiet when messages moved (an expunge and a
//! delivery of equal sizes between the sessions shift the listing; then the ids seen are
//! old ones in new places, not new ids).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Session, State, number, rules, two_words};
use crate::checks::Violation;

/// A session's view of the whole maildrop, taken before it deleted anything.
#[derive(Debug, Default)]
pub struct Whole {
    /// A DELE succeeded in this session: listings after it no longer show everything.
    pub dele_seen: bool,
    sizes: Option<Vec<(u32, u64)>>,
    uids: Option<Vec<(u32, Vec<u8>)>>,
    /// The UIDL reply, as evidence for a violation.
    uidl_raw: Vec<u8>,
    /// The comparison with the previous session has been made.
    compared: bool,
}

impl Whole {
    /// The body lines of a full LIST (`n size`).
    pub fn listed(&mut self, body: &[Vec<u8>]) {
        if self.dele_seen || self.sizes.is_some() {
            return;
        }
        self.sizes = body
            .iter()
            .map(|l| {
                let (n, size) = two_words(l)?;
                Some((number(n)?, number(size)?))
            })
            .collect();
    }

    /// The body lines of a full UIDL (`n unique-id`) and the reply they came in.
    pub fn uidl(&mut self, body: &[Vec<u8>], raw: &[u8]) {
        if self.dele_seen || self.uids.is_some() {
            return;
        }
        self.uids = body
            .iter()
            .map(|l| {
                let (n, uid) = two_words(l)?;
                Some((number(n)?, uid.to_vec()))
            })
            .collect();
        self.uidl_raw = raw.to_vec();
    }

    /// Every message's number, size and unique-id, when LIST and UIDL named the same numbers.
    fn messages(&self) -> Option<Vec<(u32, u64, &[u8])>> {
        let (sizes, uids) = (self.sizes.as_ref()?, self.uids.as_ref()?);
        if sizes.len() != uids.len() {
            return None;
        }
        sizes
            .iter()
            .zip(uids)
            .map(|(&(n, size), (m, uid))| (n == *m).then_some((n, size, uid.as_slice())))
            .collect()
    }
}

/// What the last session that saw the whole maildrop left in it.
#[derive(Debug)]
struct Left {
    session: String,
    /// (size, unique-id) in maildrop order.
    messages: Vec<(u64, Vec<u8>)>,
}

/// Per account (login), the last whole view; see the module paragraph.
#[derive(Debug, Default)]
pub struct Maildrops {
    last: HashMap<String, Left>,
}

impl Maildrops {
    /// Compares a session's whole view, once it has one, with the account's previous one.
    pub fn compare(&self, session: &str, s: &mut Session) -> Vec<Violation> {
        if s.whole.compared {
            return Vec::new();
        }
        let Some(now) = s.whole.messages() else {
            return Vec::new();
        };
        let Some(before) = self.last.get(&s.account) else {
            s.whole.compared = true;
            return Vec::new();
        };
        let mut out = Vec::new();
        let same_messages = now.len() >= before.messages.len()
            && before
                .messages
                .iter()
                .zip(&now)
                .all(|((size, _), (_, now_size, _))| size == now_size);
        if same_messages {
            let old_ids: HashSet<&[u8]> = before.messages.iter().map(|(_, u)| &u[..]).collect();
            let new_ids: HashSet<&[u8]> = now.iter().map(|(_, _, u)| *u).collect();
            let renamed: Vec<(u32, &[u8], &[u8])> = before
                .messages
                .iter()
                .zip(&now)
                .filter(|((_, old), (_, _, new))| {
                    old.as_slice() != *new
                        && !old_ids.contains(new)
                        && !new_ids.contains(old.as_slice())
                })
                .map(|((_, old), (n, _, new))| (*n, old.as_slice(), *new))
                .collect();
            if let Some((n, old, new)) = renamed.first() {
                let more = match renamed.len() {
                    1 => String::new(),
                    k => format!(" ({} more messages likewise)", k - 1),
                };
                out.push(rules::UIDL_STABLE.violation(
                    session,
                    format!(
                        "message {n} had the unique-id {:?} in session `{}`, now {:?}, an id that \
                         session never saw, while {:?} is gone{more}",
                        String::from_utf8_lossy(old),
                        before.session,
                        String::from_utf8_lossy(new),
                        String::from_utf8_lossy(old),
                    ),
                    &s.whole.uidl_raw,
                ));
            }
        }
        s.whole.compared = true;
        out
    }

    /// The session ended: what it left in the maildrop becomes the account's last view. A
    /// session that committed deletions without seeing the whole maildrop leaves it unknown.
    pub fn session_ended(&mut self, session: &str, s: &mut Session) -> Vec<Violation> {
        let out = self.compare(session, s);
        let empty = BTreeSet::new();
        let committed = match s.state {
            State::Done => &s.deleted,
            _ => &empty,
        };
        match s.whole.messages() {
            Some(messages) => {
                let left = messages
                    .into_iter()
                    .filter(|(n, _, _)| !committed.contains(n))
                    .map(|(_, size, uid)| (size, uid.to_vec()))
                    .collect();
                self.last.insert(
                    s.account.clone(),
                    Left {
                        session: session.to_string(),
                        messages: left,
                    },
                );
            }
            None if !committed.is_empty() => {
                self.last.remove(&s.account);
            }
            None => {}
        }
        out
    }
}
