//! POP3 commands: parse a client's command line into a typed [`Command`] (server side) and
//! encode one (client side).
//!
//! Grammar (RFC 2449 3): `command = keyword *(SP param) CRLF`, `keyword = 3*4VCHAR`,
//! `param = 1*VCHAR`; keywords are case-insensitive (RFC 1939 3) and arguments are separated
//! by a single space. PASS is the exception: its one argument may itself contain spaces
//! (RFC 1939 7), so it takes the rest of the line.

use std::fmt;

use super::framer::Expect;

/// Longest command line a client may send, CRLF included (RFC 2449 4: raised from 47 to 255
/// octets; servers supporting CAPA must accept that much).
pub const MAX_COMMAND_LINE: usize = 255;

/// A credential: printed as `<redacted>` by `Debug` so that logs, transcripts and panics do
/// not leak it. [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 7).
    User { name: String },
    /// `PASS string` (RFC 1939 7); the string may contain spaces.
    Pass { password: Secret },
    /// `APOP name digest` (RFC 1939 7); `digest` is 32 lowercase hex digits (MD5).
    Apop { name: String, digest: String },
    /// `STAT` (RFC 1939 5).
    Stat,
    /// `LIST [msg]` (RFC 1939 5).
    List { msg: Option<u32> },
    /// `RETR msg` (RFC 1939 5).
    Retr { msg: u32 },
    /// `DELE msg` (RFC 1939 5).
    Dele { msg: u32 },
    /// `NOOP` (RFC 1939 5).
    Noop,
    /// `RSET` (RFC 1939 5).
    Rset,
    /// `QUIT` (RFC 1939 4 and 6).
    Quit,
    /// `TOP msg n` (RFC 1939 7): headers plus the first `lines` body lines.
    Top { msg: u32, lines: u32 },
    /// `UIDL [msg]` (RFC 1939 7).
    Uidl { msg: Option<u32> },
    /// `CAPA` (RFC 2449 5).
    Capa,
    /// `STLS` (RFC 2595 4).
    Stls,
    /// `AUTH [mechanism [initial-response]]` (RFC 5034 4; RFC 1734). Without a mechanism it
    /// asks for the mechanism list, a widely deployed pre-CAPA convention answered multi-line.
    /// The initial response is base64 text as sent, `=` standing for an empty one.
    Auth {
        mechanism: Option<String>,
        initial_response: Option<Secret>,
    },
    /// A well-formed command with a keyword this codec does not know; the keyword is
    /// upper-cased.
    Unknown { keyword: String, args: Vec<String> },
}

/// Why a command line is not a valid command. Each error names the RFC rule it breaks in its
/// message, which a server can send back after `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("empty command line")]
    Empty,
    #[error("command line contains a control character (RFC 2449 3: VCHAR and SP only)")]
    ControlCharacter,
    #[error("keyword must be 3 or 4 printable characters (RFC 2449 3)")]
    BadKeyword,
    #[error("{keyword}: arguments are separated by exactly one space (RFC 1939 3)")]
    EmptyArgument { keyword: &'static str },
    #[error("{keyword}: missing argument")]
    MissingArgument { keyword: &'static str },
    #[error("{keyword}: too many arguments")]
    TooManyArguments { keyword: &'static str },
    #[error("{keyword}: {arg:?} is not a number")]
    BadNumber { keyword: &'static str, arg: String },
    #[error("{keyword}: {reason}")]
    BadArgument {
        keyword: &'static str,
        reason: &'static str,
    },
}

/// `VCHAR` (RFC 5234 B.1): printable US-ASCII, no space.
fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// Parses one command line (server side). A trailing CRLF or LF is ignored; length limits are
/// the framer's job ([`super::LineFramer`]).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = line
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(line);
    if line.is_empty() {
        return Err(CommandError::Empty);
    }
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if keyword.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(CommandError::ControlCharacter);
    }
    if !(3..=4).contains(&keyword.len()) || !keyword.iter().all(|&b| is_vchar(b)) {
        return Err(CommandError::BadKeyword);
    }
    let upper = keyword.to_ascii_uppercase();
    // PASS keeps its argument whole (spaces included) before the generic splitting.
    if upper == b"PASS" {
        return parse_pass(rest);
    }
    let Some(keyword) = known_keyword(&upper) else {
        let args = split_args(rest, "command")?;
        return Ok(Command::Unknown {
            // VCHAR only, checked above, so this is ASCII.
            keyword: ascii(&upper),
            args: args.iter().map(|a| ascii(a)).collect(),
        });
    };
    let mut args = Args {
        keyword,
        args: split_args(rest, keyword)?,
        next: 0,
    };
    let cmd = match keyword {
        "USER" => Command::User {
            name: ascii(args.required()?),
        },
        "APOP" => {
            let name = ascii(args.required()?);
            let digest = ascii(args.required()?);
            if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CommandError::BadArgument {
                    keyword,
                    reason: "digest must be 32 hexadecimal digits (RFC 1939 7)",
                });
            }
            Command::Apop { name, digest }
        }
        "STAT" => Command::Stat,
        "LIST" => Command::List {
            msg: args.optional_number()?,
        },
        "RETR" => Command::Retr {
            msg: args.number()?,
        },
        "DELE" => Command::Dele {
            msg: args.number()?,
        },
        "NOOP" => Command::Noop,
        "RSET" => Command::Rset,
        "QUIT" => Command::Quit,
        "TOP" => Command::Top {
            msg: args.number()?,
            lines: args.number()?,
        },
        "UIDL" => Command::Uidl {
            msg: args.optional_number()?,
        },
        "CAPA" => Command::Capa,
        "STLS" => Command::Stls,
        "AUTH" => {
            let mechanism = args.optional().map(ascii);
            let initial_response = args.optional().map(|a| Secret::new(ascii(a)));
            Command::Auth {
                mechanism,
                initial_response,
            }
        }
        // KEYWORDS and this match list the same names (a test checks each one), so this arm
        // only keeps the match total.
        other => Command::Unknown {
            keyword: other.to_string(),
            args: args.args.iter().map(|a| ascii(a)).collect(),
        },
    };
    args.finish()?;
    Ok(cmd)
}

