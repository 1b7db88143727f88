//! RFC 5424 messages and RFC 6587 octet-counting frames, written by hand (no dependency): one
//! message per occurrence,
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [kee@32473 key="uid:count" …] BOM MSG
//! ```
//!
//! - PRI = facility × 8 + severity; the severity comes from the event's `type` (`Warning` →
//!   warning (4), `Normal` → informational (6), anything else → notice (5));
//! - TIMESTAMP = when the occurrence happened (the event's `lastTimestamp`, else its series' last
//!   observation, `eventTime`, `firstTimestamp`, creation), RFC 3339 in UTC with microseconds;
//!   `-` for an event with no time at all;
//! - HOSTNAME = the event's `clusterName`, else the exporter's host name;
//! - APP-NAME = `tag`, PROCID = the exporter's process id, MSGID = the event's `reason`;
//! - STRUCTURED-DATA = one element `kee@32473` carrying the occurrence key (the dedup key of a
//!   replay) and the involved object (`namespace`, `kind`, `name`). 32473 is the private
//!   enterprise number reserved for documentation (RFC 5612): we have none of our own;
//! - MSG = the encoded document (layout rules), UTF-8 with the BOM RFC 5424 asks for.
//!
//! Header fields may hold only printable US-ASCII (33–126) and have maximum lengths: anything else
//! is replaced by `_` and cut, so a reason or cluster name can never break the framing.

use std::io::Write as _;

use crate::event::Occurrence;

/// The structured-data element's id (see the module doc).
pub const SD_ID: &str = "kee@32473";

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub const HOSTNAME_MAX: usize = 255;
pub const APP_NAME_MAX: usize = 48;
pub const PROCID_MAX: usize = 128;
pub const MSGID_MAX: usize = 32;

/// The syslog facilities by name (RFC 5424 §6.2.1, with the names syslog.conf uses).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("solaris-cron", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// `local0`: the facility resmoio (Go's `log/syslog` with `LOG_LOCAL0`) sent with, so collector
/// rules that select on it keep working.
pub const DEFAULT_FACILITY: u8 = 16;

pub const SEVERITY_WARNING: u8 = 4;
pub const SEVERITY_NOTICE: u8 = 5;
pub const SEVERITY_INFO: u8 = 6;

/// The severity of an event of this `type`.
pub fn severity(type_: Option<&str>) -> u8 {
    match type_ {
        Some(t) if t.eq_ignore_ascii_case("warning") => SEVERITY_WARNING,
        Some(t) if t.eq_ignore_ascii_case("normal") => SEVERITY_INFO,
        _ => SEVERITY_NOTICE,
    }
}

/// What is the same for every message of a receiver.
#[derive(Debug, Clone)]
pub struct Header {
    pub facility: u8,
    /// APP-NAME, already valid.
    pub app_name: String,
    pub procid: String,
    /// HOSTNAME when the event has no cluster name, already valid.
    pub hostname: String,
}

impl Header {
    pub fn new(facility: u8, tag: &str, hostname: &str) -> Self {
        Self {
            facility,
            app_name: header_field(tag, APP_NAME_MAX),
            procid: std::process::id().to_string(),
            hostname: header_field(hostname, HOSTNAME_MAX),
        }
    }
}

/// Why `tag` cannot be an APP-NAME, if it cannot.
pub fn check_app_name(tag: &str) -> Result<(), String> {
    if tag.len() > APP_NAME_MAX {
        return Err(format!(
            "{tag:?} is {} characters long: at most {APP_NAME_MAX} (RFC 5424 APP-NAME)",
            tag.len()
        ));
    }
    if let Some(c) = tag.chars().find(|c| !is_print_ascii(*c)) {
        return Err(format!(
            "{tag:?} contains {c:?}: only printable ASCII without spaces (RFC 5424 APP-NAME)"
        ));
    }
    Ok(())
}

fn is_print_ascii(c: char) -> bool {
    ('!'..='~').contains(&c)
}

/// A header field: printable US-ASCII only (others become `_`), at most `max` characters, `-`
/// (the NILVALUE) when empty.
pub fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .take(max)
        .map(|c| if is_print_ascii(c) { c } else { '_' })
        .collect();
    if out.is_empty() { "-".to_owned() } else { out }
}

