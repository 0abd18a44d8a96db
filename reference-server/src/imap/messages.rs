//! Selected-state commands other than FETCH: STORE, SEARCH, COPY, MOVE, EXPUNGE (and their
//! UID forms), CLOSE and UNSELECT.

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox as ImapMailbox;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;

use super::mailboxes::{mailbox_error, mailbox_name};
use super::search::search;
use super::session::{Reply, Session, State};
use super::status::{Kind, ReplyCode};
use crate::mailbox::Flags;
use crate::store::MailboxError;

fn flag_name(f: &Flag<'_>) -> Option<String> {
    let s = f.to_string();
    // \Recent is maintained by the server only (RFC 3501 2.3.2).
    (!s.eq_ignore_ascii_case("\\Recent")).then_some(s)
}

impl Session {
    pub(crate) fn execute_selected(&mut self, body: CommandBody<'_>) -> Reply {
        use CommandBody as C;
        match body {
            C::Close => self.close(true),
            C::Unselect => self.close(false),
            C::Expunge => self.expunge(None),
            C::ExpungeUid { sequence_set } => self.expunge(Some(&sequence_set)),
            C::Search {
                charset,
                criteria,
                uid,
            } => {
                let cs = charset.as_ref().map(|c| c.as_ref().to_ascii_uppercase());
                if cs
                    .as_deref()
                    .is_some_and(|c| c != "US-ASCII" && c != "UTF-8")
                {
                    return Reply::no("Unsupported charset")
                        .code(ReplyCode::BadCharset(vec!["US-ASCII", "UTF-8"]));
                }
                self.search(criteria.as_ref(), uid)
            }
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => self.store_flags(&sequence_set, &kind, &response, &flags, uid),
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid, false),
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid, true),
            other => Reply::bad(format!("{} is not supported", other.name())),
        }
    }

    fn close(&mut self, expunge: bool) -> Reply {
        if let State::Selected(sel) = &self.state
            && expunge
            && !sel.read_only
        {
            let id = sel.mailbox_id;
            if let Some(mb) = self.shared.store.lock().mailbox_by_id(&self.user, id) {
                mb.expunge(None);
            }
            let committed = self.commit();
            self.deselect();
            if let Err(refused) = committed {
                return refused;
            }
        }
        self.deselect();
        if expunge {
            Reply::ok("CLOSE completed")
        } else {
            Reply::ok("UNSELECT completed")
        }
    }

    fn expunge(&mut self, uids: Option<&SequenceSet>) -> Reply {
        let State::Selected(sel) = &self.state else {
            return Reply::bad("No mailbox selected");
        };
        if sel.read_only {
            return Reply::no("Mailbox is read-only").code(ReplyCode::ReadOnly);
        }
        let id = sel.mailbox_id;
        let mut st = self.shared.store.lock();
        let Some(mb) = st.mailbox_by_id(&self.user, id) else {
            return Reply::no("Mailbox no longer exists");
        };
        match uids {
            Some(set) => {
                let largest = mb.messages.keys().next_back().copied().unwrap_or(0);
                let filter = |uid: u32| super::select::in_set(set, uid, largest);
                mb.expunge(Some(&filter));
            }
            None => {
                mb.expunge(None);
            }
        }
        drop(st);
        if let Err(refused) = self.commit() {
            return refused;
        }
        Reply::ok("EXPUNGE completed")
    }

    fn search(&mut self, keys: &[SearchKey<'_>], uid: bool) -> Reply {
        let State::Selected(sel) = &self.state else {
            return Reply::bad("No mailbox selected");
        };
        let hits = search(sel, keys);
        let mut line = String::from("SEARCH");
        for i in hits {
            let n = if uid { sel.view[i].uid } else { i as u32 + 1 };
            line.push_str(&format!(" {n}"));
        }
        self.untagged(&line);
        Reply::ok("SEARCH completed")
    }

    fn store_flags(
        &mut self,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) -> Reply {
        let names: Vec<String> = flags.iter().filter_map(flag_name).collect();
        let user = self.user.clone();
        let State::Selected(sel) = &mut self.state else {
            return Reply::bad("No mailbox selected");
        };
        if sel.read_only {
            return Reply::no("Mailbox is read-only").code(ReplyCode::ReadOnly);
        }
        let indexes = match sel.resolve(set, uid) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let mut st = self.shared.store.lock();
        let Some(mb) = st.mailbox_by_id(&user, sel.mailbox_id) else {
            return Reply::no("Mailbox no longer exists");
        };
        let mut lines = Vec::new();
        for i in indexes {
            let entry_uid = sel.view[i].uid;
            // A message expunged by another session stays in this view until reported.
            let Some(m) = mb.messages.get_mut(&entry_uid) else {
                continue;
            };
            match kind {
                StoreType::Replace => m.flags = names.iter().collect::<Flags>(),
                StoreType::Add => {
                    for n in &names {
                        m.flags.insert(n);
                    }
                }
                StoreType::Remove => {
                    for n in &names {
                        m.flags.remove(n);
                    }
                }
            }
            sel.view[i].flags = m.flags.clone();
            if matches!(response, StoreResponse::Answer) {
                let uid_part = if uid {
                    format!(" UID {entry_uid}")
                } else {
                    String::new()
                };
                lines.push(format!(
                    "* {} FETCH (FLAGS {}{uid_part})\r\n",
                    i + 1,
                    sel.fetch_flags(i)
                ));
            }
        }
        drop(st);
        for l in lines {
            self.out.extend_from_slice(l.as_bytes());
        }
        if let Err(refused) = self.commit() {
            return refused;
        }
        Reply::ok("STORE completed")
    }

    fn copy(
        &mut self,
        set: &SequenceSet,
        mailbox: &ImapMailbox<'_>,
        uid: bool,
        is_move: bool,
    ) -> Reply {
        let what = if is_move { "MOVE" } else { "COPY" };
        let name = match mailbox_name(mailbox) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let user = self.user.clone();
        let State::Selected(sel) = &mut self.state else {
            return Reply::bad("No mailbox selected");
        };
        if is_move && sel.read_only {
            return Reply::no("Mailbox is read-only").code(ReplyCode::ReadOnly);
        }
        let indexes = match sel.resolve(set, uid) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let mut st = self.shared.store.lock();
        let dst = match st.mailbox_mut(&user, &name) {
            Ok(mb) => mb,
            Err(MailboxError::NonExistent) => {
                return Reply::no("Mailbox does not exist").code(ReplyCode::TryCreate);
            }
            Err(e) => return mailbox_error(e),
        };
        let validity = dst.uid_validity;
        if (dst.uids_left() as usize) < indexes.len() {
            return mailbox_error(MailboxError::UidsExhausted);
        }
        let mut src_uids = Vec::new();
        let mut dst_uids = Vec::new();
        for &i in &indexes {
            let e = &sel.view[i];
            // Cannot fail: the UID space was checked above.
            if let Some(uid) = dst.add(std::sync::Arc::clone(&e.content), e.flags.clone()) {
                dst_uids.push(uid);
            }
            src_uids.push(e.uid);
        }
        if is_move && let Some(src) = st.mailbox_by_id(&user, sel.mailbox_id) {
            for u in &src_uids {
                src.messages.remove(u);
            }
        }
        drop(st);
        if let Err(refused) = super::mailboxes::commit(&self.shared.store) {
            return refused;
        }
        if src_uids.is_empty() {
            return Reply::ok(format!("{what} completed, nothing matched"));
        }
        let code = ReplyCode::CopyUid {
            validity,
            source: src_uids,
            destination: dst_uids,
        };
        if !is_move {
            return Reply::ok("COPY completed").code(code);
        }
        let mut lines = String::new();
        let mut recent_changed = false;
        for &i in indexes.iter().rev() {
            let uid = sel.view[i].uid;
            sel.view.remove(i);
            recent_changed |= sel.recent.remove(&uid);
            lines.push_str(&format!("* {} EXPUNGE\r\n", i + 1));
        }
        // RFC 3501 7.3.2: the size changed, and with it the count of \Recent messages.
        if recent_changed {
            lines.push_str(&format!("* {} RECENT\r\n", sel.recent.len()));
        }
        // RFC 6851 3.3: COPYUID goes in an untagged OK before the EXPUNGEs.
        self.status_response(Kind::Ok, Some(code), "Moved");
        self.out.extend_from_slice(lines.as_bytes());
        Reply::ok("MOVE completed")
    }
}
