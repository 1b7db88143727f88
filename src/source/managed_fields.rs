//! Leaving `managedFields` out of a watch frame before it is decoded.
//!
//! A real API server writes managedFields on every event: the writer's field tree, a few hundred
//! bytes of short keys that nothing exports. serde_json reads them token by token to skip them,
//! about 11 instructions a byte, a quarter of the work of decoding a frame. Here the key is found
//! by a vectorised search and its list is delimited by reading only quotes, backslashes and
//! brackets, sixteen bytes at a time; the frame is copied without the list's items, and that copy
//! is what is decoded.
//!
//! The items are not read, so they are not checked either: a frame decodes as if its
//! managedFields list were empty, whatever the list holds, as long as its strings and brackets
//! close. Nothing of it is kept, and an event is not lost for a part of it we would throw away.
//! Everything else in the frame is read and checked as before.
//!
//! The search finds `,"managedFields":[` or `{"managedFields":[`, as API servers write it
//! (compact, no escapes). In valid JSON those bytes can only be that key with a list value: a
//! quote inside a string is escaped, so a `,` or `{` followed by an unescaped quote is outside
//! any string. Which object holds the key does not matter: no part of an event that is kept holds
//! a list under that name (labels and annotations hold strings: a list there is refused, empty
//! or not). A frame without the key, or with it written otherwise, is decoded as it came.

use memchr::memmem::Finder;

/// Finds and cuts `managedFields` lists; holds the searcher and the buffer the cut frame is
/// written to, both made once per watch.
pub struct Cutter {
    finder: Finder<'static>,
    out: String,
}

impl Default for Cutter {
    fn default() -> Self {
        Self {
            finder: Finder::new(KEY),
            out: String::new(),
        }
    }
}

const KEY: &[u8] = b"\"managedFields\":[";

impl Cutter {
    /// `frame` with the items of its first `managedFields` list left out, or None when there is
    /// nothing to cut.
    pub fn cut(&mut self, frame: &str) -> Option<&str> {
        let b = frame.as_bytes();
        let at = self.finder.find(b)?;
        if at == 0 || !matches!(b[at - 1], b',' | b'{') {
            return None;
        }
        let open = at + KEY.len() - 1;
        let close = list_end(b, open)? - 1;
        if close == open + 1 {
            return None;
        }
        // Both ends are ASCII brackets: the pieces are whole UTF-8 text.
        self.out.clear();
        self.out.reserve(frame.len() - (close - open - 1));
        self.out.push_str(&frame[..=open]);
        self.out.push_str(&frame[close..]);
        Some(&self.out)
    }
}

/// Just past the `]` that closes the list whose `[` is at `open`, or None when the frame ends
/// first. Only quotes, backslashes and brackets are read.
fn list_end(b: &[u8], open: usize) -> Option<usize> {
    let mut scan = Scan::default();
    let mut at = open;
    while at < b.len() {
        let block = &b[at..b.len().min(at + 16)];
        let step = if block.len() == 16 && !scan.escaped {
            scan.block(block.try_into().expect("16 bytes"))
        } else {
            Step::Slow
        };
        let step = match step {
            Step::Slow => scan.bytes(block),
            step => step,
        };
        match step {
            Step::Closed(i) => return Some(at + i + 1),
            _ => at += block.len(),
        }
    }
    None
}

enum Step {
    /// The list closes at this index of the block.
    Closed(usize),
    /// The block is read; the list goes on.
    Next,
    /// The block has a backslash: read it byte by byte.
    Slow,
}

#[derive(Default)]
struct Scan {
    depth: u32,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
}

