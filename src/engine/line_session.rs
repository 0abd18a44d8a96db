//! One POP3 or SMTP session of a scenario run: the connection, the replies received but not
//! yet consumed by a step, and the bookkeeping that line protocols need - how many replies
//! the server still owes, whether the next client line is SMTP message content (after 354,
//! dot-stuffed by the harness) or a SASL response, and the TLS upgrade after STLS/STARTTLS.

use std::collections::VecDeque;
use std::time::Duration;

use mailtape_proto::pop3::{Expect, parse_command};
use tokio::time::Instant;

use crate::net::{NetError, TlsClient};
use crate::proto::line::{LineConnection, LineReply, ReplyKind};
use crate::report::{Direction, Transcript, TranscriptEntry};
use crate::script::Protocol;

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
            server_name: server_name.to_string(),
            tls,
        }
    }

    /// Replies still owed by the server.
    pub fn owed(&self) -> usize {
        self.awaiting.len()
    }

    /// Send one script or setup line (without CRLF). SMTP message content is dot-stuffed
    /// here (RFC 5321 4.5.2), and a line `.` ends it.
    pub async fn send_line(
        &mut self,
        transcript: &mut Transcript,
        setup: bool,
        line: &str,
    ) -> Result<(), NetError> {
        let mut bytes = Vec::with_capacity(line.len() + 3);
        let mut sent = None;
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
        transcript.entries.push(TranscriptEntry {
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
        transcript: &mut Transcript,
        setup: bool,
        deadline: Instant,
    ) -> Result<(), NetError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let reply = match self.conn.read_reply(wait).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, NetError::Closed(_)) {
                    self.closed = true;
                }
                return Err(e);
            }
        };
        transcript.entries.push(TranscriptEntry {
            session: self.name.clone(),
            direction: Direction::Server,
            setup,
            bytes: reply.raw.clone(),
        });
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
            (Sent::Quit, _) => self.closed = true,
            _ => {}
        }
        self.pending.push_back(reply);
        Ok(())
    }

    /// Read until every reply owed has arrived.
    pub async fn settle(
        &mut self,
        transcript: &mut Transcript,
        setup: bool,
        wait: Duration,
    ) -> Result<(), NetError> {
        let deadline = Instant::now() + wait;
        while self.owed() > 0 && !self.closed {
            self.read_one(transcript, setup, deadline).await?;
        }
        Ok(())
    }

    /// A harness command: send, wait for its reply, return it.
    pub async fn command(
        &mut self,
        transcript: &mut Transcript,
        line: &str,
        wait: Duration,
    ) -> Result<LineReply, NetError> {
        self.pending.clear();
        self.send_line(transcript, true, line).await?;
        self.settle(transcript, true, wait).await?;
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
