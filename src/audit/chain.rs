//! The hash chain of spec §8: every line carries `seq` (+1 per record) and `prev`, the base64url
//! (no padding) SHA-256 of the previous line's exact bytes without its trailing newline.
//!
//! **Genesis rule:** the first record of a brand-new log has `seq` 1 and `prev` =
//! base64url(SHA-256("")) = [`GENESIS_PREV`]. A log that continues an earlier one (restart,
//! rotation) carries the hash of the earlier log's last line instead, so files verify in order.

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, Serializer};

use super::record::AuditRecord;

/// Spec §8 `v`.
pub const RECORD_VERSION: u8 = 1;

/// base64url(SHA-256 of the empty string): the `prev` of the first record of a brand-new log.
pub const GENESIS_PREV: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

/// base64url (no padding) SHA-256 of one line, without its newline.
pub fn line_hash(line: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, line).as_ref())
}

/// Where the next record goes: its `seq` and `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    pub next_seq: u64,
    pub prev: String,
}

impl ChainState {
    /// A brand-new log (see the genesis rule above).
    pub fn genesis() -> Self {
        Self {
            next_seq: 1,
            prev: GENESIS_PREV.to_owned(),
        }
    }

    /// The state after `line`, the last complete line of an existing log (restart, rotation).
    pub fn after_line(line: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Seq {
            seq: u64,
        }
        let parsed: Seq = serde_json::from_slice(line)
            .map_err(|e| format!("last record is not a valid audit record: {e}"))?;
        Ok(Self {
            next_seq: parsed
                .seq
                .checked_add(1)
                .ok_or("last record has the maximum seq")?,
            prev: line_hash(line),
        })
    }

    /// Serializes `rec` as the next line (header `v`, `seq`, `ts`, `prev` first), appends it and
    /// a newline to `buf`, and advances the state. On error `buf` and `self` are unchanged.
    pub fn seal_into(
        &mut self,
        rec: &AuditRecord,
        ts_micros: i64,
        buf: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        let start = buf.len();
        let sealed = Sealed {
            v: RECORD_VERSION,
            seq: self.next_seq,
            ts: Rfc3339Micros(ts_micros),
            prev: &self.prev,
            rec,
        };
        if let Err(e) = serde_json::to_writer(&mut *buf, &sealed) {
            buf.truncate(start);
            return Err(e);
        }
        self.prev = line_hash(&buf[start..]);
        buf.push(b'\n');
        self.next_seq = self.next_seq.saturating_add(1);
        Ok(())
    }
}

/// The line as written: chain header first, then the record's own fields (stable order).
#[derive(Serialize)]
struct Sealed<'a> {
    v: u8,
    seq: u64,
    ts: Rfc3339Micros,
    prev: &'a str,
    #[serde(flatten)]
    rec: &'a AuditRecord,
}

/// Unix microseconds shown as RFC 3339 UTC with exactly six fractional digits
/// (`2026-11-24T06:00:00.123456Z`, spec §8). Clamped to years 0000–9999, the RFC 3339 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Micros(pub i64);

/// 9999-12-31T23:59:59.999999Z in Unix microseconds.
const MAX_MICROS: i64 = 253_402_300_799_999_999;
/// 0000-01-01T00:00:00Z in Unix microseconds.
const MIN_MICROS: i64 = -62_167_219_200_000_000;

impl fmt::Display for Rfc3339Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.clamp(MIN_MICROS, MAX_MICROS);
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )
    }
}

impl Serialize for Rfc3339Micros {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day). H. Hinnant's
/// `civil_from_days` (chrono-compatible algorithms), valid for the clamped range above.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_micros() {
        let cases = [
            ("epoch", 0, "1970-01-01T00:00:00.000000Z"),
            (
                "spec §8 example",
                1_795_500_000_123_456,
                "2026-11-24T06:00:00.123456Z",
            ),
            (
                "leap day",
                1_709_251_199_999_999,
                "2024-02-29T23:59:59.999999Z",
            ),
            (
                "after a century leap",
                951_868_800_000_001,
                "2000-03-01T00:00:00.000001Z",
            ),
            (
                "half second",
                946_684_799_500_000,
                "1999-12-31T23:59:59.500000Z",
            ),
            ("before epoch", -1, "1969-12-31T23:59:59.999999Z"),
            (
                "last representable",
                MAX_MICROS,
                "9999-12-31T23:59:59.999999Z",
            ),
            ("clamped high", i64::MAX, "9999-12-31T23:59:59.999999Z"),
            ("clamped low", i64::MIN, "0000-01-01T00:00:00.000000Z"),
        ];
        for (name, micros, want) in cases {
            assert_eq!(Rfc3339Micros(micros).to_string(), want, "{name}");
        }
    }

    #[test]
    fn genesis_prev_is_hash_of_empty_string() {
        assert_eq!(line_hash(b""), GENESIS_PREV);
        assert_eq!(ChainState::genesis().next_seq, 1);
    }

    #[test]
    fn sealing_chains_lines() {
        let mut state = ChainState::genesis();
        let mut buf = Vec::new();
        state
            .seal_into(&AuditRecord::allow(), 0, &mut buf)
            .expect("sealed");
        state
            .seal_into(&AuditRecord::outcome(200, 7), 1_000_000, &mut buf)
            .expect("sealed");
        let text = String::from_utf8(buf).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                r#"{{"v":1,"seq":1,"ts":"1970-01-01T00:00:00.000000Z","prev":"{GENESIS_PREV}","kind":"decision","decision":"allow","reason":null}}"#
            )
        );
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("valid JSON");
        assert_eq!(second["seq"], 2);
        assert_eq!(second["prev"], line_hash(lines[0].as_bytes()).as_str());
        assert_eq!(state.prev, line_hash(lines[1].as_bytes()));
        assert_eq!(state.next_seq, 3);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn state_after_line() {
        let cases: [(&str, &[u8], Result<u64, ()>); 4] = [
            ("valid", br#"{"v":1,"seq":41,"prev":"x"}"#, Ok(42)),
            ("not json", b"{\"v\":1,\"seq\":4", Err(())),
            ("no seq", br#"{"v":1}"#, Err(())),
            ("seq overflow", br#"{"seq":18446744073709551615}"#, Err(())),
        ];
        for (name, line, want) in cases {
            let got = ChainState::after_line(line);
            match want {
                Ok(seq) => {
                    let s = got.expect("state after a valid line");
                    assert_eq!(s.next_seq, seq, "{name}");
                    assert_eq!(s.prev, line_hash(line), "{name}");
                }
                Err(()) => assert!(got.is_err(), "{name}"),
            }
        }
    }
}
