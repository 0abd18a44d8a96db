//! Terminal output in the manner of `cargo test` and nextest.
//!
//! A header per target, one line per scenario as it finishes, then the details of each
//! failure, a brief list of warnings (SHOULD violations) and a summary line. Colour is used
//! only when asked for (see [`HumanOptions::for_stdout`]: a terminal and `NO_COLOR` unset);
//! a progress bar on stderr shows during long runs when stderr is a terminal, and scenario
//! lines are printed with the bar suspended so the two never garble each other. The writer
//! is any [`Write`], so tests capture the output.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use owo_colors::Style;

use super::normalize::escape_lossy;
use super::{Problem, ScenarioOutcome, Status, Summary};
use crate::checks::{Level, Violation};

/// Violation bytes longer than this are cut in the report (the JSON report has them all).
const MAX_BYTES_SHOWN: usize = 400;

/// Runs with fewer scenarios than this finish too fast for a bar to help.
const PROGRESS_MIN_SCENARIOS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanOptions {
    /// Emit ANSI colours.
    pub color: bool,
    /// Show a progress bar on stderr (it hides itself if stderr is not a terminal).
    pub progress: bool,
}

impl HumanOptions {
    /// For output on stdout: colour if stdout is a terminal and `NO_COLOR` is unset (anstream
    /// also honours `CLICOLOR_FORCE`), a bar if stderr is a terminal.
    pub fn for_stdout() -> HumanOptions {
        use std::io::IsTerminal;
        let choice = anstream::AutoStream::choice(&io::stdout());
        HumanOptions {
            color: choice != anstream::ColorChoice::Never,
            progress: io::stderr().is_terminal(),
        }
    }

    /// No colour, no bar: for tests and files.
    pub fn plain() -> HumanOptions {
        HumanOptions {
            color: false,
            progress: false,
        }
    }
}

/// Renders a run as it happens. Call [`run_started`](Self::run_started) once per target,
/// [`scenario_finished`](Self::scenario_finished) for each outcome, and
/// [`run_finished`](Self::run_finished) once with every outcome of the run.
pub struct HumanReporter<W: Write> {
    out: W,
    paint: Painter,
    progress: bool,
    bar: Option<ProgressBar>,
}

impl HumanReporter<io::Stdout> {
    /// Writes to stdout with [`HumanOptions::for_stdout`].
    pub fn stdout() -> Self {
        HumanReporter::new(io::stdout(), HumanOptions::for_stdout())
    }
}

impl<W: Write> HumanReporter<W> {
    pub fn new(out: W, options: HumanOptions) -> Self {
        HumanReporter {
            out,
            paint: Painter {
                color: options.color,
            },
            progress: options.progress,
            bar: None,
        }
    }

