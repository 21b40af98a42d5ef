//! A dependency that fails on purpose: a hand-written HTTP/1.1 server on a raw socket (so it can
//! reset, hang or cut a response where a well-behaved server library would not), playing the
//! issuer's JWKS endpoint, the consent service or the upstream API. It counts what it received
//! and can stop listening (connection refused) and come back on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// How the next requests are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 200 with the configured body.
    Serve,
    /// This status with a short body.
    Status(u16),
    /// Wait, then serve.
    Slow(Duration),
    /// 200 with a body of this many bytes (streamed; stops when the peer goes away).
    Huge(usize),
    /// Read the request, then reset the connection (RST) before any byte of the answer.
    ResetBeforeHead,
    /// Read the request, then close the connection (FIN) before any byte of the answer.
    CloseBeforeHead,
    /// Read the request and never answer.
    Hang,
    /// A head announcing 1000 bytes of body, 10 bytes of it, then FIN.
    TruncateBody,
    /// A head announcing 100000 bytes of body, 10 bytes of it, then RST.
    ResetMidBody,
}

#[derive(Clone)]
pub struct FaultServer {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    body: Arc<Mutex<Bytes>>,
    /// One entry per request read: its `x-fapi-interaction-id` (empty when it had none).
    receipts: Arc<Mutex<Vec<String>>>,
    /// The accept loop and every open connection, aborted by `down`.
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl FaultServer {
    /// Listens on a fresh port, serving `body` (as `application/json`).
    pub async fn start(body: impl Into<Bytes>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let this = Self {
            addr: listener.local_addr().expect("addr"),
            fault: Arc::new(Mutex::new(Fault::Serve)),
            body: Arc::new(Mutex::new(body.into())),
            receipts: Arc::default(),
            tasks: Arc::default(),
        };
        this.listen(listener);
        this
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("lock") = fault;
    }

    pub fn set_body(&self, body: impl Into<Bytes>) {
        *self.body.lock().expect("lock") = body.into();
    }

    /// Stops listening and drops every open connection: new connections are refused.
    pub fn down(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.listen(listener);
    }

    pub fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests read so far.
    pub fn received(&self) -> usize {
        self.receipts.lock().expect("lock").len()
    }

    /// The interaction ids of the requests read so far.
    pub fn receipts(&self) -> Vec<String> {
        self.receipts.lock().expect("lock").clone()
    }

    fn listen(&self, listener: TcpListener) {
        let this = self.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = this.clone();
                let handle = tokio::spawn(async move { conn.serve(stream).await });
                this.tasks.lock().expect("lock").push(handle.abort_handle());
            }
        });
        self.tasks.lock().expect("lock").push(accept.abort_handle());
    }

    /// One keep-alive connection: requests one after the other until the fault ends it.
    async fn serve(&self, mut stream: TcpStream) {
        let mut buf = Vec::with_capacity(4096);
        loop {
            let Some(iid) = read_request(&mut stream, &mut buf).await else {
                return;
            };
            self.receipts.lock().expect("lock").push(iid);
            let fault = self.fault.lock().expect("lock").clone();
            let body = self.body.lock().expect("lock").clone();
            let keep = match fault {
                Fault::Serve => respond(&mut stream, 200, &body).await,
                Fault::Status(s) => respond(&mut stream, s, b"{\"error\":\"injected\"}").await,
                Fault::Slow(d) => {
                    tokio::time::sleep(d).await;
                    respond(&mut stream, 200, &body).await
                }
                Fault::Huge(n) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'['; 64 * 1024];
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(chunk.len());
                        if stream.write_all(&chunk[..k]).await.is_err() {
                            return;
                        }
                        left -= k;
                    }
                    true
                }
                Fault::ResetBeforeHead => {
                    let _ = stream.set_zero_linger();
                    return;
                }
                Fault::CloseBeforeHead => {
                    let _ = stream.shutdown().await;
                    return;
                }
                Fault::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                Fault::TruncateBody => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                        .await;
                    let _ = stream.shutdown().await;
                    return;
                }
                Fault::ResetMidBody => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789")
                        .await;
                    let _ = stream.flush().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = stream.set_zero_linger();
                    return;
                }
            };
            if !keep {
                return;
            }
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(body).await.is_ok()
}

/// Reads one request head (and a `content-length` body, discarded) from `stream`, keeping any
/// bytes of the next request in `buf`. Returns its `x-fapi-interaction-id`, or `None` when the
/// connection ended or sent something that is not a request.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 256 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let mut body_left: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body_left > 0 {
        if buf.is_empty() {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let k = body_left.min(buf.len());
        buf.drain(..k);
        body_left -= k;
    }
    Some(header("x-fapi-interaction-id").unwrap_or_default())
}
