//! One IMAP connection: framing with imap-codec's Fragmentizer, the RFC 3501 state machine,
//! command dispatch, and the commands that do their own I/O (STARTTLS, AUTHENTICATE, IDLE).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, trace};

use super::select::Selected;
use super::status::{self, Kind, ReplyCode};
use super::stream::Stream;
use crate::limits::Limits;
use crate::store::Store;

/// What every session of one server shares.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub tls: Arc<ServerConfig>,
    pub limits: Limits,
    pub next_id: AtomicU64,
}

/// RFC 3501 section 3 connection states (logout ends the loop).
pub(crate) enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Selected),
    Logout,
}

/// Tagged completion result.
pub(crate) enum Status {
    Ok,
    No,
    Bad,
}

/// The tagged response a command ends with.
pub(crate) struct Reply {
    pub status: Status,
    pub code: Option<ReplyCode>,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    pub fn no(text: impl Into<String>) -> Self {
        Self {
            status: Status::No,
            code: None,
            text: text.into(),
        }
    }
    pub fn bad(text: impl Into<String>) -> Self {
        Self {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }
    pub fn code(mut self, code: ReplyCode) -> Self {
        self.code = Some(code);
        self
    }
}

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum End {
    Closed,
    Timeout,
    Shutdown,
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        End::Io(e)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// A command: literals are allowed and a synchronizing one gets `+`.
    Command,
    /// AUTHENTICATE data or IDLE's DONE: a single line, literals are not part of the grammar.
    Line,
}

enum Incoming {
    Message {
        bytes: Vec<u8>,
        too_long: bool,
        too_big: bool,
    },
    StoreChanged,
}

pub(crate) struct Session {
    pub id: u64,
    pub shared: Arc<Shared>,
    stream: Stream,
    frag: Fragmentizer,
    pub out: Vec<u8>,
    pub state: State,
    pub user: String,
    pub tls_active: bool,
    starttls_offered: bool,
    shutdown: watch::Receiver<bool>,
}

/// Bytes read from the socket at once; the Fragmentizer gets them in these chunks.
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing `* BYE` may take to write: it is a courtesy, and a client that does not
/// read must not hold up a server shutdown.
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        stream: Stream,
        tls_active: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frag = Fragmentizer::new(shared.limits.max_message());
        Self {
            id,
            shared,
            stream,
            frag,
            out: Vec::new(),
            state: State::NotAuthenticated,
            user: String::new(),
            starttls_offered: !tls_active,
            tls_active,
            shutdown,
        }
    }

    /// The capability list for the current state. STARTTLS and the AUTH= mechanisms are
    /// offered only where they can be used: before authentication (STARTTLS also only on a
    /// plain connection), as Dovecot does.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec![
            "IMAP4rev1",
            "LITERAL+",
            "SASL-IR",
            "UIDPLUS",
            "MOVE",
            "IDLE",
            "ENABLE",
            "NAMESPACE",
            "ID",
            "UNSELECT",
        ];
        if matches!(self.state, State::NotAuthenticated) {
            caps.extend(["AUTH=PLAIN", "AUTH=LOGIN"]);
            if self.starttls_offered && !self.tls_active {
                caps.push("STARTTLS");
            }
        }
        caps
    }

    pub fn untagged(&mut self, line: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn tagged(&mut self, tag: &str, reply: &Reply) {
        let kind = match reply.status {
            Status::Ok => Kind::Ok,
            Status::No => Kind::No,
            Status::Bad => Kind::Bad,
        };
        let bytes = status::encode(Some(tag), kind, reply.code.as_ref(), &reply.text);
        self.out.extend_from_slice(&bytes);
    }

    /// An untagged status response (`* OK [code] text`, `* BYE text`, ...).
    pub fn status_response(&mut self, kind: Kind, code: Option<ReplyCode>, text: &str) {
        let bytes = status::encode(None, kind, code.as_ref(), text);
        self.out.extend_from_slice(&bytes);
    }

    /// Writes the pending output. A client that stops reading cannot hold the session (or a
    /// server shutdown) forever: the write gives up after the idle timeout or on shutdown.
    pub(crate) async fn flush(&mut self) -> Result<(), End> {
        let timeout = self.shared.limits.idle_timeout;
        let out = std::mem::take(&mut self.out);
        trace!(bytes = out.len(), "send");
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        tokio::select! {
            r = write => r?,
            _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
            _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
        }
        Ok(())
    }

    /// Best-effort write of a closing BYE, bounded so it cannot delay a shutdown.
    async fn flush_goodbye(&mut self) {
        let out = std::mem::take(&mut self.out);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, write).await;
    }

    /// Serves the connection until logout, close, timeout or shutdown.
    pub async fn run(mut self) {
        let greeting = status::greeting(
            self.capabilities(),
            "mailtape reference IMAP4rev1 server ready",
        );
        self.out.extend_from_slice(&greeting);
        let end = self.serve().await;
        match &end {
            Ok(()) => debug!("session logged out"),
            Err(End::Timeout) => {
                self.status_response(Kind::Bye, None, "Autologout; idle for too long");
                self.flush_goodbye().await;
            }
            Err(End::Shutdown) => {
                self.status_response(Kind::Bye, None, "Server shutting down");
                self.flush_goodbye().await;
            }
            Err(End::Io(e)) => debug!(error = %e, "session ended by I/O error"),
            Err(End::Closed) => debug!("client closed the connection"),
        }
        let _ = self.stream.shutdown().await;
        self.deselect();
    }

    /// Leaves the selected state, ending this session's \Recent claims.
    pub fn deselect(&mut self) {
        if let State::Selected(sel) = &self.state {
            let id = sel.mailbox_id;
            let mut st = self.shared.store.lock();
            if let Some(mb) = st.mailbox_by_id(&self.user, id) {
                mb.release_recent(self.id);
            }
            drop(st);
            self.state = State::Authenticated;
        }
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            self.flush().await?;
            let (bytes, too_long, too_big) =
                match self.read_message(ReadMode::Command, None).await? {
                    Incoming::Message {
                        bytes,
                        too_long,
                        too_big,
                    } => (bytes, too_long, too_big),
                    Incoming::StoreChanged => continue,
                };
            if too_long || too_big {
                let reply = if too_big {
                    Reply::bad("Literal exceeds the size limit").code(ReplyCode::TooBig)
                } else {
                    Reply::bad("Command line too long")
                };
                self.reply_untagged_or_tagged(&reply);
                continue;
            }
            let decoded = CommandCodec::default().decode(&bytes);
            match decoded {
                Ok(([], cmd)) => {
                    let cmd = cmd.into_static_cmd();
                    self.command(cmd).await?;
                    if matches!(self.state, State::Logout) {
                        self.flush().await?;
                        return Ok(());
                    }
                }
                _ => {
                    let reply = Reply::bad("Syntax error or unknown command");
                    self.reply_untagged_or_tagged(&reply);
                }
            }
        }
    }

    /// Answers the current message, which could not be decoded or was refused: with its tag
    /// if the Fragmentizer can recover one, else untagged.
    fn reply_untagged_or_tagged(&mut self, reply: &Reply) {
        let tag = self.frag.decode_tag().map(|t| t.inner().to_string());
        match tag {
            Some(tag) => self.tagged(&tag, reply),
            None => self.status_response(Kind::Bad, reply.code.clone(), &reply.text),
        }
    }

    /// Reads one complete message (command, AUTHENTICATE line or DONE). In `Command` mode a
    /// synchronizing literal is accepted with `+` only after the command so far parses and the
    /// size is within the limit; otherwise it is refused and the client will not send it.
    async fn read_message(
        &mut self,
        mode: ReadMode,
        mut changes: Option<&mut watch::Receiver<u64>>,
    ) -> Result<Incoming, End> {
        let mut too_long = false;
        let mut too_big = false;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match self.frag.progress() {
                Some(FragmentInfo::Line {
                    start,
                    end,
                    announcement,
                    ..
                }) => {
                    if end - start > self.shared.limits.max_line {
                        too_long = true;
                        self.frag.poison_message();
                    }
                    if let Some(ann) = announcement {
                        if mode == ReadMode::Line {
                            // Not part of this grammar: take the line and do not wait for data.
                            let bytes = self.frag.message_bytes().to_vec();
                            self.frag.skip_message();
                            return Ok(Incoming::Message {
                                bytes,
                                too_long,
                                too_big,
                            });
                        }
                        let oversized = u64::from(ann.length) > self.shared.limits.max_literal;
                        if ann.mode == LiteralMode::Sync {
                            let refusal = if too_long {
                                Some(Reply::bad("Command line too long"))
                            } else if oversized {
                                Some(
                                    Reply::no("Literal exceeds the size limit")
                                        .code(ReplyCode::TooBig),
                                )
                            } else {
                                match CommandCodec::default().decode(self.frag.message_bytes()) {
                                    Err(CommandDecodeError::LiteralFound { .. }) => None,
                                    _ => Some(Reply::bad("Syntax error before literal")),
                                }
                            };
                            match refusal {
                                Some(reply) => {
                                    // The client sends no literal after a refusal, so the
                                    // message ends here.
                                    self.reply_untagged_or_tagged(&reply);
                                    self.frag.skip_message();
                                    self.flush().await?;
                                    too_long = false;
                                    too_big = false;
                                    continue;
                                }
                                None => {
                                    self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                                    self.flush().await?;
                                }
                            }
                        } else if oversized {
                            // LITERAL+ data is on its way regardless: read and drop it.
                            too_big = true;
                            self.frag.poison_message();
                        }
                    }
                    if self.frag.is_message_complete() {
                        let bytes = self.frag.message_bytes().to_vec();
                        return Ok(Incoming::Message {
                            bytes,
                            too_long,
                            too_big,
                        });
                    }
                }
                Some(FragmentInfo::Literal { .. }) => {
                    if self.frag.is_message_complete() {
                        let bytes = self.frag.message_bytes().to_vec();
                        return Ok(Incoming::Message {
                            bytes,
                            too_long,
                            too_big,
                        });
                    }
                }
                None => {
                    let timeout = self.shared.limits.idle_timeout;
                    let n = tokio::select! {
                        r = self.stream.read(&mut buf) => r?,
                        _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
                        _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
                        _ = wait_change(&mut changes) => return Ok(Incoming::StoreChanged),
                    };
                    if n == 0 {
                        return Err(End::Closed);
                    }
                    trace!(bytes = n, "recv");
                    self.frag.enqueue_bytes(&buf[..n]);
                }
            }
        }
    }

    async fn command(&mut self, cmd: Command<'static>) -> Result<(), End> {
        let tag = cmd.tag.inner().to_string();
        debug!(tag, command = cmd.body.name(), "command");
        let allow_expunge = !matches!(
            cmd.body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Copy { uid: false, .. }
                | CommandBody::Move { uid: false, .. }
        );
        let reply = match self
            .check_state(&cmd.body)
            .and_then(|()| unoffered(&cmd.body))
        {
            Err(reply) => reply,
            Ok(()) => match cmd.body {
                CommandBody::StartTLS => return self.starttls(&tag).await,
                CommandBody::Authenticate {
                    mechanism,
                    initial_response,
                } => {
                    let ir = initial_response.map(|s| s.declassify().to_vec());
                    self.authenticate(&mechanism, ir).await?
                }
                CommandBody::Idle => self.idle().await?,
                CommandBody::Fetch {
                    sequence_set,
                    macro_or_item_names,
                    uid,
                    ..
                } => self.fetch(&sequence_set, macro_or_item_names, uid).await?,
                CommandBody::Logout => {
                    self.status_response(Kind::Bye, None, "Logging out");
                    self.deselect();
                    self.state = State::Logout;
                    Reply::ok("LOGOUT completed")
                }
                body => self.execute(body),
            },
        };
        if !matches!(self.state, State::Logout) {
            self.sync(allow_expunge);
        }
        self.tagged(&tag, &reply);
        Ok(())
    }

    /// Sends pending updates of the selected mailbox.
    pub fn sync(&mut self, allow_expunge: bool) {
        if let State::Selected(sel) = &mut self.state {
            let mut st = self.shared.store.lock();
            sel.sync(&mut st, &self.user, self.id, allow_expunge, &mut self.out);
        }
    }

    /// RFC 3501 section 3: which commands each state accepts.
    fn check_state(&self, body: &CommandBody<'_>) -> Result<(), Reply> {
        use CommandBody as C;
        let any = matches!(body, C::Capability | C::Noop | C::Logout | C::Id { .. });
        let not_auth = matches!(body, C::StartTLS | C::Authenticate { .. } | C::Login { .. });
        let auth = matches!(
            body,
            C::Select { .. }
                | C::Examine { .. }
                | C::Create { .. }
                | C::Delete { .. }
                | C::Rename { .. }
                | C::Subscribe { .. }
                | C::Unsubscribe { .. }
                | C::List { .. }
                | C::Lsub { .. }
                | C::Status { .. }
                | C::Append { .. }
                | C::Idle
                | C::Namespace
        );
        let selected = matches!(
            body,
            C::Check
                | C::Close
                | C::Unselect
                | C::Expunge
                | C::ExpungeUid { .. }
                | C::Search { .. }
                | C::Fetch { .. }
                | C::Store { .. }
                | C::Copy { .. }
                | C::Move { .. }
        );
        let ok = match &self.state {
            _ if any => true,
            State::NotAuthenticated => not_auth,
            State::Authenticated => auth || matches!(body, C::Enable { .. }),
            State::Selected(_) => auth || selected,
            State::Logout => false,
        };
        if ok {
            return Ok(());
        }
        if !(any || not_auth || auth || selected || matches!(body, C::Enable { .. })) {
            return Err(Reply::bad(format!("{} is not supported", body.name())));
        }
        let why = match &self.state {
            State::NotAuthenticated => "Log in first",
            State::Authenticated if selected => "No mailbox selected",
            State::Authenticated | State::Selected(_) if not_auth => "Already authenticated",
            _ => "Command not valid in this state",
        };
        Err(Reply::bad(why))
    }

    async fn starttls(&mut self, tag: &str) -> Result<(), End> {
        if self.tls_active || !self.starttls_offered {
            self.tagged(tag, &Reply::bad("TLS is already active"));
            return Ok(());
        }
        self.tagged(tag, &Reply::ok("Begin TLS negotiation now"));
        self.flush().await?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(End::Closed);
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&self.shared.tls));
        let timeout = self.shared.limits.idle_timeout;
        let tls = tokio::select! {
            r = acceptor.accept(tcp) => r?,
            _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
            _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
        };
        self.stream = Stream::Tls(Box::new(tls));
        self.tls_active = true;
        // Anything pipelined after STARTTLS arrived in plaintext: drop it (RFC 3501 6.2.1).
        self.frag = Fragmentizer::new(self.shared.limits.max_message());
        debug!("STARTTLS done");
        Ok(())
    }

    /// Reads one AUTHENTICATE continuation line; `None` if the client cancelled with `*`.
    async fn auth_line(&mut self, challenge: &str) -> Result<Result<Vec<u8>, Reply>, End> {
        self.out
            .extend_from_slice(format!("+ {challenge}\r\n").as_bytes());
        self.flush().await?;
        let Incoming::Message {
            bytes, too_long, ..
        } = self.read_message(ReadMode::Line, None).await?
        else {
            return Ok(Err(Reply::bad("Authentication exchange failed")));
        };
        if too_long {
            return Ok(Err(Reply::bad("Authentication line too long")));
        }
        Ok(match AuthenticateDataCodec::default().decode(&bytes) {
            Ok(([], AuthenticateData::Continue(data))) => Ok(data.declassify().to_vec()),
            Ok((_, AuthenticateData::Cancel)) => Err(Reply::bad("Authentication cancelled")),
            _ => Err(Reply::bad("Invalid base64 in authentication exchange")),
        })
    }

    async fn authenticate(
        &mut self,
        mechanism: &AuthMechanism<'_>,
        ir: Option<Vec<u8>>,
    ) -> Result<Reply, End> {
        let (user, password) = match mechanism {
            AuthMechanism::Plain => {
                let data = match ir {
                    Some(d) => d,
                    None => match self.auth_line("").await? {
                        Ok(d) => d,
                        Err(r) => return Ok(r),
                    },
                };
                let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
                let [authz, authc, pass] = fields.as_slice() else {
                    return Ok(Reply::bad("Malformed PLAIN response"));
                };
                if !authz.is_empty() && authz != authc {
                    return Ok(Reply::no("Authorization identity not allowed")
                        .code(ReplyCode::Rfc5530("AUTHORIZATIONFAILED")));
                }
                (authc.to_vec(), pass.to_vec())
            }
            AuthMechanism::Login => {
                let user = match ir {
                    Some(d) => d,
                    // "Username:" and "Password:" in base64, as deployed LOGIN clients expect.
                    None => match self.auth_line("VXNlcm5hbWU6").await? {
                        Ok(d) => d,
                        Err(r) => return Ok(r),
                    },
                };
                let pass = match self.auth_line("UGFzc3dvcmQ6").await? {
                    Ok(d) => d,
                    Err(r) => return Ok(r),
                };
                (user, pass)
            }
            _ => return Ok(Reply::no("Unsupported authentication mechanism")),
        };
        Ok(self.login(&user, &password, "AUTHENTICATE"))
    }

    pub fn login(&mut self, user: &[u8], password: &[u8], what: &str) -> Reply {
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return Reply::no("Invalid credentials")
                .code(ReplyCode::Rfc5530("AUTHENTICATIONFAILED"));
        };
        match self.shared.store.authenticate(user, password) {
            Some(name) => {
                debug!(user = name, "authenticated");
                self.user = name;
                self.state = State::Authenticated;
                let caps = self.capabilities();
                Reply::ok(format!("{what} completed")).code(ReplyCode::Capability(caps))
            }
            None => {
                Reply::no("Invalid credentials").code(ReplyCode::Rfc5530("AUTHENTICATIONFAILED"))
            }
        }
    }

    /// RFC 2177 IDLE: updates are pushed as the store changes until DONE.
    async fn idle(&mut self) -> Result<Reply, End> {
        let mut changes = self.shared.store.subscribe();
        changes.borrow_and_update();
        self.out.extend_from_slice(b"+ idling\r\n");
        loop {
            self.sync(true);
            self.flush().await?;
            match self
                .read_message(ReadMode::Line, Some(&mut changes))
                .await?
            {
                Incoming::StoreChanged => continue,
                Incoming::Message { bytes, .. } => {
                    return Ok(match IdleDoneCodec::default().decode(&bytes) {
                        Ok(([], _)) => Reply::ok("IDLE terminated"),
                        _ => Reply::bad("Expected DONE"),
                    });
                }
            }
        }
    }
}

/// Refuses syntax that imap-codec parses but that belongs to extensions this server does not
/// advertise (CONDSTORE/QRESYNC parameters and modifiers): accepting and ignoring them would
/// let a client believe they took effect.
fn unoffered(body: &CommandBody<'_>) -> Result<(), Reply> {
    let used = match body {
        CommandBody::Select { parameters, .. } | CommandBody::Examine { parameters, .. } => {
            !parameters.is_empty()
        }
        CommandBody::Fetch { modifiers, .. } => !modifiers.is_empty(),
        CommandBody::Store { modifiers, .. } => !modifiers.is_empty(),
        _ => false,
    };
    if used {
        Err(Reply::bad(
            "CONDSTORE/QRESYNC parameters are not offered by this server",
        ))
    } else {
        Ok(())
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

async fn wait_change(rx: &mut Option<&mut watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Owning conversion so a decoded command outlives the read buffer.
trait IntoStaticCmd {
    fn into_static_cmd(self) -> Command<'static>;
}

impl IntoStaticCmd for Command<'_> {
    fn into_static_cmd(self) -> Command<'static> {
        use imap_codec::imap_types::IntoStatic;
        self.into_static()
    }
}
