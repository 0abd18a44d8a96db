//! Command-line interface: clap definitions here, one file per subcommand. No protocol logic.

mod compare;
mod record;
mod replay;
mod run;
mod serve;
mod shrink;
mod signal;

pub use run::{discover, reference_target};

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit;

const EXIT_CODES: &str = "\
Exit status:
  0  nothing unexpected failed (passes, skips and expected failures only)
  1  a scenario failed, or an expected failure passed
  2  usage or configuration error (bad flags, unreadable targets file, no scenarios)";

/// Interoperability test harness for SMTP, POP3 and IMAP servers.
#[derive(Debug, Parser)]
#[command(name = "mailtape", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print every protocol message of every session on stderr as it is sent or received
    /// (credentials included), tagged with the scenario and target. Same as
    /// RUST_LOG=mailtape::wire=trace.
    #[arg(long, global = true)]
    pub trace: bool,
    /// More log output on stderr: -v what mailtape does, -vv its debugging detail.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print less: run lists only failures, compare and replay only their verdict, record
    /// and shrink no banner or progress; the summary line always comes.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios against a target (default: the bundled reference server, in-process).
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Run the bundled reference server until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Run the same scenarios against several servers and compare them in a grid.
    #[command(after_help = COMPARE_EXIT_CODES)]
    Compare(CompareArgs),
    /// Record client sessions through a proxy into a scenario file (docs/recording.md).
    #[command(after_help = record::EXAMPLES)]
    Record(RecordArgs),
    /// Replay a recording against a server and compare its answers with the recorded ones.
    #[command(after_help = replay::EXIT_CODES)]
    Replay(ReplayArgs),
    /// Shrink a recording that fails against a server to the fewest commands that still fail.
    #[command(after_help = shrink::EXIT_CODES)]
    Shrink(ShrinkArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// cargo-test-like lines, details of failures, a summary line.
    Human,
    /// One JSON document (see docs/json-report.md).
    Json,
}

/// Where to connect and how.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Server to test, `[NAME=]URL`: imap://[user[:pass]@]host[:port], imaps://..., imap+starttls://...
    /// Without it (and without --targets) the bundled reference server is started in-process.
    #[arg(long = "target", value_name = "[NAME=]URL")]
    pub targets: Vec<String>,
    /// RON file describing named targets, their endpoints and accounts (docs/targets.md).
    #[arg(long = "targets", value_name = "FILE")]
    pub targets_file: Option<PathBuf>,
    /// Extra account for multi-user scenarios, `user:pass` (repeatable).
    #[arg(long = "account", value_name = "USER:PASS")]
    pub accounts: Vec<String>,
    /// Trust the CA certificates in this PEM file (for test servers).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate (prints a warning).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to wait for a TCP connection.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for a TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub tls_timeout: f64,
    /// Seconds one script step waits for the server.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub read_timeout: f64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files or directories (searched recursively for *.ron).
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Scenarios run at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the JSON report (docs/json-report.md) to FILE, whatever --format says.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Take the new transcripts as the stored snapshots.
    #[arg(long)]
    pub accept: bool,
    /// Neither compare nor write snapshots (e.g. a one-off CI run of a server with none
    /// stored); the checks and scenarios still decide.
    #[arg(long, conflicts_with = "accept")]
    pub no_snapshots: bool,
    /// Fail on SHOULD-level violations too (they are warnings otherwise).
    #[arg(long)]
    pub strict: bool,
    /// Expected failures kept outside the scenarios: lines `SCENARIO [TARGET] -- REASON`,
    /// ids and names exact or ending in `*` (docs/known-failures.md).
    #[arg(long, value_name = "FILE")]
    pub known_failures: Option<PathBuf>,
    /// Seconds a polling step (`S~:` lines, e.g. waiting for a delivery) keeps trying.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub poll_timeout: f64,
    /// Set from the global --quiet.
    #[arg(skip)]
    pub quiet: bool,
}

const COMPARE_EXIT_CODES: &str = "\
Example:
  mailtape compare scenarios/imap --target ref=reference \\
      --target dovecot=imap://alice:alicepw@127.0.0.1:10143 --report compat.html

Exit status:
  0  every server passed every scenario (expected failures and skips included)
  1  a server failed a scenario, or an expected failure passed
  2  usage or configuration error (fewer than two servers, bad flags, no scenarios)";

/// `mailtape compare` (docs/compare.md).
#[derive(Debug, Args)]
#[command(mut_arg("targets", |a| a.value_name("NAME=URL").help(
    "A server to compare, `NAME=URL` (repeatable). URLs with the same NAME are one server's \
     endpoints (imap, pop3, smtp); NAME=reference starts a bundled reference server.")))]
