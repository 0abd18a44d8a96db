//! Shrinking a failing recording (`mailtape shrink`): delta debugging (ddmin, Zeller and
//! Hildebrandt 2002) over whole commands until the smallest recording that still fails the
//! same way is left.
//!
//! A unit is one command of one session: its client message (literal lines, the `S: +` line
//! inside a literal, and continuation lines such as `DONE`, SASL responses or SMTP message
//! content) plus the recorded server lines of its step (IMAP: its tagged completion and the
//! untagged lines after it; POP3/SMTP: the replies after it). A session's greeting stays as
//! long as the session does; a session can go whole. Candidates are the original file with
//! the units' lines removed, so what is left reads exactly as recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{ReplayReport, replay, resolve_users};
use crate::engine::{RunOptions, TargetRun};
use crate::script::{ClientMessage, ExpectLine, PatternKind, Protocol, Scenario, Step};
use crate::target::Target;

/// One command and the recorded lines that answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub session: String,
    /// 1-based file lines.
    pub lines: Vec<usize>,
    tag: Option<String>,
}

/// A recording cut into units.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per session, the lines before its first command (the greeting).
    pub greetings: BTreeMap<String, Vec<usize>>,
    pub units: Vec<Unit>,
}

enum Item<'a> {
    Client(&'a ClientMessage),
    Server(&'a ExpectLine),
}

/// `C1:`, `S2?:` ... at the start of a line (after spaces): a script line.
fn is_script_line(line: &str) -> bool {
    let t = line.trim_start();
    let mut chars = t.chars();
    if !matches!(chars.next(), Some('C' | 'S')) {
        return false;
    }
    let rest: String = chars.collect();
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let after = &rest[name_end..];
    let after = after.strip_prefix(['?', '!', '~']).unwrap_or(after);
    after.starts_with(':')
}

impl Plan {
    /// Cut `scenario` (loaded from `text`) into units.
    pub fn new(scenario: &Scenario, text: &str) -> Plan {
        let file_lines: Vec<&str> = text.split('\n').collect();
        let mut items: Vec<(usize, &str, Item<'_>)> = Vec::new();
        for step in &scenario.steps {
            match step {
                Step::Send { session, messages } => {
                    for m in messages {
                        items.push((m.loc.line, session.as_str(), Item::Client(m)));
                    }
                }
                Step::Expect { session, lines } => {
                    for l in lines {
                        items.push((l.loc.line, session.as_str(), Item::Server(l)));
                    }
                }
            }
        }
        items.sort_by_key(|(line, _, _)| *line);
        let protocol_of = |s: &str| {
            scenario
                .sessions
                .get(s)
                .map_or(scenario.protocol, |spec| spec.protocol)
        };
        let mut plan = Plan {
            greetings: BTreeMap::new(),
            units: Vec::new(),
        };
        // Per session: its latest unit, SMTP message content, a SASL challenge answered next.
        let mut current: BTreeMap<&str, usize> = BTreeMap::new();
        let mut in_data: BTreeSet<&str> = BTreeSet::new();
        let mut sasl: BTreeSet<&str> = BTreeSet::new();
        for (i, (line, session, item)) in items.iter().enumerate() {
            let end = items.get(i + 1).map_or(file_lines.len() + 1, |n| n.0);
            let span: Vec<usize> = (*line..end)
                .filter(|&l| file_lines.get(l - 1).is_some_and(|t| is_script_line(t)))
                .collect();
            let protocol = protocol_of(session);
            let target = match item {
                Item::Client(m) => {
                    let continuation = match protocol {
                        Protocol::Imap => m.tag.is_none(),
                        _ => in_data.contains(session) || sasl.remove(session),
                    };
                    if protocol == Protocol::Smtp && in_data.contains(session) {
                        let text: String = m.segments.iter().map(|s| s.text.to_string()).collect();
                        if text == "." {
                            in_data.remove(session);
                        }
                    }
                    match (continuation, current.get(session)) {
                        (true, Some(&u)) => Some(u),
                        _ => {
                            plan.units.push(Unit {
                                session: session.to_string(),
                                lines: Vec::new(),
                                tag: m.tag.clone(),
                            });
                            current.insert(session, plan.units.len() - 1);
                            Some(plan.units.len() - 1)
                        }
                    }
                }
                Item::Server(l) => {
                    let src = l.source.as_str();
                    match protocol {
                        Protocol::Smtp if src.starts_with("354") => {
                            in_data.insert(session);
                        }
                        Protocol::Smtp if src.starts_with("334") => {
                            sasl.insert(session);
                        }
                        Protocol::Pop3 if src == "+" || src.starts_with("+ ") => {
                            sasl.insert(session);
                        }
                        _ => {}
                    }
                    let by_tag = match l.pattern.kind() {
                        PatternKind::Tagged { tag, .. } if protocol == Protocol::Imap => {
                            plan.units.iter().rposition(|u| {
                                u.session == *session
                                    && u.tag
                                        .as_deref()
                                        .is_some_and(|t| t.eq_ignore_ascii_case(tag))
                            })
                        }
                        _ => None,
                    };
                    by_tag.or_else(|| current.get(session).copied())
                }
            };
            match target {
                Some(u) => plan.units[u].lines.extend(span),
                None => plan
                    .greetings
                    .entry(session.to_string())
                    .or_default()
                    .extend(span),
            }
        }
        for u in &mut plan.units {
            u.lines.sort_unstable();
        }
        plan
    }

    /// The sessions that have lines.
    pub fn sessions(&self) -> BTreeSet<String> {
        self.greetings
            .keys()
            .cloned()
            .chain(self.units.iter().map(|u| u.session.clone()))
            .collect()
    }

    /// Script lines of a candidate: the kept units and the greetings of the kept sessions.
    pub fn line_count(&self, units: &[usize], sessions: &BTreeSet<String>) -> usize {
        let greet: usize = self
            .greetings
            .iter()
            .filter(|(s, _)| sessions.contains(*s))
            .map(|(_, l)| l.len())
            .sum();
        greet
            + units
                .iter()
                .map(|&u| self.units[u].lines.len())
                .sum::<usize>()
    }

    /// The candidate's file text, and for each of its lines the original line number.
    pub fn text(
        &self,
        original: &str,
        units: &[usize],
        sessions: &BTreeSet<String>,
    ) -> (String, Vec<usize>) {
        let mut removed: BTreeSet<usize> = BTreeSet::new();
        for (s, lines) in &self.greetings {
            if !sessions.contains(s) {
                removed.extend(lines);
            }
        }
        let kept: BTreeSet<usize> = units.iter().copied().collect();
        for (i, u) in self.units.iter().enumerate() {
            if !kept.contains(&i) || !sessions.contains(&u.session) {
                removed.extend(&u.lines);
            }
        }
        let mut text = String::with_capacity(original.len());
        let mut numbers = Vec::new();
        for (i, line) in original.split('\n').enumerate() {
            if removed.contains(&(i + 1)) {
                continue;
            }
            if !numbers.is_empty() {
                text.push('\n');
            }
            text.push_str(line);
            numbers.push(i + 1);
        }
        (text, numbers)
    }
}

/// How a recording fails; a candidate must fail the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `--rule`: a violation of this rule.
    Rule(String),
    /// These rules are violated (the failing ones: MUST, SHOULD under `--strict`).
    Rules(BTreeSet<String>),
    /// No violation, but the server's answers differ from the recording (or it stopped
    /// answering) first at this line of the original file, and there it now says `live`
    /// (digits masked, so a count that drifts between replays does not matter; a candidate
    /// that lost the LOGIN or SELECT a command needs answers differently and is refused).
    Difference { line: usize, live: Vec<String> },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Rule(r) => write!(f, "violates {r}"),
            Failure::Rules(rules) => {
                let list: Vec<&str> = rules.iter().map(String::as_str).collect();
                write!(f, "violates {}", list.join(", "))
            }
            Failure::Difference { line, live } => {
                write!(
                    f,
                    "differs from the recording at line {line} (original file)"
                )?;
                match live.first() {
                    Some(first) => write!(f, ", where the server now says `{first}`"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// How `report` fails, if it does; `original` maps a line of the replayed file to the
/// original file's.
pub fn failure(
    report: &ReplayReport,
    rule: Option<&str>,
    original: &dyn Fn(usize) -> usize,
) -> Option<Failure> {
    if let Some(rule) = rule {
        return report
            .violations
            .iter()
            .any(|v| v.rule == rule)
            .then(|| Failure::Rule(rule.to_string()));
    }
    let rules: BTreeSet<String> = report
        .failing_violations()
        .map(|v| v.rule.to_string())
        .collect();
    if !rules.is_empty() {
        return Some(Failure::Rules(rules));
    }
    // A problem says what went wrong in its own words, which name lines and values of the
    // candidate; its kind is what must stay the same.
    let problem_lines = report.problems.iter().filter_map(|p| match p {
        crate::report::Problem::Timeout { loc, .. } => loc
            .as_ref()
            .map(|l| (l.line, vec!["(no answer)".to_string()])),
        crate::report::Problem::Error { loc, .. } => {
            loc.as_ref().map(|l| (l.line, vec!["(error)".to_string()]))
        }
        crate::report::Problem::Mismatch { loc, .. } => {
            Some((loc.line, vec!["(mismatch)".to_string()]))
        }
        _ => None,
    });
    let diff_lines = report.sessions.iter().filter_map(|s| {
        let live = s.first_live.iter().map(|l| mask_digits(l)).collect();
        s.first_difference.as_ref().map(|l| (l.line, live))
    });
    problem_lines
        .chain(diff_lines)
        .map(|(line, live)| (original(line), live))
        .min()
        .map(|(line, live)| Failure::Difference { line, live })
}

/// Every run of digits after the `S1:` prefix as `#`.
fn mask_digits(line: &str) -> String {
    let (prefix, rest) = line.split_once(": ").unwrap_or(("", line));
    let mut out = String::with_capacity(line.len());
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push_str(": ");
    }
    let mut in_digits = false;
    for c in rest.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !in_digits {
            out.push('#');
        }
        in_digits = c.is_ascii_digit();
    }
    out
}

/// Where the shrinker is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub replays: usize,
    pub commands: usize,
    pub start_commands: usize,
    pub lines: usize,
    pub start_lines: usize,
}

/// The smallest recording found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub text: String,
    pub failure: Failure,
    pub start_commands: usize,
    pub commands: usize,
    pub start_lines: usize,
    pub lines: usize,
    pub sessions: usize,
    pub replays: usize,
    /// `stop` was raised: this is the smallest failing recording found so far.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("{0}")]
    Load(#[from] crate::script::ScriptError),
    #[error("{0}")]
    Target(String),
    #[error(
        "{file} does not fail against {target}{what}: nothing to shrink (replay it to see the answers)"
    )]
    NotFailing {
        file: String,
        target: String,
        what: String,
    },
}

