//! CONTRACT STUB - the checks helper replaces this file.
use super::Violation;
use crate::proto::imap::ServerFrame;

/// Model state shared by every scenario run against one target (UIDVALIDITY history etc.).
#[derive(Debug, Default)]
pub struct TargetModel {}

pub type SharedModel = std::sync::Arc<std::sync::Mutex<TargetModel>>;

/// The IMAP checker for one scenario run (all of its sessions).
pub struct ImapChecks {}

impl ImapChecks {
    pub fn new(_shared: SharedModel) -> Self {
        ImapChecks {}
    }
    /// A new connection for `session`, logged in (later) as `account`.
    pub fn session_opened(&mut self, _session: &str, _account: &str) {}
    /// One whole client message as sent (line plus literals, CRLF included).
    pub fn client_message(&mut self, _session: &str, _bytes: &[u8]) -> Vec<Violation> {
        Vec::new()
    }
    /// One whole server message as received.
    pub fn server_message(&mut self, _session: &str, _frame: &ServerFrame) -> Vec<Violation> {
        Vec::new()
    }
    /// The connection ended (LOGOUT, BYE, close or end of script).
    pub fn session_closed(&mut self, _session: &str) -> Vec<Violation> {
        Vec::new()
    }
}
