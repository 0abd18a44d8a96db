//! The `--junit FILE` report, for CI systems that show JUnit XML.
//!
//! One `<testsuite>` per target (in the order targets first appear), one `<testcase>` per
//! scenario: `classname` is the scenario's protocol directory (e.g. `imap`), `name` its id.
//! JUnit has no expected failures, so they are reported as skipped with the message
//! `expected failure: <reason>`; an unexpected pass is a failure.

use std::path::{Component, Path};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::human::failure_details;
use super::{ScenarioOutcome, Status};
use crate::checks::Level;

#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("cannot serialize the JUnit report: {0}")]
    Serialize(#[from] quick_junit::SerializeError),
    #[error("cannot write the JUnit report to {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Builds the report; `total` is the wall-clock time of the whole run.
pub fn report(outcomes: &[ScenarioOutcome], total: std::time::Duration) -> Report {
    let mut report = Report::new("mailtape");
    report.set_time(total);
    let mut targets: Vec<&str> = Vec::new();
    for o in outcomes {
        if !targets.contains(&o.target.as_str()) {
            targets.push(&o.target);
        }
    }
    for target in targets {
        let mut suite = TestSuite::new(target);
        let of_target = outcomes.iter().filter(|o| o.target == target);
        suite.set_time(of_target.clone().map(|o| o.duration).sum());
        suite.add_test_cases(of_target.map(test_case));
        report.add_test_suite(suite);
    }
    report
}

/// The XML text.
pub fn to_string(
    outcomes: &[ScenarioOutcome],
    total: std::time::Duration,
) -> Result<String, JunitError> {
    Ok(report(outcomes, total).to_string()?)
}

/// Writes the XML to `path`.
pub fn write_file(
    path: &Path,
    outcomes: &[ScenarioOutcome],
    total: std::time::Duration,
) -> Result<(), JunitError> {
    let xml = to_string(outcomes, total)?;
    std::fs::write(path, xml).map_err(|source| JunitError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn test_case(o: &ScenarioOutcome) -> TestCase {
    let status = match &o.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(first_line(o))
                .set_description(failure_details(o));
            s
        }
        Status::UnexpectedPass { reason } => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!(
                "unexpected pass: listed as an expected failure ({reason})"
            ))
            .set_description(failure_details(o));
            s
        }
        Status::Skip { reason } => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(reason.as_str());
            s
        }
        Status::ExpectedFailure { reason } => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!("expected failure: {reason}"))
                .set_description(failure_details(o));
            s
        }
    };
    let mut case = TestCase::new(o.id.as_str(), status);
    case.set_classname(classname(o)).set_time(o.duration);
    // Warnings of passing scenarios would otherwise be lost in CI views.
    let warnings: Vec<String> = o
        .violations
        .iter()
        .filter(|v| v.level == Level::Should && !o.status.is_unexpected_failure())
        .map(|v| format!("warning: {} ({}): {}", v.rule, v.rfc, v.message))
        .collect();
    if !warnings.is_empty() {
        case.set_system_out(warnings.join("\n"));
    }
    case
}

/// A one-line summary for the `message` attribute: the first problem or MUST violation.
fn first_line(o: &ScenarioOutcome) -> String {
    failure_details(o)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "failed".to_string())
}

/// The protocol directory: the path under `scenarios/` without the file name (`imap`,
/// `imap/extensions`), else the file's parent directory name, else the id's first part.
fn classname(o: &ScenarioOutcome) -> String {
    let dirs: Vec<String> = o
        .file
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(pos) = dirs.iter().rposition(|d| d == "scenarios")
        && pos + 1 < dirs.len()
    {
        return dirs[pos + 1..].join("/");
    }
    if let Some(last) = dirs.last() {
        return last.clone();
    }
    o.id.split('.').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::report::human::tests::sample_outcomes;

    #[test]
    fn xml_has_one_suite_per_target_and_every_case() {
        let mut outcomes = sample_outcomes();
        let mut other = outcomes[0].clone();
        other.target = "dovecot".to_string();
        outcomes.push(other);
        let xml = to_string(&outcomes, Duration::from_secs(3)).unwrap();

        let parsed = Report::deserialize_from_str(&xml).unwrap();
        let suites: Vec<&str> = parsed.test_suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(suites, ["reference", "dovecot"]);
        let cases = &parsed.test_suites[0].test_cases;
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "imap.noop.basic",
                "imap.select.basic",
                "imap.append.literal",
                "imap.move.basic",
                "imap.idle.exists",
                "imap.search.charset"
            ]
        );
        assert!(
            cases
                .iter()
                .all(|c| c.classname.as_ref().map(|n| n.as_str()) == Some("imap"))
        );
        assert_eq!(parsed.test_suites[0].failures, 2);
        assert_eq!(parsed.test_suites[0].skipped, 2);

        assert!(
            xml.contains("<failure message=\"mismatch at scenarios/imap/append.ron:12:1"),
            "{xml}"
        );
        assert!(xml.contains("violation imap.tag.echo (MUST, RFC 3501 2.2.1)"));
        assert!(xml.contains("<skipped message=\"missing capability MOVE\""));
        assert!(xml.contains("<skipped message=\"expected failure: RFC 3501 7.3.1 SHOULD"));
        assert!(xml.contains(
            "unexpected pass: listed as an expected failure (charset UTF-8 unsupported)"
        ));
        assert!(xml.contains("warning: imap.select.flags (RFC 3501 6.3.1)"));
    }

    #[test]
    fn writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_file(&path, &sample_outcomes(), Duration::from_secs(1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<?xml"));
        assert!(text.contains("<testcase name=\"imap.noop.basic\""));
    }

    #[test]
    fn classnames() {
        let mut o = sample_outcomes().remove(0);
        o.file = PathBuf::from("/x/scenarios/imap/ext/a.ron");
        assert_eq!(classname(&o), "imap/ext");
        o.file = PathBuf::from("elsewhere/pop3/a.ron");
        assert_eq!(classname(&o), "pop3");
        o.file = PathBuf::from("a.ron");
        assert_eq!(classname(&o), "imap");
    }
}
