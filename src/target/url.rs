//! Target URLs (`imap://`, `imaps://`, `imap+starttls://`, and the POP3/SMTP equivalents) and
//! `--account login:pass` values.
//!
//! # Format
//! `[NAME=]SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/]`, where USER and PASSWORD are
//! percent-decoded and HOST may be a bracketed IPv6 address (`[::1]`).

use super::{Account, Endpoint, Security, Target, TargetError};
use crate::script::Protocol;

/// Every scheme we accept, with what it means and its default port.
const SCHEMES: &[(&str, Protocol, Security, u16)] = &[
    ("imap", Protocol::Imap, Security::Plain, 143),
    ("imaps", Protocol::Imap, Security::Implicit, 993),
    ("imap+starttls", Protocol::Imap, Security::StartTls, 143),
    ("pop3", Protocol::Pop3, Security::Plain, 110),
    ("pop3s", Protocol::Pop3, Security::Implicit, 995),
    ("pop3+starttls", Protocol::Pop3, Security::StartTls, 110),
    ("smtp", Protocol::Smtp, Security::Plain, 25),
    ("smtps", Protocol::Smtp, Security::Implicit, 465),
    ("smtp+starttls", Protocol::Smtp, Security::StartTls, 25),
];

pub(super) fn scheme_name(protocol: Protocol, security: Security) -> &'static str {
    SCHEMES
        .iter()
        .find(|(_, p, s, _)| *p == protocol && *s == security)
        .map_or("?", |(name, ..)| name)
}

/// Parses `[NAME=]URL` into a target with one endpoint and, if the URL has a user, one account.
///
/// Without `NAME=` the name is `host_port` (`127.0.0.1_10143`), with characters other than
/// letters, digits, `.` and `-` in the host replaced by `_` (so `[::1]:143` gives `__1_143`).
pub fn parse_target(spec: &str) -> Result<Target, TargetError> {
    let spec = spec.trim();
    let (name, url) = split_name(spec);
    let (endpoint, account) = parse_endpoint(url)?;
    let name = match name {
        Some(n) => {
            super::validate_name(n).map_err(|reason| TargetError::Url {
                url: redact(url),
                reason,
            })?;
            n.to_string()
        }
        None => default_name(&endpoint),
    };
    let mut target = Target::new(name, endpoint);
    target.accounts.extend(account);
    Ok(target)
}

/// `NAME=` is a prefix only if the `=` comes before the scheme's `://`.
fn split_name(spec: &str) -> (Option<&str>, &str) {
    let (Some(eq), Some(sep)) = (spec.find('='), spec.find("://")) else {
        return (None, spec);
    };
    if eq < sep && eq > 0 {
        (Some(&spec[..eq]), &spec[eq + 1..])
    } else {
        (None, spec)
    }
}

fn default_name(ep: &Endpoint) -> String {
    let host: String = ep
        .host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}_{}", ep.port)
}

/// Parses one URL into an endpoint and the account its user part names, if any.
pub fn parse_endpoint(url: &str) -> Result<(Endpoint, Option<Account>), TargetError> {
    let err = |reason: String| TargetError::Url {
        url: redact(url),
        reason,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(err(
            "expected SCHEME://HOST, e.g. imaps://mail.example".into()
        ));
    };
    let scheme_lc = scheme.to_ascii_lowercase();
    let Some(&(_, protocol, security, default_port)) =
        SCHEMES.iter().find(|(name, ..)| *name == scheme_lc)
    else {
        let known: Vec<&str> = SCHEMES.iter().map(|(n, ..)| *n).collect();
        return Err(err(format!(
            "unknown scheme `{scheme}` (known: {})",
            known.join(", ")
        )));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(bad) = authority.find(['/', '?', '#']) {
        return Err(err(format!(
            "unexpected `{}` after the host: a target URL has no path, query or fragment",
            &authority[bad..]
        )));
    }
    // The last `@` separates credentials, so an unencoded `@` in a password still works.
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport).map_err(err)?;
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p).map_err(err)?,
    };
    let account = match userinfo {
        None => None,
        Some(info) => {
            let Some((user, pass)) = info.split_once(':') else {
                return Err(err(
                    "user given without a password (write user:password@host)".into(),
                ));
            };
            let login = percent_decode(user).map_err(|r| err(format!("user: {r}")))?;
            let password = percent_decode(pass).map_err(|r| err(format!("password: {r}")))?;
            if login.is_empty() {
                return Err(err("empty user name".into()));
            }
            Some(Account::from_login(&login, &password))
        }
    };
    let endpoint = Endpoint {
        protocol,
        security,
        host,
        port,
    };
    Ok((endpoint, account))
}

