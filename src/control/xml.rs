//! Answers of the ELB 2012-06-01 Query API, written as ELB writes them.
//!
//! Owns the XML text: a small append-only writer ([`Xml`]), the success envelope
//! (`<{Action}Response><{Action}Result>...</{Action}Result><ResponseMetadata>...`), the
//! error document (`<ErrorResponse><Error>...`), and request ids. botocore's query parser
//! finds the result by the element named `{Action}Result` (a `KeyError` if absent), lists by
//! their `<member>` children and errors by `Error/Code`, so those shapes are fixed here once.
//!
//! Invariant: every document is well-formed XML 1.0. Tag names come from our code (checked
//! in debug builds); all text is escaped by [`escape_into`]. Characters XML 1.0 cannot carry
//! at all (controls other than tab, newline and CR, and U+FFFE/U+FFFF) are written as
//! U+FFFD: a character reference such as `&#x1;` would still be ill-formed in XML 1.0
//! (only XML 1.1 allows it), and refusing would turn a stored tag value into an answer that
//! can never be sent. CR is written as `&#xD;` so parsers do not fold it into a newline.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The namespace of every ELB Classic answer.
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/";

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Appends `text` to `out` as XML character data or attribute text (see the module
/// comment for what happens to characters XML cannot hold).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\t' | '\n' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
}

