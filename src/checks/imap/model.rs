//! What the responses have proven about the target's mailboxes, shared by every session of
//! every scenario run against it: UIDVALIDITY history, UIDs assigned and expunged, UIDNEXT,
//! the last known flags of each message and who saw it \Recent.
//!
//! Every fact carries the logical time ("stamp") at which it was learnt, so that a response to
//! a command can be compared only with what was known before that command was sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A mailbox of one account: (account, mailbox name; INBOX upper-cased).
pub type MailboxKey = (String, String);

/// Mailbox names compare exactly except INBOX, which is case-insensitive (RFC 3501 5.1).
pub fn mailbox_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("inbox") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

/// Model state shared by every scenario run against one target.
#[derive(Debug, Default)]
pub struct TargetModel {
    /// Logical clock: one tick per client or server message seen by any checker.
    pub(crate) clock: u64,
    /// Ids handed to sessions, unique across scenarios.
    pub(crate) next_session: u64,
    pub(crate) mailboxes: HashMap<MailboxKey, MailboxFacts>,
}

impl TargetModel {
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn mailbox(&mut self, key: &MailboxKey) -> &mut MailboxFacts {
        self.mailboxes.entry(key.clone()).or_default()
    }

    /// The mailbox may have been deleted, created or renamed: forget its history.
    pub(crate) fn forget(&mut self, key: &MailboxKey) {
        self.mailboxes.remove(key);
    }

    /// A RENAME moves a whole hierarchy: forget every mailbox under `prefix`.
    pub(crate) fn forget_tree(&mut self, account: &str, prefix: &str) {
        self.mailboxes.retain(|(acc, name), _| {
            !(acc == account && (name == prefix || name.starts_with(prefix)))
        });
    }
}

/// One mailbox name's history.
#[derive(Debug, Default)]
pub struct MailboxFacts {
    /// Last UIDVALIDITY seen and when.
    pub uidvalidity: Option<(u32, u64)>,
    pub spaces: HashMap<u32, UidSpace>,
    /// Commands that may change flags in flight, per session id.
    pub flag_changes_in_flight: HashMap<u64, u32>,
    /// When the last flag-changing command completed.
    pub last_flag_change: u64,
}

impl MailboxFacts {
    pub fn space(&mut self, uidvalidity: u32) -> &mut UidSpace {
        self.spaces.entry(uidvalidity).or_default()
    }

    /// Flag-changing commands in flight in sessions other than `session`.
    pub fn changes_elsewhere(&self, session: u64) -> u32 {
        self.flag_changes_in_flight
            .iter()
            .filter(|(s, _)| **s != session)
            .map(|(_, n)| *n)
            .sum()
    }

    pub fn change_started(&mut self, session: u64) {
        *self.flag_changes_in_flight.entry(session).or_default() += 1;
    }

    pub fn change_ended(&mut self, session: u64, now: u64) {
        if let Some(n) = self.flag_changes_in_flight.get_mut(&session) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.flag_changes_in_flight.remove(&session);
            }
        }
        self.last_flag_change = now;
    }
}

/// The messages of one mailbox under one UIDVALIDITY.
#[derive(Debug, Default)]
pub struct UidSpace {
    /// (stamp, highest UID seen so far), appended whenever the maximum grows.
    max_seen: Vec<(u64, u32)>,
    pub expunged: RangeSet,
    /// Last UIDNEXT seen and when.
    pub uidnext: Option<(u32, u64)>,
    pub messages: BTreeMap<u32, MessageFacts>,
}

impl UidSpace {
    pub fn saw_uid(&mut self, uid: u32, now: u64) {
        if self.max_seen.last().is_none_or(|(_, max)| uid > *max) {
            self.max_seen.push((now, uid));
        }
    }

    /// The highest UID seen strictly before `stamp`.
    pub fn max_before(&self, stamp: u64) -> Option<u32> {
        self.max_seen
            .iter()
            .rev()
            .find(|(at, _)| *at < stamp)
            .map(|(_, uid)| *uid)
    }

    /// The UIDNEXT learnt strictly before `stamp`.
    pub fn uidnext_before(&self, stamp: u64) -> Option<u32> {
        self.uidnext.filter(|(_, at)| *at < stamp).map(|(n, _)| n)
    }

    pub fn expunge(&mut self, uid: u32) {
        self.expunged.insert(uid, uid);
        self.messages.remove(&uid);
    }
}

