use http::HeaderValue;

use super::*;

fn req<'a>(h: &'a HeaderMap, path: &'a str, query: Option<&'a str>) -> RequestParts<'a> {
    RequestParts {
        method: "POST",
        scheme: "https",
        authority: "www.example.com",
        path,
        query,
        headers: h,
    }
}

fn one(msg: Message<'_>, c: Component) -> Result<String, BaseError> {
    let mut out = String::new();
    value(msg, &c, &mut out).map(|()| out)
}

/// RFC 9421 §2.2 derived component examples, on the request `POST /path?param=value`.
#[test]
fn derived_components() {
    let h = HeaderMap::new();
    let r = req(&h, "/path", Some("param=value&foo=bar&baz=bat%2Dman"));
    let cases = [
        ("@method", "POST"),
        (
            "@target-uri",
            "https://www.example.com/path?param=value&foo=bar&baz=bat%2Dman",
        ),
        ("@authority", "www.example.com"),
        ("@scheme", "https"),
        ("@request-target", "/path?param=value&foo=bar&baz=bat%2Dman"),
        ("@path", "/path"),
        ("@query", "?param=value&foo=bar&baz=bat%2Dman"),
    ];
    for (name, want) in cases {
        assert_eq!(
            one(Message::Request(r), Component::new(name)).as_deref(),
            Ok(want),
            "{name}"
        );
    }
    // §2.2.7: no query is `?` alone; §2.2.6: an empty path is `/`.
    let bare = req(&h, "", None);
    assert_eq!(
        one(Message::Request(bare), Component::new("@query")).as_deref(),
        Ok("?")
    );
    assert_eq!(
        one(Message::Request(bare), Component::new("@path")).as_deref(),
        Ok("/")
    );
    assert_eq!(
        one(Message::Request(bare), Component::new("@target-uri")).as_deref(),
        Ok("https://www.example.com/")
    );
}

#[test]
fn fields_are_trimmed_joined_and_byte_wrapped() {
    let mut h = HeaderMap::new();
    h.append("x-list", HeaderValue::from_static("  a, b  "));
    h.append("x-list", HeaderValue::from_static("c"));
    h.append("x-empty", HeaderValue::from_static(""));
    let r = Message::Request(req(&h, "/", None));
    assert_eq!(one(r, Component::new("x-list")).as_deref(), Ok("a, b, c"));
    // RFC 9421 §2.1: an empty field has an empty value (the base line ends with ": ").
    assert_eq!(one(r, Component::new("x-empty")).as_deref(), Ok(""));
    let bs = Component {
        bs: true,
        ..Component::new("x-list")
    };
    assert_eq!(one(r, bs).as_deref(), Ok(":YSwgYg==:, :Yw==:"));
    assert_eq!(
        one(r, Component::new("x-absent")),
        Err(BaseError::Missing("x-absent".into()))
    );
}

#[test]
fn components_that_do_not_apply_are_refused() {
    let h = HeaderMap::new();
    let r = req(&h, "/p", None);
    let resp = ResponseParts {
        status: 201,
        headers: &h,
        request: Some(r),
    };
    let no_req = ResponseParts {
        request: None,
        ..resp
    };
    let cases: [(&str, Message<'_>, Component, Result<&str, ()>); 8] = [
        (
            "@status of a response",
            Message::Response(resp),
            Component::new("@status"),
            Ok("201"),
        ),
        (
            "@status of a request",
            Message::Request(r),
            Component::new("@status"),
            Err(()),
        ),
        (
            "req on a request",
            Message::Request(r),
            Component::req("@method"),
            Err(()),
        ),
        (
            "@method;req",
            Message::Response(resp),
            Component::req("@method"),
            Ok("POST"),
        ),
        (
            "@method;req without request",
            Message::Response(no_req),
            Component::req("@method"),
            Err(()),
        ),
        (
            "@method of a response",
            Message::Response(resp),
            Component::new("@method"),
            Err(()),
        ),
        (
            "@query-param",
            Message::Request(r),
            Component::new("@query-param"),
            Err(()),
        ),
        (
            "@signature-params",
            Message::Request(r),
            Component::new("@signature-params"),
            Err(()),
        ),
    ];
    for (name, msg, c, want) in cases {
        assert_eq!(
            one(msg, c).map_err(|_| ()),
            want.map(str::to_owned),
            "{name}"
        );
    }
}

#[test]
fn obs_text_in_a_covered_field_is_refused() {
    let mut h = HeaderMap::new();
    h.insert(
        "x-latin",
        HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is a valid header value"),
    );
    let r = Message::Request(req(&h, "/", None));
    assert!(matches!(
        one(r, Component::new("x-latin")),
        Err(BaseError::NotAscii(_))
    ));
}
