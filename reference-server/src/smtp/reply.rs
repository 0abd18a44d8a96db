//! SMTP replies: a code, an enhanced status code (RFC 2034, RFC 3463) and text, encoded
//! with smtp-proto. The enhanced code is only sent once the client has said EHLO, and never
//! on 3xx replies (RFC 2034 section 4).

use std::borrow::Cow;

/// One single-line reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub code: u16,
    /// `class.subject.detail`; `None` for 3xx replies and replies that never carry one.
    pub esc: Option<[u8; 3]>,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub fn new(code: u16, esc: [u8; 3], text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            esc: Some(esc),
            text: text.into(),
        }
    }

    /// A reply without an enhanced status code (3xx, greeting, HELO).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            esc: None,
            text: text.into(),
        }
    }

    /// Appends the reply to `out`; `enhanced` says whether EHLO negotiated status codes.
    pub fn encode(&self, enhanced: bool, out: &mut Vec<u8>) {
        // Text is ours, but keep a stray CR or LF from ever splitting a reply.
        let text: Cow<'_, str> = if self.text.contains(['\r', '\n']) {
            Cow::Owned(self.text.replace(['\r', '\n'], " "))
        } else {
            Cow::Borrowed(&self.text)
        };
        match self.esc {
            Some([a, b, c]) if enhanced && (2..=5).contains(&(self.code / 100)) => {
                let response = smtp_proto::Response::new(self.code, a, b, c, text);
                // Writing into a Vec cannot fail.
                let _ = response.write(&mut *out);
            }
            _ => {
                out.extend_from_slice(format!("{} {text}\r\n", self.code).as_bytes());
            }
        }
    }

    /// Whether the reply counts toward the session's error limit: unrecognised commands,
    /// syntax and sequence errors, and failed or malformed authentication. A recognised but
    /// unimplemented command (502, 504) or a refused recipient is not the client's fault.
    pub fn is_protocol_error(&self) -> bool {
        matches!(self.code, 500 | 501 | 503 | 530 | 535 | 555)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: &Reply, enhanced: bool) -> String {
        let mut out = Vec::new();
        reply.encode(enhanced, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn enhanced_code_only_after_ehlo_and_never_on_3xx() {
        let ok = Reply::new(250, [2, 1, 0], "Sender OK");
        assert_eq!(encoded(&ok, true), "250 2.1.0 Sender OK\r\n");
        assert_eq!(encoded(&ok, false), "250 Sender OK\r\n");
        let go = Reply::plain(354, "Go ahead");
        assert_eq!(encoded(&go, true), "354 Go ahead\r\n");
    }

    #[test]
    fn line_breaks_in_text_cannot_split_the_reply() {
        let r = Reply::new(501, [5, 5, 2], "a\r\nb");
        assert_eq!(encoded(&r, true), "501 5.5.2 a  b\r\n");
    }

    #[test]
    fn protocol_errors_are_the_ones_counted() {
        assert!(Reply::new(503, [5, 5, 1], "x").is_protocol_error());
        assert!(Reply::new(535, [5, 7, 8], "x").is_protocol_error());
        assert!(!Reply::new(550, [5, 1, 1], "x").is_protocol_error());
        assert!(!Reply::new(502, [5, 5, 1], "x").is_protocol_error());
        assert!(!Reply::new(250, [2, 0, 0], "x").is_protocol_error());
    }
}
