//! Names on disk: mailbox name <-> Maildir++ folder directory, flags <-> the `:2,` info
//! letters of a message file name, and fresh unique message base names.
//!
//! A user's INBOX is `<data>/<user>/Maildir/` itself; every other mailbox is a sibling folder
//! `<data>/<user>/Maildir/.<level>.<level>...` (Maildir++): the IMAP separator `/` becomes `.`,
//! and `.`, `/`, `%`, control characters and a leading `~` inside a level are written as
//! `%xx` (lowercase hex of the UTF-8 bytes), the form Dovecot's listescape plugin reads with
//! `listescape_char = "%%"`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::mailbox::Flags;
use crate::store::SEPARATOR;

/// The Maildir++ folder separator on disk.
const FOLDER_SEPARATOR: char = '.';

/// The marker between a message's unique base name and its flag letters (Maildir "info").
const INFO_MARKER: &str = ":2,";

/// Maildir flag letters and the IMAP system flags they stand for, in the ASCII order the
/// Maildir specification requires inside a file name.
const LETTERS: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// Host part of generated file names. A constant rather than the machine name: it only has
/// to keep names apart from other delivery agents, and must never contain `/` or `:`.
const HOST: &str = "mailtape";

/// The user's Maildir root (also INBOX).
pub fn maildir_root(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join(user).join("Maildir")
}

/// A user name must be usable as one directory name.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && !user.starts_with('.')
        && !user.contains(['/', '\\', '\0'])
        && user.len() <= 200
}

/// The directory of mailbox `name` below the Maildir root.
pub fn mailbox_dir(root: &Path, name: &str) -> PathBuf {
    if name == "INBOX" {
        return root.to_path_buf();
    }
    let mut folder = String::new();
    for level in name.split(SEPARATOR) {
        folder.push(FOLDER_SEPARATOR);
        for (i, c) in level.chars().enumerate() {
            // A leading `~` could be taken for a home directory by other tools.
            if c == FOLDER_SEPARATOR
                || c == '/'
                || c == '%'
                || c.is_control()
                || (i == 0 && c == '~')
            {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    folder.push_str(&format!("%{b:02x}"));
                }
            } else {
                folder.push(c);
            }
        }
    }
    root.join(folder)
}

/// The mailbox name of a folder directory name (`.a.b` -> `a/b`); `None` if it is not a
/// Maildir++ folder or not valid escaped UTF-8.
pub fn folder_name(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix(FOLDER_SEPARATOR)?;
    if rest.is_empty() || rest == "." {
        return None;
    }
    let mut levels = Vec::new();
    for level in rest.split(FOLDER_SEPARATOR) {
        if level.is_empty() {
            return None;
        }
        levels.push(unescape(level)?);
    }
    Some(levels.join(&SEPARATOR.to_string()))
}

fn unescape(level: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(level.len());
    let raw = level.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = level.get(i + 1..i + 3)?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The file name in `cur/` for a message with this base name and flags.
pub fn file_name(base: &str, flags: &Flags) -> String {
    let mut name = format!("{base}{INFO_MARKER}");
    for (letter, flag) in LETTERS {
        if flags.contains(flag) {
            name.push(letter);
        }
    }
    name
}

/// Splits a file name from `cur/` or `new/` into its base name and the system flags of its
/// info letters. Letters this server does not know (such as Dovecot's keyword letters) are
/// ignored.
pub fn parse_file_name(file: &str) -> (String, Flags) {
    let Some((base, info)) = file.split_once(':') else {
        return (file.to_string(), Flags::default());
    };
    let mut flags = Flags::default();
    if let Some(letters) = info.strip_prefix("2,") {
        for c in letters.chars() {
            if let Some((_, flag)) = LETTERS.iter().find(|(l, _)| *l == c) {
                flags.insert(flag);
            }
        }
    }
    (base.to_string(), flags)
}

/// Whether the system-flag part of two flag sets differs (that is what the file name holds).
pub fn letters_differ(a: &Flags, b: &Flags) -> bool {
    LETTERS
        .iter()
        .any(|(_, flag)| a.contains(flag) != b.contains(flag))
}

/// Whether a flag is one the file name carries as a letter.
pub fn has_letter(flag: &str) -> bool {
    LETTERS.iter().any(|(_, f)| f.eq_ignore_ascii_case(flag))
}

/// A fresh unique base name: `<secs>.M<micros>P<pid>Q<n>.<host>,S=<size>`, the usual Maildir
/// shape (the counter keeps names apart within one microsecond, the pid across processes).
pub fn new_base(size: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = chrono::Utc::now();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{n}.{HOST},S={size}",
        now.timestamp(),
        now.timestamp_subsec_micros(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_round_trip_with_escapes() {
        let root = Path::new("/m");
        assert_eq!(mailbox_dir(root, "INBOX"), PathBuf::from("/m"));
        assert_eq!(mailbox_dir(root, "a/b"), PathBuf::from("/m/.a.b"));
        assert_eq!(
            mailbox_dir(root, "v1.2%/x"),
            PathBuf::from("/m/.v1%2e2%25.x")
        );
        assert_eq!(mailbox_dir(root, "~a/b~"), PathBuf::from("/m/.%7ea.b~"));
        for name in [
            "a/b",
            "v1.2%/x",
            "Entwürfe",
            "INBOX/sub",
            "tab\there",
            "~x/~y",
        ] {
            let dir = mailbox_dir(root, name);
            let file = dir.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            assert_eq!(folder_name(file).as_deref(), Some(name), "{name}");
        }
        for bad in ["a", ".", "..", ".a..b", ".%4", ".%zz", ".%FF"] {
            assert_eq!(folder_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn flag_letters_are_sorted_and_round_trip() {
        let flags: Flags = ["\\Seen", "\\Deleted", "\\Draft", "$Label", "\\Answered"]
            .into_iter()
            .collect();
        let name = file_name("123.M1P2Q3.h", &flags);
        assert_eq!(name, "123.M1P2Q3.h:2,DRST");
        let (base, back) = parse_file_name(&name);
        assert_eq!(base, "123.M1P2Q3.h");
        assert!(back.contains("\\Seen") && back.contains("\\Draft"));
        assert!(!back.contains("\\Flagged") && !back.contains("$Label"));
        assert!(!letters_differ(&flags, &back));
        assert!(has_letter("\\seen") && !has_letter("$Label") && !has_letter("\\Recent"));
        // Unknown letters and the experimental ":1," form are ignored.
        let (base, f) = parse_file_name("x:2,Sab");
        assert_eq!((base.as_str(), f.iter().count()), ("x", 1));
        assert_eq!(parse_file_name("y:1,S").1.iter().count(), 0);
    }

    #[test]
    fn new_bases_are_unique() {
        let a = new_base(10);
        let b = new_base(10);
        assert_ne!(a, b);
        assert!(!a.contains(['/', ':']), "{a}");
        assert!(a.ends_with(",S=10"));
    }

    #[test]
    fn user_names_must_be_single_directories() {
        assert!(valid_user("alice"));
        for bad in ["", ".", "..", "a/b", ".hidden"] {
            assert!(!valid_user(bad), "{bad}");
        }
    }
}