const KEYWORDS: [&str; 15] = [
    "USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL",
    "CAPA", "STLS", "AUTH",
];

fn known_keyword(upper: &[u8]) -> Option<&'static str> {
    KEYWORDS.iter().copied().find(|k| k.as_bytes() == upper)
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_pass(rest: Option<&[u8]>) -> Result<Command, CommandError> {
    let keyword = "PASS";
    let arg = rest.ok_or(CommandError::MissingArgument { keyword })?;
    if arg.is_empty() {
        return Err(CommandError::MissingArgument { keyword });
    }
    if arg.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(CommandError::ControlCharacter);
    }
    let password = std::str::from_utf8(arg).map_err(|_| CommandError::BadArgument {
        keyword,
        reason: "password is not UTF-8",
    })?;
    Ok(Command::Pass {
        password: Secret::new(password),
    })
}

fn split_args<'a>(
    rest: Option<&'a [u8]>,
    keyword: &'static str,
) -> Result<Vec<&'a [u8]>, CommandError> {
    let Some(rest) = rest else {
        return Ok(Vec::new());
    };
    let mut args = Vec::new();
    for arg in rest.split(|&b| b == b' ') {
        if arg.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(CommandError::ControlCharacter);
        }
        if arg.is_empty() {
            // Two spaces in a row, or a trailing space.
            return Err(CommandError::EmptyArgument { keyword });
        }
        if !arg.iter().all(|&b| is_vchar(b)) {
            return Err(CommandError::BadArgument {
                keyword,
                reason: "arguments must be printable US-ASCII (RFC 2449 3)",
            });
        }
        args.push(arg);
    }
    Ok(args)
}

/// The arguments of one known command, consumed in order.
struct Args<'a> {
    keyword: &'static str,
    args: Vec<&'a [u8]>,
    next: usize,
}

impl<'a> Args<'a> {
    fn optional(&mut self) -> Option<&'a [u8]> {
        let a = self.args.get(self.next).copied();
        if a.is_some() {
            self.next += 1;
        }
        a
    }

    fn required(&mut self) -> Result<&'a [u8], CommandError> {
        self.optional().ok_or(CommandError::MissingArgument {
            keyword: self.keyword,
        })
    }

    fn to_number(&self, arg: &[u8]) -> Result<u32, CommandError> {
        let bad = || CommandError::BadNumber {
            keyword: self.keyword,
            arg: ascii(arg),
        };
        // Digits only: `str::parse` would also take a leading `+`.
        if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    }

    fn number(&mut self) -> Result<u32, CommandError> {
        let arg = self.required()?;
        self.to_number(arg)
    }

    fn optional_number(&mut self) -> Result<Option<u32>, CommandError> {
        match self.optional() {
            Some(arg) => self.to_number(arg).map(Some),
            None => Ok(None),
        }
    }

    fn finish(&self) -> Result<(), CommandError> {
        if self.next < self.args.len() {
            return Err(CommandError::TooManyArguments {
                keyword: self.keyword,
            });
        }
        Ok(())
    }
}

