//! Engine rules that need a live server: the bundled one, started in-process.

use std::path::Path;

use mailtape::engine::{RunOptions, TargetRun};
use mailtape::report::Status;
use mailtape::target::Timeouts;

async fn reference() -> (mailtape::target::Target, reference_server::Running) {
    match mailtape::cli::reference_target(Timeouts::default()).await {
        Ok(r) => r,
        Err(e) => panic!("reference server: {e}"),
    }
}

fn scenario(text: &str) -> mailtape::script::Scenario {
    match mailtape::script::parse_str(Path::new("inline.ron"), text) {
        Ok(s) => s,
        Err(e) => panic!("scenario: {e}"),
    }
}

#[tokio::test]
async fn a_scripted_starttls_to_an_untrusted_certificate_is_skipped_with_advice() {
    let (mut target, server) = reference().await;
    // As if the user gave no --ca-file: the self-signed certificate is not trusted.
    target.tls.extra_roots.clear();
    let s = match mailtape::script::load(Path::new("scenarios/imap/starttls-basic.ron")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let run = match TargetRun::new(target, RunOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let o = run.run(&s).await.outcome;
    match &o.status {
        Status::Skip { reason } => assert!(reason.contains("--ca-file"), "{reason}"),
        other => panic!("expected a skip, got {other:?}: {:?}", o.problems),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn expected_failure_keys_match_the_product_in_the_greeting() {
    let (target, server) = reference().await;
    // The target is called `reference`; the key names the product its greeting shows.
    let failing = scenario(
        r#"Scenario(id: "t.xfail", title: "t", spec: ["RFC 3501 6.1.2"],
        expected_failures: {"mailtape*": "RFC 3501 6.1.2: test of product keys"},
        script: r"
C: a1 NOOP
S: a1 BAD
")"#,
    );
    let passing = scenario(
        r#"Scenario(id: "t.xpass", title: "t", spec: ["RFC 3501 6.1.2"],
        expected_failures: {"mailtape": "RFC 3501 6.1.2: test of product keys"},
        script: r"
C: a1 NOOP
S: a1 OK
")"#,
    );
    let run = match TargetRun::new(target, RunOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let o = run.run(&failing).await.outcome;
    assert!(
        matches!(o.status, Status::ExpectedFailure { .. }),
        "{:?}",
        o.status
    );
    let o = run.run(&passing).await.outcome;
    assert!(
        matches!(o.status, Status::UnexpectedPass { .. }),
        "{:?}",
        o.status
    );
    server.shutdown().await;
}
