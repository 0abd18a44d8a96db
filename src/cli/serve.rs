//! `mailtape serve`: the bundled reference server as a standalone process, for other tools
//! and real mail clients. Prints where it listens and who may log in, logs through tracing
//! (RUST_LOG), and stops cleanly on Ctrl-C or SIGTERM: listeners close, sessions get
//! `* BYE`, and with `--data-dir` every acknowledged change is already on disk.

use reference_server::{AccountsFile, Config, TlsSource};

use super::{CliError, ServeArgs};

pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let mut config = Config {
        imap: Some(args.imap),
        imaps: Some(args.imaps),
        pop3: Some(args.pop3),
        pop3s: Some(args.pop3s),
        smtp: Some(args.smtp),
        submission: Some(args.submission),
        data_dir: args.data_dir.clone(),
        ..Config::default()
    };
    if let (Some(cert), Some(key)) = (args.cert, args.key) {
        config.tls = TlsSource::Files { cert, key };
    }
    if let Some(path) = &args.accounts {
        let file = AccountsFile::load(path).map_err(|e| CliError::Config(e.to_string()))?;
        config.domain = file.domain;
        config.accounts = file.accounts;
    }
    let accounts: Vec<String> = config
        .accounts
        .iter()
        .map(|a| format!("{}/{}", a.user, a.password))
        .collect();
    let domain = config.domain.clone();
    let stop = super::signal::StopSignal::install()?;
    let running = reference_server::start(config).await?;
    if let Some(a) = running.imap {
        println!("imap   imap://{a}");
    }
    if let Some(a) = running.imaps {
        println!("imaps  imaps://{a}  (self-signed unless --cert; use --insecure or --ca-file)");
    }
    if let Some(a) = running.pop3 {
        println!("pop3   pop3://{a}");
    }
    if let Some(a) = running.pop3s {
        println!("pop3s  pop3s://{a}");
    }
    if let Some(a) = running.smtp {
        println!("smtp   smtp://{a}  (STARTTLS offered)");
    }
    if let Some(a) = running.submission {
        println!("submission  smtp+starttls://{a}  (AUTH required)");
    }
    println!("accounts: {} (domain {domain})", accounts.join(", "));
    match &args.data_dir {
        Some(dir) => println!("data: {} (Maildir++)", dir.display()),
        None => println!("data: in memory only (--data-dir keeps it)"),
    }
    println!("Ctrl-C or SIGTERM stops the server.");
    tracing::info!(imap = ?running.imap, imaps = ?running.imaps, "reference server started");
    let signal = stop.wait().await;
    tracing::info!(signal, "stopping");
    running.shutdown().await;
    Ok(())
}
