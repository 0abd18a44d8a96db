//! The scenario suites end to end through the `mailtape` binary: against the bundled
//! reference server always, and against the CI Dovecot when `ci/dovecot.sh` started one.

use std::process::Command;

fn mailtape() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailtape"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run mailtape: {e}"),
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn imap_suite_passes_against_the_reference_server() {
    let (code, stdout, stderr) =
        run(mailtape().args(["run", "scenarios/imap", "--format", "json"]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: serde_json::Value = match serde_json::from_str(&stdout) {
        Ok(v) => v,
        Err(e) => panic!("the JSON report does not parse: {e}\n{stdout}"),
    };
    let summary = &report["summary"];
    assert!(summary["total"].as_u64().unwrap_or(0) >= 40, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(
        summary["expected_failures"], 0,
        "the reference server has none: {summary}"
    );
}

/// Runs the IMAP suite against a Dovecot started by `ci/dovecot.sh`, if one is configured.
fn dovecot_suite(name: &str, url_var: &str, ca: Option<String>) {
    let Ok(url) = std::env::var(url_var) else {
        eprintln!(
            "SKIP: {url_var} is not set (start Dovecot with `bash ci/dovecot.sh start` and \
             `eval \"$(bash ci/dovecot.sh env)\"`; .ci/run does both)"
        );
        return;
    };
    let target = format!("{name}={url}");
    let mut cmd = mailtape();
    // One scenario at a time: see the note on Dovecot's CREATE race in .ci/run.
    cmd.args([
        "run",
        "scenarios/imap",
        "--target",
        &target,
        "--account",
        "bob:bobpw",
        "--jobs",
        "1",
    ]);
    if let Some(ca) = ca {
        cmd.args(["--ca-file", &ca]);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn imap_suite_against_dovecot() {
    dovecot_suite(
        "dovecot",
        "MAILTAPE_DOVECOT_IMAP",
        std::env::var("MAILTAPE_DOVECOT_CA").ok(),
    );
}

#[test]
fn imap_suite_against_dovecot_with_an_inbox_prefix() {
    let ca = std::env::var("MAILTAPE_DOVECOT_PREFIX_IMAP")
        .ok()
        .map(|_| "/tmp/mailtape-ci/dovecot-prefix/cert.pem".to_string());
    dovecot_suite("dovecot-prefix", "MAILTAPE_DOVECOT_PREFIX_IMAP", ca);
}

/// POP3, SMTP and cross-protocol suites against the CI Postfix (delivering to Dovecot).
#[test]
fn text_suites_against_postfix_and_dovecot() {
    let (Ok(imap), Ok(pop3), Ok(smtp)) = (
        std::env::var("MAILTAPE_DOVECOT_IMAP"),
        std::env::var("MAILTAPE_DOVECOT_POP3"),
        std::env::var("MAILTAPE_POSTFIX_SMTP"),
    ) else {
        eprintln!(
            "SKIP: MAILTAPE_DOVECOT_IMAP, MAILTAPE_DOVECOT_POP3 or MAILTAPE_POSTFIX_SMTP is not set \
             (ci/dovecot.sh and ci/postfix.sh start them; .ci/run does)"
        );
        return;
    };
    let imap = format!("dovecot={imap}");
    let mut cmd = mailtape();
    cmd.args([
        "run",
        "scenarios/pop3",
        "scenarios/smtp",
        "scenarios/cross",
        "--target",
        &imap,
        "--target",
        &pop3,
        "--target",
        &smtp,
        "--account",
        "bob:bobpw",
        "--jobs",
        "1",
    ]);
    // Trust both CI certificates (Dovecot's for STLS, Postfix's for STARTTLS) with one bundle.
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let mut bundle = Vec::new();
    for var in ["MAILTAPE_DOVECOT_CA", "MAILTAPE_POSTFIX_CA"] {
        if let Ok(path) = std::env::var(var)
            && let Ok(pem) = std::fs::read(path)
        {
            bundle.extend(pem);
        }
    }
    let ca = dir.path().join("ca.pem");
    if !bundle.is_empty() && std::fs::write(&ca, bundle).is_ok() {
        cmd.arg("--ca-file").arg(&ca);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn a_malformed_scenario_is_reported_and_the_others_still_run() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let good = dir.path().join("good.ron");
    let bad = dir.path().join("bad.ron");
    let ok = std::fs::write(
        &good,
        "Scenario(id: \"t.good\", title: \"noop\", spec: [\"RFC 3501 6.1.2\"], script: r#\"\nC: a1 NOOP\nS: a1 OK\n\"#)\n",
    )
    .and_then(|_| std::fs::write(&bad, "Scenario(id: \"t.bad\", title: \"broken\",\n  spec: [\"RFC 3501 6.1.2\"], scrpt: \"\")\n"));
    if let Err(e) = ok {
        panic!("write: {e}");
    }
    let (code, stdout, stderr) = run(mailtape().arg("run").arg(dir.path()).env("CI", ""));
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("bad.ron:2:"),
        "the error names file:line:col:\n{stdout}"
    );
    assert!(
        stdout.contains("t.good"),
        "the good scenario still ran:\n{stdout}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let (code, _, stderr) = run(mailtape().args(["run", "no/such/dir"]));
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run(mailtape().args(["run", "scenarios", "--target", "ftp://x"]));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_known_failures_list_turns_failures_into_expected_ones_and_flags_stale_entries() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    // The reference server answers NOOP with OK, so this scenario fails there.
    let scenario = dir.path().join("wrong.ron");
    let known = dir.path().join("known.txt");
    let ok = std::fs::write(
        &scenario,
        "Scenario(id: \"t.wrong\", title: \"expects NO\", spec: [\"RFC 3501 6.1.2\"], mailboxes: [], script: r#\"\nC: a1 NOOP\nS: a1 NO\n\"#)\n",
    )
    .and_then(|_| {
        std::fs::write(
            &known,
            "# ours\nt.wrong reference -- NOOP cannot fail\nt.gone -- removed scenario\n",
        )
    });
    if let Err(e) = ok {
        panic!("write: {e}");
    }
    let (code, stdout, _) = run(mailtape().arg("run").arg(&scenario).env("CI", ""));
    assert_eq!(code, 1, "without the list the failure counts:\n{stdout}");
    let (code, stdout, stderr) = run(mailtape()
        .arg("run")
        .arg(&scenario)
        .arg("--known-failures")
        .arg(&known)
        .env("CI", ""));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("NOOP cannot fail"), "{stdout}");
    assert!(
        stderr.contains("known.txt:3: `t.gone` matches no scenario"),
        "{stderr}"
    );
    // Bound to another target name, the entry does not apply.
    let ok = std::fs::write(&known, "t.wrong staging -- elsewhere only\n");
    if let Err(e) = ok {
        panic!("write: {e}");
    }
    let (code, _, _) = run(mailtape()
        .arg("run")
        .arg(&scenario)
        .arg("--known-failures")
        .arg(&known)
        .env("CI", ""));
    assert_eq!(code, 1);
}

#[test]
fn trace_prints_every_wire_message_with_its_scenario() {
    let (code, _, stderr) = run(mailtape()
        .args(["run", "scenarios/imap/noop-basic.ron", "--trace"])
        .env_remove("RUST_LOG")
        .env("CI", ""));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("scenario{id=imap.noop.basic target=reference}"))
        .collect();
    assert!(lines.iter().any(|l| l.ends_with("Cx: a1 NOOP")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("Sx: a1 OK")), "{stderr}");
    // Without --trace nothing of the wire is printed.
    let (_, _, stderr) = run(mailtape()
        .args(["run", "scenarios/imap/noop-basic.ron"])
        .env_remove("RUST_LOG")
        .env("CI", ""));
    assert!(!stderr.contains("mailtape::wire"), "{stderr}");
}

#[test]
fn quiet_is_global_and_replay_prints_one_verdict_line() {
    let (code, stdout, stderr) = run(mailtape().args([
        "--quiet",
        "replay",
        "transcripts/imap/python-imaplib-reference.ron",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "PASS transcripts/imap/python-imaplib-reference.ron",
        "{stdout}"
    );
    let (code, stdout, _) = run(mailtape()
        .args(["run", "scenarios/imap/noop-basic.ron", "-q"])
        .env("CI", ""));
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("PASS") && stdout.contains("Summary: 1 scenario, 1 passed"),
        "{stdout}"
    );
    let (code, _, stderr) = run(mailtape().args(["run", "-q", "-v"]));
    assert_eq!(code, 2, "--quiet and --verbose conflict: {stderr}");
}
