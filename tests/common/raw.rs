//! Hand-written HTTP/1.1 on a raw socket: what an attacker sends, byte for byte, and every
//! response read back (several when the server answers pipelined requests), with whether the
//! server closed the connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The deny reason of a JSON error body.
    pub fn reason(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .get("reason")?
            .as_str()
            .map(str::to_owned)
    }
}

/// Everything the server sent back on one connection.
#[derive(Debug)]
pub struct RawExchange {
    pub responses: Vec<RawResponse>,
    /// The server closed (EOF or reset) before `wait` passed without data.
    pub closed: bool,
    /// Bytes after the last complete response (a truncated or unparsable answer).
    pub trailing: Vec<u8>,
}

impl RawExchange {
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }
}

/// Sends `bytes` and reads until the server closes or stays silent for `wait`.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> RawExchange {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // A server may refuse early and close while we are still writing: that is an answer too.
    let _ = s.write_all(bytes).await;
    read_all(&mut s, wait).await
}

/// Reads what the server sends until it closes or stays silent for `wait`.
pub async fn read_all(s: &mut TcpStream, wait: Duration) -> RawExchange {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(wait, s.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let (responses, trailing) = parse_responses(&buf);
    RawExchange {
        responses,
        closed,
        trailing,
    }
}

/// Splits a byte stream into responses (Content-Length or chunked bodies).
pub fn parse_responses(mut buf: &[u8]) -> (Vec<RawResponse>, Vec<u8>) {
    let mut out = Vec::new();
    while let Some((resp, used)) = parse_one(buf) {
        out.push(resp);
        buf = &buf[used..];
    }
    (out, buf.to_vec())
}

fn parse_one(buf: &[u8]) -> Option<(RawResponse, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut at = end + 4;
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        let b = buf.get(at..at + len)?.to_vec();
        at += len;
        b
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_str = std::str::from_utf8(&buf[at..line_end]).ok()?;
            let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // No trailers from our servers: the final CRLF.
                at += 2;
                break;
            }
            body.extend_from_slice(buf.get(at..at + size)?);
            at += size + 2;
        }
        body
    } else if (100..200).contains(&status) || status == 204 || status == 304 {
        Vec::new()
    } else {
        // Body delimited by close.
        let b = buf[at..].to_vec();
        at = buf.len();
        b
    };
    Some((
        RawResponse {
            status,
            headers,
            body,
        },
        at.min(buf.len()),
    ))
}
