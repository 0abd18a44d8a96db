//! Flag checks: flags stored by one command are seen by later commands and sessions
//! (`imap.flags.persist`), and \Recent goes to a single read-write session
//! (`imap.recent.single-session`). Knowledge is only compared with a FETCH that was sent after
//! it was learnt and while no other command could be changing flags in that mailbox.

use std::collections::BTreeSet;

use imap_types::flag::{Flag, FlagFetch, StoreType};

use super::model::{KnownFlags, MailboxKey, TargetModel};
use super::rules;
use super::session::{Pending, Selection, Session};
use crate::checks::Violation;
use crate::checks::imap::client::Kind;

pub const RECENT: &str = "\\recent";
pub const SEEN: &str = "\\seen";

/// A flag's canonical (lower-case) name.
pub fn flag_name(flag: &Flag<'_>) -> String {
    flag.to_string().to_ascii_lowercase()
}

pub fn fetch_flag_name(flag: &FlagFetch<'_>) -> String {
    match flag {
        FlagFetch::Recent => RECENT.to_string(),
        FlagFetch::Flag(f) => flag_name(f),
    }
}

type Permanent = Option<(BTreeSet<String>, bool)>;

fn non_permanent(permanent: &Permanent, flags: &BTreeSet<String>) -> BTreeSet<String> {
    flags
        .iter()
        .filter(|f| !Selection::permanent_in(permanent, f))
        .cloned()
        .collect()
}

/// What one FETCH response said about a message whose UID is known.
pub struct FetchSeen<'a> {
    pub key: &'a MailboxKey,
    pub uidvalidity: u32,
    pub uid: u32,
    /// FLAGS, \Recent included.
    pub flags: Option<BTreeSet<String>>,
    /// A body section came back (may set \Seen).
    pub body: bool,
}

/// Check and record the flags of one FETCH response.
pub fn on_fetch(
    model: &mut TargetModel,
    s: &mut Session,
    seen: &FetchSeen<'_>,
    now: u64,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    let Some(sel) = s.selection.as_ref() else {
        return;
    };
    let (rw_known, read_only, permanent) = (!sel.opening, sel.read_only, sel.permanent.clone());
    let mb = model.mailbox(seen.key);
    let changes_elsewhere = mb.changes_elsewhere(s.id);
    let last_change = mb.last_flag_change;
    let facts = mb
        .space(seen.uidvalidity)
        .messages
        .entry(seen.uid)
        .or_default();

    if let Some(flags) = &seen.flags {
        if flags.contains(RECENT) {
            match facts.recent_in {
                Some(other) if other != s.id => out.push(rules::RECENT_SINGLE_SESSION.violation(
                    &s.name,
                    format!(
                        "UID {} in {} is \\Recent here but another read-write session already saw it \\Recent",
                        seen.uid, seen.key.1
                    ),
                    raw,
                )),
                Some(_) => {}
                None if rw_known && !read_only => facts.recent_in = Some(s.id),
                None => {}
            }
        }
        let actual: BTreeSet<String> = flags.iter().filter(|f| *f != RECENT).cloned().collect();
        if let Some(store) = s
            .pending
            .iter_mut()
            .find(|p| matches!(p.cmd.kind, Kind::Store { .. }))
        {
            // The store's own report: the new state.
            store.flags_reported.insert(seen.uid);
            facts.flags = Some(KnownFlags::observed(
                &actual,
                non_permanent(&permanent, &actual),
                now,
            ));
        } else if let Some(fetch) = s
            .pending
            .iter()
            .find(|p| matches!(p.cmd.kind, Kind::Fetch { .. }))
        {
            let mut unsure = BTreeSet::new();
            if matches!(fetch.cmd.kind, Kind::Fetch { body: true, .. }) {
                unsure.insert(SEEN.to_string());
            }
            let clean = changes_elsewhere == 0 && last_change < fetch.sent_at;
            if clean && let Some(known) = facts.flags.as_ref().filter(|k| k.stamp < fetch.sent_at) {
                let (missing, extra) = known.compare(&actual, &unsure);
                if !missing.is_empty() || !extra.is_empty() {
                    out.push(rules::FLAGS_PERSIST.violation(
                        &s.name,
                        format!(
                            "UID {} in {} (UIDVALIDITY {}): flags {}{}",
                            seen.uid,
                            seen.key.1,
                            seen.uidvalidity,
                            if missing.is_empty() {
                                String::new()
                            } else {
                                format!("lost {}", missing.join(" "))
                            },
                            if extra.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "{}reappeared/appeared {}",
                                    if missing.is_empty() { "" } else { "; " },
                                    extra.join(" ")
                                )
                            },
                        ),
                        raw,
                    ));
                }
            }
            facts.flags = if clean {
                let mut uncertain = non_permanent(&permanent, &actual);
                uncertain.extend(unsure);
                Some(KnownFlags::observed(&actual, uncertain, now))
            } else {
                None
            };
        } else if facts.flags.as_ref().is_some_and(|k| {
            let (m, e) = k.compare(&actual, &BTreeSet::new());
            !m.is_empty() || !e.is_empty()
        }) {
            // A unilateral update may be older than what we know: forget rather than guess.
            facts.flags = None;
        }
    }
    if seen.body && seen.flags.is_none() {
        let fetch_sets_seen = s
            .pending
            .iter()
            .any(|p| matches!(p.cmd.kind, Kind::Fetch { body: true, .. }));
        if fetch_sets_seen && let Some(known) = facts.flags.as_mut() {
            if rw_known && !read_only {
                known.definite.insert(SEEN.to_string(), true);
                known.uncertain.remove(SEEN);
            } else if !rw_known {
                known.uncertain.insert(SEEN.to_string());
            }
            known.stamp = now;
        }
    }
}

