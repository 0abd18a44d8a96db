//! `mailtape shrink`: shrink a failing recording, show progress, write the result.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::RunOptions;
use crate::exit;
use crate::replay::shrink::{Progress, ShrinkError};

use super::replay::{load, one_target};
use super::{CliError, ShrinkArgs};

pub(super) const EXIT_CODES: &str = "\
Exit status:
  0  a smaller recording that fails the same way was written
  2  usage or configuration error, or the recording does not fail against the target
     (nothing to shrink)";

/// `x.ron` -> `x.min.ron` beside it.
fn default_output(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording".to_string());
    file.with_file_name(format!("{stem}.min.ron"))
}

pub async fn shrink(args: ShrinkArgs, quiet: bool) -> Result<u8, CliError> {
    let (target, server) = one_target(&args.target).await?;
    // Loaded once here for a clear error (and the account check) before any replay.
    load(&args.file, &target)?;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| CliError::Config(format!("{}: {e}", args.file.display())))?;
    let bar = if !quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        // A replay can wait out a timeout: the spinner shows it is still going.
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} shrinking [{elapsed}] {msg}") {
        bar.set_style(style);
    }
    let mut progress = |p: Progress| {
        bar.set_message(format!(
            "{} replays; {}/{} commands, {}/{} lines",
            p.replays, p.commands, p.start_commands, p.lines, p.start_lines
        ));
        bar.tick();
    };
    let options = RunOptions {
        strict: args.strict,
        ..RunOptions::default()
    };
    // Without --target every replay gets a fresh bundled server: the same empty start.
    let timeouts = super::run::timeouts(&args.target)?;
    let start = move || -> crate::replay::shrink::Starting {
        Box::pin(async move { super::run::reference_target(timeouts).await.ok() })
    };
    let fresh: Option<crate::replay::shrink::FreshServer<'_>> = match server {
        Some(_) => Some(&start),
        None => None,
    };
    // Ctrl-C or SIGTERM: finish the replay in progress, then write the smallest so far.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raise = stop.clone();
    let signals = super::signal::StopSignal::install();
    let watcher = tokio::spawn(async move {
        if let Ok(s) = signals {
            s.wait().await;
            raise.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let result = crate::replay::shrink::shrink(
        &target,
        fresh,
        options,
        &args.file,
        &text,
        args.rule.as_deref(),
        &mut progress,
        &stop,
    )
    .await;
    watcher.abort();
    bar.finish_and_clear();
    if let Some(s) = server {
        s.shutdown().await;
    }
    let shrunk = match result {
        Ok(s) => s,
        Err(e @ ShrinkError::NotFailing { .. }) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
        Err(e) => return Err(CliError::Config(e.to_string())),
    };
    let out = args.output.unwrap_or_else(|| default_output(&args.file));
    let cut_short = if shrunk.interrupted {
        " (interrupted: the smallest found so far)"
    } else {
        ""
    };
    let header = format!(
        "// Shrunk by mailtape shrink from {} against {}: {} -> {} commands in {} replays{cut_short}; it {}.\n",
        args.file.display(),
        target.name,
        shrunk.start_commands,
        shrunk.commands,
        shrunk.replays,
        shrunk.failure
    );
    std::fs::write(&out, format!("{header}{}", shrunk.text))
        .map_err(|e| CliError::Config(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "{} commands -> {} commands in {} replays{cut_short} ({} -> {} script lines, {} session(s)); it {}",
        shrunk.start_commands,
        shrunk.commands,
        shrunk.replays,
        shrunk.start_lines,
        shrunk.lines,
        shrunk.sessions,
        shrunk.failure
    );
    println!("written to {}", out.display());
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_beside_the_input() {
        assert_eq!(
            default_output(Path::new("t/imap/x.ron")),
            PathBuf::from("t/imap/x.min.ron")
        );
    }
}
