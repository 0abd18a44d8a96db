//! Replaying a recording against a server and comparing what it says now with what was
//! recorded (`mailtape replay`), and shrinking a failing recording ([`shrink`]).
//!
//! The engine runs the recording ([`crate::engine::TargetRun::replay`]) and fills a
//! [`log::ReplayLog`]: per session, the recorded messages and the live ones, step by step,
//! with the per-server values ([`captures`]) paired as they appear. [`compare`] then
//! normalizes both sides (the snapshot normalizer for IMAP, [`crate::report::normalize_text`]
//! for POP3 and SMTP), shows each capture pair as one placeholder on both sides, and diffs.
//! Pass or fail is decided here ([`ReplayReport::failed`]), from the diffs, the problems
//! (timeouts, connection errors) and the always-on checks' violations.

pub mod captures;
pub mod log;
pub mod render;
pub mod shrink;

use std::path::PathBuf;

use similar::{DiffOp, TextDiff};

use crate::checks::{Level, Violation};
use crate::engine::{ReplayRaw, TargetRun};
use crate::report::normalize::{line_prefix, normalize_entries, substitute};
use crate::report::normalize_text::TextSession;
use crate::report::snapshot::unified_diff;
use crate::report::{Problem, Transcript, TranscriptEntry};
use crate::script::{Loc, Protocol, Scenario, Step};
use crate::target::Target;

use captures::{Captures, Pair};
use log::{Entry, SessionLog};

/// One session compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionDiff {
    pub session: String,
    pub protocol: Protocol,
    /// Messages compared on each side.
    pub recorded_messages: usize,
    pub live_messages: usize,
    /// The normalized texts.
    pub recorded: String,
    pub live: String,
    /// A unified diff, recorded -> live; empty when they are the same.
    pub diff: String,
    /// The recorded line where the first difference is (for a line the server added, the
    /// recorded line it came before, or the last one).
    pub first_difference: Option<Loc>,
    /// The live lines of the first difference (none when the server left a recorded line
    /// out): with `first_difference`, what tells one failure from another when shrinking.
    #[serde(skip)]
    pub first_live: Vec<String>,
}

/// Everything a replay found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayReport {
    pub file: PathBuf,
    pub target: String,
    pub sessions: Vec<SessionDiff>,
    pub captures: Vec<Pair>,
    pub violations: Vec<Violation>,
    /// Timeouts and connection errors; the replay stopped at the first.
    pub problems: Vec<Problem>,
    /// SHOULD-level violations fail too.
    pub strict: bool,
}

impl ReplayReport {
    pub fn differs(&self) -> bool {
        self.sessions.iter().any(|s| !s.diff.is_empty())
    }

    /// The violations that fail the replay: MUST ones, and SHOULD ones when strict.
    pub fn failing_violations(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.level == Level::Must || self.strict)
    }

    /// The one place a replay's pass or fail is decided.
    pub fn failed(&self) -> bool {
        self.differs() || !self.problems.is_empty() || self.failing_violations().next().is_some()
    }
}

/// Variables that carry a session's credentials.
const CREDENTIALS: [&str; 5] = ["user", "password", "auth_plain", "user_b64", "password_b64"];

/// Point each session's `user` at the target's account it stands for: the account of that
/// name, else the one with that login, else the one named like the part before `@`
/// (`alice@example.test` -> `alice`). A session whose lines use credentials and that has no
/// such account is an error naming the `--account` to add.
pub fn resolve_users(scenario: &mut Scenario, target: &Target) -> Result<(), String> {
    let mut uses: std::collections::BTreeSet<String> = Default::default();
    for step in &scenario.steps {
        if let Step::Send { session, messages } = step
            && messages
                .iter()
                .flat_map(|m| &m.segments)
                .any(|seg| seg.text.vars().any(|v| CREDENTIALS.contains(&v)))
        {
            uses.insert(session.clone());
        }
    }
    if target.accounts.is_empty()
        && let Some(name) = uses.iter().next()
    {
        return Err(format!(
            "session {name:?} sends credentials, and target {} has no account (give user:pass in the URL or --account)",
            target.name
        ));
    }
    for (name, spec) in scenario.sessions.iter_mut() {
        let Some(user) = spec.user.clone() else {
            continue;
        };
        let accounts = &target.accounts;
        let found = accounts
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(&user))
            .or_else(|| accounts.iter().find(|a| a.login == user))
            .or_else(|| {
                let (local, _) = user.split_once('@')?;
                accounts.iter().find(|a| a.name.eq_ignore_ascii_case(local))
            });
        match found {
            Some(a) => spec.user = Some(a.name.clone()),
            None if uses.contains(name) => {
                return Err(format!(
                    "session {name} logs in as {user}, and target {} has no such account (add --account {user}:PASSWORD)",
                    target.name
                ));
            }
            None => {}
        }
    }
    Ok(())
}

