//! The per-mailbox index `mailtape-uidlist`: what Maildir file names cannot hold (UIDs,
//! UIDVALIDITY, UIDNEXT, keywords, flag order, INTERNALDATE,
//! \Noselect). Written whole to a temporary
//! file, fsync'd, renamed over the old one.
//!
//! # Format
//! ```text
//! mailtape-uidlist 1
//! uidvalidity <u32>
//! uidnext <u32>
//! selectable yes|no
//! <uid> <internaldate RFC 3339> <base file name> [<flag> ...]
//! ```
//!
//! The flag list repeats the system flags so that their order survives a restart; for
//! those, the letters in the file name win (another tool may have changed them).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, FixedOffset};

use super::{PersistError, io_err};

/// File name of the index inside a mailbox directory.
pub const INDEX_FILE: &str = "mailtape-uidlist";

/// Temporary name the next index is written under before the rename.
const INDEX_TMP: &str = "mailtape-uidlist.tmp";

/// First line; the number changes if the format ever does.
const MAGIC: &str = "mailtape-uidlist 1";

/// One message line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub base: String,
    pub internal_date: DateTime<FixedOffset>,
    /// All flags in the order the client set them (system flags and keywords).
    pub flags: Vec<String>,
}

/// The whole index of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub selectable: bool,
    pub entries: BTreeMap<u32, IndexEntry>,
}

impl Index {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{MAGIC}\nuidvalidity {}\nuidnext {}\nselectable {}\n",
            self.uid_validity,
            self.uid_next,
            if self.selectable { "yes" } else { "no" }
        );
        for (uid, e) in &self.entries {
            out.push_str(&format!(
                "{uid} {} {}",
                e.internal_date.to_rfc3339(),
                e.base
            ));
            for k in &e.flags {
                out.push(' ');
                out.push_str(k);
            }
            out.push('\n');
        }
        out
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, MAGIC)) => {}
            _ => return Err(format!("first line is not `{MAGIC}`")),
        }
        let mut index = Index {
            uid_validity: 0,
            uid_next: 1,
            selectable: true,
            entries: BTreeMap::new(),
        };
        for (n, line) in lines {
            let bad = |what: &str| format!("line {}: {what}", n + 1);
            let mut words = line.split(' ');
            let first = words.next().unwrap_or_default();
            match first {
                "" => continue,
                "uidvalidity" | "uidnext" => {
                    let value = words
                        .next()
                        .and_then(|v| v.parse::<u32>().ok())
                        .ok_or_else(|| bad("expected a number"))?;
                    if first == "uidvalidity" {
                        index.uid_validity = value;
                    } else {
                        index.uid_next = value;
                    }
                }
                "selectable" => index.selectable = words.next() != Some("no"),
                uid => {
                    let uid: u32 = uid.parse().map_err(|_| bad("unknown line"))?;
                    let date = words.next().ok_or_else(|| bad("missing date"))?;
                    let internal_date =
                        DateTime::parse_from_rfc3339(date).map_err(|e| bad(&e.to_string()))?;
                    let base = words.next().ok_or_else(|| bad("missing file name"))?;
                    index.entries.insert(
                        uid,
                        IndexEntry {
                            base: base.to_string(),
                            internal_date,
                            flags: words.filter(|w| !w.is_empty()).map(String::from).collect(),
                        },
                    );
                }
            }
        }
        if index.uid_validity == 0 {
            return Err("missing uidvalidity".into());
        }
        Ok(index)
    }

    /// Reads the index of the mailbox in `dir`; `Ok(None)` if there is none yet.
    pub fn read(dir: &Path) -> Result<Option<Self>, PersistError> {
        let path = dir.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|reason| PersistError::Index { path, reason })
    }

    /// Replaces the index of the mailbox in `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> Result<(), PersistError> {
        write_atomic(dir, INDEX_TMP, INDEX_FILE, self.render().as_bytes())
    }
}

/// Writes `bytes` to `dir/tmp_name`, fsyncs it, renames it to `dir/name` and fsyncs `dir`, so
/// that after a crash either the old or the new file is there, whole.
pub fn write_atomic(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), PersistError> {
    let tmp = dir.join(tmp_name);
    let mut file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(file);
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    super::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips() {
        let date = DateTime::parse_from_rfc3339("2024-02-29T23:59:58+05:30").unwrap();
        let mut entries = BTreeMap::new();
        entries.insert(
            3,
            IndexEntry {
                base: "1.M2P3Q4.mailtape,S=9".into(),
                internal_date: date,
                flags: vec!["$Label1".into(), "\\Seen".into(), "Junk".into()],
            },
        );
        entries.insert(
            7,
            IndexEntry {
                base: "b".into(),
                internal_date: date,
                flags: vec![],
            },
        );
        let index = Index {
            uid_validity: 42,
            uid_next: 8,
            selectable: false,
            entries,
        };
        let text = index.render();
        assert!(
            text.contains(
                "\n3 2024-02-29T23:59:58+05:30 1.M2P3Q4.mailtape,S=9 $Label1 \\Seen Junk\n"
            )
        );
        assert_eq!(Index::parse(&text), Ok(index));
    }

    #[test]
    fn broken_indexes_are_reported() {
        assert!(Index::parse("something else\n").is_err());
        assert!(Index::parse("mailtape-uidlist 1\nuidnext 3\n").is_err());
        let bad_date = "mailtape-uidlist 1\nuidvalidity 1\n1 yesterday f\n";
        assert!(Index::parse(bad_date).unwrap_err().contains("line 3"));
        let bad_line = "mailtape-uidlist 1\nuidvalidity 1\nbogus\n";
        assert!(Index::parse(bad_line).is_err());
    }
}
