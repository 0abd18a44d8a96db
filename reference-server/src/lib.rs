//! mailtape's bundled reference mail server: an in-process IMAP4rev1 server (RFC 3501 plus
//! LITERAL+, UIDPLUS, MOVE, IDLE, ENABLE, NAMESPACE, ID, UNSELECT, SASL-IR) over an in-memory
//! store, started on loopback ports as the harness's default target and RFC yardstick.
//!
//! # Layout
//! - `store`, `mailbox`: accounts -> mailboxes -> messages, shared by all protocols
//! - `imap`: the IMAP service (listeners, sessions, commands)
//! - `pop3`: the POP3 service (RFC 1939 + CAPA, UIDL, TOP, SASL PLAIN, STLS) on the same store
//! - `smtp`: the SMTP service (port-25 and submission roles), delivering into the store
//! - `tls`: rustls configuration (ring) and the certificate
//! - `persist`: the optional on-disk copy of the store (`Config::data_dir`), accounts file
//! - `limits`: resource limits with their named defaults

mod imap;
pub mod limits;
mod listener;
mod mailbox;
mod persist;
mod pop3;
pub mod smtp;
mod store;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

pub use limits::Limits;
pub use smtp::SmtpLimits;
pub use tls::TlsSource;

// ---- Persistence and the accounts file (`data_dir`, `mailtape serve --accounts`) ----
pub use persist::PersistError;
pub use persist::accounts::{AccountsError, AccountsFile};

/// A mail account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub password: String,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub accounts: Vec<Account>,
    /// Domain part accepted in login names (`alice@<domain>` logs in as `alice`).
    pub domain: String,
    /// Plain IMAP listener (offers STARTTLS); `None` to not listen.
    pub imap: Option<SocketAddr>,
    /// Implicit-TLS IMAP listener; `None` to not listen.
    pub imaps: Option<SocketAddr>,
    /// Plain POP3 listener (offers STLS); `None` to not listen.
    pub pop3: Option<SocketAddr>,
    /// Implicit-TLS POP3 listener; `None` to not listen.
    pub pop3s: Option<SocketAddr>,
    pub tls: TlsSource,
    pub limits: Limits,
    // --- persistence (persist module) ---
    /// Keep the mail in this directory (Maildir++ per user plus an index, see
    /// docs/reference-server.md) and load it at start; `None` keeps it in memory only.
    pub data_dir: Option<PathBuf>,
    // --- SMTP (smtp module) ---
    /// SMTP listener in the port-25 role: mail for local users without authentication,
    /// relaying only after AUTH; offers STARTTLS. `None` to not listen.
    pub smtp: Option<SocketAddr>,
    /// Submission listener in the port-587 role: AUTH required before MAIL; offers STARTTLS.
    /// `None` to not listen.
    pub submission: Option<SocketAddr>,
    /// Limits of both SMTP listeners (message size, recipients, errors, idle timeout).
    pub smtp_limits: SmtpLimits,
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            accounts: vec![
                Account {
                    user: "alice".into(),
                    password: "alicepw".into(),
                },
                Account {
                    user: "bob".into(),
                    password: "bobpw".into(),
                },
            ],
            domain: "example.test".into(),
            imap: Some(loopback_any_port()),
            imaps: Some(loopback_any_port()),
            pop3: Some(loopback_any_port()),
            pop3s: Some(loopback_any_port()),
            tls: TlsSource::Generate,
            limits: Limits::default(),
            data_dir: None,
            smtp: Some(loopback_any_port()),
            submission: Some(loopback_any_port()),
            smtp_limits: SmtpLimits::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data directory: {0}")]
    Storage(#[from] PersistError),
}

/// A running server. Dropping it also stops it (the tasks see the shutdown channel close),
/// but only [`Running::shutdown`] waits for the sessions to finish.
#[derive(Debug)]
pub struct Running {
    /// Bound address of the plain IMAP listener.
    pub imap: Option<SocketAddr>,
    /// Bound address of the implicit-TLS IMAP listener.
    pub imaps: Option<SocketAddr>,
    /// Bound address of the plain POP3 listener.
    pub pop3: Option<SocketAddr>,
    /// Bound address of the implicit-TLS POP3 listener.
    pub pop3s: Option<SocketAddr>,
    /// Bound address of the SMTP (port-25 role) listener.
    pub smtp: Option<SocketAddr>,
    /// Bound address of the submission (port-587 role) listener.
    pub submission: Option<SocketAddr>,
    /// The server's leaf certificate, for clients to trust.
    pub certificate: CertificateDer<'static>,
    shutdown: watch::Sender<bool>,
    alive_tx: mpsc::Sender<()>,
    alive_rx: mpsc::Receiver<()>,
}

