//! The IMAP view of a message's MIME structure (RFC 3501 6.4.5 part numbering), built on
//! mail-parser's parse: byte ranges of each part's header and body, ENVELOPE and
//! BODYSTRUCTURE encodings, and section extraction for BODY[section].

use std::ops::Range;

use imap_codec::imap_types::fetch::Section;
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::response::{nstring, string};

/// One node of the IMAP part tree, with absolute byte ranges into the raw message.
pub struct Node<'m> {
    pub part: Option<&'m MessagePart<'m>>,
    pub header: Range<usize>,
    pub body: Range<usize>,
    pub kind: Kind<'m>,
}

pub enum Kind<'m> {
    Multipart(Vec<Node<'m>>),
    /// A message/rfc822 part: the node of the encapsulated message's root.
    Message(Box<Node<'m>>, &'m Message<'m>),
    Leaf,
}

/// Deepest MIME nesting (multipart and message/rfc822 levels) the server walks. Real mail
/// stays within a handful of levels; anything below this depth is treated as one opaque part,
/// so a hostile message cannot drive the recursive encoders into a stack overflow.
pub const MAX_MIME_DEPTH: usize = 64;

/// A parsed message. mail-parser nests encapsulated messages as values, so the default drop
/// of a message nested thousands of times deep would recurse that deep; this wrapper takes
/// the nested messages apart iteratively instead.
pub struct Parsed<'a>(Message<'a>);

impl<'a> std::ops::Deref for Parsed<'a> {
    type Target = Message<'a>;
    fn deref(&self) -> &Message<'a> {
        &self.0
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut stack = vec![std::mem::take(&mut self.0)];
        while let Some(mut msg) = stack.pop() {
            for part in &mut msg.parts {
                if let PartType::Message(inner) = &mut part.body {
                    stack.push(std::mem::take(inner));
                }
            }
        }
    }
}

/// Parses raw bytes with mail-parser; `None` only for input it cannot make sense of.
pub fn parse(raw: &[u8]) -> Option<Parsed<'_>> {
    MessageParser::default().parse(raw).map(Parsed)
}

fn clamp(r: Range<usize>, len: usize) -> Range<usize> {
    let start = r.start.min(len);
    start..r.end.clamp(start, len)
}

/// Builds the part tree of a parsed message; `len` is the raw length.
pub fn tree<'m>(msg: &'m Message<'m>, len: usize) -> Node<'m> {
    build(msg, 0, len, MAX_MIME_DEPTH)
}

/// `levels_left`: how many more composite levels may be opened.
fn build<'m>(msg: &'m Message<'m>, idx: usize, len: usize, levels_left: usize) -> Node<'m> {
    let Some(part) = msg.parts.get(idx) else {
        return Node {
            part: None,
            header: 0..0,
            body: 0..len,
            kind: Kind::Leaf,
        };
    };
    let header = clamp(part.offset_header as usize..part.offset_body as usize, len);
    let body = clamp(part.offset_body as usize..part.offset_end as usize, len);
    let kind = match &part.body {
        _ if levels_left == 0 => Kind::Leaf,
        PartType::Multipart(children) => Kind::Multipart(
            children
                .iter()
                .map(|&c| build(msg, c as usize, len, levels_left - 1))
                .collect(),
        ),
        PartType::Message(inner) => {
            Kind::Message(Box::new(build(inner, 0, len, levels_left - 1)), inner)
        }
        _ => Kind::Leaf,
    };
    Node {
        part: Some(part),
        header,
        body,
        kind,
    }
}

