//! The per-target snapshot store: one approved file per scenario and target, compared on
//! every run.
//!
//! Layout: `<dir of the scenario file>/snapshots/<target>/<scenario id>.snap`, plain text with
//! a short header (scenario, target, source file) and the normalized transcript. A change is
//! never written over the approved file: it goes to a pending `<id>.snap.new` beside it, and
//! only `--accept` replaces the approved one. What happens is decided once per run by
//! [`SnapshotPolicy`]; on CI a missing snapshot fails instead of being written.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use similar::TextDiff;

use super::normalize::normalize;
use super::{Problem, ScenarioOutcome};

/// What a snapshot check may do, resolved once from `--accept` and the `CI` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// `--accept`: write new snapshots and overwrite changed ones.
    Accept,
    /// Local run: write a missing snapshot and pass; a change fails and leaves a `.snap.new`.
    WriteMissing,
    /// CI: a missing snapshot fails; a change fails and leaves a `.snap.new`.
    Strict,
}

impl SnapshotPolicy {
    /// Reads the `CI` environment variable.
    pub fn from_env(accept: bool) -> SnapshotPolicy {
        SnapshotPolicy::resolve(accept, std::env::var("CI").ok().as_deref())
    }

    /// The decision itself, apart from the environment (so it can be tested).
    /// `CI` counts as set unless it is absent, empty, `false` or `0`.
    pub fn resolve(accept: bool, ci: Option<&str>) -> SnapshotPolicy {
        let on_ci = ci.is_some_and(|v| {
            let v = v.trim();
            !(v.is_empty() || v.eq_ignore_ascii_case("false") || v == "0")
        });
        if accept {
            SnapshotPolicy::Accept
        } else if on_ci {
            SnapshotPolicy::Strict
        } else {
            SnapshotPolicy::WriteMissing
        }
    }
}

/// Which snapshot: the scenario file it belongs to, the target, the scenario id.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotKey<'a> {
    pub scenario_file: &'a Path,
    pub target: &'a str,
    pub scenario_id: &'a str,
}

impl SnapshotKey<'_> {
    /// `<dir of the scenario file>/snapshots/<target>/<scenario id>.snap`.
    pub fn path(&self) -> PathBuf {
        let dir = self.scenario_file.parent().unwrap_or(Path::new(""));
        dir.join("snapshots")
            .join(file_safe(self.target))
            .join(format!("{}.snap", file_safe(self.scenario_id)))
    }

    /// The pending file next to the approved one.
    pub fn pending_path(&self) -> PathBuf {
        let mut p = self.path().into_os_string();
        p.push(".new");
        PathBuf::from(p)
    }

    /// The header written above the transcript. Only the file name of the source is kept, so
    /// the header does not depend on the directory mailtape was started from.
    fn header(&self) -> String {
        let source = self
            .scenario_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(
            "---\nscenario: {}\ntarget: {}\nsource: {}\n---\n",
            self.scenario_id, self.target, source
        )
    }
}

/// The result of comparing a normalized transcript with the store.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotResult {
    /// Same as the approved snapshot.
    Matched,
    /// There was none; it was written (locally, or with `--accept`).
    Created { path: PathBuf },
    /// It differed and `--accept` overwrote it.
    Updated { path: PathBuf },
    /// Missing on CI, or changed: the scenario fails with this problem.
    Failed(Problem),
}

