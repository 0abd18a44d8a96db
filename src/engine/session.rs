//! One IMAP session of a scenario run: the connection, the server messages received but not yet
//! consumed by a script step, the commands still waiting for completion, and the wiring that
//! feeds every message through the always-on checks and into the transcript.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use imap_types::response::{Response, Status, StatusKind};
use tokio::time::Instant;

use crate::checks::Violation;
use crate::checks::imap::ImapChecks;
use crate::net::{NetError, TlsClient};
use crate::proto::imap::{ImapConnection, Parsed, ServerFrame};
use crate::report::{Direction, Transcript, TranscriptEntry};
use crate::script::Loc;

/// Everything a running session reports into: transcript, checks and violations.
pub struct Sink<'a> {
    pub transcript: &'a mut Transcript,
    pub checks: &'a mut ImapChecks,
    pub violations: &'a mut Vec<Violation>,
}

impl Sink<'_> {
    fn record(&mut self, session: &str, direction: Direction, setup: bool, bytes: &[u8]) {
        crate::report::trace::message(session, direction, setup, bytes);
        self.transcript.entries.push(TranscriptEntry {
            session: session.to_string(),
            direction,
            setup,
            bytes: bytes.to_vec(),
        });
    }

    fn add_violations(&mut self, found: Vec<Violation>, loc: Option<&Loc>) {
        for mut v in found {
            if v.loc.is_none() {
                v.loc = loc.cloned();
            }
            self.violations.push(v);
        }
    }
}

/// The tagged status of a completed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Ok,
    No,
    Bad,
}

/// What a server message is, for the engine's own bookkeeping.
pub fn tagged_completion(frame: &ServerFrame) -> Option<(String, Completion)> {
    match &frame.parsed {
        Parsed::Response(Response::Status(Status::Tagged(t))) => {
            let c = match t.body.kind {
                StatusKind::Ok => Completion::Ok,
                StatusKind::No => Completion::No,
                StatusKind::Bad => Completion::Bad,
            };
            Some((t.tag.inner().to_string(), c))
        }
        // A tagged line imap-codec could not parse still completes its tag: take the first word.
        Parsed::Unparsed(_) => {
            let line = frame.raw.split(|b| *b == b'\n').next().unwrap_or(&[]);
            let mut words = line.split(|b| *b == b' ');
            let tag = words.next()?;
            let status = words.next()?;
            if tag.is_empty() || tag == b"*" || tag == b"+" {
                return None;
            }
            let status = String::from_utf8_lossy(status).to_ascii_uppercase();
            let c = match status.trim_end() {
                "OK" => Completion::Ok,
                "NO" => Completion::No,
                "BAD" => Completion::Bad,
                _ => return None,
            };
            Some((String::from_utf8_lossy(tag).into_owned(), c))
        }
        _ => None,
    }
}

pub fn is_continuation(frame: &ServerFrame) -> bool {
    match &frame.parsed {
        Parsed::Response(Response::CommandContinuationRequest(_)) => true,
        Parsed::Unparsed(_) => frame.raw.starts_with(b"+"),
        _ => false,
    }
}

pub fn is_bye(frame: &ServerFrame) -> bool {
    match &frame.parsed {
        Parsed::Response(Response::Status(Status::Bye(_))) => true,
        Parsed::Greeting(g) => matches!(g.kind, imap_types::response::GreetingKind::Bye),
        _ => false,
    }
}

/// A connected IMAP session.
pub struct Session {
    pub name: String,
    conn: ImapConnection,
    /// Received, not yet consumed by a step.
    pub pending: VecDeque<ServerFrame>,
    /// Tags sent and not yet completed.
    pub outstanding: BTreeSet<String>,
    /// Tag of a STARTTLS command sent by the script: upgrade on its OK.
    pub starttls_tag: Option<String>,
    /// Tag of a LOGOUT: the connection ends after its completion.
    pub logout_tag: Option<String>,
    pub closed: bool,
    pub server_name: String,
    pub tls: TlsClient,
    /// Capabilities last seen (upper-case), for LITERAL+ fallback.
    pub capabilities: BTreeSet<String>,
    /// Counter for the harness's own tags (`mt1`, `mt2`, ...), per session so that
    /// snapshots do not depend on what other connections did.
    tag_counter: u32,
}

impl Session {
    pub fn new(name: &str, conn: ImapConnection, server_name: &str, tls: TlsClient) -> Session {
        Session {
            name: name.to_string(),
            conn,
            pending: VecDeque::new(),
            outstanding: BTreeSet::new(),
            starttls_tag: None,
            logout_tag: None,
            closed: false,
            server_name: server_name.to_string(),
            tls,
            capabilities: BTreeSet::new(),
            tag_counter: 0,
        }
    }

