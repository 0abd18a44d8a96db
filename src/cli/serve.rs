//! `mailtape serve`: the bundled reference server for other tools and clients.

use reference_server::{Config, TlsSource};

use super::{CliError, ServeArgs};

pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let mut config = Config {
        imap: Some(args.imap),
        imaps: Some(args.imaps),
        ..Config::default()
    };
    if let (Some(cert), Some(key)) = (args.cert, args.key) {
        config.tls = TlsSource::Files { cert, key };
    }
    let accounts: Vec<String> = config
        .accounts
        .iter()
        .map(|a| format!("{}/{}", a.user, a.password))
        .collect();
    let domain = config.domain.clone();
    let running = reference_server::start(config).await?;
    if let Some(a) = running.imap {
        println!("imap   imap://{a}");
    }
    if let Some(a) = running.imaps {
        println!("imaps  imaps://{a}  (self-signed unless --cert; use --insecure or --ca-file)");
    }
    println!("accounts: {} (domain {domain})", accounts.join(", "));
    println!("Ctrl-C stops the server.");
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
