//! The selected mailbox's message numbers and UIDs: EXISTS/EXPUNGE/VANISHED bookkeeping,
//! the sequence number -> UID map, UIDVALIDITY and UIDNEXT, and the facts each FETCH proves.
//! Rules: `imap.exists.consistent`, `imap.expunge.*`, `imap.uid.*`, `imap.uidvalidity.*`,
//! `imap.literal.size`.

use std::collections::BTreeSet;

use imap_types::fetch::MessageDataItem;
use imap_types::response::Code;
use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_types::status::StatusDataItem;

use super::client::Kind;
use super::flags::{self, FetchSeen};
use super::model::{MailboxKey, RangeSet, TargetModel};
use super::rules;
use super::session::{Pending, Session};
use crate::checks::Violation;

/// The numbers a sequence set names, `*` being `largest`.
pub fn seq_ranges(set: &SequenceSet, largest: u32) -> RangeSet {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    };
    let mut out = RangeSet::default();
    for seq in set.0.as_ref() {
        match seq {
            Sequence::Single(v) => out.insert(value(v), value(v)),
            Sequence::Range(a, b) => out.insert(value(a), value(b)),
        }
    }
    out
}

/// A UIDVALIDITY seen for `key` by a command sent at `sent_at`.
#[allow(clippy::too_many_arguments)]
pub fn observe_uidvalidity(
    model: &mut TargetModel,
    session: &str,
    key: &MailboxKey,
    v: u32,
    sent_at: u64,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let mb = model.mailbox(key);
    if let Some((old, at)) = mb.uidvalidity
        && at < sent_at
        && old != v
    {
        let rule = if v < old {
            rules::UIDVALIDITY_DECREASE
        } else {
            rules::UIDVALIDITY_STABLE
        };
        out.push(rule.violation(
            session,
            format!(
                "UIDVALIDITY of {} changed from {old} to {v} with no DELETE or RENAME seen",
                key.1
            ),
            raw,
        ));
    }
    mb.uidvalidity = Some((v, now));
}

/// A UIDNEXT seen for `key` under UIDVALIDITY `v` by a command sent at `sent_at`.
#[allow(clippy::too_many_arguments)]
pub fn observe_uidnext(
    model: &mut TargetModel,
    session: &str,
    key: &MailboxKey,
    v: u32,
    n: u32,
    sent_at: u64,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let space = model.mailbox(key).space(v);
    if let Some(max) = space.max_before(sent_at).filter(|max| n <= *max) {
        out.push(rules::UID_BELOW_UIDNEXT.violation(
            session,
            format!(
                "UIDNEXT {n} of {} is not above UID {max} already assigned",
                key.1
            ),
            raw,
        ));
    } else if let Some(prev) = space.uidnext_before(sent_at).filter(|prev| n < *prev) {
        out.push(rules::UID_BELOW_UIDNEXT.violation(
            session,
            format!("UIDNEXT of {} went down from {prev} to {n}", key.1),
            raw,
        ));
    }
    space.uidnext = Some((n, now));
}

/// An untagged OK's response code while a mailbox is being selected.
pub fn on_select_code(s: &mut Session, code: &Code<'_>) {
    let Some(sel) = s.selection.as_mut().filter(|sel| sel.opening) else {
        return;
    };
    match code {
        Code::UidValidity(v) => sel.uidvalidity = Some(v.get()),
        Code::UidNext(n) => {
            sel.uidnext = Some(n.get());
            sel.uidnext_covers_exists = sel.exists.is_some();
        }
        Code::PermanentFlags(list) => {
            let mut names = BTreeSet::new();
            let mut wildcard = false;
            for f in list {
                match f {
                    imap_types::flag::FlagPerm::Flag(f) => {
                        names.insert(flags::flag_name(f));
                    }
                    imap_types::flag::FlagPerm::Asterisk => wildcard = true,
                }
            }
            sel.permanent = Some((names, wildcard));
        }
        Code::ReadOnly => sel.read_only = true,
        _ => {}
    }
}

/// SELECT or EXAMINE completed.
pub fn select_completed(
    model: &mut TargetModel,
    s: &mut Session,
    p: &Pending,
    code: Option<&Code<'_>>,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let Some(sel) = s.selection.as_mut() else {
        return;
    };
    sel.opening = false;
    match code {
        Some(Code::ReadOnly) => sel.read_only = true,
        Some(Code::ReadWrite) => sel.read_only = false,
        _ => {}
    }
    sel.old_count = if sel.uidnext_covers_exists {
        sel.exists
    } else {
        None
    };
    if sel.tainted {
        return;
    }
    let key = sel.key.clone();
    let (v, next) = (sel.uidvalidity, sel.uidnext);
    if let Some(v) = v {
        observe_uidvalidity(model, &s.name, &key, v, p.sent_at, now, raw, out);
        if let Some(n) = next {
            observe_uidnext(model, &s.name, &key, v, n, p.sent_at, now, raw, out);
        }
    }
}