impl<'m> Node<'m> {
    /// Sub-part `n` (1-based) as RFC 3501 numbers them: a message/rfc822 part's sub-parts
    /// are those of the encapsulated message; a non-multipart body is its own part 1.
    fn child(&self, n: u32) -> Option<&Node<'m>> {
        let target = match &self.kind {
            Kind::Message(inner, _) => inner,
            _ => self,
        };
        match &target.kind {
            Kind::Multipart(children) => children.get(n.checked_sub(1)? as usize),
            _ => (n == 1).then_some(target),
        }
    }

    pub fn at(&self, path: &[std::num::NonZeroU32]) -> Option<&Node<'m>> {
        let mut node = self;
        for n in path {
            node = node.child(n.get())?;
        }
        Some(node)
    }

    /// The header and body ranges of the message this node encapsulates (itself for the root).
    fn as_message(&self, is_root: bool) -> Option<&Node<'m>> {
        match &self.kind {
            Kind::Message(inner, _) => Some(inner),
            _ if is_root => Some(self),
            _ => None,
        }
    }
}

/// The bytes a BODY[section] asks for (without partial). Missing parts give an empty string,
/// which RFC 3501 allows for nonexistent sections.
pub fn section_bytes(raw: &[u8], root: &Node<'_>, section: Option<&Section<'_>>) -> Vec<u8> {
    let Some(section) = section else {
        return raw.to_vec();
    };
    let resolve = |part: &Option<imap_codec::imap_types::fetch::Part>| -> Option<&Node<'_>> {
        match part {
            None => root.as_message(true),
            Some(p) => root.at(p.0.as_ref())?.as_message(false),
        }
    };
    match section {
        Section::Part(p) => root
            .at(p.0.as_ref())
            .map(|n| raw[n.body.clone()].to_vec())
            .unwrap_or_default(),
        Section::Mime(p) => root
            .at(p.0.as_ref())
            .map(|n| raw[n.header.clone()].to_vec())
            .unwrap_or_default(),
        Section::Header(p) => resolve(p)
            .map(|n| raw[n.header.clone()].to_vec())
            .unwrap_or_default(),
        Section::Text(p) => resolve(p)
            .map(|n| raw[n.body.clone()].to_vec())
            .unwrap_or_default(),
        Section::HeaderFields(p, names) | Section::HeaderFieldsNot(p, names) => {
            let keep = matches!(section, Section::HeaderFields(..));
            let wanted: Vec<String> = names
                .as_ref()
                .iter()
                .map(|n| String::from_utf8_lossy(n.as_ref()).to_ascii_lowercase())
                .collect();
            let Some(node) = resolve(p) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            if let Some(part) = node.part {
                for h in &part.headers {
                    let name = h.name.as_str().to_ascii_lowercase();
                    if wanted.contains(&name) == keep {
                        let r = clamp(h.offset_field as usize..h.offset_end as usize, raw.len());
                        out.extend_from_slice(&raw[r]);
                    }
                }
            }
            // The field list is followed by the blank line that ends a header (RFC 3501 6.4.5).
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

/// The raw value of the first header named `name`, unfolded and trimmed.
fn raw_header(raw: &[u8], part: &MessagePart<'_>, name: &HeaderName<'_>) -> Option<Vec<u8>> {
    let h = part.headers.iter().find(|h| &h.name == name)?;
    let r = clamp(h.offset_start as usize..h.offset_end as usize, raw.len());
    let mut v: Vec<u8> = raw[r]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    while v.first().is_some_and(|b| b.is_ascii_whitespace()) {
        v.remove(0);
    }
    while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
        v.pop();
    }
    Some(v)
}

/// RFC 2047 Q-encodes a display name that is not plain ASCII.
fn encode_word(text: &str) -> Vec<u8> {
    if text.is_ascii() {
        return text.as_bytes().to_vec();
    }
    let mut out = b"=?UTF-8?Q?".to_vec();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b);
        } else if b == b' ' {
            out.push(b'_');
        } else {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
        }
    }
    out.extend_from_slice(b"?=");
    out
}

