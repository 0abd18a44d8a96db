//! Outcomes and their renderers. Renderers never decide pass or fail: the engine does.
//! CONTRACT: the types below; the report helper adds human.rs, json.rs, junit.rs, snapshot.rs.
//!
//! - [`normalize`](mod@normalize): a [`Transcript`] as stable text (volatile values become placeholders).
//! - [`headers`]: the message-header filter both normalizers use (Date, Message-ID, trace headers).
//! - [`snapshot`]: the per-target snapshot store, its policy and unified diffs.
//! - [`human`]: terminal output (scenario lines, failure details, summary).
//! - [`json`]: the versioned `--format json` document (docs/json-report.md).
//! - [`junit`]: the `--junit FILE` XML.

pub mod headers;
pub mod human;
pub mod json;
pub mod junit;
pub mod normalize;
pub mod normalize_text;
pub mod snapshot;
pub mod trace;

pub use human::{HumanOptions, HumanReporter};
pub use normalize::normalize;
pub use snapshot::{SnapshotKey, SnapshotPolicy, SnapshotResult};

use std::path::PathBuf;
use std::time::Duration;

use crate::checks::Violation;
use crate::script::Loc;

/// The verdict on one scenario against one target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// Not run: a required capability or account is missing.
    Skip {
        reason: String,
    },
    /// Failed, and the scenario lists this target as an expected failure.
    ExpectedFailure {
        reason: String,
    },
    /// Listed as an expected failure but passed: counts as a failure.
    UnexpectedPass {
        reason: String,
    },
}

impl Status {
    /// Whether this outcome makes the run exit non-zero.
    pub fn is_unexpected_failure(&self) -> bool {
        matches!(self, Status::Fail | Status::UnexpectedPass { .. })
    }
}

/// Something that went wrong other than a rule violation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// The server's reply did not match the script.
    Mismatch {
        loc: Loc,
        session: String,
        expected: String,
        /// What arrived instead (lossy text of each server message considered).
        got: Vec<String>,
        message: String,
    },
    /// The server did not answer within the step timeout.
    Timeout {
        loc: Option<Loc>,
        session: String,
        message: String,
    },
    /// Connection, TLS, setup or other error.
    Error {
        loc: Option<Loc>,
        session: Option<String>,
        message: String,
    },
    /// The transcript differs from the stored snapshot.
    SnapshotChanged { path: PathBuf, diff: String },
    /// No stored snapshot, and new ones may not be written (CI).
    SnapshotMissing { path: PathBuf },
}

/// Who sent a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    Client,
    Server,
}

/// One whole protocol message as it crossed the wire.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranscriptEntry {
    pub session: String,
    pub direction: Direction,
    /// Harness-made setup (login, fixtures, select), not a script line.
    pub setup: bool,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Transcript {
    pub entries: Vec<TranscriptEntry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScenarioOutcome {
    pub id: String,
    pub title: String,
    pub file: PathBuf,
    pub spec: Vec<String>,
    pub target: String,
    pub status: Status,
    pub problems: Vec<Problem>,
    /// MUST and SHOULD violations alike; `level` tells them apart.
    pub violations: Vec<Violation>,
    #[serde(skip)]
    pub transcript: Transcript,
    pub duration: Duration,
}

/// Counts for the summary line and the JSON report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub expected_failures: usize,
    pub unexpected_passes: usize,
    pub warnings: usize,
}

impl Summary {
    pub fn of(outcomes: &[ScenarioOutcome]) -> Summary {
        let mut s = Summary {
            total: outcomes.len(),
            ..Summary::default()
        };
        for o in outcomes {
            match o.status {
                Status::Pass => s.passed += 1,
                Status::Fail => s.failed += 1,
                Status::Skip { .. } => s.skipped += 1,
                Status::ExpectedFailure { .. } => s.expected_failures += 1,
                Status::UnexpectedPass { .. } => s.unexpected_passes += 1,
            }
            s.warnings += o
                .violations
                .iter()
                .filter(|v| v.level == crate::checks::Level::Should)
                .count();
        }
        s
    }
}
