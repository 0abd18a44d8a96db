//! The in-memory store shared by all protocols: accounts -> mailboxes -> messages, behind one
//! mutex, plus a change counter that sessions watch to send unsolicited updates (IDLE).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::watch;

use crate::Account;
use crate::mailbox::{Flags, Mailbox, MessageContent};

/// The hierarchy separator of every mailbox name.
pub const SEPARATOR: char = '/';

/// Why a mailbox operation failed; each maps to an IMAP response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("No such mailbox")]
    NonExistent,
    #[error("Mailbox already exists")]
    AlreadyExists,
    #[error("INBOX cannot be deleted")]
    Inbox,
    #[error("Mailbox has inferior hierarchical names")]
    HasChildren,
    #[error("Invalid mailbox name")]
    BadName,
    #[error("Mailbox is not selectable")]
    NoSelect,
    #[error("Mailbox has used up its UIDs")]
    UidsExhausted,
    /// The data directory could not take the change; nothing was changed.
    #[error("The mail store cannot write the change; try again later")]
    Unavailable,
}

/// One user's data.
#[derive(Debug, Default)]
pub struct UserData {
    pub password: String,
    pub mailboxes: BTreeMap<String, Mailbox>,
    pub subscriptions: BTreeSet<String>,
}

/// Everything behind the store's lock.
#[derive(Debug)]
pub struct StoreState {
    pub domain: String,
    pub users: BTreeMap<String, UserData>,
    next_mailbox_id: u64,
    next_uid_validity: u32,
}

/// The shared store.
#[derive(Debug)]
pub struct Store {
    state: Mutex<StoreState>,
    changes: watch::Sender<u64>,
    /// The data directory writer (`Config::data_dir`); unset for a memory-only store.
    persist: OnceLock<crate::persist::Persist>,
}

/// INBOX is case-insensitive (RFC 3501 5.1), also as the first level of a hierarchy.
pub fn normalize_name(name: &str) -> String {
    let (first, rest) = match name.find(SEPARATOR) {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    if first.eq_ignore_ascii_case("INBOX") {
        format!("INBOX{rest}")
    } else {
        name.to_string()
    }
}

/// A name can be created: no empty level, and no LIST wildcard characters, which could never
/// be listed unambiguously (RFC 3501 5.1).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(SEPARATOR)
        && !name.contains("//")
        && !name.contains(['*', '%'])
}

/// The names of all superiors of `name` ("a/b/c" -> "a", "a/b").
fn superiors(name: &str) -> Vec<String> {
    name.match_indices(SEPARATOR)
        .map(|(i, _)| name[..i].to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Store {
    pub fn new(accounts: &[Account], domain: &str) -> Arc<Self> {
        // Seed UIDVALIDITY from the clock so a restarted server does not reuse values
        // (RFC 3501 2.3.1.1); nonzero by construction.
        let seed = chrono::Utc::now().timestamp().rem_euclid(1 << 30) as u32 + 1;
        let mut state = StoreState {
            domain: domain.to_string(),
            users: BTreeMap::new(),
            next_mailbox_id: 1,
            next_uid_validity: seed,
        };
        for account in accounts {
            let mut user = UserData {
                password: account.password.clone(),
                ..UserData::default()
            };
            let inbox = state.new_mailbox();
            user.mailboxes.insert("INBOX".to_string(), inbox);
            state.users.insert(account.user.clone(), user);
        }
        let (changes, _) = watch::channel(0);
        Arc::new(Self {
            state: Mutex::new(state),
            changes,
            persist: OnceLock::new(),
        })
    }

    /// Locks the store. A poisoned lock is taken over: the data is plain values whose
    /// invariants hold between statements.
    pub fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells watching sessions that something changed. With a data directory the change is
    /// written first, so it is durable before the caller acknowledges it; a failed write is
    /// only logged, so callers that can refuse the acknowledgement use [`Store::commit`].
    #[allow(
        dead_code,
        reason = "the IMAP service uses commit(); kept for callers that cannot refuse"
    )]
    pub fn notify(&self) {
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "cannot write a change to the data directory");
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Final delivery for SMTP: appends each `(user, message)` copy to that user's INBOX
    /// exactly as an IMAP APPEND without flags would (\Recent, internal date now), all or
    /// none, then wakes the sessions watching the store so they report EXISTS at once.
    pub fn deliver(&self, copies: Vec<(String, Vec<u8>)>) -> Result<(), MailboxError> {
        let mut state = self.lock();
        // Check every INBOX first so that a failure delivers nothing.
        let mut needed: BTreeMap<&str, u32> = BTreeMap::new();
        for (user, _) in &copies {
            *needed.entry(user.as_str()).or_default() += 1;
        }
        for (user, n) in needed {
            if state.mailbox_mut(user, "INBOX")?.uids_left() < n {
                return Err(MailboxError::UidsExhausted);
            }
        }
        let now = chrono::Local::now().fixed_offset();
        let mut added = Vec::new();
        for (user, raw) in copies {
            let content = Arc::new(MessageContent {
                raw,
                internal_date: now,
            });
            let (_, uid) = state.append(&user, "INBOX", content, Flags::default())?;
            added.push((user, uid));
        }
        drop(state);
        // The 250 that follows promises the message is safe (RFC 5321 6.1): if the data
        // directory cannot take it, take it back so the client's retry does not deliver twice.
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "cannot write a delivery to the data directory");
            let mut state = self.lock();
            for (user, uid) in added {
                if let Ok(inbox) = state.mailbox_mut(&user, "INBOX") {
                    inbox.messages.remove(&uid);
                }
            }
            drop(state);
            self.notify();
            return Err(MailboxError::Unavailable);
        }
        Ok(())
    }

    /// Checks credentials; `user` may carry `@domain`. Returns the account name.
    pub fn authenticate(&self, user: &str, password: &str) -> Option<String> {
        let state = self.lock();
        let name = match user.rsplit_once('@') {
            Some((local, domain)) if domain.eq_ignore_ascii_case(&state.domain) => local,
            _ => user,
        };
        let data = state.users.get(name)?;
        (data.password == password).then(|| name.to_string())
    }
}

