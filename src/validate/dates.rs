//! Date, time and time zone formats: `send_date`, `inbox_date`, `timezone`, and tag date operands.

use chrono::{NaiveDate, NaiveDateTime};

use crate::validate::report::clip;

/// Why a date string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateError {
    /// Not in the expected shape at all.
    Format,
    /// In the shape, but no such date or time (e.g. "2023-02-30 10:00", "2024-01-01 24:00").
    NotReal,
}

/// True when `s` has the digits of `pattern` where it has '9' and the same other characters.
fn shaped(s: &str, pattern: &str) -> bool {
    s.len() == pattern.len()
        && s.bytes().zip(pattern.bytes()).all(|(c, p)| {
            if p == b'9' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

/// "YYYY-MM-DD HH:mm", a real date and time.
pub(crate) fn parse_date_time(s: &str) -> Result<NaiveDateTime, DateError> {
    if !shaped(s, "9999-99-99 99:99") {
        return Err(DateError::Format);
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").map_err(|_| DateError::NotReal)
}

/// "YYYY-MM-DD", a real date.
pub(crate) fn parse_date(s: &str) -> Result<NaiveDate, DateError> {
    if !shaped(s, "9999-99-99") {
        return Err(DateError::Format);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| DateError::NotReal)
}

/// The message for a bad `send_date` value, or None when it is "now" or a real "YYYY-MM-DD HH:mm".
pub(crate) fn send_date_problem(field: &str, s: &str) -> Option<String> {
    if s == "now" {
        return None;
    }
    let parsed = parse_date_time(s);
    let s = clip(s);
    match parsed {
        Ok(_) => None,
        Err(DateError::Format) => Some(format!(
            "Invalid send date. \"{field}\" must be \"now\" or a date and time \"YYYY-MM-DD HH:mm\", got \"{s}\"."
        )),
        Err(DateError::NotReal) => Some(format!(
            "Invalid send date. \"{field}\" is not a real date and time: \"{s}\"."
        )),
    }
}

/// The message for a bad `inbox_date` value, or None when it is a real "YYYY-MM-DD".
pub(crate) fn inbox_date_problem(field: &str, s: &str) -> Option<String> {
    let parsed = parse_date(s);
    let s = clip(s);
    match parsed {
        Ok(_) => None,
        Err(DateError::Format) => Some(format!(
            "Invalid inbox date. \"{field}\" must be a date \"YYYY-MM-DD\", got \"{s}\"."
        )),
        Err(DateError::NotReal) => Some(format!(
            "Invalid inbox date. \"{field}\" is not a real date: \"{s}\"."
        )),
    }
}

/// The message for an unknown time zone name, or None when chrono-tz knows it.
pub(crate) fn timezone_problem(field: &str, s: &str) -> Option<String> {
    if s.parse::<chrono_tz::Tz>().is_ok() {
        return None;
    }
    let end = crate::validate::suggest::sentence_end(
        s,
        chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()),
    );
    let s = clip(s);
    Some(format!(
        "Invalid timezone. \"{field}\" must be an IANA time zone name such as \"America/New_York\", got \"{s}\"{end}"
    ))
}

/// A tag date operand written as a string: "YYYY-MM-DD HH:mm" (the reference shows
/// "YYYY-MM-DD 00:00"), "YYYY-MM-DD" (as in the devices_filter examples) or "N days ago".
pub(crate) fn is_tag_date(s: &str) -> bool {
    if parse_date_time(s).is_ok() || parse_date(s).is_ok() {
        return true;
    }
    days_ago(s).is_some()
}

/// N of "N days ago" (also "1 day ago").
pub(crate) fn days_ago(s: &str) -> Option<u64> {
    let mut words = s.split_whitespace();
    let n = words.next()?;
    let unit = words.next()?;
    let ago = words.next()?;
    if words.next().is_some() || ago != "ago" || !(unit == "days" || unit == "day") {
        return None;
    }
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_dates() {
        assert_eq!(send_date_problem("send_date", "now"), None);
        assert_eq!(send_date_problem("send_date", "2024-02-29 23:59"), None);
        assert!(
            send_date_problem("send_date", "2023-02-29 10:00")
                .is_some_and(|m| m.contains("not a real"))
        );
        assert!(
            send_date_problem("send_date", "2024-01-01 24:00")
                .is_some_and(|m| m.contains("not a real"))
        );
        assert!(
            send_date_problem("send_date", "2024-1-01 10:00")
                .is_some_and(|m| m.contains("YYYY-MM-DD HH:mm"))
        );
        assert!(send_date_problem("send_date", "Now").is_some());
        assert!(send_date_problem("send_date", "２０２４-01-01 10:00").is_some());
    }

    #[test]
    fn tag_dates() {
        assert!(is_tag_date("2022-02-28"));
        assert!(is_tag_date("2022-02-28 00:00"));
        assert!(is_tag_date("90 days ago"));
        assert!(!is_tag_date("ninety days ago"));
        assert!(!is_tag_date("2022-02-30"));
    }

    #[test]
    fn timezones() {
        assert_eq!(timezone_problem("timezone", "America/New_York"), None);
        assert_eq!(timezone_problem("timezone", "UTC"), None);
        let m = timezone_problem("timezone", "America/New_Yrok").unwrap_or_default();
        assert!(m.contains("did you mean \"America/New_York\""), "{m}");
    }
}
