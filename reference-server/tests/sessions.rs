//! What one session sees of another's changes (RFC 3501 5.2, 7.4.1): EXISTS/RECENT after
//! APPEND, EXPUNGE and FETCH FLAGS delivered at the next command, \Recent in exactly one
//! session, no EXPUNGE during FETCH/STORE/SEARCH, and IDLE pushing updates immediately.

mod common;

use common::{Client, has, server, tagged};

async fn append(
    c: &mut Client<tokio::net::TcpStream>,
    tag: &str,
    mailbox: &str,
    subject: &str,
) -> String {
    let msg = format!("Subject: {subject}\r\nFrom: a@example.test\r\n\r\nbody of {subject}\r\n");
    c.send(format!("{tag} APPEND {mailbox} {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await;
    let r = c.until_tag(tag).await;
    assert!(tagged(&r).starts_with(&format!("{tag} OK")), "{r:?}");
    tagged(&r).to_string()
}

fn appenduid(line: &str) -> u32 {
    let start = line.find("APPENDUID ").expect("APPENDUID") + "APPENDUID ".len();
    let rest = &line[start..];
    let uid = rest.split(' ').nth(1).expect("uid");
    uid.trim_end_matches(']').parse().expect("number")
}

#[tokio::test]
async fn updates_reach_the_other_session_at_its_next_command() {
    let running = server().await;
    let mut a = Client::login(&running, "alice").await;
    let mut b = Client::login(&running, "alice").await;
    append(&mut a, "p1", "INBOX", "one").await;
    append(&mut a, "p2", "INBOX", "two").await;
    assert!(tagged(&a.cmd("s1 SELECT INBOX").await).contains("OK"));
    let r = b.cmd("s2 SELECT INBOX").await;
    // a selected first, so both messages are \Recent only there.
    assert!(has(&r, "* 0 RECENT"), "{r:?}");
    let r = a.cmd("f1 FETCH 1:2 FLAGS").await;
    assert_eq!(
        r.iter().filter(|l| l.contains("\\Recent")).count(),
        2,
        "{r:?}"
    );

    // STORE in b shows up in a as FETCH FLAGS at a's next command (any command).
    assert!(tagged(&b.cmd("t1 STORE 1 +FLAGS (\\Flagged $Work)").await).contains("OK"));
    let r = a.cmd("c1 CHECK").await;
    assert!(has(&r, "* 1 FETCH (FLAGS ("), "{r:?}");
    assert!(has(&r, "\\Flagged"), "{r:?}");
    assert!(has(&r, "* FLAGS ("), "new keyword announced: {r:?}");

    // EXPUNGE in b: a must not see it during FETCH but at NOOP.
    assert!(tagged(&b.cmd("t2 STORE 1 +FLAGS.SILENT (\\Deleted)").await).contains("OK"));
    let r = b.cmd("t3 EXPUNGE").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    let r = a.cmd("f2 FETCH 1:2 (UID)").await;
    assert!(!has(&r, "EXPUNGE"), "EXPUNGE during FETCH: {r:?}");
    let r = a.cmd("n1 NOOP").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");

    // APPEND from b: b is told first (at the end of its APPEND), so the new message is
    // \Recent in b only; a sees EXISTS and keeps only its own older \Recent message.
    append(&mut b, "p3", "INBOX", "three").await;
    let r = a.cmd("n2 NOOP").await;
    assert!(has(&r, "* 2 EXISTS"), "{r:?}");
    assert!(has(&r, "* 1 RECENT"), "{r:?}");
    let ra = a.cmd("f3 FETCH 2 FLAGS").await;
    let rb = b.cmd("f4 FETCH 2 FLAGS").await;
    assert!(
        !has(&ra, "\\Recent") && has(&rb, "\\Recent"),
        "{ra:?} {rb:?}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn uids_are_monotonic_across_append_expunge_copy_move() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    assert!(tagged(&c.cmd("a CREATE Archive").await).contains("OK"));
    let u1 = appenduid(&append(&mut c, "p1", "INBOX", "one").await);
    let u2 = appenduid(&append(&mut c, "p2", "INBOX", "two").await);
    assert!(u2 > u1);
    let r = c.cmd("s SELECT INBOX").await;
    let validity = r
        .iter()
        .find(|l| l.contains("UIDVALIDITY"))
        .expect("uidvalidity")
        .clone();
    assert!(!validity.contains("UIDVALIDITY 0]"), "{validity}");
    c.cmd("d UID STORE 2 +FLAGS (\\Deleted)").await;
    let r = c.cmd("e UID EXPUNGE 2").await;
    assert!(has(&r, "* 2 EXPUNGE"), "{r:?}");
    let u3 = appenduid(&append(&mut c, "p3", "INBOX", "three").await);
    assert!(u3 > u2, "UID reused after expunge: {u3} <= {u2}");
    let r = c.cmd("c UID COPY 1 Archive").await;
    assert!(tagged(&r).contains("[COPYUID "), "{r:?}");
    let r = c.cmd("m UID MOVE 1 Archive").await;
    assert!(has(&r, "* OK [COPYUID "), "{r:?}");
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    let r = c
        .cmd("st STATUS Archive (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)")
        .await;
    assert!(
        has(
            &r,
            "* STATUS \"Archive\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY "
        ),
        "{r:?}"
    );
    let r = c.cmd("u UID SEARCH ALL").await;
    assert!(has(&r, &format!("* SEARCH {u3}")), "{r:?}");
    let r = c.cmd("x COPY 1 Nope").await;
    assert!(tagged(&r).starts_with("x NO [TRYCREATE]"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn idle_pushes_an_append_from_another_session() {
    let running = server().await;
    let mut a = Client::login(&running, "alice").await;
    let mut b = Client::login(&running, "alice").await;
    a.cmd("s SELECT INBOX").await;
    a.send(b"i IDLE\r\n").await;
    assert!(a.line().await.starts_with("+ "));
    append(&mut b, "p", "INBOX", "while idling").await;
    assert_eq!(a.line().await, "* 1 EXISTS");
    assert_eq!(a.line().await, "* 1 RECENT");
    a.send(b"DONE\r\n").await;
    let r = a.until_tag("i").await;
    assert!(tagged(&r).starts_with("i OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn search_keys() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    let m1 = "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nFrom: Fred <fred@example.com>\r\nTo: joe@example.com\r\nSubject: afternoon meeting\r\nX-Tag: alpha\r\n\r\nHello Joe\r\n";
    let m2 = "Date: Tue, 1 Mar 2022 10:00:00 +0000\r\nFrom: Ann <ann@example.org>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n\r\nA longer body with the word zebra in it.\r\n";
    for (t, m) in [("a1", m1), ("a2", m2)] {
        c.send(format!("{t} APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes())
            .await;
        c.until_tag(t).await;
    }
    c.cmd("s SELECT INBOX").await;
    c.cmd("f STORE 2 +FLAGS (\\Flagged)").await;
    assert!(m1.len() > m2.len());
    let larger = format!("LARGER {}", m2.len());
    let smaller = format!("SMALLER {}", m1.len());
    let cases = [
        ("ALL", "* SEARCH 1 2"),
        ("FROM fred", "* SEARCH 1"),
        ("SUBJECT café", "* SEARCH"),
        ("CHARSET UTF-8 SUBJECT caf", "* SEARCH 2"),
        ("BODY zebra", "* SEARCH 2"),
        ("TEXT joe", "* SEARCH 1"),
        ("HEADER X-Tag alpha", "* SEARCH 1"),
        ("HEADER X-Tag \"\"", "* SEARCH 1"),
        ("FLAGGED", "* SEARCH 2"),
        ("NOT FLAGGED", "* SEARCH 1"),
        ("OR FLAGGED FROM fred", "* SEARCH 1 2"),
        ("SENTBEFORE 1-Jan-2000", "* SEARCH 1"),
        ("SENTSINCE 1-Jan-2000", "* SEARCH 2"),
        ("SENTON 1-Mar-2022", "* SEARCH 2"),
        (larger.as_str(), "* SEARCH 1"),
        (smaller.as_str(), "* SEARCH 2"),
        ("2:*", "* SEARCH 2"),
        ("UID 1", "* SEARCH 1"),
        ("(FLAGGED SUBJECT caf) UNSEEN", "* SEARCH 2"),
        ("RECENT", "* SEARCH 1 2"),
        ("SINCE 1-Jan-2000", "* SEARCH 1 2"),
    ];
    for (i, (key, want)) in cases.iter().enumerate() {
        let r = c.cmd(&format!("k{i} SEARCH {key}")).await;
        let got = r
            .iter()
            .find(|l| l.starts_with("* SEARCH"))
            .cloned()
            .unwrap_or_default();
        if key.contains("café") {
            // 8-bit in a quoted/atom string is not valid IMAP4rev1 syntax.
            assert!(tagged(&r).contains("BAD"), "{key}: {r:?}");
            continue;
        }
        assert_eq!(got.trim_end(), *want, "SEARCH {key}: {r:?}");
    }
    // 8-bit search text travels in a literal; the decoded (RFC 2047) subject matches.
    let r = c.cmd("u8 SEARCH CHARSET UTF-8 SUBJECT {5+}\r\ncafé").await;
    assert!(has(&r, "* SEARCH 2"), "{r:?}");
    let r = c.cmd("z SEARCH CHARSET KOI8-R ALL").await;
    assert!(tagged(&r).starts_with("z NO [BADCHARSET"), "{r:?}");
    running.shutdown().await;
}
