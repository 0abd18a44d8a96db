//! `mailtape record`: a recording proxy for IMAP, POP3 and SMTP (docs/recording.md).
//!
//! - [`Recorder`]: binds one listener per [`Route`], accepts connections on all of them,
//!   writes the file(s).
//! - `proxy`: one connection: upstream connect, TLS towards the client, byte-exact relay,
//!   STARTTLS/STLS upgrades of both legs.
//! - `observe`: the interface between the relay and a protocol's transcript; `imap`,
//!   `pop3`, `smtp` frame a copy of the bytes into script lines; `lines` holds what they
//!   share.
//! - `journal`: the recorded sessions and their rendering as a scenario file.

mod imap;
pub mod journal;
mod lines;
mod observe;
mod pop3;
mod proxy;
mod smtp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use reference_server::TlsSource;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use journal::{Entry, Journal, per_connection_path};
pub use lines::RECORD_CAP;

use crate::net::TlsClient;
use crate::target::{Endpoint, Timeouts, TlsOptions};

/// One `--listen ADDR --upstream URL` pair: connections accepted on `listen` are relayed to
/// `upstream` and recorded as sessions of its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub listen: SocketAddr,
    pub upstream: Endpoint,
}

/// What to record and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// At least one; the recording's scenario protocol is the first route's, and the
    /// sessions of all routes go into the one file in accept order.
    pub routes: Vec<Route>,
    pub output: PathBuf,
    /// One file per connection (`FILE`'s stem plus `-1`, `-2`, ...).
    pub per_connection: bool,
    /// Write credentials as sent instead of variables.
    pub keep_secrets: bool,
    /// Write IMAP UIDVALIDITY values as captures (so `mailtape run` matches another server).
    pub capture_uidvalidity: bool,
    /// Stop after this many connections have ended.
    pub connections: Option<usize>,
    /// The certificate shown to clients (generated, or PEM files).
    pub cert: TlsSource,
    /// Write the certificate clients should trust (PEM) here.
    pub cert_out: Option<PathBuf>,
    /// How to verify the upstream's certificate.
    pub tls: TlsOptions,
    /// Connect and handshake limits; `read` bounds how long the upstream may keep a
    /// waiting client without a byte.
    pub timeouts: Timeouts,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("nothing to record: no listen address and upstream given")]
    NoRoute,
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {url} is not reachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: crate::net::NetError,
    },
    #[error("proxy certificate: {0}")]
    Certificate(String),
    #[error("upstream TLS settings: {0}")]
    Tls(#[from] crate::net::NetError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Stats {
    pub open: AtomicU64,
    pub done: AtomicU64,
    /// Bytes client -> upstream.
    pub bytes_up: AtomicU64,
    /// Bytes upstream -> client.
    pub bytes_down: AtomicU64,
}

/// What a finished recording produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sessions: usize,
    pub bytes: u64,
    /// Files written (none when no connection came).
    pub files: Vec<PathBuf>,
}

/// State every connection task shares.
pub(crate) struct Shared {
    pub keep_secrets: bool,
    pub capture_uidvalidity: bool,
    pub tls_client: TlsClient,
    pub acceptor: TlsAcceptor,
    pub timeouts: Timeouts,
    pub journal: Mutex<Journal>,
    pub stats: Arc<Stats>,
}

impl Shared {
    /// Appends a connection's new transcript entries, in the order they crossed.
    pub fn record(&self, session: usize, entries: Vec<Entry>, user: Option<String>) {
        if entries.is_empty() && user.is_none() {
            return;
        }
        for e in &entries {
            if let Entry::Note(n) = e {
                tracing::warn!("session {}: {n}", session + 1);
            }
        }
        if let Ok(mut j) = self.journal.lock() {
            j.push(session, entries);
            if let (Some(u), Some(s)) = (user, j.sessions.get_mut(session)) {
                s.user = Some(u);
            }
        }
    }
}

/// A bound recording proxy.
pub struct Recorder {
    /// One per route, in the order of `options.routes`.
    listeners: Vec<TcpListener>,
    options: Options,
    shared: Arc<Shared>,
}

impl Recorder {
    /// Checks that every upstream answers a TCP connect, prepares TLS both ways (writing
    /// `--cert-out`), and binds every listener.
    pub async fn bind(options: Options) -> Result<Recorder, RecordError> {
        let first = options.routes.first().ok_or(RecordError::NoRoute)?;
        let journal = Journal::new(
            options.routes.iter().map(|r| r.upstream.url()).collect(),
            first.upstream.protocol,
        );
        let tls_client = TlsClient::new(&options.tls)?;
        check_output_dir(&options.output)?;
        for route in &options.routes {
            probe(&route.upstream, &options.timeouts).await?;
        }
        let setup = reference_server::tls::build(&options.cert)
            .map_err(|e| RecordError::Certificate(e.to_string()))?;
        if let Some(path) = &options.cert_out {
            write_file(path, &pem_certificate(setup.certificate.as_ref()))?;
        }
        let mut listeners = Vec::with_capacity(options.routes.len());
        for route in &options.routes {
            let listener =
                TcpListener::bind(route.listen)
                    .await
                    .map_err(|source| RecordError::Listen {
                        addr: route.listen,
                        source,
                    })?;
            listeners.push(listener);
        }
        let shared = Arc::new(Shared {
            keep_secrets: options.keep_secrets,
            capture_uidvalidity: options.capture_uidvalidity,
            tls_client,
            acceptor: TlsAcceptor::from(setup.config),
            timeouts: options.timeouts,
            journal: Mutex::new(journal),
            stats: Arc::new(Stats::default()),
        });
        Ok(Recorder {
            listeners,
            options,
            shared,
        })
    }

