//! Runs scenarios against a target and produces [`ScenarioOutcome`]s.
//!
//! The engine is the only place that decides pass or fail ([`verdict`]); reporters render.
//! One [`TargetRun`] per target holds what scenarios share: the TLS client, the checks' model
//! of the target (UIDVALIDITY history and the like), and the discovered mailbox naming.

mod expect;
pub mod known;
pub(crate) mod line_session;
pub mod product;
mod runner;
mod session;
mod setup;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::checks::Level;
use crate::checks::Violation;
use crate::checks::imap::SharedModel;
use crate::net::{NetError, TlsClient};
use crate::report::{Problem, ScenarioOutcome, Status};
use crate::script::Scenario;
use crate::target::Target;

pub use setup::Naming;

/// Largest server message (line plus literals) the harness accepts: big enough for any
/// scenario's message, small enough that a hostile `{1073741824}` cannot exhaust memory.
pub const MAX_SERVER_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// SHOULD-level violations fail the scenario too.
    pub strict: bool,
    /// How long a polling step (`S~:`) keeps trying.
    pub poll_timeout: std::time::Duration,
    /// Expected failures listed outside the scenarios (`--known-failures`).
    pub known_failures: std::sync::Arc<known::KnownFailures>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            strict: false,
            poll_timeout: std::time::Duration::from_secs(30),
            known_failures: Default::default(),
        }
    }
}

/// What every scenario run against one target shares.
pub struct TargetRun {
    pub target: Target,
    pub options: RunOptions,
    tls: TlsClient,
    model: SharedModel,
    /// What the POP3 checks know of the target across scenarios (UIDLs).
    pop3_model: crate::checks::pop3::SharedModel,
    naming: tokio::sync::OnceCell<Naming>,
    /// The server product recognized in the IMAP greeting, for expected-failure keys.
    product: std::sync::OnceLock<Option<&'static str>>,
    /// Held by every scenario that works on INBOX (POP3 and SMTP sessions, INBOX seeds):
    /// the maildrop is one per account, so such scenarios take turns.
    inbox: tokio::sync::Mutex<()>,
    run_id: String,
    counter: AtomicU64,
}

/// The result of running one scenario, before snapshots are compared.
pub struct RawOutcome {
    pub outcome: ScenarioOutcome,
    /// Values of this run that the normalizer must replace (fresh mailbox names, logins).
    pub substitutions: Vec<(String, String)>,
    /// Whether the scenario ran to its end (only then is its transcript worth a snapshot).
    pub completed: bool,
    /// Sessions left out of snapshots (POP3 and SMTP, until their text has a normalizer).
    pub text_sessions: Vec<String>,
}

/// The result of replaying a recording, before it is compared.
pub struct ReplayRaw {
    pub outcome: ScenarioOutcome,
    /// Values of this run that the normalizer must replace (account logins).
    pub substitutions: Vec<(String, String)>,
    /// Both sides of every session, and the capture pairs.
    pub log: crate::replay::log::ReplayLog,
}

impl TargetRun {
    pub fn new(target: Target, options: RunOptions) -> Result<TargetRun, NetError> {
        let tls = TlsClient::new(&target.tls)?;
        Ok(TargetRun {
            target,
            options,
            tls,
            model: SharedModel::default(),
            pop3_model: Default::default(),
            naming: tokio::sync::OnceCell::new(),
            product: std::sync::OnceLock::new(),
            inbox: tokio::sync::Mutex::new(()),
            run_id: run_id(),
            counter: AtomicU64::new(0),
        })
    }

    /// The scenario's expected-failure reason on this target: by the target's name, else by
    /// the server product recognized in its greeting; then the known-failures list.
    pub fn expected_failure<'s>(&'s self, scenario: &'s Scenario) -> Option<&'s String> {
        let product = self.product.get().copied().flatten();
        expected_failure(scenario, &self.target.name)
            .or_else(|| product.and_then(|p| expected_failure(scenario, p)))
            .or_else(|| {
                self.options
                    .known_failures
                    .reason(&scenario.id, &self.target.name, product)
            })
    }

    /// The server's mailbox naming, once a scenario has discovered it.
    pub fn naming(&self) -> Option<&Naming> {
        self.naming.get()
    }

