//! `mailtape compare`: the same scenarios against several servers, as a grid.
//!
//! - [`run`]: runs every scenario against every server concurrently (one
//!   [`TargetRun`](crate::engine::TargetRun) per server, `--jobs` per server).
//! - [`view`] and [`text`]: each cell's transcript as normalized text (IMAP through the
//!   snapshot normalizer, POP3 and SMTP through `text`), so servers can be diffed.
//! - this module: the [`Comparison`] model (rows, cells, pairwise diffs, who disagrees).
//! - [`grid`], [`markdown`], [`html`]: the terminal grid and the two report formats.
//!
//! Like the other reporters, nothing here decides pass or fail: each cell's status is the
//! engine's verdict for that server.

pub mod grid;
pub mod html;
pub mod markdown;
pub mod run;
pub mod view;

use std::path::PathBuf;

use crate::checks::Level;
use crate::report::{Problem, ScenarioOutcome, Status};
use crate::script::{Protocol, Scenario};

pub use view::{CellText, cell_text};

/// Which filter group a scenario belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Imap,
    Pop3,
    Smtp,
    /// Sessions on more than one protocol.
    Cross,
}

impl Kind {
    pub fn of(scenario: &Scenario) -> Kind {
        let first = scenario.protocol;
        if scenario.sessions.values().any(|s| s.protocol != first) {
            return Kind::Cross;
        }
        match first {
            Protocol::Imap => Kind::Imap,
            Protocol::Pop3 => Kind::Pop3,
            Protocol::Smtp => Kind::Smtp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Imap => "imap",
            Kind::Pop3 => "pop3",
            Kind::Smtp => "smtp",
            Kind::Cross => "cross",
        }
    }
}

/// The grid word for a status.
pub fn label(status: &Status) -> &'static str {
    match status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Skip { .. } => "SKIP",
        Status::ExpectedFailure { .. } => "XFAIL",
        Status::UnexpectedPass { .. } => "XPASS",
    }
}

/// One scenario on one server.
#[derive(Debug, Clone)]
pub struct Cell {
    pub status: Status,
    /// Ids of the rules the server broke, MUST ones first, each once.
    pub rules: Vec<String>,
    /// One line per problem that is not a rule (mismatch, timeout, error), with its place.
    pub problems: Vec<String>,
    /// Problems and violations in full, plain text (as in `mailtape run`'s failure details).
    pub details: String,
    pub text: CellText,
}

impl Cell {
    pub fn new(outcome: &ScenarioOutcome, text: CellText) -> Cell {
        let mut rules: Vec<String> = Vec::new();
        for level in [Level::Must, Level::Should] {
            for v in outcome.violations.iter().filter(|v| v.level == level) {
                if !rules.iter().any(|r| r == v.rule) {
                    rules.push(v.rule.to_string());
                }
            }
        }
        let problems = outcome.problems.iter().map(problem_line).collect();
        let mut details = String::new();
        match &outcome.status {
            Status::Skip { reason } => details.push_str(&format!("skipped: {reason}\n")),
            Status::ExpectedFailure { reason } => {
                details.push_str(&format!("expected failure: {reason}\n"))
            }
            _ => {}
        }
        details.push_str(&crate::report::human::failure_details(outcome));
        Cell {
            status: outcome.status.clone(),
            rules,
            problems,
            details,
            text,
        }
    }

    /// Whether the cell ran far enough to have a transcript worth comparing.
    pub fn ran(&self) -> bool {
        !matches!(self.status, Status::Skip { .. }) && !self.text.full.is_empty()
    }
}

/// `mismatch at file:line:col (session 1)`, and the like.
fn problem_line(p: &Problem) -> String {
    let at = |loc: Option<String>, session: Option<&str>| {
        let mut s = String::new();
        if let Some(l) = loc {
            s.push_str(&format!(" at {l}"));
        }
        if let Some(x) = session {
            s.push_str(&format!(
                " (session {})",
                if x.is_empty() { "\"\"" } else { x }
            ));
        }
        s
    };
    match p {
        Problem::Mismatch { loc, session, .. } => {
            format!("mismatch{}", at(Some(loc.to_string()), Some(session)))
        }
        Problem::Timeout { loc, session, .. } => format!(
            "timeout{}",
            at(loc.as_ref().map(ToString::to_string), Some(session))
        ),
        Problem::Error {
            loc,
            session,
            message,
        } => {
            let first = message.lines().next().unwrap_or("");
            format!(
                "error{}: {}",
                at(loc.as_ref().map(ToString::to_string), session.as_deref()),
                crate::report::normalize::escape_lossy(first.as_bytes())
            )
        }
        Problem::SnapshotChanged { .. } => "snapshot changed".to_string(),
        Problem::SnapshotMissing { .. } => "snapshot missing".to_string(),
    }
}

