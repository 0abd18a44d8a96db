//! SMTP limits: the fixed sizes RFC 5321 section 4.5.3 prescribes, and the tunable ones in
//! [`SmtpLimits`], each default with the reason for its value.

use std::time::Duration;

/// Longest command line, CRLF included (RFC 5321 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// Longest text line inside DATA, CRLF included (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// Longest SASL response line after a `334` challenge. RFC 4954 section 4 lets these exceed
/// the command-line limit and asks servers to take at least 12288 octets.
pub const MAX_AUTH_LINE: usize = 12288;

/// Default message size limit, announced in `EHLO` as `SIZE`. The same 32 MiB as IMAP's
/// largest APPEND literal, so whatever SMTP accepts an IMAP client can also upload.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// Recipients per transaction. RFC 5321 4.5.3.1.8 requires servers to accept at least 100.
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;

/// Protocol errors (unknown commands, syntax and sequence errors, failed AUTH) before the
/// server gives up with `421`. Ten is generous for a confused client and stops a loop.
pub const DEFAULT_MAX_ERRORS: usize = 10;

/// Time without client input before `421` and close. RFC 5321 4.5.3.2.7 asks a server to
/// wait at least 5 minutes for the next command.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Tunable limits of the SMTP and submission listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpLimits {
    /// Largest message accepted, in octets (after dot-unstuffing, before trace headers).
    pub max_message_size: usize,
    /// Recipients per transaction; the next `RCPT` gets `452 4.5.3`.
    pub max_recipients: usize,
    /// Protocol errors per session before `421` and close.
    pub max_errors: usize,
    /// Inactivity limit, also applied to each read inside DATA and to writes.
    pub idle_timeout: Duration,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}