fn address_one(out: &mut Vec<u8>, name: Option<&str>, address: Option<&str>) {
    out.push(b'(');
    nstring(out, name.map(encode_word).as_deref());
    out.extend_from_slice(b" NIL ");
    match address.map(|a| a.rsplit_once('@').unwrap_or((a, ""))) {
        Some((local, host)) => {
            string(out, local.as_bytes());
            out.push(b' ');
            if host.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                string(out, host.as_bytes());
            }
        }
        None => out.extend_from_slice(b"NIL NIL"),
    }
    out.push(b')');
}

fn address_list(out: &mut Vec<u8>, addr: Option<&Address<'_>>) {
    let empty = match addr {
        None => true,
        Some(Address::List(l)) => l.is_empty(),
        Some(Address::Group(g)) => g.is_empty(),
    };
    if empty {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    match addr {
        Some(Address::List(list)) => {
            for a in list {
                address_one(out, a.name.as_deref(), a.address.as_deref());
            }
        }
        Some(Address::Group(groups)) => {
            for g in groups {
                match &g.name {
                    // RFC 3501 7.4.2 group syntax: start (NIL NIL "name" NIL), end all NIL.
                    Some(name) => {
                        out.extend_from_slice(b"(NIL NIL ");
                        string(out, name.as_bytes());
                        out.extend_from_slice(b" NIL)");
                        for a in &g.addresses {
                            address_one(out, a.name.as_deref(), a.address.as_deref());
                        }
                        out.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => {
                        for a in &g.addresses {
                            address_one(out, a.name.as_deref(), a.address.as_deref());
                        }
                    }
                }
            }
        }
        None => {}
    }
    out.push(b')');
}

fn header_address<'a>(part: &'a MessagePart<'a>, name: HeaderName<'a>) -> Option<&'a Address<'a>> {
    part.headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_address())
}

/// ENVELOPE (RFC 3501 7.4.2) of the message whose root part is `part`.
pub fn envelope(out: &mut Vec<u8>, raw: &[u8], part: Option<&MessagePart<'_>>) {
    let Some(part) = part else {
        out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    };
    out.push(b'(');
    nstring(out, raw_header(raw, part, &HeaderName::Date).as_deref());
    out.push(b' ');
    nstring(out, raw_header(raw, part, &HeaderName::Subject).as_deref());
    let from = header_address(part, HeaderName::From);
    let sender = header_address(part, HeaderName::Sender).or(from);
    let reply_to = header_address(part, HeaderName::ReplyTo).or(from);
    for a in [
        from,
        sender,
        reply_to,
        header_address(part, HeaderName::To),
        header_address(part, HeaderName::Cc),
        header_address(part, HeaderName::Bcc),
    ] {
        out.push(b' ');
        address_list(out, a);
    }
    out.push(b' ');
    nstring(
        out,
        raw_header(raw, part, &HeaderName::InReplyTo).as_deref(),
    );
    out.push(b' ');
    nstring(
        out,
        raw_header(raw, part, &HeaderName::MessageId).as_deref(),
    );
    out.push(b')');
}

