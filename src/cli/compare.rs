//! `mailtape compare`: the same scenarios against several servers at once, as a grid, with
//! diffs where they disagree and optional HTML / Markdown reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::compare::grid::{self, Paint};
use crate::compare::run::{Broken, comparison, run_all};
use crate::compare::{html, markdown};
use crate::engine::{RunOptions, TargetRun};
use crate::exit;
use crate::report::HumanOptions;
use crate::target::Target;

use super::run::{
    cli_tls, discover, file_targets, finish_target, known_failures, load_error, load_scenarios,
    merge_endpoints, reference_target, secs, timeouts,
};
use super::{CliError, CompareArgs};

/// The URL that means "start a bundled reference server for this name".
const REFERENCE: &str = "reference";

/// A server to compare: one given by URLs, or a bundled reference server to start.
enum Server {
    Remote(Target),
    Reference(String),
}

impl Server {
    fn name(&self) -> &str {
        match self {
            Server::Remote(t) => &t.name,
            Server::Reference(n) => n,
        }
    }
}

/// A report file and its format, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Html,
    Markdown,
}

fn report_format(path: &Path) -> Result<ReportFormat, CliError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => Ok(ReportFormat::Html),
        Some("md" | "markdown") => Ok(ReportFormat::Markdown),
        _ => Err(CliError::Config(format!(
            "--report {}: the format is chosen by the extension: .html or .md",
            path.display()
        ))),
    }
}

/// The servers named by `--targets FILE` and `--target NAME=URL` (URLs with the same NAME
/// are one server's endpoints; `NAME=reference` is a bundled reference server).
fn servers_from_args(args: &super::TargetArgs) -> Result<Vec<Server>, CliError> {
    let timeouts = timeouts(args)?;
    let mut servers: Vec<Server> = file_targets(args)?
        .into_iter()
        .map(Server::Remote)
        .collect();
    let from_file = servers.len();
    for spec in &args.targets {
        let Some((name, url)) = spec
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && !n.contains("://") && !u.trim().is_empty())
        else {
            return Err(CliError::Config(format!(
                "--target {}: compare needs NAME=URL (URLs with the same NAME are one server; \
                 NAME=reference starts a bundled reference server)",
                redact_arg(spec)
            )));
        };
        let name = name.trim();
        let existing = servers.iter().position(|s| s.name() == name);
        if existing.is_some_and(|i| i < from_file) {
            return Err(CliError::Config(format!(
                "--target {name}=...: the targets file already names a server `{name}`"
            )));
        }
        if url.trim().eq_ignore_ascii_case(REFERENCE) {
            crate::target::validate_name(name).map_err(|reason| {
                CliError::Config(format!("--target {name}=reference: {reason}"))
            })?;
            if existing.is_some() {
                return Err(CliError::Config(format!(
                    "--target {name}=reference: `{name}` is already given; a bundled \
                     reference server cannot share a name with other URLs"
                )));
            }
            servers.push(Server::Reference(name.to_string()));
            continue;
        }
        let mut parsed = crate::target::parse_target(spec)?;
        match existing.map(|i| &mut servers[i]) {
            Some(Server::Remote(t)) => merge_endpoints(t, parsed),
            Some(Server::Reference(_)) => {
                return Err(CliError::Config(format!(
                    "--target {}: `{name}` is a bundled reference server; give the other \
                     server another name",
                    redact_arg(spec)
                )));
            }
            None => {
                parsed.tls = cli_tls(args);
                parsed.timeouts = timeouts;
                servers.push(Server::Remote(parsed));
            }
        }
    }
    for s in &mut servers {
        if let Server::Remote(t) = s {
            finish_target(t, args)?;
        }
    }
    if servers.len() < 2 {
        return Err(CliError::Config(format!(
            "compare needs at least two servers (got {}): --target NAME=URL for each, or \
             --targets FILE; NAME=reference is the bundled reference server",
            servers.len()
        )));
    }
    Ok(servers)
}

/// Hides the password of `user:pass@` in a URL and of a `user:pass` account value.
fn redact_arg(arg: &str) -> String {
    if let Some(scheme_end) = arg.find("://") {
        let rest = &arg[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let userinfo = &rest[..at];
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{}{user}:***{}", &arg[..scheme_end + 3], &rest[at..]);
            }
        }
    }
    arg.to_string()
}

/// The command line as run, passwords hidden, for the reports' "produced by" line.
fn command_line(args: &[String]) -> String {
    let mut out = vec!["mailtape".to_string()];
    let mut account_next = false;
    for a in args.iter().skip(1) {
        let shown = if account_next {
            match a.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => a.clone(),
            }
        } else if let Some(v) = a.strip_prefix("--account=") {
            match v.split_once(':') {
                Some((user, _)) => format!("--account={user}:***"),
                None => a.clone(),
            }
        } else {
            redact_arg(a)
        };
        account_next = a == "--account";
        out.push(quote(&shown));
    }
    out.join(" ")
}

/// Shell-quotes an argument when it needs it.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%*".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

