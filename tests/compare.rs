//! `mailtape compare` end to end through the binary: bundled reference servers, a fake that
//! deviates (and one that sends markup), the HTML and Markdown reports, the page's own
//! self-test in a headless Chromium, and reference vs the CI Dovecot when it is running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use support::fake_imap::{self, Reply};
use support::serve::{Output, run_bounded};

fn mailtape() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailtape"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn compare(args: &[&str]) -> Output {
    let mut cmd = mailtape();
    cmd.arg("compare").args(args);
    run_bounded(&mut cmd)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn path_str(p: &Path) -> &str {
    match p.to_str() {
        Some(s) => s,
        None => panic!("non-UTF-8 path {}", p.display()),
    }
}

/// A fixed small set with every protocol: the grid of two reference servers.
const SMALL_SET: [&str; 5] = [
    "scenarios/imap/noop-basic.ron",
    "scenarios/imap/noop-sees-new-message.ron",
    "scenarios/pop3/capa-authorization.ron",
    "scenarios/smtp/8bitmime.ron",
    "scenarios/cross/smtp-to-imap-once.ron",
];

/// The `Produced by` block names temp paths and ports, details name the temp directory:
/// replaced for snapshots.
fn redact_command(md: &str, dir: &Path) -> String {
    md.replace(path_str(dir), "[dir]")
        .lines()
        .map(|l| {
            if l.starts_with("mailtape compare ") {
                "mailtape compare [arguments]"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn two_reference_servers_agree() {
    let dir = tempdir();
    let md = dir.path().join("r.md");
    let html = dir.path().join("sub/r.html");
    let mut args: Vec<&str> = SMALL_SET.to_vec();
    args.extend([
        "--target",
        "a=reference",
        "--target",
        "b=reference",
        "--jobs",
        "1",
        "--report",
        path_str(&md),
        "--report",
        path_str(&html),
    ]);
    let out = compare(&args);
    let stdout = out.stdout_text();
    assert_eq!(code(&out), 0, "stdout:\n{stdout}\nstderr:\n{}", out.stderr);
    assert!(
        stdout.contains(
            "5 scenarios x 2 servers: a 5 passed; b 5 passed; 0 scenarios where servers disagree"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("imap.noop.basic"),
        "the grid lists rows: {stdout}"
    );
    assert!(html.exists(), "the report's directory is created");
    insta::assert_snapshot!("two_references_md", redact_command(&read(&md), dir.path()));
}

#[test]
fn quiet_prints_only_the_summary() {
    let out = compare(&[
        "scenarios/imap/noop-basic.ron",
        "--target",
        "a=reference",
        "--target",
        "b=reference",
        "--quiet",
    ]);
    let stdout = out.stdout_text();
    assert_eq!(code(&out), 0, "{stdout}{}", out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("Summary: 1 scenario x 2 servers"),
        "{stdout}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let cases: [(&[&str], &str); 4] = [
        (&["--target", "a=reference"], "at least two servers"),
        (
            &[
                "--target",
                "imap://u:secret@127.0.0.1:1",
                "--target",
                "b=reference",
            ],
            "NAME=URL",
        ),
        (
            &[
                "--target",
                "a=reference",
                "--target",
                "b=reference",
                "--report",
                "x.pdf",
            ],
            ".html or .md",
        ),
        (
            &[
                "--target",
                "a=reference",
                "--target",
                "a=imap://127.0.0.1:1",
            ],
            "bundled reference server",
        ),
    ];
    for (args, wanted) in cases {
        let out = compare(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(wanted), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("secret"), "{}", out.stderr);
    }
}

// ---------------------------------------------------------------------------------------
// A fake that deviates, and one that sends markup
// ---------------------------------------------------------------------------------------

/// Text a hostile server might send, hoping a report renders it as markup.
const HOSTILE: &str = "</script><script>document.body.setAttribute('data-pwned','1')</script>\
<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"> & \"quotes\" 'too'";

const SCENARIOS: [(&str, &str); 3] = [
    (
        "same.ron",
        r#"Scenario(id: "t.same", title: "NOOP, answered alike", spec: ["RFC 3501 6.1.2"],
    script: "C: a1 NOOP\nS: a1 OK\n")"#,
    ),
    (
        "differs.ron",
        r#"Scenario(id: "t.differs", title: "the fake refuses the second NOOP", spec: ["RFC 3501 6.1.2"],
    script: "C: a1 NOOP\nS: a1 OK\nC: a2 NOOP\nS: a2 OK\n")"#,
    ),
    (
        "hostile.ron",
        r#"Scenario(id: "t.a-hostile", title: "the fake answers with markup", spec: ["RFC 3501 6.1.2"],
    script: "C: h1 NOOP\nS: h1 OK\n")"#,
    ),
];

/// Runs reference vs the fake over [`SCENARIOS`], writing both reports into `dir`.
fn reference_vs_fake(dir: &Path) -> (Output, PathBuf, PathBuf) {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => panic!("runtime: {e}"),
    };
    let fake = runtime.block_on(fake_imap::start(Arc::new(|c| match c.tag {
        "a2" => Reply::Bytes(b"a2 BAD not today\r\n".to_vec()),
        "h1" => Reply::Bytes(format!("* {HOSTILE}\r\nh1 OK done\r\n").into_bytes()),
        _ => Reply::Default,
    })));
    let scenarios = dir.join("scenarios");
    if let Err(e) = std::fs::create_dir_all(&scenarios) {
        panic!("{e}");
    }
    for (name, text) in SCENARIOS {
        if let Err(e) = std::fs::write(scenarios.join(name), text) {
            panic!("{e}");
        }
    }
    let md = dir.join("r.md");
    let html = dir.join("r.html");
    let target = format!("fake=imap://alice:alicepw@{}", fake.addr);
    let out = compare(&[
        path_str(&scenarios),
        "--target",
        "ref=reference",
        "--target",
        &target,
        "--read-timeout",
        "3",
        "--report",
        path_str(&md),
        "--report",
        path_str(&html),
    ]);
    drop(fake);
    (out, md, html)
}

#[test]
fn a_deviating_server_gets_a_fail_cell_and_a_diff() {
    let dir = tempdir();
    let (out, md, _) = reference_vs_fake(dir.path());
    let stdout = out.stdout_text();
    assert_eq!(code(&out), 1, "stdout:\n{stdout}\nstderr:\n{}", out.stderr);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("t.differs "))
        .unwrap_or_default();
    assert!(
        row.contains("PASS") && row.contains("FAIL") && row.ends_with('~'),
        "{stdout}"
    );
    let same = stdout
        .lines()
        .find(|l| l.starts_with("t.same "))
        .unwrap_or_default();
    assert!(!same.contains('~'), "equal transcripts agree: {stdout}");
    assert!(
        stdout.contains("FAIL t.differs [fake]: mismatch at"),
        "{stdout}"
    );
    assert!(stdout.contains("-S: a2 OK\n    +S: a2 BAD"), "{stdout}");
    // The terminal never gets the markup raw either: it is plain text there, escaped only
    // for control characters.
    assert!(stdout.contains("data-pwned"), "{stdout}");
    insta::assert_snapshot!(
        "reference_vs_fake_md",
        redact_command(&read(&md), dir.path())
    );
}

