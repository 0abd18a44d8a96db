//! `mailtape run`: load scenarios, pick or start the target, run them concurrently, report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::known::KnownFailures;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::{RawOutcome, RunOptions, TargetRun};
use crate::exit;
use crate::report::human::{HumanOptions, HumanReporter};
use crate::report::json::{self, RunInfo};
use crate::report::junit;
use crate::report::snapshot::{self, SnapshotKey, SnapshotPolicy};
use crate::report::{Problem, ScenarioOutcome, Status, Transcript};
use crate::script::{Protocol, Scenario};
use crate::target::{Account, Endpoint, Security, Target, Timeouts, TlsOptions};

use super::{CliError, Format, RunArgs, TargetArgs};

/// The scenarios found under the given paths, in a stable order, with parse errors kept.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files)?;
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(CliError::Config(format!(
                "{}: no such file or directory",
                p.display()
            )));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            // Stored transcripts live beside the scenarios; they are not scenarios.
            if path.file_name().is_some_and(|n| n == "snapshots") {
                continue;
            }
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ron") {
            out.push(path);
        }
    }
    Ok(())
}

pub(super) fn secs(s: f64, flag: &str) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| CliError::Config(format!("--{flag} must be a positive number of seconds")))
}

pub(super) fn timeouts(args: &TargetArgs) -> Result<Timeouts, CliError> {
    Ok(Timeouts {
        connect: secs(args.connect_timeout, "connect-timeout")?,
        tls: secs(args.tls_timeout, "tls-timeout")?,
        read: secs(args.read_timeout, "read-timeout")?,
    })
}

/// The TLS options given on the command line.
pub(super) fn cli_tls(args: &TargetArgs) -> TlsOptions {
    TlsOptions {
        ca_file: args.ca_file.clone(),
        extra_roots: Vec::new(),
        insecure: args.insecure,
    }
}

/// The targets of `--targets FILE`, with the command line's TLS options added to each.
pub(super) fn file_targets(args: &TargetArgs) -> Result<Vec<Target>, CliError> {
    let tls = cli_tls(args);
    let mut targets = Vec::new();
    if let Some(file) = &args.targets_file {
        for mut t in crate::target::load_targets_file(file)? {
            // Command-line TLS options add to the file's.
            if tls.ca_file.is_some() {
                t.tls.ca_file = tls.ca_file.clone();
            }
            t.tls.insecure |= tls.insecure;
            targets.push(t);
        }
    }
    Ok(targets)
}

/// Adds the `--account` accounts and warns when certificates go unchecked.
pub(super) fn finish_target(t: &mut Target, args: &TargetArgs) -> Result<(), CliError> {
    for spec in &args.accounts {
        t.add_account(crate::target::parse_account(spec)?);
    }
    if t.tls.insecure {
        eprintln!(
            "warning: certificate verification is off for target {} (--insecure)",
            t.name
        );
    }
    Ok(())
}

/// The targets named on the command line, or none (meaning: the bundled server).
pub(super) fn targets_from_args(args: &TargetArgs) -> Result<Vec<Target>, CliError> {
    let timeouts = timeouts(args)?;
    let tls = cli_tls(args);
    let mut targets = file_targets(args)?;
    if !args.targets.is_empty() {
        // Several --target flags are the endpoints (one per protocol) of one server.
        let mut combined: Option<Target> = None;
        for spec in &args.targets {
            let parsed = crate::target::parse_target(spec)?;
            match &mut combined {
                None => combined = Some(parsed),
                Some(t) => merge_endpoints(t, parsed),
            }
        }
        if let Some(mut t) = combined {
            t.tls = tls.clone();
            t.timeouts = timeouts;
            targets.push(t);
        }
    }
    for t in &mut targets {
        finish_target(t, args)?;
    }
    Ok(targets)
}

/// Another `--target` of the same server: its endpoint and account join the first one's.
pub(super) fn merge_endpoints(t: &mut Target, parsed: Target) {
    t.endpoints.extend(parsed.endpoints);
    for a in parsed.accounts {
        if t.account(Some(&a.name)).is_none() {
            t.add_account(a);
        }
    }
}

