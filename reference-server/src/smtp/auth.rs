//! SASL pieces of SMTP AUTH (RFC 4954): base64 lines, the PLAIN message (RFC 4616) and the
//! LOGIN prompts (draft-murchison-sasl-login). The exchange itself runs in the session.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The LOGIN mechanism's challenges, base64 of "Username:" and "Password:".
pub(crate) const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
pub(crate) const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// What a client's SASL response line says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Response {
    Data(Vec<u8>),
    /// `*`: the client cancels the exchange (RFC 4954 section 4).
    Cancel,
    /// Not base64.
    Invalid,
}

/// Decodes a response line (CRLF already removed). `=` is an empty initial response
/// (RFC 4954 section 4); an empty line after a challenge is empty data.
pub(crate) fn decode(line: &str) -> Response {
    let line = line.trim_end_matches([' ', '\t']);
    match line {
        "*" => Response::Cancel,
        "=" | "" => Response::Data(Vec::new()),
        _ => match STANDARD.decode(line) {
            Ok(bytes) => Response::Data(bytes),
            Err(_) => Response::Invalid,
        },
    }
}

/// Credentials carried by a PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plain {
    pub authcid: String,
    pub password: String,
}

/// Splits `[authzid] NUL authcid NUL passwd`. An authorization identity other than the
/// authentication identity (acting for someone else) is not supported, so it fails.
pub(crate) fn parse_plain(bytes: &[u8]) -> Option<Plain> {
    let mut parts = bytes.split(|&b| b == 0);
    let authzid = parts.next()?;
    let authcid = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() || authcid.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid.as_bytes() {
        return None;
    }
    Some(Plain {
        authcid: authcid.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_cancel_empty_and_base64() {
        assert_eq!(decode("*"), Response::Cancel);
        assert_eq!(decode("="), Response::Data(Vec::new()));
        assert_eq!(decode("YWxpY2U="), Response::Data(b"alice".to_vec()));
        assert_eq!(decode("not base64!"), Response::Invalid);
    }

    #[test]
    fn login_prompts_are_what_they_say() {
        assert_eq!(STANDARD.decode(LOGIN_USERNAME).unwrap(), b"Username:");
        assert_eq!(STANDARD.decode(LOGIN_PASSWORD).unwrap(), b"Password:");
    }

    #[test]
    fn plain_message_forms() {
        let p = parse_plain(b"\0alice\0alicepw").unwrap();
        assert_eq!(
            (p.authcid.as_str(), p.password.as_str()),
            ("alice", "alicepw")
        );
        assert!(parse_plain(b"alice\0alice\0pw").is_some());
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(b"\0alice"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
    }
}