#[test]
fn a_targets_file_names_the_servers() {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => panic!("runtime: {e}"),
    };
    let fake = runtime.block_on(fake_imap::start(Arc::new(|_| Reply::Default)));
    let dir = tempdir();
    let scenario = dir.path().join("same.ron");
    let file = dir.path().join("targets.ron");
    let written = std::fs::write(&scenario, SCENARIOS[0].1).and_then(|()| {
        std::fs::write(
            &file,
            format!(
                r#"[(name: "fake-a", endpoints: ["imap://alice:alicepw@{0}"]),
                   (name: "fake-b", endpoints: ["imap://alice:alicepw@{0}"])]"#,
                fake.addr
            ),
        )
    });
    if let Err(e) = written {
        panic!("{e}");
    }
    let out = compare(&[
        path_str(&scenario),
        "--targets",
        path_str(&file),
        "--target",
        "ref=reference",
    ]);
    let stdout = out.stdout_text();
    assert_eq!(code(&out), 0, "stdout:\n{stdout}\nstderr:\n{}", out.stderr);
    assert!(
        stdout.contains("1 scenario x 3 servers: fake-a 1 passed; fake-b 1 passed; ref 1 passed; 0 scenarios where servers disagree"),
        "{stdout}"
    );
    // A --target may not reuse a name from the file.
    let out = compare(&[
        path_str(&scenario),
        "--targets",
        path_str(&file),
        "--target",
        "fake-a=reference",
    ]);
    assert_eq!(code(&out), 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("the targets file already names"),
        "{}",
        out.stderr
    );
}