/// Replay `scenario` (a recording) against the run's target and compare.
pub async fn replay(run: &TargetRun, scenario: &Scenario) -> ReplayReport {
    let raw = run.replay(scenario).await;
    compare(raw, &run.target.name, run.options.strict)
}

/// Compare both sides of every session of a finished replay.
pub fn compare(raw: ReplayRaw, target: &str, strict: bool) -> ReplayReport {
    let ReplayRaw {
        outcome,
        substitutions,
        log,
    } = raw;
    let sessions = log
        .sessions
        .iter()
        .map(|(name, s)| compare_session(name, s, &log.captures, &substitutions))
        .collect();
    ReplayReport {
        file: outcome.file,
        target: target.to_string(),
        sessions,
        captures: log.captures.pairs(),
        violations: outcome.violations,
        problems: outcome.problems,
        strict,
    }
}

/// One side as normalized text, and the script line of each text line.
fn side(
    name: &str,
    s: &SessionLog,
    entries: &[Entry],
    live: bool,
    captures: &Captures,
    subs: &[(String, String)],
) -> (String, Vec<Option<Loc>>) {
    let transcript: Vec<TranscriptEntry> = entries
        .iter()
        .map(|e| TranscriptEntry {
            session: name.to_string(),
            direction: e.direction,
            setup: false,
            // Client lines are the live ones on both sides (see `log::ReplayLog::client`).
            bytes: captures.placeholders(
                &e.bytes,
                &e.found,
                live || e.direction == crate::report::Direction::Client,
            ),
        })
        .collect();
    let chunks = match s.protocol {
        Protocol::Imap => normalize_entries(
            &Transcript {
                entries: transcript,
            },
            subs,
            true,
        ),
        p => {
            // One reply per entry; its lines after the first are indented under it.
            let mut session = TextSession::new(p);
            transcript
                .iter()
                .map(|e| {
                    let prefix = line_prefix(&e.session, e.direction, e.setup);
                    let mut chunk = String::new();
                    for (i, line) in session.message(e.direction, &e.bytes).iter().enumerate() {
                        let line = substitute(line, subs);
                        let text = match i {
                            0 => format!("{prefix} {line}"),
                            _ => format!("    | {line}"),
                        };
                        chunk.push_str(text.trim_end());
                        chunk.push('\n');
                    }
                    chunk
                })
                .collect()
        }
    };
    let mut text = String::new();
    let mut locs = Vec::new();
    for (chunk, e) in chunks.iter().zip(entries) {
        text.push_str(chunk);
        locs.extend(std::iter::repeat_n(e.loc.clone(), chunk.lines().count()));
    }
    (text, locs)
}