/// Resolve a STORE's targets to UIDs, or `None` when the session cannot tell which messages.
fn store_targets(sel: &Selection, p: &Pending) -> Option<Vec<u32>> {
    let Kind::Store { uid, set, .. } = &p.cmd.kind else {
        return None;
    };
    let exists = sel.exists?;
    let mut out = Vec::new();
    if *uid {
        let largest = sel.uids.iter().flatten().max().copied()?;
        let requested = super::mailbox::seq_ranges(set, largest);
        for u in &sel.uids {
            let u = (*u)?;
            if requested.contains(u) {
                out.push(u);
            }
        }
    } else {
        let requested = super::mailbox::seq_ranges(set, exists);
        for seq in 1..=exists {
            if requested.contains(seq) {
                out.push(sel.uid_of(seq)?);
            }
        }
    }
    Some(out)
}

/// A STORE completed: apply it to messages it did not report (e.g. `.SILENT`).
pub fn store_completed(model: &mut TargetModel, s: &Session, p: &Pending, ok: bool, now: u64) {
    let Some(sel) = &s.selection else { return };
    let (Some(v), Kind::Store { op, flags, .. }) = (sel.uidvalidity, &p.cmd.kind) else {
        return;
    };
    // A read-only mailbox changes nothing, even when the server answers OK (Dovecot: "Store
    // ignored with read-only mailbox").
    if sel.tainted || sel.read_only {
        return;
    }
    let targets = if ok { store_targets(sel, p) } else { None };
    let space = model.mailbox(&sel.key).space(v);
    let Some(targets) = targets else {
        // Failed (maybe partly applied) or unknown targets: forget the mailbox's flags.
        for facts in space.messages.values_mut() {
            facts.flags = None;
        }
        return;
    };
    let uncertain = non_permanent(&sel.permanent, flags);
    for uid in targets
        .into_iter()
        .filter(|u| !p.flags_reported.contains(u))
    {
        let facts = space.messages.entry(uid).or_default();
        let known = facts.flags.get_or_insert_with(KnownFlags::default);
        match op {
            StoreType::Replace => {
                let before = std::mem::take(known);
                *known = KnownFlags::observed(flags, uncertain.clone(), now);
                // Flags set before and not in the new list are now known to be clear.
                for (f, set) in before.definite {
                    if set && !flags.contains(&f) {
                        known.definite.insert(f, false);
                    }
                }
            }
            StoreType::Add | StoreType::Remove => {
                let set = *op == StoreType::Add;
                for f in flags {
                    known.definite.insert(f.clone(), set);
                }
                known.uncertain.extend(uncertain.iter().cloned());
            }
        }
        known.stamp = now;
    }
}
