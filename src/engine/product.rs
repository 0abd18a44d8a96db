//! Which server product a target is, from the words of its greeting. Expected-failure keys
//! may name the product (`dovecot*`), so a scenario's known deviations of Dovecot apply to
//! every Dovecot, whatever the user named the target.

/// Products and the word their greetings carry, lower-case. Most servers name themselves in
/// the greeting text (Dovecot: "Dovecot (Debian) ready.", Cyrus: "... Cyrus IMAP ...").
const PRODUCTS: &[(&str, &str)] = &[
    ("dovecot", "dovecot"),
    ("cyrus", "cyrus"),
    ("courier", "courier"),
    ("zimbra", "zimbra"),
    ("exchange", "microsoft exchange"),
    ("stalwart", "stalwart"),
    ("mox", "mox"),
    ("gmail", "gimap"),
    ("uw-imap", "imap4rev1 20"),
    ("mailtape", "mailtape"),
];

/// The product named in a greeting, if any word of it is one mailtape knows.
pub fn recognize(greeting: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(greeting).to_ascii_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .collect();
    PRODUCTS.iter().find_map(|(product, marker)| {
        let found = if marker.contains(' ') {
            text.contains(marker)
        } else {
            words.contains(marker)
        };
        found.then_some(*product)
    })
}

#[cfg(test)]
mod tests {
    use super::recognize;

    #[test]
    fn greetings_name_their_product() {
        assert_eq!(
            recognize(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot (Debian) ready.\r\n"),
            Some("dovecot")
        );
        assert_eq!(
            recognize(b"* OK host.example Cyrus IMAP 3.6.1 server ready\r\n"),
            Some("cyrus")
        );
        assert_eq!(
            recognize(b"* OK [CAPABILITY IMAP4rev1] mailtape reference server ready\r\n"),
            Some("mailtape")
        );
        // A word inside another word does not count.
        assert_eq!(recognize(b"* OK moxie server\r\n"), None);
        assert_eq!(recognize(b"* OK ready\r\n"), None);
    }
}
