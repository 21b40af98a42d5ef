//! Request smuggling and parser differentials on raw sockets: every malformed or
//! ambiguous HTTP/1.1 message is a clean 4xx or a closed connection, and the API behind the
//! proxy never receives something it could frame or read differently. Also the `Host` rules
//! (RFC 9112 §3.2), early answers that close the connection (RFC 9112 §9.6) and slowloris.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawExchange};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RAW_POLICY: &str = "\
api: raw
defaults:
  binding: unbound_allowed
  scopes: [accounts]
routes:
  - name: health
    method: GET
    path: /health
    public: true
  - name: upload
    method: POST
    path: /upload
    public: true
  - name: get-account
    method: GET
    path: /accounts/{account_id}
";

struct World {
    key: TestKey,
    echo: Echo,
    proxy: Proxy,
    _jwks: Jwks,
}

async fn world(listen_extra: &str) -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start_with(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        listen_extra,
        RAW_POLICY,
    )
    .await;
    proxy.wait_ready().await;
    World {
        key,
        echo,
        proxy,
        _jwks: jwks,
    }
}

impl World {
    fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.echo.seen.lock().expect("lock"))
    }

    async fn send(&self, bytes: &[u8]) -> RawExchange {
        raw::exchange(self.proxy.addr, bytes, Duration::from_millis(1500)).await
    }
}

/// What the upstream must have received for one case: method, URI, body.
type Upstream = &'static [(&'static str, &'static str, &'static [u8])];

struct Case {
    name: &'static str,
    raw: &'static [u8],
    statuses: &'static [u16],
    upstream: Upstream,
    /// The server must close the connection after its answer(s).
    closes: bool,
    /// The body failed while streaming to the upstream: the upstream may have seen the
    /// request aborted (an empty body and a reset), never a complete one.
    aborted: bool,
}

