//! The RON targets file: a list of named targets with endpoints, accounts, TLS options and
//! timeouts. The format is documented in `docs/targets.md`; `docs/targets.example.ron` is loaded
//! by a test here so the documentation cannot drift from the parser.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Account, Endpoint, Target, TargetError, Timeouts, TlsOptions};

/// Reads and validates a targets file. Errors name the file and, for syntax and URL errors,
/// the line and column (`targets.ron:4:37: ...`). A relative `ca_file` is resolved against the
/// file's directory.
pub fn load_targets_file(path: &Path) -> Result<Vec<Target>, TargetError> {
    let text = std::fs::read_to_string(path).map_err(|e| TargetError::File {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse_targets(&text, base).map_err(|reason| TargetError::File {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses targets-file text; relative paths are taken relative to `base`.
/// The error is `line:col: message` where a position is known.
pub fn parse_targets(text: &str, base: &Path) -> Result<Vec<Target>, String> {
    // Implicit `Some` lets optional fields be written plainly (`domain: "example.test"`).
    let options =
        ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let raw: Vec<RawTarget> = options
        .from_str(text)
        .map_err(|e| format!("{}: {}", e.span.start, e.code))?;
    let mut seen = HashSet::new();
    let mut targets = Vec::with_capacity(raw.len());
    for t in raw {
        if !seen.insert(t.name.clone()) {
            return Err(format!("target `{}` is defined twice", t.name));
        }
        targets.push(t.into_target(base)?);
    }
    Ok(targets)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    endpoints: Vec<UrlEndpoint>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    timeouts: RawTimeouts,
}

/// An endpoint URL, checked while deserializing so that an error carries its position.
struct UrlEndpoint(Endpoint, Option<Account>);

impl<'de> Deserialize<'de> for UrlEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        match super::parse_endpoint(&url) {
            Ok((ep, acc)) => Ok(UrlEndpoint(ep, acc)),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    #[serde(default)]
    name: Option<String>,
    login: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

/// Timeouts in seconds (fractions allowed); a missing one keeps its default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default)]
    connect: Option<f64>,
    #[serde(default)]
    tls: Option<f64>,
    #[serde(default)]
    read: Option<f64>,
}

impl RawTarget {
    fn into_target(self, base: &Path) -> Result<Target, String> {
        let name = self.name;
        let ctx = |msg: String| format!("target `{name}`: {msg}");
        super::validate_name(&name)?;
        if self.endpoints.is_empty() {
            return Err(ctx("no endpoints".into()));
        }
        let mut accounts: Vec<Account> = Vec::new();
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for UrlEndpoint(ep, acc) in self.endpoints {
            endpoints.push(ep);
            accounts.extend(acc);
        }
        let mut target = Target {
            name: name.clone(),
            endpoints,
            accounts,
            tls: TlsOptions {
                ca_file: self.tls.ca_file.map(|p| base.join(p)),
                extra_roots: Vec::new(),
                insecure: self.tls.insecure,
            },
            timeouts: self.timeouts.resolve().map_err(ctx)?,
            domain: self.domain,
        };
        let mut names = HashSet::new();
        for a in self.accounts {
            if a.login.is_empty() {
                return Err(ctx("an account has an empty login".into()));
            }
            let mut account = Account::from_login(&a.login, &a.password);
            if let Some(n) = a.name {
                account.name = n;
            }
            if !names.insert(account.name.clone()) {
                return Err(ctx(format!("account `{}` is listed twice", account.name)));
            }
            target.add_account(account);
        }
        Ok(target)
    }
}

impl RawTimeouts {
    fn resolve(&self) -> Result<Timeouts, String> {
        let d = Timeouts::default();
        let one = |v: Option<f64>, default: Duration, what: &str| match v {
            None => Ok(default),
            Some(s) if s > 0.0 => Duration::try_from_secs_f64(s)
                .map_err(|_| format!("timeouts.{what}: {s} is out of range")),
            Some(s) => Err(format!("timeouts.{what}: {s} must be above 0 seconds")),
        };
        Ok(Timeouts {
            connect: one(self.connect, d.connect, "connect")?,
            tls: one(self.tls, d.tls, "tls")?,
            read: one(self.read, d.read, "read")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Protocol;
    use crate::target::Security;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/targets.example.ron")
    }

    #[test]
    fn example_file_loads() {
        let targets = load_targets_file(&example_path()).unwrap();
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["dovecot", "local-insecure", "public"]);
        let dovecot = &targets[0];
        assert_eq!(dovecot.domain.as_deref(), Some("example.test"));
        let imap = dovecot.endpoint(Protocol::Imap).unwrap();
        assert_eq!((imap.security, imap.port), (Security::StartTls, 10143));
        assert_eq!(dovecot.endpoints.len(), 4);
        assert_eq!(dovecot.accounts.len(), 2);
        assert_eq!(dovecot.accounts[0].name, "alice");
        assert_eq!(dovecot.accounts[1].name, "bobby");
        assert_eq!(dovecot.accounts[1].login, "bob@example.test");
        assert_eq!(
            dovecot.tls.ca_file.as_deref(),
            Some(
                example_path()
                    .parent()
                    .unwrap()
                    .join("../ci/certs/ca.pem")
                    .as_path()
            )
        );
        assert_eq!(dovecot.timeouts.read, Duration::from_millis(2500));
        assert_eq!(dovecot.timeouts.connect, Duration::from_secs(5));
        assert_eq!(dovecot.timeouts.tls, Timeouts::default().tls);
        let insecure = &targets[1];
        assert!(insecure.tls.insecure);
        assert_eq!(insecure.accounts[0].login, "carol");
        assert_eq!(insecure.endpoints[0].host, "::1");
        assert_eq!(targets[2].endpoints[0].port, 993);
    }

    fn err(text: &str) -> String {
        parse_targets(text, Path::new("/base")).unwrap_err()
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = err("[\n  (name: \"a\", endpoints: [\"imap://h\"],\n   bogus: 1),\n]");
        assert!(e.starts_with("3:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn url_errors_have_line_and_column() {
        let e = err("[\n  (\n    name: \"a\",\n    endpoints: [\"ftp://h\"],\n  ),\n]");
        assert!(e.starts_with("4:"), "{e}");
        assert!(e.contains("unknown scheme `ftp`"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_target() {
        assert!(err(r#"[(name: "a", endpoints: [])]"#).contains("target `a`: no endpoints"));
        let dup = r#"[(name: "a", endpoints: ["imap://h"]), (name: "a", endpoints: ["imap://h"])]"#;
        assert!(err(dup).contains("`a` is defined twice"));
        let acc = r#"[(name: "a", endpoints: ["imap://h"], accounts: [
            (login: "x@d", password: "1"), (login: "x@e", password: "2")])]"#;
        assert!(err(acc).contains("account `x` is listed twice"));
        let t = r#"[(name: "a", endpoints: ["imap://h"], timeouts: (read: 0))]"#;
        assert!(err(t).contains("timeouts.read"));
    }

    #[test]
    fn url_credentials_become_accounts() {
        let text = r#"[(name: "a", endpoints: ["imap://u%40d:p@h"], accounts: [
            (login: "v", password: "q")])]"#;
        let t = parse_targets(text, Path::new("/base")).unwrap();
        let names: Vec<&str> = t[0].accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["u", "v"]);
        assert!(t[0].tls.ca_file.is_none());
    }

    #[test]
    fn missing_file_is_named() {
        let e = load_targets_file(Path::new("/nonexistent/t.ron")).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/t.ron: cannot read"),
            "{e}"
        );
    }
}
