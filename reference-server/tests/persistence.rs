//! `Config::data_dir`: what IMAP clients changed is on disk in a plain Maildir++ layout and
//! comes back unchanged after a restart (UIDs, UIDVALIDITY, flags, keywords, INTERNALDATE,
//! subscriptions, hierarchy, deletions); mail dropped in by other tools gets fresh UIDs.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, has, tagged};
use reference_server::{Config, Running, ServerError};
use tokio::net::TcpStream;

async fn start(dir: &Path) -> Running {
    reference_server::start(Config {
        data_dir: Some(dir.to_path_buf()),
        imaps: None,
        ..Config::default()
    })
    .await
    .expect("server starts on the data directory")
}

async fn ok(c: &mut Client<TcpStream>, line: &str) -> Vec<String> {
    let r = c.cmd(line).await;
    let tag = line.split(' ').next().unwrap_or_default();
    assert!(
        tagged(&r).starts_with(&format!("{tag} OK")),
        "{line}: {r:?}"
    );
    r
}

/// APPEND with a non-synchronizing literal (LITERAL+), so no continuation round trip.
async fn append(c: &mut Client<TcpStream>, mailbox: &str, flags: &str, date: &str, body: &str) {
    let line = format!(
        "ap APPEND {mailbox} ({flags}) {date}{{{}+}}\r\n{body}",
        body.len()
    );
    ok(c, &line).await;
}

/// Everything a client can observe about alice's mail, \Recent left out (it belongs to
/// sessions, not to the mail).
async fn observe(running: &Running) -> Vec<String> {
    let mut c = Client::login(running, "alice").await;
    let mut seen = Vec::new();
    let list = ok(&mut c, "l LIST \"\" \"*\"").await;
    let mut names = Vec::new();
    for l in &list[..list.len() - 1] {
        seen.push(l.clone());
        if !l.contains("\\Noselect") {
            names.push(l.rsplit(' ').next().unwrap_or_default().to_string());
        }
    }
    seen.extend(ok(&mut c, "s LSUB \"\" \"*\"").await);
    for name in names {
        let status = ok(
            &mut c,
            &format!("st STATUS {name} (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"),
        )
        .await;
        seen.extend(status);
        ok(&mut c, &format!("e EXAMINE {name}")).await;
        let fetch = ok(
            &mut c,
            "f UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])",
        )
        .await;
        seen.extend(fetch.into_iter().map(|l| {
            l.replace(" \\Recent", "")
                .replace("\\Recent ", "")
                .replace("\\Recent", "")
        }));
    }
    seen
}

