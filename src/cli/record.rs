//! `mailtape record`: flags to [`crate::record::Options`], a spinner with connections and
//! bytes on stderr (hidden when stderr is not a terminal), and the summary line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reference_server::TlsSource;

use super::{CliError, RecordArgs};
use crate::exit;
use crate::record::{Options, Recorder, Route, Stats};
use crate::target::{Security, Timeouts, TlsOptions, parse_endpoint};

pub const EXAMPLES: &str = "\
Examples:
  mailtape record --listen 127.0.0.1:2143 --upstream imap://127.0.0.1:143 -o session.ron
  # an SMTP and a POP3 upstream, both recorded into one file (sessions in accept order)
  mailtape record --listen 127.0.0.1:2025 --upstream smtp://127.0.0.1:25 \\
      --listen 127.0.0.1:2110 --upstream pop3://127.0.0.1:110 -o mail.ron";

pub async fn record(args: RecordArgs, quiet: bool) -> Result<u8, CliError> {
    let routes = routes(&args.listen, &args.upstream)?;
    let options = Options {
        routes,
        output: args.output.clone(),
        per_connection: args.per_connection,
        keep_secrets: args.keep_secrets,
        capture_uidvalidity: args.capture_uidvalidity,
        connections: args.connections,
        cert: match (args.cert, args.key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::Generate,
        },
        cert_out: args.cert_out,
        tls: TlsOptions {
            ca_file: args.ca_file,
            extra_roots: Vec::new(),
            insecure: args.insecure,
        },
        timeouts: Timeouts {
            connect: super::run::secs(args.connect_timeout, "connect-timeout")?,
            tls: super::run::secs(args.tls_timeout, "tls-timeout")?,
            read: super::run::secs(args.read_timeout, "read-timeout")?,
        },
    };
    if options.connections == Some(0) {
        return Err(CliError::Config("--connections must be at least 1".into()));
    }
    if args.insecure {
        eprintln!("warning: --insecure: the upstream's certificate is not verified");
    }
    let upstream_urls: Vec<String> = options.routes.iter().map(|r| r.upstream.url()).collect();
    let signals = super::signal::StopSignal::install();
    let recorder = Recorder::bind(options)
        .await
        .map_err(|e| CliError::Config(e.to_string()))?;
    for (addr, url) in recorder.local_addrs()?.iter().zip(&upstream_urls) {
        if !quiet {
            eprintln!("mailtape record: listening on {addr}, forwarding to {url}");
        }
    }
    let progress = Progress::start(recorder.stats(), quiet);
    let stop = async {
        match signals {
            Ok(s) => {
                s.wait().await;
            }
            Err(e) => {
                tracing::warn!("cannot wait for signals: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    let result = recorder.run(stop).await;
    progress.finish();
    let summary = result.map_err(|e| CliError::Config(e.to_string()))?;
    let target = match summary.files.as_slice() {
        [] => "no file written".to_string(),
        [one] => one.display().to_string(),
        many => format!(
            "{} files ({} ... {})",
            many.len(),
            many[0].display(),
            many[many.len() - 1].display()
        ),
    };
    eprintln!(
        "recorded {} session{}, {} bytes -> {target}",
        summary.sessions,
        if summary.sessions == 1 { "" } else { "s" },
        summary.bytes
    );
    Ok(exit::SUCCESS)
}

/// Pairs the Nth `--listen` with the Nth `--upstream`.
fn routes(listen: &[SocketAddr], upstreams: &[String]) -> Result<Vec<Route>, CliError> {
    if listen.len() != upstreams.len() {
        return Err(CliError::Config(format!(
            "--listen and --upstream come in pairs (the Nth --listen forwards to the Nth \
             --upstream): got {} --listen and {} --upstream",
            listen.len(),
            upstreams.len()
        )));
    }
    let mut routes = Vec::with_capacity(listen.len());
    for (addr, url) in listen.iter().zip(upstreams) {
        // Credentials in the URL are not needed: the client logs in through the proxy.
        let (mut upstream, _) = parse_endpoint(url)?;
        if upstream.security == Security::StartTls {
            // The client decides when to upgrade; the proxy follows its STARTTLS.
            upstream.security = Security::Plain;
        }
        routes.push(Route {
            listen: *addr,
            upstream,
        });
    }
    Ok(routes)
}

/// The spinner: redrawn from the shared counters, only when stderr is a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(stats: Arc<Stats>, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                shown.set_message(format!(
                    "connections: {} open, {} done | client->server {} B, server->client {} B",
                    stats.open.load(Ordering::Relaxed),
                    stats.done.load(Ordering::Relaxed),
                    stats.bytes_up.load(Ordering::Relaxed),
                    stats.bytes_down.load(Ordering::Relaxed),
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