/// True for the tag names this module writes: ASCII letters, digits, `_`, `.` and `-`,
/// starting with a letter. Tags are our constants, never client text.
fn is_tag(tag: &str) -> bool {
    tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An XML document under construction. Callers open and close elements in order; the
/// writer does not track nesting (the shapes are small and fixed by the action code).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Xml(String);

impl Xml {
    /// An empty writer.
    pub fn new() -> Xml {
        Xml(String::with_capacity(512))
    }

    /// Writes `<tag>`.
    pub fn open(&mut self, tag: &str) -> &mut Xml {
        debug_assert!(is_tag(tag), "bad tag {tag:?}");
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// Writes `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Xml {
        debug_assert!(is_tag(tag), "bad tag {tag:?}");
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// Writes `<tag>text</tag>` with `text` escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Xml {
        self.open(tag);
        escape_into(&mut self.0, text);
        self.close(tag)
    }

    /// Writes `<tag>value</tag>` for numbers, booleans (`true`/`false`, as botocore
    /// expects) and other `Display` values; the text is escaped all the same.
    pub fn leaf_value(&mut self, tag: &str, value: impl fmt::Display) -> &mut Xml {
        self.leaf(tag, &value.to_string())
    }

    /// Writes `<tag>` then, for each item, `<member>` + what `write` adds + `</member>`,
    /// then `</tag>`: AWS's list shape (`<Listeners><member>...</member></Listeners>`).
    /// An empty list is `<tag></tag>`, which botocore reads as `[]`.
    pub fn members<I, F>(&mut self, tag: &str, items: I, mut write: F) -> &mut Xml
    where
        I: IntoIterator,
        F: FnMut(&mut Xml, I::Item),
    {
        self.open(tag);
        for item in items {
            self.open("member");
            write(self, item);
            self.close("member");
        }
        self.close(tag)
    }

    /// A list of strings: `<tag><member>a</member><member>b</member></tag>`.
    pub fn member_leaves<I>(&mut self, tag: &str, items: I) -> &mut Xml
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.members(tag, items, |x, s| {
            escape_into(&mut x.0, s.as_ref());
        })
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The finished text.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A success answer: the `{action}Response` element in ELB's namespace, holding
/// `{action}Result` (with what `body` writes inside) and `ResponseMetadata/RequestId`.
/// An action with nothing to return still gets its empty Result element, which botocore
/// requires.
pub fn success(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> String {
    let mut x = Xml(String::with_capacity(512));
    x.0.push_str(DECLARATION);
    let response = format!("{action}Response");
    let result = format!("{action}Result");
    debug_assert!(is_tag(&response), "bad action {action:?}");
    x.0.push('<');
    x.0.push_str(&response);
    x.0.push_str(" xmlns=\"");
    x.0.push_str(NAMESPACE);
    x.0.push_str("\">");
    x.open(&result);
    body(&mut x);
    x.close(&result);
    x.open("ResponseMetadata")
        .leaf("RequestId", request_id)
        .close("ResponseMetadata");
    x.close(&response);
    x.into_string()
}

/// An error answer. `sender` is true when the client is at fault (`<Type>Sender</Type>`,
/// the 4xx errors) and false for our own failures (`Receiver`, 5xx).
pub fn error(code: &str, message: &str, request_id: &str, sender: bool) -> String {
    let mut x = Xml(String::with_capacity(256 + message.len()));
    x.0.push_str(DECLARATION);
    x.0.push_str("<ErrorResponse xmlns=\"");
    x.0.push_str(NAMESPACE);
    x.0.push_str("\">");
    x.open("Error")
        .leaf("Type", if sender { "Sender" } else { "Receiver" })
        .leaf("Code", code)
        .leaf("Message", message)
        .close("Error")
        .leaf("RequestId", request_id)
        .close("ErrorResponse");
    x.into_string()
}

/// A fresh request id shaped like AWS's (a version-4 UUID, lowercase hex).
///
/// Ids only need to be distinct, not secret: they correlate a client's error report with
/// our log. So a splitmix64 mix of the clock, a process-wide counter and the process id
/// is enough, and needs no crate.
pub fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut state =
        nanos ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(std::process::id()) << 40);
    let hi = splitmix64(&mut state);
    let lo = splitmix64(&mut state);
    // Version 4 in the 13th hex digit, variant 10xx in the 17th, as RFC 9562 lays out.
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & !(0xc << 60)) | (0x8 << 60);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut s = String::new();
        escape_into(&mut s, text);
        s
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escaped(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escaped("&amp;"), "&amp;amp;");
        assert_eq!(escaped("caf\u{e9} \u{2713}"), "caf\u{e9} \u{2713}");
    }

    #[test]
    fn control_characters_never_reach_the_document() {
        assert_eq!(escaped("a\tb\nc\rd"), "a\tb\nc&#xD;d");
        assert_eq!(
            escaped("\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}"),
            "\u{fffd}".repeat(6)
        );
        assert_eq!(escaped("\u{fffe}\u{ffff}\u{fffd}"), "\u{fffd}".repeat(3));
        // Allowed by XML 1.0 although unusual: kept.
        assert_eq!(
            escaped("\u{7f}\u{85}\u{2028}\u{10ffff}"),
            "\u{7f}\u{85}\u{2028}\u{10ffff}"
        );
    }

    #[test]
    fn success_envelope_is_exact() {
        let text = success("DescribeTags", "rid-1", |x| {
            x.members("TagDescriptions", ["web"], |x, name| {
                x.leaf("LoadBalancerName", name);
                x.members("Tags", [("k", "v<")], |x, (k, v)| {
                    x.leaf("Key", k).leaf("Value", v);
                });
            });
        });
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <DescribeTagsResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\">\
             <DescribeTagsResult><TagDescriptions><member><LoadBalancerName>web</LoadBalancerName>\
             <Tags><member><Key>k</Key><Value>v&lt;</Value></member></Tags></member></TagDescriptions>\
             </DescribeTagsResult><ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata>\
             </DescribeTagsResponse>"
        );
    }

    #[test]
    fn empty_result_still_has_its_element() {
        let text = success("DeleteLoadBalancer", "r", |_| {});
        assert!(text
            .contains("<DeleteLoadBalancerResult></DeleteLoadBalancerResult><ResponseMetadata>"));
        assert!(text.ends_with("</DeleteLoadBalancerResponse>"));
    }

    #[test]
    fn lists_and_values() {
        let mut x = Xml::new();
        x.member_leaves("AvailabilityZones", ["a", "b&"])
            .member_leaves("Empty", Vec::<String>::new());
        x.leaf_value("Port", 80u32).leaf_value("Enabled", true);
        assert_eq!(
            x.as_str(),
            "<AvailabilityZones><member>a</member><member>b&amp;</member></AvailabilityZones>\
             <Empty></Empty><Port>80</Port><Enabled>true</Enabled>"
        );
    }

    #[test]
    fn error_document_shape() {
        assert_eq!(
            error(
                "LoadBalancerNotFound",
                "There is no ACTIVE Load Balancer named 'a<b'",
                "r-2",
                true
            ),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\">\
             <Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code>\
             <Message>There is no ACTIVE Load Balancer named &apos;a&lt;b&apos;</Message></Error>\
             <RequestId>r-2</RequestId></ErrorResponse>"
        );
        assert!(error("InternalFailure", "x", "r", false).contains("<Type>Receiver</Type>"));
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let ids: Vec<String> = (0..1000).map(|_| request_id()).collect();
        for id in &ids {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                vec![8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(id
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(
                matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{id}"
            );
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }
}
