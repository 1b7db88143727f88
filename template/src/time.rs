//! Go reference-time layouts (`2006-01-02T15:04:05Z07:00`) for sprig's `date`, `dateInZone`
//! and `toDate`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use serde_json::Value;

/// A time in a zone, as Go's `time.Time`.
pub(crate) struct GoTime {
    pub dt: DateTime,
    pub offset: Offset,
    pub abbrev: String,
}

impl GoTime {
    pub fn new(ts: Timestamp, tz: &TimeZone) -> GoTime {
        // UTC, the common case (`date`), without a zone lookup.
        if tz == &TimeZone::UTC {
            return GoTime {
                dt: Offset::UTC.to_datetime(ts),
                offset: Offset::UTC,
                abbrev: "UTC".to_owned(),
            };
        }
        let zoned = ts.to_zoned(tz.clone());
        let abbrev = match tz.iana_name() {
            Some("UTC") | None if zoned.offset() == Offset::UTC => "UTC".to_owned(),
            _ => zoned
                .time_zone()
                .to_offset_info(ts)
                .abbreviation()
                .to_string(),
        };
        GoTime {
            dt: zoned.datetime(),
            offset: zoned.offset(),
            abbrev,
        }
    }
}

/// Reads a time from a template value: an RFC 3339 string, or unix seconds (as sprig does for
/// ints). Anything else is not a time.
pub(crate) fn to_timestamp(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => s.parse::<Timestamp>().ok(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Timestamp::from_second(i).ok()
            } else {
                let f = n.as_f64()?;
                Timestamp::from_second(f.trunc() as i64).ok()
            }
        }
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats like Go's `Time.Format(layout)`.
pub(crate) fn format(t: &GoTime, layout: &str) -> String {
    let dt = &t.dt;
    let mut out = String::with_capacity(layout.len() + 8);
    let mut rest = layout;
    let hour12 = |h: i8| if h % 12 == 0 { 12 } else { h % 12 };
    let off_secs = t.offset.seconds();
    let offset = |colon: bool, secs: bool, short: bool, z: bool| -> String {
        if z && off_secs == 0 {
            return "Z".into();
        }
        let sign = if off_secs < 0 { '-' } else { '+' };
        let a = off_secs.abs();
        let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
        let mut o = format!("{sign}{h:02}");
        if !short {
            if colon {
                o.push(':');
            }
            o.push_str(&format!("{m:02}"));
        }
        if secs {
            if colon {
                o.push(':');
            }
            o.push_str(&format!("{s:02}"));
        }
        o
    };
    // Every layout token; where one is a prefix of another the longest match wins below.
    let tokens: &[(&str, &dyn Fn() -> String)] = &[
        ("January", &|| MONTHS[dt.month() as usize - 1].to_owned()),
        ("Jan", &|| MONTHS[dt.month() as usize - 1][..3].to_owned()),
        ("Monday", &|| {
            DAYS[dt.weekday().to_monday_zero_offset() as usize].to_owned()
        }),
        ("Mon", &|| {
            DAYS[dt.weekday().to_monday_zero_offset() as usize][..3].to_owned()
        }),
        ("MST", &|| t.abbrev.clone()),
        ("2006", &|| format!("{:04}", dt.year())),
        ("2", &|| dt.day().to_string()),
        ("_2", &|| format!("{:>2}", dt.day())),
        ("002", &|| format!("{:03}", dt.day_of_year())),
        ("__2", &|| format!("{:>3}", dt.day_of_year())),
        ("01", &|| format!("{:02}", dt.month())),
        ("02", &|| format!("{:02}", dt.day())),
        ("03", &|| format!("{:02}", hour12(dt.hour()))),
        ("04", &|| format!("{:02}", dt.minute())),
        ("05", &|| format!("{:02}", dt.second())),
        ("06", &|| format!("{:02}", dt.year().rem_euclid(100))),
        ("15", &|| format!("{:02}", dt.hour())),
        ("1", &|| dt.month().to_string()),
        ("3", &|| hour12(dt.hour()).to_string()),
        ("4", &|| dt.minute().to_string()),
        ("5", &|| dt.second().to_string()),
        ("PM", &|| {
            if dt.hour() >= 12 {
                "PM".into()
            } else {
                "AM".into()
            }
        }),
        ("pm", &|| {
            if dt.hour() >= 12 {
                "pm".into()
            } else {
                "am".into()
            }
        }),
        ("Z07:00:00", &|| offset(true, true, false, true)),
        ("-07:00:00", &|| offset(true, true, false, false)),
        ("Z070000", &|| offset(false, true, false, true)),
        ("-070000", &|| offset(false, true, false, false)),
        ("Z07:00", &|| offset(true, false, false, true)),
        ("-07:00", &|| offset(true, false, false, false)),
        ("Z0700", &|| offset(false, false, false, true)),
        ("-0700", &|| offset(false, false, false, false)),
        ("Z07", &|| offset(false, false, true, true)),
        ("-07", &|| offset(false, false, true, false)),
    ];
    while !rest.is_empty() {
        // Fractional seconds: `.000`/`,000` (fixed) or `.999` (trailing zeros trimmed).
        let b = rest.as_bytes();
        if (b[0] == b'.' || b[0] == b',') && b.len() > 1 && (b[1] == b'0' || b[1] == b'9') {
            let d = b[1];
            let n = b[1..].iter().take_while(|&&c| c == d).count();
            // Go only treats it as a fraction when not followed by another digit.
            if !b.get(1 + n).is_some_and(u8::is_ascii_digit) {
                let nanos = format!("{:09}", dt.subsec_nanosecond());
                let digits = &nanos[..n.min(9)];
                if d == b'0' {
                    out.push(b[0] as char);
                    out.push_str(digits);
                } else {
                    let trimmed = digits.trim_end_matches('0');
                    if !trimmed.is_empty() {
                        out.push(b[0] as char);
                        out.push_str(trimmed);
                    }
                }
                rest = &rest[1 + n..];
                continue;
            }
        }
        // Tokens are checked in an order where longer alternatives win: sort by length at use.
        let mut best: Option<(&str, &dyn Fn() -> String)> = None;
        for (tok, f) in tokens {
            if rest.starts_with(tok) && best.is_none_or(|(b, _)| tok.len() > b.len()) {
                best = Some((tok, *f));
            }
        }
        match best {
            Some((tok, f)) => {
                out.push_str(&f());
                rest = &rest[tok.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Go layout to a jiff strptime pattern, for parsing (`toDate`). Covers the common tokens.
pub(crate) fn parse(layout: &str, value: &str) -> Option<Timestamp> {
    if let Ok(ts) = value.parse::<Timestamp>()
        && matches!(
            layout,
            "2006-01-02T15:04:05Z07:00" | "2006-01-02T15:04:05.999999999Z07:00"
        )
    {
        return Some(ts);
    }
    let mut pat = String::new();
    let mut rest = layout;
    let mut has_offset = false;
    let table: &[(&str, &str)] = &[
        ("2006", "%Y"),
        ("January", "%B"),
        ("Jan", "%b"),
        ("Monday", "%A"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("Z0700", "%z"),
        ("-0700", "%z"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
        (".000000000", "%.f"),
        (".000000", "%.f"),
        (".000", "%.f"),
        (".999999999", "%.f"),
        (".999999", "%.f"),
        (".999", "%.f"),
    ];
    while !rest.is_empty() {
        let best = table
            .iter()
            .filter(|(t, _)| rest.starts_with(t))
            .max_by_key(|(t, _)| t.len());
        match best {
            Some((t, p)) => {
                has_offset |= p.contains('z');
                pat.push_str(p);
                rest = &rest[t.len()..];
            }
            None => {
                let c = rest.chars().next()?;
                if c == '%' {
                    pat.push_str("%%");
                } else {
                    pat.push(c);
                }
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    // Go's `Z07:00` accepts a literal `Z` for UTC; jiff's %:z does not.
    let value = if has_offset && value.ends_with('Z') {
        format!("{}+00:00", &value[..value.len() - 1])
    } else {
        value.to_owned()
    };
    let parsed = jiff::fmt::strtime::parse(&pat, &value).ok()?;
    if has_offset {
        return parsed.to_timestamp().ok();
    }
    // No zone in the layout: Go parses as UTC.
    let dt = parsed
        .to_datetime()
        .or_else(|_| {
            parsed
                .to_date()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .ok()?;
    dt.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}
