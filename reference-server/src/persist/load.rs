//! Loading a user's Maildir++ into the store at start: every folder with its index, message
//! files from `cur/` and `new/`, and messages dropped in by other tools (no index entry),
//! which get fresh UIDs from UIDNEXT on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Utc};

use super::index::Index;
use super::layout::{self, file_name, folder_name, mailbox_dir, maildir_root, parse_file_name};
use super::{
    DiskMailbox, DiskMessage, DiskUser, PersistError, SUBSCRIPTIONS_FILE, ensure_maildir, io_err,
    sync_dir,
};
use crate::mailbox::{Flags, Mailbox, MessageContent, StoredMessage};
use crate::store::{SEPARATOR, StoreState, normalize_name};

/// A message file found in `cur/`.
struct Found {
    file: String,
    letters: Flags,
    mtime: SystemTime,
}

/// Loads `<data_dir>/<user>/Maildir` (creating it if missing) into `state`.
pub(super) fn load_user(
    data_dir: &Path,
    user: &str,
    state: &mut StoreState,
) -> Result<DiskUser, PersistError> {
    let root = maildir_root(data_dir, user);
    ensure_maildir(&root)?;
    let mut folders = vec![("INBOX".to_string(), root.clone())];
    let entries = std::fs::read_dir(&root).map_err(|e| io_err(&root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&root, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().and_then(folder_name) else {
            continue;
        };
        // INBOX lives in the root; a folder spelled like it elsewhere cannot be told apart.
        if normalize_name(&name) != name || name == "INBOX" {
            tracing::warn!(path = %path.display(), "folder name clashes with INBOX, skipped");
            continue;
        }
        folders.push((name, path));
    }

    let mut disk = DiskUser {
        root: root.clone(),
        mailboxes: BTreeMap::new(),
        subscriptions: read_subscriptions(&root)?,
    };
    let mut mailboxes = BTreeMap::new();
    for (name, dir) in &folders {
        let (mailbox, disk_mb) = load_mailbox(name, dir, state)?;
        disk.mailboxes.insert(mailbox.id, disk_mb);
        mailboxes.insert(name.clone(), mailbox);
    }
    // A folder whose superior has no directory (made by another tool, or by a crash between
    // directory operations): the superior exists as \Noselect, as DELETE would leave it.
    let implied: BTreeSet<String> = mailboxes
        .keys()
        .flat_map(|n| {
            n.match_indices(SEPARATOR)
                .map(|(i, _)| n[..i].to_string())
                .collect::<Vec<_>>()
        })
        .filter(|n| !mailboxes.contains_key(n))
        .collect();
    for name in implied {
        let dir = mailbox_dir(&root, &name);
        ensure_maildir(&dir)?;
        let mut mailbox = state.new_mailbox();
        mailbox.selectable = false;
        let disk_mb = DiskMailbox {
            name: name.clone(),
            selectable: false,
            uid_validity: mailbox.uid_validity,
            uid_next: mailbox.uid_next,
            messages: BTreeMap::new(),
        };
        disk_mb.index().write(&dir)?;
        disk.mailboxes.insert(mailbox.id, disk_mb);
        mailboxes.insert(name, mailbox);
    }
    if let Some(data) = state.user(user) {
        data.mailboxes = mailboxes;
        data.subscriptions = disk.subscriptions.clone();
    }
    Ok(disk)
}

fn read_subscriptions(root: &Path) -> Result<BTreeSet<String>, PersistError> {
    let path = root.join(SUBSCRIPTIONS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Lists the regular files of `dir` by name (names that are not UTF-8, and dot files, are
/// not messages this server can track).
fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PersistError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) if !name.starts_with('.') => out.push((name, path)),
            _ => tracing::warn!(path = %path.display(), "not a message file name, skipped"),
        }
    }
    out.sort();
    Ok(out)
}

