//! Known-failure lists (`run --known-failures FILE`): expected failures kept beside a CI job
//! instead of inside the scenarios, for servers whose owners cannot edit the suite.
//!
//! One entry per line, `SCENARIO [TARGET] -- REASON`; `#` starts a comment line:
//!
//! ```text
//! # our server, 2026-12
//! imap.enable-no-argument            -- answers OK, RFC 5161 3.1 wants BAD
//! smtp.rcpt-relay-refused-550 prod*  -- relay refusal is 554 (RFC 5321 3.6.2 SHOULD 550)
//! pop3.*                             -- POP3 is not configured on this host yet
//! ```
//!
//! SCENARIO and TARGET are a scenario id and a target name (or the server product recognized
//! in the greeting), each exact or a prefix ending in `*`. A reason is required: an expected
//! failure without one teaches nobody anything.

use std::path::{Path, PathBuf};

/// A malformed known-failures file: `file:line: reason`.
#[derive(Debug, thiserror::Error)]
pub enum KnownFailuresError {
    #[error("cannot read known-failures file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}\n    {text}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
        text: String,
    },
}

/// An id or name, exact or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pat(String);

impl Pat {
    fn matches(&self, s: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => s.starts_with(prefix),
            None => self.0 == s,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    scenario: Pat,
    target: Option<Pat>,
    reason: String,
    line: usize,
}

/// The parsed list; empty when no file was given.
#[derive(Debug, Clone, Default)]
pub struct KnownFailures {
    path: Option<PathBuf>,
    entries: Vec<Entry>,
}

impl KnownFailures {
    pub fn load(path: &Path) -> Result<KnownFailures, KnownFailuresError> {
        let text = std::fs::read_to_string(path).map_err(|source| KnownFailuresError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        KnownFailures::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<KnownFailures, KnownFailuresError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |message: &str| KnownFailuresError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                message: message.to_string(),
                text: raw.to_string(),
            };
            let Some((head, reason)) = line.split_once(" -- ") else {
                return Err(syntax(
                    "expected `SCENARIO [TARGET] -- REASON` (the reason after ` -- ` is required)",
                ));
            };
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(syntax("the reason after ` -- ` is empty"));
            }
            let words: Vec<&str> = head.split_whitespace().collect();
            let (scenario, target) = match words.as_slice() {
                [s] => (*s, None),
                [s, t] => (*s, Some(*t)),
                _ => {
                    return Err(syntax(
                        "before ` -- ` come a scenario id and optionally a target name, nothing else",
                    ));
                }
            };
            for p in std::iter::once(scenario).chain(target) {
                if p.trim_end_matches('*').contains('*') {
                    return Err(syntax(&format!(
                        "`{p}`: `*` may only end a name (a prefix), not stand inside it"
                    )));
                }
            }
            entries.push(Entry {
                scenario: Pat(scenario.to_string()),
                target: target.map(|t| Pat(t.to_string())),
                reason: reason.to_string(),
                line: i + 1,
            });
        }
        Ok(KnownFailures {
            path: Some(path.to_path_buf()),
            entries,
        })
    }

    /// The reason of the first entry covering this scenario on this target (by its name, or
    /// the server product recognized in its greeting).
    pub fn reason(&self, scenario: &str, target: &str, product: Option<&str>) -> Option<&String> {
        self.entries
            .iter()
            .find(|e| {
                e.scenario.matches(scenario)
                    && e.target
                        .as_ref()
                        .is_none_or(|t| t.matches(target) || product.is_some_and(|p| t.matches(p)))
            })
            .map(|e| &e.reason)
    }

    /// Entries that cover none of `ids`: stale lines worth a warning (`file:line: ...`).
    pub fn unused<'a>(&self, ids: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
        let file = self
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.entries
            .iter()
            .filter(|e| !ids.clone().any(|id| e.scenario.matches(id)))
            .map(|e| {
                format!(
                    "{file}:{}: `{}` matches no scenario of this run",
                    e.line, e.scenario.0
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KnownFailures, KnownFailuresError> {
        KnownFailures::parse(Path::new("known.txt"), text)
    }

    #[test]
    fn entries_match_by_id_prefix_target_and_product() {
        let k = parse(
            "# comment\n\nimap.enable-no-argument -- OK instead of BAD\n\
             smtp.relay prod* -- 554\n  pop3.* -- not configured\n",
        )
        .unwrap();
        assert_eq!(
            k.reason("imap.enable-no-argument", "any", None)
                .map(String::as_str),
            Some("OK instead of BAD")
        );
        assert!(k.reason("imap.enable", "any", None).is_none());
        assert_eq!(
            k.reason("smtp.relay", "prod-east", None)
                .map(String::as_str),
            Some("554")
        );
        assert!(k.reason("smtp.relay", "staging", None).is_none());
        assert!(k.reason("smtp.relay", "staging", Some("product")).is_some());
        assert!(k.reason("pop3.stat", "x", None).is_some());
        let stale = k.unused(["pop3.stat", "smtp.relay"].into_iter());
        assert_eq!(
            stale,
            vec!["known.txt:3: `imap.enable-no-argument` matches no scenario of this run"]
        );
    }

    #[test]
    fn malformed_lines_name_file_line_and_reason() {
        for (text, want) in [
            (
                "imap.x\n",
                "known.txt:1: expected `SCENARIO [TARGET] -- REASON`",
            ),
            ("\nimap.x --   \n", "known.txt:2: expected"),
            ("imap.x -- \n", "known.txt:1: expected"),
            ("a b c -- why\n", "known.txt:1: before ` -- `"),
            ("im*ap -- why\n", "known.txt:1: `im*ap`: `*` may only end"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }
}
