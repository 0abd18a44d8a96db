//! One SMTP session: the RFC 5321 state (greeting, transaction, authentication), command
//! dispatch on smtp-proto's `Request`, AUTH exchanges and DATA. Generic over the byte stream,
//! so the same session code serves plain TCP and, after STARTTLS, TLS.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::ServerConfig;
use smtp_proto::{EhloResponse, Error as ParseError, MailFrom, RcptTo, Request};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::Role;
use super::auth::{self, LOGIN_PASSWORD, LOGIN_USERNAME, Response};
use super::io::{Connection, End, Line};
use super::limits::{MAX_AUTH_LINE, MAX_COMMAND_LINE, MAX_TEXT_LINE, SmtpLimits};
use super::reply::Reply;
use super::trace::TraceInfo;
use crate::store::Store;

/// What every SMTP session of one server shares.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub tls: Arc<ServerConfig>,
    pub limits: SmtpLimits,
    pub domain: String,
    pub next_id: AtomicU64,
}

/// How `serve` ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// QUIT, or the error limit: the pending output is the last thing to send.
    Close,
    /// `220` is pending; the caller upgrades the stream and serves again.
    StartTls,
}

/// The client's EHLO/HELO.
#[derive(Debug)]
struct Greeted {
    host: String,
    esmtp: bool,
}

/// A recipient accepted by RCPT.
#[derive(Debug)]
enum Recipient {
    /// Delivered to `user`'s INBOX.
    Local { user: String, address: String },
    /// Accepted from an authenticated client for another domain. The reference server has
    /// no outbound queue, so such a copy is accepted and dropped (logged).
    Relay { address: String },
}

#[derive(Debug)]
struct Transaction {
    reverse_path: String,
    recipients: Vec<Recipient>,
}

/// One session's protocol state.
pub(crate) struct Session {
    id: u64,
    shared: Arc<Shared>,
    role: Role,
    peer: SocketAddr,
    tls: bool,
    greeted: Option<Greeted>,
    user: Option<String>,
    transaction: Option<Transaction>,
    errors: usize,
    transactions: u64,
}

/// The enhanced status codes used here (RFC 3463), named for readability.
mod esc {
    pub const OK: [u8; 3] = [2, 0, 0];
    pub const SENDER_OK: [u8; 3] = [2, 1, 0];
    pub const RCPT_OK: [u8; 3] = [2, 1, 5];
    pub const AUTH_OK: [u8; 3] = [2, 7, 0];
    pub const BAD_SEQUENCE: [u8; 3] = [5, 5, 1];
    pub const SYNTAX: [u8; 3] = [5, 5, 2];
    pub const BAD_ARGS: [u8; 3] = [5, 5, 4];
    pub const AUTH_LINE_TOO_LONG: [u8; 3] = [5, 5, 6];
    pub const NO_MAILBOX: [u8; 3] = [5, 1, 1];
    pub const BAD_RCPT_SYNTAX: [u8; 3] = [5, 1, 3];
    pub const BAD_SENDER_SYNTAX: [u8; 3] = [5, 1, 7];
    pub const TOO_BIG: [u8; 3] = [5, 3, 4];
    pub const TOO_MANY_RCPTS: [u8; 3] = [4, 5, 3];
    pub const MEDIA: [u8; 3] = [5, 6, 0];
    pub const NON_ASCII: [u8; 3] = [5, 6, 7];
    pub const DENIED: [u8; 3] = [5, 7, 1];
    pub const AUTH_REQUIRED: [u8; 3] = [5, 7, 0];
    pub const BAD_CREDENTIALS: [u8; 3] = [5, 7, 8];
    pub const CANCELLED: [u8; 3] = [5, 0, 0];
    pub const LOCAL_ERROR: [u8; 3] = [4, 3, 0];
    pub const TOO_MANY_ERRORS: [u8; 3] = [4, 7, 0];
    pub const TIMEOUT: [u8; 3] = [4, 4, 2];
    pub const SHUTDOWN: [u8; 3] = [4, 3, 2];
}

fn sequence(text: &'static str) -> Reply {
    Reply::new(503, esc::BAD_SEQUENCE, text)
}

