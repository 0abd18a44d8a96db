//! The scenario loader (`script::parse_str`) and the recording loader
//! (`script::parse_recording`) on arbitrary text: either a scenario or a located error, never a
//! panic or an unbounded loop.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.ron");
    let _ = mailtape::script::parse_str(path, text);
    let _ = mailtape::script::parse_recording(path, text);
});
