//! The POP3/SMTP transcript normalizer (`report::normalize_text::TextSession`): a session of
//! arbitrary messages in both directions, for each protocol. The session carries state between
//! messages (SASL, SMTP DATA, the last command), so the input is a sequence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtape::report::Direction;
use mailtape::report::normalize_text::TextSession;
use mailtape::script::Protocol;

fuzz_target!(|input: (u8, Vec<(bool, Vec<u8>)>)| {
    let (protocol, messages) = input;
    let protocol = match protocol % 3 {
        0 => Protocol::Pop3,
        1 => Protocol::Smtp,
        _ => Protocol::Imap,
    };
    let mut session = TextSession::new(protocol);
    for (from_client, bytes) in messages {
        let direction = if from_client {
            Direction::Client
        } else {
            Direction::Server
        };
        let _ = session.message(direction, &bytes);
    }
});
