//! One POP3 connection: the RFC 1939 state machine (AUTHORIZATION -> TRANSACTION -> UPDATE)
//! over the shared codec, and the loop that reads lines and writes replies on any byte
//! stream. STLS hands the stream back to the caller for the TLS handshake (RFC 2595 4), after
//! which the same session goes on over TLS.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use mailtape_proto::pop3::{
    Command, FramedLine, LineFramer, MAX_COMMAND_LINE, RespCode, SingleLine, continuation,
    encode_message, encode_multiline, parse_command, top_lines,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, trace};

use super::Shared;
use super::maildrop::{Lookup, Maildrop};

/// Longest SASL response line (RFC 5034 4). Longer than a command line because the 255-octet
/// limit of RFC 2449 4 is about commands; 8 KiB holds any PLAIN response a test or client
/// sends and still bounds memory.
const MAX_SASL_LINE: usize = 8 * 1024;

/// Client mistakes tolerated in one session (syntax errors, unknown commands, commands in the
/// wrong state, failed logins). A real client that makes ten is lost or probing; closing the
/// connection bounds what a hostile one can do.
pub(crate) const MAX_BAD_COMMANDS: u32 = 10;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Pending output above which the session writes before handling more pipelined commands, so
/// a client that pipelines many RETRs cannot make the server buffer them all.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// How long a closing `-ERR` may take to write: a courtesy that must not hold up a shutdown.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// The SASL mechanisms offered (RFC 5034; RFC 4616 PLAIN).
const MECHANISMS: [&str; 1] = ["PLAIN"];

/// RFC 1939 3 states; UPDATE is the QUIT handler itself.
enum State {
    Authorization {
        /// The name given by USER, waiting for PASS.
        user: Option<String>,
    },
    /// AUTH PLAIN sent `+ ` and waits for the client's response line.
    SaslPlain,
    Transaction(Maildrop),
}

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    StartTls,
    Close,
}

/// How [`Session::serve`] returned normally.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// STLS was accepted: do the TLS handshake on the stream, then serve again.
    StartTls,
    /// QUIT, or too many bad commands.
    Close,
}

/// Why a session ended abnormally.
#[derive(Debug)]
pub(crate) enum End {
    Closed,
    Timeout,
    Shutdown,
    Io(std::io::Error),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    framer: LineFramer,
    out: Vec<u8>,
    state: State,
    tls_active: bool,
    bad_commands: u32,
    shutdown: watch::Receiver<bool>,
}

impl Session {
    pub fn new(shared: Arc<Shared>, tls_active: bool, shutdown: watch::Receiver<bool>) -> Self {
        let mut out = Vec::new();
        SingleLine::ok("mailtape reference POP3 server ready").encode(&mut out);
        Self {
            shared,
            framer: LineFramer::new(MAX_COMMAND_LINE),
            out,
            state: State::Authorization { user: None },
            tls_active,
            bad_commands: 0,
            shutdown,
        }
    }