/// Appends a PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3).
fn param_value(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends the TIMESTAMP of `occ`: RFC 3339, UTC, microseconds.
fn timestamp(out: &mut Vec<u8>, occ: &Occurrence) {
    let Some(ts) = occ.event.last_seen() else {
        out.push(b'-');
        return;
    };
    // A timestamp formats in UTC; `%.6f` is exactly six digits, cut rather than rounded.
    let _ = write!(out, "{}", ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"));
}

/// Appends the RFC 5424 message for one document: the header fields of `occ`, `body` as MSG.
pub fn write_message(out: &mut Vec<u8>, h: &Header, occ: &Occurrence, body: &[u8]) {
    let e = &occ.event;
    let pri = u16::from(h.facility) * 8 + u16::from(severity(e.type_.as_deref()));
    let _ = write!(out, "<{pri}>1 ");
    timestamp(out, occ);
    out.push(b' ');
    if e.cluster_name.is_empty() {
        out.extend_from_slice(h.hostname.as_bytes());
    } else {
        out.extend_from_slice(header_field(&e.cluster_name, HOSTNAME_MAX).as_bytes());
    }
    out.push(b' ');
    out.extend_from_slice(h.app_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(h.procid.as_bytes());
    out.push(b' ');
    out.extend_from_slice(header_field(e.reason.as_deref().unwrap_or(""), MSGID_MAX).as_bytes());
    out.extend_from_slice(b" [");
    out.extend_from_slice(SD_ID.as_bytes());
    out.extend_from_slice(b" key=\"");
    param_value(out, &occ.key);
    out.push(b'"');
    let o = &e.involved_object;
    for (name, value) in [
        ("namespace", &o.namespace),
        ("kind", &o.kind),
        ("name", &o.name),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let _ = write!(out, " {name}=\"");
            param_value(out, v);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"] ");
    out.extend_from_slice(BOM);
    out.extend_from_slice(body);
}

/// Appends `msg` as an octet-counted frame (RFC 6587 §3.4.1, RFC 5425 §4.3): `LEN SP MSG`.
pub fn write_frame(out: &mut Vec<u8>, msg: &[u8]) {
    let _ = write!(out, "{} ", msg.len());
    out.extend_from_slice(msg);
}

/// The longest prefix of `msg` of at most `max` bytes that does not split a UTF-8 character of
/// the body (the header is ASCII).
pub fn truncate(msg: &[u8], max: usize) -> &[u8] {
    if msg.len() <= max {
        return msg;
    }
    let mut end = max;
    // A continuation byte (10xxxxxx) is not where a character starts.
    while end > 0 && msg[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &msg[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn occurrence(v: serde_json::Value) -> Occurrence {
        Occurrence::new(serde_json::from_value::<Event>(v).unwrap())
    }

    fn sample() -> Occurrence {
        occurrence(serde_json::json!({
            "metadata": {"name": "web-1.17f3a", "namespace": "shop", "uid": "0b8e"},
            "reason": "BackOff", "type": "Warning", "count": 3,
            "lastTimestamp": "2025-01-02T03:04:05Z",
            "eventTime": "2025-01-02T03:04:04.123456Z",
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1"}
        }))
    }

    fn header() -> Header {
        Header {
            facility: DEFAULT_FACILITY,
            app_name: "kube-event-exporter".into(),
            procid: "42".into(),
            hostname: "node-a".into(),
        }
    }

    fn message(occ: &Occurrence, body: &str) -> String {
        let mut out = Vec::new();
        write_message(&mut out, &header(), occ, body.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_warning_is_local0_warning_with_every_field_in_order() {
        assert_eq!(
            message(&sample(), "{}"),
            "<132>1 2025-01-02T03:04:05.000000Z node-a kube-event-exporter 42 BackOff \
             [kee@32473 key=\"0b8e:3\" namespace=\"shop\" kind=\"Pod\" name=\"web-1\"] \u{feff}{}"
        );
    }

    #[test]
    fn severity_follows_the_event_type_and_pri_the_facility() {
        assert_eq!(severity(Some("Warning")), 4);
        assert_eq!(severity(Some("Normal")), 6);
        assert_eq!(severity(Some("normal")), 6);
        assert_eq!(severity(Some("Custom")), 5);
        assert_eq!(severity(None), 5);
        let mut normal = sample();
        normal.event.type_ = Some("Normal".into());
        let h = Header {
            facility: 3, // daemon
            ..header()
        };
        let mut out = Vec::new();
        write_message(&mut out, &h, &normal, b"x");
        assert!(
            out.starts_with(b"<30>1 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let mut out = Vec::new();
        let h = Header {
            facility: 23,
            ..header()
        };
        write_message(&mut out, &h, &sample(), b"x");
        assert!(out.starts_with(b"<188>1 "));
    }

    #[test]
    fn the_timestamp_is_the_occurrences_own_time_in_utc_with_microseconds() {
        let occ = occurrence(serde_json::json!({
            "metadata": {"uid": "u"},
            "eventTime": "2025-06-30T23:59:59.987654+02:00",
        }));
        assert!(
            message(&occ, "").contains(" 2025-06-30T21:59:59.987654Z "),
            "{}",
            message(&occ, "")
        );
        // Nanoseconds are cut to microseconds, never rounded into the next second.
        let late = occurrence(serde_json::json!({
            "metadata": {"uid": "u"},
            "eventTime": "2025-06-30T23:59:59.999999999Z",
        }));
        assert!(
            message(&late, "").contains(" 2025-06-30T23:59:59.999999Z "),
            "{}",
            message(&late, "")
        );
        let timeless = occurrence(serde_json::json!({"metadata": {"uid": "u"}}));
        assert!(message(&timeless, "").starts_with("<133>1 - node-a "));
    }

    #[test]
    fn hostname_is_the_cluster_name_when_set() {
        let mut occ = sample();
        occ.event.cluster_name = "prod eu".into();
        assert!(message(&occ, "").contains("Z prod_eu kube-event-exporter "));
    }

    #[test]
    fn header_fields_are_printable_ascii_cut_to_their_limit_or_nil() {
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field("a b\tc\u{e9}", 32), "a_b_c_");
        assert_eq!(header_field(&"x".repeat(40), MSGID_MAX).len(), 32);
        let mut occ = sample();
        occ.event.reason = Some("Failed Scheduling ü".repeat(3).into());
        let m = message(&occ, "");
        let msgid = m.split(' ').nth(5).unwrap();
        assert_eq!(msgid, "Failed_Scheduling__Failed_Schedu");
        occ.event.reason = None;
        assert_eq!(message(&occ, "").split(' ').nth(5), Some("-"));
    }

    #[test]
    fn param_values_escape_quote_backslash_and_bracket() {
        let mut occ = sample();
        occ.event.involved_object.name = Some(r#"a"b\c]d"#.into());
        occ.event.involved_object.namespace = None;
        let m = message(&occ, "");
        assert!(
            m.contains(r#"[kee@32473 key="0b8e:3" kind="Pod" name="a\"b\\c\]d"] "#),
            "{m}"
        );
    }

    #[test]
    fn msg_starts_with_the_bom_and_is_the_document_unchanged() {
        let body = "{\"message\":\"line\\nnext ü ]\"}";
        let m = message(&sample(), body);
        let (_, msg) = m.split_once("\"] ").unwrap();
        assert_eq!(msg.as_bytes()[..3], *BOM);
        assert_eq!(&msg[3..], body);
    }

    #[test]
    fn frames_are_length_prefixed_in_octets() {
        let mut out = Vec::new();
        write_frame(&mut out, "ü!".as_bytes());
        write_frame(&mut out, b"");
        assert_eq!(out, "3 ü!0 ".as_bytes());
        let mut out = Vec::new();
        let msg = message(&sample(), "{\"a\":\"é\"}");
        write_frame(&mut out, msg.as_bytes());
        let (len, rest) = std::str::from_utf8(&out).unwrap().split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let s = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(truncate(s, 10), s);
        assert_eq!(truncate(s, 6), s);
        assert_eq!(truncate(s, 5), "aé".as_bytes());
        assert_eq!(truncate(s, 3), "aé".as_bytes());
        assert_eq!(truncate(s, 2), "a".as_bytes());
    }

    #[test]
    fn app_names_are_checked() {
        assert!(check_app_name("k8s.event").is_ok());
        assert!(check_app_name("kube event").is_err());
        assert!(check_app_name(&"a".repeat(49)).is_err());
        assert!(check_app_name("événement").is_err());
    }
}
