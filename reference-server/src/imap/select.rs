//! The selected-mailbox view of one session: the sequence-number -> UID map and the flags this
//! session last reported, and the diff against the store that yields unsolicited EXPUNGE,
//! EXISTS, RECENT, FLAGS and FETCH FLAGS responses (RFC 3501 5.2, 7.4.1).

use std::collections::HashSet;
use std::sync::Arc;

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::response::flag_list;
use crate::mailbox::{Flags, Mailbox, MessageContent, SYSTEM_FLAGS};
use crate::store::StoreState;

/// One message as this session knows it.
#[derive(Debug, Clone)]
pub struct ViewEntry {
    pub uid: u32,
    pub content: Arc<MessageContent>,
    pub flags: Flags,
}

/// A selected mailbox.
#[derive(Debug)]
pub struct Selected {
    pub mailbox_id: u64,
    pub read_only: bool,
    pub uid_validity: u32,
    pub view: Vec<ViewEntry>,
    /// UIDs that are \Recent in this session.
    pub recent: HashSet<u32>,
    /// Keywords announced in the last FLAGS response.
    pub keywords: Vec<String>,
}

/// The FLAGS response body for a keyword set.
pub fn flags_response(keywords: &[String]) -> String {
    flag_list(
        SYSTEM_FLAGS
            .iter()
            .copied()
            .chain(keywords.iter().map(String::as_str)),
    )
}

impl Selected {
    /// Opens a view on `mb`. A read-write select claims the unclaimed \Recent messages for
    /// `session`; EXAMINE shows them as recent without claiming (it must not change state).
    pub fn open(mb: &mut Mailbox, session: u64, read_only: bool) -> Self {
        let mut recent = HashSet::new();
        let mut view = Vec::with_capacity(mb.messages.len());
        for m in mb.messages.values_mut() {
            if m.recent && m.recent_owner.is_none() {
                if !read_only {
                    m.recent_owner = Some(session);
                }
                recent.insert(m.uid);
            } else if m.recent_owner == Some(session) {
                recent.insert(m.uid);
            }
            view.push(ViewEntry {
                uid: m.uid,
                content: Arc::clone(&m.content),
                flags: m.flags.clone(),
            });
        }
        Self {
            mailbox_id: mb.id,
            read_only,
            uid_validity: mb.uid_validity,
            view,
            recent,
            keywords: mb.keywords(),
        }
    }

    pub fn exists(&self) -> usize {
        self.view.len()
    }

    /// Flags as this session reports them, \Recent included.
    pub fn fetch_flags(&self, index: usize) -> String {
        let Some(e) = self.view.get(index) else {
            return "()".into();
        };
        let recent = self.recent.contains(&e.uid).then_some("\\Recent");
        flag_list(e.flags.iter().chain(recent))
    }

