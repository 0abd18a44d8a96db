//! POP3 transcript: client commands parsed with mailtape-proto's codec to know each reply's
//! shape (multi-line after `+OK` for RETR, TOP, CAPA, LIST/UIDL without argument, bare AUTH;
//! SASL continuations for AUTH with a mechanism); multi-line bodies written one `S` line per
//! line, dot-unstuffed, then `S: .`. USER/PASS/AUTH credentials become variables.

use std::collections::VecDeque;

use mailtape_proto::pop3::{Command, Expect, parse_command};

use super::journal::Entry;
use super::lines::{Budget, LineSplitter, RawLine, checked, sasl_response_var};
use super::observe::{Observer, client_line, server_text_line};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    Stls,
}

/// A SASL exchange in progress: the mechanism and how many responses the client sent.
#[derive(Debug)]
struct Sasl {
    mechanism: String,
    responses: usize,
}

pub struct Pop3Observer {
    keep_secrets: bool,
    client_lines: LineSplitter,
    server_lines: LineSplitter,
    /// Replies owed, oldest first; the greeting is owed from the start.
    owed: VecDeque<(Expect, Kind)>,
    /// Inside a multi-line reply's body.
    in_body: bool,
    body_budget: Budget,
    sasl: Option<Sasl>,
    /// The last server line was a `+ ` continuation: the client's next line is a SASL
    /// response, not a command.
    awaiting_response: bool,
    upgrade: bool,
    user: Option<String>,
}

impl Pop3Observer {
    pub fn new(keep_secrets: bool) -> Self {
        Pop3Observer {
            keep_secrets,
            client_lines: LineSplitter::default(),
            server_lines: LineSplitter::default(),
            owed: VecDeque::from([(Expect::SingleLine, Kind::Other)]),
            in_body: false,
            body_budget: Budget::default(),
            sasl: None,
            awaiting_response: false,
            upgrade: false,
            user: None,
        }
    }

    fn client_raw(&mut self, raw: RawLine, out: &mut Vec<Entry>) {
        let line = match checked(&raw, "client", out) {
            Some(l) => l,
            None => {
                // Still a command to the server: it will answer it.
                self.owed.push_back((Expect::SingleLine, Kind::Other));
                return;
            }
        };
        if self.awaiting_response {
            self.awaiting_response = false;
            self.owed.push_back((Expect::Sasl, Kind::Other));
            let text = self.sasl_response(&line);
            client_line(out, text, &line);
            return;
        }
        let words: Vec<&str> = line.split(' ').collect();
        let keyword = words.first().copied().unwrap_or_default();
        let parsed = parse_command(line.as_bytes());
        // The codec knows each reply's shape (multi-line, SASL, single line).
        let shape = parsed.as_ref().map_or(Expect::SingleLine, Command::expect);
        let (kind, text) = match parsed {
            Ok(Command::User { name }) => {
                self.user = Some(name);
                let text = self.secret(&line, || format!("{keyword} {{user}}"));
                (Kind::Other, text)
            }
            Ok(Command::Pass { .. }) => (
                Kind::Other,
                self.secret(&line, || format!("{keyword} {{password}}")),
            ),
            Ok(Command::Auth {
                mechanism: Some(mech),
                initial_response,
            }) => {
                let mech_up = mech.to_ascii_uppercase();
                self.sasl = Some(Sasl {
                    mechanism: mech_up.clone(),
                    // An initial response (RFC 5034 4) is the first response.
                    responses: usize::from(initial_response.is_some()),
                });
                let text = match initial_response {
                    Some(ir) => {
                        let var = self.learn_from_response(&mech_up, 0, ir.expose());
                        self.secret(&line, || format!("{keyword} {mech} {var}"))
                    }
                    None => line.clone(),
                };
                (Kind::Other, text)
            }
            Ok(Command::Stls) => (Kind::Stls, line.clone()),
            _ => (Kind::Other, line.clone()),
        };
        self.owed.push_back((shape, kind));
        client_line(out, text, &line);
    }

    /// The written form of a line carrying a secret.
    fn secret(&self, line: &str, redacted: impl FnOnce() -> String) -> String {
        if self.keep_secrets {
            line.to_owned()
        } else {
            redacted()
        }
    }

    /// Learns the login from a SASL response and returns the variable standing for it.
    fn learn_from_response(&mut self, mechanism: &str, index: usize, b64: &str) -> String {
        let (var, login) = sasl_response_var(mechanism, index, b64);
        if login.is_some() {
            self.user = login;
        }
        var.to_owned()
    }

    fn sasl_response(&mut self, line: &str) -> String {
        let Some(sasl) = self.sasl.as_mut() else {
            return line.to_owned();
        };
        let index = sasl.responses;
        sasl.responses += 1;
        let mechanism = sasl.mechanism.clone();
        if line == "*" {
            return line.to_owned();
        }
        let var = self.learn_from_response(&mechanism, index, line);
        if self.keep_secrets {
            line.to_owned()
        } else {
            var
        }
    }

