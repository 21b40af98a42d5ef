//! Record timestamps: the writer's RFC 3339 UTC form (`2026-11-24T06:00:00.123456Z`, spec §8)
//! to Unix microseconds and back. Strict: only `Z` (UTC), which is all the writer produces.

use crate::audit::chain::Rfc3339Micros;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (fraction 1–9 digits, truncated to microseconds).
pub fn parse_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = b.get(from..to)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let frac = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut micros = 0i64;
            for i in 0..6 {
                let d = match digits.get(i) {
                    Some(c) if c.is_ascii_digit() => i64::from(c - b'0'),
                    Some(_) => return None,
                    None => 0,
                };
                micros = micros * 10 + d;
            }
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            micros
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    Some(secs * 1_000_000 + frac)
}

/// Unix microseconds → the writer's RFC 3339 form.
pub fn format_micros(micros: i64) -> String {
    Rfc3339Micros(micros).to_string()
}

/// Proleptic Gregorian date → days since 1970-01-01 (H. Hinnant's `days_from_civil`, the
/// inverse of `chain::civil_from_days`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let cases = [
            (
                "spec §8",
                "2026-11-24T06:00:00.123456Z",
                Some(1_795_500_000_123_456),
            ),
            ("epoch", "1970-01-01T00:00:00.000000Z", Some(0)),
            (
                "no fraction",
                "2026-11-24T06:00:00Z",
                Some(1_795_500_000_000_000),
            ),
            (
                "nanos truncated",
                "2026-11-24T06:00:00.123456789Z",
                Some(1_795_500_000_123_456),
            ),
            (
                "leap day",
                "2024-02-29T23:59:59.999999Z",
                Some(1_709_251_199_999_999),
            ),
            ("offset refused", "2026-11-24T06:00:00+01:00", None),
            ("month 13", "2026-13-24T06:00:00Z", None),
            ("letters", "2026-1x-24T06:00:00Z", None),
            ("empty fraction", "2026-11-24T06:00:00.Z", None),
            ("short", "2026-11-24", None),
        ];
        for (name, input, want) in cases {
            let got = parse_micros(input);
            assert_eq!(got, want, "{name}");
            if let Some(m) = got
                && input.len() == 27
            {
                assert_eq!(format_micros(m), input, "{name} round trip");
            }
        }
    }
}
