//! ImapConnection against small fake servers on 127.0.0.1 that write canned bytes.

use std::time::{Duration, Instant};

use imap_types::response::{Data, Response, Status};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::*;
use crate::net::testutil::{TestServer, test_cert, tls_options};
use crate::net::{TlsClient, connect};
use crate::script::Protocol;
use crate::target::{Endpoint, Security, Timeouts, TlsOptions};

const WAIT: Duration = Duration::from_secs(5);
const LIMIT: usize = 1 << 20;

async fn open(server: &TestServer, security: Security, tls: &TlsClient) -> ImapConnection {
    let ep = Endpoint {
        protocol: Protocol::Imap,
        security,
        host: "127.0.0.1".into(),
        port: server.port,
    };
    let stream = connect(&ep, tls, &Timeouts::default()).await.unwrap();
    ImapConnection::new(stream, LIMIT)
}

async fn plain_client(server: &TestServer) -> ImapConnection {
    let tls = TlsClient::new(&TlsOptions::default()).unwrap();
    open(server, Security::Plain, &tls).await
}

/// Reads one CRLF line from the client.
async fn read_line<S: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<S>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    line
}

fn is_tagged_ok(f: &ServerFrame, tag: &str) -> bool {
    matches!(&f.parsed, Parsed::Response(Response::Status(Status::Tagged(t)))
        if t.tag.as_ref() == tag && t.body.kind == imap_types::response::StatusKind::Ok)
}

#[tokio::test]
async fn greeting_then_tagged_response() {
    let server = TestServer::plain(|tcp: TcpStream, _| async move {
        let mut r = BufReader::new(tcp);
        r.get_mut()
            .write_all(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
            .await
            .unwrap();
        assert_eq!(read_line(&mut r).await, "A1 NOOP\r\n");
        r.get_mut().write_all(b"A1 OK done\r\n").await.unwrap();
    })
    .await;
    let mut c = plain_client(&server).await;
    assert!(c.peer_addr().is_some_and(|a| a.port() == server.port));
    assert!(c.local_addr().is_some());
    assert!(!c.is_tls());
    let g = c.read_frame(WAIT).await.unwrap();
    assert_eq!(g.raw, b"* OK [CAPABILITY IMAP4rev1] ready\r\n");
    assert!(matches!(g.parsed, Parsed::Greeting(_)), "{:?}", g.parsed);
    c.send(b"A1 NOOP\r\n").await.unwrap();
    let r = c.read_frame(WAIT).await.unwrap();
    assert!(is_tagged_ok(&r, "A1"), "{:?}", r.parsed);
    assert_eq!(r.line_ending, LineEnding::Crlf);
    assert!(!c.has_buffered());
}

#[tokio::test]
async fn literal_split_across_writes() {
    let parts: [&[u8]; 4] = [
        b"* OK hi\r\n* 1 FETCH (BODY[] {13}\r\nHel",
        b"lo\r\n",
        b"World",
        b"!)\r\nA1 OK done\r\n",
    ];
    let server = TestServer::plain(move |mut tcp: TcpStream, _| async move {
        for p in parts {
            tcp.write_all(p).await.unwrap();
            tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
    .await;
    let mut c = plain_client(&server).await;
    c.read_frame(WAIT).await.unwrap();
    let f = c.read_frame(WAIT).await.unwrap();
    assert_eq!(f.raw, b"* 1 FETCH (BODY[] {13}\r\nHello\r\nWorld!)\r\n");
    match &f.parsed {
        Parsed::Response(Response::Data(Data::Fetch { seq, items })) => {
            assert_eq!(seq.get(), 1);
            assert_eq!(items.as_ref().len(), 1);
        }
        other => panic!("expected FETCH data, got {other:?}"),
    }
    assert!(is_tagged_ok(&c.read_frame(WAIT).await.unwrap(), "A1"));
}

#[tokio::test]
async fn bare_lf_is_framed_and_flagged() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* OK hi\r\n* 3 EXISTS\nA1 OK x\r\n")
            .await
            .unwrap();
    })
    .await;
    let mut c = plain_client(&server).await;
    assert_eq!(
        c.read_frame(WAIT).await.unwrap().line_ending,
        LineEnding::Crlf
    );
    let lf = c.read_frame(WAIT).await.unwrap();
    assert_eq!(lf.raw, b"* 3 EXISTS\n");
    assert_eq!(lf.line_ending, LineEnding::Lf);
    let next = c.read_frame(WAIT).await.unwrap();
    assert!(is_tagged_ok(&next, "A1"));
    assert_eq!(next.line_ending, LineEnding::Crlf);
}

#[tokio::test]
async fn garbage_is_unparsed_and_framing_continues() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* OK hi\r\n\x01\x02 what {3}\r\n\r\n\r)\r\n* 2 EXISTS\r\n")
            .await
            .unwrap();
    })
    .await;
    let mut c = plain_client(&server).await;
    c.read_frame(WAIT).await.unwrap();
    let bad = c.read_frame(WAIT).await.unwrap();
    assert_eq!(bad.raw, b"\x01\x02 what {3}\r\n\r\n\r)\r\n");
    match &bad.parsed {
        Parsed::Unparsed(reason) => assert!(reason.contains("not a valid response"), "{reason}"),
        other => panic!("expected Unparsed, got {other:?}"),
    }
    let ok = c.read_frame(WAIT).await.unwrap();
    assert!(
        matches!(ok.parsed, Parsed::Response(Response::Data(Data::Exists(2)))),
        "{:?}",
        ok.parsed
    );
}

