//! Times on the command line and in reports: Unix seconds, RFC 3339, or relative to now.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::observe::decision_log::civil_from_days;

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A point in time: Unix seconds (`1800000000`), RFC 3339 (`2027-01-15T08:00:00Z`, an offset
/// or fractional seconds too), `now`, or relative to `now` (`+90s`, `-2h`, `+1d`).
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(rest) = text.strip_prefix('+') {
        return parse_duration(rest).map(|d| now.saturating_add(d));
    }
    if let Some(rest) = text.strip_prefix('-') {
        return parse_duration(rest).map(|d| now.saturating_sub(d));
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("{text:?} is not a time (Unix seconds, RFC 3339, now, or +/-N[smhd])")
    })
}

/// A length of time: seconds (`3600`) or with a unit (`90s`, `30m`, `1h`, `7d`).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (text.get(..at).unwrap_or_default(), c),
        _ => (text, 's'),
    };
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    number
        .parse::<u32>()
        .map(|n| i64::from(n) * factor)
        .map_err(|_| format!("{text:?} is not a duration (N, or N with s, m, h or d)"))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`; `t`, `z` and a space as separator too.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let field = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let byte = |at: usize| text.as_bytes().get(at).copied();
    if byte(4) != Some(b'-') || byte(7) != Some(b'-') || byte(13) != Some(b':') {
        return None;
    }
    if !matches!(byte(10), Some(b'T' | b't' | b' ')) || byte(16) != Some(b':') {
        return None;
    }
    let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hour, minute, second) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Leap seconds (60) are accepted as RFC 3339 allows them, and land on the next second.
    if second > 60 {
        return None;
    }
    let mut rest = text.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (h, m) = rest.get(1..)?.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm; the inverse
/// of `decision_log::civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTC, e.g. `2027-01-15T08:00:00Z`.
pub fn rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
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
        for bad in ["", "h", "1y", "-5", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for bad in [
            "tomorrow",
            "+",
            "-",
            "2027-01-15",
            "2027-01-15T08:00:00",
            "+1y",
        ] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
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
