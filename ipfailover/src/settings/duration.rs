//! Durations as administrators write them: `100ms`, `1s`, `2.5s`, `1m`, `1h`.

use std::time::Duration;

/// Units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Significant decimals beyond this cannot give a whole number of nanoseconds in any unit.
const MAX_DECIMALS: u32 = 13;

/// Parses a number with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`) and an optional decimal
/// fraction; a bare number is refused because `FAILOVER_INTERVAL=1` could mean a second or a
/// millisecond.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || format!("expected a duration like 100ms, 1s or 2.5s, got {text:?}");
    let s = text.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_ns = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, ns)| *ns)
        .ok_or_else(expected)?;
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
        || (number.contains('.') && frac_part.is_empty())
    {
        return Err(expected());
    }
    let too_long = || format!("{text:?} is too long a duration");
    let finer = || format!("{text:?} is finer than a nanosecond");
    let whole = digits_value(int_part)
        .and_then(|n| n.checked_mul(unit_ns))
        .ok_or_else(too_long)?;
    // Trailing zeros say nothing. Every unit is 2^a * 3^b * 5^c nanoseconds with a, c <= 13,
    // so a fraction with more significant decimals than that cannot be a whole number of
    // nanoseconds; the cap also keeps the arithmetic below inside a u128.
    let frac = frac_part.trim_end_matches('0');
    let decimals = u32::try_from(frac.len()).map_err(|_| finer())?;
    if decimals > MAX_DECIMALS {
        return Err(finer());
    }
    let scaled = digits_value(frac)
        .and_then(|f| f.checked_mul(unit_ns))
        .ok_or_else(finer)?;
    let divisor = 10u128.pow(decimals);
    if scaled % divisor != 0 {
        return Err(finer());
    }
    let nanos = whole.checked_add(scaled / divisor).ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, sub))
}

/// The value of a string of ASCII digits, `None` on overflow; empty is 0.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |n, b| {
        n.checked_mul(10)?
            .checked_add(u128::from(b.checked_sub(b'0')?))
    })
}

/// Prints the shortest form that `parse_duration` reads back exactly, among the units in which
/// the value is at least 1 (so `100ms`, not `0.1s`); ties go to the larger unit.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut best: Option<String> = None;
    for (name, unit_ns) in UNITS {
        if nanos < unit_ns {
            continue;
        }
        if let Some(candidate) = exact_decimal(nanos, unit_ns) {
            let candidate = candidate + name;
            if best.as_ref().is_none_or(|b| candidate.len() < b.len()) {
                best = Some(candidate);
            }
        }
    }
    // Nanoseconds always divide exactly, so `best` is set; the fallback only keeps this total.
    best.unwrap_or_else(|| format!("{nanos}ns"))
}

/// `n / d` written in decimal, or `None` when the expansion does not end (a third of a minute).
fn exact_decimal(n: u128, d: u128) -> Option<String> {
    let mut out = (n / d).to_string();
    let mut rem = n % d;
    if rem == 0 {
        return Some(out);
    }
    out.push('.');
    // Every unit is 2^a * 3^b * 5^c nanoseconds with a, c <= 13, so a terminating expansion
    // ends within 13 digits.
    for _ in 0..20 {
        rem *= 10;
        out.push(char::from(b'0' + u8::try_from(rem / d).ok()?));
        rem %= d;
        if rem == 0 {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, expected) in [
            ("100ms", Duration::from_millis(100)),
            ("1s", Duration::from_secs(1)),
            ("2.5s", Duration::from_millis(2500)),
            ("1m", Duration::from_secs(60)),
            ("1.5m", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("10ms", Duration::from_millis(10)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            (" 3s ", Duration::from_secs(3)),
            ("0.001s", Duration::from_millis(1)),
            ("1.000000001s", Duration::new(1, 1)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_malformed() {
        for text in [
            "",
            "0",
            "1",
            "fast",
            "s",
            "1 s",
            "1S",
            "-1s",
            "+1s",
            ".5s",
            "1.s",
            "1..2s",
            "1.2.3s",
            "1sec",
            "1d",
            "1s1",
            "1m30s",
            "1e3ms",
            "0.5ns",
            "1.0000000001s",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be refused");
        }
        assert_eq!(
            parse_duration("fast"),
            Err("expected a duration like 100ms, 1s or 2.5s, got \"fast\"".to_string())
        );
    }

    #[test]
    fn huge_values_are_errors_not_panics() {
        for text in [
            "99999999999999999999999999999999999999999h",
            "5124095576030432h",
            "340282366920938463463374607431768211455h",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        // Trailing zeros are harmless however many there are.
        assert_eq!(
            parse_duration("1.000000000000000000000000000000000000000000000000s"),
            Ok(Duration::from_secs(1))
        );
        // The largest representable duration still parses.
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn formats_shortest_exact() {
        for (d, text) in [
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(2500), "2.5s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(1234), "1.234s"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::new(1, 1), "1.000000001s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn format_then_parse_is_identity() {
        let samples = [
            Duration::from_millis(10),
            Duration::from_millis(999),
            Duration::from_millis(60_001),
            Duration::from_secs(3601),
            Duration::new(12_345, 678_901_234),
            Duration::from_nanos(1),
            Duration::from_secs(20),
            Duration::MAX,
        ];
        for d in samples {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
    }
}