pub struct CompareArgs {
    /// Scenario files or directories (searched recursively for *.ron).
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Scenarios run at once on each server.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Fail on SHOULD-level violations too (they are warnings otherwise).
    #[arg(long)]
    pub strict: bool,
    /// Expected failures kept outside the scenarios, as for `run` (docs/known-failures.md);
    /// their TARGET is matched against each server's name.
    #[arg(long, value_name = "FILE")]
    pub known_failures: Option<PathBuf>,
    /// Seconds a polling step (`S~:` lines, e.g. waiting for a delivery) keeps trying.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub poll_timeout: f64,
    /// Write a report: FILE.html (one self-contained page) or FILE.md (Markdown); repeatable.
    #[arg(long = "report", value_name = "FILE")]
    pub reports: Vec<PathBuf>,
    /// Set from the global --quiet.
    #[arg(skip)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording (a scenario file written by `mailtape record`, or by hand).
    pub file: PathBuf,
    /// Where to replay it (without --target: the bundled reference server, in-process).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format on stdout (the JSON document is described in docs/replay.md).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Fail on SHOULD-level violations too.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// The recording that fails against the target.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Keep candidates that violate this rule (e.g. imap.tag.unknown); without it, the same
    /// set of violated rules, or with no violation the same first difference.
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,
    /// Where to write the result (default: FILE's stem + `.min.ron` beside it).
    #[arg(long, short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// SHOULD-level violations count as failures too.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// IMAP listen address (STARTTLS offered).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1143")]
    pub imap: std::net::SocketAddr,
    /// IMAP over implicit TLS listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1993")]
    pub imaps: std::net::SocketAddr,
    /// POP3 listen address (STLS offered).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1110")]
    pub pop3: std::net::SocketAddr,
    /// POP3 over implicit TLS listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1995")]
    pub pop3s: std::net::SocketAddr,
    /// SMTP listen address, port-25 role: mail for local users, no relaying without AUTH.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1025")]
    pub smtp: std::net::SocketAddr,
    /// Submission listen address, port-587 role: AUTH required before MAIL.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1587")]
    pub submission: std::net::SocketAddr,
    /// PEM certificate chain (default: a self-signed one generated at start).
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Keep the mail in this directory (Maildir++ per user, docs/reference-server.md) and
    /// load it at start. Without it the mail lives in memory and is gone at exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// RON file with the domain and the accounts (docs/reference-server.md). Default:
    /// alice/alicepw and bob/bobpw at example.test.
    #[arg(long, value_name = "FILE")]
    pub accounts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Address clients connect to, e.g. 127.0.0.1:1143. Repeatable: the Nth --listen
    /// forwards to the Nth --upstream.
    #[arg(long, value_name = "ADDR", required = true)]
    pub listen: Vec<std::net::SocketAddr>,
    /// The server to record: imap://, imaps://, imap+starttls://, pop3..., smtp... (no
    /// credentials needed). For imaps/pop3s/smtps the proxy speaks TLS to clients too.
    /// Repeatable, one per --listen (e.g. an SMTP and a POP3 upstream): every connection
    /// goes into the one file, as a session of its upstream's protocol; the scenario's
    /// protocol is the first upstream's.
    #[arg(long, value_name = "URL", required = true)]
    pub upstream: Vec<String>,
    /// The scenario file to write (rewritten whenever a connection ends).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// One file per connection: FILE's stem plus -1, -2, ... before .ron.
    #[arg(long)]
    pub per_connection: bool,
    /// Write credentials as sent instead of {user}, {password}, {auth_plain}, ...
    #[arg(long)]
    pub keep_secrets: bool,
    /// Write IMAP UIDVALIDITY values as captures ({uidvalidity}), so that `mailtape run`
    /// of the file matches a server with other values. Off by default: the file holds
    /// what the server said.
    #[arg(long)]
    pub capture_uidvalidity: bool,
    /// Stop after this many connections have ended.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// PEM certificate chain shown to clients (default: generated at start).
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Write the certificate clients must trust (PEM) to this file.
    #[arg(long, value_name = "PEM")]
    pub cert_out: Option<PathBuf>,
    /// Trust the CA certificates in this PEM file for the upstream.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the upstream's certificate (prints a warning).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to wait for a TCP connection to the upstream.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for a TLS handshake (either side).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub tls_timeout: f64,
    /// Seconds the upstream may leave a waiting client without a byte before the client is
    /// disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub read_timeout: f64,
}

/// Errors that end a command before any scenario verdict: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("reference server: {0}")]
    Server(#[from] reference_server::ServerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Parse arguments, run, and return the process exit status.
pub fn main() -> u8 {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.trace);
    let quiet = cli.quiet;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::USAGE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(RunArgs { quiet, ..args }).await,
            Command::Serve(args) => serve::serve(args).await.map(|()| exit::SUCCESS),
            Command::Compare(args) => compare::compare(CompareArgs { quiet, ..args }).await,
            Command::Replay(args) => replay::replay(args, quiet).await,
            Command::Shrink(args) => shrink::shrink(args, quiet).await,
            Command::Record(args) => record::record(args, quiet).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

/// Logs and wire traces go to stderr. RUST_LOG, when set, decides alone; otherwise warnings,
/// plus what -v/-vv and --trace ask for.
fn init_tracing(verbose: u8, trace: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = match verbose {
            0 => "warn",
            1 => "warn,mailtape=info,reference_server=info",
            _ => "info,mailtape=debug,reference_server=debug",
        };
        let wire = if trace {
            format!(",{}=trace", crate::report::trace::TARGET)
        } else {
            String::new()
        };
        tracing_subscriber::EnvFilter::new(format!("{level}{wire}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_to_the_scenarios_directory() {
        let cli = Cli::try_parse_from(["mailtape", "run"]).map_err(|e| e.to_string());
        let Ok(Cli {
            command: Command::Run(args),
            ..
        }) = cli
        else {
            panic!("run should parse: {cli:?}");
        };
        assert_eq!(args.paths, vec![PathBuf::from("scenarios")]);
        assert!(args.target.targets.is_empty());
    }
}
