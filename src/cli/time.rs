//! Times on the command line and in reports: Unix seconds, RFC 3339, or relative to now.
//! jiff reads and writes RFC 3339 and the durations with units; this module says which forms
//! the CLI takes and what they mean.

use jiff::{Span, SpanRelativeTo, Timestamp};

pub fn unix_now() -> i64 {
    Timestamp::now().as_second()
}

/// A time as given on the command line, read against a "now" once that is known (`mint
/// --now` moves it for the other times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// `now`.
    Now,
    /// Unix seconds or RFC 3339.
    At(i64),
    /// `+90s`, `-2h`: seconds after (or before) now.
    FromNow(i64),
}

impl When {
    /// Unix seconds (`1800000000`), RFC 3339 (`2027-01-15T08:00:00Z`, an offset or
    /// fractional seconds too), `now`, or relative to now (`+90s`, `-2h`, `+1d`).
    pub fn parse(text: &str) -> Result<When, String> {
        let text = text.trim();
        if text == "now" {
            return Ok(When::Now);
        }
        if let Some(rest) = text.strip_prefix('+') {
            return parse_duration(rest).map(When::FromNow);
        }
        if let Some(rest) = text.strip_prefix('-') {
            return parse_duration(rest).map(|d| When::FromNow(d.saturating_neg()));
        }
        if let Ok(seconds) = text.parse::<i64>() {
            return Ok(When::At(seconds));
        }
        text.parse::<Timestamp>()
            .map(|t| When::At(whole_seconds(t)))
            .map_err(|_| {
                format!("{text:?} is not a time (Unix seconds, RFC 3339, now, or +/-N[smhd])")
            })
    }

    /// Unix seconds, `now` being `now`.
    pub fn at(self, now: i64) -> i64 {
        match self {
            When::Now => now,
            When::At(t) => t,
            When::FromNow(d) => now.saturating_add(d),
        }
    }
}

/// The second a timestamp falls in (before 1970 too: `23:59:59.5` is `23:59:59`).
fn whole_seconds(t: Timestamp) -> i64 {
    let seconds = t.as_second();
    if t.subsec_nanosecond() < 0 {
        seconds.saturating_sub(1)
    } else {
        seconds
    }
}

/// A length of time in whole seconds: seconds (`3600`) or with units (`90s`, `30m`, `1h`,
/// `7d`; jiff's friendly and ISO 8601 forms, `1h 30m`, `PT1H`, too). A day is 24 hours.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let what = || format!("{text:?} is not a duration (N seconds, or N with s, m, h or d)");
    // A sign the number may carry (`+1h`), as Rust's integers take it.
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if let Ok(seconds) = unsigned.parse::<i64>() {
        return if seconds < 0 {
            Err(what())
        } else {
            Ok(seconds)
        };
    }
    let duration = unsigned
        .parse::<Span>()
        .and_then(|span| span.to_duration(SpanRelativeTo::days_are_24_hours()))
        .map_err(|_| what())?;
    if duration.is_negative() || duration.subsec_nanos() != 0 {
        return Err(format!(
            "{text:?}: a duration is whole seconds, not negative"
        ));
    }
    Ok(duration.as_secs())
}

/// UTC, e.g. `2027-01-15T08:00:00Z`.
pub fn rfc3339(t: i64) -> String {
    Timestamp::from_second(t).map_or_else(
        |_| "not a date in years -9999..9999".to_owned(),
        |t| t.to_string(),
    )
}

/// `t` for a report: `1800003600 (2027-01-15T08:00:00Z, in 1h)`.
pub fn describe(t: i64, now: i64) -> String {
    let delta = t.saturating_sub(now);
    let when = match delta {
        0 => "now".to_owned(),
        d if d > 0 => format!("in {}", span(d)),
        d => format!("{} ago", span(d.saturating_neg())),
    };
    format!("{t} ({}, {when})", rfc3339(t))
}

