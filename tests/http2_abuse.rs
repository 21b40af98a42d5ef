//! HTTP/2 abuse: rapid reset (CVE-2023-44487), header-list and CONTINUATION floods,
//! pseudo-header tricks, connection-specific fields and `:authority` vs `Host`. Sent over h2c
//! with prior knowledge, with the `h2` client where it can express the attack and hand-built
//! frames where a conforming client refuses to. The API must receive nothing it could read
//! differently, and the proxy must keep serving.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use fapi_guard::server::{H2_MAX_CONCURRENT_STREAMS, H2_MAX_PENDING_RESETS};
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct World {
    echo: Echo,
    proxy: Proxy,
    _jwks: Jwks,
}

async fn world() -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    World {
        echo,
        proxy,
        _jwks: jwks,
    }
}

/// An h2c (prior knowledge) client connection.
async fn h2_client(w: &World) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(w.proxy.addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h2_get(
    send: &mut h2::client::SendRequest<Bytes>,
    req: Request<()>,
) -> Result<u16, h2::Error> {
    let mut send = send.clone().ready().await?;
    let (resp, _) = send.send_request(req, true)?;
    let resp = resp.await?;
    Ok(resp.status().as_u16())
}

#[tokio::test]
async fn authority_and_host_must_agree() {
    let w = world().await;
    let mut c = h2_client(&w).await;
    let ok = Request::get("http://api.test.example/health")
        .body(())
        .expect("req");
    assert_eq!(h2_get(&mut c, ok).await.expect("response"), 200);
    let seen = w.echo.last().expect("forwarded");
    assert_eq!(seen.uri, "/health");
    assert_eq!(seen.headers["x-forwarded-host"], "api.test.example");

    let before = w.echo.count();
    let confused = Request::get("http://api.test.example/health")
        .header("host", "internal.example")
        .body(())
        .expect("req");
    assert_eq!(h2_get(&mut c, confused).await.expect("response"), 400);
    assert_eq!(w.echo.count(), before, "nothing forwarded");
}

// ------------------------------------------------------------------ hand-built frames

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK integer with an N-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal field without indexing, new name, no Huffman (RFC 7541 §6.2.2): any bytes at all,
/// which is the point.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        field(&mut b, n, v);
    }
    b
}

/// What the server did with our streams, read until it goes quiet or closes.
#[derive(Debug, Default)]
struct Outcome {
    /// Streams that got a response HEADERS frame.
    answered: Vec<u32>,
    /// Streams reset by the server, with the error code.
    reset: Vec<(u32, u32)>,
    /// GOAWAY error code.
    goaway: Option<u32>,
    /// GOAWAY last-stream-id: the highest stream the server may have acted on.
    goaway_last_stream: Option<u32>,
    closed: bool,
}

async fn read_frames(s: &mut TcpStream, quiet: Duration) -> Outcome {
    let mut buf = Vec::new();
    let mut out = Outcome::default();
    let mut chunk = [0u8; 16384];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                out.closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut at = 0;
    while buf.len() >= at + 9 {
        let len = (usize::from(buf[at]) << 16)
            | (usize::from(buf[at + 1]) << 8)
            | usize::from(buf[at + 2]);
        let kind = buf[at + 3];
        let stream =
            u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]) & 0x7fff_ffff;
        let Some(payload) = buf.get(at + 9..at + 9 + len) else {
            break;
        };
        match kind {
            HEADERS => out.answered.push(stream),
            RST_STREAM if payload.len() == 4 => out.reset.push((
                stream,
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            )),
            GOAWAY if payload.len() >= 8 => {
                out.goaway_last_stream = Some(
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff,
                );
                out.goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]))
            }
            _ => {}
        }
        at += 9 + len;
    }
    out
}

async fn raw_h2(w: &World) -> TcpStream {
    let mut s = TcpStream::connect(w.proxy.addr).await.expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).await.expect("preface");
    s
}

fn request(path: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"api.test.example"),
        (b":path", path),
    ];
    fields.extend_from_slice(extra);
    block(&fields)
}

