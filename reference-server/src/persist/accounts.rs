//! The accounts file of `mailtape serve --accounts FILE`: the mail domain and the accounts,
//! in RON, so a long-lived server (usually with a data directory) keeps the same users.
//!
//! ```ron
//! (
//!     domain: "example.test",
//!     accounts: [
//!         (user: "alice", password: "alicepw"),
//!         (user: "bob", password: "bobpw"),
//!     ],
//! )
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Account;

/// Why an accounts file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccount {
    user: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    domain: String,
    accounts: Vec<FileAccount>,
}

/// The contents of an accounts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsFile {
    pub domain: String,
    pub accounts: Vec<Account>,
}

impl AccountsFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            Problem::Syntax(message) => AccountsError::Parse {
                path: path.to_path_buf(),
                message,
            },
            Problem::Invalid(message) => AccountsError::Invalid {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    fn parse(text: &str) -> Result<Self, Problem> {
        let contents: FileContents =
            ron::from_str(text).map_err(|e| Problem::Syntax(e.to_string()))?;
        if contents.domain.is_empty() || contents.domain.contains(['@', ' ']) {
            return Err(Problem::Invalid(format!(
                "domain {:?} is not a domain name",
                contents.domain
            )));
        }
        if contents.accounts.is_empty() {
            return Err(Problem::Invalid("no accounts".into()));
        }
        let mut seen = BTreeSet::new();
        for a in &contents.accounts {
            // The user name is a login name and, with a data directory, a directory name.
            if a.user.is_empty()
                || a.user.starts_with('.')
                || a.user.contains(['@', '/', '\\', ' ', '\0'])
            {
                return Err(Problem::Invalid(format!(
                    "user {:?}: not a usable login name",
                    a.user
                )));
            }
            if !seen.insert(a.user.as_str()) {
                return Err(Problem::Invalid(format!("user {:?} twice", a.user)));
            }
        }
        Ok(Self {
            domain: contents.domain,
            accounts: contents
                .accounts
                .into_iter()
                .map(|a| Account {
                    user: a.user,
                    password: a.password,
                })
                .collect(),
        })
    }
}

enum Problem {
    Syntax(String),
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AccountsFile, String> {
        AccountsFile::parse(text).map_err(|e| match e {
            Problem::Syntax(m) | Problem::Invalid(m) => m,
        })
    }

    #[test]
    fn documented_example_parses() {
        let text = r#"(
            domain: "example.test",
            accounts: [
                (user: "alice", password: "alicepw"),
                (user: "bob", password: "bobpw"),
            ],
        )"#;
        let file = parse(text).unwrap();
        assert_eq!(file.domain, "example.test");
        assert_eq!(file.accounts.len(), 2);
        assert_eq!(file.accounts[1].user, "bob");
        assert_eq!(file.accounts[1].password, "bobpw");
    }

    #[test]
    fn bad_files_are_refused() {
        let cases = [
            (r#"(domain: "x.test", accounts: [])"#, "no accounts"),
            (
                r#"(domain: "x.test", accounts: [(user: "a/b", password: "p")])"#,
                "not a usable",
            ),
            (
                r#"(domain: "x.test", accounts: [(user: "a", password: "p"), (user: "a", password: "q")])"#,
                "twice",
            ),
            (
                r#"(domain: "a@b", accounts: [(user: "a", password: "p")])"#,
                "not a domain",
            ),
            (
                r#"(domain: "x.test", accounts: [(user: "a", pass: "p")])"#,
                "pass",
            ),
        ];
        for (text, expect) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
