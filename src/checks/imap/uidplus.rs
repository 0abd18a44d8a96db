//! UIDPLUS (RFC 4315) response codes: APPENDUID and COPYUID must agree with the model of the
//! destination mailbox (its UIDVALIDITY, fresh UIDs) and COPYUID with the copied messages.

use imap_types::extensions::uidplus::{UidElement, UidSet};

use super::client::Kind;
use super::mailbox::seq_ranges;
use super::model::{MailboxKey, RangeSet, TargetModel};
use super::rules::{self, Rule};
use super::session::{Pending, Session};
use crate::checks::Violation;

fn bounds(e: &UidElement) -> (u32, u32) {
    match e {
        UidElement::Single(x) => (x.get(), x.get()),
        UidElement::Range(a, b) => (a.get().min(b.get()), a.get().max(b.get())),
    }
}

fn count(set: &UidSet) -> u64 {
    set.0
        .as_ref()
        .iter()
        .map(bounds)
        .map(|(a, b)| u64::from(b - a) + 1)
        .sum()
}

/// New UIDs `uids` in `key` under `v`, assigned by a command sent at `sent_at`.
#[allow(clippy::too_many_arguments)]
fn check_fresh(
    model: &mut TargetModel,
    rule: Rule,
    session: &str,
    key: &MailboxKey,
    v: u32,
    uids: &[(u32, u32)],
    sent_at: u64,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let mb = model.mailbox(key);
    if let Some((known, at)) = mb.uidvalidity
        && at < sent_at
        && known != v
    {
        out.push(rule.violation(
            session,
            format!("UIDVALIDITY {v} but {} has UIDVALIDITY {known}", key.1),
            raw,
        ));
        return;
    }
    if mb.uidvalidity.is_none() {
        mb.uidvalidity = Some((v, now));
    }
    let space = mb.space(v);
    let Some(low) = uids.iter().map(|(a, _)| *a).min() else {
        return;
    };
    let high = uids.iter().map(|(_, b)| *b).max().unwrap_or(low);
    for &(a, b) in uids {
        if let Some(u) = space.expunged.first_in(a, b) {
            out.push(rules::UID_REUSED.violation(
                session,
                format!("new UID {u} in {} was expunged earlier", key.1),
                raw,
            ));
        }
    }
    if let Some(max) = space.max_before(sent_at).filter(|max| low <= *max) {
        out.push(rule.violation(
            session,
            format!(
                "new UID {low} in {} is not above UID {max} already assigned",
                key.1
            ),
            raw,
        ));
    } else if let Some(next) = space.uidnext_before(sent_at).filter(|next| low < *next) {
        out.push(rule.violation(
            session,
            format!("new UID {low} in {} is below UIDNEXT {next}", key.1),
            raw,
        ));
    }
    space.saw_uid(high, now);
}

/// `OK [APPENDUID v uid]` for an APPEND.
#[allow(clippy::too_many_arguments)]
pub fn appenduid(
    model: &mut TargetModel,
    s: &Session,
    p: &Pending,
    v: u32,
    uid: u32,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let Kind::Append { mailbox } = &p.cmd.kind else {
        return;
    };
    let key = s.key(mailbox);
    check_fresh(
        model,
        rules::UIDPLUS_APPENDUID,
        &s.name,
        &key,
        v,
        &[(uid, uid)],
        p.sent_at,
        now,
        raw,
        out,
    );
}

/// `[COPYUID v src dst]` for a COPY or MOVE.
#[allow(clippy::too_many_arguments)]
pub fn copyuid(
    model: &mut TargetModel,
    s: &Session,
    p: &Pending,
    v: u32,
    src: &UidSet,
    dst: &UidSet,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let Kind::Copy {
        uid, set, mailbox, ..
    } = &p.cmd.kind
    else {
        return;
    };
    let rule = rules::UIDPLUS_COPYUID;
    let (ns, nd) = (count(src), count(dst));
    if ns != nd {
        out.push(rule.violation(
            &s.name,
            format!("COPYUID source set has {ns} UIDs, destination {nd}"),
            raw,
        ));
    }
    // Which UIDs were asked for, when the session can tell.
    let requested: Option<RangeSet> =
        s.selection
            .as_ref()
            .filter(|sel| !sel.tainted)
            .and_then(|sel| {
                if *uid {
                    Some(seq_ranges(set, u32::MAX))
                } else {
                    let exists = sel.exists?;
                    let seqs = seq_ranges(set, exists);
                    let mut uids = RangeSet::default();
                    for seq in (1..=exists).filter(|q| seqs.contains(*q)) {
                        let u = sel.uid_of(seq)?;
                        uids.insert(u, u);
                    }
                    Some(uids)
                }
            });
    if let Some(req) = requested {
        for (a, b) in src.0.as_ref().iter().map(bounds) {
            let outside = if b - a > 100_000 {
                !req.contains(a) || !req.contains(b)
            } else {
                (a..=b).any(|u| !req.contains(u))
            };
            if outside {
                out.push(rule.violation(
                    &s.name,
                    format!(
                        "COPYUID source UIDs {a}:{b} include messages the command did not name"
                    ),
                    raw,
                ));
                break;
            }
        }
    }
    let key = s.key(mailbox);
    let dst: Vec<(u32, u32)> = dst.0.as_ref().iter().map(bounds).collect();
    check_fresh(
        model, rule, &s.name, &key, v, &dst, p.sent_at, now, raw, out,
    );
}
