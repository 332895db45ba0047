//! Budget periods on the calendar: daily, weekly, monthly (with a reset day and a fixed UTC
//! offset) or total. Plain civil-date arithmetic on Unix seconds; no time zone database.

/// How often a wallet starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Daily,
    /// Starts on `weekday` (0 = Monday).
    Weekly {
        weekday: u8,
    },
    /// Starts on `day` (1..=28) of each month.
    Monthly {
        day: u8,
    },
    /// Never resets.
    Total,
}

/// A period anchored to a fixed offset from UTC (seconds east).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub period: Period,
    pub offset_secs: i64,
}

const DAY: i64 = 86_400;

impl Calendar {
    pub const TOTAL: Self = Self {
        period: Period::Total,
        offset_secs: 0,
    };

    pub fn label(&self) -> &'static str {
        match self.period {
            Period::Daily => "daily",
            Period::Weekly { .. } => "weekly",
            Period::Monthly { .. } => "monthly",
            Period::Total => "total",
        }
    }

    /// Unix seconds at which the period containing `now` started (0 for `Total`).
    pub fn start(&self, now: i64) -> i64 {
        let local = now + self.offset_secs;
        let day = local.div_euclid(DAY);
        let start_day = match self.period {
            Period::Total => return 0,
            Period::Daily => day,
            Period::Weekly { weekday } => {
                // 1970-01-01 was a Thursday (3 when Monday is 0).
                let today = (day + 3).rem_euclid(7);
                day - (today - i64::from(weekday)).rem_euclid(7)
            }
            Period::Monthly { day: reset } => {
                let (y, m, d) = civil_from_days(day);
                let (y, m) = if d >= u32::from(reset) {
                    (y, m)
                } else {
                    prev_month(y, m)
                };
                days_from_civil(y, m, u32::from(reset))
            }
        };
        start_day * DAY - self.offset_secs
    }

    /// Unix seconds at which the period containing `now` ends; None for `Total`.
    pub fn next_reset(&self, now: i64) -> Option<i64> {
        let start = self.start(now);
        let start_day = (start + self.offset_secs).div_euclid(DAY);
        let next_day = match self.period {
            Period::Total => return None,
            Period::Daily => start_day + 1,
            Period::Weekly { .. } => start_day + 7,
            Period::Monthly { day } => {
                let (y, m, _) = civil_from_days(start_day);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, u32::from(day))
            }
        };
        Some(next_day * DAY - self.offset_secs)
    }
}

fn prev_month(y: i64, m: u32) -> (i64, u32) {
    if m == 1 {
        (y - 1, 12)
    } else {
        (y, m - 1)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of `days_from_civil`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// RFC 3339 UTC form of Unix seconds (`2025-09-01T00:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let s = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64) -> i64 {
        days_from_civil(y, m, d) * DAY + h * 3600
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(2000, 12, 31)),
            (2000, 12, 31)
        );
        assert_eq!(rfc3339(at(2025, 9, 1, 13) + 61), "2025-09-01T13:01:01Z");
    }

    #[test]
    fn daily_and_total() {
        let c = Calendar {
            period: Period::Daily,
            offset_secs: 0,
        };
        let now = at(2025, 3, 10, 15);
        assert_eq!(c.start(now), at(2025, 3, 10, 0));
        assert_eq!(c.next_reset(now), Some(at(2025, 3, 11, 0)));
        assert_eq!(Calendar::TOTAL.start(now), 0);
        assert_eq!(Calendar::TOTAL.next_reset(now), None);
    }

    #[test]
    fn daily_with_an_offset() {
        // UTC+2: the local day starts at 22:00 UTC the evening before.
        let c = Calendar {
            period: Period::Daily,
            offset_secs: 7200,
        };
        assert_eq!(c.start(at(2025, 3, 10, 23)), at(2025, 3, 10, 22));
        assert_eq!(c.start(at(2025, 3, 10, 21)), at(2025, 3, 9, 22));
    }

    #[test]
    fn weekly_starts_on_the_reset_weekday() {
        // 2025-03-12 is a Wednesday.
        let monday = Calendar {
            period: Period::Weekly { weekday: 0 },
            offset_secs: 0,
        };
        assert_eq!(monday.start(at(2025, 3, 12, 5)), at(2025, 3, 10, 0));
        assert_eq!(
            monday.next_reset(at(2025, 3, 12, 5)),
            Some(at(2025, 3, 17, 0))
        );
        let wednesday = Calendar {
            period: Period::Weekly { weekday: 2 },
            offset_secs: 0,
        };
        assert_eq!(wednesday.start(at(2025, 3, 12, 0)), at(2025, 3, 12, 0));
        assert_eq!(wednesday.start(at(2025, 3, 11, 23)), at(2025, 3, 5, 0));
    }

    #[test]
    fn monthly_with_a_reset_day_across_years() {
        let first = Calendar {
            period: Period::Monthly { day: 1 },
            offset_secs: 0,
        };
        assert_eq!(first.start(at(2025, 2, 28, 23)), at(2025, 2, 1, 0));
        assert_eq!(
            first.next_reset(at(2025, 12, 31, 23)),
            Some(at(2026, 1, 1, 0))
        );
        let fifteenth = Calendar {
            period: Period::Monthly { day: 15 },
            offset_secs: 0,
        };
        assert_eq!(fifteenth.start(at(2025, 1, 10, 0)), at(2024, 12, 15, 0));
        assert_eq!(fifteenth.start(at(2025, 1, 15, 0)), at(2025, 1, 15, 0));
        assert_eq!(
            fifteenth.next_reset(at(2025, 1, 20, 0)),
            Some(at(2025, 2, 15, 0))
        );
    }
}
