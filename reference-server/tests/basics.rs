//! Core IMAP flows over real loopback sockets: login, APPEND (RFC 3501 6.3.11 example),
//! LITERAL+, SELECT, FETCH, STORE, SEARCH, COPY/MOVE/EXPUNGE with UIDPLUS.

mod common;

use common::{Client, has, server, tagged};

const RFC_MSG: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu.example\r\nMessage-Id: <B27397-0100000@Blurdybloop.example>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

#[tokio::test]
async fn rfc3501_append_example_with_synchronizing_literal() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    assert!(tagged(&c.cmd("A0 CREATE saved-messages").await).starts_with("A0 OK"));
    c.send(
        format!(
            "A003 APPEND saved-messages (\\Seen) {{{}}}\r\n",
            RFC_MSG.len()
        )
        .as_bytes(),
    )
    .await;
    let cont = c.line().await;
    assert!(cont.starts_with("+ "), "{cont}");
    c.send(format!("{RFC_MSG}\r\n").as_bytes()).await;
    let r = c.until_tag("A003").await;
    assert!(tagged(&r).starts_with("A003 OK [APPENDUID "), "{r:?}");
    let r = c.cmd("A1 SELECT saved-messages").await;
    assert!(has(&r, "* 1 EXISTS"), "{r:?}");
    assert!(has(&r, "* 1 RECENT"), "{r:?}");
    let r = c
        .cmd("A2 FETCH 1 (FLAGS RFC822.SIZE ENVELOPE BODY[TEXT])")
        .await;
    let all = r.join("\n");
    assert!(all.contains("FLAGS (\\Seen \\Recent)"), "{all}");
    assert!(
        all.contains(&format!("RFC822.SIZE {}", RFC_MSG.len())),
        "{all}"
    );
    assert!(all.contains("\"afternoon meeting\""), "{all}");
    assert!(
        all.contains("((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\"))"),
        "{all}"
    );
    assert!(all.contains("BODY[TEXT] {55}\r\nHello Joe"), "{all}");
    assert!(tagged(&r).starts_with("A2 OK"));
    running.shutdown().await;
}

#[tokio::test]
async fn literal_plus_needs_no_continuation() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    let msg = "Subject: lp\r\n\r\nbody\r\n";
    c.send(format!("a APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await;
    let r = c.until_tag("a").await;
    assert_eq!(r.len(), 1, "no continuation expected: {r:?}");
    assert!(tagged(&r).starts_with("a OK [APPENDUID "), "{r:?}");
    let r = c.cmd("b SELECT INBOX").await;
    assert!(has(&r, "* 1 EXISTS"), "{r:?}");
    let r = c.cmd("c FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await;
    assert!(
        has(
            &r,
            "BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: lp\r\n\r\n"
        ),
        "{r:?}"
    );
    // PEEK does not set \Seen; BODY[] does and reports FLAGS.
    let r = c.cmd("d FETCH 1 FLAGS").await;
    assert!(!has(&r, "\\Seen"), "{r:?}");
    let r = c.cmd("e FETCH 1 BODY[]").await;
    assert!(has(&r, "\\Seen"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn login_with_domain_and_wrong_password() {
    let running = server().await;
    let mut c = Client::connect(&running).await;
    let r = c.cmd("a LOGIN alice@example.test wrong").await;
    assert!(
        tagged(&r).starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
    let r = c.cmd("b LOGIN alice@example.test alicepw").await;
    assert!(tagged(&r).starts_with("b OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn capabilities_follow_the_state() {
    let running = server().await;
    let mut c = Client::connect(&running).await;
    let r = c.cmd("a CAPABILITY").await;
    assert!(
        has(&r, "AUTH=PLAIN") && has(&r, "STARTTLS") && has(&r, "IDLE"),
        "{r:?}"
    );
    let r = c.cmd("b LOGIN alice alicepw").await;
    assert!(
        tagged(&r).starts_with("b OK [CAPABILITY IMAP4rev1 "),
        "{r:?}"
    );
    assert!(!has(&r, "STARTTLS") && !has(&r, "AUTH="), "{r:?}");
    let r = c.cmd("c CAPABILITY").await;
    assert!(
        !has(&r, "STARTTLS") && !has(&r, "AUTH=") && has(&r, "UIDPLUS"),
        "{r:?}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn large_fetch_is_streamed_in_order() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    for i in 0..12 {
        let msg = format!("Subject: big {i}\r\n\r\n{}\r\n", "y".repeat(200_000));
        c.send(format!("a{i} APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
            .await;
        c.until_tag(&format!("a{i}")).await;
    }
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("f FETCH 1:* (UID BODY.PEEK[])").await;
    let fetches: Vec<&String> = r.iter().filter(|l| l.contains(" FETCH (UID ")).collect();
    assert_eq!(fetches.len(), 12);
    for (i, l) in fetches.iter().enumerate() {
        assert!(
            l.starts_with(&format!("* {} FETCH (UID {} BODY[] {{", i + 1, i + 1)),
            "{}",
            &l[..60]
        );
        assert!(l.contains(&format!("Subject: big {i}\r\n")));
    }
    assert!(tagged(&r).starts_with("f OK"));
    running.shutdown().await;
}
