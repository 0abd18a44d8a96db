//! Selected-state commands: FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE (and UID forms),
//! CLOSE and UNSELECT.

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox as ImapMailbox;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;

use super::mailboxes::{mailbox_error, mailbox_name};
use super::mime;
use super::response::{date_time, literal};
use super::search::search;
use super::session::{Reply, Session, State};
use super::status::{Kind, ReplyCode};
use crate::mailbox::Flags;
use crate::store::MailboxError;

fn part_name(p: &imap_codec::imap_types::fetch::Part) -> String {
    p.0.as_ref()
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn field_names(names: &[AString<'_>]) -> String {
    let mut out = Vec::new();
    for n in names {
        let s = String::from_utf8_lossy(n.as_ref()).into_owned();
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()\"\\{}%*[]".contains(&b))
        {
            out.push(s);
        } else {
            out.push(format!(
                "\"{}\"",
                s.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    out.join(" ")
}

/// The section spec as it is echoed in the response (RFC 3501 7.4.2 BODY[section]).
fn section_name(section: Option<&Section<'_>>) -> String {
    let with = |p: &Option<imap_codec::imap_types::fetch::Part>, what: &str| match p {
        Some(p) => format!("{}.{what}", part_name(p)),
        None => what.to_string(),
    };
    match section {
        None => String::new(),
        Some(Section::Part(p)) => part_name(p),
        Some(Section::Header(p)) => with(p, "HEADER"),
        Some(Section::Text(p)) => with(p, "TEXT"),
        Some(Section::Mime(p)) => format!("{}.MIME", part_name(p)),
        Some(Section::HeaderFields(p, names)) => with(
            p,
            &format!("HEADER.FIELDS ({})", field_names(names.as_ref())),
        ),
        Some(Section::HeaderFieldsNot(p, names)) => with(
            p,
            &format!("HEADER.FIELDS.NOT ({})", field_names(names.as_ref())),
        ),
    }
}

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
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => self.fetch(&sequence_set, macro_or_item_names, uid),
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
            self.shared.store.notify();
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
        self.shared.store.notify();
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

    fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) -> Reply {
        let mut items = match items {
            MacroOrMessageDataItemNames::Macro(m) => m
                .expand()
                .into_iter()
                .map(|i| i.into_static_item())
                .collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Binary { .. }
                    | MessageDataItemName::BinarySize { .. }
                    | MessageDataItemName::ModSeq
            )
        }) {
            return Reply::bad("BINARY and CONDSTORE items are not offered");
        }
        if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let sets_seen = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        });
        let user = self.user.clone();
        let State::Selected(sel) = &mut self.state else {
            return Reply::bad("No mailbox selected");
        };
        let indexes = match sel.resolve(set, uid) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let mut changed = false;
        for i in indexes {
            let mut add_flags = false;
            if sets_seen && !sel.read_only && !sel.view[i].flags.contains("\\Seen") {
                let entry_uid = sel.view[i].uid;
                if let Some(m) = self
                    .shared
                    .store
                    .lock()
                    .mailbox_by_id(&user, sel.mailbox_id)
                    .and_then(|mb| mb.messages.get_mut(&entry_uid))
                {
                    m.flags.insert("\\Seen");
                }
                sel.view[i].flags.insert("\\Seen");
                changed = true;
                add_flags = !items
                    .iter()
                    .any(|it| matches!(it, MessageDataItemName::Flags));
            }
            let entry = &sel.view[i];
            let raw = &entry.content.raw;
            let needs_parse = items.iter().any(|it| {
                matches!(
                    it,
                    MessageDataItemName::Envelope
                        | MessageDataItemName::Body
                        | MessageDataItemName::BodyStructure
                        | MessageDataItemName::Rfc822Header
                        | MessageDataItemName::Rfc822Text
                        | MessageDataItemName::BodyExt {
                            section: Some(_),
                            ..
                        }
                )
            });
            let parsed = if needs_parse { mime::parse(raw) } else { None };
            let tree = parsed.as_ref().map(|m| mime::tree(m, raw.len()));
            let fallback = mime::Node {
                part: None,
                header: 0..0,
                body: 0..raw.len(),
                kind: mime::Kind::Leaf,
            };
            let root = tree.as_ref().unwrap_or(&fallback);
            let mut out = format!("* {} FETCH (", i + 1).into_bytes();
            let mut first = true;
            let mut sep = |out: &mut Vec<u8>| {
                if !first {
                    out.push(b' ');
                }
                first = false;
            };
            for item in &items {
                sep(&mut out);
                match item {
                    MessageDataItemName::Uid => {
                        out.extend_from_slice(format!("UID {}", entry.uid).as_bytes())
                    }
                    MessageDataItemName::Flags => {
                        out.extend_from_slice(format!("FLAGS {}", sel.fetch_flags(i)).as_bytes())
                    }
                    MessageDataItemName::InternalDate => out.extend_from_slice(
                        format!("INTERNALDATE {}", date_time(&entry.content.internal_date))
                            .as_bytes(),
                    ),
                    MessageDataItemName::Rfc822Size => {
                        out.extend_from_slice(format!("RFC822.SIZE {}", raw.len()).as_bytes())
                    }
                    MessageDataItemName::Envelope => {
                        out.extend_from_slice(b"ENVELOPE ");
                        mime::envelope(&mut out, raw, root.part);
                    }
                    MessageDataItemName::Body => {
                        out.extend_from_slice(b"BODY ");
                        mime::body_structure(&mut out, raw, root, false);
                    }
                    MessageDataItemName::BodyStructure => {
                        out.extend_from_slice(b"BODYSTRUCTURE ");
                        mime::body_structure(&mut out, raw, root, true);
                    }
                    MessageDataItemName::Rfc822 => {
                        out.extend_from_slice(b"RFC822 ");
                        literal(&mut out, raw);
                    }
                    MessageDataItemName::Rfc822Header => {
                        out.extend_from_slice(b"RFC822.HEADER ");
                        literal(&mut out, &raw[root.header.clone()]);
                    }
                    MessageDataItemName::Rfc822Text => {
                        out.extend_from_slice(b"RFC822.TEXT ");
                        literal(&mut out, &raw[root.body.clone()]);
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        let data = mime::section_bytes(raw, root, section.as_ref());
                        out.extend_from_slice(
                            format!("BODY[{}]", section_name(section.as_ref())).as_bytes(),
                        );
                        let data = match partial {
                            Some((origin, count)) => {
                                out.extend_from_slice(format!("<{origin}>").as_bytes());
                                let start = (*origin as usize).min(data.len());
                                let end =
                                    start.saturating_add(count.get() as usize).min(data.len());
                                data[start..end].to_vec()
                            }
                            None => data,
                        };
                        out.push(b' ');
                        literal(&mut out, &data);
                    }
                    MessageDataItemName::Binary { .. }
                    | MessageDataItemName::BinarySize { .. }
                    | MessageDataItemName::ModSeq => {}
                }
            }
            if add_flags {
                sep(&mut out);
                out.extend_from_slice(format!("FLAGS {}", sel.fetch_flags(i)).as_bytes());
            }
            out.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&out);
        }
        if changed {
            self.shared.store.notify();
        }
        Reply::ok("FETCH completed")
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
        self.shared.store.notify();
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
        let mut src_uids = Vec::new();
        let mut dst_uids = Vec::new();
        for &i in &indexes {
            let e = &sel.view[i];
            dst_uids.push(dst.add(std::sync::Arc::clone(&e.content), e.flags.clone()));
            src_uids.push(e.uid);
        }
        if is_move && let Some(src) = st.mailbox_by_id(&user, sel.mailbox_id) {
            for u in &src_uids {
                src.messages.remove(u);
            }
        }
        drop(st);
        self.shared.store.notify();
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
        for &i in indexes.iter().rev() {
            let uid = sel.view[i].uid;
            sel.view.remove(i);
            sel.recent.remove(&uid);
            lines.push_str(&format!("* {} EXPUNGE\r\n", i + 1));
        }
        // RFC 6851 3.3: COPYUID goes in an untagged OK before the EXPUNGEs.
        self.status_response(Kind::Ok, Some(code), "Moved");
        self.out.extend_from_slice(lines.as_bytes());
        Reply::ok("MOVE completed")
    }
}

trait IntoStaticItem {
    fn into_static_item(self) -> MessageDataItemName<'static>;
}

impl IntoStaticItem for MessageDataItemName<'_> {
    fn into_static_item(self) -> MessageDataItemName<'static> {
        use imap_codec::imap_types::IntoStatic;
        self.into_static()
    }
}