    /// Brings the view up to date with the store and appends the untagged responses.
    /// Expunges are reported only when `allow_expunge` (RFC 3501 7.4.1 forbids them during
    /// FETCH, STORE and SEARCH); until then expunged messages stay in the view.
    pub fn sync(
        &mut self,
        state: &mut StoreState,
        user: &str,
        session: u64,
        allow_expunge: bool,
        out: &mut Vec<u8>,
    ) {
        let read_only = self.read_only;
        let mb = state.mailbox_by_id(user, self.mailbox_id);
        let empty = Mailbox::new(0, 0);
        let mut claimed = Vec::new();
        let mb_ref: &Mailbox = match mb {
            Some(mb) => {
                // Claim \Recent on new arrivals before looking at them.
                let known_max = self.view.last().map_or(0, |e| e.uid);
                for m in mb.messages.range_mut(known_max + 1..).map(|(_, m)| m) {
                    if m.recent && m.recent_owner.is_none() && !read_only {
                        m.recent_owner = Some(session);
                        claimed.push(m.uid);
                    } else if m.recent_owner == Some(session)
                        || (read_only && m.recent && m.recent_owner.is_none())
                    {
                        claimed.push(m.uid);
                    }
                }
                mb
            }
            None => &empty,
        };
        // An expunge that takes a \Recent message changes the count the client was told.
        let mut recent_changed = false;
        if allow_expunge {
            for i in (0..self.view.len()).rev() {
                let uid = self.view[i].uid;
                if !mb_ref.messages.contains_key(&uid) {
                    self.view.remove(i);
                    recent_changed |= self.recent.remove(&uid);
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
            }
        }
        let keywords = mb_ref.keywords();
        if keywords
            .iter()
            .any(|k| !self.keywords.iter().any(|o| o.eq_ignore_ascii_case(k)))
        {
            self.keywords.extend(
                keywords
                    .into_iter()
                    .filter(|k| !self.keywords.iter().any(|o| o.eq_ignore_ascii_case(k)))
                    .collect::<Vec<_>>(),
            );
            out.extend_from_slice(
                format!("* FLAGS {}\r\n", flags_response(&self.keywords)).as_bytes(),
            );
        }
        for i in 0..self.view.len() {
            let uid = self.view[i].uid;
            if let Some(m) = mb_ref.messages.get(&uid)
                && !m.flags.same_as(&self.view[i].flags)
            {
                self.view[i].flags = m.flags.clone();
                let flags = self.fetch_flags(i);
                out.extend_from_slice(format!("* {} FETCH (FLAGS {flags})\r\n", i + 1).as_bytes());
            }
        }
        let known_max = self.view.last().map_or(0, |e| e.uid);
        let before = self.view.len();
        for m in mb_ref.messages.range(known_max + 1..).map(|(_, m)| m) {
            self.view.push(ViewEntry {
                uid: m.uid,
                content: Arc::clone(&m.content),
                flags: m.flags.clone(),
            });
        }
        if self.view.len() != before {
            self.recent.extend(claimed);
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.view.len()).as_bytes());
            out.extend_from_slice(format!("* {} RECENT\r\n", self.recent.len()).as_bytes());
        } else if recent_changed {
            // RFC 3501 7.3.2: RECENT comes when the mailbox size changes; an expunge is one.
            out.extend_from_slice(format!("* {} RECENT\r\n", self.recent.len()).as_bytes());
        }
    }

    /// Indexes of the view selected by a sequence set (message numbers or UIDs). For message
    /// numbers, a number beyond EXISTS is an error (RFC 3501 9 `seq-number`); for UIDs,
    /// unknown UIDs are ignored.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, String> {
        let mut picked = Vec::new();
        if uid {
            let largest = self.view.last().map_or(0, |e| e.uid);
            for (i, e) in self.view.iter().enumerate() {
                if in_set(set, e.uid, largest) {
                    picked.push(i);
                }
            }
            return Ok(picked);
        }
        let largest = self.view.len() as u32;
        for seq in set.0.as_ref() {
            let (a, b) = bounds(seq, largest);
            if a == 0 || b == 0 || a.max(b) > largest {
                return Err("Invalid message sequence number".into());
            }
        }
        for i in 0..self.view.len() {
            if in_set(set, i as u32 + 1, largest) {
                picked.push(i);
            }
        }
        Ok(picked)
    }
}

fn value(v: &SeqOrUid, largest: u32) -> u32 {
    match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    }
}

fn bounds(seq: &Sequence, largest: u32) -> (u32, u32) {
    match seq {
        Sequence::Single(v) => {
            let n = value(v, largest);
            (n, n)
        }
        Sequence::Range(a, b) => {
            let (a, b) = (value(a, largest), value(b, largest));
            (a.min(b), a.max(b))
        }
    }
}

/// Whether `n` is in the set, with `*` standing for `largest` (RFC 3501 9 `seq-range`:
/// the order of a range's ends does not matter).
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    set.0.as_ref().iter().any(|seq| {
        let (a, b) = bounds(seq, largest);
        a <= n && n <= b
    })
}