    /// A mailbox name no other scenario of any run uses.
    fn fresh_name(&self, naming: &Naming) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}mt-{}-{}", naming.prefix, self.run_id, n)
    }

    /// Replay a recording (a scenario file written by `mailtape record`): send its client
    /// lines, read what the server says for each recorded step, run the checks. Problems are
    /// connection errors and timeouts only; differences are found by `crate::replay`.
    pub async fn replay(&self, scenario: &Scenario) -> ReplayRaw {
        use tracing::Instrument as _;
        // As for `run`: `--trace` shows which recording a wire line is from.
        let span = tracing::info_span!(
            target: crate::report::trace::TARGET,
            "replay",
            id = %scenario.id,
            target = %self.target.name
        );
        self.replay_scenario(scenario).instrument(span).await
    }

    async fn replay_scenario(&self, scenario: &Scenario) -> ReplayRaw {
        let started = Instant::now();
        let mut run = runner::ScenarioRun::new_replay(self, scenario);
        run.execute().await;
        let log = run.take_replay().unwrap_or_default();
        let runner::Finished {
            problems,
            violations,
            transcript,
            substitutions,
            ..
        } = run.finish();
        let status = verdict(&problems, &violations, self.options.strict, None);
        ReplayRaw {
            outcome: self.outcome(scenario, status, problems, violations, transcript, started),
            substitutions,
            log,
        }
    }

    /// A finished scenario's outcome on this target.
    fn outcome(
        &self,
        scenario: &Scenario,
        status: Status,
        problems: Vec<Problem>,
        violations: Vec<Violation>,
        transcript: crate::report::Transcript,
        started: Instant,
    ) -> ScenarioOutcome {
        ScenarioOutcome {
            id: scenario.id.clone(),
            title: scenario.title.clone(),
            file: scenario.file.clone(),
            spec: scenario.spec.clone(),
            target: self.target.name.clone(),
            status,
            problems,
            violations,
            transcript,
            duration: started.elapsed(),
        }
    }

    /// Run one scenario to its raw outcome. Wire traces and logs carry its id and target.
    pub async fn run(&self, scenario: &Scenario) -> RawOutcome {
        use tracing::Instrument as _;
        // Under the wire target, so that `--trace` alone shows which scenario a line is from.
        let span = tracing::info_span!(
            target: crate::report::trace::TARGET,
            "scenario",
            id = %scenario.id,
            target = %self.target.name
        );
        self.run_scenario(scenario).instrument(span).await
    }

    async fn run_scenario(&self, scenario: &Scenario) -> RawOutcome {
        let _inbox = match uses_inbox(scenario) {
            true => Some(self.inbox.lock().await),
            false => None,
        };
        let started = Instant::now();
        let mut run = runner::ScenarioRun::new(self, scenario);
        let skip = run.execute().await;
        let runner::Finished {
            problems,
            violations,
            transcript,
            substitutions,
            completed,
            text_sessions,
        } = run.finish();
        let status = match skip {
            Some(reason) => Status::Skip { reason },
            None => verdict(
                &problems,
                &violations,
                self.options.strict,
                self.expected_failure(scenario),
            ),
        };
        RawOutcome {
            outcome: self.outcome(scenario, status, problems, violations, transcript, started),
            substitutions,
            completed,
            text_sessions,
        }
    }
}

/// The scenario's expected-failure reason for a target. A key ending in `*` covers every
/// target whose name starts with the rest (`dovecot*`: `dovecot`, `dovecot-prefix`, ...).
pub fn expected_failure<'s>(scenario: &'s Scenario, target: &str) -> Option<&'s String> {
    scenario.expected_failures.get(target).or_else(|| {
        scenario
            .expected_failures
            .iter()
            .find(|(k, _)| k.strip_suffix('*').is_some_and(|p| target.starts_with(p)))
            .map(|(_, v)| v)
    })
}

/// Whether a scenario works on INBOX: POP3 and SMTP sessions (the maildrop, deliveries)
/// and INBOX seeds. Such scenarios take turns, and their transcripts carry counts and UIDs
/// that depend on what earlier runs left in INBOX, so they keep no snapshot.
pub fn uses_inbox(scenario: &Scenario) -> bool {
    use crate::script::Protocol;
    scenario.protocol != Protocol::Imap
        || scenario
            .sessions
            .values()
            .any(|s| s.protocol != Protocol::Imap)
        || scenario.seed.iter().any(|s| s.mailbox == "INBOX")
}

/// The one place pass or fail is decided.
pub fn verdict(
    problems: &[Problem],
    violations: &[Violation],
    strict: bool,
    expected_failure: Option<&String>,
) -> Status {
    let failed = !problems.is_empty()
        || violations
            .iter()
            .any(|v| v.level == Level::Must || (strict && v.level == Level::Should));
    match (failed, expected_failure) {
        (false, None) => Status::Pass,
        (true, None) => Status::Fail,
        (true, Some(reason)) => Status::ExpectedFailure {
            reason: reason.clone(),
        },
        (false, Some(reason)) => Status::UnexpectedPass {
            reason: reason.clone(),
        },
    }
}

