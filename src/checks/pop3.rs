//! PLACEHOLDER until the pop3checks branch lands (replaced at merge).
use super::Violation;
use crate::proto::line::LineReply;

#[derive(Debug, Default)]
pub struct TargetModel {}
pub type SharedModel = std::sync::Arc<std::sync::Mutex<TargetModel>>;
pub struct Pop3Checks {}
impl Pop3Checks {
    pub fn new(_shared: SharedModel) -> Self {
        Pop3Checks {}
    }
    pub fn session_opened(&mut self, _session: &str, _account: &str) {}
    pub fn client_line(&mut self, _session: &str, _bytes: &[u8]) -> Vec<Violation> {
        Vec::new()
    }
    pub fn server_reply(&mut self, _session: &str, _reply: &LineReply) -> Vec<Violation> {
        Vec::new()
    }
    pub fn session_closed(&mut self, _session: &str) -> Vec<Violation> {
        Vec::new()
    }
}