/// alice's Maildir root in `dir`.
fn maildir(dir: &Path) -> PathBuf {
    dir.join("alice").join("Maildir")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const MSG1: &str = "Subject: one\r\n\r\nfirst\r\n";
const MSG2: &str = "Subject: two\r\n\r\nsecond\r\n";
const MSG3: &str = "Subject: three\r\n\r\nthird\r\n";

#[tokio::test]
async fn a_restart_changes_nothing_a_client_can_see() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    ok(&mut c, "c1 CREATE work/projects").await;
    ok(&mut c, "c2 CREATE v1.2").await;
    ok(&mut c, "c3 CREATE a/b").await;
    ok(&mut c, "c4 CREATE gone").await;
    ok(&mut c, "d1 DELETE gone").await;
    ok(&mut c, "d2 DELETE a").await;
    ok(&mut c, "r1 RENAME v1.2 v2/renamed").await;
    ok(&mut c, "s1 SUBSCRIBE work/projects").await;
    ok(&mut c, "s2 SUBSCRIBE INBOX").await;
    ok(&mut c, "s3 UNSUBSCRIBE INBOX").await;
    let date = "\"01-Feb-2024 10:00:00 +0100\" ";
    append(&mut c, "INBOX", "\\Seen $Label1", date, MSG1).await;
    append(&mut c, "INBOX", "", "", MSG2).await;
    append(&mut c, "work/projects", "\\Flagged", date, MSG3).await;
    ok(&mut c, "sel SELECT INBOX").await;
    ok(&mut c, "st1 STORE 2 +FLAGS (\\Answered Junk)").await;
    ok(&mut c, "st2 STORE 1 +FLAGS (\\Deleted)").await;
    ok(&mut c, "cp COPY 1:2 v2/renamed").await;
    ok(&mut c, "ex EXPUNGE").await;
    ok(&mut c, "mv MOVE 1 work/projects").await;
    ok(&mut c, "lo LOGOUT").await;
    let before = observe(&running).await;
    running.shutdown().await;

    // The observation must hold what was done, or comparing it proves nothing.
    assert!(has(&before, "LIST (\\Noselect) \"/\" \"a\""), "{before:?}");
    assert!(
        has(&before, "LSUB () \"/\" \"work/projects\""),
        "{before:?}"
    );
    assert!(!has(&before, "gone") && !has(&before, "v1.2"), "{before:?}");
    assert!(has(&before, "FLAGS (\\Answered Junk)"), "{before:?}");
    assert!(
        has(&before, "FLAGS (\\Seen $Label1 \\Deleted)"),
        "{before:?}"
    );
    assert!(
        has(&before, "INTERNALDATE \" 1-Feb-2024 10:00:00 +0100\""),
        "{before:?}"
    );
    assert!(
        has(&before, "STATUS \"INBOX\" (MESSAGES 0 UIDNEXT 3"),
        "{before:?}"
    );

    let running = start(dir.path()).await;
    let after = observe(&running).await;
    assert_eq!(before, after);

    // New mail continues the UIDs instead of reusing them.
    let mut c = Client::login(&running, "alice").await;
    append(&mut c, "INBOX", "", "", MSG1).await;
    let r = ok(&mut c, "st STATUS INBOX (MESSAGES UIDNEXT)").await;
    assert!(has(&r, "(MESSAGES 1 UIDNEXT 4)"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn a_recreated_mailbox_gets_a_new_uidvalidity_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    ok(&mut c, "c CREATE box").await;
    let first = ok(&mut c, "s STATUS box (UIDVALIDITY)").await;
    ok(&mut c, "d DELETE box").await;
    running.shutdown().await;

    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    let r = c.cmd("s STATUS box (UIDVALIDITY)").await;
    assert!(
        tagged(&r).starts_with("s NO"),
        "deleted stays deleted: {r:?}"
    );
    ok(&mut c, "c CREATE box").await;
    let second = ok(&mut c, "s STATUS box (UIDVALIDITY)").await;
    assert_ne!(first[0], second[0]);
    running.shutdown().await;
}

#[tokio::test]
async fn the_layout_is_plain_maildir_plus_plus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    ok(&mut c, "c CREATE work/projects").await;
    append(&mut c, "INBOX", "\\Seen \\Flagged $Label1", "", MSG1).await;
    append(&mut c, "work/projects", "\\Draft", "", MSG2).await;
    ok(&mut c, "s SELECT INBOX").await;
    ok(&mut c, "st STORE 1 +FLAGS (\\Answered \\Deleted)").await;

    // Read while the server runs: every OK above is already on disk.
    let root = maildir(dir.path());
    let cur = files_in(&root.join("cur"));
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(cur[0].ends_with(":2,FRST"), "{cur:?}");
    let bytes = std::fs::read(root.join("cur").join(&cur[0])).expect("message file");
    assert_eq!(bytes, MSG1.as_bytes());
    assert!(files_in(&root.join("tmp")).is_empty());
    assert!(files_in(&root.join("new")).is_empty());

    let folder = root.join(".work.projects");
    let cur = files_in(&folder.join("cur"));
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(cur[0].ends_with(":2,D"), "{cur:?}");
    // The superior made by CREATE is a folder of its own.
    assert!(root.join(".work").join("cur").is_dir());

    let index = std::fs::read_to_string(root.join("mailtape-uidlist")).expect("index");
    let base = files_in(&root.join("cur"))[0]
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        index.lines().any(|l| l.starts_with("1 ")
            && l.contains(&base)
            && l.split(' ').any(|w| w == "$Label1")),
        "{index}"
    );

    ok(&mut c, "e EXPUNGE").await;
    assert!(files_in(&root.join("cur")).is_empty());
    ok(&mut c, "r RENAME work renamed").await;
    assert!(!root.join(".work.projects").exists());
    assert_eq!(
        files_in(&root.join(".renamed.projects").join("cur")).len(),
        1
    );
    running.shutdown().await;
}

#[tokio::test]
async fn mail_dropped_in_by_other_tools_gets_fresh_uids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    append(&mut c, "INBOX", "", "", MSG1).await;
    ok(&mut c, "c CREATE other").await;
    let before = ok(&mut c, "s STATUS INBOX (UIDVALIDITY UIDNEXT)").await;
    running.shutdown().await;

    // A delivery agent writes to new/; a mail client wrote a read message to cur/; a tool
    // made a folder of its own.
    let root = maildir(dir.path());
    std::fs::write(root.join("new").join("100.P1Q1.mda"), MSG2).expect("write");
    std::fs::write(
        root.join(".other").join("cur").join("200.P2.mua:2,RS"),
        MSG3,
    )
    .expect("write");
    let manual = root.join(".manual");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(manual.join(sub)).expect("mkdir");
    }
    std::fs::write(manual.join("new").join("300.P3.x"), MSG1).expect("write");

    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    let after = ok(&mut c, "s STATUS INBOX (UIDVALIDITY UIDNEXT)").await;
    let validity = |l: &str| {
        l.split("UIDVALIDITY ")
            .nth(1)
            .and_then(|v| v.split(' ').next())
            .map(str::to_string)
    };
    assert_eq!(validity(&before[0]), validity(&after[0]));
    assert!(after[0].contains("UIDNEXT 3"), "{after:?}");
    ok(&mut c, "e EXAMINE INBOX").await;
    let r = ok(&mut c, "f UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert!(has(&r, "Subject: two"), "{r:?}");
    assert!(files_in(&root.join("new")).is_empty(), "moved to cur/");
    ok(&mut c, "e EXAMINE other").await;
    let r = ok(&mut c, "f UID FETCH 1:* (FLAGS)").await;
    assert!(has(&r, "UID 1 FLAGS (\\Answered \\Seen"), "{r:?}");
    let r = ok(&mut c, "st STATUS manual (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 1)"), "{r:?}");
    running.shutdown().await;

    // The fresh UIDs were written down: the next start gives the same answer.
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    let again = ok(&mut c, "s STATUS INBOX (UIDVALIDITY UIDNEXT)").await;
    assert_eq!(after[0], again[0]);
    running.shutdown().await;
}

