//! Go's time layouts (`2006-01-02`, `Jan _2 15:04:05.000 MST`), as resmoio's `indexFormat` uses
//! them, formatted with jiff. The tokens and their precedence are those of Go's `time.Format`
//! (`nextStdChunk`): anything that is not a token is copied as written.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

/// One piece of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    LongMonth,    // January
    Month,        // Jan
    NumMonth,     // 1
    ZeroMonth,    // 01
    LongWeekDay,  // Monday
    WeekDay,      // Mon
    Day,          // 2
    UnderDay,     // _2
    ZeroDay,      // 02
    UnderYearDay, // __2
    ZeroYearDay,  // 002
    Hour,         // 15
    Hour12,       // 3
    ZeroHour12,   // 03
    Minute,       // 4
    ZeroMinute,   // 04
    Second,       // 5
    ZeroSecond,   // 05
    LongYear,     // 2006
    Year,         // 06
    Pm {
        upper: bool,
    }, // PM, pm
    /// `-0700` and friends; `z` for the ISO 8601 forms (`Z07:00`) that print `Z` for UTC.
    Offset {
        colons: bool,
        seconds: bool,
        hours_only: bool,
        z: bool,
    },
    TzName, // MST
    /// `.000` (fixed width) or `.999` (trailing zeros trimmed), with `.` or `,`.
    Fraction {
        sep: char,
        digits: usize,
        trim: bool,
    },
}

/// A layout parsed once, formatted per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLayout {
    tokens: Vec<Token>,
}

