//! `cargo bench --bench suite`: what a run costs.
//!
//! 1. The IMAP suite's wall time against the bundled reference server and, when
//!    `MAILTAPE_DOVECOT_IMAP` is set (`eval "$(bash ci/dovecot.sh env)"`), against the CI
//!    Dovecot in the same process, one scenario at a time and with 4 at once, with the ratio.
//! 2. The harness's own cost per protocol message: every transcript of the reference run is
//!    fed again, offline, through framing-free parsing plus the always-on checks, and through
//!    normalization; reported per message and as a ratio to bare imap-codec parsing (a baseline
//!    measured in the same go, so the ratio holds on a noisy machine).
//!
//! Not a test: it prints numbers and asserts nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtape::checks::imap::{ImapChecks, SharedModel};
use mailtape::engine::{RunOptions, TargetRun};
use mailtape::proto::imap::{LineEnding, ServerFrame, decode_greeting, decode_response};
use mailtape::report::{Direction, Transcript};
use mailtape::script::Scenario;
use mailtape::target::{Target, Timeouts};

/// Rounds of the offline replay: enough to run for about a second on this machine.
const REPLAY_ROUNDS: usize = 30;

struct SuiteRun {
    wall: Duration,
    commands: usize,
    messages: usize,
    failed: usize,
    transcripts: Vec<Transcript>,
}

async fn run_suite(target: Target, scenarios: &[Arc<Scenario>], jobs: usize) -> SuiteRun {
    let run = match TargetRun::new(target, RunOptions::default()) {
        Ok(r) => Arc::new(r),
        Err(e) => panic!("target: {e}"),
    };
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    for s in scenarios {
        let (run, s, limit) = (run.clone(), s.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            run.run(&s).await
        });
    }
    let mut out = SuiteRun {
        wall: Duration::ZERO,
        commands: 0,
        messages: 0,
        failed: 0,
        transcripts: Vec::new(),
    };
    while let Some(r) = set.join_next().await {
        let Ok(raw) = r else { continue };
        let t = raw.outcome.transcript;
        out.commands += t
            .entries
            .iter()
            .filter(|e| e.direction == Direction::Client)
            .count();
        out.messages += t.entries.len();
        if raw.outcome.status.is_unexpected_failure() {
            out.failed += 1;
        }
        out.transcripts.push(t);
    }
    out.wall = started.elapsed();
    out
}

fn print_run(label: &str, r: &SuiteRun) {
    println!(
        "{label:<28} wall {:>8.3}s  {:>5} commands  {:>7.1} µs/command  ({} unexpected failures)",
        r.wall.as_secs_f64(),
        r.commands,
        r.wall.as_secs_f64() * 1e6 / r.commands.max(1) as f64,
        r.failed
    );
}

/// Server messages of a transcript as frames, the way the connection would hand them over.
fn frames(t: &Transcript) -> Vec<(String, Direction, Vec<u8>, Option<ServerFrame>)> {
    let mut greeted = std::collections::BTreeSet::new();
    t.entries
        .iter()
        .map(|e| {
            let frame = (e.direction == Direction::Server).then(|| {
                let parsed = if greeted.insert(e.session.clone()) {
                    decode_greeting(&e.bytes)
                } else {
                    decode_response(&e.bytes)
                };
                ServerFrame {
                    raw: e.bytes.clone(),
                    line_ending: LineEnding::Crlf,
                    parsed,
                }
            });
            (e.session.clone(), e.direction, e.bytes.clone(), frame)
        })
        .collect()
}

