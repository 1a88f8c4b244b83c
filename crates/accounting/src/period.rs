//! Calendar periods and minutes in UTC, from Unix milliseconds, without a date crate.
//!
//! Budgets reset on calendar boundaries in UTC (midnight, Monday, the 1st) and rate limits count
//! calendar minutes, so that every replica, whatever its clock's time zone, counts the same
//! window. The conversion between day numbers and civil dates is Howard Hinnant's
//! `days_from_civil` / `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>),
//! exact for the proleptic Gregorian calendar over the whole `i64` millisecond range we meet.
//! Times before 1970 (negative milliseconds) are handled like any other: a period's start is at
//! or before the time given.

use crate::model::Period;

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The start of the calendar minute holding `now_ms` (Unix ms).
pub fn minute_start_ms(now_ms: i64) -> i64 {
    now_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// `ms` (Unix ms) as `2026-12-01T00:00:00Z`, for messages. Milliseconds are dropped (a message
/// that says when a budget resets needs no more); years outside 0..=9999 are written with as
/// many digits as they need.
pub fn format_utc(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS) / 1000;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Reads a time a person wrote: a UTC date (`2026-12-01`, its midnight), a UTC time
/// (`2026-12-01T08:30:00Z`), or Unix milliseconds; `None` for anything else, or a date that
/// does not exist (`2026-02-30`).
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    let seconds = match time {
        None => 0,
        Some(time) => {
            let mut hms = time.splitn(3, ':').map(str::parse::<i64>);
            let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next().unwrap_or(Ok(0)).ok()?);
            if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&s) {
                return None;
            }
            h * 3600 + m * 60 + s
        }
    };
    days.checked_mul(DAY_MS)?.checked_add(seconds * 1000)
}

// === impl Period ===