    /// The header line for one target: `Running N scenarios against <target>`.
    pub fn run_started(&mut self, target: &str, scenarios: usize) -> io::Result<()> {
        self.finish_bar();
        let line = format!(
            "{} {} against {}\n",
            self.paint.paint("Running", Style::new().green().bold()),
            plural(scenarios, "scenario", "scenarios"),
            self.paint.paint(target, Style::new().bold()),
        );
        self.out.write_all(line.as_bytes())?;
        self.out.flush()?;
        if self.progress && scenarios >= PROGRESS_MIN_SCENARIOS {
            let bar =
                ProgressBar::with_draw_target(Some(scenarios as u64), ProgressDrawTarget::stderr());
            // The template is a constant; if indicatif ever rejected it, a default bar is fine.
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{elapsed}] {wide_bar} {pos}/{len} {msg}")
            {
                bar.set_style(style);
            }
            bar.set_message(target.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
        Ok(())
    }

    /// One line for a finished scenario: `PASS [ 0.123s] imap.append.literal`.
    pub fn scenario_finished(&mut self, outcome: &ScenarioOutcome) -> io::Result<()> {
        let line = self.paint.scenario_line(outcome);
        let out = &mut self.out;
        let mut write = || -> io::Result<()> {
            out.write_all(line.as_bytes())?;
            out.flush()
        };
        match &self.bar {
            // Suspending clears the bar, prints, and redraws it below the new line.
            Some(bar) => {
                let r = bar.suspend(write);
                bar.inc(1);
                r
            }
            None => write(),
        }
    }

    /// Failure details, warnings and the summary line.
    pub fn run_finished(
        &mut self,
        outcomes: &[ScenarioOutcome],
        elapsed: Duration,
    ) -> io::Result<()> {
        self.finish_bar();
        let text = self.paint.final_report(outcomes, elapsed);
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    /// The writer back, e.g. the captured bytes in tests.
    pub fn into_inner(mut self) -> W {
        self.finish_bar();
        // `Drop` is not implemented, so moving the writer out is fine.
        self.out
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The plain-text details of one outcome's problems and violations (no colour), as used in
/// the JUnit report.
pub fn failure_details(outcome: &ScenarioOutcome) -> String {
    let mut s = String::new();
    Painter { color: false }.details_body(outcome, &mut s);
    s
}

/// `1 scenario`, `2 scenarios`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Formatting with or without ANSI colour.
#[derive(Debug, Clone, Copy)]
struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, text: &str, style: Style) -> String {
        if self.color {
            style.style(text).to_string()
        } else {
            text.to_string()
        }
    }

    fn status_label(&self, status: &Status) -> String {
        let (label, style) = match status {
            Status::Pass => ("PASS", Style::new().green().bold()),
            Status::Fail => ("FAIL", Style::new().red().bold()),
            Status::Skip { .. } => ("SKIP", Style::new().yellow().bold()),
            Status::ExpectedFailure { .. } => ("XFAIL", Style::new().cyan().bold()),
            Status::UnexpectedPass { .. } => ("XPASS", Style::new().red().bold()),
        };
        // Padded before painting so the escape codes do not upset the alignment.
        self.paint(&format!("{label:>5}"), style)
    }

    fn scenario_line(&self, o: &ScenarioOutcome) -> String {
        let mut line = format!(
            "{} [{:>6.3}s] {}",
            self.status_label(&o.status),
            o.duration.as_secs_f64(),
            self.paint(&o.id, Style::new().bold())
        );
        match &o.status {
            Status::Skip { reason } | Status::ExpectedFailure { reason } => {
                let _ = write!(line, ": {reason}");
            }
            Status::UnexpectedPass { reason } => {
                let _ = write!(
                    line,
                    ": passed but listed as an expected failure ({reason})"
                );
            }
            Status::Pass | Status::Fail => {}
        }
        let warnings = warnings_of(o).count();
        if warnings > 0 {
            let w = format!(" ({})", plural(warnings, "warning", "warnings"));
            line.push_str(&self.paint(&w, Style::new().yellow()));
        }
        line.push('\n');
        line
    }

    /// Sections (failure blocks, warnings, summary), each after one blank line.
    fn final_report(&self, outcomes: &[ScenarioOutcome], elapsed: Duration) -> String {
        let mut sections: Vec<String> = Vec::new();
        for o in outcomes.iter().filter(|o| o.status.is_unexpected_failure()) {
            let mut block = String::new();
            self.details(o, &mut block);
            sections.push(block);
        }
        let warned: Vec<(&ScenarioOutcome, &Violation)> = outcomes
            .iter()
            .filter(|o| !o.status.is_unexpected_failure())
            .flat_map(|o| warnings_of(o).map(move |v| (o, v)))
            .collect();
        if !warned.is_empty() {
            let mut block = format!(
                "{}\n",
                self.paint("Warnings:", Style::new().yellow().bold())
            );
            for (o, v) in warned {
                let _ = writeln!(
                    block,
                    "  {} {} [{}]: {} {} [{}] {}",
                    self.paint("WARN", Style::new().yellow().bold()),
                    o.id,
                    o.target,
                    v.rule,
                    v.rfc,
                    where_(v),
                    one_line(&v.message)
                );
            }
            sections.push(block);
        }
        sections.push(self.summary_line(outcomes, elapsed));
        sections.iter().map(|b| format!("\n{b}")).collect()
    }

    fn summary_line(&self, outcomes: &[ScenarioOutcome], elapsed: Duration) -> String {
        let sum = Summary::of(outcomes);
        let failed_text = format!("{} failed", sum.failed);
        let xpass_text = plural(
            sum.unexpected_passes,
            "unexpected pass",
            "unexpected passes",
        );
        let alarm = Style::new().red().bold();
        format!(
            "{}: {}, {} passed, {}, {} skipped, {}, {}, {} [{:.3}s]\n",
            self.paint("Summary", Style::new().bold()),
            plural(sum.total, "scenario", "scenarios"),
            sum.passed,
            if sum.failed > 0 {
                self.paint(&failed_text, alarm)
            } else {
                failed_text
            },
            sum.skipped,
            plural(
                sum.expected_failures,
                "expected failure",
                "expected failures"
            ),
            if sum.unexpected_passes > 0 {
                self.paint(&xpass_text, alarm)
            } else {
                xpass_text
            },
            plural(sum.warnings, "warning", "warnings"),
            elapsed.as_secs_f64(),
        )
    }

    /// The block for one failed scenario: a heading, then each problem and violation.
    fn details(&self, o: &ScenarioOutcome, s: &mut String) {
        let _ = writeln!(
            s,
            "--- {} {} [{}] {}",
            self.status_label(&o.status).trim_start(),
            self.paint(&o.id, Style::new().bold()),
            o.target,
            o.file.display()
        );
        self.details_body(o, s);
    }

    fn details_body(&self, o: &ScenarioOutcome, s: &mut String) {
        if let Status::UnexpectedPass { reason } = &o.status {
            let _ = writeln!(
                s,
                "    listed as an expected failure on this target, but passed: {reason}"
            );
        }
        for p in &o.problems {
            self.problem(p, s);
        }
        for v in &o.violations {
            self.violation(v, s);
        }
    }

    fn problem(&self, p: &Problem, s: &mut String) {
        let red = Style::new().red().bold();
        match p {
            Problem::Mismatch {
                loc,
                session,
                expected,
                got,
                message,
            } => {
                let _ = writeln!(
                    s,
                    "    {} at {loc} (session {}): {}",
                    self.paint("mismatch", red),
                    session_name(session),
                    one_line(message)
                );
                let _ = writeln!(s, "      expected: {}", one_line(expected));
                if got.is_empty() {
                    let _ = writeln!(s, "      got:      nothing");
                }
                for (i, g) in got.iter().enumerate() {
                    let label = if i == 0 { "got:     " } else { "         " };
                    let text = escape_lossy(g.strip_suffix("\r\n").unwrap_or(g).as_bytes());
                    let _ = writeln!(s, "      {label} {text}");
                }
            }
            Problem::Timeout {
                loc,
                session,
                message,
            } => {
                let at = loc.as_ref().map(|l| format!(" at {l}")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "    {}{at} (session {}): {message}",
                    self.paint("timeout", red),
                    session_name(session)
                );
            }
            Problem::Error {
                loc,
                session,
                message,
            } => {
                let at = loc.as_ref().map(|l| format!(" at {l}")).unwrap_or_default();
                let sess = session
                    .as_ref()
                    .map(|x| format!(" (session {})", session_name(x)))
                    .unwrap_or_default();
                let _ = writeln!(s, "    {}{at}{sess}: {message}", self.paint("error", red));
            }
            Problem::SnapshotChanged { path, diff } => {
                let _ = writeln!(
                    s,
                    "    {}: {}",
                    self.paint("snapshot changed", red),
                    path.display()
                );
                let _ = writeln!(
                    s,
                    "      (the new text is in the .snap.new file beside it; --accept takes it)"
                );
                for line in diff.lines() {
                    let _ = writeln!(s, "      {}", self.paint(line, diff_line_style(line)));
                }
            }
            Problem::SnapshotMissing { path } => {
                let _ = writeln!(
                    s,
                    "    {}: {} (not written on CI; run locally or with --accept)",
                    self.paint("snapshot missing", red),
                    path.display()
                );
            }
        }
    }

    fn violation(&self, v: &Violation, s: &mut String) {
        let (level, style) = match v.level {
            Level::Must => ("MUST", Style::new().red().bold()),
            Level::Should => ("SHOULD", Style::new().yellow().bold()),
        };
        let _ = writeln!(
            s,
            "    {} {} ({}, {}) [{}]: {}",
            self.paint("violation", style),
            v.rule,
            level,
            v.rfc,
            where_(v),
            one_line(&v.message)
        );
        if !v.bytes.is_empty() {
            let shown = &v.bytes[..v.bytes.len().min(MAX_BYTES_SHOWN)];
            let more = v.bytes.len() - shown.len();
            let tail = if more > 0 {
                format!(" ... ({more} more bytes)")
            } else {
                String::new()
            };
            let _ = writeln!(s, "      bytes: {}{tail}", escape_lossy(shown));
        }
    }
}

/// Text that may quote the server, kept on one line with its control characters escaped.
fn one_line(text: &str) -> String {
    escape_lossy(text.as_bytes())
}

/// `session 1, file:line:col` (or just the session when no script line was running).
fn where_(v: &Violation) -> String {
    match &v.loc {
        Some(loc) => format!("session {}, {loc}", session_name(&v.session)),
        None => format!("session {}", session_name(&v.session)),
    }
}

/// The default session `""` is shown as `""` so it is visible.
fn session_name(s: &str) -> &str {
    if s.is_empty() { "\"\"" } else { s }
}

fn warnings_of(o: &ScenarioOutcome) -> impl Iterator<Item = &Violation> {
    o.violations.iter().filter(|v| v.level == Level::Should)
}

/// How a line of a unified diff is coloured: headers bold, additions green, removals red,
/// hunk headers cyan.
pub fn diff_line_style(line: &str) -> Style {
    if line.starts_with("+++") || line.starts_with("---") {
        Style::new().bold()
    } else if line.starts_with('+') {
        Style::new().green()
    } else if line.starts_with('-') {
        Style::new().red()
    } else if line.starts_with("@@") {
        Style::new().cyan()
    } else {
        Style::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::report::Transcript;
    use crate::script::Loc;

    fn loc(line: usize) -> Loc {
        Loc {
            file: PathBuf::from("scenarios/imap/append.ron"),
            line,
            column: 1,
        }
    }

    fn outcome(id: &str, status: Status, ms: u64) -> ScenarioOutcome {
        ScenarioOutcome {
            id: id.to_string(),
            title: format!("title of {id}"),
            file: PathBuf::from("scenarios/imap/append.ron"),
            spec: vec!["RFC 3501 6.3.11".to_string()],
            target: "reference".to_string(),
            status,
            problems: vec![],
            violations: vec![],
            transcript: Transcript::default(),
            duration: Duration::from_millis(ms),
        }
    }

    fn violation(level: Level, bytes: &[u8]) -> Violation {
        Violation {
            rule: "imap.tag.echo",
            level,
            rfc: "RFC 3501 2.2.1",
            message: "the tagged response must echo the command tag".to_string(),
            session: "1".to_string(),
            bytes: bytes.to_vec(),
            loc: Some(loc(14)),
        }
    }

    /// One outcome of each kind, with every sort of problem: shared with the JSON and JUnit
    /// tests.
    pub(crate) fn sample_outcomes() -> Vec<ScenarioOutcome> {
        let pass = outcome("imap.noop.basic", Status::Pass, 12);
        let mut warned = outcome("imap.select.basic", Status::Pass, 123);
        warned.violations.push(Violation {
            rule: "imap.select.flags",
            level: Level::Should,
            rfc: "RFC 3501 6.3.1",
            message: "SELECT should send FLAGS".to_string(),
            session: String::new(),
            bytes: vec![],
            loc: None,
        });
        let mut fail = outcome("imap.append.literal", Status::Fail, 2345);
        fail.problems = vec![
            Problem::Mismatch {
                loc: loc(12),
                session: "1".to_string(),
                expected: "a1 OK [APPENDUID {v} {uid}]".to_string(),
                got: vec![
                    "* 3 EXISTS\r\n".to_string(),
                    "a1 NO [TRYCREATE] No such mailbox\r\n".to_string(),
                ],
                message: "the tagged response did not match".to_string(),
            },
            Problem::Timeout {
                loc: Some(loc(20)),
                session: "2".to_string(),
                message: "no completion for a2 within 10s".to_string(),
            },
            Problem::Error {
                loc: None,
                session: Some(String::new()),
                message: "connection reset by peer".to_string(),
            },
            Problem::SnapshotChanged {
                path: PathBuf::from("scenarios/imap/snapshots/reference/imap.append.literal.snap"),
                diff:
                    "--- stored\n+++ now\n@@ -1,2 +1,2 @@\n C1: a1 NOOP\n-S1: a1 OK\n+S1: a1 NO\n"
                        .to_string(),
            },
        ];
        fail.violations = vec![
            violation(Level::Must, b"a2 OK done\r\n\x1b[31m"),
            violation(Level::Should, b""),
        ];
        let skip = outcome(
            "imap.move.basic",
            Status::Skip {
                reason: "missing capability MOVE".to_string(),
            },
            0,
        );
        let xfail = outcome(
            "imap.idle.exists",
            Status::ExpectedFailure {
                reason: "RFC 3501 7.3.1 SHOULD; sends EXISTS only on NOOP".to_string(),
            },
            501,
        );
        let mut xpass = outcome(
            "imap.search.charset",
            Status::UnexpectedPass {
                reason: "charset UTF-8 unsupported".to_string(),
            },
            40,
        );
        xpass.problems.push(Problem::SnapshotMissing {
            path: PathBuf::from("scenarios/imap/snapshots/reference/imap.search.charset.snap"),
        });
        vec![pass, warned, fail, skip, xfail, xpass]
    }

    fn render(options: HumanOptions) -> String {
        let outcomes = sample_outcomes();
        let mut r = HumanReporter::new(Vec::new(), options);
        r.run_started("reference", outcomes.len()).unwrap();
        for o in &outcomes {
            r.scenario_finished(o).unwrap();
        }
        r.run_finished(&outcomes, Duration::from_millis(12_345))
            .unwrap();
        String::from_utf8(r.into_inner()).unwrap()
    }

    #[test]
    fn plain_output() {
        let text = render(HumanOptions::plain());
        assert!(
            !text.contains('\x1b'),
            "no escape codes without colour, and control bytes escaped"
        );
        insta::assert_snapshot!("human_plain", text);
    }

    #[test]
    fn coloured_output_marks_statuses() {
        let text = render(HumanOptions {
            color: true,
            progress: false,
        });
        let green_pass = Style::new().green().bold().style(" PASS").to_string();
        let red_fail = Style::new().red().bold().style(" FAIL").to_string();
        let cyan_xfail = Style::new().cyan().bold().style("XFAIL").to_string();
        assert!(text.contains(&green_pass));
        assert!(text.contains(&red_fail));
        assert!(text.contains(&cyan_xfail));
        assert!(text.contains(&Style::new().green().style("+S1: a1 NO").to_string()));
    }

    #[test]
    fn progress_bar_never_reaches_the_writer() {
        // The bar draws on stderr (hidden when it is not a terminal); the lines stay intact.
        let with_bar = render(HumanOptions {
            color: false,
            progress: true,
        });
        assert_eq!(with_bar, render(HumanOptions::plain()));
    }

    #[test]
    fn summary_counts_singular_and_plural() {
        let one = vec![outcome("a", Status::Pass, 1)];
        let mut r = HumanReporter::new(Vec::new(), HumanOptions::plain());
        r.run_finished(&one, Duration::from_millis(1500)).unwrap();
        let text = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            text,
            "\nSummary: 1 scenario, 1 passed, 0 failed, 0 skipped, 0 expected failures, \
             0 unexpected passes, 0 warnings [1.500s]\n"
        );
    }

    #[test]
    fn long_bytes_are_cut() {
        let mut o = outcome("a", Status::Fail, 1);
        o.violations.push(violation(Level::Must, &[b'x'; 500]));
        let text = failure_details(&o);
        assert!(text.contains("... (100 more bytes)"), "{text}");
    }
}
