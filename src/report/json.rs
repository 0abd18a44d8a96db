//! The `--format json` report: one JSON document per run, versioned and documented in
//! `docs/json-report.md`.
//!
//! The document has its own types instead of serializing [`ScenarioOutcome`] directly, so
//! that internal changes cannot silently change the published format: every key written here
//! is part of format version [`FORMAT_VERSION`], and a change to them needs a new version.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Problem, ScenarioOutcome, Status, Summary};
use crate::checks::{Level, Violation};

/// Bumped whenever a key is renamed or removed or its meaning changes; adding keys is not a
/// breaking change and keeps the version.
pub const FORMAT_VERSION: u32 = 1;

/// Facts about the run that are not in the outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub mailtape_version: String,
    /// Target names, in the order they were run.
    pub targets: Vec<String>,
    pub started_at: SystemTime,
    pub duration: Duration,
}

impl RunInfo {
    /// With this build's version.
    pub fn new(targets: Vec<String>, started_at: SystemTime, duration: Duration) -> RunInfo {
        RunInfo {
            mailtape_version: env!("CARGO_PKG_VERSION").to_string(),
            targets,
            started_at,
            duration,
        }
    }
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonReport {
    pub format_version: u32,
    pub run: JsonRun,
    pub scenarios: Vec<JsonScenario>,
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonRun {
    pub mailtape_version: String,
    pub targets: Vec<String>,
    /// RFC 3339, UTC, millisecond precision.
    pub started_at: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonScenario {
    pub id: String,
    pub title: String,
    pub file: String,
    pub target: String,
    /// `pass`, `fail`, `skip`, `expected-failure` or `unexpected-pass`.
    pub status: &'static str,
    /// The reason for skip, expected-failure and unexpected-pass; null otherwise.
    pub reason: Option<String>,
    pub duration_ms: u64,
    pub spec: Vec<String>,
    pub problems: Vec<JsonProblem>,
    pub violations: Vec<JsonViolation>,
}

/// One problem; `kind` tells which of the optional keys are present.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JsonProblem {
    Mismatch {
        location: String,
        session: String,
        message: String,
        expected: String,
        got: Vec<String>,
    },
    Timeout {
        location: Option<String>,
        session: String,
        message: String,
    },
    Error {
        location: Option<String>,
        session: Option<String>,
        message: String,
    },
    SnapshotChanged {
        path: String,
        diff: String,
    },
    SnapshotMissing {
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonViolation {
    pub rule: &'static str,
    /// `must` or `should`.
    pub level: &'static str,
    pub rfc: &'static str,
    pub message: String,
    pub session: String,
    /// `file:line:col` of the script line being run, or null.
    pub location: Option<String>,
    /// The bytes seen, as lossy UTF-8 text (invalid sequences become U+FFFD).
    pub bytes: String,
}

/// Builds the document.
pub fn report(info: &RunInfo, outcomes: &[ScenarioOutcome]) -> JsonReport {
    JsonReport {
        format_version: FORMAT_VERSION,
        run: JsonRun {
            mailtape_version: info.mailtape_version.clone(),
            targets: info.targets.clone(),
            started_at: rfc3339(info.started_at),
            duration_ms: millis(info.duration),
        },
        scenarios: outcomes.iter().map(scenario).collect(),
        summary: Summary::of(outcomes),
    }
}

/// Writes the document, pretty-printed, with a final newline.
pub fn write<W: Write>(
    mut out: W,
    info: &RunInfo,
    outcomes: &[ScenarioOutcome],
) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, &report(info, outcomes))?;
    out.write_all(b"\n")?;
    out.flush()
}

fn scenario(o: &ScenarioOutcome) -> JsonScenario {
    let (status, reason) = match &o.status {
        Status::Pass => ("pass", None),
        Status::Fail => ("fail", None),
        Status::Skip { reason } => ("skip", Some(reason.clone())),
        Status::ExpectedFailure { reason } => ("expected-failure", Some(reason.clone())),
        Status::UnexpectedPass { reason } => ("unexpected-pass", Some(reason.clone())),
    };
    JsonScenario {
        id: o.id.clone(),
        title: o.title.clone(),
        file: o.file.display().to_string(),
        target: o.target.clone(),
        status,
        reason,
        duration_ms: millis(o.duration),
        spec: o.spec.clone(),
        problems: o.problems.iter().map(problem).collect(),
        violations: o.violations.iter().map(violation).collect(),
    }
}

fn problem(p: &Problem) -> JsonProblem {
    match p {
        Problem::Mismatch {
            loc,
            session,
            expected,
            got,
            message,
        } => JsonProblem::Mismatch {
            location: loc.to_string(),
            session: session.clone(),
            message: message.clone(),
            expected: expected.clone(),
            got: got.clone(),
        },
        Problem::Timeout {
            loc,
            session,
            message,
        } => JsonProblem::Timeout {
            location: loc.as_ref().map(ToString::to_string),
            session: session.clone(),
            message: message.clone(),
        },
        Problem::Error {
            loc,
            session,
            message,
        } => JsonProblem::Error {
            location: loc.as_ref().map(ToString::to_string),
            session: session.clone(),
            message: message.clone(),
        },
        Problem::SnapshotChanged { path, diff } => JsonProblem::SnapshotChanged {
            path: path.display().to_string(),
            diff: diff.clone(),
        },
        Problem::SnapshotMissing { path } => JsonProblem::SnapshotMissing {
            path: path.display().to_string(),
        },
    }
}

fn violation(v: &Violation) -> JsonViolation {
    JsonViolation {
        rule: v.rule,
        level: match v.level {
            Level::Must => "must",
            Level::Should => "should",
        },
        rfc: v.rfc,
        message: v.message.clone(),
        session: v.session.clone(),
        location: v.loc.as_ref().map(ToString::to_string),
        // Lossy but unescaped: JSON strings can carry control characters safely.
        bytes: String::from_utf8_lossy(&v.bytes).into_owned(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `2026-11-28T05:30:00.123Z`. Times before 1970 (a broken clock) print as the epoch.
fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date, by counting 400-year eras of
/// 146097 days that start on March 1st (so the leap day falls at the end of a year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::human::tests::sample_outcomes;

    fn info() -> RunInfo {
        RunInfo {
            mailtape_version: "0.1.0".to_string(),
            targets: vec!["reference".to_string()],
            started_at: UNIX_EPOCH + Duration::from_millis(1_795_843_800_123),
            duration: Duration::from_millis(12_345),
        }
    }

    /// serde_json's map is sorted unless `preserve_order` is on; sort anyway to be sure.
    fn sorted_keys(v: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    fn as_value() -> serde_json::Value {
        let mut buf = Vec::new();
        write(&mut buf, &info(), &sample_outcomes()).unwrap();
        serde_json::from_slice(&buf).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_843_800_123)),
            "2026-11-28T05:30:00.123Z"
        );
    }

    #[test]
    fn documented_top_level_keys() {
        let v = as_value();
        assert_eq!(
            sorted_keys(&v),
            ["format_version", "run", "scenarios", "summary"]
        );
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["run"]["mailtape_version"], "0.1.0");
        assert_eq!(v["run"]["targets"], serde_json::json!(["reference"]));
        assert_eq!(v["run"]["started_at"], "2026-11-28T05:30:00.123Z");
        assert_eq!(v["run"]["duration_ms"], 12_345);
        assert_eq!(
            sorted_keys(&v["summary"]),
            [
                "expected_failures",
                "failed",
                "passed",
                "skipped",
                "total",
                "unexpected_passes",
                "warnings"
            ]
        );
        assert_eq!(
            sorted_keys(&v["run"]),
            ["duration_ms", "mailtape_version", "started_at", "targets"]
        );
        assert_eq!(v["summary"]["total"], 6);
        assert_eq!(v["summary"]["warnings"], 2);
    }

    #[test]
    fn scenario_entries() {
        let v = as_value();
        let scenarios = v["scenarios"].as_array().unwrap();
        let statuses: Vec<&str> = scenarios
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            [
                "pass",
                "pass",
                "fail",
                "skip",
                "expected-failure",
                "unexpected-pass"
            ]
        );
        let fail = &scenarios[2];
        assert_eq!(
            sorted_keys(fail),
            [
                "duration_ms",
                "file",
                "id",
                "problems",
                "reason",
                "spec",
                "status",
                "target",
                "title",
                "violations"
            ]
        );
        assert_eq!(fail["reason"], serde_json::Value::Null);
        assert_eq!(fail["duration_ms"], 2345);
        assert_eq!(fail["problems"][0]["kind"], "mismatch");
        assert_eq!(
            fail["problems"][0]["location"],
            "scenarios/imap/append.ron:12:1"
        );
        assert_eq!(
            fail["problems"][0]["got"][1],
            "a1 NO [TRYCREATE] No such mailbox\r\n"
        );
        assert_eq!(fail["problems"][1]["kind"], "timeout");
        assert_eq!(fail["problems"][2]["kind"], "error");
        assert_eq!(fail["problems"][2]["location"], serde_json::Value::Null);
        assert_eq!(fail["problems"][3]["kind"], "snapshot-changed");
        let viol = &fail["violations"][0];
        assert_eq!(viol["rule"], "imap.tag.echo");
        assert_eq!(viol["level"], "must");
        assert_eq!(viol["rfc"], "RFC 3501 2.2.1");
        assert_eq!(viol["session"], "1");
        assert_eq!(viol["location"], "scenarios/imap/append.ron:14:1");
        assert_eq!(viol["bytes"], "a2 OK done\r\n\x1b[31m");
        assert_eq!(
            sorted_keys(viol),
            [
                "bytes", "level", "location", "message", "rfc", "rule", "session"
            ]
        );
        assert_eq!(scenarios[3]["reason"], "missing capability MOVE");
        assert_eq!(scenarios[5]["problems"][0]["kind"], "snapshot-missing");
    }