impl Period {
    /// When the period holding `now_ms` (Unix ms) started: midnight UTC (daily), Monday 00:00
    /// UTC (weekly), the 1st 00:00 UTC (monthly); 0 for [`Period::None`], which never resets.
    pub fn start_ms(self, now_ms: i64) -> i64 {
        let day = now_ms.div_euclid(DAY_MS);
        match self {
            Self::None => 0,
            Self::Daily => day * DAY_MS,
            Self::Weekly => (day - weekday_from_monday(day)) * DAY_MS,
            Self::Monthly => {
                let (year, month, _) = civil_from_days(day);
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }

    /// When the next period starts after the one holding `now_ms` (Unix ms); `None` for
    /// [`Period::None`] (it never resets), and past the end of `i64` milliseconds.
    pub fn next_start_ms(self, now_ms: i64) -> Option<i64> {
        let start = self.start_ms(now_ms);
        match self {
            Self::None => None,
            Self::Daily => start.checked_add(DAY_MS),
            Self::Weekly => start.checked_add(7 * DAY_MS),
            Self::Monthly => {
                let (year, month, _) = civil_from_days(start.div_euclid(DAY_MS));
                let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                days_from_civil(year, month, 1).checked_mul(DAY_MS)
            }
        }
    }
}

/// Days since Monday (0 for Monday, 6 for Sunday) of day number `day` (days since 1970-01-01,
/// which was a Thursday).
fn weekday_from_monday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// Days since 1970-01-01 of the civil date `year-month-day` (month 1..=12, day 1..=31).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years start in March, so that the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // [0, 399]
    let month_from_march = (month + 9) % 12; // March 0 .. February 11
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1; // [0, 365]
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year; // [0, 146096]
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month 1..=12, day 1..=31) of day number `days` (days since 1970-01-01).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468; // days since 0000-03-01
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097; // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn people_s_times_parse_and_impossible_dates_do_not() {
        use super::{format_utc, parse_utc};
        assert_eq!(parse_utc("2026-12-01").map(format_utc).as_deref(), Some("2026-12-01T00:00:00Z"));
        assert_eq!(
            parse_utc("2024-02-29T23:59:58Z").map(format_utc).as_deref(),
            Some("2024-02-29T23:59:58Z")
        );
        assert_eq!(parse_utc("1764547200000"), Some(1_764_547_200_000));
        for bad in ["2026-02-30", "2026-13-01", "yesterday", "2026-12-01T25:00:00Z", "2026-12-01T08:00:00"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    use super::*;

    /// Unix ms of `year-month-day hour:minute` UTC, by way of the function under test's inverse,
    /// checked against known values in `days_from_civil_matches_known_dates`.
    fn at(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
        days_from_civil(year, month, day) * DAY_MS + hour * 3_600_000 + minute * MINUTE_MS
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // `date -u -d 2026-12-01 +%s` = 1796083200.
        assert_eq!(days_from_civil(2026, 12, 1) * DAY_MS, 1_796_083_200_000);
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "round trip of day {days}");
        }
    }

    #[test]
    fn format_utc_writes_iso_8601() {
        assert_eq!(format_utc(1_796_083_200_000), "2026-12-01T00:00:00Z");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_utc(at(2024, 2, 29, 13, 7) + 5_999), "2024-02-29T13:07:05Z");
    }

    #[test]
    fn minutes_start_on_the_minute_before_1970_too() {
        assert_eq!(minute_start_ms(0), 0);
        assert_eq!(minute_start_ms(59_999), 0);
        assert_eq!(minute_start_ms(60_000), 60_000);
        assert_eq!(minute_start_ms(-1), -60_000);
        assert_eq!(minute_start_ms(-60_000), -60_000);
    }

    #[test]
    fn daily_periods_start_at_midnight_utc() {
        let now = at(2026, 11, 22, 23, 59) + 59_999;
        assert_eq!(Period::Daily.start_ms(now), at(2026, 11, 22, 0, 0));
        assert_eq!(Period::Daily.next_start_ms(now), Some(at(2026, 11, 23, 0, 0)));
        assert_eq!(
            Period::Daily.start_ms(at(2026, 11, 23, 0, 0)),
            at(2026, 11, 23, 0, 0),
            "midnight is a start"
        );
        assert_eq!(Period::Daily.start_ms(-1), -DAY_MS);
        assert_eq!(Period::Daily.next_start_ms(-1), Some(0));
    }

    #[test]
    fn weekly_periods_start_on_monday() {
        // 2026-11-23 is a Monday, 2026-11-29 a Sunday.
        let monday = at(2026, 11, 23, 0, 0);
        assert_eq!(Period::Weekly.start_ms(monday), monday);
        assert_eq!(Period::Weekly.start_ms(monday - 1), at(2026, 11, 16, 0, 0), "Sunday night is last week");
        assert_eq!(Period::Weekly.start_ms(at(2026, 11, 29, 23, 59)), monday);
        assert_eq!(Period::Weekly.next_start_ms(at(2026, 11, 29, 23, 59)), Some(at(2026, 11, 30, 0, 0)));
        // 1970-01-01 was a Thursday: its week began on Monday 1969-12-29.
        assert_eq!(Period::Weekly.start_ms(0), at(1969, 12, 29, 0, 0));
        assert_eq!(Period::Weekly.start_ms(0), -3 * DAY_MS);
        // A week across a year end.
        assert_eq!(Period::Weekly.start_ms(at(2027, 1, 1, 12, 0)), at(2026, 12, 28, 0, 0));
    }

    #[test]
    fn monthly_periods_start_on_the_first_and_know_month_lengths() {
        assert_eq!(Period::Monthly.start_ms(at(2026, 11, 30, 23, 59)), at(2026, 11, 1, 0, 0));
        assert_eq!(Period::Monthly.next_start_ms(at(2026, 11, 30, 23, 59)), Some(1_796_083_200_000));
        assert_eq!(Period::Monthly.next_start_ms(at(2026, 12, 31, 23, 59)), Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(Period::Monthly.start_ms(at(2027, 1, 1, 0, 0)), at(2027, 1, 1, 0, 0));
        // Leap years: 2024 and 2000 have a 29 February, 2100 and 2026 do not.
        assert_eq!(
            Period::Monthly.next_start_ms(at(2024, 2, 10, 0, 0)),
            Some(at(2024, 2, 1, 0, 0) + 29 * DAY_MS)
        );
        assert_eq!(Period::Monthly.start_ms(at(2024, 2, 29, 23, 59)), at(2024, 2, 1, 0, 0));
        assert_eq!(
            Period::Monthly.next_start_ms(at(2000, 2, 10, 0, 0)),
            Some(at(2000, 2, 1, 0, 0) + 29 * DAY_MS)
        );
        assert_eq!(
            Period::Monthly.next_start_ms(at(2100, 2, 10, 0, 0)),
            Some(at(2100, 2, 1, 0, 0) + 28 * DAY_MS)
        );
        assert_eq!(
            Period::Monthly.next_start_ms(at(2026, 2, 10, 0, 0)),
            Some(at(2026, 2, 1, 0, 0) + 28 * DAY_MS)
        );
        assert_eq!(
            format_utc(Period::Monthly.next_start_ms(at(2024, 2, 29, 1, 0)).unwrap()),
            "2024-03-01T00:00:00Z"
        );
        // 30- and 31-day months.
        assert_eq!(
            format_utc(Period::Monthly.next_start_ms(at(2026, 4, 30, 1, 0)).unwrap()),
            "2026-05-01T00:00:00Z"
        );
        assert_eq!(
            format_utc(Period::Monthly.next_start_ms(at(2026, 5, 31, 1, 0)).unwrap()),
            "2026-06-01T00:00:00Z"
        );
        // Before 1970.
        assert_eq!(Period::Monthly.start_ms(0), 0);
        assert_eq!(Period::Monthly.start_ms(-1), at(1969, 12, 1, 0, 0));
        assert_eq!(Period::Monthly.next_start_ms(-1), Some(0));
    }

    #[test]
    fn no_period_starts_at_zero_and_never_resets() {
        assert_eq!(Period::None.start_ms(at(2026, 11, 22, 12, 0)), 0);
        assert_eq!(Period::None.start_ms(-5), 0);
        assert_eq!(Period::None.next_start_ms(at(2026, 11, 22, 12, 0)), None);
    }

    #[test]
    fn the_ends_of_the_range_do_not_overflow() {
        for period in [Period::Daily, Period::Weekly, Period::Monthly] {
            assert!(period.start_ms(i64::MAX) > i64::MAX - 32 * DAY_MS);
            assert!(period.start_ms(i64::MIN / 2) <= i64::MIN / 2);
            let _ = period.next_start_ms(i64::MAX);
        }
        assert_eq!(Period::Daily.next_start_ms(i64::MAX), None);
        let _ = format_utc(i64::MAX);
        let _ = format_utc(i64::MIN / 2);
    }
}