#[tokio::test]
async fn bad_greeting_is_unparsed_and_later_messages_are_responses() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"HELLO THERE\r\n* 1 EXISTS\r\n")
            .await
            .unwrap();
    })
    .await;
    let mut c = plain_client(&server).await;
    assert!(matches!(
        c.read_frame(WAIT).await.unwrap().parsed,
        Parsed::Unparsed(_)
    ));
    assert!(matches!(
        c.read_frame(WAIT).await.unwrap().parsed,
        Parsed::Response(Response::Data(Data::Exists(1)))
    ));
}

#[tokio::test]
async fn disconnect_inside_a_literal() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* OK hi\r\n* 1 FETCH (BODY[] {100}\r\nabc")
            .await
            .unwrap();
    })
    .await;
    let mut c = plain_client(&server).await;
    c.read_frame(WAIT).await.unwrap();
    let e = c.read_frame(WAIT).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, NetError::Closed(_)), "{msg}");
    assert!(msg.contains("3 of 100 literal bytes"), "{msg}");
}

#[tokio::test]
async fn clean_close_between_messages() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* BYE bye\r\n").await.unwrap();
    })
    .await;
    let mut c = plain_client(&server).await;
    assert!(matches!(
        c.read_frame(WAIT).await.unwrap().parsed,
        Parsed::Greeting(_)
    ));
    match c.read_frame(WAIT).await {
        Err(NetError::Closed(detail)) => assert_eq!(detail, ""),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test]