impl StoreState {
    pub(crate) fn new_mailbox(&mut self) -> Mailbox {
        let id = self.next_mailbox_id;
        self.next_mailbox_id += 1;
        let validity = self.next_uid_validity;
        self.next_uid_validity = self.next_uid_validity.checked_add(1).unwrap_or(1);
        Mailbox::new(id, validity)
    }

    pub fn user(&mut self, user: &str) -> Option<&mut UserData> {
        self.users.get_mut(user)
    }

    /// Creates a mailbox and any missing superiors (RFC 3501 6.3.3).
    pub fn create(&mut self, user: &str, name: &str) -> Result<(), MailboxError> {
        let name = normalize_name(name.trim_end_matches(SEPARATOR));
        if !valid_name(&name) {
            return Err(MailboxError::BadName);
        }
        let exists = self
            .users
            .get(user)
            .ok_or(MailboxError::NonExistent)?
            .mailboxes
            .get(&name)
            .map(|m| m.selectable);
        match exists {
            Some(true) => return Err(MailboxError::AlreadyExists),
            Some(false) => {
                // A \Noselect name becomes a real mailbox again, with a new UIDVALIDITY.
                let fresh = self.new_mailbox();
                if let Some(u) = self.users.get_mut(user) {
                    u.mailboxes.insert(name, fresh);
                }
                return Ok(());
            }
            None => {}
        }
        let mut names = superiors(&name);
        names.push(name);
        for n in names {
            let missing = self
                .users
                .get(user)
                .is_some_and(|u| !u.mailboxes.contains_key(&n));
            if missing {
                let fresh = self.new_mailbox();
                if let Some(u) = self.users.get_mut(user) {
                    u.mailboxes.insert(n, fresh);
                }
            }
        }
        Ok(())
    }

    /// Deletes a mailbox (RFC 3501 6.3.4): a name with inferiors keeps existing as \Noselect.
    pub fn delete(&mut self, user: &str, name: &str) -> Result<(), MailboxError> {
        let name = normalize_name(name);
        if name == "INBOX" {
            return Err(MailboxError::Inbox);
        }
        let u = self.users.get_mut(user).ok_or(MailboxError::NonExistent)?;
        let prefix = format!("{name}{SEPARATOR}");
        let has_children = u.mailboxes.keys().any(|k| k.starts_with(&prefix));
        let mb = u
            .mailboxes
            .get_mut(&name)
            .ok_or(MailboxError::NonExistent)?;
        if has_children {
            if !mb.selectable {
                return Err(MailboxError::HasChildren);
            }
            mb.selectable = false;
            mb.messages.clear();
        } else {
            u.mailboxes.remove(&name);
        }
        Ok(())
    }

