//! One connection through the proxy: connect upstream, terminate TLS towards the client
//! where the upstream speaks implicit TLS, relay bytes both ways unchanged (forward first,
//! then hand a copy to the observer), and switch both legs to TLS when STARTTLS/STLS is
//! accepted. Memory per connection is two fixed buffers: a side is read only when what was
//! read from it has been written on.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Shared;
use super::journal::Entry;
use super::observe::{self, Observer};
use crate::net::{self, Stream};
use crate::report::Direction;
use crate::target::{Endpoint, Security};

const BUF: usize = 16 * 1024;
/// How long the upstream's last answer is awaited after the client closed (at most the read
/// timeout).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How a relay phase ended.
enum Outcome {
    /// One side closed; nothing went wrong.
    Closed,
    /// The upstream accepted STARTTLS/STLS: upgrade both legs, then relay again.
    Upgrade,
    /// The proxy is stopping.
    Stopped,
    /// Something went wrong; the note says what.
    Failed(String),
}

/// Serves one accepted connection to its end and records it as `session`.
pub async fn connection(
    tcp: TcpStream,
    upstream: Endpoint,
    shared: Arc<Shared>,
    session: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let mut observer = observe::for_protocol(
        upstream.protocol,
        shared.keep_secrets,
        shared.capture_uidvalidity,
    );
    let result = serve(
        tcp,
        &upstream,
        &shared,
        session,
        observer.as_mut(),
        &mut shutdown,
    )
    .await;
    let mut out = Vec::new();
    observer.finish(&mut out);
    if let Err(note) = result {
        out.push(Entry::Note(note));
    }
    shared.record(session, out, observer.user());
    if let Ok(mut j) = shared.journal.lock()
        && let Some(s) = j.sessions.get_mut(session)
    {
        s.open = false;
    }
}