/// The reply for a line smtp-proto could not turn into a request.
fn parse_error(error: ParseError, line: &[u8]) -> Reply {
    match error {
        ParseError::UnknownCommand => Reply::new(500, esc::BAD_SEQUENCE, "Command unrecognized"),
        ParseError::InvalidSenderAddress => {
            Reply::new(501, esc::BAD_SENDER_SYNTAX, "Bad sender address syntax")
        }
        ParseError::InvalidRecipientAddress => {
            Reply::new(501, esc::BAD_RCPT_SYNTAX, "Bad recipient address syntax")
        }
        ParseError::SyntaxError { syntax } if syntax.starts_with("AUTH") => {
            // smtp-proto reports an unknown mechanism as a syntax error; RFC 4954 wants 504.
            let words = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            if words.count() >= 2 {
                Reply::new(504, esc::BAD_ARGS, "Unrecognized authentication type")
            } else {
                Reply::new(501, esc::SYNTAX, format!("Syntax: {syntax}"))
            }
        }
        ParseError::SyntaxError { syntax } => {
            Reply::new(501, esc::SYNTAX, format!("Syntax: {syntax}"))
        }
        ParseError::InvalidParameter { param } => {
            Reply::new(501, esc::BAD_ARGS, format!("Invalid {param} parameter"))
        }
        ParseError::UnsupportedParameter { param } => Reply::new(
            555,
            esc::BAD_ARGS,
            format!("Parameter {param} not recognized or not implemented"),
        ),
        ParseError::NeedsMoreData { .. }
        | ParseError::ResponseTooLong
        | ParseError::InvalidResponse { .. } => Reply::new(500, esc::SYNTAX, "Syntax error"),
    }
}

/// MAIL parameters of extensions this server does not announce (RFC 5321 4.1.1.11: 555).
/// Accepted: SIZE, BODY=7BIT/8BITMIME, and AUTH=, which RFC 4954 section 5 requires of a
/// server that offers AUTH.
fn unsupported_mail_parameter(from: &MailFrom<Cow<'_, str>>) -> Option<&'static str> {
    let allowed = smtp_proto::MAIL_BODY_7BIT | smtp_proto::MAIL_BODY_8BITMIME;
    let flags = from.flags & !allowed;
    if flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
        Some("BODY=BINARYMIME")
    } else if flags & smtp_proto::MAIL_SMTPUTF8 != 0 {
        Some("SMTPUTF8")
    } else if flags & smtp_proto::MAIL_REQUIRETLS != 0 {
        Some("REQUIRETLS")
    } else if flags & (smtp_proto::MAIL_RET_FULL | smtp_proto::MAIL_RET_HDRS) != 0
        || from.env_id.is_some()
    {
        Some("RET/ENVID")
    } else if flags != 0 || from.by != 0 {
        Some("BY/CONPERM")
    } else if from.trans_id.is_some() || from.solicit.is_some() || from.mtrk.is_some() {
        Some("TRANSID/SOLICIT/MTRK")
    } else if from.hold_for != 0 || from.hold_until != 0 {
        Some("HOLDFOR/HOLDUNTIL")
    } else if from.mt_priority != 0 {
        Some("MT-PRIORITY")
    } else {
        None
    }
}

fn has_rcpt_parameters(to: &RcptTo<Cow<'_, str>>) -> bool {
    to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0
}

impl Session {
    pub fn new(shared: Arc<Shared>, role: Role, peer: SocketAddr) -> Self {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        Self {
            id,
            shared,
            role,
            peer,
            tls: false,
            greeted: None,
            user: None,
            transaction: None,
            errors: 0,
            transactions: 0,
        }
    }

    /// Enhanced status codes are in use once the client said EHLO.
    fn enhanced(&self) -> bool {
        self.greeted.as_ref().is_some_and(|g| g.esmtp)
    }

