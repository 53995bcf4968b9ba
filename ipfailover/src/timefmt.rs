//! Times for people: spans like `0.3s`, `2m13s`, `3h12m`, and UTC wall-clock times computed
//! from epoch milliseconds (no time-zone database: the page and the terminal say "UTC").

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// An elapsed time, two units at most: `0.3s`, `9.5s`, `13s`, `2m13s`, `5m`, `3h12m`, `2d3h`.
pub fn span(ms: u64) -> String {
    if ms < 10 * SECOND {
        // Tenths, rounded; below ten seconds the tenth is what tells a live link from a late one.
        let tenths = (ms + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if ms < MINUTE {
        format!("{}s", ms / SECOND)
    } else if ms < HOUR {
        two(ms / MINUTE, "m", ms % MINUTE / SECOND, "s")
    } else if ms < DAY {
        two(ms / HOUR, "h", ms % HOUR / MINUTE, "m")
    } else {
        two(ms / DAY, "d", ms % DAY / HOUR, "h")
    }
}

/// Within this distance of now, a time of day alone is unambiguous.
const TIME_OF_DAY_WITHIN: u64 = 12 * HOUR;

/// A wall-clock time in UTC: `HH:MM:SS` within 12 hours of `now_ms`, else
/// `YYYY-MM-DD HH:MM:SS`.
pub fn wall(at_ms: u64, now_ms: u64) -> String {
    let secs = at_ms / SECOND;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if at_ms.abs_diff(now_ms) < TIME_OF_DAY_WITHIN {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        let (y, mo, d) = civil_from_days(at_ms / DAY);
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
    }
}

/// A wall-clock time in UTC with its date: `YYYY-MM-DD HH:MM:SS`.
pub fn date_time(at_ms: u64) -> String {
    let secs = at_ms / SECOND;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let (y, mo, d) = civil_from_days(at_ms / DAY);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// Year, month, day of the day `days` after 1970-01-01 (proleptic Gregorian calendar; Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        for (ms, text) in [
            (0, "0s"),
            (40, "0s"),
            (300, "0.3s"),
            (1_000, "1s"),
            (9_500, "9.5s"),
            (9_960, "10s"),
            (13_400, "13s"),
            (133_000, "2m13s"),
            (300_000, "5m"),
            (3 * HOUR + 12 * MINUTE + 59 * SECOND, "3h12m"),
            (2 * HOUR, "2h"),
            (2 * DAY + 3 * HOUR, "2d3h"),
            (40 * DAY, "40d"),
        ] {
            assert_eq!(span(ms), text, "{ms}");
        }
    }

    #[test]
    fn wall_times_in_utc() {
        // 2024-02-29 12:01:07.250 UTC.
        let t = 1_709_208_067_250;
        assert_eq!(wall(t, t + HOUR), "12:01:07");
        assert_eq!(wall(t, t + DAY), "2024-02-29 12:01:07");
        // Across midnight, a recent time is still just a time of day.
        assert_eq!(
            wall(t + 11 * HOUR + 58 * MINUTE, t + 12 * HOUR + MINUTE),
            "23:59:07"
        );
        assert_eq!(wall(t, t + 12 * HOUR), "2024-02-29 12:01:07");
        assert_eq!(wall(t + MINUTE, t), "12:02:07");
        assert_eq!(wall(0, DAY), "1970-01-01 00:00:00");
        // 2000-03-01, the day after a leap day in a year divisible by 400.
        assert_eq!(wall(951_868_800_000, 0), "2000-03-01 00:00:00");
        assert_eq!(wall(253_402_300_799_000, 0), "9999-12-31 23:59:59");
    }
}
