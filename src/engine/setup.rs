//! The harness's own exchanges around a script: connecting and logging a session in,
//! discovering how the server names mailboxes, creating the fresh mailboxes with their seed
//! messages, and deleting them afterwards. All of it is recorded as setup and checked.

use std::time::Duration;

use imap_types::response::{Data, Response};

use crate::net::NetError;
use crate::proto::imap::{ImapConnection, Parsed, ServerFrame};
use crate::proto::line::{LineConnection, ReplyKind};
use crate::script::{InitialState, Protocol, SeedMessage};
use crate::target::{Account, Endpoint, Security};

use super::line_session::{LineSession, LineSink};
use super::session::{Completion, Session, Sink};
use super::{MAX_SERVER_MESSAGE, TargetRun};

/// How the server names mailboxes: discovered once per target (RFC 3501 6.3.8, RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Personal namespace prefix, e.g. `INBOX.` or empty.
    pub prefix: String,
    /// Hierarchy separator, e.g. `/` or `.`; empty for a flat server.
    pub separator: String,
}

/// A setup step failed: the scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("{0}")]
    Refused(String),
}

/// IMAP quoted string (RFC 3501 9, `quoted`): escapes `"` and `\`.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn status_text(frames: &[ServerFrame]) -> String {
    frames
        .last()
        .map(|f| super::expect::lossy(&f.raw))
        .unwrap_or_default()
}

/// Connect a session and bring it to `state`. For a not-authenticated session the greeting
/// stays pending so the script can match it.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    run: &TargetRun,
    endpoint: &Endpoint,
    name: &str,
    account: &Account,
    state: InitialState,
    select: Option<&str>,
    sink: &mut Sink<'_>,
) -> Result<Session, SetupError> {
    let t = run.target.timeouts;
    let stream = crate::net::connect(endpoint, &run.tls, &t).await?;
    let conn = ImapConnection::new(stream, MAX_SERVER_MESSAGE).with_tls_timeout(t.tls);
    let mut s = Session::new(name, conn, &endpoint.host, run.tls.clone());
    sink.checks.session_opened(name, &account.name);
    let script_sees_greeting = state == InitialState::NotAuthenticated;
    let deadline = tokio::time::Instant::now() + t.read;
    s.read_one(sink, !script_sees_greeting, deadline, None)
        .await?;
    let greeting: Vec<ServerFrame> = s.pending.drain(..).collect();
    if greeting.iter().any(super::session::is_bye) {
        return Err(SetupError::Refused(format!(
            "the server refused the connection: {}",
            status_text(&greeting)
        )));
    }
    if endpoint.security == Security::StartTls {
        let tag = s.next_tag();
        s.starttls_tag = Some(tag.clone());
        let (status, frames) = s.command(sink, &tag, "STARTTLS", t.read).await?;
        if status != Completion::Ok {
            return Err(SetupError::Refused(format!(
                "STARTTLS refused: {}",
                status_text(&frames)
            )));
        }
    }
    if script_sees_greeting {
        s.pending.extend(greeting);
        return Ok(s);
    }
    login(&mut s, account, sink, t.read).await?;
    if state == InitialState::Selected {
        let mailbox = select.unwrap_or("INBOX");
        let tag = s.next_tag();
        let (status, frames) = s
            .command(sink, &tag, &format!("SELECT {}", quoted(mailbox)), t.read)
            .await?;
        if status != Completion::Ok {
            return Err(SetupError::Refused(format!(
                "SELECT failed: {}",
                status_text(&frames)
            )));
        }
    }
    Ok(s)
}

async fn login(
    s: &mut Session,
    account: &Account,
    sink: &mut Sink<'_>,
    wait: Duration,
) -> Result<(), SetupError> {
    let tag = s.next_tag();
    let text = format!(
        "LOGIN {} {}",
        quoted(&account.login),
        quoted(&account.password)
    );
    let (status, frames) = s.command(sink, &tag, &text, wait).await?;
    if status != Completion::Ok {
        return Err(SetupError::Refused(format!(
            "LOGIN as {} failed: {}",
            account.login,
            status_text(&frames)
        )));
    }
    Ok(())
}

/// Ask for capabilities (RFC 3501 6.1.1) and return them upper-case.
pub async fn capabilities(
    s: &mut Session,
    sink: &mut Sink<'_>,
    wait: Duration,
) -> Result<Vec<String>, SetupError> {
    let tag = s.next_tag();
    let (_, frames) = s.command(sink, &tag, "CAPABILITY", wait).await?;
    let mut caps = Vec::new();
    for f in &frames {
        if let Parsed::Response(Response::Data(Data::Capability(c))) = &f.parsed {
            caps.extend(
                c.as_ref()
                    .iter()
                    .map(|c| c.to_string().to_ascii_uppercase()),
            );
        }
    }
    Ok(caps)
}

