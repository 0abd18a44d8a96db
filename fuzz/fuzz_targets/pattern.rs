//! Server-line patterns (`script::Pattern`): parse one from arbitrary bytes, as an IMAP pattern
//! or as a word pattern (POP3/SMTP), and match it against an arbitrary server message.
//!
//! Input: one mode byte (low bit set: word pattern), then the pattern text, a NUL, and the
//! server message. Plain bytes rather than `arbitrary` so that lines from the scenarios make
//! good seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtape::script::{Bindings, Pattern, Value};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (pattern, actual) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, rest),
    };
    let parsed = if mode & 1 == 1 {
        Pattern::parse_words(pattern)
    } else {
        Pattern::parse(pattern)
    };
    let Ok(pattern) = parsed else {
        return;
    };
    let _ = pattern.kind();
    // Once with nothing bound, once with each capture already bound (the comparison path).
    let _ = pattern.matches(actual, &Bindings::new());
    let mut bound = Bindings::new();
    for (i, name) in pattern.capture_names().into_iter().enumerate() {
        let value = match (mode >> 1).wrapping_add(i as u8) % 4 {
            0 => Value::Number(u64::from(mode)),
            1 => Value::Atom(String::from_utf8_lossy(actual).into_owned()),
            2 => Value::String(actual.to_vec()),
            _ => Value::Nil,
        };
        bound.insert(name, value);
    }
    let _ = pattern.matches(actual, &bound);
});
