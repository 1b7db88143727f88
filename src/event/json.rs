//! The default JSON document of an event, written directly: the bytes `serde_json::to_vec` makes
//! of [`Event`] (field order, skipped fields, escaping, number and timestamp formats), in about
//! half the time. Encoding through serde took about 14% of the exporter's CPU in the benchmark
//! profile: field-by-field dispatch, every string escaped through a formatter, timestamps through
//! `strftime` into a `String` each, and a buffer regrown from 128 bytes.
//!
//! Parts that events rarely carry (owner references, `series`, `related`) are
//! written by serde_json itself, which produces the same bytes inside a document as alone.
//! `tests::writes_what_serde_json_writes` holds the two to the byte.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use super::{Event, InvolvedObject, Meta, time};

/// What the document is written into: a `Vec`, or a worker's `BytesMut` arena.
pub trait Out {
    fn push(&mut self, b: u8);
    fn extend_from_slice(&mut self, bytes: &[u8]);
    fn reserve(&mut self, additional: usize);
}

impl Out for Vec<u8> {
    fn push(&mut self, b: u8) {
        Vec::push(self, b)
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes)
    }

    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional)
    }
}

impl Out for BytesMut {
    fn push(&mut self, b: u8) {
        self.put_u8(b)
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        BytesMut::extend_from_slice(self, bytes)
    }

    fn reserve(&mut self, additional: usize) {
        BytesMut::reserve(self, additional)
    }
}

/// Appends the JSON of `e` to `out`.
pub fn write_event<O: Out>(out: &mut O, e: &Event) {
    out.extend_from_slice(b"{\"metadata\":");
    write_meta(out, &e.metadata);
    opt_str(out, b",\"reason\":", e.reason.as_deref());
    opt_str(out, b",\"message\":", e.message.as_deref());
    if let Some(source) = &e.source {
        out.extend_from_slice(b",\"source\":");
        let mut o = Object::new(out);
        o.opt_str(b"component", source.component.as_deref());
        o.opt_str(b"host", source.host.as_deref());
        o.end();
    }
    if let Some(t) = &e.first_timestamp {
        out.extend_from_slice(b",\"firstTimestamp\":");
        quoted_time(out, t.0, false);
    }
    if let Some(t) = &e.last_timestamp {
        out.extend_from_slice(b",\"lastTimestamp\":");
        quoted_time(out, t.0, false);
    }
    if let Some(n) = e.count {
        out.extend_from_slice(b",\"count\":");
        write_int(out, i64::from(n));
    }
    opt_str(out, b",\"type\":", e.type_.as_deref());
    out.extend_from_slice(b",\"eventTime\":");
    match &e.event_time {
        Some(t) => quoted_time(out, t.0, true),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(series) = &e.series {
        out.extend_from_slice(b",\"series\":");
        serde(out, series);
    }
    opt_str(out, b",\"action\":", e.action.as_deref());
    if let Some(related) = &e.related {
        out.extend_from_slice(b",\"related\":");
        serde(out, related);
    }
    opt_str(
        out,
        b",\"reportingComponent\":",
        e.reporting_component.as_deref(),
    );
    opt_str(
        out,
        b",\"reportingInstance\":",
        e.reporting_instance.as_deref(),
    );
    out.extend_from_slice(b",\"clusterName\":");
    write_str(out, &e.cluster_name);
    out.extend_from_slice(b",\"involvedObject\":");
    write_involved(out, &e.involved_object);
    out.push(b'}');
}

/// [`Meta`] as it serializes (as k8s-openapi's `ObjectMeta`): alphabetical, unset fields left out.
fn write_meta<O: Out>(out: &mut O, m: &Meta) {
    let mut o = Object::new(out);
    if let Some(a) = &m.annotations {
        o.key(b"annotations");
        write_map(o.out, a);
    }
    if let Some(t) = &m.creation_timestamp {
        o.key(b"creationTimestamp");
        quoted_time(o.out, t.0, false);
    }
    if let Some(n) = m.deletion_grace_period_seconds {
        o.key(b"deletionGracePeriodSeconds");
        write_int(o.out, n);
    }
    if let Some(t) = &m.deletion_timestamp {
        o.key(b"deletionTimestamp");
        quoted_time(o.out, t.0, false);
    }
    if let Some(f) = &m.finalizers {
        o.key(b"finalizers");
        serde(o.out, f);
    }
    o.opt_str(b"generateName", m.generate_name.as_deref());
    if let Some(n) = m.generation {
        o.key(b"generation");
        write_int(o.out, n);
    }
    if let Some(l) = &m.labels {
        o.key(b"labels");
        write_map(o.out, l);
    }
    o.opt_str(b"name", m.name.as_deref());
    o.opt_str(b"namespace", m.namespace.as_deref());
    if let Some(r) = &m.owner_references {
        o.key(b"ownerReferences");
        serde(o.out, r);
    }
    o.opt_str(b"resourceVersion", m.resource_version.as_deref());
    o.opt_str(b"selfLink", m.self_link.as_deref());
    o.opt_str(b"uid", m.uid.as_deref());
    o.end();
}

/// `InvolvedObject` as its derive serializes it.
fn write_involved<O: Out>(out: &mut O, io: &InvolvedObject) {
    let mut o = Object::new(out);
    o.opt_str(b"kind", io.kind.as_deref());
    o.opt_str(b"namespace", io.namespace.as_deref());
    o.opt_str(b"name", io.name.as_deref());
    o.opt_str(b"uid", io.uid.as_deref());
    o.opt_str(b"apiVersion", io.api_version.as_deref());
    o.opt_str(b"resourceVersion", io.resource_version.as_deref());
    o.opt_str(b"fieldPath", io.field_path.as_deref());
    if !io.labels.is_empty() {
        o.key(b"labels");
        write_map(o.out, &io.labels);
    }
    if !io.annotations.is_empty() {
        o.key(b"annotations");
        write_map(o.out, &io.annotations);
    }
    if !io.owner_references.is_empty() {
        o.key(b"ownerReferences");
        serde(o.out, &io.owner_references);
    }
    o.key(b"deleted");
    o.out
        .extend_from_slice(if io.deleted { b"true" } else { b"false" });
    o.end();
}

/// An object being written: the comma before every key but the first.
struct Object<'a, O: Out> {
    out: &'a mut O,
    first: bool,
}

