//! Per-connection bookkeeping: the RFC 3501 3 state, commands in progress, and the selected
//! mailbox's view (message count, sequence number -> UID map).

use std::collections::BTreeSet;

use super::client::Cmd;
use super::model::MailboxKey;

/// RFC 3501 3 connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before the greeting.
    Connecting,
    NotAuthenticated,
    Authenticated,
    Selected,
    Logout,
}

/// A command sent and not yet completed.
#[derive(Debug, Clone)]
pub struct Pending {
    pub cmd: Cmd,
    pub sent_at: u64,
    /// The state the command runs in, when certain (no state change in flight when sent).
    pub state: Option<State>,
    /// `+` requests still owed for its synchronizing literals.
    pub literals_owed: u32,
    pub plus_seen: u32,
    /// UIDs whose FLAGS came back while it ran.
    pub flags_reported: BTreeSet<u32>,
    /// The mailbox it changes flags in, if counted as in flight in the model.
    pub flag_change_in: Option<MailboxKey>,
    /// IDLE's DONE was sent.
    pub done_sent: bool,
    /// AUTHENTICATE data lines the client sent.
    pub client_data: u32,
    /// COPYUID seen for it (MOVE sends it untagged).
    pub copyuid_seen: bool,
}

/// The selected mailbox as this session sees it.
#[derive(Debug, Clone)]
pub struct Selection {
    pub key: MailboxKey,
    pub read_only: bool,
    /// Still waiting for SELECT/EXAMINE's tagged completion.
    pub opening: bool,
    /// Other commands were in flight when it was selected: responses cannot be attributed.
    pub tainted: bool,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    /// UIDNEXT came after the last EXISTS of the selection, so it covers every message counted.
    pub uidnext_covers_exists: bool,
    /// Message count from the last EXISTS (minus EXPUNGEs), once known.
    pub exists: Option<u32>,
    /// UID of each message by sequence number - 1, where known.
    pub uids: Vec<Option<u32>>,
    /// How many of the lowest-numbered messages were present at selection (UIDs below UIDNEXT).
    pub old_count: Option<u32>,
    /// PERMANENTFLAGS: the listed flags and whether `\*` was listed.
    pub permanent: Option<(BTreeSet<String>, bool)>,
}

impl Selection {
    pub fn new(key: MailboxKey, read_only: bool, tainted: bool) -> Self {
        Selection {
            key,
            read_only,
            opening: true,
            tainted,
            uidvalidity: None,
            uidnext: None,
            uidnext_covers_exists: false,
            exists: None,
            uids: Vec::new(),
            old_count: None,
            permanent: None,
        }
    }

    /// Whether a flag survives the session (RFC 3501 7.1 PERMANENTFLAGS).
    pub fn permanent_in(permanent: &Option<(BTreeSet<String>, bool)>, flag: &str) -> bool {
        match permanent {
            None => true,
            Some((list, wildcard)) => list.contains(flag) || (*wildcard && !flag.starts_with('\\')),
        }
    }

    /// The UID of message `seq`, when known.
    pub fn uid_of(&self, seq: u32) -> Option<u32> {
        self.uids
            .get(seq.checked_sub(1)? as usize)
            .copied()
            .flatten()
    }

    /// Responses can be modelled: the selection is settled enough and attributable.
    pub fn usable(&self) -> bool {
        !self.tainted && self.exists.is_some()
    }
}

/// One connection.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub name: String,
    pub account: String,
    pub state: State,
    pub pending: Vec<Pending>,
    /// Tags completed so far (to tell a duplicate completion from an unknown tag).
    pub completed: BTreeSet<String>,
    /// `+` requests received that no command explained yet (the client message may follow).
    pub unexplained_plus: Vec<Vec<u8>>,
    /// Tagged completions for tags not sent yet (the client message may follow).
    pub early: Vec<crate::proto::imap::ServerFrame>,
    pub bye_seen: bool,
    /// The state is not known for sure (e.g. after a SELECT answered BAD): no state checks.
    pub uncertain: bool,
    pub selection: Option<Selection>,
    pub closed: bool,
}

impl Session {
    pub fn new(id: u64, name: &str, account: &str) -> Self {
        Session {
            id,
            name: name.to_string(),
            account: account.to_string(),
            state: State::Connecting,
            pending: Vec::new(),
            completed: BTreeSet::new(),
            unexplained_plus: Vec::new(),
            early: Vec::new(),
            bye_seen: false,
            uncertain: false,
            selection: None,
            closed: false,
        }
    }

    /// The model key of `mailbox`. A session whose user is unknown gets a key of its own, so
    /// nothing is compared across sessions that may belong to different accounts.
    pub fn key(&self, mailbox: &str) -> MailboxKey {
        let account = if self.account.is_empty() {
            format!("#session-{}", self.id)
        } else {
            self.account.clone()
        };
        (account, super::model::mailbox_name(mailbox))
    }

    /// Whether a command that changes the state is in flight.
    pub fn state_change_in_flight(&self) -> bool {
        use super::client::Kind;
        self.pending.iter().any(|p| {
            matches!(
                p.cmd.kind,
                Kind::Login { .. }
                    | Kind::Authenticate { .. }
                    | Kind::Select { .. }
                    | Kind::Deselect
                    | Kind::Logout
            ) || p.cmd.name == "STARTTLS"
                || p.cmd.name == "UNAUTHENTICATE"
        })
    }
}
