//! RFC 3339 §5.6 `date-time` → Unix seconds, for consent `expires_at`. Hand-written because it is
//! a few lines and the crate has no date library; tested against fixed values below.

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)` into Unix seconds (fraction truncated). The
/// `T`/`Z` may be lower case (RFC 3339 §5.6 NOTE). Leap second `:60` is accepted as the following
/// second. A missing offset is refused: a local time is ambiguous.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2], 0, 2)?;
            let om = digits(&[*m1, *m2], 0, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// `n` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_values() {
        let cases: &[(&str, &str, Option<i64>)] = &[
            ("epoch", "1970-01-01T00:00:00Z", Some(0)),
            ("spec example", "2026-12-31T00:00:00Z", Some(1_798_675_200)),
            (
                "fraction truncated",
                "2026-12-31T00:00:00.999Z",
                Some(1_798_675_200),
            ),
            (
                "positive offset",
                "2026-12-31T02:00:00+02:00",
                Some(1_798_675_200),
            ),
            (
                "negative offset",
                "2026-12-30T19:30:00-04:30",
                Some(1_798_675_200),
            ),
            (
                "lower case t z",
                "2026-12-31t00:00:00z",
                Some(1_798_675_200),
            ),
            ("leap day", "2024-02-29T12:00:00Z", Some(1_709_208_000)),
            ("before epoch", "1969-12-31T23:59:59Z", Some(-1)),
            ("leap second", "2016-12-31T23:59:60Z", Some(1_483_228_800)),
            ("y2k38", "2038-01-19T03:14:08Z", Some(2_147_483_648)),
            ("no offset", "2026-12-31T00:00:00", None),
            ("date only", "2026-12-31", None),
            ("space separator", "2026-12-31 00:00:00Z", None),
            ("bad month", "2026-13-01T00:00:00Z", None),
            ("not a leap year", "2025-02-29T00:00:00Z", None),
            ("hour 24", "2026-12-31T24:00:00Z", None),
            ("empty fraction", "2026-12-31T00:00:00.Z", None),
            ("offset without colon", "2026-12-31T00:00:00+0200", None),
            ("trailing junk", "2026-12-31T00:00:00Zjunk", None),
            ("signed year", "+2026-12-31T00:00:00Z", None),
            ("non ascii", "2026-12-31T00:00:00Ｚ", None),
            ("empty", "", None),
        ];
        for (name, s, want) in cases {
            assert_eq!(parse_rfc3339(s), *want, "{name}: {s}");
        }
    }
}
