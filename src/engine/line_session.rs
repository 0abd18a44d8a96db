//! One POP3 or SMTP session of a scenario run: the connection, the replies received but not
//! yet consumed by a step, and the bookkeeping that line protocols need - how many replies
//! the server still owes, whether the next client line is SMTP message content (after 354,
//! dot-stuffed by the harness) or a SASL response, and the TLS upgrade after STLS/STARTTLS.

use std::collections::VecDeque;
use std::time::Duration;

use mailtape_proto::pop3::{Expect, parse_command};
use tokio::time::Instant;

use crate::checks::Violation;
use crate::checks::pop3::Pop3Checks;
use crate::checks::smtp::SmtpChecks;
use crate::net::{NetError, TlsClient};
use crate::proto::line::{LineConnection, LineReply, ReplyKind};
use crate::report::{Direction, Transcript, TranscriptEntry};
use crate::script::{Loc, Protocol};

use super::expect::ReplyLine;

/// What a client command was, for what its reply means to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Other,
    /// POP3 STLS / SMTP STARTTLS: a positive reply upgrades the connection.
    StartTls,
    /// POP3 QUIT / SMTP QUIT: the server closes after its reply.
    Quit,
    /// SMTP DATA: 354 starts the message content.
    Data,
    /// POP3 AUTH / SMTP AUTH, or a SASL response line: a continuation asks for another.
    Sasl,
}

/// Everything a POP3 or SMTP session reports into: the transcript, the checks of both
/// protocols, the violations found, and the script line being run.
pub struct LineSink<'a> {
    pub transcript: &'a mut Transcript,
    pub violations: &'a mut Vec<Violation>,
    pub pop3: &'a mut Pop3Checks,
    pub smtp: &'a mut SmtpChecks,
    pub loc: Option<Loc>,
}

impl LineSink<'_> {
    fn add(&mut self, found: Vec<Violation>) {
        for mut v in found {
            if v.loc.is_none() {
                v.loc = self.loc.clone();
            }
            self.violations.push(v);
        }
    }
}

pub struct LineSession {
    pub name: String,
    pub protocol: Protocol,
    conn: LineConnection,
    /// Replies received, not yet consumed by a step.
    pub pending: VecDeque<LineReply>,
    /// Commands sent whose replies have not arrived, oldest first; the greeting counts.
    awaiting: VecDeque<Sent>,
    /// SMTP: the next client lines are message content, up to a line `.`.
    pub in_data: bool,
    /// The last reply was a SASL continuation: the next client line answers it.
    sasl: bool,
    pub closed: bool,
    /// The checks have been told the session ended.
    close_told: bool,
    server_name: String,
    tls: TlsClient,
}

impl LineSession {
    pub fn new(
        name: &str,
        protocol: Protocol,
        conn: LineConnection,
        server_name: &str,
        tls: TlsClient,
    ) -> LineSession {
        LineSession {
            name: name.to_string(),
            protocol,
            conn,
            pending: VecDeque::new(),
            // The greeting is owed from the start (RFC 1939 4, RFC 5321 3.1).
            awaiting: VecDeque::from([Sent::Other]),
            in_data: false,
            sasl: false,
            closed: false,
            close_told: false,
            server_name: server_name.to_string(),
            tls,
        }
    }

    /// The connection is over (QUIT, the server closing, or the harness dropping it): tell
    /// the checks once.
    pub fn close(&mut self, sink: &mut LineSink<'_>) {
        self.closed = true;
        if std::mem::replace(&mut self.close_told, true) {
            return;
        }
        let found = match self.protocol {
            Protocol::Pop3 => sink.pop3.session_closed(&self.name),
            _ => sink.smtp.session_closed(&self.name),
        };
        sink.add(found);
    }

    /// Replies still owed by the server.
    pub fn owed(&self) -> usize {
        self.awaiting.len()
    }