    /// Renames a mailbox and its inferiors (RFC 3501 6.3.5). Renaming INBOX moves its
    /// messages to the new name and leaves INBOX empty.
    pub fn rename(&mut self, user: &str, from: &str, to: &str) -> Result<(), MailboxError> {
        let from = normalize_name(from);
        let to = normalize_name(to.trim_end_matches(SEPARATOR));
        if !valid_name(&to) {
            return Err(MailboxError::BadName);
        }
        {
            let u = self.users.get(user).ok_or(MailboxError::NonExistent)?;
            if !u.mailboxes.contains_key(&from) {
                return Err(MailboxError::NonExistent);
            }
            if u.mailboxes.contains_key(&to) {
                return Err(MailboxError::AlreadyExists);
            }
            if to.starts_with(&format!("{from}{SEPARATOR}")) {
                return Err(MailboxError::BadName);
            }
        }
        // Superiors of the new name, created like CREATE would.
        for sup in superiors(&to) {
            let missing = self
                .users
                .get(user)
                .is_some_and(|u| !u.mailboxes.contains_key(&sup));
            if missing {
                let fresh = self.new_mailbox();
                if let Some(u) = self.users.get_mut(user) {
                    u.mailboxes.insert(sup, fresh);
                }
            }
        }
        if from == "INBOX" {
            let mut target = self.new_mailbox();
            let u = self.users.get_mut(user).ok_or(MailboxError::NonExistent)?;
            let inbox = u
                .mailboxes
                .get_mut("INBOX")
                .ok_or(MailboxError::NonExistent)?;
            target.messages = std::mem::take(&mut inbox.messages);
            target.uid_next = inbox.uid_next;
            for m in target.messages.values_mut() {
                m.recent_owner = None;
            }
            u.mailboxes.insert(to, target);
            return Ok(());
        }
        let u = self.users.get_mut(user).ok_or(MailboxError::NonExistent)?;
        let prefix = format!("{from}{SEPARATOR}");
        let moving: Vec<String> = u
            .mailboxes
            .keys()
            .filter(|k| **k == from || k.starts_with(&prefix))
            .cloned()
            .collect();
        for old in moving {
            if let Some(mb) = u.mailboxes.remove(&old) {
                let new = format!("{to}{}", &old[from.len()..]);
                u.mailboxes.insert(new, mb);
            }
        }
        Ok(())
    }

    /// Appends a message; returns (UIDVALIDITY, UID).
    pub fn append(
        &mut self,
        user: &str,
        name: &str,
        content: Arc<MessageContent>,
        flags: Flags,
    ) -> Result<(u32, u32), MailboxError> {
        let mb = self.mailbox_mut(user, name)?;
        let uid = mb.add(content, flags).ok_or(MailboxError::UidsExhausted)?;
        Ok((mb.uid_validity, uid))
    }

    pub fn mailbox_mut(&mut self, user: &str, name: &str) -> Result<&mut Mailbox, MailboxError> {
        let mb = self
            .users
            .get_mut(user)
            .and_then(|u| u.mailboxes.get_mut(&normalize_name(name)))
            .ok_or(MailboxError::NonExistent)?;
        if mb.selectable {
            Ok(mb)
        } else {
            Err(MailboxError::NoSelect)
        }
    }

    /// Finds a mailbox by its unique id (a selected mailbox may have been renamed).
    pub fn mailbox_by_id(&mut self, user: &str, id: u64) -> Option<&mut Mailbox> {
        self.users
            .get_mut(user)?
            .mailboxes
            .values_mut()
            .find(|m| m.id == id && m.selectable)
    }
}

// ---- On-disk persistence (`Config::data_dir`, module `persist`) ----