/// What is known about one message (mailbox, UIDVALIDITY, UID).
#[derive(Debug, Default)]
pub struct MessageFacts {
    pub flags: Option<KnownFlags>,
    /// The session that saw \Recent on it while read-write.
    pub recent_in: Option<u64>,
    pub size: Option<u32>,
    pub body_len: Option<usize>,
}

/// Flags known for a message (lower-cased names, \Recent never included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownFlags {
    /// flag -> set or cleared.
    pub definite: BTreeMap<String, bool>,
    /// Whether flags outside `definite` are known to be clear.
    pub complete: bool,
    /// Flags whose state is unknown (session-only flags, racing \Seen).
    pub uncertain: BTreeSet<String>,
    /// When learnt.
    pub stamp: u64,
}

impl KnownFlags {
    /// A full FLAGS list as observed.
    pub fn observed(flags: &BTreeSet<String>, uncertain: BTreeSet<String>, stamp: u64) -> Self {
        KnownFlags {
            definite: flags.iter().map(|f| (f.clone(), true)).collect(),
            complete: true,
            uncertain,
            stamp,
        }
    }

    /// Flags expected but missing from `actual`, and flags present that should not be.
    pub fn compare(
        &self,
        actual: &BTreeSet<String>,
        also_uncertain: &BTreeSet<String>,
    ) -> (Vec<String>, Vec<String>) {
        let unsure = |f: &String| self.uncertain.contains(f) || also_uncertain.contains(f);
        let mut missing = Vec::new();
        let mut extra = Vec::new();
        for (flag, set) in &self.definite {
            if unsure(flag) {
                continue;
            }
            match (*set, actual.contains(flag)) {
                (true, false) => missing.push(flag.clone()),
                (false, true) => extra.push(flag.clone()),
                _ => {}
            }
        }
        // Flags never mentioned that show up are not reported: servers may add some on their own
        // (e.g. attachment keywords), and a false alarm costs more than a miss.
        (missing, extra)
    }
}

/// A set of u32 as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeSet(Vec<(u32, u32)>);

impl RangeSet {
    pub fn insert(&mut self, a: u32, b: u32) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut merged = (lo, hi);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(x, y) in &self.0 {
            if y.saturating_add(1) < merged.0 || merged.1.saturating_add(1) < x {
                out.push((x, y));
            } else {
                merged = (merged.0.min(x), merged.1.max(y));
            }
        }
        out.push(merged);
        out.sort_unstable();
        self.0 = out;
    }

    pub fn contains(&self, v: u32) -> bool {
        self.0.iter().any(|&(a, b)| a <= v && v <= b)
    }

    /// The lowest member within `a..=b`, if any.
    pub fn first_in(&self, a: u32, b: u32) -> Option<u32> {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        self.0
            .iter()
            .filter(|&&(x, y)| x <= hi && lo <= y)
            .map(|&(x, _)| x.max(lo))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_merges_and_finds() {
        let mut s = RangeSet::default();
        s.insert(5, 7);
        s.insert(9, 9);
        s.insert(8, 8);
        s.insert(1, 1);
        assert_eq!(s, RangeSet(vec![(1, 1), (5, 9)]));
        assert!(s.contains(6));
        assert!(!s.contains(3));
        assert_eq!(s.first_in(2, 6), Some(5));
        assert_eq!(s.first_in(10, 20), None);
    }

    #[test]
    fn known_flags_compare() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let mut k = KnownFlags::observed(&set(&["\\seen", "\\flagged"]), set(&["$x"]), 1);
        k.definite.insert("\\answered".into(), false);
        let actual = set(&["\\seen", "$x", "\\deleted", "\\answered"]);
        let (missing, extra) = k.compare(&actual, &BTreeSet::new());
        assert_eq!(missing, vec!["\\flagged".to_string()]);
        // \deleted was never mentioned: not reported; \answered was known clear.
        assert_eq!(extra, vec!["\\answered".to_string()]);
    }

    #[test]
    fn max_before_respects_stamps() {
        let mut s = UidSpace::default();
        s.saw_uid(3, 10);
        s.saw_uid(2, 11);
        s.saw_uid(9, 20);
        assert_eq!(s.max_before(10), None);
        assert_eq!(s.max_before(15), Some(3));
        assert_eq!(s.max_before(21), Some(9));
    }
}