    fn reply<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Connection<S>, r: Reply) {
        if r.is_protocol_error() {
            self.errors += 1;
        }
        r.encode(self.enhanced(), &mut conn.out);
    }

    /// The `220` greeting (no enhanced code: RFC 2034 section 4).
    pub fn greet<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Connection<S>) {
        let text = format!(
            "{} ESMTP mailtape reference server ready",
            self.shared.domain
        );
        Reply::plain(220, text).encode(false, &mut conn.out);
    }

    /// After the TLS handshake: RFC 3207 section 4.2 makes the server forget everything the
    /// client said before (EHLO, AUTH, any transaction).
    pub fn start_tls_done(&mut self) {
        self.tls = true;
        self.greeted = None;
        self.user = None;
        self.transaction = None;
    }

    /// The closing `421` for a session ended by the server.
    pub fn goodbye<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        end: &End,
    ) {
        let domain = &self.shared.domain;
        let reply = match end {
            End::Timeout => Reply::new(
                421,
                esc::TIMEOUT,
                format!("{domain} Timeout; closing transmission channel"),
            ),
            End::Shutdown => Reply::new(
                421,
                esc::SHUTDOWN,
                format!("{domain} Service shutting down; closing transmission channel"),
            ),
            End::Closed | End::Io(_) => return,
        };
        reply.encode(self.enhanced(), &mut conn.out);
    }

    /// Serves commands until QUIT, STARTTLS, the error limit or an I/O end.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<After, End> {
        loop {
            let after = match conn.read_line(MAX_COMMAND_LINE).await? {
                Line::TooLong => {
                    // RFC 5321 4.5.3.1.4 suggests "500 Line too long"; 5.5.6 belongs to
                    // AUTH exchange lines (RFC 4954), so a command gets the syntax code.
                    self.reply(conn, Reply::new(500, esc::SYNTAX, "Line too long"));
                    None
                }
                Line::Complete(line) => self.command(conn, &line).await?,
            };
            if let Some(after) = after {
                return Ok(after);
            }
            if self.errors >= self.shared.limits.max_errors {
                let text = format!("{} Too many errors; closing connection", self.shared.domain);
                self.reply(conn, Reply::new(421, esc::TOO_MANY_ERRORS, text));
                return Ok(After::Close);
            }
        }
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        line: &[u8],
    ) -> Result<Option<After>, End> {
        if !line.ends_with(b"\r\n") {
            // RFC 5321 2.3.8: lines end with CRLF; a bare LF is not accepted.
            self.reply(
                conn,
                Reply::new(500, esc::SYNTAX, "Command line must end with CRLF"),
            );
            return Ok(None);
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "unparsable command");
                let reply = parse_error(e, line);
                self.reply(conn, reply);
                return Ok(None);
            }
        };
        debug!(command = request.name(), "command");
        // RFC 5321 4.1.1.5 (`rset = "RSET" CRLF`) and RFC 3207 4 (`STARTTLS` with a
        // parameter gets 501): these take nothing after the verb.
        if matches!(request, Request::Rset | Request::StartTls)
            && line
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .count()
                > 1
        {
            let reply = Reply::new(
                501,
                esc::BAD_ARGS,
                format!("{} takes no parameters", request.name()),
            );
            self.reply(conn, reply);
            return Ok(None);
        }
        let reply = match request {
            Request::Ehlo { host } => {
                self.hello(conn, host.into_owned(), true);
                return Ok(None);
            }
            Request::Helo { host } => {
                self.hello(conn, host.into_owned(), false);
                return Ok(None);
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to, line),
            Request::Data => return self.data(conn).await.map(|()| None),
            Request::Auth {
                mechanism,
                initial_response,
            } => {
                let initial = initial_response.into_owned();
                return self.auth(conn, mechanism, initial).await.map(|()| None);
            }
            Request::StartTls => {
                let refusal = if self.tls {
                    Some(sequence("TLS already active"))
                } else if self.greeted.is_none() {
                    Some(sequence("Send EHLO first"))
                } else {
                    None
                };
                return Ok(match refusal {
                    Some(reply) => {
                        self.reply(conn, reply);
                        None
                    }
                    None => {
                        self.reply(conn, Reply::new(220, esc::OK, "Ready to start TLS"));
                        Some(After::StartTls)
                    }
                });
            }
            Request::Rset => {
                self.transaction = None;
                Reply::new(250, esc::OK, "Reset OK")
            }
            Request::Noop { .. } => Reply::new(250, esc::OK, "OK"),
            Request::Quit => {
                let text = format!("{} closing connection", self.shared.domain);
                self.reply(conn, Reply::new(221, esc::OK, text));
                return Ok(Some(After::Close));
            }
            // VRFY never reveals whether a user exists (RFC 5321 3.5.3 permits 252).
            Request::Vrfy { .. } => Reply::new(
                252,
                esc::RCPT_OK,
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Request::Help { .. } => Reply::new(
                214,
                esc::OK,
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            ),
            Request::Bdat { chunk_size, .. } => {
                // The chunk follows the command regardless of the reply: drop it so the
                // next command is framed correctly.
                conn.discard(chunk_size).await?;
                Reply::new(502, esc::BAD_SEQUENCE, "BDAT not implemented (no CHUNKING)")
            }
            Request::Expn { .. }
            | Request::Lhlo { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Reply::new(502, esc::BAD_SEQUENCE, "Command not implemented"),
        };
        self.reply(conn, reply);
        Ok(None)
    }

    /// EHLO/HELO: a new greeting also ends any transaction (RFC 5321 4.1.4).
    fn hello<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        host: String,
        esmtp: bool,
    ) {
        self.transaction = None;
        self.greeted = Some(Greeted { host, esmtp });
        if !esmtp {
            let text = format!("{} Hello", self.shared.domain);
            Reply::plain(250, text).encode(false, &mut conn.out);
            return;
        }
        let mut ehlo = EhloResponse::new(self.shared.domain.as_str());
        ehlo.capabilities = smtp_proto::EXT_PIPELINING
            | smtp_proto::EXT_SIZE
            | smtp_proto::EXT_8BIT_MIME
            | smtp_proto::EXT_ENHANCED_STATUS_CODES
            | smtp_proto::EXT_AUTH;
        if !self.tls {
            ehlo.capabilities |= smtp_proto::EXT_START_TLS;
        }
        ehlo.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
        ehlo.size = self.shared.limits.max_message_size;
        // Writing into a Vec cannot fail.
        let _ = ehlo.write(&mut conn.out);
    }

    fn mail(&mut self, from: MailFrom<Cow<'_, str>>) -> Reply {
        if self.greeted.is_none() {
            return sequence("Send EHLO or HELO first");
        }
        if self.transaction.is_some() {
            return sequence("Nested MAIL command");
        }
        if self.role == Role::Submission && self.user.is_none() {
            return Reply::new(530, esc::AUTH_REQUIRED, "Authentication required");
        }
        if let Some(param) = unsupported_mail_parameter(&from) {
            return Reply::new(
                555,
                esc::BAD_ARGS,
                format!("Parameter {param} not recognized or not implemented"),
            );
        }
        if !from.address.is_ascii() {
            // No SMTPUTF8 offered (RFC 6531 3.7.4.1).
            return Reply::new(553, esc::NON_ASCII, "Non-ASCII address not permitted");
        }
        if from.size > self.shared.limits.max_message_size {
            return Reply::new(
                552,
                esc::TOO_BIG,
                "Message size exceeds fixed maximum message size",
            );
        }
        let text = format!("Sender <{}> OK", from.address);
        self.transaction = Some(Transaction {
            reverse_path: from.address.into_owned(),
            recipients: Vec::new(),
        });
        Reply::new(250, esc::SENDER_OK, text)
    }

    /// The account a local part names, ignoring case. `postmaster` must always be accepted
    /// (RFC 5321 4.5.1): without such an account it goes to the first account.
    fn local_user(&self, local: &str) -> Option<String> {
        let state = self.shared.store.lock();
        let found = state
            .users
            .keys()
            .find(|u| u.eq_ignore_ascii_case(local))
            .cloned();
        if found.is_none() && local.eq_ignore_ascii_case("postmaster") {
            return state.users.keys().next().cloned();
        }
        found
    }

    fn rcpt(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Reply {
        let limit = self.shared.limits.max_recipients;
        let Some(transaction) = self.transaction.as_ref() else {
            return sequence("Need MAIL before RCPT");
        };
        if has_rcpt_parameters(&to) {
            return Reply::new(
                555,
                esc::BAD_ARGS,
                "RCPT parameters not recognized or not implemented",
            );
        }
        if transaction.recipients.len() >= limit {
            // RFC 5321 4.5.3.1.10: 452, and the client sends the rest in a new transaction.
            return Reply::new(452, esc::TOO_MANY_RCPTS, "Too many recipients");
        }
        let mut address = to.address.into_owned();
        if address.is_empty() {
            // smtp-proto returns <postmaster> as an empty address, the same as the null
            // path <>, which is no forward-path at all: tell them apart by the line.
            let upper = line.to_ascii_uppercase();
            if !upper.windows(12).any(|w| w == b"<POSTMASTER>") {
                return Reply::new(501, esc::BAD_RCPT_SYNTAX, "Null forward-path");
            }
            address = "postmaster".to_string();
        }
        if !address.is_ascii() {
            return Reply::new(553, esc::NON_ASCII, "Non-ASCII address not permitted");
        }
        let (local, domain) = match address.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                (local, Some(domain))
            }
            Some(_) => {
                return Reply::new(501, esc::BAD_RCPT_SYNTAX, "Bad recipient address syntax");
            }
            // Only <postmaster> may come without a domain (RFC 5321 4.1.1.3).
            None if address.eq_ignore_ascii_case("postmaster") => (address.as_str(), None),
            None => {
                return Reply::new(
                    501,
                    esc::BAD_RCPT_SYNTAX,
                    "Recipient address needs a domain",
                );
            }
        };
        let is_local = domain.is_none_or(|d| d.eq_ignore_ascii_case(&self.shared.domain));
        let recipient = if is_local {
            match self.local_user(local) {
                Some(user) => Recipient::Local {
                    user,
                    address: address.clone(),
                },
                None => {
                    return Reply::new(550, esc::NO_MAILBOX, "Mailbox unavailable: no such user");
                }
            }
        } else if self.user.is_some() {
            Recipient::Relay {
                address: address.clone(),
            }
        } else {
            return Reply::new(550, esc::DENIED, "Relay access denied");
        };
        if let Some(t) = self.transaction.as_mut() {
            t.recipients.push(recipient);
        }
        Reply::new(250, esc::RCPT_OK, format!("Recipient <{address}> OK"))
    }

    async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<(), End> {
        match &self.transaction {
            None => {
                self.reply(conn, sequence("Need MAIL command"));
                return Ok(());
            }
            Some(t) if t.recipients.is_empty() => {
                self.reply(conn, sequence("Need RCPT command (no valid recipients)"));
                return Ok(());
            }
            Some(_) => {}
        }
        self.reply(
            conn,
            Reply::plain(354, "Start mail input; end with <CRLF>.<CRLF>"),
        );
        let limits = &self.shared.limits;
        let data = conn
            .read_data(limits.max_message_size, MAX_TEXT_LINE)
            .await?;
        // The transaction ends with the reply to the data, whatever it is.
        let Some(transaction) = self.transaction.take() else {
            return Ok(());
        };
        let reply = if data.too_big {
            Reply::new(
                552,
                esc::TOO_BIG,
                "Message size exceeds fixed maximum message size",
            )
        } else if data.bare_newline {
            // Refused rather than repaired: bare CR/LF is how SMTP smuggling starts.
            Reply::new(
                554,
                esc::MEDIA,
                "Message refused: bare CR or LF; lines must end with CRLF",
            )
        } else if data.long_line {
            Reply::new(
                554,
                esc::MEDIA,
                "Message refused: a text line exceeds 1000 octets",
            )
        } else {
            self.deliver(transaction, &data.message)
        };
        self.reply(conn, reply);
        Ok(())
    }

    fn deliver(&mut self, transaction: Transaction, message: &[u8]) -> Reply {
        self.transactions += 1;
        let id = format!("{}.{}", self.id, self.transactions);
        let (host, esmtp) = self
            .greeted
            .as_ref()
            .map_or(("", false), |g| (g.host.as_str(), g.esmtp));
        let info = TraceInfo {
            reverse_path: &transaction.reverse_path,
            helo: host,
            peer: self.peer.ip(),
            domain: &self.shared.domain,
            esmtp,
            tls: self.tls,
            authenticated: self.user.is_some(),
            id: &id,
            date: chrono::Local::now().fixed_offset(),
        };
        let mut copies: Vec<(String, Vec<u8>)> = Vec::new();
        for recipient in &transaction.recipients {
            match recipient {
                Recipient::Local { user, address } => {
                    // A user named twice gets one copy.
                    if copies.iter().any(|(u, _)| u == user) {
                        continue;
                    }
                    let mut raw = info.headers(address).into_bytes();
                    raw.extend_from_slice(message);
                    copies.push((user.clone(), raw));
                }
                Recipient::Relay { address } => {
                    debug!(%address, "relay recipient dropped: no outbound queue");
                }
            }
        }
        match self.shared.store.deliver(copies) {
            Ok(()) => Reply::new(
                250,
                esc::OK,
                format!("Message accepted for delivery, id {id}"),
            ),
            Err(e) => {
                debug!(error = %e, "delivery failed");
                Reply::new(
                    451,
                    esc::LOCAL_ERROR,
                    "Local error in processing; try again later",
                )
            }
        }
    }

    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        mechanism: u64,
        initial: String,
    ) -> Result<(), End> {
        let refusal = if !self.enhanced() {
            Some(sequence("Send EHLO first"))
        } else if self.user.is_some() {
            Some(sequence("Already authenticated"))
        } else if self.transaction.is_some() {
            Some(sequence("AUTH not permitted during a mail transaction"))
        } else if mechanism != smtp_proto::AUTH_PLAIN && mechanism != smtp_proto::AUTH_LOGIN {
            Some(Reply::new(
                504,
                esc::BAD_ARGS,
                "Unrecognized authentication type",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.reply(conn, reply);
            return Ok(());
        }
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let message = if initial.is_empty() {
                self.challenge(conn, "").await?
            } else {
                Ok(auth::decode(&initial))
            };
            message.and_then(|m| match m {
                Response::Data(bytes) => auth::parse_plain(&bytes)
                    .map(|p| (p.authcid, p.password))
                    .ok_or_else(invalid_credentials),
                other => Err(sasl_refusal(other)),
            })
        } else {
            let user = if initial.is_empty() {
                self.challenge(conn, LOGIN_USERNAME).await?
            } else {
                Ok(auth::decode(&initial))
            };
            match user {
                Ok(Response::Data(user)) => match self.challenge(conn, LOGIN_PASSWORD).await? {
                    Ok(Response::Data(password)) => Ok((
                        String::from_utf8_lossy(&user).into_owned(),
                        String::from_utf8_lossy(&password).into_owned(),
                    )),
                    Ok(other) => Err(sasl_refusal(other)),
                    Err(reply) => Err(reply),
                },
                Ok(other) => Err(sasl_refusal(other)),
                Err(reply) => Err(reply),
            }
        };
        let reply = match credentials {
            Ok((user, password)) => match self.shared.store.authenticate(&user, &password) {
                Some(name) => {
                    self.user = Some(name);
                    Reply::new(235, esc::AUTH_OK, "Authentication successful")
                }
                None => invalid_credentials(),
            },
            Err(reply) => reply,
        };
        self.reply(conn, reply);
        Ok(())
    }

    /// Sends `334 <challenge>` and reads the client's response line.
    async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        challenge: &'static str,
    ) -> Result<Result<Response, Reply>, End> {
        Reply::plain(334, challenge).encode(false, &mut conn.out);
        match conn.read_line(MAX_AUTH_LINE).await? {
            Line::TooLong => Ok(Err(Reply::new(
                500,
                esc::AUTH_LINE_TOO_LONG,
                "Authentication exchange line is too long",
            ))),
            Line::Complete(line) => {
                let text = String::from_utf8_lossy(&line);
                Ok(Ok(auth::decode(text.trim_end_matches(['\r', '\n']))))
            }
        }
    }
}

fn invalid_credentials() -> Reply {
    Reply::new(
        535,
        esc::BAD_CREDENTIALS,
        "Authentication credentials invalid",
    )
}

/// The reply to a SASL response that carried no data.
fn sasl_refusal(response: Response) -> Reply {
    match response {
        Response::Cancel => Reply::new(501, esc::CANCELLED, "Authentication cancelled"),
        _ => Reply::new(501, esc::SYNTAX, "Cannot decode base64 response"),
    }
}
