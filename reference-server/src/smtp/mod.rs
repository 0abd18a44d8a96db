//! The SMTP service (RFC 5321): a port-25 style listener that takes mail for local users
//! without authentication, and a submission listener (RFC 6409 role) that requires AUTH
//! before MAIL. Both offer PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS and
//! AUTH PLAIN/LOGIN, and deliver into the store that IMAP serves.
//!
//! # Behaviour choices
//! - VRFY answers `252 2.1.5` for every argument: it never tells whether a user exists.
//!   EXPN, BDAT (its chunk is read and dropped), ETRN, ATRN, BURL and LHLO get `502 5.5.1`.
//! - A bare CR or LF inside DATA is refused after the data with `554 5.6.0`, not repaired
//!   (it is how SMTP smuggling starts); only CRLF.CRLF ends the data. A command line ending
//!   in a bare LF gets `500 5.5.2`. A text line over 1000 octets: `554 5.6.0`.
//! - A command line over 512 octets gets `500 5.5.2 Line too long` (5.5.6 is RFC 4954's
//!   code for an over-long AUTH response line, which is used for that).
//! - On delivery each copy gets `Return-Path: <reverse-path>` and
//!   `Received: from <helo> ([ip]) by <domain> (mailtape reference server) with <proto>
//!   id <session>.<n> for <rcpt>; <date>` on top, proto per RFC 3848.
//! - `postmaster` (with or without the domain) goes to an account of that name, else to
//!   the first account. Local parts match account names case-insensitively.
//! - After AUTH, a non-local recipient is accepted (relaying is allowed) but the copy is
//!   dropped: the reference server has no outbound queue.
//! - Errors that count toward the limit: 500, 501, 503, 530, 535, 555.
//!
//! # Layout
//! - `session`: state machine and commands (smtp-proto parses them)
//! - `io`: input buffer, line and DATA framing, timeouts
//! - `auth`: SASL PLAIN and LOGIN pieces
//! - `trace`: the `Return-Path:`/`Received:` fields added on delivery
//! - `reply`: replies with enhanced status codes
//! - `limits`: RFC sizes and the tunable [`SmtpLimits`]

mod auth;
mod io;
pub mod limits;
mod reply;
pub(crate) mod session;
mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info_span};

pub use limits::SmtpLimits;

use io::{Connection, End};
use session::{After, Session, Shared};

/// How long a closing `421`/`221` may take to write: a courtesy that must not delay a
/// server shutdown when the client does not read.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which listener a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Port 25: mail for local users from anyone; relaying only after AUTH.
    Mx,
    /// Port 587: AUTH before MAIL.
    Submission,
}

/// Accepts connections until shutdown.
pub(crate) async fn listen(
    listener: TcpListener,
    role: Role,
    shared: Arc<Shared>,
    sessions: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    crate::listener::accept_loop(
        listener,
        sessions,
        shutdown,
        alive,
        // RFC 5321 3.1 allows refusing a connection with a 421 greeting.
        b"421 4.3.2 Too many connections, try again later\r\n",
        |peer| info_span!("smtp", %peer, ?role),
        |tcp, peer, shutdown| handle(tcp, peer, role, Arc::clone(&shared), shutdown),
    )
    .await;
}

/// One connection: plain first, then (after STARTTLS) the same session over TLS.
async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    role: Role,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = shared.limits.idle_timeout;
    let tls = Arc::clone(&shared.tls);
    let mut session = Session::new(shared, role, peer);
    let mut conn = Connection::new(tcp, timeout, shutdown.clone());
    session.greet(&mut conn);
    let outcome = session.serve(&mut conn).await;
    if !matches!(outcome, Ok(After::StartTls)) {
        finish(&mut session, &mut conn, outcome).await;
        return;
    }
    if let Err(end) = conn.flush().await {
        debug!(?end, "STARTTLS reply not sent");
        return;
    }
    let tcp = conn.into_stream();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    session.start_tls_done();
    let mut conn = Connection::new(stream, timeout, shutdown);
    let outcome = session.serve(&mut conn).await;
    finish(&mut session, &mut conn, outcome).await;
}

/// Sends the last reply (221, or 421 for the error limit, a timeout or shutdown) and closes.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    conn: &mut Connection<S>,
    outcome: Result<After, End>,
) {
    match &outcome {
        Ok(_) => debug!("session closed"),
        Err(End::Closed) => debug!("client closed the connection"),
        Err(End::Io(e)) => debug!(error = %e, "session ended by I/O error"),
        Err(end) => {
            debug!(?end, "session ended by the server");
            session.goodbye(conn, end);
        }
    }
    if !matches!(outcome, Err(End::Closed | End::Io(_))) {
        conn.flush_goodbye(GOODBYE_TIMEOUT).await;
    }
}
