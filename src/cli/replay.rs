//! `mailtape replay`: load a recording, pick the target, replay, report.

use crate::engine::{RunOptions, TargetRun};
use crate::exit;
use crate::target::Target;

use super::run::{reference_target, targets_from_args, timeouts};
use super::{CliError, Format, ReplayArgs, TargetArgs};

pub(super) const EXIT_CODES: &str = "\
Exit status:
  0  the server answered as recorded (after normalization) and broke no MUST rule
  1  the answers differ, a rule was broken, or the server stopped answering (timeout)
  2  usage or configuration error (unreadable or malformed recording, bad flags)";

/// The one target of a replay or shrink: the given one, or the bundled server started here
/// (returned too, so that it lives as long as the command).
pub(super) async fn one_target(
    args: &TargetArgs,
) -> Result<(Target, Option<reference_server::Running>), CliError> {
    let mut targets = targets_from_args(args)?;
    match targets.len() {
        0 => {
            let (t, running) = reference_target(timeouts(args)?).await?;
            Ok((t, Some(running)))
        }
        1 => Ok((targets.remove(0), None)),
        n => Err(CliError::Config(format!(
            "a recording is replayed against one server, but {n} targets were given"
        ))),
    }
}

/// Load a recording and point its sessions at the target's accounts.
pub(super) fn load(
    path: &std::path::Path,
    target: &Target,
) -> Result<crate::script::Scenario, CliError> {
    let mut scenario =
        crate::script::load_recording(path).map_err(|e| CliError::Config(e.to_string()))?;
    crate::replay::resolve_users(&mut scenario, target).map_err(CliError::Config)?;
    let mut used = Vec::new();
    for step in &scenario.steps {
        let p = scenario
            .sessions
            .get(step.session())
            .map_or(scenario.protocol, |spec| spec.protocol);
        if !used.contains(&p) {
            used.push(p);
        }
    }
    for p in used {
        if !target.endpoints.iter().any(|e| e.protocol == p) {
            return Err(CliError::Config(format!(
                "{} has {} sessions, but target {} has no {} endpoint (add --target {}://...)",
                path.display(),
                p.name(),
                target.name,
                p.name(),
                p.name()
            )));
        }
    }
    Ok(scenario)
}

pub async fn replay(args: ReplayArgs, quiet: bool) -> Result<u8, CliError> {
    let (target, server) = one_target(&args.target).await?;
    let scenario = load(&args.file, &target)?;
    let run = TargetRun::new(
        target,
        RunOptions {
            strict: args.strict,
            ..RunOptions::default()
        },
    )?;
    let report = crate::replay::replay(&run, &scenario).await;
    if let Some(s) = server {
        s.shutdown().await;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Human if quiet => crate::replay::render::verdict(&report, &mut out)?,
        Format::Human => crate::replay::render::human(&report, &mut out)?,
        Format::Json => crate::replay::render::json(&report, &mut out)?,
    }
    Ok(if report.failed() {
        exit::FAILED
    } else {
        exit::SUCCESS
    })
}
