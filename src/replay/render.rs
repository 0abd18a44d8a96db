//! A replay report for people (plain text, diffs as they are) and as JSON.

use std::io::{self, Write};

use super::ReplayReport;
use crate::report::Problem;

/// The human report: one line per session, the diffs, captures, violations, problems and
/// a last line PASS or FAIL.
/// `--quiet`: one line, the verdict and what it rests on.
pub fn verdict(report: &ReplayReport, out: &mut impl Write) -> io::Result<()> {
    let differ = report
        .sessions
        .iter()
        .filter(|s| !s.diff.is_empty())
        .count();
    let violations = report.failing_violations().count();
    match report.failed() {
        false => writeln!(out, "PASS {}", report.file.display()),
        true => writeln!(
            out,
            "FAIL {}: {differ} session(s) differ, {violations} failing violation(s), {} problem(s)",
            report.file.display(),
            report.problems.len()
        ),
    }
}

pub fn human(report: &ReplayReport, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "replay {} against {}",
        report.file.display(),
        report.target
    )?;
    for s in &report.sessions {
        let name = if s.session.is_empty() {
            "\"\"".to_string()
        } else {
            s.session.clone()
        };
        let verdict = if s.diff.is_empty() {
            "same as recorded".to_string()
        } else {
            match &s.first_difference {
                Some(loc) => format!("differs, first at {loc}"),
                None => "differs".to_string(),
            }
        };
        writeln!(
            out,
            "  session {name} ({}): {} recorded / {} live messages, {verdict}",
            s.protocol.name(),
            s.recorded_messages,
            s.live_messages
        )?;
    }
    for s in report.sessions.iter().filter(|s| !s.diff.is_empty()) {
        writeln!(out)?;
        out.write_all(s.diff.as_bytes())?;
    }
    if !report.captures.is_empty() {
        // Pairs with the same value on both sides say little; they are only counted.
        let (same, changed): (Vec<_>, Vec<_>) =
            report.captures.iter().partition(|p| p.recorded == p.live);
        writeln!(out)?;
        writeln!(out, "captured (recorded -> live):")?;
        for p in changed {
            writeln!(out, "  {} {} -> {}", p.kind.name(), p.recorded, p.live)?;
        }
        if !same.is_empty() {
            writeln!(out, "  and {} value(s) the same on both sides", same.len())?;
        }
    }
    if !report.violations.is_empty() {
        writeln!(out)?;
        writeln!(out, "violations:")?;
        for v in &report.violations {
            let at = v
                .loc
                .as_ref()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {} ({:?}, {}) session {}{at}: {}",
                v.rule, v.level, v.rfc, v.session, v.message
            )?;
        }
    }
    if !report.problems.is_empty() {
        writeln!(out)?;
        writeln!(out, "problems:")?;
        for p in &report.problems {
            writeln!(out, "  {}", problem_text(p))?;
        }
    }
    writeln!(out)?;
    if report.failed() {
        let differing = report
            .sessions
            .iter()
            .filter(|s| !s.diff.is_empty())
            .count();
        writeln!(
            out,
            "FAIL: {differing} session(s) differ, {} failing violation(s), {} problem(s)",
            report.failing_violations().count(),
            report.problems.len()
        )
    } else {
        writeln!(out, "PASS")
    }
}

/// One problem on one line, with the script line it happened at.
pub fn problem_text(p: &Problem) -> String {
    match p {
        Problem::Timeout { loc, message, .. } | Problem::Error { loc, message, .. } => match loc {
            Some(l) => format!("{l}: {message}"),
            None => message.clone(),
        },
        Problem::Mismatch { loc, message, .. } => format!("{loc}: {message}"),
        Problem::SnapshotChanged { path, .. } | Problem::SnapshotMissing { path } => {
            format!("{}: snapshot", path.display())
        }
    }
}

/// The report as one JSON document (`--format json`).
pub fn json(report: &ReplayReport, out: &mut impl Write) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        version: u32,
        passed: bool,
        #[serde(flatten)]
        report: &'a ReplayReport,
    }
    let doc = Doc {
        version: 1,
        passed: !report.failed(),
        report,
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}
