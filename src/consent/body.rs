//! Request bodies for `match_body` (spec §5): parsed strictly, compared exactly.
//!
//! Exactness has two halves:
//! - **Numbers by literal text.** `10.00`, `10.0` and `1e1` are different approvals to a bank:
//!   serde_json's `arbitrary_precision` feature (enabled in `Cargo.toml`) keeps each number's
//!   literal, both in the body and in the token's `authorization_details`, and [`exact_eq`]
//!   compares those literals. `Number::as_str` exists only with that feature, so this file does
//!   not compile without it: the guarantee cannot be switched off by accident.
//! - **No parser differentials.** A body with a duplicate object key (`{"Amount":"1","Amount":
//!   "1000"}`) is ambiguous: serde_json keeps the last value, the API behind us may keep the
//!   first. [`parse_body`] refuses such bodies (RFC 8259 §4: names SHOULD be unique).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Why a body cannot be matched. The proxy answers `request_malformed` (400) for both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body repeats an object member name")]
    DuplicateKey,
}

/// Parses a request body as JSON, refusing duplicate member names at any depth.
pub fn parse_body(bytes: &[u8]) -> Result<Value, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let duplicate = Cell::new(false);
    match NoDuplicates(&duplicate).deserialize(&mut de) {
        Ok(()) => {}
        Err(_) if duplicate.get() => return Err(BodyError::DuplicateKey),
        Err(e) => return Err(BodyError::NotJson(e.to_string())),
    }
    de.end().map_err(|e| BodyError::NotJson(e.to_string()))?;
    serde_json::from_slice(bytes).map_err(|e| BodyError::NotJson(e.to_string()))
}

/// Exact JSON equality: same type, strings byte-equal, numbers by literal text (`"10.00"` ≠
/// `"10.0"`, and the number `10.00` ≠ the string `"10.00"`), arrays in order, objects with the
/// same members.
pub fn exact_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_str() == y.as_str(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| exact_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| exact_eq(v, w)))
        }
        _ => false,
    }
}

/// Walks a JSON document, failing (and raising the flag) on a repeated member name. Recursion
/// depth is bounded by serde_json's own nesting limit (128).
struct NoDuplicates<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates(self.0))?.is_some() {}
        Ok(())
    }
    // With `arbitrary_precision`, a non-integer number arrives as a one-member map holding its
    // literal: it walks like any other object.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                self.0.set(true);
                return Err(de::Error::custom("duplicate member name"));
            }
            map.next_value_seed(NoDuplicates(self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        parse_body(s.as_bytes()).expect("valid JSON")
    }

    #[test]
    fn numbers_compare_by_literal_and_type() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("same string", r#""10.00""#, r#""10.00""#, true),
            ("string trailing zero", r#""10.00""#, r#""10.0""#, false),
            ("number trailing zero", "10.00", "10.0", false),
            ("same number literal", "10.00", "10.00", true),
            ("integer", "10", "10", true),
            ("integer vs decimal", "10", "10.0", false),
            ("exponent", "1e1", "10", false),
            ("number vs string", "10.00", r#""10.00""#, false),
            (
                "big integer kept",
                "123456789012345678901234567890",
                "123456789012345678901234567890",
                true,
            ),
            (
                "big integer differs",
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                false,
            ),
            ("case", r#""EUR""#, r#""eur""#, false),
            ("null vs string", "null", r#""null""#, false),
            ("bool", "true", "true", true),
            ("arrays in order", "[1,2]", "[1,2]", true),
            ("arrays reordered", "[1,2]", "[2,1]", false),
            (
                "objects any order",
                r#"{"a":"1","b":2.50}"#,
                r#"{"b":2.50,"a":"1"}"#,
                true,
            ),
            (
                "objects nested literal",
                r#"{"a":2.50}"#,
                r#"{"a":2.5}"#,
                false,
            ),
            (
                "objects extra member",
                r#"{"a":1}"#,
                r#"{"a":1,"b":1}"#,
                false,
            ),
        ];
        for (name, a, b, want) in cases {
            assert_eq!(exact_eq(&v(a), &v(b)), *want, "{name}");
            assert_eq!(exact_eq(&v(b), &v(a)), *want, "{name} (swapped)");
        }
    }

    #[test]
    fn strict_parsing() {
        let cases: &[(&str, &str, Option<BodyError>)] = &[
            ("object", r#"{"a":{"b":[1,2.5,"x"]}}"#, None),
            (
                "duplicate top",
                r#"{"Amount":"1","Amount":"1000"}"#,
                Some(BodyError::DuplicateKey),
            ),
            (
                "duplicate nested",
                r#"{"Data":{"Initiation":{"x":1.0,"x":2}}}"#,
                Some(BodyError::DuplicateKey),
            ),
            (
                "duplicate in array item",
                r#"[{"a":1},{"a":1,"a":2}]"#,
                Some(BodyError::DuplicateKey),
            ),
            ("same key different objects", r#"[{"a":1},{"a":2}]"#, None),
        ];
        for (name, body, want) in cases {
            assert_eq!(parse_body(body.as_bytes()).err(), *want, "{name}");
        }
        for bad in ["", "{", "{\"a\":1} x", "amount=10", "{'a':1}", "[1,]"] {
            assert!(
                matches!(parse_body(bad.as_bytes()), Err(BodyError::NotJson(_))),
                "{bad:?}"
            );
        }
    }
}