    /// The address clients connect to (the first route's).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.listeners.first() {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::other("no listener")),
        }
    }

    /// Every route's listening address, in the order of the routes.
    pub fn local_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(TcpListener::local_addr).collect()
    }

    /// The next connection on any listener, with the index of its route. Polling starts
    /// at a rotating listener so that a busy one cannot starve the others; accepting is
    /// cancel-safe, so the future may be dropped in a `select!`.
    async fn accept_any(
        &self,
        start: usize,
    ) -> (usize, std::io::Result<(tokio::net::TcpStream, SocketAddr)>) {
        let n = self.listeners.len();
        std::future::poll_fn(|cx| {
            for k in 0..n {
                let i = (start + k) % n;
                if let std::task::Poll::Ready(r) = self.listeners[i].poll_accept(cx) {
                    return std::task::Poll::Ready((i, r));
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Accepts and records connections until `stop` completes or `--connections` have
    /// ended; connections still open then end with a note. The file is rewritten whenever a
    /// connection ends, and once more at the end.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Summary, RecordError> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks: JoinSet<usize> = JoinSet::new();
        let mut ended = 0usize;
        let limit = self.options.connections;
        let mut turn = 0usize;
        tokio::pin!(stop);
        loop {
            let accepting = limit.is_none_or(|n| ended + tasks.len() < n);
            tokio::select! {
                () = &mut stop => break,
                (route, r) = self.accept_any(turn), if accepting => {
                    turn = route + 1;
                    match (r, self.options.routes.get(route)) {
                        (Ok((tcp, peer)), Some(Route { upstream, .. })) => {
                            let upstream = upstream.clone();
                            let session = match self.shared.journal.lock() {
                                Ok(mut j) => j.open_session(peer.to_string(), upstream.protocol),
                                Err(_) => continue,
                            };
                            self.shared.stats.open.fetch_add(1, Ordering::Relaxed);
                            let shared = Arc::clone(&self.shared);
                            let rx = shutdown_rx.clone();
                            tasks.spawn(async move {
                                proxy::connection(tcp, upstream, shared, session, rx).await;
                                session
                            });
                        }
                        // A listener always has its route; nothing to do without one.
                        (Ok(_), None) => {}
                        (Err(e), _) => {
                            // E.g. out of file descriptors: say so, and do not spin.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
                Some(done) = tasks.join_next() => {
                    ended += 1;
                    self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
                    self.shared.stats.done.fetch_add(1, Ordering::Relaxed);
                    if let Ok(session) = done {
                        self.write(Some(session))?;
                    }
                    if limit.is_some_and(|n| ended >= n) {
                        break;
                    }
                }
            }
        }
        let _ = shutdown_tx.send(true);
        while tasks.join_next().await.is_some() {
            self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
            self.shared.stats.done.fetch_add(1, Ordering::Relaxed);
        }
        let files = self.write(None)?;
        let sessions = self.shared.journal.lock().map_or(0, |j| j.sessions.len());
        let stats = &self.shared.stats;
        Ok(Summary {
            sessions,
            bytes: stats.bytes_up.load(Ordering::Relaxed)
                + stats.bytes_down.load(Ordering::Relaxed),
            files,
        })
    }

    /// Rewrites the file (or, per connection, that session's file; `None`: every file).
    fn write(&self, session: Option<usize>) -> Result<Vec<PathBuf>, RecordError> {
        let Ok(mut journal) = self.shared.journal.lock() else {
            return Ok(Vec::new());
        };
        if journal.sessions.is_empty() {
            return Ok(Vec::new());
        }
        let out = &self.options.output;
        if !self.options.per_connection {
            write_file(out, &journal.render_all())?;
            return Ok(vec![out.clone()]);
        }
        let sessions: Vec<usize> = match session {
            Some(s) => vec![s],
            None => (0..journal.sessions.len()).collect(),
        };
        let mut written = Vec::new();
        for s in sessions {
            let path = per_connection_path(out, s + 1);
            if !journal.is_flushed(s) {
                write_file(&path, &journal.render_one(s))?;
                // Its file is final: the entries need not stay in memory.
                journal.flush(s);
            }
            written.push(path);
        }
        Ok(written)
    }
}

/// A TCP connect to the upstream, dropped at once: a wrong address fails here with a clear
/// message instead of on every client connection.
async fn probe(ep: &Endpoint, t: &Timeouts) -> Result<(), RecordError> {
    let fail = |source| RecordError::Unreachable {
        url: ep.url(),
        source,
    };
    match tokio::time::timeout(
        t.connect,
        tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)),
    )
    .await
    {
        Err(_) => Err(fail(crate::net::NetError::Timeout(
            t.connect,
            "the TCP connection",
        ))),
        Ok(Err(e)) => Err(fail(crate::net::NetError::Io(e))),
        Ok(Ok(_)) => Ok(()),
    }
}

/// The output's directory must exist before the first connection ends, not be found
/// missing then.
fn check_output_dir(output: &Path) -> Result<(), RecordError> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(RecordError::Write {
        path: output.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("directory {} does not exist", dir.display()),
        ),
    })
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, text: &str) -> Result<(), RecordError> {
    let err = |source| RecordError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A DER certificate as PEM.
fn pem_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