pub async fn compare(args: CompareArgs) -> Result<u8, CliError> {
    if args.jobs == 0 {
        return Err(CliError::Config("--jobs must be at least 1".to_string()));
    }
    let formats = args
        .reports
        .iter()
        .map(|p| report_format(p).map(|f| (p.clone(), f)))
        .collect::<Result<Vec<(PathBuf, ReportFormat)>, _>>()?;
    let files = discover(&args.paths)?;
    if files.is_empty() {
        return Err(CliError::Config(
            "no scenario files (*.ron) found".to_string(),
        ));
    }
    let servers = servers_from_args(&args.target)?;
    let (scenarios, broken) = load_scenarios(&files);
    let options = RunOptions {
        strict: args.strict,
        poll_timeout: secs(args.poll_timeout, "poll-timeout")?,
        known_failures: known_failures(args.known_failures.as_deref(), &scenarios)?,
    };

    let mut running = Vec::new();
    let mut runs = Vec::new();
    for s in servers {
        let target = match s {
            Server::Remote(t) => t,
            Server::Reference(name) => {
                let (mut t, server) = reference_target(timeouts(&args.target)?).await?;
                t.name = name;
                running.push(server);
                t
            }
        };
        runs.push(Arc::new(TargetRun::new(target, options.clone())?));
    }
    let started = Instant::now();
    let bar = progress(scenarios.len() * runs.len());
    let result = run_all(&runs, &scenarios, args.jobs, |server, scenario| {
        if let Some(b) = &bar {
            b.set_message(format!("{server}: {scenario}"));
            b.inc(1);
        }
    })
    .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    for s in running {
        s.shutdown().await;
    }
    let raw = result.map_err(|e| CliError::Config(e.to_string()))?;
    let broken = broken
        .into_iter()
        .map(|(f, e)| Broken {
            outcomes: runs
                .iter()
                .map(|r| load_error(&f, &r.target.name, e.clone()))
                .collect(),
        })
        .collect();
    let argv: Vec<String> = std::env::args().collect();
    let cmp = comparison(&runs, &scenarios, raw, broken, Some(command_line(&argv)));
    let elapsed = started.elapsed();

    let paint = Paint {
        color: HumanOptions::for_stdout().color,
    };
    let mut out = String::new();
    if !args.quiet {
        out.push_str(&grid::render(&cmp, paint));
        out.push('\n');
    }
    for (path, format) in &formats {
        let text = match format {
            ReportFormat::Html => {
                html::render(&cmp).map_err(|e| CliError::Config(e.to_string()))?
            }
            ReportFormat::Markdown => markdown::render(&cmp),
        };
        write_report(path, &text)?;
        if !args.quiet {
            out.push_str(&format!("Report: {}\n", path.display()));
        }
    }
    out.push_str(&grid::summary(&cmp, paint, elapsed));
    {
        use std::io::Write;
        let mut stdout = anstream::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
    }
    Ok(if cmp.failed() {
        exit::FAILED
    } else {
        exit::SUCCESS
    })
}

fn write_report(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Config(format!("--report {}: {e}", path.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| CliError::Config(format!("--report {}: {e}", path.display())))
}

/// A bar over scenarios x servers on stderr, when stderr is a terminal.
fn progress(total: usize) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || total < 2 {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    // The template is a constant; if indicatif ever rejected it, a default bar is fine.
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed}] {wide_bar} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> super::super::TargetArgs {
        use clap::Parser;
        let mut argv = vec!["mailtape", "compare"];
        argv.extend(list);
        match super::super::Cli::try_parse_from(argv) {
            Ok(super::super::Cli {
                command: super::super::Command::Compare(a),
                ..
            }) => a.target,
            other => panic!("{other:?}"),
        }
    }

    fn names(list: &[&str]) -> Result<Vec<String>, String> {
        servers_from_args(&args(list))
            .map(|s| s.iter().map(|s| s.name().to_string()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn same_name_urls_are_one_server() {
        let got = names(&[
            "--target",
            "a=imap://u:p@127.0.0.1:1",
            "--target",
            "a=pop3://127.0.0.1:2",
            "--target",
            "b=reference",
        ]);
        assert_eq!(got, Ok(vec!["a".to_string(), "b".to_string()]));
    }

    #[test]
    fn fewer_than_two_servers_or_no_name_is_a_usage_error() {
        let one = names(&["--target", "a=reference"]);
        assert!(one.is_err_and(|e| e.contains("at least two servers")));
        let unnamed = names(&["--target", "imap://u:secret@h:1", "--target", "b=reference"]);
        let e = unnamed.err().unwrap_or_default();
        assert!(e.contains("NAME=URL"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let clash = names(&["--target", "a=reference", "--target", "a=imap://h:1"]);
        assert!(clash.is_err());
    }

    #[test]
    fn report_formats_by_extension() {
        assert_eq!(
            report_format(Path::new("x/r.HTML")).ok(),
            Some(ReportFormat::Html)
        );
        assert_eq!(
            report_format(Path::new("r.md")).ok(),
            Some(ReportFormat::Markdown)
        );
        assert!(report_format(Path::new("r.txt")).is_err());
    }

    #[test]
    fn the_command_line_hides_passwords() {
        let argv: Vec<String> = [
            "/usr/bin/mailtape",
            "compare",
            "--target",
            "d=imap://alice:alicepw@127.0.0.1:10143",
            "--account",
            "bob:bobpw",
            "--account=carol:x y",
            "my dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            command_line(&argv),
            "mailtape compare --target d=imap://alice:***@127.0.0.1:10143 --account bob:*** \
             --account=carol:*** 'my dir'"
        );
    }
}