#[test]
fn hostile_server_text_cannot_inject_markup() {
    let dir = tempdir();
    let (out, md, html) = reference_vs_fake(dir.path());
    assert_eq!(code(&out), 1, "{}{}", out.stdout_text(), out.stderr);
    let page = read(&html);
    assert_eq!(
        page.matches("<script").count(),
        2,
        "only the page's own scripts"
    );
    assert!(!page.contains("<img"), "no element from the server");
    assert!(!page.contains("data-pwned','1')</script>"));
    // The text is there, as JSON with `<`, `>` and `&` escaped.
    assert!(
        page.contains("\\u003cimg src=x onerror="),
        "the data is embedded"
    );

    // Markdown: outside code fences, nothing from the server is markup.
    let text = read(&md);
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let ticks: String = line.chars().take_while(|&c| c == '`').collect();
        match &fence {
            Some(open) if ticks.len() >= open.len() && line.trim_end() == ticks => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => assert!(
                !line.contains("<img") && !line.contains("<script"),
                "markup outside a fence: {line}"
            ),
        }
    }
    assert!(fence.is_none(), "every fence is closed");
    assert!(
        text.contains("data-pwned"),
        "the text is shown, inside a fence"
    );

    match chromium_dom(&html, "#selftest") {
        None => {}
        Some(dom) => {
            assert!(
                dom.contains("<pre id=\"selftest\">ok</pre>"),
                "{}",
                selftest_line(&dom)
            );
            assert!(!dom.contains("data-pwned=\""), "the hostile script ran");
            assert!(dom.contains("&lt;img src=x onerror="), "shown as text");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Headless browser
// ---------------------------------------------------------------------------------------

const CHROMIUM: &str = "/usr/bin/chromium";

/// The DOM of `file` after its scripts ran, or `None` (with a SKIP line) without Chromium.
fn chromium_dom(file: &Path, hash: &str) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "SKIP: {CHROMIUM} is not installed (apt-get install -y --no-install-recommends \
             chromium); the HTML report's browser test did not run"
        );
        return None;
    }
    let profile = tempdir();
    let abs = match file.canonicalize() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let url = format!("file://{}{hash}", path_str(&abs));
    let user_data = format!("--user-data-dir={}", path_str(profile.path()));
    let out = run_bounded(Command::new(CHROMIUM).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        &user_data,
        "--virtual-time-budget=5000",
        "--dump-dom",
        &url,
    ]));
    let dom = out.stdout_text();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed: {}\n{dom}",
        out.stderr
    );
    Some(dom)
}

fn selftest_line(dom: &str) -> &str {
    dom.lines()
        .find(|l| l.contains("id=\"selftest\""))
        .unwrap_or("no selftest element in the DOM")
}

#[test]
fn html_report_renders_and_passes_its_self_test_in_a_browser() {
    let dir = tempdir();
    let (out, _, html) = reference_vs_fake(dir.path());
    assert_eq!(code(&out), 1, "{}{}", out.stdout_text(), out.stderr);
    let Some(dom) = chromium_dom(&html, "#selftest") else {
        return;
    };
    assert!(
        dom.contains("<pre id=\"selftest\">ok</pre>"),
        "{}",
        selftest_line(&dom)
    );
    // Without the hash the page renders its grid and runs no self-test.
    let Some(dom) = chromium_dom(&html, "") else {
        return;
    };
    assert_eq!(
        dom.matches("<tr data-row=").count(),
        3,
        "one row per scenario"
    );
    assert!(
        dom.contains("class=\"cell st-FAIL\""),
        "a FAIL cell is drawn"
    );
    assert!(dom.contains("<pre id=\"selftest\" hidden=\"\"></pre>"));
}

// ---------------------------------------------------------------------------------------
// The CI Dovecot (and Postfix)
// ---------------------------------------------------------------------------------------

#[test]
fn reference_vs_dovecot_into_html_and_markdown() {
    let Ok(imap) = std::env::var("MAILTAPE_DOVECOT_IMAP") else {
        eprintln!(
            "SKIP: MAILTAPE_DOVECOT_IMAP is not set (start Dovecot with `bash ci/dovecot.sh \
             start` and `eval \"$(bash ci/dovecot.sh env)\"`; .ci/run does both)"
        );
        return;
    };
    let dir = tempdir();
    let md = dir.path().join("compat.md");
    let html = dir.path().join("compat.html");
    let dovecot = format!("dovecot={imap}");
    let mut args = vec![
        "scenarios/imap/noop-basic.ron",
        "scenarios/imap/capability-basic.ron",
        "scenarios/imap/enable-no-arguments.ron",
        "--target",
        "ref=reference",
        "--target",
        &dovecot,
        "--account",
        "bob:bobpw",
        "--jobs",
        "1",
        "--report",
        path_str(&md),
        "--report",
        path_str(&html),
    ];
    let pop3 = std::env::var("MAILTAPE_DOVECOT_POP3")
        .ok()
        .map(|u| format!("dovecot={u}"));
    if let Some(p) = &pop3 {
        args.extend(["scenarios/pop3/capa-authorization.ron", "--target", p]);
    }
    let out = compare(&args);
    let stdout = out.stdout_text();
    assert_eq!(code(&out), 0, "stdout:\n{stdout}\nstderr:\n{}", out.stderr);
    let text = read(&md);
    assert!(text.contains("# Compatibility: ref vs dovecot"), "{text}");
    // Dovecot's known deviation is an expected failure there, a pass on the reference.
    let enable = text
        .lines()
        .find(|l| l.starts_with("| imap.enable.no-arguments "))
        .unwrap_or_default();
    assert!(
        enable.contains("PASS") && enable.contains("XFAIL"),
        "{text}"
    );
    assert!(
        text.contains("```diff"),
        "Dovecot answers differently somewhere: {text}"
    );
    if let Some(dom) = chromium_dom(&html, "#selftest") {
        assert!(
            dom.contains("<pre id=\"selftest\">ok</pre>"),
            "{}",
            selftest_line(&dom)
        );
    }
}