async fn huge_literal_announcement_is_refused_quickly() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* OK hi\r\n* 1 FETCH (BODY[] {1073741824}\r\n")
            .await
            .unwrap();
        // Keep sending literal data until the client goes away.
        let chunk = vec![b'x'; 64 * 1024];
        while tcp.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let mut c = plain_client(&server).await;
    c.read_frame(WAIT).await.unwrap();
    let started = Instant::now();
    let e = c.read_frame(WAIT).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match e {
        NetError::TooLarge { limit, announced } => {
            assert_eq!((limit, announced), (LIMIT, 1_073_741_824));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Nothing of the literal was buffered.
    assert!(c.framer.partial_len() < 100);
    // Framing stays stopped.
    assert!(matches!(
        c.read_frame(WAIT).await,
        Err(NetError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn timeout_keeps_partial_data() {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* OK hi\r\n* 4 EX").await.unwrap();
        if go_rx.await.is_ok() {
            tcp.write_all(b"ISTS\r\n").await.unwrap();
        }
        // Hold the connection open until the test ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let mut c = plain_client(&server).await;
    c.read_frame(WAIT).await.unwrap();
    let wait = Duration::from_millis(200);
    let started = Instant::now();
    match c.read_frame(wait).await {
        Err(NetError::Timeout(d, _)) => assert_eq!(d, wait),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took >= wait && took < Duration::from_secs(3), "{took:?}");
    assert!(c.has_buffered());
    go_tx.send(()).unwrap();
    let f = c.read_frame(WAIT).await.unwrap();
    assert_eq!(f.raw, b"* 4 EXISTS\r\n");
}

/// A server that greets, answers `A1 STARTTLS` with `reply` (which may carry injected bytes),
/// then does the TLS handshake and answers `A2 NOOP` inside TLS.
async fn starttls_server(reply: &'static [u8]) -> TestServer {
    TestServer::plain(move |tcp: TcpStream, acceptor| async move {
        let mut r = BufReader::new(tcp);
        r.get_mut()
            .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
            .await
            .unwrap();
        assert_eq!(read_line(&mut r).await, "A1 STARTTLS\r\n");
        r.get_mut().write_all(reply).await.unwrap();
        let Ok(tls) = acceptor.accept(r.into_inner()).await else {
            return;
        };
        let mut r = BufReader::new(tls);
        if read_line(&mut r).await == "A2 NOOP\r\n" {
            r.get_mut().write_all(b"A2 OK tls noop\r\n").await.unwrap();
            r.get_mut().flush().await.unwrap();
        }
    })
    .await
}

async fn start_tls_exchange(c: &mut ImapConnection) {
    c.read_frame(WAIT).await.unwrap();
    c.send(b"A1 STARTTLS\r\n").await.unwrap();
    assert!(is_tagged_ok(&c.read_frame(WAIT).await.unwrap(), "A1"));
}

#[tokio::test]
async fn starttls_with_trusted_cert() {
    let server = starttls_server(b"A1 OK begin TLS\r\n").await;
    let mut c = plain_client(&server).await.with_tls_timeout(WAIT);
    start_tls_exchange(&mut c).await;
    let tls = TlsClient::new(&tls_options(&server.cert)).unwrap();
    c.starttls(&tls, "127.0.0.1").await.unwrap();
    assert!(c.is_tls());
    assert!(c.tls_info().is_some());
    c.send(b"A2 NOOP\r\n").await.unwrap();
    assert!(is_tagged_ok(&c.read_frame(WAIT).await.unwrap(), "A2"));
}

#[tokio::test]
async fn starttls_rejects_untrusted_cert() {
    let server = starttls_server(b"A1 OK begin TLS\r\n").await;
    let mut c = plain_client(&server).await;
    start_tls_exchange(&mut c).await;
    let tls = TlsClient::new(&TlsOptions::default()).unwrap();
    let e = c.starttls(&tls, "127.0.0.1").await.unwrap_err();
    assert!(matches!(e, NetError::Tls(_)), "{e}");
    // The socket went with the failed handshake; later calls say so instead of panicking.
    assert!(matches!(
        c.send(b"A2 NOOP\r\n").await,
        Err(NetError::Closed(_))
    ));
}

#[tokio::test]
async fn starttls_insecure_accepts_any_cert() {
    let server = starttls_server(b"A1 OK begin TLS\r\n").await;
    let mut c = plain_client(&server).await;
    start_tls_exchange(&mut c).await;
    let opts = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    c.starttls(&TlsClient::new(&opts).unwrap(), "127.0.0.1")
        .await
        .unwrap();
    c.send(b"A2 NOOP\r\n").await.unwrap();
    assert!(is_tagged_ok(&c.read_frame(WAIT).await.unwrap(), "A2"));
}

#[tokio::test]
async fn starttls_refuses_bytes_after_the_ok() {
    let server = starttls_server(b"A1 OK begin TLS\r\n* 9 EXISTS\r\n").await;
    let mut c = plain_client(&server).await;
    start_tls_exchange(&mut c).await;
    let tls = TlsClient::new(&tls_options(&server.cert)).unwrap();
    match c.starttls(&tls, "127.0.0.1").await {
        Err(NetError::StartTlsInjection(n)) => assert_eq!(n, b"* 9 EXISTS\r\n".len()),
        other => panic!("expected StartTlsInjection, got {other:?}"),
    }
    assert!(!c.is_tls());
}

#[tokio::test]
async fn implicit_tls_greeting() {
    // A TLS server that greets; its certificate is trusted through extra_roots.
    let cert = test_cert();
    let acceptor = cert.acceptor.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        tls.write_all(b"* OK [CAPABILITY IMAP4rev1] tls ready\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let ep = Endpoint {
        protocol: Protocol::Imap,
        security: Security::Implicit,
        host: "127.0.0.1".into(),
        port,
    };
    let tls = TlsClient::new(&tls_options(&cert)).unwrap();
    let stream = connect(&ep, &tls, &Timeouts::default()).await.unwrap();
    let mut c = ImapConnection::new(stream, LIMIT);
    assert!(c.is_tls());
    let g = c.read_frame(WAIT).await.unwrap();
    assert!(matches!(g.parsed, Parsed::Greeting(_)));
    task.abort();
}

#[test]
fn decoders_report_reasons() {
    assert!(matches!(
        decode_greeting(b"* PREAUTH hi\r\n"),
        Parsed::Greeting(_)
    ));
    match decode_greeting(b"* OK hi\r\nextra") {
        Parsed::Unparsed(r) => assert!(r.contains("5 unexpected byte(s)"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode_response(b"+ go ahead\r\n"),
        Parsed::Response(Response::CommandContinuationRequest(_))
    ));
    assert!(matches!(
        decode_response(b"* XFOO bar\r\n"),
        Parsed::Unparsed(_)
    ));
}

#[tokio::test]
async fn zero_wait_takes_what_has_arrived() {
    let server = TestServer::plain(|mut tcp: TcpStream, _| async move {
        tcp.write_all(b"* OK hi\r\n* 1 EXISTS\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let mut c = plain_client(&server).await;
    c.read_frame(WAIT).await.unwrap();
    // Both lines came in one write; the second is framed from the buffer without waiting.
    let f = c.read_frame(Duration::ZERO).await.unwrap();
    assert_eq!(f.raw, b"* 1 EXISTS\r\n");
    assert!(matches!(
        c.read_frame(Duration::ZERO).await,
        Err(NetError::Timeout(..))
    ));
}

#[tokio::test]
async fn send_after_the_server_left_is_closed() {
    let server = TestServer::plain(|tcp: TcpStream, _| async move {
        // Reset instead of FIN: linger 0 makes the close abortive.
        let _ = tcp.set_zero_linger();
        drop(tcp);
    })
    .await;
    let mut c = plain_client(&server).await;
    let e = c.read_frame(WAIT).await.unwrap_err();
    assert!(matches!(e, NetError::Closed(_)), "{e}");
    // The first write may still be accepted by the kernel; a later one fails.
    let mut result = Ok(());
    for _ in 0..10 {
        result = c.send(b"A1 NOOP\r\n").await;
        if result.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(result, Err(NetError::Closed(_))), "{result:?}");
}
