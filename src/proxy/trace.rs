//! W3C Trace Context (`traceparent`, `tracestate`): passed through to the upstream, or a new
//! trace started, so a decision can be found from a trace and back (the trace id is in the
//! audit record and the log line).

use http::HeaderMap;
use http::header::HeaderValue;

/// The trace id of the request (32 lower-case hex digits), and whether we started the trace.
pub fn trace_id(h: &HeaderMap) -> (String, bool) {
    match h
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
    {
        Some(id) => (id.to_owned(), false),
        None => (crate::ids::random_hex::<16>(), true),
    }
}

/// Sets a fresh `traceparent` for a trace we started (and drops a `tracestate` that belonged to
/// an invalid parent, W3C Trace Context §3.3).
pub fn start(h: &mut HeaderMap, trace_id: &str) {
    let value = format!("00-{trace_id}-{}-01", crate::ids::random_hex::<8>());
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert("traceparent", v);
    }
    h.remove("tracestate");
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zero (§3.2.2).
fn parse(v: &str) -> Option<&str> {
    let mut parts = v.trim().split('-');
    let (ver, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = ver == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_table() {
        let cases = [
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                None,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                None,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                None,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                None,
            ),
            ("garbage", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse(v), want, "{v}");
        }
    }

    #[test]
    fn started_traces_are_valid() {
        let mut h = HeaderMap::new();
        let (id, started) = trace_id(&h);
        assert!(started);
        start(&mut h, &id);
        let v = h["traceparent"].to_str().expect("ascii").to_owned();
        assert_eq!(parse(&v), Some(id.as_str()));
        let (again, started) = trace_id(&h);
        assert_eq!((again, started), (id, false));
    }
}