/// Larger mailboxes are not modelled (a hostile EXISTS must not exhaust memory).
const MAX_MODELLED_MESSAGES: u32 = 1_000_000;

/// `* n EXISTS`.
pub fn on_exists(s: &mut Session, n: u32, raw: &[u8], out: &mut Vec<Violation>) {
    let name = s.name.clone();
    let Some(sel) = s.selection.as_mut().filter(|sel| !sel.tainted) else {
        return;
    };
    if n > MAX_MODELLED_MESSAGES {
        sel.tainted = true;
        sel.uids = Vec::new();
        return;
    }
    match sel.exists {
        Some(old) if !sel.opening && n < old => {
            out.push(rules::EXISTS_CONSISTENT.violation(
                &name,
                format!("EXISTS went down from {old} to {n} without EXPUNGE"),
                raw,
            ));
            // Which messages went is unknown: start over.
            sel.uids = vec![None; n as usize];
            sel.old_count = sel.old_count.map(|c| c.min(n));
        }
        _ => {
            if sel.opening {
                // Messages counted after UIDNEXT was computed may lie above it.
                sel.uidnext_covers_exists = false;
            }
            sel.uids.resize(n as usize, None)
        }
    }
    sel.exists = Some(n);
}

/// `* n EXPUNGE`.
pub fn on_expunge(
    model: &mut TargetModel,
    s: &mut Session,
    n: u32,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    if s.pending.is_empty() {
        out.push(rules::EXPUNGE_NO_COMMAND.violation(
            &s.name,
            format!("EXPUNGE {n} with no command in progress"),
            raw,
        ));
    } else if s.pending.iter().all(|p| {
        matches!(
            p.cmd.kind,
            Kind::Fetch { uid: false, .. } | Kind::Search { uid: false }
        ) || matches!(p.cmd.kind, Kind::Store { uid: false, .. })
    }) {
        let names: Vec<&str> = s.pending.iter().map(|p| p.cmd.name.as_str()).collect();
        out.push(rules::EXPUNGE_DURING_FETCH.violation(
            &s.name,
            format!("EXPUNGE {n} while only {} in progress", names.join(", ")),
            raw,
        ));
    }
    let name = s.name.clone();
    let Some(sel) = s
        .selection
        .as_mut()
        .filter(|sel| sel.usable() && !sel.opening)
    else {
        return;
    };
    let exists = sel.exists.unwrap_or(0);
    if n == 0 || n > exists {
        out.push(rules::EXPUNGE_RANGE.violation(
            &name,
            format!("EXPUNGE {n} but only {exists} messages exist"),
            raw,
        ));
        return;
    }
    let idx = (n - 1) as usize;
    let uid = if idx < sel.uids.len() {
        sel.uids.remove(idx)
    } else {
        None
    };
    sel.exists = Some(exists - 1);
    if let Some(c) = sel.old_count.as_mut()
        && n <= *c
    {
        *c -= 1;
    }
    if let (Some(uid), Some(v)) = (uid, sel.uidvalidity) {
        model.mailbox(&sel.key).space(v).expunge(uid);
    }
}

/// `* VANISHED [(EARLIER)] uid-set` (RFC 7162 3.2.10).
pub fn on_vanished(model: &mut TargetModel, s: &mut Session, earlier: bool, set: &SequenceSet) {
    let Some(sel) = s
        .selection
        .as_mut()
        .filter(|sel| sel.usable() && !sel.opening)
    else {
        return;
    };
    let gone = seq_ranges(set, u32::MAX);
    if let Some(v) = sel.uidvalidity {
        let space = model.mailbox(&sel.key).space(v);
        for seq in set.0.as_ref() {
            let (a, b) = match seq {
                Sequence::Single(x) => (x.to_non_zero_u32().get(), x.to_non_zero_u32().get()),
                Sequence::Range(x, y) => (x.to_non_zero_u32().get(), y.to_non_zero_u32().get()),
            };
            space.expunged.insert(a, b);
        }
        for uid in sel.uids.iter().flatten().filter(|u| gone.contains(**u)) {
            space.messages.remove(uid);
        }
    }
    if earlier {
        return;
    }
    if sel.uids.iter().all(|u| u.is_some()) {
        let before = sel.uids.len();
        sel.uids.retain(|u| u.is_some_and(|u| !gone.contains(u)));
        let removed = (before - sel.uids.len()) as u32;
        sel.exists = sel.exists.map(|e| e.saturating_sub(removed));
        // Which of the old messages went is not tracked here: forget the boundary.
        sel.old_count = None;
    } else {
        // Cannot tell which sequence numbers went: the view is lost.
        sel.tainted = true;
    }
}

