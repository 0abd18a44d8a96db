//! The accept loop every service shares: accept until shutdown, back off after a failed
//! accept, hold a session permit per connection (the session limit is one for all protocols)
//! or refuse with the protocol's own "too busy" line, and keep the server alive while any
//! session runs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{Instrument, Span, debug, warn};

/// Pause after a failed accept() (e.g. no file descriptors left) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepts connections until shutdown and runs `serve` for each in a task of its own, inside
/// the span `span` makes for it. Over the session limit, `busy` is written and the
/// connection closed.
pub(crate) async fn accept_loop<S, F>(
    listener: TcpListener,
    sessions: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    busy: &'static [u8],
    span: impl Fn(SocketAddr) -> Span,
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
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
        let alive = alive.clone();
        let span = span(peer);
        match Arc::clone(&sessions).try_acquire_owned() {
            Ok(permit) => {
                let work = serve(tcp, peer, shutdown.clone());
                tokio::spawn(
                    async move {
                        let _alive = alive;
                        let _permit = permit;
                        work.await;
                    }
                    .instrument(span),
                );
            }
            Err(_) => {
                tokio::spawn(
                    async move {
                        let _alive = alive;
                        let mut tcp = tcp;
                        debug!("session limit reached");
                        let _ = tcp.write_all(busy).await;
                        let _ = tcp.shutdown().await;
                    }
                    .instrument(span),
                );
            }
        }
    }
}