/// Starts a fresh server for one replay (the bundled reference server, when no target was
/// given): each candidate then starts from the same empty state.
pub type FreshServer<'a> = &'a (dyn Fn() -> Starting + Sync);

/// A server being started: its target and the handle that stops it, if it started.
pub type Starting = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<(Target, reference_server::Running)>> + Send>,
>;

struct Shrinker<'a> {
    target: &'a Target,
    fresh: Option<FreshServer<'a>>,
    options: RunOptions,
    path: &'a Path,
    text: &'a str,
    rule: Option<&'a str>,
    plan: Plan,
    expected: Option<Failure>,
    replays: usize,
}

impl Shrinker<'_> {
    /// Replay a candidate and say how it fails.
    async fn run(&mut self, units: &[usize], sessions: &BTreeSet<String>) -> Option<Failure> {
        let (text, numbers) = self.plan.text(self.text, units, sessions);
        self.replays += 1;
        let mut scenario = crate::script::parse_recording(self.path, &text).ok()?;
        resolve_users(&mut scenario, self.target).ok()?;
        let (target, server) = match self.fresh {
            Some(start) => {
                let (t, running) = start().await?;
                (t, Some(running))
            }
            None => (self.target.clone(), None),
        };
        let report = match TargetRun::new(target, self.options.clone()) {
            Ok(run) => Some(replay(&run, &scenario).await),
            Err(_) => None,
        };
        if let Some(s) = server {
            s.shutdown().await;
        }
        let report = report?;
        let original = |l: usize| numbers.get(l.wrapping_sub(1)).copied().unwrap_or(l);
        failure(&report, self.rule, &original)
    }

    async fn fails(&mut self, units: &[usize], sessions: &BTreeSet<String>) -> bool {
        let got = self.run(units, sessions).await;
        got.is_some() && got == self.expected
    }
}

