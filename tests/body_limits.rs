//! Through the real proxy, on raw sockets: a body is read only for a request
//! that is otherwise authorized, `max_body_bytes` holds for chunked (streamed) bodies too, and
//! all buffered bodies together stay within `max_buffered_bytes`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct World {
    key: TestKey,
    echo: Echo,
    proxy: Proxy,
    _jwks: Jwks,
}

/// The test proxy has `max_body_bytes: 4096`; `listen_extra` adds more `limits:` lines.
async fn world(limits_extra: &str) -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start_with(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        limits_extra,
        POLICY,
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
    fn payments_token(&self) -> String {
        self.key.token(|_, c| c["scope"] = json!("payments"))
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.proxy.addr).await.expect("connect")
    }
}

/// Reads until the end of the response head (or the connection closes) and returns the
/// status code, waiting at most `within`.
async fn status(stream: &mut TcpStream, within: Duration) -> u16 {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            buf.extend_from_slice(&chunk[..n]);
            if n == 0 || buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("an answer in time");
    let head = String::from_utf8_lossy(&buf);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

fn form_head(auth: Option<&str>, length: usize) -> String {
    let auth = auth.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!(
        "POST /payments HTTP/1.1\r\nhost: api.test.example\r\n{auth}\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn an_unauthenticated_form_is_refused_without_reading_its_body() {
    let w = world("").await;
    let mut s = w.connect().await;
    // Headers, a declared length, and only the first bytes of the body: a proxy that reads the
    // body first would wait for the rest until the request timeout (30 s).
    s.write_all(form_head(None, 1000).as_bytes())
        .await
        .expect("write");
    s.write_all(b"amount=10.00&").await.expect("write");
    assert_eq!(status(&mut s, Duration::from_secs(3)).await, 401);
    assert_eq!(w.echo.count(), 0);

    // An authorized form is read, checked (RFC 6750 §2.2) and forwarded byte for byte.
    let token = w.payments_token();
    let body = "amount=10.00&currency=GBP";
    let r = send(
        http::Request::post(w.proxy.url("/payments"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.echo.last().expect("seen").body, body.as_bytes());
    let r = send(
        http::Request::post(w.proxy.url("/payments"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                "amount=1&access_token={token}"
            ))))
            .expect("req"),
    )
    .await;
    assert_eq!((r.status, r.reason()), (400, Some("request_malformed")));
    assert_eq!(w.echo.count(), 1);
}

fn chunked(token: &str, chunks: &[usize]) -> Vec<u8> {
    let mut out = format!(
        "POST /payments HTTP/1.1\r\nhost: api.test.example\r\nauthorization: Bearer {token}\r\n\
         content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for n in chunks {
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'x', *n));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_never_reaches_the_api_whole() {
    let w = world("").await;
    let token = w.payments_token();

    // Within the limit, a chunked body streams through untouched.
    let mut s = w.connect().await;
    s.write_all(&chunked(&token, &[1000, 1000]))
        .await
        .expect("write");
    assert_eq!(status(&mut s, Duration::from_secs(5)).await, 200);
    assert_eq!(w.echo.last().expect("seen").body.len(), 2000);

    // 6000 bytes against `max_body_bytes: 4096`, no Content-Length to refuse up front.
    let mut s = w.connect().await;
    s.write_all(&chunked(&token, &[2000, 2000, 2000]))
        .await
        .expect("write");
    assert_eq!(status(&mut s, Duration::from_secs(5)).await, 413);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = w.echo.seen.lock().expect("lock").clone();
    assert!(
        seen.iter().all(|r| r.body.len() <= 4096),
        "the API received a body over the limit: {:?}",
        seen.iter().map(|r| r.body.len()).collect::<Vec<_>>()
    );
    assert_eq!(
        seen.len(),
        2,
        "the cut request reached the API only as an aborted stream"
    );
    assert!(
        seen[1].body.is_empty(),
        "the aborted body was not read as complete"
    );
}

#[tokio::test]
async fn buffered_bodies_share_one_memory_budget() {
    // Two bodies of 4096 bytes fit in the budget; a third must wait for none and is refused.
    let w = world("    max_buffered_bytes: 8192\n").await;
    let token = w.payments_token();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = w.connect().await;
        s.write_all(form_head(Some(&token), 4096).as_bytes())
            .await
            .expect("write");
        s.write_all(b"a=1").await.expect("write");
        held.push(s);
    }
    // Let the proxy reach the buffering step of both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = w.connect().await;
    third
        .write_all(form_head(Some(&token), 100).as_bytes())
        .await
        .expect("write");
    third.write_all(&[b'b'; 100]).await.expect("write");
    assert_eq!(status(&mut third, Duration::from_secs(3)).await, 503);

    // The held requests complete and give their share back.
    for s in &mut held {
        s.write_all(&[b'c'; 4093]).await.expect("write");
        assert_eq!(status(s, Duration::from_secs(5)).await, 200);
    }
    let mut again = w.connect().await;
    again
        .write_all(form_head(Some(&token), 100).as_bytes())
        .await
        .expect("write");
    again.write_all(&[b'b'; 100]).await.expect("write");
    assert_eq!(status(&mut again, Duration::from_secs(3)).await, 200);
    assert_eq!(w.echo.count(), 3, "the refused request was not forwarded");
    let admin = w.proxy.admin.expect("admin");
    let text = metrics_text(&format!("http://{admin}/metrics")).await;
    assert!(
        text.lines()
            .any(|l| l == "fapi_guard_body_buffer_exhausted_total 1"),
        "{text}"
    );
}

async fn metrics_text(url: &str) -> String {
    use http_body_util::BodyExt;
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let resp = client().request(req).await.expect("metrics");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(body.to_vec()).expect("utf-8")
}
