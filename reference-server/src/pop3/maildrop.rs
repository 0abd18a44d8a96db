//! A POP3 maildrop: the user's INBOX as it was at login, numbered 1..n for the whole session
//! (RFC 1939 5: new mail does not show up until the next session), with the messages marked
//! by DELE, and the exclusive lock that keeps a second POP3 session out (RFC 1939 8:
//! "exclusive-access lock on the maildrop").
//!
//! Deleted messages leave the store only in the UPDATE state (QUIT), where they are removed
//! from the INBOX like an IMAP EXPUNGE: IMAP sessions see `* n EXPUNGE` on their next command.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mailtape_proto::pop3::normalized_len;

use crate::store::MailboxError;

use crate::mailbox::MessageContent;
use crate::store::Store;

/// The users whose maildrop a POP3 session holds.
#[derive(Debug, Default)]
pub(crate) struct Locks(Mutex<HashSet<String>>);

impl Locks {
    /// Takes the lock for `user`, or `None` if another session holds it.
    pub fn acquire(self: &Arc<Self>, user: &str) -> Option<LockGuard> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(user.to_string()).then(|| LockGuard {
            locks: Arc::clone(self),
            user: user.to_string(),
        })
    }
}

/// Holds a maildrop lock; dropping it (QUIT, disconnect, shutdown) releases it.
#[derive(Debug)]
pub(crate) struct LockGuard {
    locks: Arc<Locks>,
    user: String,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut held = self.locks.0.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.user);
    }
}

/// One message of the session's snapshot.
#[derive(Debug)]
pub(crate) struct Entry {
    pub uid: u32,
    pub content: Arc<MessageContent>,
    /// Octets as RETR sends them (CRLF lines, before dot-stuffing).
    pub size: usize,
    pub deleted: bool,
}

/// Why a message number does not name a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    NoSuchMessage,
    Deleted,
}

impl Lookup {
    pub fn text(self) -> &'static str {
        match self {
            Lookup::NoSuchMessage => "No such message",
            Lookup::Deleted => "Message is deleted",
        }
    }
}

/// The maildrop of a session in TRANSACTION state.
#[derive(Debug)]
pub(crate) struct Maildrop {
    pub user: String,
    mailbox_id: u64,
    uid_validity: u32,
    pub entries: Vec<Entry>,
    _lock: LockGuard,
}

impl Maildrop {
    /// Snapshots the INBOX of `user`; `None` if the user has no INBOX.
    pub fn open(store: &Store, user: &str, lock: LockGuard) -> Option<Self> {
        let mut st = store.lock();
        let inbox = st.mailbox_mut(user, "INBOX").ok()?;
        let entries = inbox
            .messages
            .values()
            .map(|m| Entry {
                uid: m.uid,
                content: Arc::clone(&m.content),
                size: normalized_len(&m.content.raw),
                deleted: false,
            })
            .collect();
        Some(Self {
            user: user.to_string(),
            mailbox_id: inbox.id,
            uid_validity: inbox.uid_validity,
            entries,
            _lock: lock,
        })
    }

    /// The message numbered `n` (1-based), unless it is out of range or deleted.
    pub fn get(&self, n: u32) -> Result<&Entry, Lookup> {
        let i = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or(Lookup::NoSuchMessage)?;
        let e = self.entries.get(i).ok_or(Lookup::NoSuchMessage)?;
        if e.deleted {
            return Err(Lookup::Deleted);
        }
        Ok(e)
    }

    /// Marks message `n` deleted (RFC 1939 5 DELE).
    pub fn delete(&mut self, n: u32) -> Result<(), Lookup> {
        self.get(n)?;
        if let Some(e) = self.entries.get_mut(n as usize - 1) {
            e.deleted = true;
        }
        Ok(())
    }

    /// Unmarks every message (RFC 1939 5 RSET).
    pub fn reset(&mut self) {
        for e in &mut self.entries {
            e.deleted = false;
        }
    }