/// Start the bundled reference server in-process and describe it as a target.
pub async fn reference_target(
    timeouts: Timeouts,
) -> Result<(Target, reference_server::Running), CliError> {
    let config = reference_server::Config::default();
    let domain = config.domain.clone();
    let accounts = config
        .accounts
        .iter()
        .map(|a| Account {
            name: a.user.clone(),
            login: a.user.clone(),
            password: a.password.clone(),
        })
        .collect();
    let running = reference_server::start(config).await?;
    // One plain endpoint per protocol; SMTP is the port-25 role (mail for local users).
    let endpoints = [
        (Protocol::Imap, running.imap),
        (Protocol::Pop3, running.pop3),
        (Protocol::Smtp, running.smtp),
    ]
    .into_iter()
    .filter_map(|(protocol, addr)| {
        addr.map(|a| Endpoint {
            protocol,
            security: Security::Plain,
            host: a.ip().to_string(),
            port: a.port(),
        })
    })
    .collect();
    let target = Target {
        name: "reference".to_string(),
        endpoints,
        accounts,
        tls: TlsOptions {
            ca_file: None,
            // The in-process server's own certificate: trusted without --insecure.
            extra_roots: vec![running.certificate.clone()],
            insecure: false,
        },
        domain: Some(domain),
        timeouts,
    };
    Ok((target, running))
}

/// A scenario file that could not be loaded still gets a line in every report.
pub(super) fn load_error(path: &Path, target: &str, message: String) -> ScenarioOutcome {
    ScenarioOutcome {
        id: path.display().to_string(),
        title: "malformed scenario".to_string(),
        file: path.to_path_buf(),
        spec: Vec::new(),
        target: target.to_string(),
        status: Status::Fail,
        problems: vec![Problem::Error {
            loc: None,
            session: None,
            message,
        }],
        violations: Vec::new(),
        transcript: Transcript::default(),
        duration: Duration::ZERO,
    }
}

/// Every scenario file loaded; the ones that do not load, with the reason, for reports.
pub(super) fn load_scenarios(files: &[PathBuf]) -> (Vec<Arc<Scenario>>, Vec<(PathBuf, String)>) {
    let mut scenarios = Vec::new();
    let mut broken = Vec::new();
    for f in files {
        match crate::script::load(f) {
            Ok(s) => scenarios.push(Arc::new(s)),
            Err(e) => broken.push((f.clone(), e.to_string())),
        }
    }
    (scenarios, broken)
}

/// The `--known-failures` list (empty without one); entries no scenario matches are warned
/// about on stderr.
pub(super) fn known_failures(
    path: Option<&Path>,
    scenarios: &[Arc<Scenario>],
) -> Result<Arc<KnownFailures>, CliError> {
    let list = match path {
        Some(path) => KnownFailures::load(path).map_err(|e| CliError::Config(e.to_string()))?,
        None => KnownFailures::default(),
    };
    for stale in list.unused(scenarios.iter().map(|s| s.id.as_str())) {
        eprintln!("warning: {stale}");
    }
    Ok(Arc::new(list))
}

