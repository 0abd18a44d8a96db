//! The IMAP4rev1 service: listeners for the plain (STARTTLS) and implicit-TLS ports and the
//! per-connection task with its tracing span.
//!
//! # Layout
//! - `session`: framing, state machine, dispatch, STARTTLS/AUTHENTICATE/IDLE
//! - `mailboxes`: authenticated-state commands (SELECT, LIST, APPEND, ...)
//! - `messages`: selected-state commands (STORE, SEARCH, COPY, MOVE, EXPUNGE, CLOSE)
//! - `fetch`: FETCH and its data items
//! - `select`: the selected view and unsolicited updates
//! - `status`: OK/NO/BAD/BYE and the greeting, encoded with imap-codec
//! - `search`, `mime`, `response`, `stream`: helpers named for what they do

mod fetch;
mod mailboxes;
mod messages;
mod mime;
mod response;
mod search;
mod select;
pub(crate) mod session;
mod status;
mod stream;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info_span};

use session::{Session, Shared};
use stream::Stream;

/// Accepts connections until shutdown. `implicit_tls` selects the imaps behaviour.
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
        b"* BYE Too many sessions, try again later\r\n",
        |peer| info_span!("imap", %peer, tls = implicit_tls),
        |tcp, _peer, shutdown| connection(tcp, implicit_tls, Arc::clone(&shared), shutdown),
    )
    .await;
}

/// One connection: the TLS handshake first on the imaps port, then the session.
async fn connection(
    tcp: tokio::net::TcpStream,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = if implicit_tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&shared.tls));
        let handshake = tokio::time::timeout(shared.limits.idle_timeout, acceptor.accept(tcp));
        tokio::select! {
            r = handshake => match r {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
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
        }
    } else {
        Stream::Plain(tcp)
    };
    Session::new(shared, stream, implicit_tls, shutdown)
        .run()
        .await;
}
