//! A tiny writer for EC2 Query responses: `<{Action}Response xmlns=…>` with
//! `<requestId>` first, nested structures, `<item>` lists, `<tagSet/>` for
//! empty lists. Output is compact (no indentation) so tests can compare
//! exact strings.
//!
//! Hand-written rather than built on quick-xml's writer because the
//! escaping rules matter more than the API: besides `& < > " '`, a carriage
//! return is written as `&#13;` (XML parsers would otherwise normalise it
//! away) and characters XML 1.0 cannot carry at all (most C0 controls) are
//! replaced by U+FFFD so a stray byte in a tag value can never make a
//! response unparseable for botocore. This module knows nothing about
//! which elements an action returns (the `ec2` modules decide that).

use std::fmt::Display;
use std::fmt::Write as _;

/// The namespace of every EC2 response (with the trailing `/` AWS sends).
pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// `Content-Type` of EC2 responses, success and error alike.
pub const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";

/// Whether XML 1.0 can carry `c` at all.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes text for element content (quotes stay as they are, as in AWS's
/// own messages; this writer never writes attributes from input).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// A response document being written.
#[derive(Debug)]
pub struct Xml {
    buf: String,
    root: String,
}

impl Xml {
    /// Starts `<{action}Response xmlns="…"><requestId>…</requestId>`.
    pub fn response(action: &str, request_id: &str) -> Self {
        let root = format!("{action}Response");
        let mut buf = String::with_capacity(512);
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(buf, "<{root} xmlns=\"{EC2_NAMESPACE}\">");
        let mut xml = Self { buf, root };
        xml.leaf("requestId", request_id);
        xml
    }

    /// Opens `<name>`.
    pub fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.buf, "<{name}>");
        self
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.buf, "</{name}>");
        self
    }

    /// `<name>value</name>`, or `<name/>` when the value prints as nothing.
    pub fn leaf(&mut self, name: &str, value: impl Display) -> &mut Self {
        let text = value.to_string();
        if text.is_empty() {
            self.empty(name)
        } else {
            let _ = write!(self.buf, "<{name}>{}</{name}>", escape(&text));
            self
        }
    }

    /// [`Xml::leaf`] when `value` is present; nothing otherwise.
    pub fn leaf_opt<T: Display>(&mut self, name: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(name, v);
        }
        self
    }

    /// `<name/>`.
    pub fn empty(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.buf, "<{name}/>");
        self
    }

    /// `<name>…</name>` around whatever `body` writes.
    pub fn structure(&mut self, name: &str, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.open(name);
        body(self);
        self.close(name)
    }

    /// `<name><item>…</item>…</name>`, or `<name/>` for no items.
    pub fn list<I, T>(&mut self, name: &str, items: I, mut each: impl FnMut(&mut Self, T)) -> &mut Self
    where
        I: IntoIterator<Item = T>,
    {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return self.empty(name);
        }
        self.open(name);
        for item in items {
            self.open("item");
            each(self, item);
            self.close("item");
        }
        self.close(name)
    }

    /// Closes the root element and returns the document.
    pub fn finish(mut self) -> String {
        let _ = write!(self.buf, "</{}>", self.root);
        self.buf
    }

    /// The common no-output answer: `<return>true</return>`.
    pub fn return_true(action: &str, request_id: &str) -> String {
        let mut x = Self::response(action, request_id);
        x.leaf("return", true);
        x.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

    #[test]
    fn return_true_shape() {
        assert_eq!(
            Xml::return_true("CreateTags", "r-1"),
            format!(
                "{HEAD}<CreateTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r-1</requestId><return>true</return></CreateTagsResponse>"
            )
        );
    }

    #[test]
    fn lists_structures_and_empty_elements() {
        let mut x = Xml::response("DescribeTags", "id");
        x.list("tagSet", [("a", "1"), ("b", "")], |x, (k, v)| {
            x.leaf("key", k).leaf("value", v);
        });
        x.list("groupSet", Vec::<u8>::new(), |_, _| {});
        x.structure("userData", |_| {});
        x.leaf_opt("kernelId", None::<&str>);
        assert_eq!(
            x.finish(),
            format!(
                "{HEAD}<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>id</requestId><tagSet><item><key>a</key><value>1</value></item><item><key>b</key><value/></item></tagSet><groupSet/><userData></userData></DescribeTagsResponse>"
            )
        );
    }

    #[test]
    fn escapes_markup_carriage_returns_and_controls() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d\"e'f");
        assert_eq!(escape("x\r\ny\tz"), "x&#13;\ny\tz");
        assert_eq!(escape("bell\u{7}"), "bell\u{FFFD}");
        assert_eq!(escape("ünï😀"), "ünï😀");
    }

    fn parse_text(doc: &str) -> String {
        let mut reader = quick_xml::Reader::from_str(doc);
        let mut text = String::new();
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Text(t)) => text.push_str(&t.unescape().unwrap()),
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("not well-formed: {e}: {doc}"),
            }
        }
        text
    }

    proptest! {
        #[test]
        fn any_text_stays_well_formed_and_round_trips(s in any::<String>()) {
            let mut x = Xml::response("X", "r");
            x.leaf("v", &s);
            let doc = x.finish();
            let expected: String = s
                .chars()
                .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
                .collect();
            // quick-xml unescapes `&#13;` back to `\r` like botocore's parser.
            prop_assert_eq!(parse_text(&doc), format!("\nr{expected}"));
        }
    }
}