fn compare_session(
    name: &str,
    s: &SessionLog,
    captures: &Captures,
    subs: &[(String, String)],
) -> SessionDiff {
    let (recorded, locs) = side(name, s, &s.recorded, false, captures, subs);
    let (live, _) = side(name, s, &s.live, true, captures, subs);
    let label = if name.is_empty() {
        String::new()
    } else {
        format!(" (session {name})")
    };
    let (diff, first_difference, first_live) = if recorded == live {
        (String::new(), None, Vec::new())
    } else {
        let ops = TextDiff::from_lines(&recorded, &live);
        let first = ops.ops().iter().find_map(|op| match *op {
            DiffOp::Equal { .. } => None,
            DiffOp::Delete { old_index, .. } => Some((old_index, 0..0)),
            DiffOp::Replace {
                old_index,
                new_index,
                new_len,
                ..
            }
            | DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => Some((old_index, new_index..new_index + new_len)),
        });
        let loc = first
            .as_ref()
            .and_then(|(i, _)| locs.get(*i).or_else(|| locs.last()).cloned().flatten());
        let first_live = first
            .map(|(_, range)| {
                live.lines()
                    .skip(range.start)
                    .take(range.len())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        (
            unified_diff(
                &recorded,
                &live,
                &format!("recorded{label}"),
                &format!("live{label}"),
            ),
            loc,
            first_live,
        )
    };
    SessionDiff {
        session: name.to_string(),
        protocol: s.protocol,
        recorded_messages: s.recorded.len(),
        live_messages: s.live.len(),
        recorded,
        live,
        diff,
        first_difference,
        first_live,
    }
}

#[cfg(test)]
mod tests {
    use super::log::ReplayLog;
    use super::shrink::{Failure, failure};
    use super::*;
    use crate::report::{ScenarioOutcome, Status};

    fn loc(line: usize) -> Loc {
        Loc {
            file: "r.ron".into(),
            line,
            column: 5,
        }
    }

    /// A one-session log: greeting, `a1 NOOP`, then the recorded and live answers.
    fn log(recorded: &[&str], live: &[&str]) -> ReplayLog {
        let mut log = ReplayLog::default();
        log.step(
            "1",
            Protocol::Imap,
            vec![(b"* OK hi".to_vec(), loc(10))],
            vec![b"* OK hello\r\n".to_vec()],
            &loc(10),
        );
        log.client(
            "1",
            Protocol::Imap,
            b"a1 NOOP\r\n".to_vec(),
            b"a1 NOOP\r\n".to_vec(),
            &loc(11),
        );
        let rec = recorded
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_bytes().to_vec(), loc(12 + i)))
            .collect();
        let live = live
            .iter()
            .map(|l| format!("{l}\r\n").into_bytes())
            .collect();
        log.step("1", Protocol::Imap, rec, live, &loc(12));
        log
    }

    fn report(log: ReplayLog, violations: Vec<Violation>) -> ReplayReport {
        let outcome = ScenarioOutcome {
            id: "r".into(),
            title: "r".into(),
            file: "r.ron".into(),
            spec: Vec::new(),
            target: "t".into(),
            status: Status::Pass,
            problems: Vec::new(),
            violations,
            transcript: Transcript::default(),
            duration: std::time::Duration::ZERO,
        };
        compare(
            ReplayRaw {
                outcome,
                substitutions: Vec::new(),
                log,
            },
            "t",
            false,
        )
    }

    #[test]
    fn the_same_answers_in_other_words_pass() {
        let r = report(
            log(
                &["* 3 EXISTS", "a1 OK NOOP done"],
                &["* 3 EXISTS", "a1 OK fine"],
            ),
            Vec::new(),
        );
        assert!(!r.failed(), "{:#?}", r.sessions);
        assert_eq!(failure(&r, None, &|l| l), None);
    }

    #[test]
    fn a_difference_names_its_recorded_line() {
        // Changed line: the recorded line itself.
        let r = report(
            log(&["* 3 EXISTS", "a1 OK"], &["* 4 EXISTS", "a1 OK"]),
            Vec::new(),
        );
        assert!(r.failed());
        assert_eq!(r.sessions[0].first_difference, Some(loc(12)));
        assert!(
            r.sessions[0]
                .diff
                .contains("-S1: * 3 EXISTS\n+S1: * 4 EXISTS")
        );
        // The original file's numbering counts.
        assert_eq!(
            failure(&r, None, &|l| l + 100),
            Some(Failure::Difference {
                line: 112,
                live: vec!["S1: * # EXISTS".to_string()]
            })
        );
        // An extra live line: the recorded line it came before.
        let r = report(
            log(
                &["* 3 EXISTS", "a1 OK"],
                &["* 3 EXISTS", "* 1 RECENT", "a1 OK"],
            ),
            Vec::new(),
        );
        assert_eq!(r.sessions[0].first_difference, Some(loc(13)));
        assert_eq!(r.sessions[0].first_live, ["S1: * 1 RECENT"]);
    }

    /// Shrinking must keep what a command needs: a candidate whose FETCH lost its LOGIN
    /// differs at the same line, but with another answer, so it does not fail the same way.
    /// A count that drifts between replays still does.
    #[test]
    fn a_difference_at_the_same_line_with_another_answer_is_another_failure() {
        let flags = |live: &str| {
            let r = report(
                log(&["* 1 FETCH (FLAGS ())", "a1 OK"], &[live, "a1 OK"]),
                Vec::new(),
            );
            failure(&r, None, &|l| l)
        };
        let seen = flags("* 1 FETCH (FLAGS (\\Seen))");
        assert!(seen.is_some());
        assert_eq!(seen, flags("* 2 FETCH (FLAGS (\\Seen))"));
        let lost_login = report(
            log(
                &["* 1 FETCH (FLAGS ())", "a1 OK"],
                &["a1 BAD not logged in"],
            ),
            Vec::new(),
        );
        let lost_login = failure(&lost_login, None, &|l| l);
        assert_eq!(
            lost_login.as_ref().map(|f| f.to_string()),
            Some(
                "differs from the recording at line 12 (original file), where the server now says `S1: a# BAD`"
                    .to_string()
            )
        );
        assert_ne!(seen, lost_login);
    }

    #[test]
    fn violations_decide_the_failure_before_differences() {
        let v = crate::checks::imap::rules::TAG_UNKNOWN.violation("1", "zz9", b"zz9 OK");
        let r = report(log(&["a1 OK"], &["a1 NO"]), vec![v]);
        assert_eq!(
            failure(&r, None, &|l| l),
            Some(Failure::Rules(["imap.tag.unknown".to_string()].into()))
        );
        assert_eq!(
            failure(&r, Some("imap.tag.unknown"), &|l| l),
            Some(Failure::Rule("imap.tag.unknown".into()))
        );
        assert_eq!(failure(&r, Some("imap.flags.persist"), &|l| l), None);
    }
}