impl Running {
    /// Stops the listeners, sends `* BYE` to every session and waits until all are gone.
    pub async fn shutdown(self) {
        let Running {
            shutdown,
            alive_tx,
            mut alive_rx,
            ..
        } = self;
        let _ = shutdown.send(true);
        drop(alive_tx);
        // recv() yields None once every task has dropped its sender.
        while alive_rx.recv().await.is_some() {}
    }
}

/// Binds the configured listeners, spawns their tasks and returns at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), reference_server::ServerError> {
/// let running = reference_server::start(reference_server::Config::default()).await?;
/// // Plain IMAP (with STARTTLS) and implicit TLS on ephemeral loopback ports; clients trust
/// // `running.certificate`. Accounts: alice/alicepw and bob/bobpw.
/// println!("imap {:?} imaps {:?}", running.imap, running.imaps);
/// running.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub async fn start(config: Config) -> Result<Running, ServerError> {
    if config.limits.max_sessions == 0 || config.limits.max_line < 64 {
        return Err(ServerError::Config(
            "max_sessions must be > 0 and max_line >= 64".into(),
        ));
    }
    let tls = tls::build(&config.tls)?;
    let store = match &config.data_dir {
        Some(dir) => store::Store::open(&config.accounts, &config.domain, dir)?,
        None => store::Store::new(&config.accounts, &config.domain),
    };
    let shared = Arc::new(imap::session::Shared {
        store: Arc::clone(&store),
        tls: Arc::clone(&tls.config),
        limits: config.limits.clone(),
        next_id: AtomicU64::new(1),
    });
    // Semaphore::new panics above MAX_PERMITS; more sessions than that cannot exist anyway.
    let sessions = Arc::new(Semaphore::new(
        config.limits.max_sessions.min(Semaphore::MAX_PERMITS),
    ));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel(1);
    // Every listener is bound before anything is spawned, so a port in use fails the start
    // and leaves nothing running.
    let imap_ports = [
        (bind(config.imap).await?, false),
        (bind(config.imaps).await?, true),
    ];
    let pop3_ports = [
        (bind(config.pop3).await?, false),
        (bind(config.pop3s).await?, true),
    ];
    let smtp_ports = [
        (bind(config.smtp).await?, smtp::Role::Mx),
        (bind(config.submission).await?, smtp::Role::Submission),
    ];
    let mut running = Running {
        imap: None,
        imaps: None,
        pop3: None,
        pop3s: None,
        smtp: None,
        submission: None,
        certificate: tls.certificate,
        shutdown,
        alive_tx,
        alive_rx,
    };
    for (port, implicit) in imap_ports {
        let Some((listener, local)) = port else {
            continue;
        };
        *if implicit {
            &mut running.imaps
        } else {
            &mut running.imap
        } = Some(local);
        tokio::spawn(imap::listen(
            listener,
            implicit,
            Arc::clone(&shared),
            Arc::clone(&sessions),
            shutdown_rx.clone(),
            running.alive_tx.clone(),
        ));
    }
    // POP3 sessions share the store, the TLS configuration and the session limit with IMAP.
    let pop3_shared = Arc::new(pop3::Shared::new(
        Arc::clone(&shared.store),
        Arc::clone(&shared.tls),
        config.limits.clone(),
    ));
    for (port, implicit) in pop3_ports {
        let Some((listener, local)) = port else {
            continue;
        };
        *if implicit {
            &mut running.pop3s
        } else {
            &mut running.pop3
        } = Some(local);
        tokio::spawn(pop3::listen(
            listener,
            implicit,
            Arc::clone(&pop3_shared),
            Arc::clone(&sessions),
            shutdown_rx.clone(),
            running.alive_tx.clone(),
        ));
    }
    let smtp_shared = Arc::new(smtp::session::Shared {
        store,
        tls: tls.config,
        limits: config.smtp_limits.clone(),
        domain: config.domain.clone(),
        next_id: AtomicU64::new(1),
    });
    for (port, role) in smtp_ports {
        let Some((listener, local)) = port else {
            continue;
        };
        *match role {
            smtp::Role::Mx => &mut running.smtp,
            smtp::Role::Submission => &mut running.submission,
        } = Some(local);
        tokio::spawn(smtp::listen(
            listener,
            role,
            Arc::clone(&smtp_shared),
            Arc::clone(&sessions),
            shutdown_rx.clone(),
            running.alive_tx.clone(),
        ));
    }
    Ok(running)
}

/// Binds a listener and learns its address (the port, when 0 was asked for); `None` when the
/// service is not configured.
async fn bind(addr: Option<SocketAddr>) -> Result<Option<(TcpListener, SocketAddr)>, ServerError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok(Some((listener, local)))
}
