//! One mailbox: its messages keyed by UID, the UID counters and the per-message flags and
//! \Recent ownership. Protocol-neutral so POP3 can later share it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

/// The immutable part of a message: its octets and its internal date.
#[derive(Debug)]
pub struct MessageContent {
    pub raw: Vec<u8>,
    pub internal_date: DateTime<FixedOffset>,
}

/// The system flags of RFC 3501 section 2.3.2 that a client may set, in canonical spelling.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// A message's flag set. Flags compare case-insensitively (RFC 3501 treats flag names as
/// atoms); system flags are kept in their canonical spelling, keywords as first written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(Vec<String>);

impl Flags {
    /// Canonical spelling for a system flag, or the name unchanged for a keyword.
    pub fn canonical(name: &str) -> String {
        SYSTEM_FLAGS
            .iter()
            .find(|f| f.eq_ignore_ascii_case(name))
            .map_or_else(|| name.to_string(), |f| (*f).to_string())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Adds a flag; returns whether the set changed.
    pub fn insert(&mut self, name: &str) -> bool {
        if self.contains(name) {
            return false;
        }
        self.0.push(Self::canonical(name));
        true
    }

    /// Removes a flag; returns whether the set changed.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|f| !f.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Same members regardless of order or case.
    pub fn same_as(&self, other: &Flags) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|f| other.contains(f))
    }
}

impl<S: AsRef<str>> FromIterator<S> for Flags {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut flags = Flags::default();
        for f in iter {
            flags.insert(f.as_ref());
        }
        flags
    }
}

/// A message as stored in a mailbox.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub uid: u32,
    pub content: Arc<MessageContent>,
    pub flags: Flags,
    /// Still \Recent: no session that saw it as recent has closed the mailbox yet.
    pub recent: bool,
    /// The one session that reports \Recent for this message (RFC 3501 2.3.2).
    pub recent_owner: Option<u64>,
}

/// A mailbox. `id` is unique for the life of the store, so a session notices when the
/// mailbox it selected was deleted even if a new one with the same name appears.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub id: u64,
    pub uid_validity: u32,
    pub uid_next: u32,
    /// False for a name kept only because it has inferiors (RFC 3501 6.3.4 DELETE).
    pub selectable: bool,
    pub messages: BTreeMap<u32, StoredMessage>,
}

impl Mailbox {
    pub fn new(id: u64, uid_validity: u32) -> Self {
        Self {
            id,
            uid_validity,
            uid_next: 1,
            selectable: true,
            messages: BTreeMap::new(),
        }
    }

    /// How many more messages can get a UID (the largest UID is `u32::MAX - 1`, so that
    /// UIDNEXT stays a valid 32-bit number above every UID).
    pub fn uids_left(&self) -> u32 {
        u32::MAX - self.uid_next
    }

    /// Adds a message under the next UID and returns that UID, or `None` once the UID space
    /// is used up. UIDs are never reused: `uid_next` only grows.
    pub fn add(&mut self, content: Arc<MessageContent>, flags: Flags) -> Option<u32> {
        if self.uids_left() == 0 {
            return None;
        }
        let uid = self.uid_next;
        self.uid_next += 1;
        self.messages.insert(
            uid,
            StoredMessage {
                uid,
                content,
                flags,
                recent: true,
                recent_owner: None,
            },
        );
        Some(uid)
    }

    pub fn unseen(&self) -> usize {
        self.messages
            .values()
            .filter(|m| !m.flags.contains("\\Seen"))
            .count()
    }

    pub fn recent(&self) -> usize {
        self.messages.values().filter(|m| m.recent).count()
    }

    /// Removes the messages flagged \Deleted (limited to `only` when given) and returns
    /// their UIDs in ascending order.
    pub fn expunge(&mut self, only: Option<&dyn Fn(u32) -> bool>) -> Vec<u32> {
        let doomed: Vec<u32> = self
            .messages
            .values()
            .filter(|m| m.flags.contains("\\Deleted"))
            .filter(|m| only.is_none_or(|f| f(m.uid)))
            .map(|m| m.uid)
            .collect();
        for uid in &doomed {
            self.messages.remove(uid);
        }
        doomed
    }

    /// Ends a session's claim on \Recent: those messages stop being recent.
    pub fn release_recent(&mut self, session: u64) {
        for m in self.messages.values_mut() {
            if m.recent_owner == Some(session) {
                m.recent = false;
            }
        }
    }

    /// Keywords in use, for the FLAGS response.
    pub fn keywords(&self) -> Vec<String> {
        let mut all = Flags::default();
        for m in self.messages.values() {
            for f in m.flags.iter() {
                if !f.starts_with('\\') {
                    all.insert(f);
                }
            }
        }
        all.iter().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> Arc<MessageContent> {
        Arc::new(MessageContent {
            raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            internal_date: chrono::Utc::now().fixed_offset(),
        })
    }

    #[test]
    fn flags_are_case_insensitive_and_canonical() {
        let mut f = Flags::default();
        assert!(f.insert("\\seen"));
        assert!(!f.insert("\\SEEN"));
        assert_eq!(f.iter().collect::<Vec<_>>(), vec!["\\Seen"]);
        assert!(f.insert("$Label"));
        assert!(f.contains("$label"));
        assert!(f.remove("$LABEL"));
        assert!(!f.contains("$label"));
    }

    #[test]
    fn uids_grow_and_are_not_reused_after_expunge() {
        let mut mb = Mailbox::new(1, 7);
        let a = mb.add(content(), Flags::default());
        let b = mb.add(content(), ["\\Deleted"].into_iter().collect());
        assert_eq!((a, b), (Some(1), Some(2)));
        assert_eq!(mb.expunge(None), vec![2]);
        assert_eq!(mb.add(content(), Flags::default()), Some(3));
        assert_eq!(mb.uid_next, 4);
    }

    #[test]
    fn uid_space_runs_out_instead_of_wrapping() {
        let mut mb = Mailbox::new(1, 7);
        mb.uid_next = u32::MAX - 1;
        assert_eq!(mb.add(content(), Flags::default()), Some(u32::MAX - 1));
        assert_eq!(mb.add(content(), Flags::default()), None);
        assert_eq!(mb.uid_next, u32::MAX);
    }

    #[test]
    fn recent_is_released_by_its_owner_only() {
        let mut mb = Mailbox::new(1, 7);
        let uid = mb.add(content(), Flags::default()).unwrap();
        if let Some(m) = mb.messages.get_mut(&uid) {
            m.recent_owner = Some(5);
        }
        mb.release_recent(6);
        assert_eq!(mb.recent(), 1);
        mb.release_recent(5);
        assert_eq!(mb.recent(), 0);
    }
}
