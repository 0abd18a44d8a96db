//! Hostile or broken input: junk, wrong-state commands, over-long lines, huge literal
//! announcements, session limits and autologout. The session must answer and go on.

mod common;

use std::time::Duration;

use common::{Client, has, tagged};
use reference_server::{Config, Limits};

async fn server_with(limits: Limits) -> reference_server::Running {
    reference_server::start(Config {
        limits,
        ..Config::default()
    })
    .await
    .expect("server starts")
}

#[tokio::test]
async fn junk_and_wrong_state_get_bad_and_the_session_goes_on() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::connect(&running).await;
    c.send(b"\x00\xff\xfe garbage\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("* BAD"), "{l}");
    let r = c.cmd("t1 FROBNICATE").await;
    assert!(tagged(&r).starts_with("t1 BAD"), "{r:?}");
    let r = c.cmd("t2 SELECT INBOX").await;
    assert!(tagged(&r).starts_with("t2 BAD"), "{r:?}");
    let r = c.cmd("t3 LOGIN alice alicepw").await;
    assert!(tagged(&r).starts_with("t3 OK"), "{r:?}");
    let r = c.cmd("t4 FETCH 1 FLAGS").await;
    assert!(
        tagged(&r).starts_with("t4 BAD"),
        "no mailbox selected: {r:?}"
    );
    let r = c.cmd("t5 LOGIN alice alicepw").await;
    assert!(tagged(&r).starts_with("t5 BAD"), "{r:?}");
    c.cmd("t6 SELECT INBOX").await;
    let r = c.cmd("t7 FETCH 5 FLAGS").await;
    assert!(tagged(&r).starts_with("t7 BAD"), "beyond EXISTS: {r:?}");
    let r = c.cmd("t8 NOOP").await;
    assert!(tagged(&r).starts_with("t8 OK"), "{r:?}");
    // A synchronizing literal after a syntax error is refused at once, without `+`.
    c.send(b"t9 FROBNICATE {5}\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("t9 BAD"), "{l}");
    let r = c.cmd("t10 NOOP").await;
    assert!(tagged(&r).starts_with("t10 OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn huge_literal_announcement_is_refused_without_reading_it() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::login(&running, "alice").await;
    c.send(b"a APPEND INBOX {1073741824}\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("a NO [TOOBIG]"), "{l}");
    // The client does not send the data after NO; the next command works.
    let r = c.cmd("b NOOP").await;
    assert!(tagged(&r).starts_with("b OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn oversized_literal_plus_is_drained_and_refused() {
    let limits = Limits {
        max_literal: 1024,
        ..Limits::default()
    };
    let running = server_with(limits).await;
    let mut c = Client::login(&running, "alice").await;
    let data = vec![b'x'; 5000];
    c.send(b"a APPEND INBOX {5000+}\r\n").await;
    c.send(&data).await;
    c.send(b"\r\n").await;
    let r = c.until_tag("a").await;
    assert!(tagged(&r).starts_with("a BAD [TOOBIG]"), "{r:?}");
    let r = c.cmd("b STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 0)"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn overlong_line_gets_bad() {
    let limits = Limits {
        max_line: 1000,
        ..Limits::default()
    };
    let running = server_with(limits).await;
    let mut c = Client::login(&running, "alice").await;
    let long = format!("a NOOP {}\r\n", "x".repeat(5000));
    c.send(long.as_bytes()).await;
    let r = c.until_tag("a").await;
    assert!(tagged(&r).starts_with("a BAD"), "{r:?}");
    let r = c.cmd("b NOOP").await;
    assert!(tagged(&r).starts_with("b OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn session_limit_and_autologout() {
    let limits = Limits {
        max_sessions: 1,
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let running = server_with(limits).await;
    let mut first = Client::connect(&running).await;
    let mut second = tokio::net::TcpStream::connect(running.imap.expect("imap"))
        .await
        .expect("connect");
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut second, &mut buf)
        .await
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf).starts_with("* BYE"),
        "{buf:?}"
    );
    // Say nothing: autologout after the idle timeout.
    let l = first.line().await;
    assert!(l.starts_with("* BYE"), "{l}");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_bye_to_open_sessions() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::login(&running, "alice").await;
    let addr = running.imap.expect("imap");
    running.shutdown().await;
    let l = c.line().await;
    assert!(l.starts_with("* BYE"), "{l}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
}

#[tokio::test]
async fn pseudo_random_garbage_never_kills_the_session() {
    let limits = Limits {
        max_literal: 4096,
        ..Limits::default()
    };
    let running = server_with(limits).await;
    let mut c = Client::login(&running, "alice").await;
    c.cmd("s SELECT INBOX").await;
    // Deterministic LCG over an alphabet rich in IMAP syntax characters.
    let alphabet = b"aZ09 ()[]{}<>\"\\*%+-.:,\r\n\x00\xff~BODYFETCH1";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..200 {
        let mut junk = Vec::new();
        for _ in 0..(round % 60 + 1) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            junk.push(alphabet[(state >> 33) as usize % alphabet.len()]);
        }
        // Never announce a literal: the server would wait for its bytes.
        let junk: Vec<u8> = junk
            .into_iter()
            .filter(|&b| b != b'{' && b != b'}')
            .collect();
        c.send(&junk).await;
        c.send(b"\r\n").await;
    }
    // Whatever the garbage did, a fresh tagged command still gets its answer.
    let r = c.cmd("zz9 NOOP").await;
    assert!(tagged(&r).starts_with("zz9 OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_client_that_stops_reading() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::login(&running, "alice").await;
    let body = "x".repeat(1 << 20);
    let msg = format!("Subject: big\r\n\r\n{body}\r\n");
    c.send(format!("a APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await;
    c.until_tag("a").await;
    c.cmd("s SELECT INBOX").await;
    // Ask for far more than the socket buffers hold, and never read it.
    for i in 0..64 {
        c.send(format!("f{i} FETCH 1 BODY.PEEK[]\r\n").as_bytes())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown finished although the client does not read");
}

#[tokio::test]
async fn deeply_nested_search_keys_do_not_overflow_the_stack() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::login(&running, "alice").await;
    c.cmd("s SELECT INBOX").await;
    let nots = format!("a SEARCH {}ALL", "NOT ".repeat(15_000));
    let r = c.cmd(&nots).await;
    assert!(tagged(&r).starts_with("a "), "{r:?}");
    let parens = format!("b SEARCH {}ALL{}", "(".repeat(30_000), ")".repeat(30_000));
    let r = c.cmd(&parens).await;
    assert!(tagged(&r).starts_with("b "), "{r:?}");
    let r = c.cmd("c NOOP").await;
    assert!(tagged(&r).starts_with("c OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn deeply_nested_mime_does_not_overflow_the_stack() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::login(&running, "alice").await;
    let mut msg = String::new();
    for _ in 0..5_000 {
        msg.push_str("Content-Type: message/rfc822\r\n\r\n");
    }
    msg.push_str("Subject: bottom\r\n\r\nbody\r\n");
    let mut multi = String::new();
    for i in 0..5_000 {
        multi.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    multi.push_str("\r\nleaf\r\n");
    for (t, m) in [("a1", &msg), ("a2", &multi)] {
        c.send(format!("{t} APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes())
            .await;
        c.until_tag(t).await;
    }
    c.cmd("s SELECT INBOX").await;
    // The structure below the depth limit is reported as opaque data. imap-codec itself
    // parses only 7 levels of BODYSTRUCTURE, so it cannot check this response.
    c.check = false;
    let r = c
        .cmd("f FETCH 1:2 (BODYSTRUCTURE ENVELOPE BODY.PEEK[1.1.1.1])")
        .await;
    c.check = true;
    assert!(tagged(&r).starts_with("f OK"), "{}", tagged(&r));
    assert_eq!(
        r.iter()
            .filter(|l| l.contains("\"APPLICATION\" \"OCTET-STREAM\""))
            .count(),
        2
    );
    let r = c.cmd("g SEARCH BODY leaf").await;
    assert!(tagged(&r).starts_with("g OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn unadvertised_extension_syntax_is_refused() {
    let running = server_with(Limits::default()).await;
    let mut c = Client::login(&running, "alice").await;
    let r = c.cmd("a SELECT INBOX (CONDSTORE)").await;
    assert!(tagged(&r).starts_with("a BAD"), "{r:?}");
    c.cmd("b SELECT INBOX").await;
    let r = c.cmd("c FETCH 1:* (FLAGS) (CHANGEDSINCE 1)").await;
    assert!(tagged(&r).starts_with("c BAD"), "{r:?}");
    let r = c.cmd("d STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)").await;
    assert!(tagged(&r).starts_with("d BAD"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_stalled_tls_handshake() {
    let running = server_with(Limits::default()).await;
    // Connect to the implicit-TLS port and never start the handshake.
    let _silent = tokio::net::TcpStream::connect(running.imaps.expect("imaps"))
        .await
        .expect("connect");
    let mut plain = tokio::net::TcpStream::connect(running.imap.expect("imap"))
        .await
        .expect("connect");
    // STARTTLS accepted, then silence instead of a ClientHello.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut greeting = [0u8; 512];
    let _ = plain.read(&mut greeting).await.expect("greeting");
    plain.write_all(b"s STARTTLS\r\n").await.expect("write");
    let mut ok = [0u8; 512];
    let _ = plain.read(&mut ok).await.expect("reply");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .expect("shutdown finished despite stalled handshakes");
}
