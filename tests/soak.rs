//! Soak: sustained mixed valid and hostile traffic through the real binary, asserting
//! zero panics, zero unexpected statuses, bounded memory, nothing forwarded without its audit
//! record, and `fapi-guard audit verify` passing at the end.
//!
//! ```sh
//! FAPI_GUARD_TEST_SOAK=1 FAPI_GUARD_SOAK_SECONDS=600 cargo test --release --test soak -- --nocapture
//! ```
//!
//! `FAPI_GUARD_TEST_SOAK` (any value, read at build time) switches the test on; CI (`.ci/run`)
//! runs it for `FAPI_GUARD_SOAK_SECONDS` (default 75). Traffic goes only to 127.0.0.1.
//!
//! Beside the mixed workers, `FAPI_GUARD_SOAK_DISTINCT_WORKERS` (default 2) workers never send
//! the same token twice: each request carries a freshly minted token (bearer, DPoP-bound with a
//! fresh proof, expired, or forged), so the token, verdict and replay caches fill and evict for
//! the whole run. The token cache is configured small (`SOAK_TOKEN_CACHE`); every second the
//! test scrapes `fapi_guard_cache_entries` and asserts each cache within its
//! `fapi_guard_cache_capacity`, and it prints the resident set and cache sizes over time.
//!
//! Every request has a kind, and every kind one expected answer. Raw-socket kinds (smuggling
//! attempts, garbage) expect a clean 4xx or a closed connection, never a forward: none of them
//! carries a credential, so the upstream must never see them.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::process::*;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SOAK_POLICY: &str = "\
api: soak
defaults:
  binding: unbound_allowed
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
  - name: get-account
    method: GET
    path: /accounts/{account_id}
  - name: bound
    method: GET
    path: /bound
    binding: dpop_or_mtls
  - name: create-payment
    method: POST
    path: /payments
    scopes: [payments]
    consent:
      authorization_details:
        type: payment_initiation
        match_body:
          /Data/Initiation/InstructedAmount/Amount: /instructedAmount/amount
  - name: health
    method: GET
    path: /health
    public: true
";

const PUBLIC: &str = "https://api.test.example";

/// `token_cache.capacity` for the soak: small, so distinct tokens overflow it within seconds.
const SOAK_TOKEN_CACHE: u64 = 5_000;

/// The upstream: counts requests and remembers their interaction ids; flags any path that a
/// hostile request tried to smuggle through.
#[derive(Clone, Default)]
struct Upstream {
    ids: Arc<Mutex<HashSet<String>>>,
    count: Arc<AtomicU64>,
    smuggled: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let this = this.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    async move {
                        this.count.fetch_add(1, Ordering::Relaxed);
                        let id = req
                            .headers()
                            .get("x-fapi-interaction-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        if req.uri().to_string().contains("smuggled") {
                            this.smuggled
                                .lock()
                                .expect("lock")
                                .push(req.uri().to_string());
                        }
                        this.ids.lock().expect("lock").insert(id);
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"{\"ok\":true}",
                        ))))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }
}

/// Per-kind tallies.
#[derive(Default)]
struct Tally {
    sent: u64,
    /// Answers that were not the expected one (first few kept for the report).
    unexpected: u64,
    examples: Vec<String>,
    /// Raw kinds: connections the proxy closed without an answer (allowed for them).
    closed: u64,
}

