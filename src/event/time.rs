//! Timestamps on the hot path: Kubernetes writes them as `2024-01-02T03:04:05Z` (`Time`) and
//! `2024-01-02T03:04:05.000000Z` (`MicroTime`). Reading that one form and writing it back take a
//! few dozen instructions here; jiff's general parser and `strftime` took about 6% of the
//! exporter's CPU in the benchmark profile. Every other input goes to jiff as before, so the
//! result is the same timestamp, the same text and the same error, only sooner.

use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use serde::de::{Error, Visitor};
use serde::{Deserialize, Deserializer};

use super::json::Out;

/// `YYYY-MM-DDTHH:MM:SS[.F{1,9}]Z` with a year from 1000 to 9998 and a second below 60, read
/// as jiff's parser reads it; None for anything else (including invalid dates), which the caller
/// hands to jiff.
pub fn parse_canonical(s: &[u8]) -> Option<Timestamp> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' {
        return None;
    }
    if s[16] != b':' || s[s.len() - 1] != b'Z' {
        return None;
    }
    // Each digit is taken as it comes and checked once at the end (`bad`): a closure returning
    // an Option per field cost about 200 instructions a timestamp, three timestamps an event.
    let mut bad = 0u8;
    let mut digit = |i: usize| -> i64 {
        let d = s[i].wrapping_sub(b'0');
        bad |= u8::from(d > 9);
        i64::from(d)
    };
    let year = digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3);
    let month = digit(5) * 10 + digit(6);
    let day = digit(8) * 10 + digit(9);
    let hour = digit(11) * 10 + digit(12);
    let minute = digit(14) * 10 + digit(15);
    let second = digit(17) * 10 + digit(18);
    let nanos = match &s[19..s.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let mut n = 0;
            for i in 20..20 + fraction.len() {
                n = n * 10 + digit(i);
            }
            n * 10i64.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    if bad != 0
        || !(1000..=9998).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Timestamp::new(seconds, nanos as i32).ok()
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Appends `t` as `Time` serializes it (`%Y-%m-%dT%H:%M:%SZ`), without the quotes.
pub fn write_time<O: Out>(out: &mut O, t: Timestamp) {
    if !write_fast(out, t, false) {
        out.extend_from_slice(
            jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t)
                .expect("a timestamp formats")
                .as_bytes(),
        );
    }
}

/// Appends `t` as `MicroTime` serializes it (`%Y-%m-%dT%H:%M:%S%.6fZ`), without the quotes.
pub fn write_micro_time<O: Out>(out: &mut O, t: Timestamp) {
    if !write_fast(out, t, true) {
        out.extend_from_slice(
            jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", t)
                .expect("a timestamp formats")
                .as_bytes(),
        );
    }
}

/// The common case, 1970 to 9999: false (nothing written) otherwise.
fn write_fast<O: Out>(out: &mut O, t: Timestamp, micros: bool) -> bool {
    let seconds = t.as_second();
    if !(0..253_402_300_800).contains(&seconds) {
        return false;
    }
    out.extend_from_slice(&date_time(seconds));
    if micros {
        let mut fraction = *b".000000Z";
        put_digits(&mut fraction[1..7], i64::from(t.subsec_microsecond()));
        out.extend_from_slice(&fraction);
    } else {
        out.push(b'Z');
    }
    true
}

thread_local! {
    /// The last second written and its text: an event's timestamps, and those of events
    /// read together, are mostly the same second.
    static LAST: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((-1, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since 1970 (before 10000).
fn date_time(seconds: i64) -> [u8; 19] {
    let (last, text) = LAST.get();
    if last == seconds {
        return text;
    }
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let in_day = seconds % 86_400;
    let mut buf = *b"0000-00-00T00:00:00";
    put_digits(&mut buf[0..4], year);
    put_digits(&mut buf[5..7], month);
    put_digits(&mut buf[8..10], day);
    put_digits(&mut buf[11..13], in_day / 3600);
    put_digits(&mut buf[14..16], in_day / 60 % 60);
    put_digits(&mut buf[17..19], in_day % 60);
    LAST.set((seconds, buf));
    buf
}

/// `n` in decimal, zero-padded to the width of `to`.
fn put_digits(to: &mut [u8], mut n: i64) {
    for d in to.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// jiff's `Timestamp` deserializer with the canonical form read first: the same values and the
/// same errors ("a timestamp string" is what jiff expects).
struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp string")
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Timestamp, E> {
        match parse_canonical(v) {
            Some(t) => Ok(t),
            None => jiff::fmt::temporal::DateTimeParser::new()
                .parse_timestamp(v)
                .map_err(E::custom),
        }
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Timestamp, E> {
        self.visit_bytes(v.as_bytes())
    }
}

/// `Option<Timestamp>` as serde reads an `Option`: `null` is None.
struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<Timestamp>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(TimestampVisitor).map(Some)
    }
}

/// `deserialize_with` for `Option<Time>`: as k8s-openapi reads it.
pub fn option_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
    Ok(d.deserialize_option(OptionVisitor)?.map(Time))
}

/// `deserialize_with` for `Option<MicroTime>`: as k8s-openapi reads it.
pub fn option_micro_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MicroTime>, D::Error> {
    Ok(d.deserialize_option(OptionVisitor)?.map(MicroTime))
}

/// An `Option<Time>` read by [`option_time`], for visitors that read field by field
/// (`next_value::<OptionTime>()`), where `deserialize_with` is not available.
pub struct OptionTime(pub Option<Time>);

impl<'de> Deserialize<'de> for OptionTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        option_time(d).map(OptionTime)
    }
}