/// A short length of time: `59s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub fn span(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn parse_time(text: &str, now: i64) -> Result<i64, String> {
        When::parse(text).map(|when| when.at(now))
    }

    #[test]
    fn every_time_form() {
        assert_eq!(parse_time("1700000000", NOW), Ok(1_700_000_000));
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("+90s", NOW), Ok(NOW + 90));
        assert_eq!(parse_time("-2h", NOW), Ok(NOW - 7200));
        assert_eq!(parse_time("+1d", NOW), Ok(NOW + 86_400));
        assert_eq!(parse_time("2027-01-15T08:00:00Z", NOW), Ok(1_800_000_000));
        assert_eq!(
            parse_time("2027-01-15t08:00:00.123z", NOW),
            Ok(1_800_000_000)
        );
        assert_eq!(
            parse_time("2027-01-15T10:00:00+02:00", NOW),
            Ok(1_800_000_000)
        );
        assert_eq!(
            parse_time("2027-01-15 07:30:00-00:30", NOW),
            Ok(1_800_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z", NOW), Ok(0));
        assert_eq!(parse_time("2000-02-29T00:00:00Z", NOW), Ok(951_782_400));
        for bad in [
            "",
            "soon",
            "2027-13-01T00:00:00Z",
            "2027-01-15T08:00",
            "+5y",
            "+-1",
            "+",
            "-",
            "2027-01-15",
            "2027-01-15T08:00:00",
        ] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
    }

    /// Every form the CLI has accepted, with the value it has given: pinned so a new
    /// implementation reads each the same.
    #[test]
    fn each_accepted_form_keeps_its_value() {
        let times = [
            ("1800000000", 1_800_000_000),
            ("0", 0),
            (" 1700000000 ", 1_700_000_000),
            ("now", NOW),
            ("+90s", NOW + 90),
            ("+90", NOW + 90),
            ("-90", NOW - 90),
            ("+30m", NOW + 1800),
            ("-2h", NOW - 7200),
            ("+1d", NOW + 86_400),
            ("+0s", NOW),
            ("+7d", NOW + 7 * 86_400),
            ("2027-01-15T08:00:00Z", 1_800_000_000),
            ("2027-01-15T08:00:00.999999999Z", 1_800_000_000),
            ("2027-01-15T09:00:00+01:00", 1_800_000_000),
            ("2027-01-15T02:30:00-05:30", 1_800_000_000),
            ("2027-01-15 08:00:00Z", 1_800_000_000),
            ("1969-12-31T23:59:59Z", -1),
            ("2100-01-01T00:00:00Z", 4_102_444_800),
        ];
        for (text, value) in times {
            assert_eq!(parse_time(text, NOW), Ok(value), "{text}");
        }
        let durations = [
            ("3600", 3600),
            ("0", 0),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("7d", 604_800),
            ("365d", 31_536_000),
            // A sign the number may carry.
            ("+1h", 3600),
        ];
        for (text, value) in durations {
            assert_eq!(parse_duration(text), Ok(value), "{text}");
        }
        // jiff's other forms, taken too.
        assert_eq!(parse_duration("1h 30m"), Ok(5400));
        assert_eq!(parse_duration("PT2M"), Ok(120));
        for bad in ["", "h", "1y", "-5", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // A leap second is the second before it (jiff's clamp; it was the one after).
        assert_eq!(parse_time("2016-12-31T23:59:60Z", NOW), Ok(1_483_228_799));
    }

    #[test]
    fn errors_name_the_value() {
        let err = parse_time("soon", NOW).unwrap_err();
        assert!(err.contains("\"soon\""), "{err}");
        let err = parse_duration("5y").unwrap_err();
        assert!(err.contains("\"5y\""), "{err}");
    }

    #[test]
    fn durations_and_reports() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert!(parse_duration("-5").is_err());
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "not a date in years -9999..9999");
        for t in [0, 951_782_400, 1_800_000_000, 4_102_444_800, -86_400 * 365] {
            assert_eq!(parse_time(&rfc3339(t), NOW), Ok(t));
        }
        assert_eq!(
            describe(NOW + 3600, NOW),
            "1800003600 (2027-01-15T09:00:00Z, in 1h)"
        );
        assert_eq!(
            describe(NOW - 61, NOW),
            "1799999939 (2027-01-15T07:58:59Z, 1m 1s ago)"
        );
        assert_eq!(span(90_000), "1d 1h");
    }
}