pub async fn run(args: RunArgs) -> Result<u8, CliError> {
    if args.jobs == 0 {
        return Err(CliError::Config("--jobs must be at least 1".to_string()));
    }
    let files = discover(&args.paths)?;
    if files.is_empty() {
        return Err(CliError::Config(
            "no scenario files (*.ron) found".to_string(),
        ));
    }
    let mut targets = targets_from_args(&args.target)?;
    let mut server = None;
    if targets.is_empty() {
        let (t, running) = reference_target(timeouts(&args.target)?).await?;
        targets.push(t);
        server = Some(running);
    }
    let (scenarios, broken) = load_scenarios(&files);
    let known_failures = known_failures(args.known_failures.as_deref(), &scenarios)?;
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let target_names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let policy = (!args.no_snapshots).then(|| SnapshotPolicy::from_env(args.accept));
    let mut all = Vec::new();
    for target in targets {
        let name = target.name.clone();
        let mut reporter = HumanReporter::new(std::io::stdout(), HumanOptions::for_stdout());
        if args.format == Format::Human {
            reporter.run_started(&name, scenarios.len() + broken.len())?;
        }
        let mut outcomes: Vec<ScenarioOutcome> = broken
            .iter()
            .map(|(f, e)| load_error(f, &name, e.clone()))
            .collect();
        if args.format == Format::Human {
            for o in &outcomes {
                reporter.scenario_finished(o)?;
            }
        }
        let run = Arc::new(TargetRun::new(
            target,
            RunOptions {
                strict: args.strict,
                poll_timeout: secs(args.poll_timeout, "poll-timeout")?,
                known_failures: known_failures.clone(),
            },
        )?);
        let limit = Arc::new(Semaphore::new(args.jobs));
        let mut set = JoinSet::new();
        for s in &scenarios {
            let run = run.clone();
            let s = s.clone();
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (run.run(&s).await, s)
            });
        }
        while let Some(joined) = set.join_next().await {
            let (raw, scenario) = match joined {
                Ok(r) => r,
                Err(e) => return Err(CliError::Config(format!("a scenario task failed: {e}"))),
            };
            let outcome = finish(raw, &scenario, policy, &run);
            if args.format == Format::Human && !(args.quiet && outcome.status == Status::Pass) {
                reporter.scenario_finished(&outcome)?;
            }
            outcomes.push(outcome);
        }
        outcomes.sort_by(|a, b| a.id.cmp(&b.id));
        if args.format == Format::Human {
            reporter.run_finished(&outcomes, started.elapsed())?;
        }
        all.extend(outcomes);
    }
    if let Some(s) = server {
        s.shutdown().await;
    }
    let info = RunInfo::new(target_names, started_at, started.elapsed());
    if args.format == Format::Json {
        json::write(std::io::stdout().lock(), &info, &all)?;
    }
    if let Some(path) = &args.json {
        let file = std::fs::File::create(path).map_err(|e| {
            CliError::Config(format!(
                "cannot write the JSON report {}: {e}",
                path.display()
            ))
        })?;
        json::write(std::io::BufWriter::new(file), &info, &all)?;
    }
    if let Some(path) = &args.junit {
        junit::write_file(path, &all, started.elapsed())
            .map_err(|e| CliError::Config(e.to_string()))?;
    }
    let failed = all.iter().any(|o| o.status.is_unexpected_failure());
    Ok(if failed { exit::FAILED } else { exit::SUCCESS })
}

/// Compare the transcript with the stored snapshot and settle the verdict.
fn finish(
    raw: RawOutcome,
    scenario: &Scenario,
    policy: Option<SnapshotPolicy>,
    run: &TargetRun,
) -> ScenarioOutcome {
    let RawOutcome {
        mut outcome,
        substitutions,
        completed,
        text_sessions,
    } = raw;
    let view = crate::engine::snapshot_view(&outcome.transcript, &text_sessions);
    // Only a run that reached its end is worth keeping or comparing; a failed one
    // already says why.
    if let Some(policy) = policy
        && completed
        && !view.entries.is_empty()
        && matches!(
            outcome.status,
            Status::Pass | Status::UnexpectedPass { .. } | Status::Fail
        )
    {
        let text = crate::report::normalize::normalize(&view, &substitutions);
        let key = SnapshotKey {
            scenario_file: &scenario.file,
            target: &run.target.name,
            scenario_id: &scenario.id,
        };
        let problem = match snapshot::check(key, &text, policy) {
            Ok(result) => result.into_problem(),
            Err(e) => Some(e.into_problem()),
        };
        if let Some(problem) = problem {
            crate::engine::add_problem(
                &mut outcome,
                problem,
                run.options.strict,
                run.expected_failure(scenario),
            );
        }
    }
    outcome
}