impl Command {
    /// The command keyword in upper case.
    pub fn keyword(&self) -> &str {
        match self {
            Command::User { .. } => "USER",
            Command::Pass { .. } => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Stat => "STAT",
            Command::List { .. } => "LIST",
            Command::Retr { .. } => "RETR",
            Command::Dele { .. } => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl { .. } => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Auth { .. } => "AUTH",
            Command::Unknown { keyword, .. } => keyword,
        }
    }

    /// The shape of the reply to this command: multi-line after `+OK` for LIST and UIDL
    /// without an argument, RETR, TOP, CAPA and a bare AUTH; a possible `+ ` continuation for
    /// AUTH with a mechanism; a single line otherwise.
    pub fn expect(&self) -> Expect {
        match self {
            Command::List { msg: None }
            | Command::Uidl { msg: None }
            | Command::Retr { .. }
            | Command::Top { .. }
            | Command::Capa
            | Command::Auth {
                mechanism: None, ..
            } => Expect::MultiLine,
            Command::Auth {
                mechanism: Some(_), ..
            } => Expect::Sasl,
            _ => Expect::SingleLine,
        }
    }

    /// The command as a client sends it, CRLF included. The secret arguments are written in
    /// clear: this is the wire form.
    pub fn to_line(&self) -> Vec<u8> {
        let mut parts: Vec<String> = vec![self.keyword().to_string()];
        let num = |n: &u32| n.to_string();
        match self {
            Command::User { name } => parts.push(name.clone()),
            Command::Pass { password } => parts.push(password.expose().to_string()),
            Command::Apop { name, digest } => parts.extend([name.clone(), digest.clone()]),
            Command::List { msg } | Command::Uidl { msg } => parts.extend(msg.as_ref().map(num)),
            Command::Retr { msg } | Command::Dele { msg } => parts.push(num(msg)),
            Command::Top { msg, lines } => parts.extend([num(msg), num(lines)]),
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                parts.extend(mechanism.clone());
                parts.extend(initial_response.as_ref().map(|s| s.expose().to_string()));
            }
            Command::Unknown { args, .. } => parts.extend(args.iter().cloned()),
            Command::Stat
            | Command::Noop
            | Command::Rset
            | Command::Quit
            | Command::Capa
            | Command::Stls => {}
        }
        let mut line = parts.join(" ").into_bytes();
        line.extend_from_slice(b"\r\n");
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, CommandError> {
        parse_command(s.as_bytes())
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(parse("stat"), Ok(Command::Stat));
        assert_eq!(parse("StAt\r\n"), Ok(Command::Stat));
        assert_eq!(parse("quit\n"), Ok(Command::Quit));
        assert_eq!(parse("top 1 10"), Ok(Command::Top { msg: 1, lines: 10 }));
    }

