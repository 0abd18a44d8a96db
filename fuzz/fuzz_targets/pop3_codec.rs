//! The POP3 codec (`mailtape-proto`) on arbitrary bytes, both directions.
//!
//! Server side: the bytes, cut into chunks, go through `LineFramer` and each framed line
//! through `parse_command`; a parsed command must encode (`to_line`) into a line that parses
//! back. Client side: the same bytes go through `ReplyFramer` with a queue of expected reply
//! shapes, framing until it needs more input or reports an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtape_proto::pop3::{
    Expect, Framed, FramedLine, LineFramer, ReplyFramer, parse_command, parse_status_line,
};

/// Limits small enough for the fuzzer to reach them, chosen by the input.
fn limit(selector: u8) -> usize {
    usize::from(selector % 64) + 1
}

fn shape(b: u8) -> Expect {
    match b % 3 {
        0 => Expect::SingleLine,
        1 => Expect::MultiLine,
        _ => Expect::Sasl,
    }
}

fuzz_target!(|input: (u8, u8, Vec<u8>, Vec<u16>, Vec<u8>)| {
    let (line_cap, reply_cap, shapes, cuts, bytes) = input;
    // Chunk boundaries from the input, so framing is tried across every kind of split.
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        let end = (start + usize::from(cut)).min(bytes.len());
        chunks.push(&bytes[start..end]);
        start = end;
    }
    chunks.push(&bytes[start..]);

    // Small caps exercise the over-long paths, the protocol's caps the normal ones.
    let max_line = if line_cap < 128 { limit(line_cap) } else { 512 };
    let mut lines = LineFramer::new(max_line);
    for chunk in &chunks {
        lines.feed(chunk);
        while let Some(line) = lines.next_line() {
            if let FramedLine::Line { bytes, .. } = line {
                assert!(bytes.len() < max_line);
                if let Ok(cmd) = parse_command(&bytes) {
                    let _ = cmd.keyword();
                    let _ = cmd.expect();
                    let encoded = cmd.to_line();
                    assert!(
                        parse_command(&encoded).is_ok(),
                        "{cmd:?} encodes as {encoded:?}, which does not parse"
                    );
                }
            }
        }
    }

    let max_reply = if reply_cap < 128 {
        limit(reply_cap)
    } else {
        1 << 16
    };
    let mut replies = ReplyFramer::new(max_reply);
    for &b in &shapes {
        replies.expect(shape(b));
    }
    for chunk in &chunks {
        replies.feed(chunk);
        loop {
            match replies.next_reply() {
                Ok(Framed::Reply(reply)) => {
                    assert!(reply.raw.len() <= max_reply);
                    let _ = reply.status_line();
                    let _ = reply.body_octets();
                    let _ = reply.bare_lf();
                }
                Ok(Framed::Incomplete) | Err(_) => break,
            }
        }
    }
    for line in bytes.split(|&b| b == b'\n') {
        let _ = parse_status_line(line);
    }
});