#[tokio::test]
async fn one_server_per_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let second = reference_server::start(Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
    .await;
    assert!(matches!(second, Err(ServerError::Storage(_))), "{second:?}");
    running.shutdown().await;
    // Released at shutdown.
    start(dir.path()).await.shutdown().await;
}

#[tokio::test]
async fn a_broken_index_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    start(dir.path()).await.shutdown().await;
    std::fs::write(maildir(dir.path()).join("mailtape-uidlist"), "garbage\n").expect("write");
    let r = reference_server::start(Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
    .await;
    let err = r.expect_err("a broken index is not silently renumbered");
    assert!(err.to_string().contains("broken index"), "{err}");
}

#[tokio::test]
async fn renaming_inbox_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    append(&mut c, "INBOX", "\\Seen", "", MSG1).await;
    append(&mut c, "INBOX", "", "", MSG2).await;
    ok(&mut c, "r RENAME INBOX old/inbox").await;
    let before = observe(&running).await;
    running.shutdown().await;
    assert!(
        has(&before, "STATUS \"INBOX\" (MESSAGES 0 UIDNEXT 3"),
        "{before:?}"
    );
    assert!(
        has(&before, "STATUS \"old/inbox\" (MESSAGES 2 UIDNEXT 3"),
        "{before:?}"
    );

    let running = start(dir.path()).await;
    assert_eq!(before, observe(&running).await);
    running.shutdown().await;
    let root = maildir(dir.path());
    assert!(files_in(&root.join("cur")).is_empty());
    assert_eq!(files_in(&root.join(".old.inbox").join("cur")).len(), 2);
}

// Several worker threads, so that syncs really run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_all_reach_the_disk() {
    const SESSIONS: usize = 4;
    const EACH: usize = 5;
    let dir = tempfile::tempdir().expect("tempdir");
    let running = std::sync::Arc::new(start(dir.path()).await);
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let running = std::sync::Arc::clone(&running);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::login(&running, "alice").await;
            ok(&mut c, "s SELECT INBOX").await;
            for i in 0..EACH {
                let body = format!("Subject: s{s} m{i}\r\n\r\nx\r\n");
                append(&mut c, "INBOX", &format!("$S{s}"), "", &body).await;
                ok(&mut c, &format!("st UID STORE 1:* +FLAGS (\\Seen $T{s})")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("session task");
    }
    let before = observe(&running).await;
    let Ok(running) = std::sync::Arc::try_unwrap(running) else {
        panic!("sessions still hold the server");
    };
    running.shutdown().await;
    let total = SESSIONS * EACH;
    let status = format!("(MESSAGES {total} UIDNEXT {}", total + 1);
    assert!(has(&before, &status), "{before:?}");

    let running = start(dir.path()).await;
    assert_eq!(before, observe(&running).await);
    running.shutdown().await;
    let files = files_in(&maildir(dir.path()).join("cur"));
    assert_eq!(files.len(), total);
}

#[tokio::test]
async fn a_failed_write_refuses_the_ok_and_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut c = Client::login(&running, "alice").await;
    ok(&mut c, "c CREATE box").await;
    // A file where tmp/ should be: writing the message fails even for root.
    let tmp = maildir(dir.path()).join(".box").join("tmp");
    std::fs::remove_dir(&tmp).expect("rmdir tmp");
    std::fs::write(&tmp, b"in the way").expect("block tmp");
    let line = format!("a1 APPEND box () {{{}+}}\r\n{MSG1}", MSG1.len());
    let r = c.cmd(&line).await;
    assert!(tagged(&r).starts_with("a1 NO [UNAVAILABLE]"), "{r:?}");

    std::fs::remove_file(&tmp).expect("unblock");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    append(&mut c, "box", "", "", MSG2).await;
    let before = observe(&running).await;
    running.shutdown().await;
    assert!(has(&before, "STATUS \"box\" (MESSAGES 2"), "{before:?}");

    // The refused change reached the disk with the next one.
    let running = start(dir.path()).await;
    assert_eq!(before, observe(&running).await);
    running.shutdown().await;
}
