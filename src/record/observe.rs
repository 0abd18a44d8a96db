//! The interface between the byte-forwarding proxy and a protocol's transcript: the proxy
//! forwards bytes first and then hands a copy to the observer, which frames them into
//! script lines and tells the proxy when a STARTTLS/STLS upgrade is due.

use super::journal::Entry;
use crate::script::Protocol;

/// Frames one connection's traffic into transcript entries.
pub trait Observer: Send {
    /// Bytes the client sent (already forwarded upstream).
    fn client(&mut self, bytes: &[u8], out: &mut Vec<Entry>);
    /// Bytes the upstream sent (already forwarded to the client). During a pending
    /// STARTTLS the proxy hands them over one line at a time, so that it can stop right
    /// after the line that accepts the upgrade.
    fn server(&mut self, bytes: &[u8], out: &mut Vec<Entry>);
    /// The client asked for STARTTLS/STLS and the answer has not come yet: the proxy must
    /// not read from the client (its next bytes would be a TLS handshake).
    fn starttls_pending(&self) -> bool;
    /// The upstream accepted STARTTLS/STLS: both legs switch to TLS now. Reading it
    /// clears it.
    fn take_upgrade(&mut self) -> bool;
    /// The login name the client used, once seen.
    fn user(&self) -> Option<String>;
    /// The connection ended: notes for whatever was cut off.
    fn finish(&mut self, out: &mut Vec<Entry>);
}

/// The observer for a protocol.
pub fn for_protocol(
    protocol: Protocol,
    keep_secrets: bool,
    capture_uidvalidity: bool,
) -> Box<dyn Observer> {
    match protocol {
        Protocol::Imap => Box::new(super::imap::ImapObserver::new(
            keep_secrets,
            capture_uidvalidity,
        )),
        Protocol::Pop3 => Box::new(super::pop3::Pop3Observer::new(keep_secrets)),
        Protocol::Smtp => Box::new(super::smtp::SmtpObserver::new(keep_secrets)),
    }
}

/// Adds a client line, or a note when the text would be read as a variable. `sent` is the
/// line as sent: a line the recorder itself rewrote (credentials as variables) is written.
pub(super) fn client_line(out: &mut Vec<Entry>, text: String, sent: &str) {
    if text == sent && super::lines::looks_like_variable(&text) {
        out.push(Entry::Note(format!(
            "client line not written: it contains `{{name}}`, which a script reads as a variable: {}",
            super::lines::preview(text.as_bytes())
        )));
    } else {
        out.push(Entry::Client(text));
    }
}

/// Adds a server line of a text protocol, or a note when it does not load as a pattern.
pub(super) fn server_text_line(out: &mut Vec<Entry>, text: String) {
    match super::lines::server_line_loads(false, text.as_bytes()) {
        Ok(()) => out.push(Entry::Server(text)),
        Err(why) => out.push(Entry::Note(format!(
            "server line not written ({why}): {}",
            super::lines::preview(text.as_bytes())
        ))),
    }
}
