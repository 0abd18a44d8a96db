//! Mailbox commands over the wire: CREATE/DELETE/RENAME (INBOX too), LIST/LSUB wildcards,
//! SUBSCRIBE, STATUS, EXAMINE read-only, CLOSE vs UNSELECT, NAMESPACE, ID, ENABLE,
//! AUTHENTICATE continuations, and FETCH of a multipart message's structure and sections.

mod common;

use common::{Client, has, server, tagged};

#[tokio::test]
async fn list_lsub_and_hierarchy() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    let r = c.cmd("a LIST \"\" \"\"").await;
    assert!(has(&r, "* LIST (\\Noselect) \"/\" \"\""), "{r:?}");
    assert!(tagged(&c.cmd("b CREATE work/2024/q1").await).starts_with("b OK"));
    let r = c.cmd("c LIST \"\" *").await;
    for name in ["\"INBOX\"", "\"work\"", "\"work/2024\"", "\"work/2024/q1\""] {
        assert!(has(&r, &format!("\"/\" {name}")), "{name}: {r:?}");
    }
    let r = c.cmd("d LIST \"\" %").await;
    assert!(has(&r, "\"work\"") && !has(&r, "work/2024"), "{r:?}");
    let r = c.cmd("e LIST work/ %").await;
    assert!(has(&r, "\"work/2024\"") && !has(&r, "q1"), "{r:?}");
    let r = c.cmd("f LIST \"\" inbox").await;
    assert!(has(&r, "\"INBOX\""), "{r:?}");
    assert!(tagged(&c.cmd("g SUBSCRIBE work/2024/q1").await).starts_with("g OK"));
    let r = c.cmd("h LSUB \"\" work/%").await;
    assert!(has(&r, "* LSUB (\\Noselect) \"/\" \"work/2024\""), "{r:?}");
    let r = c.cmd("i LSUB \"\" *").await;
    assert!(has(&r, "* LSUB () \"/\" \"work/2024/q1\""), "{r:?}");
    assert!(tagged(&c.cmd("j UNSUBSCRIBE work/2024/q1").await).starts_with("j OK"));
    assert!(tagged(&c.cmd("k UNSUBSCRIBE work/2024/q1").await).starts_with("k NO"));
    // DELETE with inferiors keeps the name as \Noselect.
    assert!(tagged(&c.cmd("l DELETE work").await).starts_with("l OK"));
    let r = c.cmd("m LIST \"\" work").await;
    assert!(has(&r, "* LIST (\\Noselect) \"/\" \"work\""), "{r:?}");
    assert!(tagged(&c.cmd("n SELECT work").await).starts_with("n NO"));
    assert!(tagged(&c.cmd("o DELETE INBOX").await).starts_with("o NO"));
    assert!(tagged(&c.cmd("p CREATE INBOX").await).starts_with("p NO"));
    assert!(tagged(&c.cmd("q DELETE nothere").await).starts_with("q NO [NONEXISTENT]"));
    assert!(tagged(&c.cmd("r RENAME work/2024 archive/2024").await).starts_with("r OK"));
    let r = c.cmd("s LIST \"\" archive/*").await;
    assert!(has(&r, "\"archive/2024/q1\""), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn rename_inbox_moves_messages_and_recreated_mailbox_gets_new_uidvalidity() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    let msg = "Subject: x\r\n\r\ny\r\n";
    c.send(format!("a APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await;
    c.until_tag("a").await;
    assert!(tagged(&c.cmd("b RENAME INBOX old-inbox").await).starts_with("b OK"));
    let r = c.cmd("c STATUS INBOX (MESSAGES UIDNEXT)").await;
    assert!(has(&r, "(MESSAGES 0 UIDNEXT 2)"), "{r:?}");
    let r = c.cmd("d STATUS old-inbox (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 1)"), "{r:?}");
    let validity = |r: &[String]| {
        r.iter()
            .find_map(|l| {
                l.split("UIDVALIDITY ")
                    .nth(1)
                    .map(|v| v.trim_end_matches(')').to_string())
            })
            .expect("uidvalidity")
    };
    c.cmd("e CREATE box").await;
    let v1 = validity(&c.cmd("f STATUS box (UIDVALIDITY)").await);
    c.cmd("g DELETE box").await;
    c.cmd("h CREATE box").await;
    let v2 = validity(&c.cmd("i STATUS box (UIDVALIDITY)").await);
    assert_ne!(v1, v2);
    running.shutdown().await;
}

#[tokio::test]
async fn examine_close_unselect_and_info_commands() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    let msg = "Subject: x\r\n\r\ny\r\n";
    for t in ["a1", "a2"] {
        c.send(
            format!(
                "{t} APPEND INBOX (\\Deleted) {{{}+}}\r\n{msg}\r\n",
                msg.len()
            )
            .as_bytes(),
        )
        .await;
        c.until_tag(t).await;
    }
    let r = c.cmd("b EXAMINE INBOX").await;
    assert!(tagged(&r).starts_with("b OK [READ-ONLY]"), "{r:?}");
    assert!(tagged(&c.cmd("c STORE 1 +FLAGS (\\Seen)").await).starts_with("c NO"));
    assert!(tagged(&c.cmd("d EXPUNGE").await).starts_with("d NO"));
    c.cmd("e UNSELECT").await;
    let r = c.cmd("f STATUS INBOX (MESSAGES RECENT)").await;
    assert!(
        has(&r, "(MESSAGES 2 RECENT 2)"),
        "EXAMINE does not claim \\Recent: {r:?}"
    );
    c.cmd("g SELECT INBOX").await;
    let r = c.cmd("h CLOSE").await;
    assert!(!has(&r, "EXPUNGE"), "CLOSE expunges silently: {r:?}");
    let r = c.cmd("i STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 0)"), "{r:?}");
    let r = c.cmd("j NAMESPACE").await;
    assert!(has(&r, "* NAMESPACE ((\"\" \"/\")) NIL NIL"), "{r:?}");
    let r = c.cmd("k ID NIL").await;
    assert!(has(&r, "* ID (\"name\""), "{r:?}");
    let r = c.cmd("l ENABLE CONDSTORE").await;
    assert!(
        has(&r, "* ENABLED") && tagged(&r).starts_with("l OK"),
        "{r:?}"
    );
    let r = c.cmd("m LOGOUT").await;
    assert!(has(&r, "* BYE") && tagged(&r).starts_with("m OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn authenticate_with_continuations() {
    let running = server().await;
    let mut c = Client::connect(&running).await;
    c.send(b"a AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.line().await, "+ VXNlcm5hbWU6");
    c.send(b"Ym9i\r\n").await;
    assert_eq!(c.line().await, "+ UGFzc3dvcmQ6");
    c.send(b"Ym9icHc=\r\n").await;
    let r = c.until_tag("a").await;
    assert!(tagged(&r).starts_with("a OK"), "{r:?}");

    let mut d = Client::connect(&running).await;
    d.send(b"b AUTHENTICATE PLAIN\r\n").await;
    assert!(d.line().await.starts_with('+'));
    d.send(b"*\r\n").await;
    let r = d.until_tag("b").await;
    assert!(tagged(&r).starts_with("b BAD"), "{r:?}");
    d.send(b"c AUTHENTICATE PLAIN\r\n").await;
    assert!(d.line().await.starts_with('+'));
    d.send(b"AGFsaWNlAHdyb25n\r\n").await;
    let r = d.until_tag("c").await;
    assert!(tagged(&r).starts_with("c NO"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn multipart_structure_and_sections() {
    let running = server().await;
    let mut c = Client::login(&running, "alice").await;
    let msg = "From: A <a@example.test>\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAEC\r\n--XX--\r\n";
    c.send(format!("a APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await;
    c.until_tag("a").await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("b FETCH 1 (BODY BODYSTRUCTURE)").await;
    let all = r.join("\n");
    assert!(all.contains("BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 1)(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 4) \"MIXED\")"), "{all}");
    assert!(
        all.contains("(\"ATTACHMENT\" (\"FILENAME\" \"a.bin\"))"),
        "{all}"
    );
    let r = c
        .cmd("c FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[1]<2.3>)")
        .await;
    let all = r.join("\n");
    assert!(all.contains("BODY[1] {12}\r\nhello\r\nworld"), "{all}");
    assert!(all.contains("BODY[2.MIME] {"), "{all}");
    assert!(all.contains("BODY[1]<2> {3}\r\nllo"), "{all}");
    let r = c.cmd("d UID FETCH 1 (RFC822.HEADER)").await;
    assert!(has(&r, "UID 1 RFC822.HEADER {"), "{r:?}");
    let r = c.cmd("e FETCH 1 FAST").await;
    assert!(has(&r, "FLAGS (\\Recent) INTERNALDATE \""), "{r:?}");
    running.shutdown().await;
}