/// Splits `host[:port]` / `[v6][:port]`; the host is returned without brackets.
fn split_host_port(hostport: &str) -> Result<(String, Option<&str>), String> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let Some(close) = v6.find(']') else {
            return Err("missing `]` after the IPv6 address".into());
        };
        let addr = &v6[..close];
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` is not an IPv6 address"));
        }
        let after = &v6[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected `{after}` after the IPv6 address")),
        };
        return Ok((addr.to_string(), port));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if host.contains(':') {
        return Err("an IPv6 address must be written in brackets, e.g. [::1]".into());
    }
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(format!("invalid host `{host}`"));
    }
    Ok((host.to_string(), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port `{p}` (expected 1-65535)")),
        Ok(n) => Ok(n),
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return Err(format!("bad percent escape at byte {i}")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not decode to UTF-8".to_string())
}

/// Hides a password in a URL before it goes into an error message.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Parses an `--account` value: `login:password` (the name is the login's local part).
pub fn parse_account(spec: &str) -> Result<Account, TargetError> {
    match spec.split_once(':') {
        Some((login, password)) if !login.is_empty() => Ok(Account::from_login(login, password)),
        Some(_) => Err(TargetError::Account(
            "empty login (expected LOGIN:PASSWORD)".into(),
        )),
        None => Err(TargetError::Account(
            "no `:` (expected LOGIN:PASSWORD)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<Target, TargetError>) -> String {
        match r {
            Err(TargetError::Url { reason, .. }) => reason,
            other => panic!("expected a URL error, got {other:?}"),
        }
    }

    #[test]
    fn plain_imap_with_account() {
        let t = parse_target("imap://alice%40example.test:s%3Ecret@127.0.0.1:10143").unwrap();
        assert_eq!(t.name, "127.0.0.1_10143");
        let ep = &t.endpoints[0];
        assert_eq!(
            (ep.protocol, ep.security, ep.host.as_str(), ep.port),
            (Protocol::Imap, Security::Plain, "127.0.0.1", 10143)
        );
        assert_eq!(t.accounts.len(), 1);
        assert_eq!(t.accounts[0].name, "alice");
        assert_eq!(t.accounts[0].login, "alice@example.test");
        assert_eq!(t.accounts[0].password, "s>cret");
    }

    #[test]
    fn default_ports_and_security() {
        let cases = [
            ("imap://h", Protocol::Imap, Security::Plain, 143),
            ("imaps://h", Protocol::Imap, Security::Implicit, 993),
            (
                "IMAP+STARTTLS://h/",
                Protocol::Imap,
                Security::StartTls,
                143,
            ),
            ("pop3://h", Protocol::Pop3, Security::Plain, 110),
            ("pop3s://h", Protocol::Pop3, Security::Implicit, 995),
            ("pop3+starttls://h", Protocol::Pop3, Security::StartTls, 110),
            ("smtp://h", Protocol::Smtp, Security::Plain, 25),
            ("smtps://h", Protocol::Smtp, Security::Implicit, 465),
            ("smtp+starttls://h", Protocol::Smtp, Security::StartTls, 25),
        ];
        for (url, p, s, port) in cases {
            let (ep, acc) = parse_endpoint(url).unwrap();
            assert_eq!((ep.protocol, ep.security, ep.port), (p, s, port), "{url}");
            assert!(acc.is_none());
            // The scheme printed back is the canonical lowercase one.
            assert_eq!(ep.scheme(), url.split("://").next().unwrap().to_lowercase());
        }
    }

    #[test]
    fn named_target_and_ipv6() {
        let t = parse_target("dovecot=imaps://[::1]:10993").unwrap();
        assert_eq!(t.name, "dovecot");
        assert_eq!(t.endpoints[0].host, "::1");
        assert_eq!(t.endpoints[0].port, 10993);
        assert!(t.accounts.is_empty());
        let t = parse_target("imap+starttls://[::1]").unwrap();
        assert_eq!(t.name, "__1_143");
        assert_eq!(t.endpoints[0].authority(), "[::1]:143");
    }

    #[test]
    fn target_names_are_checked() {
        assert!(reason(parse_target("my target=imap://h")).contains("contains ` `"));
        assert!(reason(parse_target("../x=imap://h")).contains("contains `/`"));
    }

    #[test]
    fn equals_in_password_is_not_a_name() {
        let t = parse_target("imap://bob:a=b@mail.example").unwrap();
        assert_eq!(t.name, "mail.example_143");
        assert_eq!(t.accounts[0].password, "a=b");
        assert_eq!(t.accounts[0].name, "bob");
    }

    #[test]
    fn unencoded_at_in_password() {
        let (_, acc) = parse_endpoint("imap://bob:p@ss@h").unwrap();
        assert_eq!(acc.unwrap().password, "p@ss");
    }

    #[test]
    fn errors_explain_the_problem() {
        assert!(reason(parse_target("mail.example")).contains("SCHEME://"));
        assert!(reason(parse_target("http://h")).contains("unknown scheme `http`"));
        assert!(reason(parse_target("imap://")).contains("missing host"));
        assert!(reason(parse_target("imap://h:0")).contains("invalid port `0`"));
        assert!(reason(parse_target("imap://h:99999")).contains("invalid port"));
        assert!(reason(parse_target("imap://h:x")).contains("invalid port `x`"));
        assert!(reason(parse_target("imap://::1")).contains("brackets"));
        assert!(reason(parse_target("imap://[::1")).contains("missing `]`"));
        assert!(reason(parse_target("imap://[zz]:1")).contains("not an IPv6"));
        assert!(reason(parse_target("imap://[::1]x")).contains("unexpected `x`"));
        assert!(reason(parse_target("imap://h/INBOX")).contains("no path"));
        assert!(reason(parse_target("imap://bob@h")).contains("without a password"));
        assert!(reason(parse_target("imap://:pw@h")).contains("empty user"));
        assert!(reason(parse_target("imap://a%4:b@h")).contains("percent escape"));
        assert!(reason(parse_target("imap://a%ff:b@h")).contains("UTF-8"));
        assert!(reason(parse_target("imap://h st")).contains("invalid host"));
    }

    #[test]
    fn errors_do_not_leak_passwords() {
        let e = parse_target("imap://bob:hunter2@h:0")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("imap://bob:***@h:0"), "{e}");
    }

    #[test]
    fn accounts_from_flags() {
        let a = parse_account("carol@example.test:pw:with:colons").unwrap();
        assert_eq!(
            (a.name.as_str(), a.login.as_str(), a.password.as_str()),
            ("carol", "carol@example.test", "pw:with:colons")
        );
        let e = parse_account("nopassword").unwrap_err().to_string();
        assert_eq!(e, "invalid account: no `:` (expected LOGIN:PASSWORD)");
        assert!(
            parse_account(":pw")
                .unwrap_err()
                .to_string()
                .contains("empty login")
        );
        assert_eq!(parse_account("dave:").unwrap().password, "");
    }
}
