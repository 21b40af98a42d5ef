//! Request bodies for `match_body` (spec §5): parsed strictly, compared exactly.
//!
//! Exactness has two halves:
//! - **Numbers by literal text.** `10.00`, `10.0` and `1e1` are different approvals to a bank:
//!   serde_json's `arbitrary_precision` feature (enabled in `Cargo.toml`) keeps each number's
//!   literal, both in the body and in the token's `authorization_details`, and [`exact_eq`]
//!   compares those literals. `Number::as_str` exists only with that feature, so this file does
//!   not compile without it: the guarantee cannot be switched off by accident.
//! - **No parser differentials.** The body is forwarded byte for byte, so it
//!   must mean the same to every common parser the API might use. [`parse_body`] refuses, in one
//!   streaming pass that also builds the value:
//!   - two member names of one object that are equal after unescaping (`"a"` / `"\u0061"`),
//!     or after [`fold_key`]: NFKC normalization and Unicode case mapping. Go's
//!     `encoding/json` and ASP.NET Core bind names case-insensitively with the last value
//!     winning, so `{"Amount":"10.00","amount":"9999.00"}` would pay 9999.00 (RFC 8259 §4:
//!     names SHOULD be unique; RFC 7493 (I-JSON) §2.3: MUST);
//!   - a UTF-8 byte-order mark (RFC 8259 §8.1: MUST NOT add one; some parsers skip it, others
//!     fail), invalid UTF-8 and lone surrogate escapes such as `"\ud800"` (RFC 7493 §2.1);
//!   - numbers beyond [`MAX_NUMBER_DIGITS`] significant digits or an exponent beyond
//!     ±[`MAX_EXPONENT`] (I-JSON §2.2: parsers round or overflow them differently);
//!   - nesting deeper than [`MAX_DEPTH`] and objects with more than [`MAX_MEMBERS`] members.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use unicode_normalization::UnicodeNormalization;

/// Deepest nesting of arrays and objects accepted (a payment initiation needs about 5).
pub const MAX_DEPTH: usize = 32;
/// Most members accepted in one object.
pub const MAX_MEMBERS: usize = 1_000;
/// Most significant digits (integer and fraction part together) in a number literal: beyond
/// what IEEE double (17) and .NET `decimal` (28-29) hold, parsers round differently.
pub const MAX_NUMBER_DIGITS: usize = 32;
/// Largest exponent magnitude accepted (`1e300`); IEEE double overflows past 308.
pub const MAX_EXPONENT: u32 = 300;

/// Why a body cannot be matched. The proxy answers `request_malformed` (400) for every one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body repeats an object member name")]
    DuplicateKey,
    #[error("body has two member names equal under case folding or Unicode normalization")]
    AmbiguousKey,
    #[error("body starts with a byte-order mark")]
    ByteOrderMark,
    #[error("body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("body has an object with more than {MAX_MEMBERS} members")]
    TooManyMembers,
    #[error("body has a number beyond {MAX_NUMBER_DIGITS} digits or exponent {MAX_EXPONENT}")]
    NumberOutOfRange,
}

/// Parses a request body as JSON, refusing anything two common parsers could read differently
/// (see the module docs). One pass: the value is built while it is checked.
pub fn parse_body(bytes: &[u8]) -> Result<Value, BodyError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(BodyError::ByteOrderMark);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let failure = Failure::default();
    let value = match Walker::new(&failure).deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(failure.take().unwrap_or(BodyError::NotJson(e.to_string()))),
    };
    de.end().map_err(|e| BodyError::NotJson(e.to_string()))?;
    Ok(value)
}