/// An `Option<MicroTime>` read by [`option_micro_time`], as [`OptionTime`].
pub struct OptionMicroTime(pub Option<MicroTime>);

impl<'de> Deserialize<'de> for OptionMicroTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        option_micro_time(d).map(OptionMicroTime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn jiff_time(t: Timestamp) -> String {
        jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap()
    }

    fn jiff_micro(t: Timestamp) -> String {
        jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", t).unwrap()
    }

    fn fast(t: Timestamp, micro: bool) -> String {
        let mut out = Vec::new();
        if micro {
            write_micro_time(&mut out, t)
        } else {
            write_time(&mut out, t)
        }
        String::from_utf8(out).unwrap()
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        prop_oneof![
            // The whole range jiff supports, …
            (min..=max, 0i32..1_000_000_000),
            // … and the years the fast paths take, with and without a fraction.
            (
                0i64..253_402_300_800,
                prop_oneof![Just(0), 0i32..1_000_000_000]
            ),
            (-100_000i64..100_000, 0i32..1_000_000_000),
        ]
        .prop_filter_map("in range", |(s, n)| {
            Timestamp::new(s, if s < 0 { -n } else { n }).ok()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Written as `strftime` writes it, to the byte, for every timestamp.
        #[test]
        fn writes_as_strftime(t in timestamp()) {
            prop_assert_eq!(fast(t, false), jiff_time(t));
            prop_assert_eq!(fast(t, true), jiff_micro(t));
        }

        /// Read as jiff reads it: the same timestamp, or jiff's error.
        #[test]
        fn reads_as_jiff(
            t in timestamp(),
            form in 0usize..4,
            tweak in prop::option::of((0usize..27, prop_oneof![Just(b'0'), Just(b'9'), Just(b'x'), Just(b'z'), Just(b'T'), Just(b'.')])),
        ) {
            let mut text = match form {
                0 => jiff_time(t),
                1 => jiff_micro(t),
                2 => jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.fZ", t).unwrap(),
                _ => jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.3f+00:00", t).unwrap(),
            }
            .into_bytes();
            if let Some((at, b)) = tweak
                && at < text.len()
            {
                text[at] = b;
            }
            let text = String::from_utf8(text).unwrap();
            let want = text.parse::<Timestamp>().map_err(|e| e.to_string());
            let got: Result<Timestamp, String> = TimestampVisitor
                .visit_str::<serde::de::value::Error>(&text)
                .map_err(|e| e.to_string());
            prop_assert_eq!(got, want, "{}", text);
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let mut t = Timestamp::new(946_684_800, 0).unwrap(); // 2000-01-01
        for _ in 0..(400 * 366) {
            let text = jiff_time(t);
            assert_eq!(parse_canonical(text.as_bytes()), Some(t), "{text}");
            assert_eq!(fast(t, false), text);
            t = t.checked_add(jiff::SignedDuration::from_hours(24)).unwrap();
        }
    }

    #[test]
    fn invalid_dates_and_leap_seconds_go_to_jiff() {
        for text in [
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "0999-01-01T00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
        ] {
            assert_eq!(parse_canonical(text.as_bytes()), None, "{text}");
        }
        assert_eq!(
            parse_canonical(b"2024-02-29T23:59:59.5Z"),
            Some("2024-02-29T23:59:59.5Z".parse().unwrap())
        );
    }

    #[test]
    fn null_and_wrong_types_read_as_k8s_openapi_reads_them() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Fast {
            #[serde(default, deserialize_with = "option_time")]
            t: Option<Time>,
            #[serde(default, deserialize_with = "option_micro_time")]
            m: Option<MicroTime>,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Slow {
            #[serde(default)]
            t: Option<Time>,
            #[serde(default)]
            m: Option<MicroTime>,
        }
        for json in [
            r#"{}"#,
            r#"{"t":null,"m":null}"#,
            r#"{"t":"2024-01-02T03:04:05Z","m":"2024-01-02T03:04:05.123456Z"}"#,
            r#"{"t":"2024-01-02T03:04:05+02:00"}"#,
            r#"{"t":5}"#,
            r#"{"m":[]}"#,
            r#"{"t":"yesterday"}"#,
            r#"{"t":"2024-02-30T03:04:05Z"}"#,
        ] {
            let fast = serde_json::from_str::<Fast>(json).map_err(|e| e.to_string());
            let slow = serde_json::from_str::<Slow>(json).map_err(|e| e.to_string());
            match (fast, slow) {
                (Ok(f), Ok(s)) => assert_eq!((f.t, f.m), (s.t, s.m), "{json}"),
                (f, s) => assert_eq!(f.err(), s.err(), "{json}"),
            }
        }
    }
}