    #[test]
    fn every_command_parses() {
        let cases = [
            (
                "USER alice@example.test",
                Command::User {
                    name: "alice@example.test".into(),
                },
            ),
            (
                "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop {
                    name: "mrose".into(),
                    digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
                },
            ),
            ("LIST", Command::List { msg: None }),
            ("LIST 2", Command::List { msg: Some(2) }),
            ("RETR 1", Command::Retr { msg: 1 }),
            ("DELE 007", Command::Dele { msg: 7 }),
            ("NOOP", Command::Noop),
            ("RSET", Command::Rset),
            ("UIDL", Command::Uidl { msg: None }),
            ("UIDL 3", Command::Uidl { msg: Some(3) }),
            ("CAPA", Command::Capa),
            ("STLS", Command::Stls),
            (
                "AUTH",
                Command::Auth {
                    mechanism: None,
                    initial_response: None,
                },
            ),
            (
                "AUTH PLAIN",
                Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial_response: None,
                },
            ),
            (
                "AUTH PLAIN AGFsaWNlAGFsaWNlcHc=",
                Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial_response: Some(Secret::new("AGFsaWNlAGFsaWNlcHc=")),
                },
            ),
            (
                "XTND foo bar",
                Command::Unknown {
                    keyword: "XTND".into(),
                    args: vec!["foo".into(), "bar".into()],
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(want.clone()), "{line}");
            // The encoder writes what the parser reads.
            let encoded = want.to_line();
            assert!(encoded.ends_with(b"\r\n"));
            assert_eq!(parse_command(&encoded), Ok(want), "{line}");
        }
    }

    #[test]
    fn pass_keeps_spaces() {
        let Ok(Command::Pass { password }) = parse("PASS my secret  pw") else {
            panic!("PASS did not parse");
        };
        assert_eq!(password.expose(), "my secret  pw");
        assert_eq!(format!("{password:?}"), "<redacted>");
        assert!(matches!(
            parse("PASS"),
            Err(CommandError::MissingArgument { keyword: "PASS" })
        ));
        assert!(matches!(
            parse("PASS "),
            Err(CommandError::MissingArgument { .. })
        ));
        assert_eq!(parse("PASS a\x00b"), Err(CommandError::ControlCharacter));
    }

    #[test]
    fn bad_syntax_is_an_error() {
        assert_eq!(parse(""), Err(CommandError::Empty));
        assert_eq!(parse("\r\n"), Err(CommandError::Empty));
        assert_eq!(parse("NO"), Err(CommandError::BadKeyword));
        assert_eq!(parse("FROBNICATE"), Err(CommandError::BadKeyword));
        assert_eq!(parse(" STAT"), Err(CommandError::BadKeyword));
        assert_eq!(parse("ST\tT"), Err(CommandError::ControlCharacter));
        assert!(matches!(
            parse("LIST  1"),
            Err(CommandError::EmptyArgument { .. })
        ));
        assert!(matches!(
            parse("STAT "),
            Err(CommandError::EmptyArgument { .. })
        ));
        assert!(matches!(
            parse("RETR"),
            Err(CommandError::MissingArgument { keyword: "RETR" })
        ));
        assert!(matches!(
            parse("TOP 1"),
            Err(CommandError::MissingArgument { keyword: "TOP" })
        ));
        assert!(matches!(
            parse("STAT 1"),
            Err(CommandError::TooManyArguments { keyword: "STAT" })
        ));
        assert!(matches!(
            parse("AUTH PLAIN x y"),
            Err(CommandError::TooManyArguments { keyword: "AUTH" })
        ));
        for bad in [
            "RETR x",
            "RETR +1",
            "RETR -1",
            "RETR 4294967296",
            "DELE 1.5",
        ] {
            assert!(
                matches!(parse(bad), Err(CommandError::BadNumber { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse("USER caf\u{e9}"),
            Err(CommandError::BadArgument { .. })
        ));
        assert!(matches!(
            parse("APOP mrose nothex"),
            Err(CommandError::BadArgument { .. })
        ));
        assert!(matches!(
            parse("USER"),
            Err(CommandError::MissingArgument { keyword: "USER" })
        ));
    }

    #[test]
    fn zero_is_syntactically_a_number() {
        // Whether message 0 exists is the server's call ("no such message"), not the codec's.
        assert_eq!(parse("RETR 0"), Ok(Command::Retr { msg: 0 }));
        assert_eq!(parse("TOP 1 0"), Ok(Command::Top { msg: 1, lines: 0 }));
    }

    #[test]
    fn reply_shapes() {
        assert_eq!(Command::Capa.expect(), Expect::MultiLine);
        assert_eq!(Command::List { msg: None }.expect(), Expect::MultiLine);
        assert_eq!(Command::List { msg: Some(1) }.expect(), Expect::SingleLine);
        assert_eq!(Command::Uidl { msg: Some(1) }.expect(), Expect::SingleLine);
        assert_eq!(Command::Retr { msg: 1 }.expect(), Expect::MultiLine);
        assert_eq!(
            Command::Top { msg: 1, lines: 0 }.expect(),
            Expect::MultiLine
        );
        assert_eq!(Command::Stat.expect(), Expect::SingleLine);
        assert_eq!(parse("AUTH PLAIN").map(|c| c.expect()), Ok(Expect::Sasl));
        assert_eq!(parse("AUTH").map(|c| c.expect()), Ok(Expect::MultiLine));
    }

    #[test]
    fn keyword_names_round_trip() {
        for k in KEYWORDS {
            let line = match k {
                "USER" => "USER a".to_string(),
                "PASS" => "PASS a".to_string(),
                "APOP" => format!("APOP a {}", "0".repeat(32)),
                "RETR" | "DELE" => format!("{k} 1"),
                "TOP" => "TOP 1 1".to_string(),
                other => other.to_string(),
            };
            assert_eq!(parse(&line).map(|c| c.keyword().to_string()), Ok(k.into()));
        }
    }
}