/// `LIST "" ""` gives the separator (RFC 3501 6.3.8); NAMESPACE the personal prefix.
pub async fn discover(
    s: &mut Session,
    sink: &mut Sink<'_>,
    caps: &[String],
    wait: Duration,
) -> Result<Naming, SetupError> {
    let mut naming = Naming {
        prefix: String::new(),
        separator: String::new(),
    };
    let tag = s.next_tag();
    let (_, frames) = s.command(sink, &tag, "LIST \"\" \"\"", wait).await?;
    for f in &frames {
        if let Parsed::Response(Response::Data(Data::List { delimiter, .. })) = &f.parsed {
            naming.separator = delimiter.map(|d| d.inner().to_string()).unwrap_or_default();
        }
    }
    if caps.iter().any(|c| c == "NAMESPACE") {
        let tag = s.next_tag();
        let (_, frames) = s.command(sink, &tag, "NAMESPACE", wait).await?;
        for f in &frames {
            if let Parsed::Response(Response::Data(Data::Namespace { personal, .. })) = &f.parsed
                && let Some(first) = personal.first()
            {
                naming.prefix = String::from_utf8_lossy(first.prefix.as_ref()).into_owned();
                if let Some(d) = first.delimiter {
                    naming.separator = d.inner().to_string();
                }
            }
        }
    }
    Ok(naming)
}

/// CREATE a fresh mailbox (RFC 3501 6.3.3).
pub async fn create(
    s: &mut Session,
    sink: &mut Sink<'_>,
    name: &str,
    wait: Duration,
) -> Result<(), SetupError> {
    let tag = s.next_tag();
    let (status, frames) = s
        .command(sink, &tag, &format!("CREATE {}", quoted(name)), wait)
        .await?;
    if status != Completion::Ok {
        return Err(SetupError::Refused(format!(
            "CREATE {name} failed: {}",
            status_text(&frames)
        )));
    }
    Ok(())
}

/// APPEND a seed message with a synchronizing literal (RFC 3501 6.3.11), or LITERAL+ when offered.
pub async fn append(
    s: &mut Session,
    sink: &mut Sink<'_>,
    mailbox: &str,
    seed: &SeedMessage,
    wait: Duration,
) -> Result<(), SetupError> {
    let tag = s.next_tag();
    let plus = s.has_literal_plus();
    let flags = seed.flags.join(" ");
    let head = format!(
        "{tag} APPEND {} ({flags}) {{{}{}}}\r\n",
        quoted(mailbox),
        seed.message.len(),
        if plus { "+" } else { "" }
    );
    let mut whole = head.clone().into_bytes();
    whole.extend_from_slice(&seed.message);
    whole.extend_from_slice(b"\r\n");
    s.outstanding.insert(tag.clone());
    s.sent(sink, true, &whole, None);
    s.send_raw(head.as_bytes()).await?;
    if !plus && !s.wait_continuation(sink, Some(&tag), wait, None).await? {
        let frames: Vec<ServerFrame> = s.pending.drain(..).collect();
        return Err(SetupError::Refused(format!(
            "APPEND refused: {}",
            status_text(&frames)
        )));
    }
    let mut rest = seed.message.clone();
    rest.extend_from_slice(b"\r\n");
    s.send_raw(&rest).await?;
    let status = s.wait_tag(sink, true, &tag, wait, None).await?;
    let frames: Vec<ServerFrame> = s.pending.drain(..).collect();
    if status != Completion::Ok {
        return Err(SetupError::Refused(format!(
            "APPEND of a seed message failed: {}",
            status_text(&frames)
        )));
    }
    Ok(())
}

/// Delete a fresh mailbox and anything the script created under it, deepest first.
pub async fn delete_tree(
    s: &mut Session,
    sink: &mut Sink<'_>,
    name: &str,
    separator: &str,
    wait: Duration,
) -> Result<(), SetupError> {
    // The mailbox itself, then its children; `name*` alone would also match other
    // scenarios' mailboxes that merely start with the same characters.
    let mut patterns = vec![name.to_string()];
    if !separator.is_empty() {
        patterns.push(format!("{name}{separator}*"));
    }
    let mut names: Vec<String> = Vec::new();
    for pattern in patterns {
        let tag = s.next_tag();
        let (_, frames) = s
            .command(sink, &tag, &format!("LIST \"\" {}", quoted(&pattern)), wait)
            .await?;
        names.extend(frames.iter().filter_map(|f| match &f.parsed {
            Parsed::Response(Response::Data(Data::List { mailbox, .. })) => {
                Some(mailbox_name(mailbox))
            }
            _ => None,
        }));
    }
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names.dedup();
    for n in names {
        let tag = s.next_tag();
        // A NO here (already gone, or has children on a server that refuses) is not the
        // scenario's business; the names are unique to this run.
        s.command(sink, &tag, &format!("DELETE {}", quoted(&n)), wait)
            .await?;
    }
    Ok(())
}

