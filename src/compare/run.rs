//! Runs every scenario against every server at once and builds the [`Comparison`].
//!
//! Each server has its own [`TargetRun`] (its own checks model, naming, INBOX lock) and its
//! own limit of scenarios in flight, so a slow server does not hold back a fast one.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Cell, Comparison, Kind, Row, cell_text};
use crate::engine::{RawOutcome, TargetRun};
use crate::report::ScenarioOutcome;
use crate::script::Scenario;

/// A scenario file that could not be loaded: it becomes a row of failed cells.
pub struct Broken {
    /// One outcome per server, in server order (see `cli::run`'s load errors).
    pub outcomes: Vec<ScenarioOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("a scenario task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs `scenarios` against every server (`jobs` at a time per server). `done` is called
/// after each cell with the server's and the scenario's names (for a progress bar).
pub async fn run_all(
    runs: &[Arc<TargetRun>],
    scenarios: &[Arc<Scenario>],
    jobs: usize,
    mut done: impl FnMut(&str, &str),
) -> Result<Vec<Vec<RawOutcome>>, CompareError> {
    // One driver per server starts its scenarios in file order, each once a slot is free,
    // so two servers of the same kind see the same sequence (INBOX scenarios especially:
    // their UIDs and counts depend on what ran before).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut drivers = JoinSet::new();
    for (si, run) in runs.iter().enumerate() {
        let run = run.clone();
        let scenarios = scenarios.to_vec();
        let tx = tx.clone();
        drivers.spawn(async move {
            let limit = Arc::new(Semaphore::new(jobs.max(1)));
            let mut set = JoinSet::new();
            for (ci, s) in scenarios.into_iter().enumerate() {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let run = run.clone();
                let tx = tx.clone();
                set.spawn(async move {
                    let raw = run.run(&s).await;
                    drop(permit);
                    let _ = tx.send((si, ci, raw));
                });
            }
            while let Some(joined) = set.join_next().await {
                joined?;
            }
            Ok::<(), tokio::task::JoinError>(())
        });
    }
    drop(tx);
    let mut slots: Vec<Vec<Option<RawOutcome>>> = scenarios
        .iter()
        .map(|_| runs.iter().map(|_| None).collect())
        .collect();
    while let Some((si, ci, raw)) = rx.recv().await {
        done(&runs[si].target.name, &scenarios[ci].id);
        slots[ci][si] = Some(raw);
    }
    while let Some(joined) = drivers.join_next().await {
        joined??;
    }
    // Every task put its outcome in its slot (a panicked one ended the loop above).
    Ok(slots
        .into_iter()
        .map(|row| row.into_iter().flatten().collect())
        .collect())
}

/// Builds the grid from [`run_all`]'s outcomes (`raw[scenario][server]`) and the rows of
/// scenario files that did not load.
pub fn comparison(
    runs: &[Arc<TargetRun>],
    scenarios: &[Arc<Scenario>],
    raw: Vec<Vec<RawOutcome>>,
    broken: Vec<Broken>,
    command: Option<String>,
) -> Comparison {
    let servers: Vec<String> = runs.iter().map(|r| r.target.name.clone()).collect();
    let mut rows = Vec::new();
    for (scenario, outcomes) in scenarios.iter().zip(raw) {
        let cells = outcomes
            .into_iter()
            .zip(runs)
            .map(|(raw, run)| {
                let separator = run.naming().map(|n| n.separator.as_str());
                let text = cell_text(
                    scenario,
                    &raw.outcome.transcript,
                    &raw.substitutions,
                    separator,
                );
                Cell::new(&raw.outcome, text)
            })
            .collect();
        rows.push(Row::new(
            scenario.id.clone(),
            scenario.title.clone(),
            scenario.file.clone(),
            Kind::of(scenario),
            cells,
            &servers,
        ));
    }
    for b in broken {
        let Some(first) = b.outcomes.first() else {
            continue;
        };
        let kind = kind_from_path(&first.file);
        let cells = b
            .outcomes
            .iter()
            .map(|o| Cell::new(o, Default::default()))
            .collect();
        rows.push(Row::new(
            first.id.clone(),
            first.title.clone(),
            first.file.clone(),
            kind,
            cells,
            &servers,
        ));
    }
    Comparison::new(servers, rows, command)
}

/// A scenario that did not parse has no protocol: its directory says which suite it is in.
fn kind_from_path(path: &std::path::Path) -> Kind {
    let dir = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_ascii_lowercase());
    match dir.as_deref() {
        Some("pop3") => Kind::Pop3,
        Some("smtp") => Kind::Smtp,
        Some("cross") => Kind::Cross,
        _ => Kind::Imap,
    }
}