async fn serve(
    tcp: TcpStream,
    ep: &Endpoint,
    shared: &Shared,
    session: usize,
    observer: &mut dyn Observer,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut upstream = net::connect(ep, &shared.tls_client, &shared.timeouts)
        .await
        .map_err(|e| format!("upstream {}: {e}; the client was disconnected", ep.url()))?;
    let mut client = Stream::Plain(tcp);
    if ep.security == Security::Implicit {
        client = client
            .accept_tls(&shared.acceptor, shared.timeouts.tls)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut greeting = true;
    loop {
        let outcome = relay(
            &mut client,
            &mut upstream,
            observer,
            shared,
            session,
            shutdown,
            greeting,
        )
        .await;
        greeting = false;
        match outcome {
            Outcome::Closed => return Ok(()),
            Outcome::Stopped => {
                return Err("the proxy stopped while this connection was open".into());
            }
            Outcome::Failed(note) => return Err(note),
            Outcome::Upgrade => {
                upstream = upstream
                    .upgrade(&shared.tls_client, &ep.host, shared.timeouts.tls)
                    .await
                    .map_err(|e| {
                        format!(
                            "TLS upgrade towards the upstream {} failed: {e}; the client was disconnected",
                            ep.url()
                        )
                    })?;
                client = client
                    .accept_tls(&shared.acceptor, shared.timeouts.tls)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
}

/// Relays until a side closes, an upgrade is due, or something fails.
async fn relay(
    client: &mut Stream,
    upstream: &mut Stream,
    observer: &mut dyn Observer,
    shared: &Shared,
    session: usize,
    shutdown: &mut watch::Receiver<bool>,
    greeting: bool,
) -> Outcome {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let mut cbuf = vec![0u8; BUF];
    let mut ubuf = vec![0u8; BUF];
    let (mut to_up, mut up_off) = (Vec::with_capacity(BUF), 0usize);
    let (mut to_cl, mut cl_off) = (Vec::with_capacity(BUF), 0usize);
    let (mut flush_up, mut flush_cl) = (false, false);
    let (mut client_eof, mut upstream_eof) = (false, false);
    let mut upgrade = false;
    // Set once the client has closed: until when the upstream's last answer is still read.
    let mut drain_until: Option<Instant> = None;
    // The client stopped taking bytes after it closed; what the upstream says is still recorded.
    let mut client_gone = false;
    // Since when the upstream owes the client an answer (greeting, or bytes the client sent).
    let mut owed_since = greeting.then(Instant::now);
    let read_timeout = shared.timeouts.read;
    if *shutdown.borrow() {
        return Outcome::Stopped;
    }
    loop {
        let up_pending = up_off < to_up.len();
        let cl_pending = cl_off < to_cl.len();
        if upgrade && !up_pending && !cl_pending && !flush_up && !flush_cl {
            return Outcome::Upgrade;
        }
        if upstream_eof && !cl_pending && !flush_cl {
            let _ = cw.shutdown().await;
            return Outcome::Closed;
        }
        if client_eof && !up_pending && !flush_up && drain_until.is_none() {
            // The client is done sending, but the server may still owe it the answer to the
            // last command (a LOGOUT's BYE, a QUIT's 221): keep reading for a short, bounded
            // while so the recording ends with it.
            let _ = uw.shutdown().await;
            drain_until = Some(Instant::now() + read_timeout.min(DRAIN));
        }
        let deadline = drain_until.or(owed_since.map(|t| t + read_timeout));
        let timer = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let can_read_client =
            !up_pending && !client_eof && !upgrade && !observer.starttls_pending();
        let can_read_upstream = !cl_pending && !upstream_eof && !upgrade;
        tokio::select! {
            // One future per direction: write what is pending, else flush. Each is a single
            // cancel-safe operation, so no byte is written twice or lost.
            r = write_or_flush(&mut uw, &to_up[up_off..]), if up_pending || flush_up => match r {
                Ok(Some(0)) => return Outcome::Failed("the upstream stopped accepting data".into()),
                Ok(Some(n)) => {
                    up_off += n;
                    if up_off == to_up.len() {
                        to_up.clear();
                        up_off = 0;
                        flush_up = true;
                    }
                }
                Ok(None) => flush_up = false,
                Err(e) => return Outcome::Failed(format!("writing to the upstream: {e}")),
            },
            r = write_or_flush(&mut cw, &to_cl[cl_off..]), if cl_pending || flush_cl => match r {
                // A client that closed may not read its last answer; that is not a failure.
                Ok(Some(0)) | Err(_) if client_eof => {
                    client_gone = true;
                    to_cl.clear();
                    cl_off = 0;
                    flush_cl = false;
                }
                Ok(Some(0)) => return Outcome::Failed("the client stopped accepting data".into()),
                Ok(Some(n)) => {
                    cl_off += n;
                    if cl_off == to_cl.len() {
                        to_cl.clear();
                        cl_off = 0;
                        flush_cl = true;
                    }
                }
                Ok(None) => flush_cl = false,
                Err(e) => return Outcome::Failed(format!("writing to the client: {e}")),
            },
            r = cr.read(&mut cbuf), if can_read_client => match r {
                Ok(0) => client_eof = true,
                Ok(n) => {
                    let chunk = &cbuf[..n];
                    crate::report::trace::message(&(session + 1).to_string(), Direction::Client, false, chunk);
                    to_up.extend_from_slice(chunk);
                    shared.stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                    let mut out = Vec::new();
                    observer.client(chunk, &mut out);
                    shared.record(session, out, observer.user());
                    owed_since = Some(Instant::now());
                }
                Err(e) => return Outcome::Failed(format!("reading from the client: {e}")),
            },
            r = ur.read(&mut ubuf), if can_read_upstream => match r {
                Ok(0) => upstream_eof = true,
                Ok(n) => {
                    owed_since = None;
                    let chunk = &ubuf[..n];
                    let mut out = Vec::new();
                    let forward = if observer.starttls_pending() {
                        // Line by line, to stop right after the line that accepts the upgrade.
                        let mut fed = 0;
                        while fed < n {
                            let end = chunk[fed..]
                                .iter()
                                .position(|&b| b == b'\n')
                                .map_or(n, |i| fed + i + 1);
                            observer.server(&chunk[fed..end], &mut out);
                            fed = end;
                            if observer.take_upgrade() {
                                upgrade = true;
                                break;
                            }
                        }
                        fed
                    } else {
                        observer.server(chunk, &mut out);
                        upgrade = observer.take_upgrade();
                        n
                    };
                    if forward < n {
                        // RFC 3501 6.2.1, RFC 2595 4, RFC 3207 4: bytes after the OK and
                        // before the handshake must not be used.
                        out.push(Entry::Note(format!(
                            "the upstream sent {} bytes after accepting STARTTLS, before the TLS handshake; they were dropped",
                            n - forward
                        )));
                    }
                    crate::report::trace::message(&(session + 1).to_string(), Direction::Server, false, &chunk[..forward]);
                    if !client_gone {
                        to_cl.extend_from_slice(&chunk[..forward]);
                    }
                    shared.stats.bytes_down.fetch_add(forward as u64, Ordering::Relaxed);
                    shared.record(session, out, observer.user());
                }
                Err(e) => return Outcome::Failed(format!("reading from the upstream: {e}")),
            },
            () = timer => {
                if drain_until.is_some() {
                    return Outcome::Closed;
                }
                return Outcome::Failed(format!(
                    "the upstream sent nothing for {read_timeout:?} while the client waited; the client was disconnected"
                ));
            }
            _ = shutdown.changed() => return Outcome::Stopped,
        }
    }
}

/// Writes some of `pending` (`Some(n)`), or flushes when nothing is pending (`None`).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    w: &mut W,
    pending: &[u8],
) -> io::Result<Option<usize>> {
    if pending.is_empty() {
        w.flush().await.map(|()| None)
    } else {
        w.write(pending).await.map(Some)
    }
}