/// Loads one mailbox directory: returns the store's mailbox and the matching disk picture,
/// and rewrites the index if the directory had changes the index did not know about.
fn load_mailbox(
    name: &str,
    dir: &Path,
    state: &mut StoreState,
) -> Result<(Mailbox, DiskMailbox), PersistError> {
    ensure_maildir(dir)?;
    let index = Index::read(dir)?;
    let mut mailbox = state.new_mailbox();
    let mut index_dirty = index.is_none();
    if let Some(ix) = &index {
        mailbox.uid_validity = ix.uid_validity;
        mailbox.uid_next = ix.uid_next.max(1);
        mailbox.selectable = ix.selectable;
        state.reserve_uid_validity(ix.uid_validity);
    }

    // Mail delivered by another tool into new/ moves to cur/ as seen-by-a-client, the way
    // every Maildir reader does it.
    let cur = dir.join("cur");
    let new_dir = dir.join("new");
    let arrivals = list_files(&new_dir)?;
    for (file, path) in &arrivals {
        let (base, letters) = parse_file_name(file);
        let target = cur.join(file_name(&base, &letters));
        std::fs::rename(path, &target).map_err(|e| io_err(path, e))?;
    }
    if !arrivals.is_empty() {
        sync_dir(&cur)?;
        sync_dir(&new_dir)?;
    }

    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for (file, path) in list_files(&cur)? {
        let (base, letters) = parse_file_name(&file);
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| io_err(&path, e))?;
        found.insert(
            base,
            Found {
                file,
                letters,
                mtime,
            },
        );
    }

    let mut disk = DiskMailbox {
        name: name.to_string(),
        selectable: mailbox.selectable,
        uid_validity: mailbox.uid_validity,
        uid_next: mailbox.uid_next,
        messages: BTreeMap::new(),
    };
    let entries = index.map(|ix| ix.entries).unwrap_or_default();
    for (uid, entry) in entries {
        let Some(f) = found.remove(&entry.base) else {
            // Expunged, and the crash came before the index was rewritten.
            index_dirty = true;
            continue;
        };
        // The index's order; for letter flags, the file name decides whether they are set.
        let mut flags: Flags = entry
            .flags
            .iter()
            .filter(|name| !layout::has_letter(name) || f.letters.contains(name))
            .collect();
        for l in f.letters.iter() {
            flags.insert(l);
        }
        let raw = read_message(&cur.join(&f.file))?;
        add(
            &mut mailbox,
            &mut disk,
            uid,
            entry.base,
            f.file,
            raw,
            entry.internal_date,
            flags,
            false,
        );
        mailbox.uid_next = mailbox.uid_next.max(uid.saturating_add(1));
    }

    // Files without an index entry: oldest first, fresh UIDs above everything known.
    let mut strangers: Vec<(String, Found)> = found.into_iter().collect();
    strangers.sort_by(|a, b| (a.1.mtime, &a.0).cmp(&(b.1.mtime, &b.0)));
    for (base, f) in strangers {
        if mailbox.uids_left() == 0 {
            tracing::warn!(mailbox = name, file = f.file, "no UIDs left, file skipped");
            continue;
        }
        let uid = mailbox.uid_next;
        mailbox.uid_next += 1;
        let raw = read_message(&cur.join(&f.file))?;
        let date = DateTime::<Utc>::from(f.mtime).fixed_offset();
        let flags = f.letters.clone();
        add(
            &mut mailbox,
            &mut disk,
            uid,
            base,
            f.file,
            raw,
            date,
            flags,
            true,
        );
        // Files prove the name is a real mailbox.
        mailbox.selectable = true;
        index_dirty = true;
    }
    disk.selectable = mailbox.selectable;
    disk.uid_next = mailbox.uid_next;
    if index_dirty {
        disk.index().write(dir)?;
    }
    Ok((mailbox, disk))
}

fn read_message(path: &Path) -> Result<Vec<u8>, PersistError> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// Puts one loaded message into both the store's mailbox and the disk picture.
#[allow(clippy::too_many_arguments)]
fn add(
    mailbox: &mut Mailbox,
    disk: &mut DiskMailbox,
    uid: u32,
    base: String,
    file: String,
    raw: Vec<u8>,
    internal_date: DateTime<FixedOffset>,
    flags: Flags,
    recent: bool,
) {
    let content = Arc::new(MessageContent { raw, internal_date });
    mailbox.messages.insert(
        uid,
        StoredMessage {
            uid,
            content,
            flags: flags.clone(),
            recent,
            recent_owner: None,
        },
    );
    disk.messages.insert(
        uid,
        DiskMessage {
            base,
            file,
            flags,
            internal_date,
        },
    );
}