fn params(
    out: &mut Vec<u8>,
    attrs: Option<&[mail_parser::Attribute<'_>]>,
    default: Option<(&str, &str)>,
) {
    let mut pairs: Vec<(String, &str)> = attrs
        .unwrap_or_default()
        .iter()
        .map(|a| (a.name.to_ascii_uppercase(), a.value.as_ref()))
        .collect();
    if pairs.is_empty()
        && let Some((k, v)) = default
    {
        pairs.push((k.to_string(), v));
    }
    if pairs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k.as_bytes());
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

fn extension_tail(out: &mut Vec<u8>, part: Option<&MessagePart<'_>>) {
    // body-fld-dsp, body-fld-lang, body-fld-loc
    match part.and_then(|p| p.content_disposition()) {
        Some(d) => {
            out.extend_from_slice(b" (");
            string(out, d.ctype().to_ascii_uppercase().as_bytes());
            out.push(b' ');
            params(out, d.attributes(), None);
            out.push(b')');
        }
        None => out.extend_from_slice(b" NIL"),
    }
    out.push(b' ');
    match part.map(|p| p.content_language()) {
        Some(HeaderValue::Text(t)) => string(out, t.as_bytes()),
        Some(HeaderValue::TextList(list)) if !list.is_empty() => {
            out.push(b'(');
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, t.as_bytes());
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(
        out,
        part.and_then(|p| p.content_location()).map(str::as_bytes),
    );
}

/// body-fld-lines: complete lines, i.e. line ends. A part's last line has no CRLF of its own
/// (that CRLF belongs to the boundary delimiter, RFC 2046 5.1.1), so it is not counted; this is
/// also what Dovecot and Cyrus report.
fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// BODY (`extended == false`) or BODYSTRUCTURE (`extended == true`) of a node.
pub fn body_structure(out: &mut Vec<u8>, raw: &[u8], node: &Node<'_>, extended: bool) {
    let part = node.part;
    let ctype = part.and_then(|p| p.content_type());
    out.push(b'(');
    if let Kind::Multipart(children) = &node.kind {
        for child in children {
            body_structure(out, raw, child, extended);
        }
        out.push(b' ');
        let sub = ctype.and_then(|c| c.subtype()).unwrap_or("mixed");
        string(out, sub.to_ascii_uppercase().as_bytes());
        if extended {
            out.push(b' ');
            params(out, ctype.and_then(|c| c.attributes()), None);
            extension_tail(out, part);
        }
        out.push(b')');
        return;
    }
    let (mut main, mut sub) = match ctype {
        Some(c) => (
            c.ctype().to_ascii_uppercase(),
            c.subtype().unwrap_or("").to_ascii_uppercase(),
        ),
        None => ("TEXT".to_string(), "PLAIN".to_string()),
    };
    // A composite part that was not opened (below MAX_MIME_DEPTH, or unparsable) is reported
    // as opaque data: the MESSAGE/RFC822 and MULTIPART forms need the structure inside.
    let unopened_message =
        main == "MESSAGE" && sub == "RFC822" && !matches!(node.kind, Kind::Message(..));
    if unopened_message || main == "MULTIPART" {
        main = "APPLICATION".to_string();
        sub = "OCTET-STREAM".to_string();
    }
    let default_charset = ctype.is_none().then_some(("CHARSET", "us-ascii"));
    string(out, main.as_bytes());
    out.push(b' ');
    string(out, sub.as_bytes());
    out.push(b' ');
    params(out, ctype.and_then(|c| c.attributes()), default_charset);
    out.push(b' ');
    nstring(out, part.and_then(|p| p.content_id()).map(str::as_bytes));
    out.push(b' ');
    nstring(
        out,
        part.and_then(|p| p.content_description())
            .map(str::as_bytes),
    );
    out.push(b' ');
    let encoding = part
        .and_then(|p| p.content_transfer_encoding())
        .unwrap_or("7bit")
        .to_ascii_uppercase();
    string(out, encoding.as_bytes());
    let body = &raw[node.body.clone()];
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    match &node.kind {
        Kind::Message(inner, msg) => {
            out.push(b' ');
            envelope(out, raw, msg.parts.first());
            out.push(b' ');
            body_structure(out, raw, inner, extended);
            out.extend_from_slice(format!(" {}", count_lines(body)).as_bytes());
        }
        _ if main == "TEXT" => out.extend_from_slice(format!(" {}", count_lines(body)).as_bytes()),
        _ => {}
    }
    if extended {
        out.push(b' ');
        nstring(
            out,
            part.and_then(|p| raw_header(raw, p, &HeaderName::ContentMd5))
                .as_deref(),
        );
        extension_tail(out, part);
    }
    out.push(b')');
}

/// Decoded text of every text part, encapsulated messages included, for SEARCH BODY/TEXT.
pub fn body_texts(msg: &Message<'_>) -> Vec<String> {
    let mut texts = Vec::new();
    let mut stack = vec![msg];
    while let Some(m) = stack.pop() {
        for part in &m.parts {
            match &part.body {
                PartType::Text(t) | PartType::Html(t) => texts.push(t.to_string()),
                PartType::Message(inner) => stack.push(inner),
                _ => {}
            }
        }
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::Vec1;
    use imap_codec::imap_types::fetch::Part;
    use std::num::NonZeroU32;

    const NESTED: &[u8] = b"From: A <a@b.c>\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\nworld\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\n\r\ninner text\r\n--YY\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--YY--\r\n\r\n--XX--\r\nepilogue\r\n";

    fn part(path: &[u32]) -> Part {
        let v: Vec<NonZeroU32> = path.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
        Part(Vec1::try_from(v).unwrap())
    }

    #[test]
    fn sections_follow_rfc3501_numbering() {
        let msg = parse(NESTED).unwrap();
        let root = tree(&msg, NESTED.len());
        let get =
            |s: Section<'_>| String::from_utf8(section_bytes(NESTED, &root, Some(&s))).unwrap();
        assert_eq!(get(Section::Part(part(&[1]))), "hello\r\nworld");
        assert_eq!(
            get(Section::Mime(part(&[1]))),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert!(get(Section::Header(Some(part(&[2])))).starts_with("Subject: inner\r\n"));
        assert_eq!(get(Section::Part(part(&[2, 1]))), "inner text");
        assert_eq!(get(Section::Part(part(&[2, 2]))), "<b>x</b>");
        assert_eq!(get(Section::Part(part(&[3]))), "");
        let fields = Section::HeaderFields(
            None,
            Vec1::from(
                b"subject"
                    .as_slice()
                    .try_into()
                    .map(imap_codec::imap_types::core::AString::Atom)
                    .unwrap(),
            ),
        );
        assert_eq!(get(fields), "Subject: hi\r\n\r\n");
    }

    #[test]
    fn structure_below_the_depth_limit_is_opaque_and_well_formed() {
        use imap_codec::ResponseCodec;
        use imap_codec::decode::Decoder;
        let mut raw = String::new();
        for i in 0..10 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
            raw.push_str("Content-Type: message/rfc822\r\n\r\n");
        }
        raw.push_str("Subject: leaf\r\n\r\nleaf\r\n");
        let msg = parse(raw.as_bytes()).unwrap();
        let root = build(&msg, 0, raw.len(), 5);
        for extended in [false, true] {
            let mut out = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
            body_structure(&mut out, raw.as_bytes(), &root, extended);
            out.extend_from_slice(b")\r\n");
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.contains("\"APPLICATION\" \"OCTET-STREAM\""), "{text}");
            assert!(
                matches!(ResponseCodec::default().decode(&out), Ok(([], _))),
                "{text}"
            );
        }
    }

    #[test]
    fn bodystructure_of_simple_text() {
        let raw = b"Subject: x\r\n\r\nline one\r\nline two\r\n";
        let msg = parse(raw).unwrap();
        let root = tree(&msg, raw.len());
        let mut out = Vec::new();
        body_structure(&mut out, raw, &root, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 20 2)"
        );
    }

    #[test]
    fn envelope_defaults_sender_and_reply_to_to_from() {
        let raw = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nFrom: Fred <fred@example.com>\r\nSubject: afternoon\r\n meeting\r\nTo: mooch@owatagu.example\r\nMessage-Id: <B27397-0100000@example.com>\r\n\r\nbody\r\n";
        let msg = parse(raw).unwrap();
        let mut out = Vec::new();
        envelope(&mut out, raw, msg.parts.first());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" ((\"Fred\" NIL \"fred\" \"example.com\")) ((\"Fred\" NIL \"fred\" \"example.com\")) ((\"Fred\" NIL \"fred\" \"example.com\")) ((NIL NIL \"mooch\" \"owatagu.example\")) NIL NIL NIL \"<B27397-0100000@example.com>\")"
        );
    }
}