/// Malformed requests (RFC 9113 §8.1.1, §8.2, §8.3): each stream is answered with an error
/// or reset, never forwarded, and the connection keeps serving well-formed streams.
#[tokio::test]
async fn malformed_pseudo_headers_and_connection_fields_are_never_forwarded() {
    let w = world().await;
    let hdr = |fields: &[(&[u8], &[u8])]| block(fields);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "missing :path",
            hdr(&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
            ]),
        ),
        (
            "duplicate :path",
            hdr(&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/health"),
                (b":path", b"/accounts/1"),
            ]),
        ),
        ("path without leading slash", request(b"health", &[])),
        ("path with dot segments", request(b"/x/../health", &[])),
        (
            "uppercase field name",
            request(b"/health", &[(b"X-Upper", b"1")]),
        ),
        (
            "connection field",
            request(b"/health", &[(b"connection", b"close")]),
        ),
        (
            "transfer-encoding field",
            request(b"/health", &[(b"transfer-encoding", b"chunked")]),
        ),
        (
            "te other than trailers",
            request(b"/health", &[(b"te", b"gzip")]),
        ),
        (
            "pseudo-header after a regular field",
            hdr(&[
                (b":method", b"GET"),
                (b"x-a", b"1"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/health"),
            ]),
        ),
        (
            "unknown pseudo-header",
            request(b"/health", &[(b":protocol", b"websocket")]),
        ),
        (
            "Host disagreeing with :authority",
            request(b"/health", &[(b"host", b"internal.example")]),
        ),
        ("NUL in a value", request(b"/health", &[(b"x-a", b"a\0b")])),
        (
            "CRLF in a value",
            request(b"/health", &[(b"x-a", b"a\r\nx-injected: 1")]),
        ),
    ];
    let mut failures = Vec::new();
    for (name, block) in cases {
        let before = w.echo.count();
        let mut s = raw_h2(&w).await;
        s.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
            .await
            .expect("write");
        let out = read_frames(&mut s, Duration::from_millis(500)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let forwarded = w.echo.count() - before;
        let handled = !out.answered.is_empty() || !out.reset.is_empty() || out.goaway.is_some();
        if forwarded != 0 || !handled {
            failures.push(format!("{name}: forwarded {forwarded}, {out:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The control: the same hand-built request, well-formed, is served.
    let mut s = raw_h2(&w).await;
    s.write_all(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &request(b"/health", &[]),
    ))
    .await
    .expect("write");
    let before = w.echo.count();
    let out = read_frames(&mut s, Duration::from_millis(500)).await;
    assert_eq!(out.answered, [1], "{out:?}");
    assert_eq!(w.echo.count(), before + 1);
}

/// CVE-2023-44487: streams opened and reset at once. The connection is closed with GOAWAY well
/// before the flood ends, and the proxy keeps serving others.
#[tokio::test]
async fn rapid_reset_closes_the_connection() {
    let w = world().await;
    let mut s = raw_h2(&w).await;
    let started = Instant::now();
    let mut burst = Vec::new();
    let req = request(b"/health", &[]);
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS, id, &req));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    // The server may close while we still write: that is the expected end.
    let _ = s.write_all(&burst).await;
    let out = read_frames(&mut s, Duration::from_secs(2)).await;
    assert!(out.closed, "connection closed: {out:?}");
    // h2 answers a pending-reset flood with GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §7), naming
    // the last stream it acted on: the flood is cut off after about `H2_MAX_PENDING_RESETS`
    // streams (21 when measured), and however the frames happen to be read, never past one
    // window of concurrent streams more.
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    assert_eq!(out.goaway, Some(ENHANCE_YOUR_CALM), "{out:?}");
    let acted_on = out.goaway_last_stream.map_or(u32::MAX, |id| id.div_ceil(2));
    let bound = H2_MAX_PENDING_RESETS as u32 + H2_MAX_CONCURRENT_STREAMS;
    assert!(
        acted_on <= bound,
        "GOAWAY after {acted_on} of 2000 streams (bound {bound}): {out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let forwarded = w.echo.count() as u32;
    assert!(
        forwarded <= acted_on,
        "forwarded {forwarded} of 2000 reset streams, more than the {acted_on} acted on"
    );
    // Still serving.
    let mut c = h2_client(&w).await;
    let ok = Request::get("http://api.test.example/health")
        .body(())
        .expect("req");
    assert_eq!(h2_get(&mut c, ok).await.expect("response"), 200);
}

/// A header list above the advertised limit, in one frame or spread over an endless run of
/// CONTINUATION frames: refused without buffering it, nothing forwarded.
#[tokio::test]
async fn header_and_continuation_floods_are_cut_off() {
    let w = world().await;
    // One HEADERS frame with ~64 KiB of fields (limit: 4 × max_header_bytes = 32 KiB).
    let mut s = raw_h2(&w).await;
    let filler: Vec<(Vec<u8>, Vec<u8>)> = (0..800)
        .map(|i| (format!("x-flood-{i}").into_bytes(), vec![b'a'; 64]))
        .collect();
    let extra: Vec<(&[u8], &[u8])> = filler
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let big = request(b"/health", &extra);
    // Split into frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE).
    let mut chunks = big.chunks(16_000).peekable();
    let first = chunks.next().expect("block");
    let mut bytes = frame(HEADERS, END_STREAM, 1, first);
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        bytes.extend(frame(
            CONTINUATION,
            if last { END_HEADERS } else { 0 },
            1,
            c,
        ));
    }
    let _ = s.write_all(&bytes).await;
    let out = read_frames(&mut s, Duration::from_millis(800)).await;
    assert!(
        !out.answered.is_empty() || !out.reset.is_empty() || out.goaway.is_some() || out.closed,
        "{out:?}"
    );
    assert_eq!(w.echo.count(), 0, "oversized header list forwarded");

    // CONTINUATION flood: a header block that never ends.
    let mut s = raw_h2(&w).await;
    s.write_all(&frame(HEADERS, END_STREAM, 1, &request(b"/health", &[])))
        .await
        .expect("write");
    let one = block(&[(b"x-c", &[b'a'; 100])]);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut cut_off = false;
    while started.elapsed() < Duration::from_secs(10) {
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend(frame(CONTINUATION, 0, 1, &one));
        }
        if s.write_all(&batch).await.is_err() {
            cut_off = true;
            break;
        }
        sent += batch.len();
        if sent > 64 * 1024 * 1024 {
            break;
        }
        let mut b = [0u8; 4096];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
        {
            cut_off = true;
            break;
        }
    }
    if !cut_off {
        let out = read_frames(&mut s, Duration::from_millis(500)).await;
        cut_off = out.closed;
    }
    assert!(
        cut_off,
        "CONTINUATION flood of {sent} bytes was not cut off"
    );
    assert!(
        sent < 16 * 1024 * 1024,
        "server accepted {sent} bytes of one header block"
    );
    assert_eq!(w.echo.count(), 0);
}