    /// Messages not marked deleted, with their numbers.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted)
            .map(|(i, e)| (i + 1, e))
    }

    /// (count, octets) of the messages not marked deleted, as STAT reports them.
    pub fn stat(&self) -> (usize, usize) {
        self.live()
            .fold((0, 0), |(n, size), (_, e)| (n + 1, size + e.size))
    }

    /// The unique-id listing of a message (RFC 1939 7 UIDL): UIDVALIDITY and UID of the INBOX
    /// message, so it is stable across sessions and never reused for another message.
    pub fn uidl(&self, e: &Entry) -> String {
        format!("{}.{}", self.uid_validity, e.uid)
    }

    /// The UPDATE state (RFC 1939 6): removes the deleted messages from the INBOX and tells
    /// watching IMAP sessions. Messages already gone (expunged over IMAP meanwhile) are
    /// skipped. Returns how many messages the INBOX still holds, or `Err` when the data
    /// directory cannot take the removal: then nothing is removed, and the caller answers
    /// `-ERR` as RFC 1939 6 asks of a server that cannot remove the messages.
    pub fn update(self, store: &Store) -> Result<usize, MailboxError> {
        let mut st = store.lock();
        let Some(inbox) = st.mailbox_by_id(&self.user, self.mailbox_id) else {
            return Ok(0);
        };
        let mut removed = Vec::new();
        for e in self.entries.iter().filter(|e| e.deleted) {
            if let Some(m) = inbox.messages.remove(&e.uid) {
                removed.push((e.uid, m));
            }
        }
        let left = inbox.messages.len();
        drop(st);
        if removed.is_empty() {
            return Ok(left);
        }
        if let Err(e) = store.commit() {
            tracing::error!(error = %e, "cannot write the POP3 deletions to the data directory");
            let mut st = store.lock();
            if let Some(inbox) = st.mailbox_by_id(&self.user, self.mailbox_id) {
                inbox.messages.extend(removed);
            }
            drop(st);
            store.notify();
            return Err(MailboxError::Unavailable);
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Account;
    use crate::mailbox::Flags;

    fn store_with(messages: &[&[u8]]) -> Arc<Store> {
        let store = Store::new(
            &[Account {
                user: "alice".into(),
                password: "pw".into(),
            }],
            "example.test",
        );
        {
            let mut st = store.lock();
            for raw in messages {
                let content = Arc::new(MessageContent {
                    raw: raw.to_vec(),
                    internal_date: chrono::Utc::now().fixed_offset(),
                });
                st.append("alice", "INBOX", content, Flags::default())
                    .expect("append");
            }
        }
        store
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let locks = Arc::new(Locks::default());
        let first = locks.acquire("alice");
        assert!(first.is_some());
        assert!(locks.acquire("alice").is_none());
        assert!(locks.acquire("bob").is_some());
        drop(first);
        assert!(locks.acquire("alice").is_some());
    }

    #[test]
    fn numbering_deletion_and_update() {
        let store = store_with(&[b"a: 1\n\nx\n", b"a: 2\r\n\r\ny\r\n", b"a: 3\r\n\r\nz\r\n"]);
        let locks = Arc::new(Locks::default());
        let lock = locks.acquire("alice").expect("lock");
        let mut md = Maildrop::open(&store, "alice", lock).expect("inbox");
        // Bare LF counts as CRLF: 3 lines of 4, 0 and 1 octets plus CRLF each.
        assert_eq!(md.stat(), (3, 11 + 11 + 11));
        assert_eq!(md.get(0).map(|e| e.uid), Err(Lookup::NoSuchMessage));
        assert_eq!(md.get(4).map(|e| e.uid), Err(Lookup::NoSuchMessage));
        md.delete(2).expect("dele");
        assert_eq!(md.delete(2), Err(Lookup::Deleted));
        assert_eq!(md.get(2).map(|e| e.uid), Err(Lookup::Deleted));
        assert_eq!(md.stat(), (2, 22));
        md.reset();
        assert_eq!(md.stat(), (3, 33));
        md.delete(1).expect("dele");
        let first = md.get(3).map(|e| md.uidl(e)).expect("uidl");
        assert_eq!(md.update(&store), Ok(2));
        let mut st = store.lock();
        let uids: Vec<u32> = st
            .mailbox_mut("alice", "INBOX")
            .expect("inbox")
            .messages
            .keys()
            .copied()
            .collect();
        assert_eq!(uids, vec![2, 3]);
        drop(st);
        // The lock went with the maildrop; a new session sees the same UIDL.
        let lock = locks.acquire("alice").expect("lock released");
        let md = Maildrop::open(&store, "alice", lock).expect("inbox");
        assert_eq!(md.get(2).map(|e| md.uidl(e)), Ok(first));
    }
}