/// The part of a transcript kept as a snapshot: the script's sessions (their own login and
/// SELECT included), not the harness's fixture connection, whose traffic says nothing
/// about the scenario and would make every snapshot change with any fixture detail.
///
/// Responses to pipelined commands (two or more sent before the server answered) are put in
/// a canonical order: RFC 3501 5.5 lets a server run them concurrently, and Dovecot's order
/// varies from run to run. The checks still see the real order.
pub fn snapshot_view(
    transcript: &crate::report::Transcript,
    skip: &[String],
) -> crate::report::Transcript {
    use crate::report::Direction;
    use std::collections::BTreeMap;

    let mut entries: Vec<_> = transcript
        .entries
        .iter()
        .filter(|e| e.session != runner::SETUP_SESSION && !skip.contains(&e.session))
        .cloned()
        .collect();
    // Per session: client messages sent since its last server message, and the positions
    // of the server messages answering a pipelined batch.
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    let mut batch: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e.direction {
            Direction::Client => {
                if let Some(group) = batch.remove(&e.session) {
                    groups.push(group);
                }
                *sent.entry(e.session.clone()).or_default() += 1;
            }
            Direction::Server => {
                let n = sent.insert(e.session.clone(), 0).unwrap_or(0);
                if n >= 2 {
                    batch.insert(e.session.clone(), vec![i]);
                } else if let Some(group) = batch.get_mut(&e.session) {
                    group.push(i);
                }
            }
        }
    }
    groups.extend(batch.into_values());
    for group in groups {
        let mut bytes: Vec<Vec<u8>> = group.iter().map(|&i| entries[i].bytes.clone()).collect();
        bytes.sort();
        for (&i, b) in group.iter().zip(bytes) {
            entries[i].bytes = b;
        }
    }
    crate::report::Transcript { entries }
}

/// Re-decide an outcome's status after the snapshot comparison added a problem.
pub fn add_problem(
    outcome: &mut ScenarioOutcome,
    problem: Problem,
    strict: bool,
    expected: Option<&String>,
) {
    outcome.problems.push(problem);
    if !matches!(outcome.status, Status::Skip { .. }) {
        outcome.status = verdict(&outcome.problems, &outcome.violations, strict, expected);
    }
}

/// Unique across runs, also concurrent ones on one server: the time and pid, hashed with
/// the standard library's per-process random keys.
fn run_id() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed =
        std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
    format!("{:010x}", mixed & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Level;

    fn violation(level: Level) -> Violation {
        Violation {
            rule: "imap.test",
            level,
            rfc: "RFC 3501 1",
            message: String::new(),
            session: String::new(),
            bytes: Vec::new(),
            loc: None,
        }
    }

    fn entry(
        session: &str,
        direction: crate::report::Direction,
        text: &str,
    ) -> crate::report::TranscriptEntry {
        crate::report::TranscriptEntry {
            session: session.to_string(),
            direction,
            setup: false,
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn pipelined_responses_get_a_canonical_order_and_others_keep_theirs() {
        use crate::report::Direction::{Client, Server};
        let t = |order: [&str; 3]| crate::report::Transcript {
            entries: vec![
                entry("", Client, "a1 NOOP\r\n"),
                entry("", Client, "a2 SEARCH ALL\r\n"),
                entry("", Server, order[0]),
                entry("", Server, order[1]),
                entry("", Server, order[2]),
                entry("", Client, "a3 NOOP\r\n"),
                entry("", Server, "* 3 EXISTS\r\n"),
                entry("", Server, "a3 OK\r\n"),
                entry(runner::SETUP_SESSION, Client, "mt1 LOGOUT\r\n"),
            ],
        };
        let one = snapshot_view(&t(["a1 OK\r\n", "* SEARCH 1\r\n", "a2 OK\r\n"]), &[]);
        let two = snapshot_view(&t(["* SEARCH 1\r\n", "a2 OK\r\n", "a1 OK\r\n"]), &[]);
        assert_eq!(one, two);
        assert_eq!(one.entries.len(), 8, "the fixture connection is left out");
        // A single command's responses keep the server's order.
        assert_eq!(one.entries[6].bytes, b"* 3 EXISTS\r\n");
        assert_eq!(one.entries[7].bytes, b"a3 OK\r\n");
    }

    #[test]
    fn should_violations_fail_only_when_strict() {
        let v = vec![violation(Level::Should)];
        assert_eq!(verdict(&[], &v, false, None), Status::Pass);
        assert_eq!(verdict(&[], &v, true, None), Status::Fail);
        let v = vec![violation(Level::Must)];
        assert_eq!(verdict(&[], &v, false, None), Status::Fail);
    }

    #[test]
    fn expected_failure_keys_may_end_in_a_star() {
        let text = r#"Scenario(id: "t", title: "t", spec: ["RFC 3501 6"],
            expected_failures: {"dovecot*": "RFC 3501 6", "cyrus": "RFC 3501 7"},
            script: r"
C: a1 NOOP
S: a1 OK
")"#;
        let s = match crate::script::parse_str(std::path::Path::new("t.ron"), text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(expected_failure(&s, "dovecot").is_some());
        assert!(expected_failure(&s, "dovecot-prefix").is_some());
        assert!(expected_failure(&s, "cyrus").is_some());
        assert!(expected_failure(&s, "cyrus-2").is_none());
        assert!(expected_failure(&s, "reference").is_none());
    }

    #[test]
    fn expected_failures_flip_both_ways() {
        let reason = "RFC 3501 7.1".to_string();
        let v = vec![violation(Level::Must)];
        assert_eq!(
            verdict(&[], &v, false, Some(&reason)),
            Status::ExpectedFailure {
                reason: reason.clone()
            }
        );
        assert_eq!(
            verdict(&[], &[], false, Some(&reason)),
            Status::UnexpectedPass { reason }
        );
    }
}