fn replay_cost(transcripts: &[Transcript]) {
    let messages: usize = transcripts.iter().map(|t| t.entries.len()).sum();
    let prepared: Vec<_> = transcripts.iter().map(frames).collect();

    // Baseline: imap-codec parsing of every server message, nothing of ours.
    let started = Instant::now();
    let mut parsed = 0usize;
    for _ in 0..REPLAY_ROUNDS {
        for t in transcripts {
            let mut greeted = std::collections::BTreeSet::new();
            for e in t
                .entries
                .iter()
                .filter(|e| e.direction == Direction::Server)
            {
                let p = if greeted.insert(e.session.as_str()) {
                    decode_greeting(&e.bytes)
                } else {
                    decode_response(&e.bytes)
                };
                parsed +=
                    std::hint::black_box(matches!(p, mailtape::proto::imap::Parsed::Response(_)))
                        as usize;
            }
        }
    }
    let baseline = started.elapsed();

    // Ours: parsing plus the always-on checks (client commands parsed too).
    let started = Instant::now();
    let mut violations = 0usize;
    for _ in 0..REPLAY_ROUNDS {
        for t in &prepared {
            let mut checks = ImapChecks::new(SharedModel::default());
            let mut opened = std::collections::BTreeSet::new();
            for (session, dir, bytes, frame) in t {
                if opened.insert(session.clone()) {
                    checks.session_opened(session, "alice");
                }
                violations += match (dir, frame) {
                    (Direction::Client, _) => checks.client_message(session, bytes).len(),
                    (Direction::Server, Some(f)) => {
                        // Parse again, as the connection would, so the cost includes it.
                        let parsed = match &f.parsed {
                            mailtape::proto::imap::Parsed::Greeting(_) => decode_greeting(&f.raw),
                            _ => decode_response(&f.raw),
                        };
                        let frame = ServerFrame {
                            raw: f.raw.clone(),
                            line_ending: f.line_ending,
                            parsed,
                        };
                        checks.server_message(session, &frame).len()
                    }
                    _ => 0,
                };
            }
        }
    }
    let checked = started.elapsed();

    let started = Instant::now();
    let mut chars = 0usize;
    for _ in 0..REPLAY_ROUNDS {
        for t in transcripts {
            chars += mailtape::report::normalize::normalize(t, &[]).len();
        }
    }
    let normalized = started.elapsed();

    let per = |d: Duration| d.as_secs_f64() * 1e6 / (messages * REPLAY_ROUNDS).max(1) as f64;
    println!(
        "harness cost per message ({} messages x {REPLAY_ROUNDS} rounds):",
        messages
    );
    println!(
        "  imap-codec parse only (baseline) {:>8.2} µs",
        per(baseline)
    );
    println!(
        "  parse + always-on checks         {:>8.2} µs  ({:.2}x baseline; {} violations seen)",
        per(checked),
        checked.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        violations
    );
    println!(
        "  snapshot normalization           {:>8.2} µs  ({:.2}x baseline)",
        per(normalized),
        normalized.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    );
    std::hint::black_box((parsed, chars));
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => panic!("runtime: {e}"),
    };
    runtime.block_on(async {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let files = match mailtape::cli::discover(&[root.join("scenarios/imap")]) {
            Ok(f) => f,
            Err(e) => panic!("scenarios: {e}"),
        };
        let scenarios: Vec<Arc<Scenario>> = files
            .iter()
            .filter_map(|f| mailtape::script::load(f).ok().map(Arc::new))
            .collect();
        println!("IMAP suite: {} scenarios", scenarios.len());
        let (reference, server) = match mailtape::cli::reference_target(Timeouts::default()).await {
            Ok(r) => r,
            Err(e) => panic!("reference server: {e}"),
        };
        let ref1 = run_suite(reference.clone(), &scenarios, 1).await;
        print_run("reference, 1 at a time", &ref1);
        let ref4 = run_suite(reference, &scenarios, 4).await;
        print_run("reference, 4 at a time", &ref4);
        server.shutdown().await;

        match std::env::var("MAILTAPE_DOVECOT_IMAP") {
            Ok(url) => {
                let mut t = match mailtape::target::parse_target(&format!("dovecot={url}")) {
                    Ok(t) => t,
                    Err(e) => panic!("MAILTAPE_DOVECOT_IMAP: {e}"),
                };
                if let Ok(a) = mailtape::target::parse_account("bob:bobpw") {
                    t.add_account(a);
                }
                t.tls.ca_file = std::env::var("MAILTAPE_DOVECOT_CA").ok().map(PathBuf::from);
                let dc1 = run_suite(t.clone(), &scenarios, 1).await;
                print_run("dovecot, 1 at a time", &dc1);
                let dc4 = run_suite(t, &scenarios, 4).await;
                print_run("dovecot, 4 at a time", &dc4);
                println!(
                    "ratio dovecot / reference wall time: {:.2} (1 at a time), {:.2} (4 at a time)",
                    dc1.wall.as_secs_f64() / ref1.wall.as_secs_f64(),
                    dc4.wall.as_secs_f64() / ref4.wall.as_secs_f64()
                );
            }
            Err(_) => {
                println!("dovecot: skipped (MAILTAPE_DOVECOT_IMAP not set; see ci/dovecot.sh)")
            }
        }
        replay_cost(&ref1.transcripts);
    });
}