impl<'a, O: Out> Object<'a, O> {
    fn new(out: &'a mut O) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// `"key":` (the keys are plain ASCII, nothing to escape).
    fn key(&mut self, key: &[u8]) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(b"\":");
    }

    fn opt_str(&mut self, key: &[u8], value: Option<&str>) {
        if let Some(v) = value {
            self.key(key);
            write_str(self.out, v);
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// `,"key":"value"` when the value is set (`key` written with its comma, quotes and colon).
fn opt_str<O: Out>(out: &mut O, key: &[u8], value: Option<&str>) {
    if let Some(v) = value {
        out.extend_from_slice(key);
        write_str(out, v);
    }
}

fn write_map<O: Out>(out: &mut O, map: &BTreeMap<String, String>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_str(out, v);
    }
    out.push(b'}');
}

fn quoted_time<O: Out>(out: &mut O, t: jiff::Timestamp, micros: bool) {
    out.push(b'"');
    if micros {
        time::write_micro_time(out, t);
    } else {
        time::write_time(out, t);
    }
    out.push(b'"');
}

/// A JSON string, escaped as serde_json escapes it: `"`, `\` and the control characters below
/// 0x20 (`\b \t \n \f \r` by name, the others as `\u00xx`), nothing else. Text without them
/// (nearly all) is copied as it is.
fn write_str<O: Out>(out: &mut O, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        let mut unicode = *b"\\u00xx";
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..0x20 => {
                    unicode[4] = HEX[(b >> 4) as usize];
                    unicode[5] = HEX[(b & 0xf) as usize];
                    &unicode
                }
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(escape);
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
    }
    out.push(b'"');
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Whether serde_json would escape any byte of `bytes`: a control character, `"` or `\`.
///
/// Eight bytes at a time, as a word (most values are short, and a byte-by-byte loop over them
/// took 4% of the exporter's instructions): a byte below 0x20 borrows when 0x20 is taken from it,
/// and a quote or backslash becomes a zero byte when xored with it, which borrows when 1 is taken
/// from it. Bytes of 0x80 and above never count (`& !w` clears their high bit). The tail is
/// padded with a byte that needs no escape.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    fn any_in(w: u64) -> bool {
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = w ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        (control | quote | backslash) & HIGH != 0
    }
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        if any_in(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
            return true;
        }
    }
    let tail = words.remainder();
    let mut padded = [b' '; 8];
    padded[..tail.len()].copy_from_slice(tail);
    any_in(u64::from_le_bytes(padded))
}

fn write_int<O: Out>(out: &mut O, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// What serde_json writes for `value` (the parts events rarely carry).
fn serde<O: Out, T: Serialize + ?Sized>(out: &mut O, value: &T) {
    let json = serde_json::to_vec(value).expect("event parts always serialize");
    out.extend_from_slice(&json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Reference, Series, Source, Text};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
    use proptest::prelude::*;

    #[test]
    fn needs_escape_finds_every_escaped_byte_in_every_position() {
        let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in 1..=40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    // The other bytes: plain, or bytes next to the thresholds that must not count.
                    for fill in [b'a', 0x20, 0x21, b'"' + 1, b'\\' - 1, 0x7f, 0x80, 0xff] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = b;
                        assert_eq!(needs_escape(&bytes), escaped(b), "{bytes:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    /// Short text of every kind: plain, escapes, control characters, quotes, non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z0-9./:_ -]{0,40}",
            1 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
            1 => prop::collection::vec(
                prop_oneof![Just('"'), Just('\\'), Just('\n'), Just('\u{1}'), Just('\u{7f}'), Just('é'), Just('<'), Just('a')],
                0..40,
            )
            .prop_map(String::from_iter),
        ]
    }

    fn opt_text() -> impl Strategy<Value = Option<Text>> {
        prop::option::of(text().prop_map(Text::from))
    }

    fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(text(), text(), 0..4)
    }

    fn timestamp() -> impl Strategy<Value = jiff::Timestamp> {
        let (min, max) = (
            jiff::Timestamp::MIN.as_second(),
            jiff::Timestamp::MAX.as_second(),
        );
        prop_oneof![
            3 => (0i64..4_102_444_800, prop_oneof![Just(0), 0i32..1_000_000_000]),
            1 => (min..=max, 0i32..1_000_000_000),
        ]
        .prop_filter_map("in range", |(s, n)| {
            jiff::Timestamp::new(s, if s < 0 { -n } else { n }).ok()
        })
    }

    fn owner() -> impl Strategy<Value = OwnerReference> {
        (
            text(),
            text(),
            text(),
            text(),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                |(api_version, kind, name, uid, controller)| OwnerReference {
                    api_version,
                    kind,
                    name,
                    uid,
                    controller,
                    block_owner_deletion: None,
                },
            )
    }

    fn meta() -> impl Strategy<Value = Meta> {
        (
            (
                prop::option::of(map()),
                prop::option::of(timestamp()),
                prop::option::of(any::<i64>()),
                prop::option::of(timestamp()),
                prop::option::of(prop::collection::vec(text(), 0..3)),
                opt_text(),
                prop::option::of(any::<i64>()),
                prop::option::of(map()),
            ),
            (
                opt_text(),
                opt_text(),
                prop::option::of(prop::collection::vec(owner(), 0..2)),
                opt_text(),
                opt_text(),
                opt_text(),
            ),
        )
            .prop_map(
                |(
                    (
                        annotations,
                        created,
                        grace,
                        deleted,
                        finalizers,
                        generate_name,
                        generation,
                        labels,
                    ),
                    (name, namespace, owner_references, resource_version, self_link, uid),
                )| Meta {
                    annotations,
                    creation_timestamp: created.map(Time),
                    deletion_grace_period_seconds: grace,
                    deletion_timestamp: deleted.map(Time),
                    finalizers,
                    generate_name,
                    generation,
                    labels,
                    name,
                    namespace,
                    owner_references,
                    resource_version,
                    self_link,
                    uid,
                },
            )
    }

    fn involved() -> impl Strategy<Value = InvolvedObject> {
        (
            (
                opt_text(),
                opt_text(),
                opt_text(),
                opt_text(),
                opt_text(),
                opt_text(),
                opt_text(),
            ),
            (
                map(),
                map(),
                prop::collection::vec(owner(), 0..2),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (kind, namespace, name, uid, api_version, resource_version, field_path),
                    (labels, annotations, owner_references, deleted),
                )| InvolvedObject {
                    kind,
                    namespace,
                    name,
                    uid,
                    api_version,
                    resource_version,
                    field_path,
                    labels,
                    annotations,
                    owner_references,
                    deleted,
                },
            )
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            (
                meta(),
                opt_text(),
                opt_text(),
                prop::option::of((opt_text(), opt_text())),
                prop::option::of(timestamp()),
                prop::option::of(timestamp()),
                prop::option::of(any::<i32>()),
                opt_text(),
            ),
            (
                prop::option::of(timestamp()),
                prop::option::of((
                    prop::option::of(any::<i32>()),
                    prop::option::of(timestamp()),
                )),
                opt_text(),
                prop::option::of((opt_text(), opt_text())),
                opt_text(),
                opt_text(),
                text().prop_map(Text::from),
                involved(),
            ),
        )
            .prop_map(
                |(
                    (metadata, reason, message, source, first, last, count, type_),
                    (event_time, series, action, related, rc, ri, cluster_name, involved_object),
                )| Event {
                    metadata,
                    reason,
                    message,
                    source: source.map(|(component, host)| Source { component, host }),
                    first_timestamp: first.map(Time),
                    last_timestamp: last.map(Time),
                    count,
                    type_,
                    event_time: event_time.map(MicroTime),
                    series: series.map(|(count, t)| Series {
                        count,
                        last_observed_time: t.map(MicroTime),
                    }),
                    action,
                    related: related.map(|(kind, name)| Reference {
                        kind,
                        name,
                        ..Reference::default()
                    }),
                    reporting_component: rc,
                    reporting_instance: ri,
                    cluster_name,
                    involved_object,
                },
            )
    }

    fn written(e: &Event) -> String {
        let mut out = Vec::new();
        write_event(&mut out, e);
        String::from_utf8(out).expect("UTF-8")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn writes_what_serde_json_writes(e in event()) {
            let want = serde_json::to_string(&e).unwrap();
            prop_assert_eq!(&written(&e), &want);
            let mut arena = BytesMut::new();
            write_event(&mut arena, &e);
            prop_assert_eq!(&arena[..], want.as_bytes());
        }

        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(s in prop::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter)) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn an_empty_event_and_a_kube_sim_event() {
        let empty = Event::default();
        assert_eq!(written(&empty), serde_json::to_string(&empty).unwrap());
        let line = r#"{"apiVersion":"v1","count":3,"firstTimestamp":"2026-11-28T06:01:46Z","involvedObject":{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"app-7","namespace":"team-7","uid":"69e6916c"},"kind":"Event","lastTimestamp":"2026-11-28T06:01:47Z","message":"Created pod: app-7-x69","metadata":{"creationTimestamp":"2026-11-28T06:01:46Z","name":"app-7.6d8f","namespace":"team-7","resourceVersion":"102","uid":"c407"},"reason":"SuccessfulCreate","reportingComponent":"replicaset-controller","reportingInstance":"node-4","source":{"component":"replicaset-controller","host":"node-4"},"type":"Normal","eventTime":"2026-11-28T06:01:46.123456Z"}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(written(&e), serde_json::to_string(&e).unwrap());
    }

    #[test]
    fn every_byte_below_0x80_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..0x80 {
            let s = format!("a{}b", b as char);
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }

    #[test]
    fn integers_at_their_limits() {
        for n in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            i64::MAX,
            i64::MIN,
            i64::from(i32::MIN),
        ] {
            let mut out = Vec::new();
            write_int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