/// The form member names are compared in: NFKC, then upper case, then lower case, then NFKC
/// again. Upper-then-lower merges what Go's `EqualFold` (simple case folding: `K` Kelvin sign,
/// `ſ` long s) and .NET's `OrdinalIgnoreCase` (invariant upper-casing: dotless `ı` ≡ `I`) merge,
/// and a little more (`ß` ≡ `ss`): refusing too much is safe here, too little is not.
pub fn fold_key(key: &str) -> String {
    if key.is_ascii() {
        return key.to_ascii_lowercase();
    }
    let upper: String = key.nfkc().flat_map(char::to_uppercase).collect();
    let lower: String = upper.chars().flat_map(char::to_lowercase).collect();
    lower.nfkc().collect()
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

/// The first error the walker saw, kept so the caller learns why (serde only carries text).
#[derive(Default)]
struct Failure(std::cell::Cell<Option<BodyError>>);

impl Failure {
    fn fail<E: de::Error>(&self, e: BodyError) -> E {
        let text = e.to_string();
        if let Some(first) = self.0.take() {
            self.0.set(Some(first));
        } else {
            self.0.set(Some(e));
        }
        E::custom(text)
    }

    fn take(&self) -> Option<BodyError> {
        self.0.take()
    }
}

/// Builds a `Value` while checking it. `depth` counts the arrays and objects around it.
#[derive(Clone, Copy)]
struct Walker<'a> {
    failure: &'a Failure,
    depth: usize,
}

impl<'a> Walker<'a> {
    fn new(failure: &'a Failure) -> Self {
        Self { failure, depth: 0 }
    }

    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.failure.fail(BodyError::TooDeep));
        }
        Ok(Self {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    // With `arbitrary_precision` serde_json hands every number over as a map (below); these
    // three are here for completeness only.
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| self.failure.fail(BodyError::NumberOutOfRange))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let first = match map.next_key_seed(KeySeed)? {
            None => return self.nested().map(|_| Value::Object(Map::new())),
            Some(Key::NumberLiteral) => {
                let literal: String = map.next_value()?;
                return number(&literal)
                    .ok_or_else(|| self.failure.fail(BodyError::NumberOutOfRange));
            }
            Some(Key::Name(k)) => k,
        };
        let inner = self.nested()?;
        let mut object = Map::new();
        let mut folded = HashSet::new();
        let mut next = Some(first);
        while let Some(name) = next {
            if object.contains_key(&name) {
                return Err(self.failure.fail(BodyError::DuplicateKey));
            }
            if !folded.insert(fold_key(&name)) {
                return Err(self.failure.fail(BodyError::AmbiguousKey));
            }
            if object.len() >= MAX_MEMBERS {
                return Err(self.failure.fail(BodyError::TooManyMembers));
            }
            let value = map.next_value_seed(inner)?;
            object.insert(name, value);
            next = match map.next_key_seed(KeySeed)? {
                None => None,
                Some(Key::Name(k)) => Some(k),
                // Only serde_json's number wrapper produces this, and never inside an object.
                Some(Key::NumberLiteral) => return Err(self.failure.fail(BodyError::DuplicateKey)),
            };
        }
        Ok(Value::Object(object))
    }
}

/// A member name, or serde_json's private marker of a number literal (`arbitrary_precision`).
enum Key {
    Name(String),
    NumberLiteral,
}