impl Scan {
    fn bytes(&mut self, block: &[u8]) -> Step {
        for (i, &c) in block.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if c == b'\\' {
                    self.escaped = true;
                } else if c == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match c {
                b'"' => self.in_string = true,
                b'[' => self.depth += 1,
                b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Step::Closed(i);
                    }
                }
                _ => {}
            }
        }
        Step::Next
    }

    /// Sixteen bytes without a backslash at once: which bytes are quotes and brackets, as bit
    /// masks; which are inside strings, as the running parity of the quotes before them.
    fn block(&mut self, block: &[u8; 16]) -> Step {
        let [quotes, backslashes, opens, closes] = masks(block, [b'"', b'\\', b'[', b']']);
        if backslashes != 0 {
            return Step::Slow;
        }
        // Bit i: byte i is inside a string (an opening quote counts as inside, a closing one
        // does not; neither is a bracket).
        let mut inside = quotes;
        inside ^= inside << 1;
        inside ^= inside << 2;
        inside ^= inside << 4;
        inside ^= inside << 8;
        if self.in_string {
            inside = !inside;
        }
        inside &= 0xffff;
        self.in_string = inside & 0x8000 != 0;
        let mut brackets = (opens | closes) & !inside;
        while brackets != 0 {
            let i = brackets.trailing_zeros();
            if opens & (1 << i) != 0 {
                self.depth += 1;
            } else {
                self.depth -= 1;
                if self.depth == 0 {
                    return Step::Closed(i as usize);
                }
            }
            brackets &= brackets - 1;
        }
        Step::Next
    }
}

