//! Authenticated-state commands on mailboxes: SELECT/EXAMINE, CREATE, DELETE, RENAME,
//! SUBSCRIBE/UNSUBSCRIBE, LIST/LSUB (with `*` and `%`), STATUS, APPEND, plus the small
//! informational commands (CAPABILITY, NAMESPACE, ID, ENABLE).

use std::collections::BTreeSet;
use std::sync::Arc;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as ImapMailbox};
use imap_codec::imap_types::status::StatusDataItemName;

use super::response::string;
use super::select::{Selected, flags_response};
use super::session::{Reply, Session, State};
use super::status::{Kind, ReplyCode};
use crate::mailbox::{Flags, MessageContent, SYSTEM_FLAGS};
use crate::store::{MailboxError, SEPARATOR, normalize_name};

/// The name a client gave, as the store spells it.
pub fn mailbox_name(mb: &ImapMailbox<'_>) -> Result<String, Reply> {
    match mb {
        ImapMailbox::Inbox => Ok("INBOX".to_string()),
        ImapMailbox::Other(other) => std::str::from_utf8(other.as_ref())
            .map(normalize_name)
            .map_err(|_| {
                Reply::no("Mailbox name is not valid UTF-7/ASCII")
                    .code(ReplyCode::Rfc5530("CANNOT"))
            }),
    }
}

/// The tagged NO for a store error, with its RFC 5530 response code.
pub fn mailbox_error(e: MailboxError) -> Reply {
    let code = match e {
        MailboxError::NonExistent => "NONEXISTENT",
        MailboxError::AlreadyExists => "ALREADYEXISTS",
        MailboxError::Inbox | MailboxError::BadName | MailboxError::NoSelect => "CANNOT",
        MailboxError::HasChildren => "INUSE",
        MailboxError::UidsExhausted => "LIMIT",
        MailboxError::Unavailable => "UNAVAILABLE",
    };
    Reply::no(e.to_string()).code(ReplyCode::Rfc5530(code))
}