impl SnapshotResult {
    /// The problem to add to the outcome, if any.
    pub fn into_problem(self) -> Option<Problem> {
        match self {
            SnapshotResult::Failed(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write snapshot {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl SnapshotError {
    /// As a scenario problem, for callers that report I/O trouble per scenario.
    pub fn into_problem(self) -> Problem {
        Problem::Error {
            loc: None,
            session: None,
            message: self.to_string(),
        }
    }
}

/// Compares `normalized` (from [`super::normalize::normalize`]) with the stored snapshot.
pub fn check(
    key: SnapshotKey<'_>,
    normalized: &str,
    policy: SnapshotPolicy,
) -> Result<SnapshotResult, SnapshotError> {
    let path = key.path();
    let pending = key.pending_path();
    let stored = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(SnapshotError::Read { path, source }),
    };
    let file_text = format!("{}{}", key.header(), normalized);
    let result = match stored {
        None if policy == SnapshotPolicy::Strict => {
            // Left as an artifact for whoever looks at the CI run; not approved.
            write(&pending, &file_text)?;
            SnapshotResult::Failed(Problem::SnapshotMissing { path })
        }
        None => {
            write(&path, &file_text)?;
            SnapshotResult::Created { path }
        }
        Some(text) if body(&text) == normalized => SnapshotResult::Matched,
        Some(_) if policy == SnapshotPolicy::Accept => {
            write(&path, &file_text)?;
            SnapshotResult::Updated { path }
        }
        Some(text) => {
            write(&pending, &file_text)?;
            let diff = unified_diff(body(&text), normalized, "stored", "now");
            return Ok(SnapshotResult::Failed(Problem::SnapshotChanged {
                path,
                diff,
            }));
        }
    };
    if !matches!(result, SnapshotResult::Failed(_)) {
        remove_stale(&pending)?;
    }
    Ok(result)
}

/// [`check`] for an outcome: normalizes its transcript with `substitutions` (see
/// [`normalize`](super::normalize::normalize)) and keys it by its file, target and id.
pub fn check_outcome(
    outcome: &ScenarioOutcome,
    substitutions: &[(String, String)],
    policy: SnapshotPolicy,
) -> Result<SnapshotResult, SnapshotError> {
    let key = SnapshotKey {
        scenario_file: &outcome.file,
        target: &outcome.target,
        scenario_id: &outcome.id,
    };
    check(key, &normalize(&outcome.transcript, substitutions), policy)
}

/// A unified diff of two texts, three lines of context; empty when they are equal.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// The transcript part of a snapshot file (everything after the header).
fn body(file_text: &str) -> &str {
    let Some(rest) = file_text.strip_prefix("---\n") else {
        return file_text;
    };
    match rest.find("\n---\n") {
        Some(end) => &rest[end + "\n---\n".len()..],
        None => file_text,
    }
}

fn write(path: &Path, text: &str) -> Result<(), SnapshotError> {
    let err = |source| SnapshotError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    fs::write(path, text).map_err(err)
}

/// A pending file from an earlier run is stale once the approved one matches.
fn remove_stale(pending: &Path) -> Result<(), SnapshotError> {
    match fs::remove_file(pending) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SnapshotError::Write {
            path: pending.to_path_buf(),
            source,
        }),
    }
}

/// Keeps names usable as file names on every platform.
fn file_safe(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A name of dots alone would mean "here" or "up".
    if cleaned.chars().all(|c| c == '.') {
        cleaned.replace('.', "_")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(file: &'a Path) -> SnapshotKey<'a> {
        SnapshotKey {
            scenario_file: file,
            target: "dovecot",
            scenario_id: "imap.append.literal",
        }
    }

    #[test]
    fn policy_resolution() {
        use SnapshotPolicy::*;
        assert_eq!(SnapshotPolicy::resolve(true, Some("true")), Accept);
        assert_eq!(SnapshotPolicy::resolve(false, None), WriteMissing);
        assert_eq!(SnapshotPolicy::resolve(false, Some("")), WriteMissing);
        assert_eq!(SnapshotPolicy::resolve(false, Some("false")), WriteMissing);
        assert_eq!(SnapshotPolicy::resolve(false, Some("0")), WriteMissing);
        assert_eq!(SnapshotPolicy::resolve(false, Some("true")), Strict);
        assert_eq!(SnapshotPolicy::resolve(false, Some("1")), Strict);
    }

    #[test]
    fn path_layout() {
        let file = Path::new("scenarios/imap/append.ron");
        let k = SnapshotKey {
            scenario_file: file,
            target: "my target/x",
            scenario_id: "a.b",
        };
        assert_eq!(
            k.path(),
            Path::new("scenarios/imap/snapshots/my_target_x/a.b.snap")
        );
        assert_eq!(
            k.pending_path(),
            Path::new("scenarios/imap/snapshots/my_target_x/a.b.snap.new")
        );
        assert_eq!(file_safe(".."), "__");
    }

    #[test]
    fn missing_locally_is_written_then_matches() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("append.ron");
        let k = key(&file);
        let r = check(k, "C: a1 NOOP\n", SnapshotPolicy::WriteMissing).unwrap();
        assert_eq!(r, SnapshotResult::Created { path: k.path() });
        let written = fs::read_to_string(k.path()).unwrap();
        assert_eq!(
            written,
            "---\nscenario: imap.append.literal\ntarget: dovecot\nsource: append.ron\n---\nC: a1 NOOP\n"
        );
        let again = check(k, "C: a1 NOOP\n", SnapshotPolicy::Strict).unwrap();
        assert_eq!(again, SnapshotResult::Matched);
    }

    #[test]
    fn missing_on_ci_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("append.ron");
        let k = key(&file);
        let r = check(k, "C: a1 NOOP\n", SnapshotPolicy::Strict).unwrap();
        assert_eq!(
            r,
            SnapshotResult::Failed(Problem::SnapshotMissing { path: k.path() })
        );
        assert!(!k.path().exists());
        assert!(k.pending_path().exists());
    }

    #[test]
    fn change_fails_with_diff_and_pending_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("append.ron");
        let k = key(&file);
        let old = "C: a1 NOOP\nS: a1 OK\n";
        let new = "C: a1 NOOP\nS: * 1 EXISTS\nS: a1 OK\n";
        check(k, old, SnapshotPolicy::WriteMissing).unwrap();
        let r = check(k, new, SnapshotPolicy::WriteMissing).unwrap();
        let Some(Problem::SnapshotChanged { path, diff }) = r.into_problem() else {
            panic!("expected a change");
        };
        assert_eq!(path, k.path());
        assert_eq!(
            diff,
            "--- stored\n+++ now\n@@ -1,2 +1,3 @@\n C: a1 NOOP\n+S: * 1 EXISTS\n S: a1 OK\n"
        );
        // The approved file is untouched; the new text waits in .snap.new.
        assert!(fs::read_to_string(k.path()).unwrap().ends_with(old));
        assert!(fs::read_to_string(k.pending_path()).unwrap().ends_with(new));

        let r = check(k, new, SnapshotPolicy::Accept).unwrap();
        assert_eq!(r, SnapshotResult::Updated { path: k.path() });
        assert!(fs::read_to_string(k.path()).unwrap().ends_with(new));
        assert!(!k.pending_path().exists(), "stale pending file removed");
    }

    #[test]
    fn outcome_transcripts_are_normalized_and_keyed() {
        use crate::report::{Direction, Status, Transcript, TranscriptEntry};
        let dir = tempfile::tempdir().unwrap();
        let entry = |direction, text: &str| TranscriptEntry {
            session: "1".to_string(),
            direction,
            setup: false,
            bytes: text.as_bytes().to_vec(),
        };
        let outcome = ScenarioOutcome {
            id: "imap.select.basic".to_string(),
            title: String::new(),
            file: dir.path().join("select.ron"),
            spec: vec![],
            target: "reference".to_string(),
            status: Status::Pass,
            problems: vec![],
            violations: vec![],
            transcript: Transcript {
                entries: vec![
                    entry(Direction::Client, "a1 SELECT mt-42-select\r\n"),
                    entry(Direction::Server, "* OK [UIDVALIDITY 99] ok\r\n"),
                ],
            },
            duration: std::time::Duration::ZERO,
        };
        let subs = [("mt-42-select".to_string(), "{mailbox}".to_string())];
        let r = check_outcome(&outcome, &subs, SnapshotPolicy::WriteMissing).unwrap();
        let path = dir
            .path()
            .join("snapshots/reference/imap.select.basic.snap");
        assert_eq!(r, SnapshotResult::Created { path: path.clone() });
        let text = fs::read_to_string(path).unwrap();
        assert!(
            text.ends_with("C1: a1 SELECT {mailbox}\nS1: * OK [UIDVALIDITY <uidvalidity>]\n"),
            "{text}"
        );
    }

    #[test]
    fn header_is_not_compared() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("append.ron");
        let k = key(&file);
        fs::create_dir_all(k.path().parent().unwrap()).unwrap();
        fs::write(k.path(), "---\nscenario: old name\n---\nC: a1 NOOP\n").unwrap();
        assert_eq!(
            check(k, "C: a1 NOOP\n", SnapshotPolicy::Strict).unwrap(),
            SnapshotResult::Matched
        );
    }
}
