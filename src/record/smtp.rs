//! SMTP transcript: replies matched to commands in order (PIPELINING keeps the order,
//! RFC 2920 3), one `S` line per reply line (`250-` continues a reply, `250 ` ends it);
//! after `354` the client's message lines dot-unstuffed up to `.`; AUTH PLAIN/LOGIN
//! credentials become `{auth_plain}`, `{user_b64}`, `{password_b64}`.

use std::collections::VecDeque;

use super::journal::Entry;
use super::lines::{Budget, LineSplitter, RawLine, checked, sasl_response_var};
use super::observe::{Observer, client_line, server_text_line};
use super::pop3::unfinished;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owed {
    Greeting,
    Data,
    /// A reply to AUTH or to a SASL response, with the mechanism.
    Auth(String),
    StartTls,
    Other,
}

pub struct SmtpObserver {
    keep_secrets: bool,
    client_lines: LineSplitter,
    server_lines: LineSplitter,
    owed: VecDeque<Owed>,
    /// After 354: the client sends the message up to a lone `.`.
    in_data: bool,
    data_budget: Budget,
    /// After 334: the client's next line is a SASL response for this mechanism.
    awaiting_response: Option<String>,
    /// SASL responses sent in the current exchange.
    responses: usize,
    upgrade: bool,
    user: Option<String>,
}

impl SmtpObserver {
    pub fn new(keep_secrets: bool) -> Self {
        SmtpObserver {
            keep_secrets,
            client_lines: LineSplitter::default(),
            server_lines: LineSplitter::default(),
            owed: VecDeque::from([Owed::Greeting]),
            in_data: false,
            data_budget: Budget::default(),
            awaiting_response: None,
            responses: 0,
            upgrade: false,
            user: None,
        }
    }

    /// Learns the login from a SASL response; the variable that stands for it.
    fn sasl_var(&mut self, mechanism: &str, b64: &str) -> String {
        let index = self.responses;
        self.responses += 1;
        let (var, login) = sasl_response_var(mechanism, index, b64);
        if login.is_some() {
            self.user = login;
        }
        var.to_owned()
    }

    fn client_raw(&mut self, raw: RawLine, out: &mut Vec<Entry>) {
        let line = checked(&raw, "client", out);
        if self.in_data {
            match line.as_deref() {
                Some(".") => {
                    self.in_data = false;
                    self.owed.push_back(Owed::Other);
                    out.extend(self.data_budget.finish("DATA").map(Entry::Note));
                    out.push(Entry::Client(".".into()));
                }
                Some(_) if !self.data_budget.admit(raw.bytes.len() + raw.cut) => {}
                Some(l) => {
                    let unstuffed = l.strip_prefix('.').unwrap_or(l);
                    if unstuffed == "." {
                        out.push(Entry::Note(
                            "a message line that is a single `.` (sent as `..`) cannot be written"
                                .into(),
                        ));
                    } else {
                        client_line(out, unstuffed.to_owned(), unstuffed);
                    }
                }
                None => {}
            }
            return;
        }
        if let Some(mechanism) = self.awaiting_response.take() {
            self.owed.push_back(Owed::Auth(mechanism.clone()));
            let Some(l) = line else { return };
            let text = if l == "*" {
                l.clone()
            } else {
                let var = self.sasl_var(&mechanism, &l);
                if self.keep_secrets { l.clone() } else { var }
            };
            client_line(out, text, &l);
            return;
        }
        let Some(l) = line else {
            self.owed.push_back(Owed::Other);
            return;
        };
        let words: Vec<&str> = l.split(' ').filter(|w| !w.is_empty()).collect();
        let verb = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        let mut text = l.clone();
        let owed = match verb.as_str() {
            "DATA" => Owed::Data,
            "STARTTLS" => Owed::StartTls,
            "AUTH" => {
                let mechanism = words
                    .get(1)
                    .map(|m| m.to_ascii_uppercase())
                    .unwrap_or_default();
                self.responses = 0;
                if let Some(ir) = words.get(2) {
                    let var = if *ir == "=" {
                        "=".to_string()
                    } else {
                        self.sasl_var(&mechanism, ir)
                    };
                    if !self.keep_secrets {
                        text = format!("{} {} {var}", words[0], words[1]);
                    }
                }
                Owed::Auth(mechanism)
            }
            "BDAT" => {
                out.push(Entry::Note(
                    "BDAT (CHUNKING, RFC 3030) carries binary chunks the recorder cannot frame; the transcript after it may be wrong".into(),
                ));
                Owed::Other
            }
            _ => Owed::Other,
        };
        self.owed.push_back(owed);
        client_line(out, text, &l);
    }

