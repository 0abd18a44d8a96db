//! The CI files other people adopt: `ci/mailtape-ci.sh` run for real against the bundled
//! server, and the GitHub Actions and GitLab CI templates parsed as YAML (PyYAML, which
//! `.ci/run` makes sure of) and checked for the shape their systems need.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::serve::{Serve, run_bounded};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The YAML file as JSON, through PyYAML (safe_load: plain data only).
fn yaml(path: &Path) -> Value {
    let out = run_bounded(Command::new("python3").args([
        "-c",
        "import json, sys, yaml\n\
         doc = yaml.safe_load(open(sys.argv[1]))\n\
         # YAML 1.1 reads GitHub's `on:` key as true; GitHub reads it as `on`.\n\
         if isinstance(doc, dict) and True in doc: doc['on'] = doc.pop(True)\n\
         print(json.dumps(doc))",
        &path.display().to_string(),
    ]));
    assert!(
        out.status.success(),
        "{} is not valid YAML (or python3 lacks PyYAML: pip install pyyaml): {}",
        path.display(),
        out.stderr.as_str()
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("PyYAML output: {e}"),
    }
}

/// `bash -n`: the text parses as a bash script.
fn bash_parses(what: &str, script: &str) {
    let out = run_bounded(Command::new("bash").args(["-n", "-c", script]));
    assert!(
        out.status.success(),
        "{what} is not valid bash: {}\n{script}",
        out.stderr.as_str()
    );
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn the_github_workflow_has_what_actions_needs() {
    let doc = yaml(&repo().join("ci/github/mailtape.yml"));
    let on = &doc["on"];
    assert!(
        on.get("push").is_some() && on.get("pull_request").is_some(),
        "{on}"
    );
    let jobs = doc["jobs"].as_object().expect("jobs is a mapping");
    assert!(!jobs.is_empty());
    for (name, job) in jobs {
        assert!(job["runs-on"].is_string(), "job {name} has runs-on");
        let steps = job["steps"].as_array().expect("steps is a list");
        let mut ran_mailtape = false;
        let mut uploads = false;
        for step in steps {
            let has_run = step.get("run").is_some();
            let has_uses = step.get("uses").is_some();
            assert!(has_run != has_uses, "a step has run or uses: {step}");
            if has_run {
                bash_parses(text(&step["name"]), text(&step["run"]));
                ran_mailtape |= text(&step["run"]).contains("ci/mailtape-ci.sh");
            }
            if text(&step["uses"]).starts_with("actions/upload-artifact@") {
                uploads = true;
                assert_eq!(
                    text(&step["if"]),
                    "always()",
                    "reports upload even on failure"
                );
                assert!(text(&step["with"]["path"]).contains("mailtape-reports"));
            }
        }
        assert!(
            ran_mailtape && uploads,
            "job {name} runs mailtape and uploads reports"
        );
    }
}

#[test]
fn the_gitlab_job_has_what_gitlab_needs() {
    let doc = yaml(&repo().join("ci/gitlab/mailtape.gitlab-ci.yml"));
    let job = &doc["mailtape"];
    assert!(job["image"].is_string());
    let stages = doc["stages"].as_array().expect("stages");
    assert!(
        stages.contains(&job["stage"]),
        "the job's stage is declared"
    );
    for key in ["before_script", "script", "after_script"] {
        let lines = job[key].as_array().expect("a list of commands");
        for line in lines {
            bash_parses(key, text(line));
        }
    }
    let script: Vec<&str> = job["script"]
        .as_array()
        .expect("script")
        .iter()
        .map(text)
        .collect();
    assert!(script.iter().any(|l| l.contains("ci/mailtape-ci.sh")));
    assert_eq!(job["artifacts"]["when"], "always");
    assert_eq!(
        job["artifacts"]["reports"]["junit"],
        "mailtape-reports/junit.xml"
    );
}

fn ci_script() -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join("ci/mailtape-ci.sh"))
        .env("MAILTAPE_BIN", env!("CARGO_BIN_EXE_mailtape"))
        .env_remove("MAILTAPE_IMAP")
        .env_remove("MAILTAPE_POP3")
        .env_remove("MAILTAPE_SMTP");
    c
}

#[test]
fn the_ci_script_parses_and_refuses_to_run_without_a_server() {
    let script = std::fs::read_to_string(repo().join("ci/mailtape-ci.sh")).expect("script");
    bash_parses("ci/mailtape-ci.sh", &script);
    let out = run_bounded(&mut ci_script());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr
            .as_str()
            .contains("set at least one of MAILTAPE_IMAP")
    );
    let out = run_bounded(
        ci_script()
            .env("MAILTAPE_IMAP", "imap://127.0.0.1:1")
            .env("MAILTAPE_NAME", "bad name"),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_ci_script_runs_the_suites_and_writes_the_reports() {
    let server = Serve::start(None, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = dir.path().join("reports");
    let scenarios = format!(
        "{} {} {}",
        repo().join("scenarios/imap/noop-basic.ron").display(),
        repo().join("scenarios/pop3/stat-list-retr.ron").display(),
        repo().join("scenarios/smtp/vrfy.ron").display(),
    );
    let out = run_bounded(
        ci_script()
            .env(
                "MAILTAPE_IMAP",
                format!("imap://alice:alicepw@{}", server.imap),
            )
            .env(
                "MAILTAPE_POP3",
                format!("pop3://alice:alicepw@{}", server.pop3),
            )
            .env("MAILTAPE_SMTP", format!("smtp://{}", server.smtp))
            .env("MAILTAPE_NAME", "ours")
            .env("MAILTAPE_SCENARIOS", &scenarios)
            .env("MAILTAPE_COMPARE", "0")
            .env("MAILTAPE_REPORT_DIR", &reports),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = &out.stderr;
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 passed"), "{stdout}");
    let junit = std::fs::read_to_string(reports.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("imap.noop.basic"), "{junit}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(reports.join("report.json")).expect("report.json"))
            .expect("report.json is JSON");
    let runs = json.to_string();
    assert!(
        runs.contains("pop3.stat-list-retr") && runs.contains("\"ours\""),
        "{runs}"
    );
}