    /// Send one script or setup line (without CRLF). SMTP message content is dot-stuffed
    /// here (RFC 5321 4.5.2), and a line `.` ends it.
    pub async fn send_line(
        &mut self,
        sink: &mut LineSink<'_>,
        setup: bool,
        line: &str,
    ) -> Result<(), NetError> {
        let mut bytes = Vec::with_capacity(line.len() + 3);
        let mut sent = None;
        // SMTP message content (the final `.` included) is checked as content, not commands.
        let content = self.in_data;
        if self.in_data {
            if line == "." {
                self.in_data = false;
                sent = Some(Sent::Other);
            } else if line.starts_with('.') {
                bytes.push(b'.');
            }
        } else if self.sasl {
            self.sasl = false;
            sent = Some(Sent::Sasl);
            self.conn.expect(Expect::Sasl);
        } else {
            let verb = line
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let kind = match verb.as_str() {
                "STLS" | "STARTTLS" => Sent::StartTls,
                "QUIT" => Sent::Quit,
                "DATA" if self.protocol == Protocol::Smtp => Sent::Data,
                "AUTH" => Sent::Sasl,
                _ => Sent::Other,
            };
            if self.protocol == Protocol::Pop3 {
                // The reply's shape follows from the command (RFC 1939, RFC 2449); a line
                // that is no valid command still gets one reply line.
                let shape = match parse_command(line.as_bytes()) {
                    Ok(c) => c.expect(),
                    Err(_) => Expect::SingleLine,
                };
                self.conn.expect(shape);
            }
            sent = Some(kind);
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.conn.send(&bytes).await?;
        let found = match self.protocol {
            Protocol::Pop3 => sink.pop3.client_line(&self.name, &bytes),
            _ => sink.smtp.client_line(&self.name, &bytes, content),
        };
        sink.add(found);
        crate::report::trace::message(&self.name, Direction::Client, setup, &bytes);
        sink.transcript.entries.push(TranscriptEntry {
            session: self.name.clone(),
            direction: Direction::Client,
            setup,
            bytes,
        });
        if let Some(kind) = sent {
            self.awaiting.push_back(kind);
        }
        Ok(())
    }

    /// Read one reply within `deadline`, record it, and do the bookkeeping.
    pub async fn read_one(
        &mut self,
        sink: &mut LineSink<'_>,
        setup: bool,
        deadline: Instant,
    ) -> Result<(), NetError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let reply = match self.conn.read_reply(wait).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, NetError::Closed(_)) {
                    self.close(sink);
                }
                return Err(e);
            }
        };
        crate::report::trace::message(&self.name, Direction::Server, setup, &reply.raw);
        sink.transcript.entries.push(TranscriptEntry {
            session: self.name.clone(),
            direction: Direction::Server,
            setup,
            bytes: reply.raw.clone(),
        });
        let found = match self.protocol {
            Protocol::Pop3 => sink.pop3.server_reply(&self.name, &reply),
            _ => sink.smtp.server_reply(&self.name, &reply),
        };
        sink.add(found);
        let sent = self.awaiting.pop_front().unwrap_or(Sent::Other);
        match (sent, reply.kind) {
            (Sent::Sasl, ReplyKind::Intermediate) => self.sasl = true,
            (Sent::Data, ReplyKind::Intermediate) => self.in_data = true,
            (Sent::StartTls, ReplyKind::Positive) => {
                let tls = self.tls.clone();
                let name = self.server_name.clone();
                self.pending.push_back(reply);
                return self.conn.starttls(&tls, &name).await;
            }
            (Sent::Quit, _) => self.close(sink),
            _ => {}
        }
        self.pending.push_back(reply);
        Ok(())
    }

    /// Read until every reply owed has arrived.
    pub async fn settle(
        &mut self,
        sink: &mut LineSink<'_>,
        setup: bool,
        wait: Duration,
    ) -> Result<(), NetError> {
        let deadline = Instant::now() + wait;
        while self.owed() > 0 && !self.closed {
            self.read_one(sink, setup, deadline).await?;
        }
        Ok(())
    }

    /// A harness command: send, wait for its reply, return it.
    pub async fn command(
        &mut self,
        sink: &mut LineSink<'_>,
        line: &str,
        wait: Duration,
    ) -> Result<LineReply, NetError> {
        self.pending.clear();
        self.send_line(sink, true, line).await?;
        self.settle(sink, true, wait).await?;
        self.pending
            .pop_back()
            .ok_or_else(|| NetError::Closed(" before replying".to_string()))
    }

    /// The pending replies as lines to match, oldest first.
    pub fn window(&self) -> Vec<ReplyLine> {
        self.pending
            .iter()
            .flat_map(|r| r.lines.iter().map(|l| ReplyLine(l.clone())))
            .collect()
    }
}