    #[test]
    fn round_trips_through_value() {
        let doc = report(&info(), &sample_outcomes());
        let value = serde_json::to_value(&doc).unwrap();
        let text = serde_json::to_string(&value).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    /// Every key path of a document; objects with a `kind` are told apart by it.
    fn key_paths(
        v: &serde_json::Value,
        prefix: &str,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        match v {
            serde_json::Value::Object(map) => {
                let prefix = match map.get("kind").and_then(|k| k.as_str()) {
                    Some(kind) => format!("{prefix}<{kind}>"),
                    None => prefix.to_string(),
                };
                for (k, child) in map {
                    let path = format!("{prefix}.{k}");
                    out.insert(path.clone());
                    key_paths(child, &path, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    key_paths(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn documented_example_matches_the_code() {
        let doc = include_str!("../../docs/json-report.md");
        let start = doc.find("```json\n").expect("example block") + "```json\n".len();
        let end = start + doc[start..].find("```").expect("end of example");
        let example: serde_json::Value = serde_json::from_str(&doc[start..end]).unwrap();

        let mut documented = std::collections::BTreeSet::new();
        key_paths(&example, "", &mut documented);
        let mut produced = std::collections::BTreeSet::new();
        key_paths(&as_value(), "", &mut produced);
        assert_eq!(documented, produced);
        assert_eq!(example["format_version"], FORMAT_VERSION);
    }
}
