//! Client-side protocol framing. IMAP uses imap-codec's Fragmentizer.
pub mod imap;
pub mod line;