const LONG_MONTHS: [&str; 12] = [
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

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

fn starts_with_lower(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

impl GoLayout {
    pub fn parse(layout: &str) -> GoLayout {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = layout;
        while !rest.is_empty() {
            let (token, len) = next_token(rest);
            match token {
                Some(t) => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(t);
                    rest = &rest[len..];
                }
                None => {
                    let c = rest.chars().next().expect("non-empty");
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        GoLayout { tokens }
    }

    /// True when the layout has no time token at all (`{foo}` is then copied as `foo`).
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// The time in UTC, as Go's `t.UTC().Format(layout)` prints it.
    pub fn format(&self, at: Timestamp) -> String {
        let z = at.to_zoned(TimeZone::UTC);
        let mut out = String::new();
        for t in &self.tokens {
            use std::fmt::Write;
            let _ = match t {
                Token::Literal(s) => write!(out, "{s}"),
                Token::LongMonth => write!(out, "{}", LONG_MONTHS[z.month() as usize - 1]),
                Token::Month => write!(out, "{}", &LONG_MONTHS[z.month() as usize - 1][..3]),
                Token::NumMonth => write!(out, "{}", z.month()),
                Token::ZeroMonth => write!(out, "{:02}", z.month()),
                Token::LongWeekDay => write!(out, "{}", weekday_name(z.weekday())),
                Token::WeekDay => write!(out, "{}", &weekday_name(z.weekday())[..3]),
                Token::Day => write!(out, "{}", z.day()),
                Token::UnderDay => write!(out, "{:>2}", z.day()),
                Token::ZeroDay => write!(out, "{:02}", z.day()),
                Token::UnderYearDay => write!(out, "{:>3}", z.day_of_year()),
                Token::ZeroYearDay => write!(out, "{:03}", z.day_of_year()),
                Token::Hour => write!(out, "{:02}", z.hour()),
                Token::Hour12 => write!(out, "{}", hour12(z.hour())),
                Token::ZeroHour12 => write!(out, "{:02}", hour12(z.hour())),
                Token::Minute => write!(out, "{}", z.minute()),
                Token::ZeroMinute => write!(out, "{:02}", z.minute()),
                Token::Second => write!(out, "{}", z.second()),
                Token::ZeroSecond => write!(out, "{:02}", z.second()),
                Token::LongYear => write!(out, "{:04}", z.year()),
                Token::Year => write!(out, "{:02}", z.year().rem_euclid(100)),
                Token::Pm { upper } => {
                    let pm = z.hour() >= 12;
                    write!(
                        out,
                        "{}",
                        match (pm, upper) {
                            (true, true) => "PM",
                            (false, true) => "AM",
                            (true, false) => "pm",
                            (false, false) => "am",
                        }
                    )
                }
                // UTC: the ISO 8601 forms print `Z`, the others a zero offset.
                Token::Offset { z: true, .. } => write!(out, "Z"),
                Token::Offset {
                    colons,
                    seconds,
                    hours_only,
                    z: false,
                } => write!(
                    out,
                    "{}",
                    match (hours_only, colons, seconds) {
                        (true, _, _) => "+00",
                        (false, true, true) => "+00:00:00",
                        (false, true, false) => "+00:00",
                        (false, false, true) => "+000000",
                        (false, false, false) => "+0000",
                    }
                ),
                Token::TzName => write!(out, "UTC"),
                Token::Fraction { sep, digits, trim } => {
                    let nanos = format!("{:09}", z.subsec_nanosecond());
                    let mut frac = &nanos[..(*digits).min(9)];
                    if *trim {
                        frac = frac.trim_end_matches('0');
                    }
                    if frac.is_empty() {
                        Ok(())
                    } else {
                        write!(out, "{sep}{frac}")
                    }
                }
            };
        }
        out
    }
}

fn hour12(h: i8) -> i8 {
    match h % 12 {
        0 => 12,
        h => h,
    }
}

/// The token at the start of `s` and its length in bytes, or None for a literal character.
fn next_token(s: &str) -> (Option<Token>, usize) {
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let tok = |t: Token, n: usize| (Some(t), n);
    match b[0] {
        b'J' if s.starts_with("January") => tok(Token::LongMonth, 7),
        b'J' if s.starts_with("Jan") && !starts_with_lower(&s[3..]) => tok(Token::Month, 3),
        b'M' if s.starts_with("Monday") => tok(Token::LongWeekDay, 6),
        b'M' if s.starts_with("Mon") && !starts_with_lower(&s[3..]) => tok(Token::WeekDay, 3),
        b'M' if s.starts_with("MST") => tok(Token::TzName, 3),
        b'0' if (b'1'..=b'6').contains(&at(1)) => tok(
            match at(1) {
                b'1' => Token::ZeroMonth,
                b'2' => Token::ZeroDay,
                b'3' => Token::ZeroHour12,
                b'4' => Token::ZeroMinute,
                b'5' => Token::ZeroSecond,
                _ => Token::Year,
            },
            2,
        ),
        b'0' if at(1) == b'0' && at(2) == b'2' => tok(Token::ZeroYearDay, 3),
        b'1' if at(1) == b'5' => tok(Token::Hour, 2),
        b'1' => tok(Token::NumMonth, 1),
        b'2' if s.starts_with("2006") => tok(Token::LongYear, 4),
        b'2' => tok(Token::Day, 1),
        // `_2006` is a literal `_` and then the year, as in Go.
        b'_' if at(1) == b'2' && !s[1..].starts_with("2006") => tok(Token::UnderDay, 2),
        b'_' if at(1) == b'_' && at(2) == b'2' => tok(Token::UnderYearDay, 3),
        b'3' => tok(Token::Hour12, 1),
        b'4' => tok(Token::Minute, 1),
        b'5' => tok(Token::Second, 1),
        b'P' if at(1) == b'M' => tok(Token::Pm { upper: true }, 2),
        b'p' if at(1) == b'm' => tok(Token::Pm { upper: false }, 2),
        b'-' | b'Z' => match offset(s) {
            Some((t, n)) => tok(t, n),
            None => (None, 1),
        },
        b'.' | b',' if matches!(at(1), b'0' | b'9') => {
            let digit = at(1);
            let n = b[1..].iter().take_while(|c| **c == digit).count();
            // Only a fraction when the run of the same digit is not followed by another digit.
            if at(1 + n).is_ascii_digit() {
                (None, 1)
            } else {
                tok(
                    Token::Fraction {
                        sep: b[0] as char,
                        digits: n,
                        trim: digit == b'9',
                    },
                    1 + n,
                )
            }
        }
        _ => (None, 1),
    }
}

/// `-070000`, `-07:00:00`, `-0700`, `-07:00`, `-07` and their `Z` forms, longest first.
fn offset(s: &str) -> Option<(Token, usize)> {
    let z = s.starts_with('Z');
    let rest = &s[1..];
    let forms: [(&str, bool, bool, bool); 5] = [
        ("070000", false, true, false),
        ("07:00:00", true, true, false),
        ("0700", false, false, false),
        ("07:00", true, false, false),
        ("07", false, false, true),
    ];
    forms
        .iter()
        .find(|(f, ..)| rest.starts_with(f))
        .map(|(f, colons, seconds, hours_only)| {
            (
                Token::Offset {
                    colons: *colons,
                    seconds: *seconds,
                    hours_only: *hours_only,
                    z,
                },
                1 + f.len(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2009-11-10 23:04:05.012 UTC, a Tuesday, day 314 of the year.
    fn at() -> Timestamp {
        "2009-11-10T23:04:05.012Z".parse().unwrap()
    }

    fn f(layout: &str) -> String {
        GoLayout::parse(layout).format(at())
    }

    #[test]
    fn the_reference_layout_tokens_format_as_go_does() {
        assert_eq!(f("2006"), "2009");
        assert_eq!(f("06"), "09");
        assert_eq!(f("01"), "11");
        assert_eq!(f("1"), "11");
        assert_eq!(f("Jan"), "Nov");
        assert_eq!(f("January"), "November");
        assert_eq!(f("02"), "10");
        assert_eq!(f("2"), "10");
        assert_eq!(f("_2"), "10");
        assert_eq!(f("002"), "314");
        assert_eq!(f("__2"), "314");
        assert_eq!(f("15"), "23");
        assert_eq!(f("03"), "11");
        assert_eq!(f("3"), "11");
        assert_eq!(f("04"), "04");
        assert_eq!(f("4"), "4");
        assert_eq!(f("05"), "05");
        assert_eq!(f("5"), "5");
        assert_eq!(f("PM"), "PM");
        assert_eq!(f("pm"), "pm");
        assert_eq!(f("Mon"), "Tue");
        assert_eq!(f("Monday"), "Tuesday");
        assert_eq!(f("MST"), "UTC");
        assert_eq!(f("-0700"), "+0000");
        assert_eq!(f("-07:00"), "+00:00");
        assert_eq!(f("-07"), "+00");
        assert_eq!(f("-070000"), "+000000");
        assert_eq!(f("-07:00:00"), "+00:00:00");
        assert_eq!(f("Z07:00"), "Z");
        assert_eq!(f("Z0700"), "Z");
        assert_eq!(f(".000"), ".012");
        assert_eq!(f(".000000"), ".012000");
        assert_eq!(f(".999999"), ".012");
        assert_eq!(f(",000"), ",012");
    }

    #[test]
    fn whole_layouts_and_literals() {
        assert_eq!(f("2006-01-02"), "2009-11-10");
        assert_eq!(f("2006.01.02"), "2009.11.10");
        assert_eq!(f("2006-01-02T15:04:05Z07:00"), "2009-11-10T23:04:05Z");
        assert_eq!(
            f("Mon Jan _2 15:04:05 MST 2006"),
            "Tue Nov 10 23:04:05 UTC 2009"
        );
        assert_eq!(f("3:04PM"), "11:04PM");
        // `Jan`/`Mon` followed by a lower-case letter are words, not tokens; `_2006` is `_` + year.
        assert_eq!(f("Janet Monty"), "Janet Monty");
        assert_eq!(f("x_2006"), "x_2009");
        assert_eq!(f("week-"), "week-");
        assert!(GoLayout::parse("events").is_literal());
        assert!(!GoLayout::parse("2006").is_literal());
    }

    #[test]
    fn padding_of_small_values_and_trimmed_fractions() {
        let t: Timestamp = "2024-03-05T07:08:09Z".parse().unwrap();
        let g = |l: &str| GoLayout::parse(l).format(t);
        assert_eq!(g("1/2 3:4:5"), "3/5 7:8:9");
        assert_eq!(g("_2"), " 5");
        assert_eq!(g("__2"), " 65");
        assert_eq!(g("002"), "065");
        assert_eq!(g("15"), "07");
        assert_eq!(g("PM pm"), "AM am");
        assert_eq!(
            g("05.999"),
            "09",
            "an all-zero trimmed fraction prints nothing"
        );
        assert_eq!(g("05.000"), "09.000");
        let noon: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        assert_eq!(GoLayout::parse("3PM").format(noon), "12PM");
        let midnight: Timestamp = "2024-03-05T00:00:00Z".parse().unwrap();
        assert_eq!(GoLayout::parse("03pm").format(midnight), "12am");
    }
}