    /// Reads and answers commands until QUIT, STLS, close, timeout or shutdown.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<Next, End> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            while let Some(line) = self.framer.next_line() {
                match self.handle(line) {
                    Step::Continue => {}
                    Step::StartTls => {
                        self.flush(stream).await?;
                        // Anything pipelined after STLS arrived in plaintext: drop it.
                        self.framer.clear();
                        self.tls_active = true;
                        return Ok(Next::StartTls);
                    }
                    Step::Close => {
                        self.flush(stream).await?;
                        return Ok(Next::Close);
                    }
                }
                if self.out.len() > FLUSH_THRESHOLD {
                    self.flush(stream).await?;
                }
            }
            self.flush(stream).await?;
            let timeout = self.shared.limits.idle_timeout;
            let n = tokio::select! {
                r = stream.read(&mut buf) => r?,
                _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
                _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
            };
            if n == 0 {
                return Err(End::Closed);
            }
            trace!(bytes = n, "recv");
            self.framer.feed(&buf[..n]);
        }
    }

    /// Writes the pending output, bounded by the idle timeout and shutdown so a client that
    /// stops reading cannot hold the session.
    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        trace!(bytes = out.len(), "send");
        let timeout = self.shared.limits.idle_timeout;
        let write = async {
            stream.write_all(&out).await?;
            stream.flush().await
        };
        tokio::select! {
            r = write => r?,
            _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
            _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
        }
        Ok(())
    }

    /// Says why the session ends (if the client can still hear it) and closes the stream.
    /// Dropping the session afterwards releases the maildrop lock without an UPDATE: a session
    /// that ends without QUIT deletes nothing (RFC 1939 6).
    pub async fn finish<S: AsyncWrite + Unpin>(&mut self, stream: &mut S, end: &Result<Next, End>) {
        let goodbye = match end {
            Err(End::Timeout) => Some(SingleLine::err("Autologout; idle for too long")),
            Err(End::Shutdown) => {
                Some(SingleLine::err("Server shutting down").with_code(RespCode::SYS_TEMP))
            }
            Err(End::Io(e)) => {
                debug!(error = %e, "session ended by I/O error");
                None
            }
            Err(End::Closed) => {
                debug!("client closed the connection");
                None
            }
            Ok(_) => None,
        };
        if let Some(line) = goodbye {
            self.out.clear();
            line.encode(&mut self.out);
            let out = std::mem::take(&mut self.out);
            let write = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, write).await;
        }
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, stream.shutdown()).await;
    }

    fn reply(&mut self, line: SingleLine) {
        line.encode(&mut self.out);
    }

    /// A client mistake: `-ERR` with the reason, or the last `-ERR` before closing.
    fn bad(&mut self, line: SingleLine) -> Step {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            self.reply(SingleLine::err(format!(
                "{}; too many errors, closing the connection",
                line.text
            )));
            return Step::Close;
        }
        self.reply(line);
        Step::Continue
    }

    fn handle(&mut self, line: FramedLine) -> Step {
        if matches!(self.state, State::SaslPlain) {
            return self.sasl_response(line);
        }
        let bytes = match line {
            FramedLine::TooLong { len } => {
                return self.bad(SingleLine::err(format!(
                    "Command line too long ({len} octets; RFC 2449 4 allows {MAX_COMMAND_LINE})"
                )));
            }
            FramedLine::Line { bytes, .. } => bytes,
        };
        let cmd = match parse_command(&bytes) {
            Ok(cmd) => cmd,
            Err(e) => return self.bad(SingleLine::err(format!("Syntax error: {e}"))),
        };
        debug!(command = cmd.keyword(), "command");
        match std::mem::replace(&mut self.state, State::Authorization { user: None }) {
            State::Authorization { user } => self.authorization(cmd, user),
            State::Transaction(drop) => self.transaction(cmd, drop),
            // Answered by `sasl_response` at the top; never a command.
            State::SaslPlain => Step::Continue,
        }
    }

    /// The CAPA response (RFC 2449 5). STLS only where it can be used (RFC 2595 8:
    /// AUTHORIZATION state, not yet TLS); everything else is announced in both states.
    fn capa(&mut self) {
        let mut caps = vec![
            "TOP".to_string(),
            "UIDL".into(),
            "USER".into(),
            format!("SASL {}", MECHANISMS.join(" ")),
            "RESP-CODES".into(),
            "AUTH-RESP-CODE".into(),
            "PIPELINING".into(),
            "EXPIRE NEVER".into(),
            "IMPLEMENTATION mailtape-reference".into(),
        ];
        if !self.tls_active && matches!(self.state, State::Authorization { .. }) {
            caps.push("STLS".into());
        }
        encode_multiline(
            &SingleLine::ok("Capability list follows"),
            caps.iter().map(|c| c.as_bytes()),
            &mut self.out,
        );
    }

    fn authorization(&mut self, cmd: Command, user: Option<String>) -> Step {
        match cmd {
            Command::User { name } => {
                self.state = State::Authorization { user: Some(name) };
                self.reply(SingleLine::ok("Send PASS"));
                Step::Continue
            }
            Command::Pass { password } => match user {
                Some(name) => self.login(&name, password.expose()),
                None => self.bad(SingleLine::err("Send USER first")),
            },
            Command::Auth {
                mechanism: None, ..
            } => {
                encode_multiline(
                    &SingleLine::ok("Supported mechanisms follow"),
                    MECHANISMS.iter().map(|m| m.as_bytes()),
                    &mut self.out,
                );
                Step::Continue
            }
            Command::Auth {
                mechanism: Some(mech),
                initial_response,
            } => {
                if !MECHANISMS.iter().any(|m| m.eq_ignore_ascii_case(&mech)) {
                    return self.bad(SingleLine::err("Unsupported authentication mechanism"));
                }
                match initial_response {
                    Some(ir) => self.plain(ir.expose().as_bytes()),
                    None => {
                        continuation("", &mut self.out);
                        self.framer.set_max_line(MAX_SASL_LINE);
                        self.state = State::SaslPlain;
                        Step::Continue
                    }
                }
            }
            Command::Apop { .. } => self.bad(SingleLine::err(
                "APOP is not supported (no timestamp in the greeting)",
            )),
            Command::Capa => {
                self.state = State::Authorization { user };
                self.capa();
                Step::Continue
            }
            Command::Stls => {
                if self.tls_active {
                    self.state = State::Authorization { user };
                    return self.bad(SingleLine::err("TLS is already active"));
                }
                // The USER name given in plaintext is forgotten (RFC 2595 4: start over).
                self.reply(SingleLine::ok("Begin TLS negotiation"));
                Step::StartTls
            }
            Command::Quit => {
                self.reply(SingleLine::ok("mailtape POP3 server signing off"));
                Step::Close
            }
            Command::Unknown { keyword, .. } => {
                self.state = State::Authorization { user };
                self.bad(SingleLine::err(format!("Unknown command {keyword}")))
            }
            other => {
                self.state = State::Authorization { user };
                self.bad(SingleLine::err(format!(
                    "{} is not valid in the AUTHORIZATION state; log in first",
                    other.keyword()
                )))
            }
        }
    }

    /// The client's line after `+ ` (RFC 5034 4): base64 PLAIN data or `*` to cancel.
    fn sasl_response(&mut self, line: FramedLine) -> Step {
        self.framer.set_max_line(MAX_COMMAND_LINE);
        self.state = State::Authorization { user: None };
        match line {
            FramedLine::TooLong { .. } => self.bad(SingleLine::err("Authentication line too long")),
            FramedLine::Line { bytes, .. } if bytes == b"*" => {
                self.bad(SingleLine::err("Authentication cancelled"))
            }
            FramedLine::Line { bytes, .. } => self.plain(&bytes),
        }
    }

    /// Checks a PLAIN response (RFC 4616 2): base64 of `authzid NUL authcid NUL passwd`, with
    /// `=` standing for an empty response (RFC 5034 4).
    fn plain(&mut self, b64: &[u8]) -> Step {
        let data = if b64 == b"=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(b64)
        };
        let Ok(data) = data else {
            return self.bad(SingleLine::err("Invalid base64 in authentication exchange"));
        };
        let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        let [authz, authc, pass] = fields.as_slice() else {
            return self.bad(SingleLine::err("Malformed PLAIN response"));
        };
        if !authz.is_empty() && authz != authc {
            return self.bad(
                SingleLine::err("Authorization identity not allowed").with_code(RespCode::AUTH),
            );
        }
        let (Ok(user), Ok(pass)) = (std::str::from_utf8(authc), std::str::from_utf8(pass)) else {
            return self.bad(SingleLine::err("Invalid credentials").with_code(RespCode::AUTH));
        };
        self.login(user, pass)
    }

    /// Authenticates, locks and opens the maildrop (RFC 1939 4: TRANSACTION only with the
    /// lock; RFC 2449 8.1.2 `[IN-USE]` when another session holds it).
    fn login(&mut self, user: &str, password: &str) -> Step {
        let Some(name) = self.shared.store.authenticate(user, password) else {
            return self.bad(SingleLine::err("Invalid credentials").with_code(RespCode::AUTH));
        };
        let Some(lock) = self.shared.locks.acquire(&name) else {
            return self.reply_step(
                SingleLine::err("Maildrop is locked by another POP3 session")
                    .with_code(RespCode::IN_USE),
            );
        };
        let Some(maildrop) = Maildrop::open(&self.shared.store, &name, lock) else {
            return self.reply_step(
                SingleLine::err("Cannot open the maildrop").with_code(RespCode::SYS_TEMP),
            );
        };
        debug!(user = name, "authenticated");
        let (count, octets) = maildrop.stat();
        self.reply(SingleLine::ok(format!(
            "{name}'s maildrop has {count} messages ({octets} octets)"
        )));
        self.state = State::Transaction(maildrop);
        Step::Continue
    }

    fn reply_step(&mut self, line: SingleLine) -> Step {
        self.reply(line);
        Step::Continue
    }

    fn transaction(&mut self, cmd: Command, mut md: Maildrop) -> Step {
        let mut out = std::mem::take(&mut self.out);
        match cmd {
            Command::Stat => {
                let (count, octets) = md.stat();
                SingleLine::ok(format!("{count} {octets}")).encode(&mut out);
            }
            Command::List { msg: None } => {
                let (count, octets) = md.stat();
                let lines: Vec<String> =
                    md.live().map(|(n, e)| format!("{n} {}", e.size)).collect();
                encode_multiline(
                    &SingleLine::ok(format!("{count} messages ({octets} octets)")),
                    lines.iter().map(|l| l.as_bytes()),
                    &mut out,
                );
            }
            Command::List { msg: Some(n) } => match md.get(n) {
                Ok(e) => SingleLine::ok(format!("{n} {}", e.size)).encode(&mut out),
                Err(l) => SingleLine::err(l.text()).encode(&mut out),
            },
            Command::Retr { msg } => match md.get(msg) {
                Ok(e) => encode_message(
                    &SingleLine::ok(format!("{} octets", e.size)),
                    &e.content.raw,
                    &mut out,
                ),
                Err(l) => SingleLine::err(l.text()).encode(&mut out),
            },
            Command::Top { msg, lines } => match md.get(msg) {
                Ok(e) => encode_multiline(
                    &SingleLine::ok("Top of message follows"),
                    top_lines(&e.content.raw, lines),
                    &mut out,
                ),
                Err(l) => SingleLine::err(l.text()).encode(&mut out),
            },
            Command::Dele { msg } => match md.delete(msg) {
                Ok(()) => SingleLine::ok(format!("Message {msg} deleted")).encode(&mut out),
                Err(Lookup::Deleted) => {
                    SingleLine::err(format!("Message {msg} already deleted")).encode(&mut out)
                }
                Err(l) => SingleLine::err(l.text()).encode(&mut out),
            },
            Command::Uidl { msg: None } => {
                let lines: Vec<String> = md
                    .live()
                    .map(|(n, e)| format!("{n} {}", md.uidl(e)))
                    .collect();
                encode_multiline(
                    &SingleLine::ok("Unique-id listing follows"),
                    lines.iter().map(|l| l.as_bytes()),
                    &mut out,
                );
            }
            Command::Uidl { msg: Some(n) } => match md.get(n) {
                Ok(e) => SingleLine::ok(format!("{n} {}", md.uidl(e))).encode(&mut out),
                Err(l) => SingleLine::err(l.text()).encode(&mut out),
            },
            Command::Noop => SingleLine::ok("").encode(&mut out),
            Command::Rset => {
                md.reset();
                let (count, octets) = md.stat();
                SingleLine::ok(format!("Maildrop has {count} messages ({octets} octets)"))
                    .encode(&mut out);
            }
            Command::Capa => {
                self.out = out;
                self.state = State::Transaction(md);
                self.capa();
                return Step::Continue;
            }
            Command::Quit => {
                // UPDATE (RFC 1939 6): the lock goes with the maildrop.
                match md.update(&self.shared.store) {
                    Ok(left) => SingleLine::ok(format!(
                        "mailtape POP3 server signing off ({left} messages left)"
                    ))
                    .encode(&mut out),
                    Err(e) => SingleLine::err(format!("{e}; no message was deleted"))
                        .with_code(RespCode::SYS_TEMP)
                        .encode(&mut out),
                }
                self.out = out;
                return Step::Close;
            }
            other => {
                self.out = out;
                self.state = State::Transaction(md);
                return match other {
                    Command::Unknown { keyword, .. } => {
                        self.bad(SingleLine::err(format!("Unknown command {keyword}")))
                    }
                    other => self.bad(SingleLine::err(format!(
                        "{} is not valid in the TRANSACTION state",
                        other.keyword()
                    ))),
                };
            }
        }
        self.out = out;
        self.state = State::Transaction(md);
        Step::Continue
    }
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            // The server handle is gone: treat it as shutdown.
            return;
        }
    }
}
