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
use tracing::{Instrument, debug, info_span, warn};

use session::{Session, Shared};
use stream::Stream;

/// Pause after a failed accept() (e.g. no file descriptors left) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepts connections until shutdown. `implicit_tls` selects the imaps behaviour.
pub(crate) async fn listen(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<Shared>,
    sessions: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let permit = Arc::clone(&sessions).try_acquire_owned();
        let shared = Arc::clone(&shared);
        let mut shutdown = shutdown.clone();
        let alive = alive.clone();
        let span = info_span!("imap", %peer, tls = implicit_tls);
        tokio::spawn(
            async move {
                let _alive = alive;
                let Ok(_permit) = permit else {
                    use tokio::io::AsyncWriteExt;
                    let mut tcp = tcp;
                    debug!("session limit reached");
                    let _ = tcp
                        .write_all(b"* BYE Too many sessions, try again later\r\n")
                        .await;
                    let _ = tcp.shutdown().await;
                    return;
                };
                let stream = if implicit_tls {
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&shared.tls));
                    let handshake =
                        tokio::time::timeout(shared.limits.idle_timeout, acceptor.accept(tcp));
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
            .instrument(span),
        );
    }
}
