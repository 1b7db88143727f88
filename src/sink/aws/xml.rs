//! Just enough XML for the AWS query protocol's answers (SNS, STS): the text of an element and
//! the elements of a list, with the five predefined entities and numeric references decoded.
//! The answers are flat, machine-written documents; no attributes or CDATA are needed.

/// The decoded text of the first `<tag>…</tag>` in `xml`.
pub fn text(xml: &str, tag: &str) -> Option<String> {
    element(xml, tag).map(|inner| decode(inner.trim()))
}

/// The raw inside of the first `<tag>…</tag>` (or `<tag/>`: empty) in `xml`.
pub fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    if let Some(start) = xml.find(&open).map(|s| s + open.len()) {
        let end = start + xml[start..].find(&close)?;
        return Some(&xml[start..end]);
    }
    xml.contains(&format!("<{tag}/>")).then_some("")
}

/// The raw insides of every `<tag>…</tag>` directly in `xml`, in order (not nested in each
/// other: `member` elements of one list).
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(s) = rest.find(&open) {
        let start = s + open.len();
        let Some(len) = rest[start..].find(&close) else {
            break;
        };
        out.push(&rest[start..start + len]);
        rest = &rest[start + len + close.len()..];
    }
    out
}

/// XML text with entities and character references decoded.
pub fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let name = &after[..end];
        let c = match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_lists_and_entities() {
        let xml = "<R><Failed><member><Id>1</Id><Message>a &lt;b&gt; &amp; &#39;c&#x27;</Message></member>\
            <member><Id>3</Id></member></Failed><Successful/></R>";
        let failed = element(xml, "Failed").unwrap();
        let members = elements(failed, "member");
        assert_eq!(members.len(), 2);
        assert_eq!(text(members[0], "Id").unwrap(), "1");
        assert_eq!(text(members[0], "Message").unwrap(), "a <b> & 'c'");
        assert_eq!(text(members[1], "Id").unwrap(), "3");
        assert_eq!(element(xml, "Successful"), Some(""));
        assert_eq!(text(xml, "Nope"), None);
        assert_eq!(decode("AT&T &bogus; &"), "AT&T &bogus; &");
    }
}
