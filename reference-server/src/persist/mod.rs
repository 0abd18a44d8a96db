//! Optional on-disk persistence of the store (`Config::data_dir`), in a layout other mail
//! software reads: one Maildir++ per user (`<data>/<user>/Maildir/`, folders `.a.b`), one file
//! per message with its system flags as Maildir info letters, plus a small index per mailbox
//! for what file names cannot hold (see `index`).
//!
//! The in-memory store stays the ground truth. [`Persist::sync`] compares it with what is on
//! disk (a cached picture, [`Disk`]) and writes the difference: new message files via `tmp/`
//! with fsync and rename, flag changes as renames, expunges as unlinks, mailbox
//! create/delete/rename as directory operations, then the index. Every directory touched is
//! fsync'd, so a change is durable when `sync` returns; the store calls it from
//! `Store::notify`, which every protocol calls before it acknowledges a change.
//!
//! The plan is made under the store lock (cheap, in memory); the disk work runs after the
//! lock is released, serialised by the `Disk` mutex, so readers are not held up by fsync.

pub mod accounts;
mod index;
mod layout;
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};

use crate::mailbox::{Flags, MessageContent};
use crate::store::{Store, StoreState};
use index::{Index, IndexEntry, write_atomic};
use layout::{file_name, letters_differ, mailbox_dir};

/// Lock file in the data directory: one server per directory, or the two would overwrite
/// each other's indexes.
const LOCK_FILE: &str = "mailtape.lock";

/// How long `open` waits for the lock before it reports the directory in use. A server that
/// was just shut down in this process may still be dropping its last store handle on another
/// worker thread for a moment; a real second server holds the lock for much longer.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Pause between two lock attempts.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Highest UIDVALIDITY handed out so far, so that a mailbox deleted and created again after a
/// restart still gets a new value (RFC 3501 2.3.1.1).
const UIDVALIDITY_FILE: &str = "mailtape-uidvalidity";

/// A user's subscriptions, one mailbox name per line (IMAP names, `/` as the separator).
const SUBSCRIPTIONS_FILE: &str = "mailtape-subscriptions";

/// Per-user directory (beside `Maildir/`) that renamed folders pass through, so that a chain
/// of renames within one sync (a->b while c->a) never collides.
const RENAME_STAGING: &str = "mailtape-renaming";

/// Why the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: broken index: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error("{path}: the data directory is in use by another server")]
    Locked { path: PathBuf },
    #[error("user name {0:?} cannot be a directory name")]
    BadUser(String),
}