/// RFC 3501 6.3.8 wildcard match: `*` matches anything, `%` anything but the separator.
/// Dynamic programming over (pattern, name) positions, so a pattern full of wildcards costs
/// O(pattern x name) rather than exponential backtracking.
pub fn wildcard(pattern: &[char], name: &[char]) -> bool {
    // reach[j]: the pattern prefix seen so far can match name[..j].
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            '*' | '%' => {
                // Extend any reachable position over zero or more allowed characters.
                let mut open = false;
                for j in 0..=name.len() {
                    if reach[j] {
                        open = true;
                    } else if p == '%' && j > 0 && name[j - 1] == SEPARATOR {
                        open = false;
                    }
                    next[j] = open;
                }
            }
            c => {
                for j in 0..name.len() {
                    if reach[j] && name[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[name.len()]
}

/// Matches with INBOX case-insensitive at the first level.
fn list_match(pattern: &str, name: &str) -> bool {
    let pattern = normalize_pattern(pattern);
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    wildcard(&p, &n)
}

fn normalize_pattern(pattern: &str) -> String {
    let head: String = pattern.chars().take(5).collect();
    let next = pattern.chars().nth(5);
    if head.eq_ignore_ascii_case("INBOX")
        && next.is_none_or(|c| c == SEPARATOR || c == '*' || c == '%')
    {
        format!("INBOX{}", &pattern[head.len()..])
    } else {
        pattern.to_string()
    }
}

fn list_pattern(mb: &ListMailbox<'_>) -> String {
    let bytes: &[u8] = match mb {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    };
    String::from_utf8_lossy(bytes).into_owned()
}

fn reference_name(mb: &ImapMailbox<'_>) -> String {
    match mb {
        ImapMailbox::Inbox => "INBOX".to_string(),
        ImapMailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

impl Session {
    fn list_line(&mut self, kind: &str, attrs: &[&str], name: &str) {
        let mut line = format!("* {kind} ({}) \"{SEPARATOR}\" ", attrs.join(" ")).into_bytes();
        string(&mut line, name.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&line);
    }

    pub(crate) fn select(&mut self, mailbox: &ImapMailbox<'_>, read_only: bool) -> Reply {
        // A failed SELECT still leaves the previous mailbox deselected (RFC 3501 6.3.1).
        self.deselect();
        let name = match mailbox_name(mailbox) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let mut st = self.shared.store.lock();
        let mb = match st.mailbox_mut(&self.user, &name) {
            Ok(mb) => mb,
            Err(e) => return mailbox_error(e),
        };
        let sel = Selected::open(mb, self.id, read_only);
        let uid_next = mb.uid_next;
        drop(st);
        let first_unseen = sel.view.iter().position(|e| !e.flags.contains("\\Seen"));
        self.untagged(&format!("FLAGS {}", flags_response(&sel.keywords)));
        if read_only {
            self.status_response(
                Kind::Ok,
                Some(ReplyCode::PermanentFlags(Vec::new())),
                "No permanent flags permitted",
            );
        } else {
            let perm = SYSTEM_FLAGS
                .iter()
                .map(|f| f.to_string())
                .chain(sel.keywords.iter().cloned())
                .chain(["\\*".to_string()])
                .collect();
            self.status_response(
                Kind::Ok,
                Some(ReplyCode::PermanentFlags(perm)),
                "Flags permitted",
            );
        }
        self.untagged(&format!("{} EXISTS", sel.exists()));
        self.untagged(&format!("{} RECENT", sel.recent.len()));
        if let Some(i) = first_unseen {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            self.status_response(Kind::Ok, Some(ReplyCode::Unseen(n)), "First unseen message");
        }
        self.status_response(
            Kind::Ok,
            Some(ReplyCode::UidValidity(sel.uid_validity)),
            "UIDs valid",
        );
        self.status_response(
            Kind::Ok,
            Some(ReplyCode::UidNext(uid_next)),
            "Predicted next UID",
        );
        self.state = State::Selected(sel);
        if read_only {
            Reply::ok("EXAMINE completed").code(ReplyCode::ReadOnly)
        } else {
            Reply::ok("SELECT completed").code(ReplyCode::ReadWrite)
        }
    }

    /// Runs a command that needs no I/O of its own.
    pub(crate) fn execute(&mut self, body: CommandBody<'_>) -> Reply {
        use CommandBody as C;
        let result = match body {
            C::Capability => {
                let caps = self.capabilities().join(" ");
                self.untagged(&format!("CAPABILITY {caps}"));
                Ok(Reply::ok("CAPABILITY completed"))
            }
            C::Noop => Ok(Reply::ok("NOOP completed")),
            C::Check => Ok(Reply::ok("CHECK completed")),
            C::Login { username, password } => {
                let pass = password.declassify().as_ref().to_vec();
                Ok(self.login(username.as_ref(), &pass, "LOGIN"))
            }
            C::Id { .. } => {
                self.untagged(&format!(
                    "ID (\"name\" \"mailtape-reference-server\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                Ok(Reply::ok("ID completed"))
            }
            C::Namespace => {
                self.untagged(&format!("NAMESPACE ((\"\" \"{SEPARATOR}\")) NIL NIL"));
                Ok(Reply::ok("NAMESPACE completed"))
            }
            C::Enable { .. } => {
                // Nothing this server implements can be enabled (RFC 5161 3.1).
                self.untagged("ENABLED");
                Ok(Reply::ok("ENABLE completed"))
            }
            C::Select { mailbox, .. } => Ok(self.select(&mailbox, false)),
            C::Examine { mailbox, .. } => Ok(self.select(&mailbox, true)),
            C::Create { mailbox } => self.create(&mailbox),
            C::Delete { mailbox } => self.delete(&mailbox),
            C::Rename { from, to } => self.rename(&from, &to),
            C::Subscribe { mailbox } => self
                .subscribe(&mailbox, true)
                .and_then(|ok| self.commit().map(|()| ok)),
            C::Unsubscribe { mailbox } => self
                .subscribe(&mailbox, false)
                .and_then(|ok| self.commit().map(|()| ok)),
            C::List {
                reference,
                mailbox_wildcard,
            } => Ok(self.list(&reference, &mailbox_wildcard, false)),
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => Ok(self.list(&reference, &mailbox_wildcard, true)),
            C::Status {
                mailbox,
                item_names,
            } => self.status(&mailbox, &item_names),
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&mailbox, &flags, date.as_ref(), &message),
            body => Ok(self.execute_selected(body)),
        };
        result.unwrap_or_else(|r| r)
    }

    fn create(&mut self, mailbox: &ImapMailbox<'_>) -> Result<Reply, Reply> {
        let name = mailbox_name(mailbox)?;
        if name == "INBOX" {
            return Err(mailbox_error(MailboxError::AlreadyExists));
        }
        self.shared
            .store
            .lock()
            .create(&self.user, &name)
            .map_err(mailbox_error)?;
        self.commit()?;
        Ok(Reply::ok("CREATE completed"))
    }

    fn delete(&mut self, mailbox: &ImapMailbox<'_>) -> Result<Reply, Reply> {
        let name = mailbox_name(mailbox)?;
        self.shared
            .store
            .lock()
            .delete(&self.user, &name)
            .map_err(mailbox_error)?;
        self.commit()?;
        Ok(Reply::ok("DELETE completed"))
    }

    fn rename(&mut self, from: &ImapMailbox<'_>, to: &ImapMailbox<'_>) -> Result<Reply, Reply> {
        let from = mailbox_name(from)?;
        let to = mailbox_name(to)?;
        if to == "INBOX" {
            return Err(mailbox_error(MailboxError::AlreadyExists));
        }
        self.shared
            .store
            .lock()
            .rename(&self.user, &from, &to)
            .map_err(mailbox_error)?;
        self.commit()?;
        Ok(Reply::ok("RENAME completed"))
    }

    fn subscribe(&mut self, mailbox: &ImapMailbox<'_>, on: bool) -> Result<Reply, Reply> {
        let name = mailbox_name(mailbox)?;
        let mut st = self.shared.store.lock();
        let user = st
            .user(&self.user)
            .ok_or_else(|| Reply::no("No such user"))?;
        if on {
            // RFC 3501 6.3.6 lets a server refuse names that do not exist; this one does.
            if !user.mailboxes.contains_key(&name) {
                return Err(mailbox_error(MailboxError::NonExistent));
            }
            user.subscriptions.insert(name);
            Ok(Reply::ok("SUBSCRIBE completed"))
        } else if user.subscriptions.remove(&name) {
            Ok(Reply::ok("UNSUBSCRIBE completed"))
        } else {
            Err(Reply::no("Not subscribed to that name").code(ReplyCode::Rfc5530("NONEXISTENT")))
        }
    }

    fn list(
        &mut self,
        reference: &ImapMailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Reply {
        let kind = if lsub { "LSUB" } else { "LIST" };
        let reference = reference_name(reference);
        let pattern = list_pattern(pattern);
        if pattern.is_empty() {
            if !lsub {
                // The separator and the root of the reference (RFC 3501 6.3.8).
                let root = match reference.find(SEPARATOR) {
                    Some(i) => reference[..=i].to_string(),
                    None => String::new(),
                };
                self.list_line(kind, &["\\Noselect"], &root);
            }
            return Reply::ok(format!("{kind} completed"));
        }
        let full = format!("{reference}{pattern}");
        let st = self.shared.store.lock();
        let Some(user) = st.users.get(&self.user) else {
            return Reply::no("No such user");
        };
        let mut lines: Vec<(Vec<&str>, String)> = Vec::new();
        if lsub {
            let mut seen = BTreeSet::new();
            for name in &user.subscriptions {
                if list_match(&full, name) && seen.insert(name.clone()) {
                    lines.push((Vec::new(), name.clone()));
                }
            }
            // With `%`, a superior of a subscribed name matches as \Noselect (RFC 3501 6.3.9).
            if full.contains('%') {
                for name in &user.subscriptions {
                    for (i, _) in name.match_indices(SEPARATOR) {
                        let sup = &name[..i];
                        if list_match(&full, sup)
                            && !user.subscriptions.contains(sup)
                            && seen.insert(sup.to_string())
                        {
                            lines.push((vec!["\\Noselect"], sup.to_string()));
                        }
                    }
                }
            }
        } else {
            for (name, mb) in &user.mailboxes {
                if list_match(&full, name) {
                    let attrs = if mb.selectable {
                        Vec::new()
                    } else {
                        vec!["\\Noselect"]
                    };
                    lines.push((attrs, name.clone()));
                }
            }
        }
        drop(st);
        for (attrs, name) in lines {
            self.list_line(kind, &attrs, &name);
        }
        Reply::ok(format!("{kind} completed"))
    }

    fn status(
        &mut self,
        mailbox: &ImapMailbox<'_>,
        items: &[StatusDataItemName],
    ) -> Result<Reply, Reply> {
        let name = mailbox_name(mailbox)?;
        let mut st = self.shared.store.lock();
        let mb = st.mailbox_mut(&self.user, &name).map_err(mailbox_error)?;
        let mut parts = Vec::new();
        for item in items {
            match item {
                StatusDataItemName::Messages => {
                    parts.push(format!("MESSAGES {}", mb.messages.len()))
                }
                StatusDataItemName::Recent => parts.push(format!("RECENT {}", mb.recent())),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", mb.uid_next)),
                StatusDataItemName::UidValidity => {
                    parts.push(format!("UIDVALIDITY {}", mb.uid_validity))
                }
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", mb.unseen())),
                other => return Err(Reply::bad(format!("Unsupported STATUS item {other:?}"))),
            }
        }
        drop(st);
        let mut line = b"* STATUS ".to_vec();
        string(&mut line, name.as_bytes());
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        Ok(Reply::ok("STATUS completed"))
    }

    fn append(
        &mut self,
        mailbox: &ImapMailbox<'_>,
        flags: &[imap_codec::imap_types::flag::Flag<'_>],
        date: Option<&imap_codec::imap_types::datetime::DateTime>,
        message: &LiteralOrLiteral8<'_>,
    ) -> Result<Reply, Reply> {
        let name = mailbox_name(mailbox)?;
        let LiteralOrLiteral8::Literal(literal) = message else {
            return Err(Reply::no("literal8 needs BINARY, which is not offered"));
        };
        // \Recent is the server's to set (RFC 3501 2.3.2); a client's is ignored.
        let flags: Flags = flags
            .iter()
            .map(|f| f.to_string())
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .collect();
        let internal_date = match date {
            Some(d) => *d.as_ref(),
            None => chrono::Local::now().fixed_offset(),
        };
        let content = Arc::new(MessageContent {
            raw: literal.as_ref().to_vec(),
            internal_date,
        });
        let result = self
            .shared
            .store
            .lock()
            .append(&self.user, &name, content, flags);
        let (validity, uid) = result.map_err(|e| match e {
            MailboxError::NonExistent => {
                Reply::no("Mailbox does not exist").code(ReplyCode::TryCreate)
            }
            e => mailbox_error(e),
        })?;
        self.commit()?;
        Ok(Reply::ok("APPEND completed").code(ReplyCode::AppendUid { validity, uid }))
    }
}

impl Session {
    /// Makes the change just applied durable (`Config::data_dir`) and wakes the other
    /// sessions. A failed write refuses the acknowledgement: the client must not take the
    /// change as saved.
    pub(crate) fn commit(&self) -> Result<(), Reply> {
        commit(&self.shared.store)
    }
}

/// [`Session::commit`] for callers that hold a borrow of the session state.
pub(crate) fn commit(store: &crate::store::Store) -> Result<(), Reply> {
    store.commit().map_err(|e| {
        tracing::error!(error = %e, "cannot write a change to the data directory");
        Reply::no("The change could not be saved to disk").code(ReplyCode::Rfc5530("UNAVAILABLE"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_rfc3501() {
        assert!(list_match("*", "a/b/c"));
        assert!(list_match("%", "a"));
        assert!(!list_match("%", "a/b"));
        assert!(list_match("a/%", "a/b"));
        assert!(!list_match("a/%", "a/b/c"));
        assert!(list_match("a/*", "a/b/c"));
        assert!(list_match("inbox", "INBOX"));
        assert!(list_match("Inbox/%", "INBOX/x"));
        assert!(!list_match("inboxes", "INBOX"));
        assert!(list_match("%b%", "abc"));
        assert!(!list_match("%", "a/"));
        assert!(list_match("a%/%", "ab/c"));
        assert!(!list_match("a", "ab"));
        assert!(list_match("", ""));
        // A pathological pattern finishes quickly.
        let stars = "*a".repeat(40) + "b";
        assert!(!list_match(&stars, &"a".repeat(60)));
    }
}
