//! A raw-bytes IMAP client for driving the reference server over loopback.
#![allow(dead_code)]

use std::time::Duration;

use reference_server::{Config, Running};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(5);

pub async fn server() -> Running {
    reference_server::start(Config::default())
        .await
        .expect("server starts")
}

pub struct Client<S> {
    pub stream: S,
    pub buf: Vec<u8>,
    /// Check each response with imap-codec (off only where imap-codec's own limits, such as
    /// its BODYSTRUCTURE nesting depth of 7, are below what the server may send).
    pub check: bool,
}

impl Client<TcpStream> {
    pub async fn connect(running: &Running) -> Self {
        let tcp = TcpStream::connect(running.imap.expect("imap port"))
            .await
            .expect("connect");
        let mut c = Client {
            stream: tcp,
            buf: Vec::new(),
            check: true,
        };
        let greeting = c.line().await;
        assert!(
            greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
            "{greeting}"
        );
        c
    }

    pub async fn login(running: &Running, user: &str) -> Self {
        let mut c = Self::connect(running).await;
        let r = c.cmd(&format!("l LOGIN {user} {user}pw")).await;
        assert!(r.last().expect("reply").starts_with("l OK"), "{r:?}");
        c
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one line (CRLF stripped); a line announcing a literal includes the literal's
    /// bytes and the rest of the logical line.
    pub async fn line(&mut self) -> String {
        let fut = async {
            loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                    return String::from_utf8_lossy(&line[..pos]).into_owned();
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read");
                if n == 0 {
                    let rest: Vec<u8> = self.buf.drain(..).collect();
                    return format!("<EOF>{}", String::from_utf8_lossy(&rest));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("line within timeout")
    }

    /// Reads whole response lines (literals folded in) until a line starting with `tag `.
    /// Every response must decode with imap-codec's ResponseCodec: the server's output is
    /// checked against the RFC 3501 grammar in every test.
    pub async fn until_tag(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = self.line().await;
            let mut raw = line.clone().into_bytes();
            raw.extend_from_slice(b"\r\n");
            // Fold literals: `{n}` at the end means n raw bytes follow, then the line goes on.
            while let Some(n) = literal_len(&line) {
                while self.buf.len() < n {
                    let mut chunk = [0u8; 4096];
                    let got = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                        .await
                        .expect("literal within timeout")
                        .expect("read");
                    assert!(got > 0, "EOF inside literal");
                    self.buf.extend_from_slice(&chunk[..got]);
                }
                let lit: Vec<u8> = self.buf.drain(..n).collect();
                raw.extend_from_slice(&lit);
                line.push_str("\r\n");
                line.push_str(&String::from_utf8_lossy(&lit));
                let rest = self.line().await;
                raw.extend_from_slice(rest.as_bytes());
                raw.extend_from_slice(b"\r\n");
                line.push_str(&rest);
            }
            if self.check && !line.starts_with("<EOF>") {
                check_grammar(&raw);
            }
            let done = line.starts_with(&format!("{tag} ")) || line.starts_with("<EOF>");
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Sends `tagged_line` + CRLF and reads up to its tagged reply.
    pub async fn cmd(&mut self, tagged_line: &str) -> Vec<String> {
        let tag = tagged_line.split(' ').next().expect("tag").to_string();
        self.send(format!("{tagged_line}\r\n").as_bytes()).await;
        self.until_tag(&tag).await
    }
}

/// Panics unless `raw` is exactly one response as imap-codec parses it.
pub fn check_grammar(raw: &[u8]) {
    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder;
    match ResponseCodec::default().decode(raw) {
        Ok(([], _)) => {}
        other => {
            let text = String::from_utf8_lossy(raw);
            let shown: String = text.chars().take(600).collect();
            panic!(
                "response does not parse ({:?}): {shown:?}{}",
                other.map(|(rest, _)| rest.len()),
                if text.len() > shown.len() {
                    " (cut)"
                } else {
                    ""
                }
            )
        }
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

pub fn tagged(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or("")
}

pub fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

pub fn check_greeting(line: &str) {
    use imap_codec::GreetingCodec;
    use imap_codec::decode::Decoder;
    let raw = format!("{line}\r\n");
    assert!(
        matches!(GreetingCodec::default().decode(raw.as_bytes()), Ok(([], _))),
        "greeting does not parse: {line}"
    );
}