    /// Send bytes (part of a client message); the caller records the whole message.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.conn.send(bytes).await
    }

    /// Record a whole client message that was sent, and run the checks on it.
    pub fn sent(&mut self, sink: &mut Sink<'_>, setup: bool, bytes: &[u8], loc: Option<&Loc>) {
        sink.record(&self.name, Direction::Client, setup, bytes);
        let found = sink.checks.client_message(&self.name, bytes);
        sink.add_violations(found, loc);
    }

    /// Read one server message within `deadline`, record and check it, and do the
    /// bookkeeping (completions, STARTTLS upgrade, LOGOUT). The frame goes to `pending`.
    pub async fn read_one(
        &mut self,
        sink: &mut Sink<'_>,
        setup: bool,
        deadline: Instant,
        loc: Option<&Loc>,
    ) -> Result<(), NetError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let frame = match self.conn.read_frame(wait).await {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, NetError::Closed(_)) {
                    self.close(sink, loc);
                }
                return Err(e);
            }
        };
        self.accept(sink, setup, frame, loc).await
    }

    async fn accept(
        &mut self,
        sink: &mut Sink<'_>,
        setup: bool,
        frame: ServerFrame,
        loc: Option<&Loc>,
    ) -> Result<(), NetError> {
        sink.record(&self.name, Direction::Server, setup, &frame.raw);
        let found = sink.checks.server_message(&self.name, &frame);
        sink.add_violations(found, loc);
        self.note_capabilities(&frame);
        let completion = tagged_completion(&frame);
        self.pending.push_back(frame);
        if let Some((tag, status)) = completion {
            self.outstanding.remove(&tag);
            if self.starttls_tag.as_deref() == Some(tag.as_str()) {
                self.starttls_tag = None;
                if status == Completion::Ok {
                    let tls = self.tls.clone();
                    let name = self.server_name.clone();
                    self.conn.starttls(&tls, &name).await?;
                    // RFC 3501 6.2.1: capabilities learnt before the upgrade are void.
                    self.capabilities.clear();
                }
            }
            if self.logout_tag.as_deref() == Some(tag.as_str()) && status == Completion::Ok {
                self.close(sink, loc);
            }
        }
        Ok(())
    }

    fn note_capabilities(&mut self, frame: &ServerFrame) {
        use imap_types::response::{Code, Data};
        let caps: Option<Vec<String>> = match &frame.parsed {
            Parsed::Response(Response::Data(Data::Capability(c))) => {
                Some(c.as_ref().iter().map(|c| c.to_string()).collect())
            }
            Parsed::Response(Response::Status(Status::Tagged(t))) => match &t.body.code {
                Some(Code::Capability(c)) => {
                    Some(c.as_ref().iter().map(|c| c.to_string()).collect())
                }
                _ => None,
            },
            Parsed::Response(Response::Status(Status::Untagged(b))) => match &b.code {
                Some(Code::Capability(c)) => {
                    Some(c.as_ref().iter().map(|c| c.to_string()).collect())
                }
                _ => None,
            },
            Parsed::Greeting(g) => match &g.code {
                Some(Code::Capability(c)) => {
                    Some(c.as_ref().iter().map(|c| c.to_string()).collect())
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(caps) = caps {
            self.capabilities = caps.into_iter().map(|c| c.to_ascii_uppercase()).collect();
        }
    }

    /// The connection is over: tell the checks once.
    pub fn close(&mut self, sink: &mut Sink<'_>, loc: Option<&Loc>) {
        if !self.closed {
            self.closed = true;
            let found = sink.checks.session_closed(&self.name);
            sink.add_violations(found, loc);
        }
    }

    /// Read until `tag` is completed; returns its completion status.
    pub async fn wait_tag(
        &mut self,
        sink: &mut Sink<'_>,
        setup: bool,
        tag: &str,
        timeout: Duration,
        loc: Option<&Loc>,
    ) -> Result<Completion, NetError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self
                .pending
                .iter()
                .filter_map(tagged_completion)
                .find(|(t, _)| t == tag)
                .map(|(_, c)| c)
            {
                return Ok(c);
            }
            self.read_one(sink, setup, deadline, loc).await?;
        }
    }

    /// Run one harness command (setup/teardown): send, wait for its completion, and
    /// return the server messages of the exchange.
    pub async fn command(
        &mut self,
        sink: &mut Sink<'_>,
        tag: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<(Completion, Vec<ServerFrame>), NetError> {
        let bytes = format!("{tag} {text}\r\n").into_bytes();
        self.send_raw(&bytes).await?;
        self.outstanding.insert(tag.to_string());
        self.sent(sink, true, &bytes, None);
        let status = self.wait_tag(sink, true, tag, timeout, None).await?;
        Ok((status, self.pending.drain(..).collect()))
    }

    /// Read a message announcing a synchronizing literal's go-ahead (`+`), or the command's
    /// rejection. Frames read meanwhile stay pending.
    pub async fn wait_continuation(
        &mut self,
        sink: &mut Sink<'_>,
        tag: Option<&str>,
        timeout: Duration,
        loc: Option<&Loc>,
    ) -> Result<bool, NetError> {
        let deadline = Instant::now() + timeout;
        let mut seen = self.pending.len();
        loop {
            while seen < self.pending.len() {
                let f = &self.pending[seen];
                seen += 1;
                if is_continuation(f) {
                    return Ok(true);
                }
                if let (Some(tag), Some((t, _))) = (tag, tagged_completion(f))
                    && t == tag
                {
                    return Ok(false);
                }
            }
            self.read_one(sink, false, deadline, loc).await?;
        }
    }

    /// A fresh tag for a harness command.
    pub fn next_tag(&mut self) -> String {
        self.tag_counter += 1;
        format!("mt{}", self.tag_counter)
    }

    /// Whether the server announced LITERAL+ (RFC 7888), so `{N+}` may be sent as is.
    pub fn has_literal_plus(&self) -> bool {
        self.capabilities.contains("LITERAL+")
    }
}