fn io_err(path: &Path, source: std::io::Error) -> PersistError {
    PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the directory entries of `dir` (creations, renames, removals) durable.
fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Creates `dir` with its `tmp`, `new` and `cur` subdirectories.
fn ensure_maildir(dir: &Path) -> Result<(), PersistError> {
    for sub in ["tmp", "new", "cur"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
    }
    Ok(())
}

/// Removes a path, treating "already gone" as done.
fn remove_if_present(path: &Path, dir: bool) -> Result<(), PersistError> {
    let r = if dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

/// One message file as it is on disk.
#[derive(Debug, Clone)]
struct DiskMessage {
    /// Unique part of the file name (the index key).
    base: String,
    /// Current file name in `cur/`.
    file: String,
    flags: Flags,
    internal_date: DateTime<FixedOffset>,
}

/// One mailbox directory as it is on disk.
#[derive(Debug, Clone)]
struct DiskMailbox {
    name: String,
    selectable: bool,
    uid_validity: u32,
    uid_next: u32,
    messages: BTreeMap<u32, DiskMessage>,
}

impl DiskMailbox {
    fn index(&self) -> Index {
        Index {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            selectable: self.selectable,
            entries: self
                .messages
                .iter()
                .map(|(uid, m)| {
                    let entry = IndexEntry {
                        base: m.base.clone(),
                        internal_date: m.internal_date,
                        flags: m.flags.iter().map(str::to_string).collect(),
                    };
                    (*uid, entry)
                })
                .collect(),
        }
    }
}

/// One user's Maildir as it is on disk, mailboxes keyed by the store's mailbox id (which
/// survives RENAME).
#[derive(Debug)]
struct DiskUser {
    root: PathBuf,
    mailboxes: BTreeMap<u64, DiskMailbox>,
    subscriptions: BTreeSet<String>,
}

/// The cached picture of the data directory.
#[derive(Debug)]
struct Disk {
    users: BTreeMap<String, DiskUser>,
    max_uid_validity: u32,
}

/// A mailbox as the store has it, taken under the store lock.
struct MailboxSnap {
    id: u64,
    name: String,
    selectable: bool,
    uid_validity: u32,
    uid_next: u32,
    messages: Vec<(u32, Arc<MessageContent>, Flags)>,
}

struct UserSnap {
    mailboxes: Vec<MailboxSnap>,
    subscriptions: BTreeSet<String>,
}

/// The persistence of one store; see the module docs.
#[derive(Debug)]
pub struct Persist {
    data_dir: PathBuf,
    disk: Mutex<Disk>,
    /// Held (with its OS lock) for the life of the server.
    _lock: File,
}

impl Persist {
    /// Locks `data_dir`, loads every account's mail into `state` (replacing the fresh
    /// mailboxes the store was created with) and returns the writer for later changes.
    pub fn open(data_dir: &Path, state: &mut StoreState) -> Result<Self, PersistError> {
        std::fs::create_dir_all(data_dir).map_err(|e| io_err(data_dir, e))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        let started = std::time::Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(PersistError::Locked { path: lock_path });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
            }
        }
        let max_uid_validity = read_uid_validity(data_dir)?;
        state.reserve_uid_validity(max_uid_validity);
        let names: Vec<String> = state.users.keys().cloned().collect();
        let mut users = BTreeMap::new();
        for user in names {
            if !layout::valid_user(&user) {
                return Err(PersistError::BadUser(user));
            }
            let disk = load::load_user(data_dir, &user, state)?;
            users.insert(user, disk);
        }
        let max_uid_validity = users
            .values()
            .flat_map(|u| u.mailboxes.values().map(|m| m.uid_validity))
            .fold(max_uid_validity, u32::max);
        write_uid_validity(data_dir, max_uid_validity)?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            disk: Mutex::new(Disk {
                users,
                max_uid_validity,
            }),
            _lock: lock,
        })
    }

    /// Writes what changed in `store` since the last call; returns once it is durable.
    pub fn sync(&self, store: &Store) -> Result<(), PersistError> {
        // A poisoned lock means a sync panicked half-way; the picture may be stale, which at
        // worst rewrites or re-deletes a file (both idempotent), so carry on.
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        let snaps: Vec<(String, UserSnap)> = {
            let state = store.lock();
            state
                .users
                .iter()
                .filter(|(name, _)| disk.users.contains_key(*name))
                .map(|(name, data)| {
                    let mailboxes = data
                        .mailboxes
                        .iter()
                        .map(|(mb_name, mb)| MailboxSnap {
                            id: mb.id,
                            name: mb_name.clone(),
                            selectable: mb.selectable,
                            uid_validity: mb.uid_validity,
                            uid_next: mb.uid_next,
                            messages: mb
                                .messages
                                .values()
                                .map(|m| (m.uid, Arc::clone(&m.content), m.flags.clone()))
                                .collect(),
                        })
                        .collect();
                    let snap = UserSnap {
                        mailboxes,
                        subscriptions: data.subscriptions.clone(),
                    };
                    (name.clone(), snap)
                })
                .collect()
        };
        let newest = snaps
            .iter()
            .flat_map(|(_, s)| s.mailboxes.iter().map(|m| m.uid_validity))
            .max()
            .unwrap_or(0);
        if newest > disk.max_uid_validity {
            // Recorded before the mailbox directory exists, so a crash in between cannot
            // lead to the value being handed out twice.
            write_uid_validity(&self.data_dir, newest)?;
            disk.max_uid_validity = newest;
        }
        let mut first_error = None;
        for (name, snap) in snaps {
            if let Some(user) = disk.users.get_mut(&name)
                && let Err(e) = sync_user(user, snap)
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn read_uid_validity(data_dir: &Path) -> Result<u32, PersistError> {
    let path = data_dir.join(UIDVALIDITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| PersistError::Index {
            path,
            reason: "not a number".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(&path, e)),
    }
}

fn write_uid_validity(data_dir: &Path, value: u32) -> Result<(), PersistError> {
    let text = format!("{value}\n");
    write_atomic(
        data_dir,
        "mailtape-uidvalidity.tmp",
        UIDVALIDITY_FILE,
        text.as_bytes(),
    )
}

fn write_subscriptions(root: &Path, names: &BTreeSet<String>) -> Result<(), PersistError> {
    let mut text = String::new();
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    write_atomic(
        root,
        "mailtape-subscriptions.tmp",
        SUBSCRIPTIONS_FILE,
        text.as_bytes(),
    )
}

/// Brings one user's directory in line with the store: removed mailboxes first, then
/// renames, then new mailboxes, then each mailbox's messages and index, then subscriptions.
fn sync_user(user: &mut DiskUser, snap: UserSnap) -> Result<(), PersistError> {
    let root = user.root.clone();
    let live: BTreeSet<u64> = snap.mailboxes.iter().map(|m| m.id).collect();
    let mut root_changed = false;

    let gone: Vec<u64> = user
        .mailboxes
        .keys()
        .filter(|id| !live.contains(id))
        .copied()
        .collect();
    for id in gone {
        if let Some(mb) = user.mailboxes.remove(&id) {
            // INBOX is the Maildir root, which holds every other folder; the store never
            // drops INBOX, and this makes sure a mistake there cannot wipe the user.
            if mb.name == "INBOX" {
                tracing::error!(user = %root.display(), "INBOX vanished from the store");
                continue;
            }
            remove_if_present(&mailbox_dir(&root, &mb.name), true)?;
            root_changed = true;
        }
    }

    let renames: Vec<(u64, String)> = snap
        .mailboxes
        .iter()
        .filter(|m| user.mailboxes.get(&m.id).is_some_and(|d| d.name != m.name))
        .map(|m| (m.id, m.name.clone()))
        .collect();
    if !renames.is_empty() {
        let staging = root.with_file_name(RENAME_STAGING);
        std::fs::create_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
        for (id, _) in &renames {
            if let Some(d) = user.mailboxes.get(id) {
                let from = mailbox_dir(&root, &d.name);
                let to = staging.join(id.to_string());
                std::fs::rename(&from, &to).map_err(|e| io_err(&from, e))?;
            }
        }
        for (id, name) in &renames {
            let from = staging.join(id.to_string());
            let to = mailbox_dir(&root, name);
            std::fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
            if let Some(d) = user.mailboxes.get_mut(id) {
                d.name.clone_from(name);
            }
        }
        sync_dir(&staging)?;
        root_changed = true;
    }

    let mut fresh = BTreeSet::new();
    for m in &snap.mailboxes {
        if user.mailboxes.contains_key(&m.id) {
            continue;
        }
        ensure_maildir(&mailbox_dir(&root, &m.name))?;
        user.mailboxes.insert(
            m.id,
            DiskMailbox {
                name: m.name.clone(),
                selectable: m.selectable,
                uid_validity: m.uid_validity,
                uid_next: m.uid_next,
                messages: BTreeMap::new(),
            },
        );
        fresh.insert(m.id);
        root_changed = true;
    }
    if root_changed {
        sync_dir(&root)?;
    }

    for m in snap.mailboxes {
        if let Some(d) = user.mailboxes.get_mut(&m.id) {
            let is_fresh = fresh.contains(&m.id);
            sync_mailbox(&root, d, m, is_fresh)?;
        }
    }

    if user.subscriptions != snap.subscriptions {
        write_subscriptions(&root, &snap.subscriptions)?;
        user.subscriptions = snap.subscriptions;
    }
    Ok(())
}

/// Brings one mailbox directory in line: unlinks expunged messages, writes new ones, renames
/// files whose flags changed, fsyncs `cur/`, then rewrites the index if it changed.
fn sync_mailbox(
    root: &Path,
    disk: &mut DiskMailbox,
    snap: MailboxSnap,
    fresh: bool,
) -> Result<(), PersistError> {
    let dir = mailbox_dir(root, &snap.name);
    let cur = dir.join("cur");
    let mut index_dirty = fresh
        || disk.selectable != snap.selectable
        || disk.uid_validity != snap.uid_validity
        || disk.uid_next != snap.uid_next;
    let mut cur_changed = false;

    let live: BTreeSet<u32> = snap.messages.iter().map(|(uid, _, _)| *uid).collect();
    let expunged: Vec<u32> = disk
        .messages
        .keys()
        .filter(|uid| !live.contains(uid))
        .copied()
        .collect();
    for uid in expunged {
        if let Some(m) = disk.messages.remove(&uid) {
            remove_if_present(&cur.join(&m.file), false)?;
            cur_changed = true;
            index_dirty = true;
        }
    }

    for (uid, content, flags) in snap.messages {
        match disk.messages.get_mut(&uid) {
            None => {
                let written = write_message(&dir, &content, &flags)?;
                disk.messages.insert(uid, written);
                cur_changed = true;
                index_dirty = true;
            }
            Some(m) => {
                if letters_differ(&m.flags, &flags) {
                    let file = file_name(&m.base, &flags);
                    let from = cur.join(&m.file);
                    std::fs::rename(&from, cur.join(&file)).map_err(|e| io_err(&from, e))?;
                    m.file = file;
                    cur_changed = true;
                }
                // Keywords and the flag order live in the index.
                if m.flags != flags {
                    index_dirty = true;
                }
                m.flags = flags;
            }
        }
    }
    if cur_changed {
        sync_dir(&cur)?;
    }

    disk.selectable = snap.selectable;
    disk.uid_validity = snap.uid_validity;
    disk.uid_next = snap.uid_next;
    if index_dirty {
        disk.index().write(&dir)?;
    }
    Ok(())
}

/// Delivers one message the Maildir way: write to `tmp/` under a fresh name, fsync, rename
/// into `cur/` with the flag letters. The caller fsyncs `cur/`.
fn write_message(
    dir: &Path,
    content: &MessageContent,
    flags: &Flags,
) -> Result<DiskMessage, PersistError> {
    let base = layout::new_base(content.raw.len());
    let tmp = dir.join("tmp").join(&base);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    file.write_all(&content.raw).map_err(|e| io_err(&tmp, e))?;
    // The mtime mirrors INTERNALDATE for other tools; the index stays authoritative, so a
    // date the file system refuses is not an error.
    if let Err(e) = file.set_modified(std::time::SystemTime::from(content.internal_date)) {
        tracing::debug!(path = %tmp.display(), error = %e, "cannot set mtime");
    }
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(file);
    let name = file_name(&base, flags);
    let target = dir.join("cur").join(&name);
    std::fs::rename(&tmp, &target).map_err(|e| io_err(&target, e))?;
    Ok(DiskMessage {
        base,
        file: name,
        flags: flags.clone(),
        internal_date: content.internal_date,
    })
}