async fn run(w: &World, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        w.take_seen();
        let got = w.send(c.raw).await;
        // Let the upstream finish recording whatever reached it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen: Vec<(String, String, Vec<u8>)> = w
            .take_seen()
            .into_iter()
            .map(|s| (s.method, s.uri, s.body.to_vec()))
            .collect();
        let want: Vec<(String, String, Vec<u8>)> = c
            .upstream
            .iter()
            .map(|(m, u, b)| (m.to_string(), u.to_string(), b.to_vec()))
            .collect();
        let aborted = vec![("POST".to_owned(), "/upload".to_owned(), Vec::new())];
        let ok = got.statuses() == c.statuses
            && (seen == want || (c.aborted && seen == aborted))
            && got.trailing.is_empty()
            && (!c.closes || got.closed);
        if !ok {
            failures.push(format!(
                "{}: statuses {:?} (want {:?}), closed {} (want {}), upstream {:?} (want {:?}), trailing {:?}",
                c.name,
                got.statuses(),
                c.statuses,
                got.closed,
                c.closes,
                seen.iter()
                    .map(|(m, u, b)| format!("{m} {u} {}", String::from_utf8_lossy(b)))
                    .collect::<Vec<_>>(),
                want.iter()
                    .map(|(m, u, b)| format!("{m} {u} {}", String::from_utf8_lossy(b)))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&got.trailing),
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A second request smuggled after the first: if it is ever processed, the upstream sees
/// `/health?smuggled`.
const SMUGGLED: &str = "GET /health?smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test]
async fn framing_attacks_are_refused_or_framed_one_way() {
    let w = world("").await;
    run(
        &w,
        &[
            // CL.TE / TE.CL: Transfer-Encoding wins (RFC 9112 §6.3), the Content-Length is
            // dropped, and the connection is closed after the answer (§6.1), so bytes the other
            // framing would have made a second request are never parsed as one.
            Case {
                name: "CL.TE",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 49\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health?smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
                statuses: &[200],
                upstream: &[("POST", "/upload", b"")],
                closes: true,
                aborted: false,
            },
            Case {
                name: "TE.CL",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2a\r\nGET /health?smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
                statuses: &[200],
                upstream: &[(
                    "POST",
                    "/upload",
                    b"GET /health?smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
                )],
                closes: true,
                aborted: false,
            },
            Case {
                name: "conflicting Content-Length",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "Content-Length list",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "signed Content-Length",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "TE xchunked",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "TE chunked, identity",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "TE chunked then identity on two lines",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "TE on HTTP/1.0",
                raw: b"POST /upload HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "space before the colon",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "obs-fold",
                raw: b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "bare CR in a header",
                raw: b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "NUL in a header value",
                raw: b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "NUL in the target",
                raw: b"GET /health\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            // A streaming route forwards the head at once; a chunked body that breaks later
            // aborts the upstream request (it never completes there) and the client gets 400:
            // the fault is the client's, not an upstream error.
            Case {
                name: "chunk size overflow",
                raw: b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: true,
            },
        ],
    )
    .await;
    // The broken body is recorded as the client's fault, not an upstream error.
    let records = w.proxy.audit_records().await;
    assert!(
        records.iter().any(|r| r["kind"] == "outcome"
            && r["status"] == 400
            && r["upstream_error"] == "client_body"),
        "outcome record for the broken body"
    );
}

#[tokio::test]
async fn request_targets_and_host_are_unambiguous() {
    let w = world("").await;
    run(
        &w,
        &[
            // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
            Case {
                name: "HTTP/1.1 without Host",
                raw: b"GET /health HTTP/1.1\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            Case {
                name: "two Host lines",
                raw: b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            Case {
                name: "Host with user information",
                raw: b"GET /health HTTP/1.1\r\nHost: user@a\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            Case {
                name: "HTTP/1.0 without Host is allowed",
                raw: b"GET /health HTTP/1.0\r\n\r\n",
                statuses: &[200],
                upstream: &[("GET", "/health", b"")],
                closes: true,
                aborted: false,
            },
            Case {
                name: "absolute form agreeing with Host",
                raw: b"GET http://a/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                statuses: &[200],
                upstream: &[("GET", "/health", b"")],
                closes: true,
                aborted: false,
            },
            Case {
                name: "absolute form disagreeing with Host",
                raw: b"GET http://internal.example/health HTTP/1.1\r\nHost: a\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            Case {
                name: "absolute form with user information",
                raw: b"GET http://a@b/health HTTP/1.1\r\nHost: b\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            Case {
                name: "authority form",
                raw: b"CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: true,
                aborted: false,
            },
            Case {
                name: "authority form on GET",
                raw: b"GET internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            Case {
                name: "asterisk form",
                raw: b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                statuses: &[400],
                upstream: &[],
                closes: false,
                aborted: false,
            },
            // RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator; the
            // upstream gets a re-serialized request, never the client's bytes.
            Case {
                name: "bare LF line endings",
                raw: b"GET /health HTTP/1.1\nHost: a\nConnection: close\n\n",
                statuses: &[200],
                upstream: &[("GET", "/health", b"")],
                closes: true,
                aborted: false,
            },
        ],
    )
    .await;
    // Each refusal above is audited as request_malformed.
    let records = w.proxy.audit_records().await;
    let malformed = records
        .iter()
        .filter(|r| r["reason"] == "request_malformed")
        .count();
    assert!(malformed >= 7, "audited refusals: {malformed}");
}

#[tokio::test]
async fn oversized_lines_and_header_floods_are_refused() {
    let w = world("").await;
    let long_target = format!(
        "GET /health?{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(70_000)
    );
    // Over max_header_bytes but within hyper's own buffer: refused by the guard (431), never
    // forwarded on to the API.
    let mid_target = format!(
        "GET /health?{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(20_000)
    );
    let long_header = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let many = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\n{}\r\n",
        (0..300)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for (name, raw, want) in [
        // Beyond the parser's buffer (64 KiB) before the line even ends.
        ("overlong request line", long_target, 431),
        ("request target over max_header_bytes", mid_target, 431),
        ("header line over max_header_bytes", long_header, 431),
        ("header block over the parser buffer", huge_header, 431),
        ("too many headers", many, 431),
    ] {
        w.take_seen();
        let got = w.send(raw.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(got.statuses(), [want], "{name}");
        assert!(
            w.take_seen().is_empty(),
            "{name}: nothing reaches the upstream"
        );
    }
}

/// Sends the allowed request exactly and compares what the upstream received, header by header.
#[tokio::test]
async fn an_allowed_request_reaches_the_upstream_exactly_as_checked() {
    let w = world("").await;
    let token = w.key.token(|_, _| {});
    let raw = format!(
        "GET /accounts/acc-1?x=1 HTTP/1.1\r\nHost: api.test.example\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nX-Custom: keep me\r\nConnection: close\r\n\r\n"
    );
    let got = w.send(raw.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(got.statuses(), [200]);
    let seen = w.take_seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.uri.as_str()),
        ("GET", "/accounts/acc-1?x=1")
    );
    let mut names: Vec<&str> = s.headers.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept",
            "authorization",
            "forwarded",
            "host",
            "traceparent",
            "x-custom",
            "x-fapi-client-id",
            "x-fapi-interaction-id",
            "x-fapi-subject",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
        ]
    );
    assert_eq!(s.headers["host"], w.echo.addr.to_string().as_str());
    assert_eq!(s.headers["x-forwarded-host"], "api.test.example");
    assert_eq!(s.headers["x-custom"], "keep me");
    assert_eq!(
        s.headers["authorization"],
        format!("Bearer {token}").as_str()
    );
}

/// RFC 9112 §9.6: an answer given before the body was read closes the connection, with a
/// lingering close, so a keep-alive client reads the answer instead of a reset — every time.
#[tokio::test]
async fn early_answers_close_the_connection_and_are_always_read() {
    let w = world("").await;
    let client = client();
    let big = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
    for i in 0..50 {
        let req = http::Request::post(w.proxy.url("/upload"))
            .body(http_body_util::Full::new(big.clone()))
            .expect("request");
        let resp = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("attempt {i}: the client must read the 413, got {e:?}"));
        assert_eq!(resp.status(), 413, "attempt {i}");
        assert_eq!(resp.headers()["connection"], "close", "attempt {i}");
    }
    // A simple client that writes its whole body before reading: without the lingering close
    // its writes hit a reset and the answer is lost.
    let mut head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'x', 1_048_576));
    for i in 0..20 {
        let mut s = TcpStream::connect(w.proxy.addr).await.expect("connect");
        s.write_all(&head)
            .await
            .unwrap_or_else(|e| panic!("attempt {i}: body write cut off by {e}"));
        let got = raw::read_all(&mut s, Duration::from_secs(3)).await;
        assert_eq!(got.statuses(), [413], "attempt {i}");
        assert!(got.closed, "attempt {i}");
    }
    // A denial of a request with a body (here: no token), chunked so the proxy cannot know
    // its size in advance, also closes.
    let got = w
        .send(b"POST /accounts/acc-1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await;
    assert_eq!(got.statuses(), [404]);
    assert_eq!(got.responses[0].header("connection"), Some("close"));
    assert!(got.closed);
    // The request after a refused one on the same connection is never processed.
    let mut pipelined =
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n".to_vec();
    pipelined.extend(std::iter::repeat_n(b'x', 10_000));
    pipelined.extend_from_slice(SMUGGLED.as_bytes());
    let got = w.send(&pipelined).await;
    assert_eq!(got.statuses(), [413]);
    assert!(got.closed && got.trailing.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(w.take_seen().is_empty(), "nothing reached the upstream");
}

/// Slowloris on the header block: `header_read_timeout` ends it with a closed connection.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let w = world("    header_read_timeout: 1s\n").await;
    let mut s = TcpStream::connect(w.proxy.addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(format!("X-{i}: v\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        // Anything from the server (EOF, a reset, an error answer) means it gave up on us.
        let mut b = [0u8; 512];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut b))
            .await
            .is_ok()
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "the connection stayed open for {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(w.take_seen().is_empty());
}

/// Slowloris on the body: a body trickling in is cut off by `request_timeout` with a 504, a
/// closed connection, and no complete request upstream.
#[tokio::test]
async fn slow_bodies_end_with_a_timeout_and_a_closed_connection() {
    let w = world("    request_timeout: 2s\n").await;
    let mut s = TcpStream::connect(w.proxy.addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let mut b = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&b[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let answered = started.elapsed();
    let rest = raw::read_all(&mut s, Duration::from_secs(4)).await;
    buf.extend_from_slice(&rest.trailing);
    let mut responses = raw::parse_responses(&buf).0;
    responses.extend(rest.responses);
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [504],
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert!(rest.closed, "connection closed after the answer");
    assert!(
        answered < Duration::from_millis(3500),
        "answered after {answered:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The upstream may have seen the request start, never complete.
    assert!(w.take_seen().iter().all(|s| s.body.len() < 100));
}
