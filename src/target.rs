//! CONTRACT STUB - the net helper replaces this file.
//! Targets: where a server listens, how to secure the connection, and its accounts.

use std::path::PathBuf;
use std::time::Duration;

use crate::script::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Security {
    Plain,
    /// `imaps://`: TLS from the first byte.
    Implicit,
    /// `imap+starttls://`: STARTTLS before login.
    StartTls,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub security: Security,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Name scenarios refer to (`user: "alice"`): the login's local part unless given.
    pub name: String,
    pub login: String,
    pub password: String,
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    /// Extra trusted certificates (the in-process reference server's).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub insecure: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub tls: Duration,
    /// How long one step waits for the server.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            tls: Duration::from_secs(10),
            read: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    /// Used for snapshots and expected failures, e.g. `dovecot`, `reference`.
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub accounts: Vec<Account>,
    pub tls: TlsOptions,
    pub timeouts: Timeouts,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid target `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}