/// The unified diff between two servers' compared texts (`a` is the old side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairDiff {
    pub a: usize,
    pub b: usize,
    pub diff: String,
}

/// One scenario across every server.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub title: String,
    pub file: PathBuf,
    pub kind: Kind,
    /// In server order.
    pub cells: Vec<Cell>,
    /// For every pair of servers that both ran the scenario and whose texts differ.
    pub diffs: Vec<PairDiff>,
}

impl Row {
    /// `servers` names the cells, for the diff headers.
    pub fn new(
        id: String,
        title: String,
        file: PathBuf,
        kind: Kind,
        cells: Vec<Cell>,
        servers: &[String],
    ) -> Row {
        let mut diffs = Vec::new();
        for a in 0..cells.len() {
            for b in a + 1..cells.len() {
                let (x, y) = (&cells[a], &cells[b]);
                if x.ran() && y.ran() && x.text.compared != y.text.compared {
                    let name = |i: usize| servers.get(i).map_or("?", String::as_str);
                    diffs.push(PairDiff {
                        a,
                        b,
                        diff: crate::report::snapshot::unified_diff(
                            &x.text.compared,
                            &y.text.compared,
                            name(a),
                            name(b),
                        ),
                    });
                }
            }
        }
        Row {
            id,
            title,
            file,
            kind,
            cells,
            diffs,
        }
    }

    /// Servers disagree: different statuses, or different normalized transcripts.
    pub fn disagrees(&self) -> bool {
        let mut labels = self.cells.iter().map(|c| label(&c.status));
        let first = labels.next();
        labels.any(|l| Some(l) != first) || !self.diffs.is_empty()
    }

    /// Why a disagreeing row has no diff to show.
    pub fn no_diff_note(&self) -> &'static str {
        if self.cells.iter().filter(|c| c.ran()).count() < 2 {
            "fewer than two servers have a transcript; the statuses differ"
        } else {
            "the transcripts are the same; the statuses differ"
        }
    }

    /// The diffs to show for the row as a whole: each server against the first one that
    /// ran (or, if that one matches it, against nothing), without repeating equal texts.
    pub fn baseline_diffs(&self) -> Vec<&PairDiff> {
        let Some(base) = self.cells.iter().position(Cell::ran) else {
            return Vec::new();
        };
        self.diffs.iter().filter(|d| d.a == base).collect()
    }
}

/// Per-server counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub expected_failures: usize,
    pub unexpected_passes: usize,
}

/// The whole grid.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub servers: Vec<String>,
    pub rows: Vec<Row>,
    /// How the comparison was made (the command line, passwords hidden), for reports.
    pub command: Option<String>,
}

impl Comparison {
    /// Rows are sorted by scenario id.
    pub fn new(servers: Vec<String>, mut rows: Vec<Row>, command: Option<String>) -> Comparison {
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        Comparison {
            servers,
            rows,
            command,
        }
    }

    pub fn counts(&self, server: usize) -> Counts {
        let mut c = Counts::default();
        for row in &self.rows {
            match row.cells.get(server).map(|c| &c.status) {
                Some(Status::Pass) => c.passed += 1,
                Some(Status::Fail) => c.failed += 1,
                Some(Status::Skip { .. }) => c.skipped += 1,
                Some(Status::ExpectedFailure { .. }) => c.expected_failures += 1,
                Some(Status::UnexpectedPass { .. }) => c.unexpected_passes += 1,
                None => {}
            }
        }
        c
    }

    pub fn disagreements(&self) -> usize {
        self.rows.iter().filter(|r| r.disagrees()).count()
    }

    /// Whether any server failed a scenario (an unexpected pass counts as a failure).
    pub fn failed(&self) -> bool {
        self.rows
            .iter()
            .flat_map(|r| &r.cells)
            .any(|c| c.status.is_unexpected_failure())
    }

    /// `12 scenarios x 2 servers: ref 12 passed; dovecot 10 passed, 1 failed, 1 expected
    /// failure; 3 scenarios where servers disagree`.
    pub fn summary(&self) -> String {
        let per_server: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name} {}", counts_text(&self.counts(i))))
            .collect();
        format!(
            "{} x {}: {}; {} where servers disagree",
            plural(self.rows.len(), "scenario", "scenarios"),
            plural(self.servers.len(), "server", "servers"),
            per_server.join("; "),
            plural(self.disagreements(), "scenario", "scenarios"),
        )
    }
}

