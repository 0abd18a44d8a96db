//! PLACEHOLDER until the smtpchecks branch lands (replaced at merge).
use super::Violation;
use crate::proto::line::LineReply;

#[derive(Default)]
pub struct SmtpChecks {}
impl SmtpChecks {
    pub fn new() -> Self {
        SmtpChecks {}
    }
    pub fn session_opened(&mut self, _session: &str) {}
    pub fn client_line(&mut self, _session: &str, _bytes: &[u8], _in_data: bool) -> Vec<Violation> {
        Vec::new()
    }
    pub fn server_reply(&mut self, _session: &str, _reply: &LineReply) -> Vec<Violation> {
        Vec::new()
    }
    pub fn session_closed(&mut self, _session: &str) -> Vec<Violation> {
        Vec::new()
    }
}