    fn server_raw(&mut self, raw: RawLine, out: &mut Vec<Entry>) {
        let Some(text) = checked(&raw, "server", out) else {
            return;
        };
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
        let last = text.as_bytes().get(3) != Some(&b'-');
        let code = code.map(str::to_owned);
        server_text_line(out, text);
        if !last {
            return;
        }
        let owed = self.owed.pop_front().unwrap_or(Owed::Other);
        match (owed, code.as_deref()) {
            (Owed::Data, Some("354")) => self.in_data = true,
            (Owed::Auth(mechanism), Some("334")) => self.awaiting_response = Some(mechanism),
            (Owed::StartTls, Some("220")) => self.upgrade = true,
            _ => {}
        }
    }
}

impl Observer for SmtpObserver {
    fn client(&mut self, bytes: &[u8], out: &mut Vec<Entry>) {
        for raw in self.client_lines.push(bytes) {
            self.client_raw(raw, out);
        }
    }

    fn server(&mut self, bytes: &[u8], out: &mut Vec<Entry>) {
        for raw in self.server_lines.push(bytes) {
            self.server_raw(raw, out);
        }
    }

    fn starttls_pending(&self) -> bool {
        self.owed.contains(&Owed::StartTls)
    }

    fn take_upgrade(&mut self) -> bool {
        std::mem::take(&mut self.upgrade)
    }

    fn user(&self) -> Option<String> {
        self.user.clone()
    }

    fn finish(&mut self, out: &mut Vec<Entry>) {
        unfinished(out, "client", self.client_lines.pending());
        unfinished(out, "server", self.server_lines.pending());
        if self.in_data {
            out.push(Entry::Note(
                "the connection ended during DATA (no final `.`)".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_auth_login_and_multiline() {
        let mut o = SmtpObserver::new(false);
        let mut out = Vec::new();
        o.server(b"220 hi\r\n", &mut out);
        o.client(b"EHLO x\r\n", &mut out);
        o.server(b"250-hi\r\n250 AUTH PLAIN LOGIN\r\n", &mut out);
        o.client(b"AUTH LOGIN\r\n", &mut out);
        o.server(b"334 VXNlcm5hbWU6\r\n", &mut out);
        o.client(b"YWxpY2U=\r\n", &mut out);
        o.server(b"334 UGFzc3dvcmQ6\r\n", &mut out);
        o.client(b"YWxpY2Vwdw==\r\n", &mut out);
        o.server(b"235 ok\r\n", &mut out);
        o.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", &mut out);
        o.server(b"250 ok\r\n250 ok\r\n354 go\r\n", &mut out);
        o.client(b"Subject: x\r\n\r\n..dot\r\n.\r\n", &mut out);
        o.server(b"250 queued\r\n", &mut out);
        let clients: Vec<&str> = out
            .iter()
            .filter_map(|e| match e {
                Entry::Client(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            clients,
            [
                "EHLO x",
                "AUTH LOGIN",
                "{user_b64}",
                "{password_b64}",
                "MAIL FROM:<a@x>",
                "RCPT TO:<b@x>",
                "DATA",
                "Subject: x",
                "",
                ".dot",
                "."
            ]
        );
        assert_eq!(o.user().as_deref(), Some("alice"));
        assert!(out.contains(&Entry::Server("250-hi".into())));
    }

    #[test]
    fn auth_plain_initial_response_and_starttls() {
        let mut o = SmtpObserver::new(false);
        let mut out = Vec::new();
        o.server(b"220 hi\r\n", &mut out);
        o.client(b"AUTH PLAIN AGFsaWNlAGFsaWNlcHc=\r\n", &mut out);
        o.server(b"235 ok\r\n", &mut out);
        o.client(b"STARTTLS\r\n", &mut out);
        assert!(o.starttls_pending());
        o.server(b"220 go\r\n", &mut out);
        assert!(o.take_upgrade());
        assert_eq!(out[1], Entry::Client("AUTH PLAIN {auth_plain}".into()));
        assert_eq!(o.user().as_deref(), Some("alice"));
    }
}