/// Shrink the recording in `text` (loaded from `path`) against `target` (or, with `fresh`,
/// against a fresh server per replay). `progress` is called after every replay. When `stop`
/// is raised (Ctrl-C), no new replay starts and the smallest failing recording found so far
/// comes back, marked `interrupted`.
#[allow(clippy::too_many_arguments)]
pub async fn shrink(
    target: &Target,
    fresh: Option<FreshServer<'_>>,
    options: RunOptions,
    path: &Path,
    text: &str,
    rule: Option<&str>,
    progress: &mut dyn FnMut(Progress),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Shrunk, ShrinkError> {
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let scenario = crate::script::parse_recording(path, text)?;
    let plan = Plan::new(&scenario, text);
    let mut sessions = plan.sessions();
    let mut units: Vec<usize> = (0..plan.units.len()).collect();
    let start_commands = units.len();
    let start_lines = plan.line_count(&units, &sessions);
    let mut s = Shrinker {
        target,
        fresh,
        options,
        path,
        text,
        rule,
        plan,
        expected: None,
        replays: 0,
    };
    let expected = s.run(&units, &sessions).await;
    let Some(expected) = expected else {
        return Err(ShrinkError::NotFailing {
            file: path.display().to_string(),
            target: target.name.clone(),
            what: rule
                .map(|r| format!(" with a violation of {r}"))
                .unwrap_or_default(),
        });
    };
    s.expected = Some(expected.clone());
    let mut report = |s: &Shrinker<'_>, units: &[usize], sessions: &BTreeSet<String>| {
        progress(Progress {
            replays: s.replays,
            commands: units.len(),
            start_commands,
            lines: s.plan.line_count(units, sessions),
            start_lines,
        })
    };
    report(&s, &units, &sessions);

    // Whole sessions first: one replay can drop many commands.
    let names: Vec<String> = sessions.iter().cloned().collect();
    if names.len() > 1 {
        for name in names {
            if stopped() {
                break;
            }
            let mut fewer = sessions.clone();
            fewer.remove(&name);
            let kept: Vec<usize> = units
                .iter()
                .copied()
                .filter(|&u| s.plan.units[u].session != name)
                .collect();
            if !fewer.is_empty() && s.fails(&kept, &fewer).await {
                sessions = fewer;
                units = kept;
            }
            report(&s, &units, &sessions);
        }
    }

    // ddmin over the commands left: try removing one of n chunks; on success keep the
    // rest and go coarser, else split finer, until single commands cannot go.
    let mut n = 2usize;
    while !units.is_empty() && !stopped() {
        let chunk = units.len().div_ceil(n.min(units.len()));
        let mut reduced = false;
        for start in (0..units.len()).step_by(chunk) {
            let rest: Vec<usize> = units[..start]
                .iter()
                .chain(&units[(start + chunk).min(units.len())..])
                .copied()
                .collect();
            if stopped() {
                break;
            }
            let ok = s.fails(&rest, &sessions).await;
            report(&s, if ok { &rest } else { &units }, &sessions);
            if ok {
                units = rest;
                n = n.saturating_sub(1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if chunk <= 1 {
                break;
            }
            n = (n * 2).min(units.len());
        }
    }

    // Sessions whose commands all went: their greeting alone may go too.
    let idle: Vec<String> = sessions
        .iter()
        .filter(|name| !units.iter().any(|&u| s.plan.units[u].session == **name))
        .cloned()
        .collect();
    for name in idle {
        if stopped() {
            break;
        }
        let mut fewer = sessions.clone();
        fewer.remove(&name);
        if !fewer.is_empty() && s.fails(&units, &fewer).await {
            sessions = fewer;
        }
        report(&s, &units, &sessions);
    }

    let (text, _) = s.plan.text(text, &units, &sessions);
    Ok(Shrunk {
        lines: s.plan.line_count(&units, &sessions),
        text,
        failure: expected,
        start_commands,
        commands: units.len(),
        start_lines,
        sessions: sessions.len(),
        replays: s.replays,
        interrupted: stopped(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r##"Scenario(
    id: "recorded",
    title: "recorded",
    spec: ["recorded"],
    protocol: "imap",
    sessions: {
        "1": (user: "alice", state: "not-authenticated"),
        "2": (user: "alice", state: "not-authenticated", protocol: "smtp"),
    },
    script: r#"
S1: * OK ready
C1: a1 LOGIN {user} {password}
S1: a1 OK
C1: a2 APPEND INBOX {5}
S1: + go
C1: abc
C1:
S2: 220 mx ESMTP
C2: EHLO x
S2: 250 mx
C1: a3 IDLE
S1: + idling
C1: DONE
S1: a3 OK
C2: DATA
S2: 354 go
C2: Subject: x
C2: .
S2: 250 ok
S1: * 1 EXISTS
S1: a2 OK [APPENDUID 7 1]
"#,
)"##;

    #[test]
    fn commands_take_their_literals_continuations_and_answers() {
        let s = crate::script::parse_str(Path::new("t.ron"), FILE).expect("parses");
        let plan = Plan::new(&s, FILE);
        assert_eq!(plan.greetings["1"], vec![11]);
        assert_eq!(plan.greetings["2"], vec![18]);
        let lines: Vec<(&str, Vec<usize>)> = plan
            .units
            .iter()
            .map(|u| (u.session.as_str(), u.lines.clone()))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("1", vec![12, 13]),
                // APPEND: its literal, the `+` inside it, and its completion at the end.
                ("1", vec![14, 15, 16, 17, 31]),
                ("2", vec![19, 20]),
                // IDLE: the `+`, DONE and its completion; the EXISTS came after the last
                // command of the session, so it goes with IDLE too.
                ("1", vec![21, 22, 23, 24, 30]),
                // DATA with its content lines and reply.
                ("2", vec![25, 26, 27, 28, 29]),
            ]
        );
        let everything: Vec<usize> = (0..plan.units.len()).collect();
        let (text, numbers) = plan.text(FILE, &everything, &plan.sessions());
        assert_eq!(text, FILE);
        assert_eq!(numbers.len(), FILE.split('\n').count());
        // Without the SMTP session and the APPEND the rest still loads.
        let one: BTreeSet<String> = ["1".to_string()].into();
        let (text, numbers) = plan.text(FILE, &[0, 3], &one);
        let s = crate::script::parse_str(Path::new("t.ron"), &text).expect("candidate parses");
        assert_eq!(s.steps.len(), 7);
        assert!(!text.contains("APPEND") && !text.contains("EHLO"));
        assert_eq!(numbers[10], 11);
        assert_eq!(plan.line_count(&[0, 3], &one), 8);
    }

    #[test]
    fn script_lines_are_told_from_the_ron_around_them() {
        assert!(is_script_line("C1: a1 NOOP"));
        assert!(is_script_line("  S?: * OK"));
        assert!(is_script_line("S:"));
        assert!(!is_script_line("Scenario("));
        assert!(!is_script_line("\"#,"));
        assert!(!is_script_line("# C1: comment"));
    }
}