impl Store {
    /// A store loaded from `data_dir` (created if missing) that writes every later change
    /// back to it; see `crate::persist` for the layout.
    pub fn open(
        accounts: &[Account],
        domain: &str,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Self>, crate::persist::PersistError> {
        let store = Self::new(accounts, domain);
        let persist = crate::persist::Persist::open(data_dir, &mut store.lock())?;
        // Cannot be set already: the store was created just above.
        let _ = store.persist.set(persist);
        Ok(store)
    }

    /// [`Store::notify`] that reports a failed write, so that the caller can refuse to
    /// acknowledge the change. Sessions are woken either way (memory did change), and the next
    /// commit retries whatever did not reach the disk. Must not be called with the store
    /// locked.
    pub fn commit(&self) -> Result<(), crate::persist::PersistError> {
        let written = self.persist_changes();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        written
    }

    /// Makes every change so far durable; a no-op without a data directory. Must not be
    /// called with the store locked.
    pub fn persist_changes(&self) -> Result<(), crate::persist::PersistError> {
        match self.persist.get() {
            Some(p) => p.sync(self),
            None => Ok(()),
        }
    }
}

impl StoreState {
    /// Makes sure no new mailbox gets a UIDVALIDITY at or below `used` (a value loaded from
    /// disk), unless the counter has wrapped.
    pub(crate) fn reserve_uid_validity(&mut self, used: u32) {
        if used >= self.next_uid_validity {
            self.next_uid_validity = used.checked_add(1).unwrap_or(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Arc<Store> {
        Store::new(
            &[Account {
                user: "alice".into(),
                password: "pw".into(),
            }],
            "example.test",
        )
    }

    #[test]
    fn login_with_and_without_domain() {
        let s = store();
        assert_eq!(s.authenticate("alice", "pw").as_deref(), Some("alice"));
        assert_eq!(
            s.authenticate("alice@example.test", "pw").as_deref(),
            Some("alice")
        );
        assert_eq!(s.authenticate("alice@other.test", "pw"), None);
        assert_eq!(s.authenticate("alice", "nope"), None);
    }

    #[test]
    fn deliver_appends_recent_messages_all_or_none() {
        let s = store();
        let changes = s.subscribe();
        s.deliver(vec![("alice".into(), b"a: 1\r\n\r\n".to_vec())])
            .unwrap();
        assert!(changes.has_changed().unwrap());
        {
            let st = s.lock();
            let inbox = &st.users["alice"].mailboxes["INBOX"];
            assert_eq!(inbox.messages.len(), 1);
            assert!(inbox.messages[&1].recent && inbox.messages[&1].flags.iter().count() == 0);
        }
        let result = s.deliver(vec![
            ("alice".into(), b"a: 2\r\n\r\n".to_vec()),
            ("nobody".into(), b"a: 3\r\n\r\n".to_vec()),
        ]);
        assert_eq!(result, Err(MailboxError::NonExistent));
        assert_eq!(s.lock().users["alice"].mailboxes["INBOX"].messages.len(), 1);
    }

    #[test]
    fn create_makes_superiors_and_recreate_changes_uidvalidity() {
        let s = store();
        let mut st = s.lock();
        st.create("alice", "a/b/c").unwrap();
        let names: Vec<_> = st.users["alice"].mailboxes.keys().cloned().collect();
        assert_eq!(names, vec!["INBOX", "a", "a/b", "a/b/c"]);
        assert_eq!(st.create("alice", "a/b"), Err(MailboxError::AlreadyExists));
        let v1 = st.users["alice"].mailboxes["a/b/c"].uid_validity;
        st.delete("alice", "a/b/c").unwrap();
        st.create("alice", "a/b/c").unwrap();
        assert_ne!(v1, st.users["alice"].mailboxes["a/b/c"].uid_validity);
    }

    #[test]
    fn wildcards_and_empty_levels_are_bad_names() {
        let s = store();
        let mut st = s.lock();
        for bad in ["a*", "b%c", "x//y", "/top", ""] {
            assert_eq!(st.create("alice", bad), Err(MailboxError::BadName), "{bad}");
        }
        st.create("alice", "ok/").unwrap();
        assert!(st.users["alice"].mailboxes.contains_key("ok"));
    }

    #[test]
    fn delete_with_children_leaves_noselect() {
        let s = store();
        let mut st = s.lock();
        st.create("alice", "a/b").unwrap();
        st.delete("alice", "a").unwrap();
        assert!(!st.users["alice"].mailboxes["a"].selectable);
        assert_eq!(st.delete("alice", "a"), Err(MailboxError::HasChildren));
        assert_eq!(st.delete("alice", "inbox"), Err(MailboxError::Inbox));
    }

    #[test]
    fn rename_moves_inferiors_and_inbox_rename_empties_inbox() {
        let s = store();
        let mut st = s.lock();
        st.create("alice", "a/b").unwrap();
        st.rename("alice", "a", "x/y").unwrap();
        let names: Vec<_> = st.users["alice"].mailboxes.keys().cloned().collect();
        assert_eq!(names, vec!["INBOX", "x", "x/y", "x/y/b"]);
        let content = Arc::new(MessageContent {
            raw: b"a: b\r\n\r\n".to_vec(),
            internal_date: chrono::Utc::now().fixed_offset(),
        });
        st.append("alice", "INBOX", content, Flags::default())
            .unwrap();
        st.rename("alice", "INBOX", "old").unwrap();
        assert!(st.users["alice"].mailboxes["INBOX"].messages.is_empty());
        assert_eq!(st.users["alice"].mailboxes["old"].messages.len(), 1);
        // INBOX never reuses the UID.
        assert_eq!(st.users["alice"].mailboxes["INBOX"].uid_next, 2);
    }
}