/// Tells the two apart without trusting the name's text: serde_json decodes a real member name
/// for `deserialize_bytes` and calls `visit_bytes`/`visit_borrowed_bytes` (after unescaping,
/// without UTF-8 validation, which is done here), while its number wrapper answers any request
/// with `visit_borrowed_str`. So a body that spells the private marker as a member name stays
/// an ordinary member and never turns into a number.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Key, E> {
        // Lone surrogate escapes come out of the unvalidated decoder as invalid UTF-8.
        std::str::from_utf8(b)
            .map(|s| Key::Name(s.to_owned()))
            .map_err(|_| E::custom("member name is not valid UTF-8"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Key, E> {
        Ok(Key::NumberLiteral)
    }
}

/// A number literal within the limits, as a `Number` that keeps its text.
fn number(literal: &str) -> Option<Value> {
    let (mantissa, exponent) = match literal.find(['e', 'E']) {
        Some(i) => (&literal[..i], Some(&literal[i + 1..])),
        None => (literal, None),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    if digits > MAX_NUMBER_DIGITS {
        return None;
    }
    if let Some(e) = exponent {
        let magnitude = e.trim_start_matches(['+', '-']).trim_start_matches('0');
        if magnitude.len() > 3 || magnitude.parse::<u32>().unwrap_or(0) > MAX_EXPONENT {
            return None;
        }
    }
    Number::from_str(literal).ok().map(Value::Number)
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

#[cfg(test)]
mod differential_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_what_parsers_read_differently() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let deep_obj = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let cases: Vec<(&str, Vec<u8>, Option<BodyError>)> = vec![
            (
                "case variant amount",
                br#"{"Amount":"10.00","amount":"9999.00"}"#.to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "second instructedAmount object",
                br#"{"instructedAmount":{"amount":"1"},"InstructedAmount":{"amount":"2"}}"#
                    .to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "escaped duplicate",
                br#"{"a":1,"\u0061":2}"#.to_vec(),
                Some(BodyError::DuplicateKey),
            ),
            (
                "escaped case variant",
                br#"{"amount":1,"\u0041mount":2}"#.to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "Kelvin sign (Go EqualFold)",
                "{\"k\":1,\"\u{212A}\":2}".as_bytes().to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "long s (Go EqualFold)",
                "{\"s\":1,\"\u{17F}\":2}".as_bytes().to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "dotless i (.NET OrdinalIgnoreCase)",
                "{\"Iban\":1,\"\u{131}ban\":2}".as_bytes().to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "NFC vs NFD",
                "{\"caf\u{e9}\":1,\"cafe\u{301}\":2}".as_bytes().to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "fullwidth (NFKC)",
                "{\"Amount\":1,\"\u{FF21}mount\":2}".as_bytes().to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "nested case variant",
                br#"{"Data":{"Initiation":{"x":1,"X":2}}}"#.to_vec(),
                Some(BodyError::AmbiguousKey),
            ),
            (
                "byte-order mark",
                b"\xEF\xBB\xBF{\"a\":1}".to_vec(),
                Some(BodyError::ByteOrderMark),
            ),
            (
                "too deep array",
                deep(33).into_bytes(),
                Some(BodyError::TooDeep),
            ),
            (
                "too deep object",
                deep_obj(33).into_bytes(),
                Some(BodyError::TooDeep),
            ),
            ("deep but within", deep(32).into_bytes(), None),
            (
                "too many digits",
                format!("[{}]", "1".repeat(33)).into_bytes(),
                Some(BodyError::NumberOutOfRange),
            ),
            (
                "many digits within",
                format!("[{}.{}]", "1".repeat(16), "2".repeat(16)).into_bytes(),
                None,
            ),
            (
                "huge exponent",
                b"[1e301]".to_vec(),
                Some(BodyError::NumberOutOfRange),
            ),
            ("padded exponent", b"[1e0000300]".to_vec(), None),
            (
                "padded huge exponent",
                b"[1E-00000000000000000301]".to_vec(),
                Some(BodyError::NumberOutOfRange),
            ),
            ("exponent within", b"[1.5e-300]".to_vec(), None),
            (
                "too many members",
                format!(
                    "{{{}}}",
                    (0..1001)
                        .map(|i| format!("\"k{i}\":0"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
                .into_bytes(),
                Some(BodyError::TooManyMembers),
            ),
            (
                "distinct keys are fine",
                br#"{"Amount":"1","Currency":"EUR","amounts":[1,2]}"#.to_vec(),
                None,
            ),
        ];
        for (name, body, want) in cases {
            assert_eq!(parse_body(&body).err(), want, "{name}");
        }
        // Malformed encodings: refused, whatever the wording.
        let bad: [(&str, &[u8]); 6] = [
            ("lone high surrogate value", br#"{"a":"\ud800"}"#),
            ("lone low surrogate key", br#"{"\udc00":1}"#),
            ("invalid UTF-8 value", b"{\"a\":\"\xff\"}"),
            ("invalid UTF-8 key", b"{\"\xc3\x28\":1}"),
            ("overlong UTF-8", b"{\"a\":\"\xc0\xaf\"}"),
            ("UTF-16 body", b"\xff\xfe{\x00}\x00"),
        ];
        for (name, body) in bad {
            assert!(
                matches!(parse_body(body), Err(BodyError::NotJson(_))),
                "{name}: {:?}",
                parse_body(body)
            );
        }
    }

    #[test]
    fn the_private_number_marker_stays_a_member_name() {
        // serde_json's own `Value` would read this object as the number 10.00.
        let v = parse_body(br#"{"$serde_json::private::Number":"10.00"}"#).expect("object");
        assert!(v.is_object(), "{v}");
        assert!(!exact_eq(&v, &parse_body(b"10.00").expect("number")));
        let v = parse_body(br#"[10.00,"10.00"]"#).expect("array");
        assert_eq!(v[0].as_number().map(Number::as_str), Some("10.00"));
        assert!(v[1].is_string());
    }

    #[test]
    fn folding_merges_what_lenient_parsers_merge() {
        for (a, b) in [
            ("Amount", "aMOUNT"),
            ("K", "\u{212A}"),
            ("\u{131}", "i"),
            ("stra\u{DF}e", "STRASSE"),
            ("\u{FB01}x", "FIX"),
        ] {
            assert_eq!(fold_key(a), fold_key(b), "{a} / {b}");
        }
        assert_ne!(fold_key("amount"), fold_key("amounts"));
    }

    /// JSON values as text, with keys drawn from a small alphabet so collisions happen.
    fn json_text() -> impl Strategy<Value = String> {
        let key = "[aAbBkK\u{212A}\u{17F}sS\u{e9}]{1,3}";
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?",
            "[a-zA-Z0-9 \u{e9}\u{212A}]{0,8}".prop_map(|s| Value::String(s).to_string()),
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key, inner), 0..5).prop_map(|m| {
                    let members: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// Whether any object in `v` has two member names equal after folding.
    fn has_folded_duplicate(v: &serde_json::Value) -> bool {
        match v {
            Value::Array(a) => a.iter().any(has_folded_duplicate),
            Value::Object(o) => {
                let mut seen = HashSet::new();
                o.keys().any(|k| !seen.insert(fold_key(k))) || o.values().any(has_folded_duplicate)
            }
            _ => false,
        }
    }

    /// Whether every number literal in `v` is within the documented limits.
    fn numbers_within_limits(v: &Value) -> bool {
        match v {
            Value::Number(n) => number(n.as_str()).is_some(),
            Value::Array(a) => a.iter().all(numbers_within_limits),
            Value::Object(o) => o.values().all(numbers_within_limits),
            _ => true,
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_body(&bytes);
        }

        #[test]
        fn agrees_with_serde_json_unless_keys_collide(text in json_text()) {
            let ours = parse_body(text.as_bytes());
            let reference: Result<Value, _> = serde_json::from_str(&text);
            let reference = reference.expect("generated text is JSON");
            match ours {
                Ok(v) => {
                    // Accepted: the same value serde_json reads, literals included, and no
                    // two names of one object fold together.
                    prop_assert!(exact_eq(&v, &reference), "{text}");
                    prop_assert!(!has_folded_duplicate(&v), "{text}");
                }
                Err(BodyError::AmbiguousKey | BodyError::DuplicateKey) => {
                    // Refused for names: serde_json's reading (last one wins) hides one of
                    // them, so the member count differs or the remaining names still collide.
                    let members = text.matches("\":").count();
                    let kept = count_members(&reference);
                    prop_assert!(members > kept || has_folded_duplicate(&reference), "{text}");
                }
                Err(BodyError::NumberOutOfRange) => {
                    // The number is out of range, unless serde_json's reading dropped it
                    // behind a later duplicate name (`{"b":[0E301],"b":null}`): refused either
                    // way.
                    let members = text.matches("\":").count();
                    let kept = count_members(&reference);
                    prop_assert!(!numbers_within_limits(&reference) || members > kept, "{text}");
                }
                Err(e) => prop_assert!(false, "{text}: unexpected {e}"),
            }
        }

        #[test]
        fn refuses_any_object_with_folded_equal_names(
            name in "[a-zA-Z\u{e9}\u{131}\u{17F}]{1,6}",
            upper in any::<bool>(),
            first in "[1-9][0-9]{0,3}",
            second in "[1-9][0-9]{0,3}",
        ) {
            let other = if upper { name.to_uppercase() } else { name.to_lowercase() };
            let (name, other) = (Value::String(name), Value::String(other));
            let body = format!("{{\"Data\":{{{name}:{first},{other}:{second}}}}}");
            prop_assert!(
                matches!(parse_body(body.as_bytes()), Err(BodyError::AmbiguousKey | BodyError::DuplicateKey)),
                "{body}"
            );
        }
    }

    fn count_members(v: &Value) -> usize {
        match v {
            Value::Array(a) => a.iter().map(count_members).sum(),
            Value::Object(o) => o.len() + o.values().map(count_members).sum::<usize>(),
            _ => 0,
        }
    }
}
