//! The POP3 service (RFC 1939 with CAPA, UIDL, TOP, RESP-CODES, PIPELINING, SASL PLAIN and
//! STLS): listeners for the plain port (STLS) and the implicit-TLS port, and the
//! per-connection task. The maildrop is the user's INBOX in the shared store, so IMAP and POP3
//! see the same messages.
//!
//! # Layout
//! - `session`: the state machine and the read/answer loop, on any byte stream
//! - `maildrop`: the session's numbered snapshot of the INBOX, the lock, UPDATE

mod maildrop;
mod session;

use std::sync::Arc;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info_span};

use crate::limits::Limits;
use crate::store::Store;
use maildrop::Locks;
use session::{End, Next, Session};

/// What every POP3 session of one server shares.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub tls: Arc<ServerConfig>,
    pub limits: Limits,
    locks: Arc<Locks>,
}

impl Shared {
    pub fn new(store: Arc<Store>, tls: Arc<ServerConfig>, limits: Limits) -> Self {
        Self {
            store,
            tls,
            limits,
            locks: Arc::new(Locks::default()),
        }
    }
}

/// Accepts connections until shutdown. `implicit_tls` selects the pop3s behaviour.
pub(crate) async fn listen(
    listener: TcpListener,
    implicit_tls: bool,
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
        b"-ERR [SYS/TEMP] Too many sessions, try again later\r\n",
        |peer| info_span!("pop3", %peer, tls = implicit_tls),
        |tcp, _peer, shutdown| connection(tcp, implicit_tls, Arc::clone(&shared), shutdown),
    )
    .await;
}

/// Serves one connection: the TLS handshake first on the pop3s port, or later after STLS.
async fn connection(
    tcp: TcpStream,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut session = Session::new(Arc::clone(&shared), implicit_tls, shutdown.clone());
    let mut tcp = tcp;
    if !implicit_tls {
        let end = session.serve(&mut tcp).await;
        if !matches!(end, Ok(Next::StartTls)) {
            session.finish(&mut tcp, &end).await;
            return;
        }
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&shared.tls));
    let handshake = tokio::time::timeout(shared.limits.idle_timeout, acceptor.accept(tcp));
    let mut tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    debug!("TLS active");
    let mut end = session.serve(&mut tls).await;
    if matches!(end, Ok(Next::StartTls)) {
        // The session refuses a second STLS, so this cannot happen; end cleanly if it does.
        end = Err(End::Closed);
    }
    session.finish(&mut tls, &end).await;
}