fn mailbox_name(m: &imap_types::mailbox::Mailbox<'_>) -> String {
    match m {
        imap_types::mailbox::Mailbox::Inbox => "INBOX".to_string(),
        imap_types::mailbox::Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

/// LOGOUT (RFC 3501 6.1.3) and close.
pub async fn logout(
    s: &mut Session,
    sink: &mut Sink<'_>,
    wait: Duration,
) -> Result<(), SetupError> {
    let tag = s.next_tag();
    s.logout_tag = Some(tag.clone());
    match s.command(sink, &tag, "LOGOUT", wait).await {
        Ok(_) | Err(NetError::Closed(_)) => {}
        Err(e) => return Err(e.into()),
    }
    s.close(sink, None);
    Ok(())
}

/// Connect a POP3 or SMTP session and bring it to `state`.
///
/// - POP3: `USER`/`PASS` (RFC 1939 7) for an authenticated session; STLS first on a
///   `pop3+starttls://` endpoint (RFC 2595 4).
/// - SMTP: `EHLO` (RFC 5321 4.1.1.1) for a ready session, STARTTLS and `EHLO` again on an
///   `smtp+starttls://` endpoint (RFC 3207 4.2), then `AUTH PLAIN` (RFC 4954) when the
///   scenario names the session's user.
///
/// A not-authenticated session is only connected: its greeting waits for the script.
#[allow(clippy::too_many_arguments)]
pub async fn open_line(
    run: &TargetRun,
    endpoint: &Endpoint,
    name: &str,
    account: &Account,
    state: InitialState,
    authenticate: bool,
    sink: &mut LineSink<'_>,
) -> Result<LineSession, SetupError> {
    let t = run.target.timeouts;
    if endpoint.protocol == Protocol::Pop3 {
        sink.pop3.session_opened(name, &account.login);
    }
    let stream = crate::net::connect(endpoint, &run.tls, &t).await?;
    let conn = match endpoint.protocol {
        Protocol::Pop3 => LineConnection::pop3(stream, MAX_SERVER_MESSAGE, t.tls),
        _ => LineConnection::smtp(stream, t.tls),
    };
    let mut s = LineSession::new(
        name,
        endpoint.protocol,
        conn,
        &endpoint.host,
        run.tls.clone(),
    );
    let script_sees_greeting = state == InitialState::NotAuthenticated;
    s.settle(sink, !script_sees_greeting, t.read).await?;
    if script_sees_greeting {
        return Ok(s);
    }
    let greeting = s.pending.pop_back();
    if greeting
        .as_ref()
        .is_some_and(|g| g.kind != ReplyKind::Positive)
    {
        return Err(SetupError::Refused(format!(
            "the server refused the connection: {}",
            greeting
                .map(|g| super::expect::lossy(&g.raw))
                .unwrap_or_default()
        )));
    }
    let refused = |what: &str, r: &crate::proto::line::LineReply| {
        SetupError::Refused(format!("{what} failed: {}", super::expect::lossy(&r.raw)))
    };
    match endpoint.protocol {
        Protocol::Pop3 => {
            if endpoint.security == Security::StartTls {
                let r = s.command(sink, "STLS", t.read).await?;
                if r.kind != ReplyKind::Positive {
                    return Err(refused("STLS", &r));
                }
            }
            let r = s
                .command(sink, &format!("USER {}", account.login), t.read)
                .await?;
            if r.kind != ReplyKind::Positive {
                return Err(refused("USER", &r));
            }
            let r = s
                .command(sink, &format!("PASS {}", account.password), t.read)
                .await?;
            if r.kind != ReplyKind::Positive {
                return Err(refused(&format!("PASS for {}", account.login), &r));
            }
        }
        _ => {
            let r = s.command(sink, EHLO, t.read).await?;
            if r.kind != ReplyKind::Positive {
                return Err(refused("EHLO", &r));
            }
            if endpoint.security == Security::StartTls {
                let r = s.command(sink, "STARTTLS", t.read).await?;
                if r.kind != ReplyKind::Positive {
                    return Err(refused("STARTTLS", &r));
                }
                let r = s.command(sink, EHLO, t.read).await?;
                if r.kind != ReplyKind::Positive {
                    return Err(refused("EHLO after STARTTLS", &r));
                }
            }
            if authenticate {
                use base64::Engine as _;
                let plain = format!("\0{}\0{}", account.login, account.password);
                let b64 = base64::engine::general_purpose::STANDARD.encode(plain);
                let r = s
                    .command(sink, &format!("AUTH PLAIN {b64}"), t.read)
                    .await?;
                if r.kind != ReplyKind::Positive {
                    return Err(refused(&format!("AUTH PLAIN as {}", account.login), &r));
                }
            }
        }
    }
    s.pending.clear();
    Ok(s)
}

/// The name the harness gives itself in EHLO: a domain no real host has (RFC 6761 `.test`).
const EHLO: &str = "EHLO mailtape.example.test";