/// For each needle, the bit mask of the bytes of `block` equal to it (bit i for byte i).
#[cfg(target_arch = "x86_64")]
fn masks(block: &[u8; 16], needles: [u8; 4]) -> [u32; 4] {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    // SAFETY: SSE2 is part of x86_64, and the load reads exactly the 16 bytes of `block`
    // (unaligned load).
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        needles.map(|n| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(n as i8))) as u32)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; 16], needles: [u8; 4]) -> [u32; 4] {
    needles.map(|n| {
        block
            .iter()
            .enumerate()
            .fold(0, |m, (i, &c)| m | (u32::from(c == n) << i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::frames::{Decoder, decode_frame};
    use proptest::prelude::*;

    fn cut_of(frame: &str) -> Option<String> {
        Cutter::default().cut(frame).map(str::to_owned)
    }

    const MF: &str = r#"[{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2026-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:count":{},"f:involvedObject":{},"k:{\"uid\":\"a]\"}":{".":{}}}}]"#;

    #[test]
    fn the_managed_fields_of_the_event_are_left_out() {
        let frame = format!(
            r#"{{"type":"ADDED","object":{{"kind":"Event","metadata":{{"name":"e","labels":{{"a":"b"}},"managedFields":{MF},"uid":"u"}},"count":2}}}}"#
        );
        assert_eq!(
            cut_of(&frame).as_deref(),
            Some(
                r#"{"type":"ADDED","object":{"kind":"Event","metadata":{"name":"e","labels":{"a":"b"},"managedFields":[],"uid":"u"},"count":2}}"#
            )
        );
        // First in its object, and alone in it.
        let frame = format!(r#"{{"object":{{"metadata":{{"managedFields":{MF}}}}}}}"#);
        assert_eq!(
            cut_of(&frame).as_deref(),
            Some(r#"{"object":{"metadata":{"managedFields":[]}}}"#)
        );
    }

    #[test]
    fn only_the_key_as_api_servers_write_it_is_cut() {
        for frame in [
            // The words inside a string: its quotes are escaped.
            r#"{"type":"ADDED","object":{"message":"\"managedFields\":[1]","metadata":{"uid":"u"}}}"#.to_string(),
            // A key that ends with them.
            r#"{"type":"ADDED","object":{"metadata":{"a\"managedFields":[1]}}}"#.to_string(),
            // Not a list, or an empty one.
            r#"{"type":"ADDED","object":{"metadata":{"managedFields":"x"}}}"#.to_string(),
            r#"{"type":"ADDED","object":{"metadata":{"managedFields":[]}}}"#.to_string(),
            // With whitespace, or the key written with an escape: serde_json reads the same key,
            // this search does not find it (the frame is decoded as it came).
            format!(r#"{{"object":{{"metadata":{{"managedFields": {MF}}}}}}}"#),
            format!(r#"{{"object":{{"metadata":{{ "managedFields":{MF}}}}}}}"#),
            format!(r#"{{"object":{{"metadata":{{"managed\u0046ields":{MF}}}}}}}"#),
            // A list that does not close.
            r#"{"object":{"metadata":{"managedFields":[["x"]}}}"#.to_string(),
            r#"{"object":{"metadata":{"managedFields":["x]"}}}"#.to_string(),
        ] {
            assert_eq!(cut_of(&frame), None, "{frame}");
        }
    }

    #[test]
    fn the_items_are_not_read() {
        // What serde_json refuses inside the list is left out unread: the event is decoded as
        // if the list were empty.
        for items in [
            r#"{"a" 1}"#,
            r#"tru"#,
            r#"01"#,
            "\"a\u{1}b\"",
            r#""\x""#,
            r#"{1:2}"#,
        ] {
            let frame = |items: &str| {
                format!(
                    r#"{{"type":"ADDED","object":{{"metadata":{{"uid":"u","managedFields":[{items}]}},"count":3}}}}"#
                )
            };
            assert!(decode_frame(&frame(items)).is_err(), "{items}");
            let got = Decoder::default().decode(&frame(items));
            assert_eq!(
                format!("{got:?}"),
                format!("{:?}", decode_frame(&frame("")))
            );
            assert!(got.is_ok(), "{items}");
        }
    }

    #[test]
    fn masks_mark_each_byte_equal_to_its_needle() {
        let block: [u8; 16] = *br#"a"b\c[d]e"\[]]"["#;
        let want = |n: u8| (0..16).fold(0u32, |m, i| m | (u32::from(block[i] == n) << i));
        assert_eq!(
            masks(&block, [b'"', b'\\', b'[', b']']),
            [want(b'"'), want(b'\\'), want(b'['), want(b']')]
        );
    }

    /// Any JSON value, of every kind, nested a few levels; strings with quotes, backslashes,
    /// brackets and controls among other characters.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\"\\\\\\[\\]\\{\\}a\u{1}é]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[\"\\\\\\[\\]a]{0,12}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// A list's end is found exactly, wherever the blocks of sixteen bytes fall.
        #[test]
        fn list_end_finds_the_closing_bracket(
            items in prop::collection::vec(json(), 0..4),
            pretty in any::<bool>(),
            shift in 0usize..16,
        ) {
            let list = serde_json::Value::Array(items);
            let text = if pretty { serde_json::to_string_pretty(&list) } else { serde_json::to_string(&list) }.unwrap();
            let framed = format!("{}{text},\"x\":[1]}}", " ".repeat(shift));
            prop_assert_eq!(list_end(framed.as_bytes(), shift), Some(shift + text.len()));
            // Cut short, it does not close.
            prop_assert_eq!(list_end(&framed.as_bytes()[..shift + text.len() - 1], shift), None);
        }

        /// A frame holding a list under the key decodes as the frame with that list empty: the
        /// same event, or the same error, wherever the key is.
        #[test]
        fn a_cut_frame_decodes_as_with_an_empty_list(
            items in prop::collection::vec(json(), 1..4),
            place in 0usize..3,
        ) {
            let list = serde_json::to_string(&serde_json::Value::Array(items)).unwrap();
            let frame = |list: &str| match place {
                0 => format!(r#"{{"type":"ADDED","object":{{"metadata":{{"uid":"u","managedFields":{list},"name":"n"}},"count":2}}}}"#),
                // Elsewhere in the event: an unknown field, or a label (a list there is refused).
                1 => format!(r#"{{"type":"MODIFIED","object":{{"x":{{"managedFields":{list}}},"metadata":{{"uid":"u"}}}}}}"#),
                _ => format!(r#"{{"type":"DELETED","object":{{"metadata":{{"labels":{{"managedFields":{list}}},"uid":"u"}}}}}}"#),
            };
            prop_assert!(cut_of(&frame(&list)).is_some());
            prop_assert_eq!(
                format!("{:?}", Decoder::default().decode(&frame(&list))),
                format!("{:?}", decode_frame(&frame(&list)))
            );
            if place < 2 {
                prop_assert_eq!(
                    format!("{:?}", Decoder::default().decode(&frame(&list))),
                    format!("{:?}", decode_frame(&frame("[]")))
                );
            }
        }
    }
}