    fn server_raw(&mut self, raw: RawLine, out: &mut Vec<Entry>) {
        let line = checked(&raw, "server", out);
        if self.in_body {
            if line.as_deref() == Some(".") {
                self.in_body = false;
                self.owed.pop_front();
                out.extend(self.body_budget.finish("multi-line reply").map(Entry::Note));
                out.push(Entry::Server(".".into()));
                return;
            }
            if !self.body_budget.admit(raw.bytes.len() + raw.cut) {
                return;
            }
            if let Some(l) = line {
                let unstuffed = l.strip_prefix('.').unwrap_or(&l).to_owned();
                server_text_line(out, unstuffed);
            }
            return;
        }
        let text = line.unwrap_or_default();
        let (shape, kind) = self
            .owed
            .front()
            .copied()
            .unwrap_or((Expect::SingleLine, Kind::Other));
        let ok = text.starts_with("+OK");
        let continuation = text == "+" || text.starts_with("+ ");
        if !text.is_empty() {
            server_text_line(out, text);
        }
        match shape {
            Expect::MultiLine if ok => {
                self.in_body = true;
                return;
            }
            Expect::Sasl if continuation => self.awaiting_response = true,
            Expect::Sasl => self.sasl = None,
            _ => {}
        }
        if kind == Kind::Stls && ok {
            self.upgrade = true;
        }
        self.owed.pop_front();
    }
}

impl Observer for Pop3Observer {
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
        self.owed.iter().any(|(_, k)| *k == Kind::Stls)
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
        if self.in_body {
            out.push(Entry::Note(
                "the connection ended inside a multi-line reply (no final `.`)".into(),
            ));
        }
    }
}

pub(super) fn unfinished(out: &mut Vec<Entry>, side: &str, pending: usize) {
    if pending > 0 {
        out.push(Entry::Note(format!(
            "the connection ended after {pending} bytes of an unfinished {side} line"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[(bool, &[u8])], keep: bool) -> (Vec<Entry>, Option<String>) {
        let mut o = Pop3Observer::new(keep);
        let mut out = Vec::new();
        for (client, bytes) in steps {
            if *client {
                o.client(bytes, &mut out);
            } else {
                o.server(bytes, &mut out);
            }
        }
        (out, o.user())
    }

    #[test]
    fn retr_body_is_unstuffed_and_credentials_redacted() {
        let (out, user) = run(
            &[
                (false, b"+OK ready\r\n"),
                (true, b"USER alice\r\nPASS secret pw\r\nRETR 1\r\n"),
                (
                    false,
                    b"+OK\r\n+OK\r\n+OK 9 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n",
                ),
            ],
            false,
        );
        assert_eq!(user.as_deref(), Some("alice"));
        let want = vec![
            Entry::Server("+OK ready".into()),
            Entry::Client("USER {user}".into()),
            Entry::Client("PASS {password}".into()),
            Entry::Client("RETR 1".into()),
            Entry::Server("+OK".into()),
            Entry::Server("+OK".into()),
            Entry::Server("+OK 9 octets".into()),
            Entry::Server("Subject: x".into()),
            Entry::Server("".into()),
            Entry::Server(".dot".into()),
            Entry::Server(".".into()),
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn auth_plain_continuation_and_stls() {
        let mut o = Pop3Observer::new(false);
        let mut out = Vec::new();
        o.server(b"+OK hi\r\n", &mut out);
        o.client(b"AUTH PLAIN\r\n", &mut out);
        o.server(b"+ \r\n", &mut out);
        o.client(b"AGFsaWNlAGFsaWNlcHc=\r\n", &mut out);
        o.server(b"+OK logged in\r\n", &mut out);
        o.client(b"STLS\r\n", &mut out);
        assert!(o.starttls_pending());
        o.server(b"+OK begin\r\n", &mut out);
        assert!(o.take_upgrade());
        assert!(!o.starttls_pending());
        assert_eq!(out[3], Entry::Client("{auth_plain}".into()));
        assert_eq!(o.user().as_deref(), Some("alice"));
    }

    #[test]
    fn a_huge_body_is_cut_with_one_note() {
        let mut o = Pop3Observer::new(false);
        let mut out = Vec::new();
        o.server(b"+OK\r\n", &mut out);
        o.client(b"RETR 1\r\n", &mut out);
        o.server(b"+OK\r\n", &mut out);
        let line = [b'x'; 1000];
        for _ in 0..2000 {
            o.server(&line, &mut out);
            o.server(b"\r\n", &mut out);
        }
        o.server(b".\r\n", &mut out);
        let written = out
            .iter()
            .filter(|e| matches!(e, Entry::Server(t) if t.starts_with('x')))
            .count();
        assert!((1000..1100).contains(&written), "{written}");
        let notes: Vec<&Entry> = out.iter().filter(|e| matches!(e, Entry::Note(_))).collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(out.last(), Some(&Entry::Server(".".into())));
    }

    #[test]
    fn auth_login_responses_become_variables() {
        let (out, user) = run(
            &[
                (false, b"+OK\r\n"),
                (true, b"AUTH LOGIN\r\n"),
                (false, b"+ VXNlcm5hbWU6\r\n"),
                (true, b"Ym9i\r\n"),
                (false, b"+ UGFzc3dvcmQ6\r\n"),
                (true, b"Ym9icHc=\r\n"),
                (false, b"+OK welcome\r\nx\r\n"),
            ],
            false,
        );
        assert_eq!(user.as_deref(), Some("bob"));
        assert_eq!(out[3], Entry::Client("{user_b64}".into()));
        assert_eq!(out[5], Entry::Client("{password_b64}".into()));
        // After the exchange a line is an (unsolicited) reply again, not a continuation.
        assert_eq!(out[7], Entry::Server("x".into()));
    }

    #[test]
    fn keep_secrets_writes_them() {
        let (out, _) = run(&[(false, b"+OK\r\n"), (true, b"PASS pw\r\n")], true);
        assert_eq!(out[1], Entry::Client("PASS pw".into()));
    }
}
