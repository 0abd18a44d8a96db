//! FETCH (RFC 3501 6.4.5, 7.4.2): data items, macros, BODY[section]<partial> and the implicit
//! \Seen of a non-PEEK body fetch.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use imap_codec::imap_types::sequence::SequenceSet;

use super::mime;
use super::response::{date_time, literal};
use super::session::{End, Reply, Session, State};

/// Pending FETCH output after which it is written to the client before the next message.
const FETCH_FLUSH: usize = 256 * 1024;

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

impl Session {
    /// Runs FETCH, writing out the responses every [`FETCH_FLUSH`] octets so that fetching
    /// many large messages never collects them all in memory.
    pub(crate) async fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Result<Reply, End> {
        let (items, indexes) = match self.fetch_plan(set, items, uid) {
            Ok(plan) => plan,
            Err(reply) => return Ok(reply),
        };
        let mut changed = false;
        for i in indexes {
            changed |= self.fetch_one(&items, i);
            if self.out.len() >= FETCH_FLUSH {
                self.flush().await?;
            }
        }
        if changed && let Err(refused) = self.commit() {
            return Ok(refused);
        }
        Ok(Reply::ok("FETCH completed"))
    }

    /// The item list (macros expanded, UID added for UID FETCH) and the view indexes.
    fn fetch_plan(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Result<(Vec<MessageDataItemName<'static>>, Vec<usize>), Reply> {
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
            return Err(Reply::bad("BINARY and CONDSTORE items are not offered"));
        }
        if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let State::Selected(sel) = &self.state else {
            return Err(Reply::bad("No mailbox selected"));
        };
        let indexes = sel.resolve(set, uid).map_err(Reply::bad)?;
        Ok((items, indexes))
    }

    /// Writes the FETCH response for view entry `i`; returns whether it set \Seen.
    fn fetch_one(&mut self, items: &[MessageDataItemName<'static>], i: usize) -> bool {
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
            return false;
        };
        let mut changed = false;
        {
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
            for item in items {
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
        changed
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