/// `* n FETCH (...)`.
pub fn on_fetch(
    model: &mut TargetModel,
    s: &mut Session,
    seq: u32,
    items: &[MessageDataItem<'_>],
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let name = s.name.clone();
    let Some(sel) = s
        .selection
        .as_mut()
        .filter(|sel| sel.usable() && !sel.opening)
    else {
        return;
    };
    let exists = sel.exists.unwrap_or(0);
    if seq > exists {
        out.push(rules::EXISTS_CONSISTENT.violation(
            &name,
            format!("FETCH for message {seq} but EXISTS announced only {exists}"),
            raw,
        ));
        return;
    }
    let idx = (seq - 1) as usize;
    let mut uid = sel.uid_of(seq);
    if let Some(u) = items.iter().find_map(|i| match i {
        MessageDataItem::Uid(u) => Some(u.get()),
        _ => None,
    }) {
        if let Some(old) = uid.filter(|old| *old != u) {
            out.push(rules::UID_STABLE.violation(
                &name,
                format!("message {seq} had UID {old}, now UID {u}"),
                raw,
            ));
        }
        if let Some((lseq, lower)) = (0..idx)
            .rev()
            .find_map(|i| sel.uids.get(i).copied().flatten().map(|x| (i + 1, x)))
            && lower >= u
        {
            out.push(rules::UID_ASCENDING.violation(
                &name,
                format!("message {seq} has UID {u} but message {lseq} has UID {lower}"),
                raw,
            ));
        }
        if let Some((hseq, higher)) = (idx + 1..sel.uids.len())
            .find_map(|i| sel.uids.get(i).copied().flatten().map(|x| (i + 1, x)))
            && higher <= u
        {
            out.push(rules::UID_ASCENDING.violation(
                &name,
                format!("message {seq} has UID {u} but message {hseq} has UID {higher}"),
                raw,
            ));
        }
        if let (Some(next), Some(old)) = (sel.uidnext, sel.old_count)
            && seq <= old
            && u >= next
        {
            out.push(rules::UID_BELOW_UIDNEXT.violation(
                &name,
                format!("message {seq} was present at selection (UIDNEXT {next}) but has UID {u}"),
                raw,
            ));
        }
        if let Some(slot) = sel.uids.get_mut(idx) {
            *slot = Some(u);
        }
        if let Some(v) = sel.uidvalidity {
            let space = model.mailbox(&sel.key).space(v);
            if space.expunged.contains(u) {
                out.push(rules::UID_REUSED.violation(
                    &name,
                    format!(
                        "UID {u} of {} (UIDVALIDITY {v}) was expunged earlier",
                        sel.key.1
                    ),
                    raw,
                ));
            }
            space.saw_uid(u, now);
        }
        uid = Some(u);
    }
    let (Some(uid), Some(v)) = (uid, sel.uidvalidity) else {
        return;
    };
    let key = sel.key.clone();
    let mut flags_seen = None;
    let mut body = None;
    let mut size = None;
    for item in items {
        match item {
            MessageDataItem::Flags(f) => {
                flags_seen = Some(f.iter().map(flags::fetch_flag_name).collect())
            }
            MessageDataItem::Rfc822Size(n) => size = Some(*n),
            MessageDataItem::Rfc822(data)
            | MessageDataItem::BodyExt {
                section: None,
                origin: None,
                data,
            } => {
                body = Some(data.0.as_ref().map_or(0, |d| d.as_ref().len()));
            }
            _ => {}
        }
    }
    let facts = model
        .mailbox(&key)
        .space(v)
        .messages
        .entry(uid)
        .or_default();
    if let Some(n) = size {
        facts.size = Some(n);
    }
    if let Some(len) = body {
        facts.body_len = Some(len);
    }
    if let (Some(n), Some(len)) = (facts.size, facts.body_len)
        && (size.is_some() || body.is_some())
        && n as usize != len
    {
        out.push(rules::LITERAL_SIZE.violation(
            &name,
            format!("UID {uid}: RFC822.SIZE {n} but the whole message is {len} octets"),
            raw,
        ));
    }
    let seen = FetchSeen {
        key: &key,
        uidvalidity: v,
        uid,
        flags: flags_seen,
        body: body.is_some(),
    };
    flags::on_fetch(model, s, &seen, now, raw, out);
}

/// `* STATUS mailbox (...)`.
#[allow(clippy::too_many_arguments)]
pub fn on_status(
    model: &mut TargetModel,
    s: &Session,
    mailbox: &str,
    items: &[StatusDataItem],
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let key = s.key(mailbox);
    let sent_at = s
        .pending
        .iter()
        .find(|p| matches!(&p.cmd.kind, Kind::Status { mailbox: m } if s.key(m) == key))
        .map_or(now, |p| p.sent_at);
    let mut v = None;
    let mut next = None;
    for item in items {
        match item {
            StatusDataItem::UidValidity(x) => v = Some(x.get()),
            StatusDataItem::UidNext(x) => next = Some(x.get()),
            _ => {}
        }
    }
    if let Some(v) = v {
        observe_uidvalidity(model, &s.name, &key, v, sent_at, now, raw, out);
    }
    let v = v.or_else(|| {
        model
            .mailbox(&key)
            .uidvalidity
            .filter(|(_, at)| *at < sent_at)
            .map(|(v, _)| v)
    });
    if let (Some(v), Some(n)) = (v, next) {
        observe_uidnext(model, &s.name, &key, v, n, sent_at, now, raw, out);
    }
}
