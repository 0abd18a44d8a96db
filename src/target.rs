//! Targets: where a server listens, how to secure the connection, and its accounts.
//!
//! A target comes from a URL on the command line (`[NAME=]imap://user:pass@host:port`, see
//! [`parse_target`]) or from a RON targets file ([`load_targets_file`], format in
//! `docs/targets.md`). Accounts can be added with [`parse_account`] (`--account login:pass`).

mod file;
mod url;

use std::path::PathBuf;
use std::time::Duration;

use crate::script::Protocol;

pub use file::{load_targets_file, parse_targets};
pub use url::{parse_account, parse_endpoint, parse_target};

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
    /// Host name or IP address; an IPv6 address is kept without brackets (`::1`).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, with brackets around an IPv6 address (`[::1]:143`).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL scheme for this protocol and security, e.g. `imap+starttls`.
    pub fn scheme(&self) -> &'static str {
        url::scheme_name(self.protocol, self.security)
    }

    /// The endpoint as a URL without credentials, e.g. `imaps://mail.example:993`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Name scenarios refer to (`user: "alice"`): the login's local part unless given.
    pub name: String,
    pub login: String,
    pub password: String,
}

impl Account {
    /// An account named after the login's local part (`alice@example.test` -> `alice`).
    pub fn from_login(login: &str, password: &str) -> Account {
        Account {
            name: local_part(login).to_string(),
            login: login.to_string(),
            password: password.to_string(),
        }
    }
}

/// The part of a login before the last `@`, or the whole login.
fn local_part(login: &str) -> &str {
    match login.rfind('@') {
        Some(at) if at > 0 => &login[..at],
        _ => login,
    }
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
    /// The server's local mail domain (`example.test`), for addresses in SMTP scenarios.
    pub domain: Option<String>,
}

impl Target {
    /// A target with one endpoint and nothing else configured.
    pub fn new(name: impl Into<String>, endpoint: Endpoint) -> Target {
        Target {
            name: name.into(),
            endpoints: vec![endpoint],
            accounts: Vec::new(),
            tls: TlsOptions::default(),
            timeouts: Timeouts::default(),
            domain: None,
        }
    }

    /// The first endpoint speaking `protocol`.
    pub fn endpoint(&self, protocol: Protocol) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.protocol == protocol)
    }

    /// The account scenarios call `name`; `None` means the first account.
    pub fn account(&self, name: Option<&str>) -> Option<&Account> {
        match name {
            None => self.accounts.first(),
            Some(n) => self.accounts.iter().find(|a| a.name == n),
        }
    }

    /// Adds an account, replacing one with the same name (a later `--account` wins).
    pub fn add_account(&mut self, account: Account) {
        match self.accounts.iter_mut().find(|a| a.name == account.name) {
            Some(existing) => *existing = account,
            None => self.accounts.push(account),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid target `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// An `--account` value that is not `LOGIN:PASSWORD` (the value is not echoed: it may
    /// hold a password).
    #[error("invalid account: {0}")]
    Account(String),
}

/// Checks a target name: it keys snapshot files, so only letters, digits, `.`, `_` and `-`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty target name".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "target name `{name}` contains `{c}` (allowed: letters, digits, `.`, `_`, `-`)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            protocol: Protocol::Imap,
            security: Security::Implicit,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn authority_brackets_ipv6_only() {
        assert_eq!(ep("::1", 993).authority(), "[::1]:993");
        assert_eq!(ep("mail.example", 993).authority(), "mail.example:993");
        assert_eq!(ep("::1", 993).url(), "imaps://[::1]:993");
    }

    #[test]
    fn account_lookup_and_replace() {
        let mut t = Target::new("t", ep("h", 1));
        assert!(t.account(None).is_none());
        t.add_account(Account::from_login("alice@example.test", "a"));
        t.add_account(Account::from_login("bob", "b"));
        t.add_account(Account::from_login("alice@other.test", "c"));
        assert_eq!(t.accounts.len(), 2);
        assert_eq!(t.account(None).map(|a| a.password.as_str()), Some("c"));
        assert_eq!(
            t.account(Some("bob")).map(|a| a.login.as_str()),
            Some("bob")
        );
        assert!(t.account(Some("carol")).is_none());
    }

    #[test]
    fn target_names() {
        assert!(validate_name("dovecot-2.3_a.b").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").unwrap_err().contains("`/`"));
        assert!(validate_name("a b").is_err());
    }

    #[test]
    fn local_part_of_logins() {
        assert_eq!(local_part("alice@example.test"), "alice");
        assert_eq!(local_part("a@b@c"), "a@b");
        assert_eq!(local_part("@x"), "@x");
        assert_eq!(local_part("bob"), "bob");
    }
}