fn counts_text(c: &Counts) -> String {
    let mut parts = vec![format!("{} passed", c.passed)];
    for (n, one, many) in [
        (c.failed, "failed", "failed"),
        (c.skipped, "skipped", "skipped"),
        (c.expected_failures, "expected failure", "expected failures"),
        (c.unexpected_passes, "unexpected pass", "unexpected passes"),
    ] {
        if n > 0 {
            parts.push(plural(n, one, many));
        }
    }
    parts.join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn outcome(status: Status) -> ScenarioOutcome {
        ScenarioOutcome {
            id: "imap.x".into(),
            title: "x".into(),
            file: PathBuf::from("scenarios/imap/x.ron"),
            spec: vec![],
            target: "t".into(),
            status,
            problems: vec![],
            violations: vec![],
            transcript: Default::default(),
            duration: Duration::ZERO,
        }
    }

    pub(crate) fn cell(status: Status, compared: &str) -> Cell {
        Cell::new(
            &outcome(status),
            CellText {
                full: compared.to_string(),
                compared: compared.to_string(),
            },
        )
    }

    fn row(cells: Vec<Cell>) -> Row {
        let servers: Vec<String> = (0..cells.len()).map(|i| format!("s{i}")).collect();
        Row::new(
            "imap.x".into(),
            "x".into(),
            PathBuf::from("x.ron"),
            Kind::Imap,
            cells,
            &servers,
        )
    }

    #[test]
    fn kinds_follow_the_protocols_of_the_sessions() {
        let kind = |header: &str| {
            let text = format!(
                r#"Scenario(id: "x", title: "t", spec: ["RFC 3501 6"], {header} script: "C1: a1 NOOP\nS1: a1 OK\n")"#
            );
            match crate::script::parse_str(std::path::Path::new("t.ron"), &text) {
                Ok(s) => Kind::of(&s),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(kind(r#"sessions: {"1": (protocol: "imap")},"#), Kind::Imap);
        assert_eq!(
            kind(r#"protocol: "pop3", sessions: {"1": (protocol: "pop3")},"#),
            Kind::Pop3
        );
        assert_eq!(
            kind(r#"protocol: "pop3", sessions: {"1": (protocol: "imap")},"#),
            Kind::Cross
        );
    }

    #[test]
    fn equal_rows_agree() {
        let r = row(vec![
            cell(Status::Pass, "C: a\nS: b\n"),
            cell(Status::Pass, "C: a\nS: b\n"),
        ]);
        assert!(!r.disagrees());
        assert!(r.diffs.is_empty());
    }

    #[test]
    fn a_different_transcript_disagrees_with_a_diff() {
        let r = row(vec![
            cell(Status::Pass, "C: a\nS: b\n"),
            cell(Status::Pass, "C: a\nS: c\n"),
            cell(Status::Pass, "C: a\nS: b\n"),
        ]);
        assert!(r.disagrees());
        assert_eq!(r.diffs.len(), 2, "s0-s1 and s1-s2");
        assert!(
            r.diffs[0].diff.contains("-S: b\n+S: c"),
            "{}",
            r.diffs[0].diff
        );
        let base: Vec<_> = r.baseline_diffs().iter().map(|d| d.b).collect();
        assert_eq!(base, [1]);
    }

    #[test]
    fn a_different_status_disagrees_and_skips_are_not_diffed() {
        let skip = Status::Skip {
            reason: "no".into(),
        };
        let r = row(vec![cell(Status::Pass, "C: a\n"), cell(skip, "")]);
        assert!(r.disagrees());
        assert!(r.diffs.is_empty());
    }

    #[test]
    fn counts_and_exit() {
        let xfail = Status::ExpectedFailure {
            reason: "RFC".into(),
        };
        let c = Comparison::new(
            vec!["a".into(), "b".into()],
            vec![row(vec![cell(Status::Pass, "x"), cell(xfail, "x")])],
            None,
        );
        assert!(!c.failed(), "an expected failure counts as passing");
        assert_eq!(
            c.summary(),
            "1 scenario x 2 servers: a 1 passed; b 0 passed, 1 expected failure; \
             1 scenario where servers disagree"
        );
        let c = Comparison::new(
            vec!["a".into(), "b".into()],
            vec![row(vec![cell(Status::Pass, "x"), cell(Status::Fail, "x")])],
            None,
        );
        assert!(c.failed());
    }
}