#[derive(Default, Clone)]
struct Stats(Arc<Mutex<BTreeMap<&'static str, Tally>>>);

impl Stats {
    fn ok(&self, kind: &'static str) {
        self.0.lock().expect("lock").entry(kind).or_default().sent += 1;
    }

    fn closed(&self, kind: &'static str) {
        let mut m = self.0.lock().expect("lock");
        let t = m.entry(kind).or_default();
        t.sent += 1;
        t.closed += 1;
    }

    fn bad(&self, kind: &'static str, what: String) {
        let mut m = self.0.lock().expect("lock");
        let t = m.entry(kind).or_default();
        t.sent += 1;
        t.unexpected += 1;
        if t.examples.len() < 5 {
            t.examples.push(what);
        }
    }

    /// One HTTP-client request of `kind` that must answer `want`.
    fn check(&self, kind: &'static str, want: u16, got: Result<u16, String>) {
        match got {
            Ok(s) if s == want => self.ok(kind),
            Ok(s) => self.bad(kind, format!("status {s}, expected {want}")),
            Err(e) => self.bad(kind, format!("transport error {e}, expected {want}")),
        }
    }
}

/// xorshift64*: deterministic enough for traffic mixes and garbage, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Credentials minted by the test (never by the proxy's code), refreshed as they age.
struct Creds {
    key: Arc<TestKey>,
    dpop: DpopKey,
    cert_hash: [u8; 32],
    minted: Instant,
    bearer: String,
    payments: String,
    dpop_token: String,
    mtls_token: String,
    expired: String,
    forged: String,
}

impl Creds {
    fn new(key: Arc<TestKey>, cert_hash: [u8; 32]) -> Self {
        let dpop = DpopKey::new();
        let mut c = Self {
            key,
            dpop,
            cert_hash,
            minted: Instant::now(),
            bearer: String::new(),
            payments: String::new(),
            dpop_token: String::new(),
            mtls_token: String::new(),
            expired: String::new(),
            forged: String::new(),
        };
        c.mint();
        c
    }

    fn mint(&mut self) {
        let k = &self.key;
        self.minted = Instant::now();
        self.bearer = k.token(|_, _| {});
        self.payments = k.token(|_, c| {
            c["scope"] = json!("payments");
            c["authorization_details"] = json!([{"type": "payment_initiation",
                "instructedAmount": {"amount": "10.00", "currency": "GBP"}}]);
        });
        let jkt = self.dpop.jkt.clone();
        self.dpop_token = k.token(|_, c| c["cnf"] = json!({"jkt": jkt}));
        let x5t = B64.encode(self.cert_hash);
        self.mtls_token = k.token(|_, c| c["cnf"] = json!({"x5t#S256": x5t}));
        self.expired = k.token(|_, c| {
            c["iat"] = json!(now() - 600);
            c["exp"] = json!(now() - 300);
        });
        // Same header and claims, signature of another token: a forgery.
        let other = k.token(|_, _| {});
        let (head, _) = self.bearer.rsplit_once('.').expect("jws");
        let (_, sig) = other.rsplit_once('.').expect("jws");
        self.forged = format!("{head}.{sig}");
    }

    fn refresh(&mut self) {
        // Tokens live 300 s; re-mint well before.
        if self.minted.elapsed() > Duration::from_secs(120) {
            self.mint();
        }
    }
}

async fn send(req: Request<Full<Bytes>>) -> Result<u16, String> {
    let work = async {
        let resp = client().request(req).await.map_err(|e| format!("{e}"))?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok(status)
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
}

fn get(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("req")
}

fn payment(url: &str, token: &str, amount: &str, pad: usize) -> Request<Full<Bytes>> {
    let body = json!({"Data": {"Initiation": {"InstructedAmount": {"Amount": amount, "Currency": "GBP"}}},
        "Pad": "x".repeat(pad)});
    Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("req")
}

/// One HTTP-client worker: valid and hostile requests in a random mix.
async fn http_worker(
    base: String,
    creds: &mut Creds,
    stats: Stats,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let xfcc = {
        let hex: String = creds.cert_hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("By=spiffe://ingress;Hash={hex}")
    };
    let url = |p: &str| format!("{base}{p}");
    while !stop.load(Ordering::Relaxed) {
        creds.refresh();
        match rng.below(16) {
            0..=2 => {
                let a = format!("Bearer {}", creds.bearer);
                let r = send(get(&url("/accounts/acc-1"), &[("authorization", &a)])).await;
                stats.check("valid bearer", 200, r);
            }
            3..=4 => {
                let a = format!("DPoP {}", creds.dpop_token);
                let htu = format!("{PUBLIC}/bound");
                let proof = creds.dpop.proof("GET", &htu, &creds.dpop_token, |_, _| {});
                let h = [("authorization", a.as_str()), ("dpop", proof.as_str())];
                stats.check("valid DPoP", 200, send(get(&url("/bound"), &h)).await);
                // The same proof again: a replay.
                let r = send(get(&url("/bound"), &h)).await;
                stats.check("DPoP replay", 401, r);
            }
            5 => {
                let a = format!("Bearer {}", creds.mtls_token);
                let h = [
                    ("authorization", a.as_str()),
                    ("x-forwarded-client-cert", xfcc.as_str()),
                ];
                stats.check(
                    "valid mTLS (forwarded)",
                    200,
                    send(get(&url("/bound"), &h)).await,
                );
            }
            6 => {
                let r = send(payment(&url("/payments"), &creds.payments, "10.00", 0)).await;
                stats.check("valid payment", 200, r);
            }
            7 => {
                let r = send(payment(&url("/payments"), &creds.payments, "9999.00", 0)).await;
                stats.check("payment over consent", 403, r);
            }
            8 => {
                let which = if rng.below(2) == 0 {
                    &creds.forged
                } else {
                    &creds.expired
                };
                let a = format!("Bearer {which}");
                let r = send(get(&url("/accounts"), &[("authorization", &a)])).await;
                stats.check("bad token", 401, r);
            }
            9 => {
                // RFC 6750 §3.1: a scheme without a token is `invalid_request` (400); a token
                // that is no JWS is `invalid_token` (401); another scheme is no credential (401).
                let junk = [
                    ("Bearer", 400),
                    ("Bearer a.b.c", 401),
                    ("Basic Zm9vOmJhcg==", 401),
                ];
                let (j, want) = junk[rng.below(junk.len() as u64) as usize];
                let r = send(get(&url("/accounts"), &[("authorization", j)])).await;
                stats.check("malformed credential", want, r);
            }
            10 => {
                stats.check("no token", 401, send(get(&url("/accounts"), &[])).await);
            }
            11 => {
                let a = format!("Bearer {}", creds.bearer);
                let r = send(get(&url("/nowhere"), &[("authorization", &a)])).await;
                stats.check("unknown route", 404, r);
            }
            12 => {
                let paths = [
                    "/accounts/%2e%2e/payments",
                    "/accounts//acc-1",
                    "/accounts/acc-1%2fx",
                    "/accounts/%zz",
                    "/accounts/./acc-1",
                    "/accounts/a%00b",
                    "/accounts/a%5cb",
                ];
                let p = paths[rng.below(paths.len() as u64) as usize];
                let a = format!("Bearer {}", creds.bearer);
                let r = send(get(&url(p), &[("authorization", &a)])).await;
                stats.check("malformed path", 400, r);
            }
            13 => {
                let big = "a".repeat(10_000);
                let a = format!("Bearer {}", creds.bearer);
                let r = send(get(
                    &url("/accounts"),
                    &[("authorization", &a), ("x-big", &big)],
                ))
                .await;
                stats.check("oversized header", 431, r);
            }
            14 => {
                // Over `max_body_bytes` (4096) on a route that reads the body.
                let r = send(payment(&url("/payments"), &creds.payments, "10.00", 6000)).await;
                match r {
                    Ok(413) => stats.ok("oversized body"),
                    // A closed connection is a clean refusal too (RFC 9112 §9.6).
                    Err(_) => stats.closed("oversized body"),
                    Ok(s) => stats.bad("oversized body", format!("status {s}, expected 413")),
                }
            }
            _ => {
                stats.check("public health", 200, send(get(&url("/health"), &[])).await);
            }
        }
    }
}

/// A worker that never repeats a token: each request mints a new one (distinct `jti`), so every
/// request misses the token cache and takes the cold path. DPoP requests carry a fresh proof.
async fn distinct_worker(
    base: String,
    key: Arc<TestKey>,
    stats: Stats,
    stop: Arc<AtomicBool>,
    minted: Arc<AtomicU64>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let dpop = DpopKey::new();
    let url = |p: &str| format!("{base}{p}");
    while !stop.load(Ordering::Relaxed) {
        minted.fetch_add(1, Ordering::Relaxed);
        match rng.below(8) {
            0..=3 => {
                let t = key.token(|_, _| {});
                let a = format!("Bearer {t}");
                let r = send(get(&url("/accounts/acc-1"), &[("authorization", &a)])).await;
                stats.check("distinct bearer", 200, r);
            }
            4..=5 => {
                let jkt = dpop.jkt.clone();
                let t = key.token(|_, c| c["cnf"] = json!({"jkt": jkt}));
                let proof = dpop.proof("GET", &format!("{PUBLIC}/bound"), &t, |_, _| {});
                let a = format!("DPoP {t}");
                let h = [("authorization", a.as_str()), ("dpop", proof.as_str())];
                stats.check("distinct DPoP", 200, send(get(&url("/bound"), &h)).await);
            }
            6 => {
                let t = key.token(|_, c| {
                    c["iat"] = json!(now() - 600);
                    c["exp"] = json!(now() - 300);
                });
                let a = format!("Bearer {t}");
                let r = send(get(&url("/accounts"), &[("authorization", &a)])).await;
                stats.check("distinct expired", 401, r);
            }
            _ => {
                // A signature taken from another token: a distinct forgery every time.
                let t = key.token(|_, _| {});
                let other = key.token(|_, _| {});
                let (head, _) = t.rsplit_once('.').expect("jws");
                let (_, sig) = other.rsplit_once('.').expect("jws");
                let a = format!("Bearer {head}.{sig}");
                let r = send(get(&url("/accounts"), &[("authorization", &a)])).await;
                stats.check("distinct forged", 401, r);
            }
        }
    }
}

/// One scrape's `(entries, capacity)` per cache, from `fapi_guard_cache_entries` and
/// `fapi_guard_cache_capacity`.
fn cache_sizes(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = series
            .strip_prefix("fapi_guard_cache_entries{cache=\"")
            .map(|r| (r, true))
            .or_else(|| {
                series
                    .strip_prefix("fapi_guard_cache_capacity{cache=\"")
                    .map(|r| (r, false))
            })
        else {
            continue;
        };
        let (name, is_entries) = rest;
        let name = name.trim_end_matches("\"}").to_owned();
        let v: u64 = value.parse::<f64>().map(|f| f as u64).unwrap_or(u64::MAX);
        let e = out.entry(name).or_insert((0, 0));
        if is_entries {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    out
}

/// Hostile bytes on raw sockets; none carries a credential, so nothing may be forwarded.
fn raw_payload(rng: &mut Rng) -> (&'static str, Vec<u8>) {
    let smuggle: [(&'static str, &[u8]); 10] = [
        ("smuggling CL.TE", b"POST /accounts HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /accounts/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("smuggling TE.CL", b"POST /accounts HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2c\r\nGET /accounts/smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n"),
        ("smuggling duplicate CL", b"POST /accounts HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /accounts/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("smuggling obfuscated TE", b"POST /accounts HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", b"GET /accounts HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n"),
        ("bare LF and CR", b"GET /accounts HTTP/1.1\nHost: a\rX: b\n\n"),
        ("NUL in header", b"GET /accounts HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n"),
        ("absolute-form", b"GET http://evil.example/accounts/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("authority-form", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"),
        ("overlong request line", b""),
    ];
    match rng.below(12) {
        10 => {
            let n = 16 + rng.below(2048) as usize;
            let bytes = (0..n).map(|_| rng.next() as u8).collect();
            ("random garbage", bytes)
        }
        11 => {
            // Half a request, then the client goes away.
            (
                "truncated head",
                b"GET /accounts HTTP/1.1\r\nHost: a\r\nX-Half: ".to_vec(),
            )
        }
        i => {
            let (name, bytes) = smuggle[i as usize];
            if bytes.is_empty() {
                let mut v = b"GET /".to_vec();
                v.extend(std::iter::repeat_n(b'a', 300_000));
                v.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
                (name, v)
            } else {
                (name, bytes.to_vec())
            }
        }
    }
}

/// The status codes in whatever the proxy answered before closing (or going quiet).
async fn raw_exchange(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u16>, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // The proxy may refuse before reading everything: a failed write is a closed connection.
    let _ = s.write_all(payload).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut buf = [0u8; 8192];
    loop {
        // Once an answer is in, wait only briefly for more (a pipelined second answer).
        let answered = got.windows(4).any(|w| w == b"\r\n\r\n");
        let left = deadline.saturating_duration_since(Instant::now());
        let left = if answered {
            left.min(Duration::from_millis(300))
        } else {
            left
        };
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    Ok(text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect())
}

async fn raw_worker(addr: SocketAddr, stats: Stats, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        let (kind, payload) = raw_payload(&mut rng);
        match raw_exchange(addr, &payload).await {
            Err(e) => stats.bad(kind, format!("connect failed: {e}")),
            Ok(codes) if codes.is_empty() => stats.closed(kind),
            Ok(codes) if codes.iter().all(|c| (400..500).contains(c)) => stats.ok(kind),
            Ok(codes) => stats.bad(kind, format!("answered {codes:?}, expected 4xx or close")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_soak),
    ignore = "long-running soak: set FAPI_GUARD_TEST_SOAK=1 (and FAPI_GUARD_SOAK_SECONDS)"
)]
async fn soak_mixed_valid_and_hostile_traffic() {
    assert!(
        std::env::var_os("FAPI_GUARD_TEST_SOAK").is_some(),
        "run with FAPI_GUARD_TEST_SOAK=1"
    );
    let distinct_workers: u64 = match std::env::var("FAPI_GUARD_SOAK_DISTINCT_WORKERS") {
        Ok(s) => s
            .parse()
            .expect("FAPI_GUARD_SOAK_DISTINCT_WORKERS is a number of workers"),
        Err(_) => 2,
    };
    let seconds: u64 = match std::env::var("FAPI_GUARD_SOAK_SECONDS") {
        Ok(s) => s
            .parse()
            .expect("FAPI_GUARD_SOAK_SECONDS is a number of seconds"),
        Err(_) => 75,
    };
    assert!(
        seconds >= 30,
        "a soak shorter than 30 s says nothing about memory"
    );

    let key = Arc::new(TestKey::new("k1"));
    let upstream = Upstream::default();
    let up_addr = upstream.start().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("policy.yaml"), SOAK_POLICY).expect("policy");
    let listen = "  forwarded_client_cert:\n    header: x-forwarded-client-cert\n    format: xfcc\n    \
                  trusted_peers: [127.0.0.1/32]\n  limits:\n    max_header_bytes: 8192\n    \
                  max_body_bytes: 4096\n    header_read_timeout: 2s\n    request_timeout: 5s\n";
    let rest = format!(
        "upstream:\n  url: http://{up_addr}\n  timeout: 2s\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
         token_cache:\n  capacity: {SOAK_TOKEN_CACHE}\n\
         audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n"
    );
    let mut p = ProxyProcess::spawn(dir.path(), listen, &rest);
    p.wait_ready().await;
    let proxy_addr: SocketAddr = format!("127.0.0.1:{}", p.port).parse().expect("addr");

    let stats = Stats::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let seed = now() as u64;
    for i in 0..6u64 {
        let (stats, stop, base, key) = (stats.clone(), stop.clone(), p.url(""), key.clone());
        let mut hash = [0u8; 32];
        hash[0] = i as u8 + 1;
        workers.push(tokio::spawn(async move {
            let mut creds = Creds::new(key, hash);
            http_worker(base, &mut creds, stats, stop, seed.wrapping_add(i * 7919)).await;
        }));
    }
    let minted = Arc::new(AtomicU64::new(0));
    for i in 0..distinct_workers {
        let (stats, stop, base, key) = (stats.clone(), stop.clone(), p.url(""), key.clone());
        workers.push(tokio::spawn(distinct_worker(
            base,
            key,
            stats,
            stop,
            minted.clone(),
            seed.wrapping_mul(17).wrapping_add(i),
        )));
    }
    for i in 0..4u64 {
        let (stats, stop) = (stats.clone(), stop.clone());
        workers.push(tokio::spawn(raw_worker(
            proxy_addr,
            stats,
            stop,
            seed.wrapping_mul(31).wrapping_add(i),
        )));
    }

    // Memory: VmRSS once a second while the traffic runs; every cache within its bound.
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut caches: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!(
                "fapi-guard died during the soak ({status}):\n{}",
                p.stderr()
            );
        }
        rss.push(p.rss_kib().expect("VmRSS"));
        let sizes = cache_sizes(&p.metrics().await);
        for cache in ["token", "token_verdict", "dpop_replay"] {
            assert!(sizes.contains_key(cache), "no gauge for cache {cache}");
        }
        assert_eq!(sizes["token"].1, SOAK_TOKEN_CACHE, "configured bound");
        for (cache, (entries, bound)) in &sizes {
            assert!(
                entries <= bound,
                "cache {cache} holds {entries} entries over its bound {bound} after {} s",
                started.elapsed().as_secs()
            );
            caches.entry(cache.clone()).or_default().push(*entries);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }

    // Report.
    let tallies = stats.0.lock().expect("lock");
    let total: u64 = tallies.values().map(|t| t.sent).sum();
    eprintln!(
        "soak: {seconds} s, {total} requests ({:.0}/s), upstream received {}",
        total as f64 / seconds as f64,
        upstream.count.load(Ordering::Relaxed)
    );
    for (kind, t) in tallies.iter() {
        eprintln!(
            "  {kind:<26} {:>7} sent {:>5} closed {:>3} unexpected {:?}",
            t.sent, t.closed, t.unexpected, t.examples
        );
    }
    eprintln!("  VmRSS KiB per second: {rss:?}");
    eprintln!(
        "  distinct tokens minted: {} ({distinct_workers} workers)",
        minted.load(Ordering::Relaxed)
    );
    for (cache, series) in &caches {
        eprintln!("  {cache} cache entries per second: {series:?}");
    }

    // Zero unexpected answers, every kind exercised.
    let unexpected: Vec<_> = tallies
        .iter()
        .filter(|(_, t)| t.unexpected > 0)
        .map(|(k, t)| format!("{k}: {} ({:?})", t.unexpected, t.examples))
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    for kind in [
        "valid bearer",
        "valid DPoP",
        "DPoP replay",
        "valid mTLS (forwarded)",
        "valid payment",
        "payment over consent",
        "bad token",
        "no token",
        "unknown route",
        "malformed path",
        "oversized header",
        "oversized body",
        "random garbage",
        "smuggling CL.TE",
    ]
    .into_iter()
    .chain(
        (distinct_workers > 0)
            .then_some([
                "distinct bearer",
                "distinct DPoP",
                "distinct expired",
                "distinct forged",
            ])
            .into_iter()
            .flatten(),
    ) {
        assert!(
            tallies.get(kind).is_some_and(|t| t.sent > 0),
            "kind {kind} was never sent"
        );
    }
    assert!(
        upstream.smuggled.lock().expect("lock").is_empty(),
        "a smuggled request reached the upstream: {:?}",
        upstream.smuggled.lock().expect("lock")
    );

    // Bounded memory: after warm-up (the first third) the resident set stops growing.
    let third = rss.len() / 3;
    let middle = rss[third..2 * third].iter().max().copied().unwrap_or(0);
    let last = rss[2 * third..].iter().max().copied().unwrap_or(0);
    assert!(
        last <= middle + middle / 10 + 4096,
        "memory kept growing: middle third max {middle} KiB, last third max {last} KiB"
    );

    // A clean stop, no panic, and the audit trail: complete for what was forwarded, verifiable.
    let status = p.terminate();
    assert!(status.success(), "clean exit: {status}");
    let log = p.stderr();
    assert!(!log.contains("panicked"), "a panic was logged:\n{log}");
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl."))
        })
        .collect();
    files.sort();
    files.push(dir.path().join("audit.jsonl"));
    let mut allowed = HashSet::new();
    for f in &files {
        allowed.extend(allowed_ids(&audit_records(f)));
    }
    let ids = upstream.ids.lock().expect("lock");
    let unaudited = ids.iter().filter(|id| !allowed.contains(*id)).count();
    assert_eq!(unaudited, 0, "forwarded without a decision record");
    let refs: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
    let (code, out) = audit_verify(&refs);
    assert_eq!(code, 0, "audit verify: {out}");
    eprintln!("  audit verify: {}", out.trim());
}
