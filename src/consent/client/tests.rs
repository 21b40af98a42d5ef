//! Against a real HTTP consent service on 127.0.0.1:0 that counts calls and can change a
//! record, answer 404/500/garbage, stall, or go away.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::*;
use crate::response::{Body, full};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Status(u16),
    Garbage,
}

#[derive(Default)]
struct State {
    calls: AtomicUsize,
    records: Mutex<HashMap<String, Value>>,
    mode: Mutex<Option<Mode>>,
    /// Delay after reading the record and before answering.
    delay: Mutex<Duration>,
    paths: Mutex<Vec<String>>,
}

struct ConsentService {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl ConsentService {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        // Aborting this task drops the listener and every connection (the JoinSet): the port
        // then refuses connections, like a consent service that went away.
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(answer(&st, &req).await) }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            server,
        }
    }

    fn put(&self, id: &str, record: Value) {
        self.state
            .records
            .lock()
            .expect("lock")
            .insert(id.to_owned(), record);
    }

    fn set_status(&self, id: &str, status: &str) {
        let mut records = self.state.records.lock().expect("lock");
        let r = records.get_mut(id).expect("record exists");
        r["status"] = json!(status);
    }

    fn mode(&self, m: Mode) {
        *self.state.mode.lock().expect("lock") = Some(m);
    }

    fn delay(&self, d: Duration) {
        *self.state.delay.lock().expect("lock") = d;
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn settings(&self, tune: impl FnOnce(&mut ConsentConfig)) -> ConsentSettings {
        let mut c = config(&format!("http://{}/consents/{{id}}", self.addr));
        tune(&mut c);
        c.compile().expect("valid settings")
    }
}

async fn answer(st: &State, req: &Request<Incoming>) -> Response<Body> {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    st.paths.lock().expect("lock").push(path.clone());
    let mode = st.mode.lock().expect("lock").unwrap_or(Mode::Normal);
    let id = path.strip_prefix("/consents/").unwrap_or("");
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    // Read first, then stall: an in-flight answer can be older than a revocation.
    let record = st.records.lock().expect("lock").get(&*id).cloned();
    let delay = *st.delay.lock().expect("lock");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, body) = match (mode, record) {
        (Mode::Status(s), _) => (s, "{\"error\":\"boom\"}".to_owned()),
        (Mode::Garbage, _) => (200, "<html>oops</html>".to_owned()),
        (Mode::Normal, Some(r)) => (200, r.to_string()),
        (Mode::Normal, None) => (404, "{\"error\":\"not found\"}".to_owned()),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    resp
}

fn config(url: &str) -> ConsentConfig {
    serde_yaml::from_str(&format!("url: {url}")).expect("config")
}

fn record(id: &str, status: &str) -> Value {
    json!({"id": id, "status": status, "client_id": "tpp-1", "subject": "psu-9",
           "expires_at": "2099-01-01T00:00:00Z", "permissions": ["ReadAccountsDetail"],
           "accounts": ["acc-1"], "x-extension": {"ignored": 10.50}})
}

fn client(settings: ConsentSettings) -> (ConsentClient, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let http = HttpsClient::new().expect("http client");
    (ConsentClient::new(settings, http, metrics.clone()), metrics)
}

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

#[tokio::test]
async fn cache_hit_makes_no_call() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    let (c, metrics) = client(svc.settings(|_| {}));
    for _ in 0..5 {
        let r = c.get("c-1").await.expect("record");
        assert_eq!(
            (r.status.as_str(), r.client_id.as_str()),
            ("Authorised", "tpp-1")
        );
    }
    assert_eq!(svc.calls(), 1);
    let text = metrics.encode();
    assert!(
        text.contains(r#"fapi_guard_cache_requests_total{cache="consent",result="hit"} 4"#),
        "{text}"
    );
    assert!(
        text.contains(r#"fapi_guard_cache_requests_total{cache="consent",result="miss"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_100_makes_one_call() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    svc.delay(Duration::from_millis(100));
    let (c, _) = client(svc.settings(|_| {}));
    let c = Arc::new(c);
    let mut tasks = JoinSet::new();
    for _ in 0..100 {
        let c = c.clone();
        tasks.spawn(async move { c.get("c-1").await });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.expect("task").expect("record").status, "Authorised");
        ok += 1;
    }
    assert_eq!((ok, svc.calls()), (100, 1));
}

#[tokio::test]
async fn status_change_is_seen_after_cache_ttl() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    let (c, _) = client(svc.settings(|s| s.cache_ttl = ms(200)));
    assert_eq!(c.get("c-1").await.expect("record").status, "Authorised");
    svc.set_status("c-1", "Revoked");
    assert_eq!(c.get("c-1").await.expect("cached").status, "Authorised");
    assert_eq!(svc.calls(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get("c-1").await.expect("record").status, "Revoked");
    assert_eq!(svc.calls(), 2);
}

#[tokio::test]
async fn not_found_is_negatively_cached() {
    let svc = ConsentService::start().await;
    let (c, _) = client(svc.settings(|s| s.negative_ttl = ms(200)));
    for _ in 0..3 {
        assert_eq!(
            c.get("c-404").await.err(),
            Some(ConsentLookupError::Missing)
        );
    }
    assert_eq!(svc.calls(), 1);
    svc.put("c-404", record("c-404", "Authorised"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.get("c-404").await.is_ok());
    assert_eq!(svc.calls(), 2);
    assert_eq!(
        ConsentLookupError::Missing.deny_reason(),
        DenyReason::ConsentMissing
    );
}

#[tokio::test]
async fn failure_uses_a_fresh_enough_last_good_record() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    let (c, _) = client(svc.settings(|s| {
        s.cache_ttl = ms(100);
        s.max_stale = ms(5_000);
    }));
    assert!(c.get("c-1").await.is_ok());
    svc.mode(Mode::Status(500));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = c
        .get("c-1")
        .await
        .expect("last good record while the service fails");
    assert_eq!(r.status, "Authorised");
    assert_eq!(svc.calls(), 2, "the failing call was made");
    // Garbage is a failure too, and so is a record for another id.
    svc.mode(Mode::Garbage);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(c.get("c-1").await.is_ok());
    // Never seen: nothing to fall back to.
    svc.mode(Mode::Normal);
    svc.put("c-other", record("c-1", "Authorised"));
    assert_eq!(
        c.get("c-other").await.err(),
        Some(ConsentLookupError::Unavailable)
    );
    svc.mode(Mode::Status(503));
    assert_eq!(
        c.get("c-2").await.err(),
        Some(ConsentLookupError::Unavailable)
    );
    assert_eq!(
        ConsentLookupError::Unavailable.deny_reason(),
        DenyReason::DependencyUnavailable
    );
}

#[tokio::test]
async fn last_good_record_has_a_staleness_bound() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    let (c, _) = client(svc.settings(|s| {
        s.cache_ttl = ms(100);
        s.max_stale = ms(100);
    }));
    assert!(c.get("c-1").await.is_ok());
    svc.mode(Mode::Status(500));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        c.get("c-1").await.err(),
        Some(ConsentLookupError::Unavailable)
    );
}

#[tokio::test]
async fn refused_connections_fail_closed_or_use_last_good() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    let (c, _) = client(svc.settings(|s| {
        s.cache_ttl = ms(100);
        s.max_stale = ms(5_000);
    }));
    assert!(c.get("c-1").await.is_ok());
    svc.server.abort();
    let _ = (&mut { svc.server }).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(c.get("c-1").await.expect("last good").status, "Authorised");
    assert_eq!(
        c.get("c-2").await.err(),
        Some(ConsentLookupError::Unavailable)
    );
}

#[tokio::test]
async fn slow_service_times_out() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    svc.delay(Duration::from_secs(5));
    let (c, _) = client(svc.settings(|s| s.timeout = ms(100)));
    let t0 = Instant::now();
    assert_eq!(
        c.get("c-1").await.err(),
        Some(ConsentLookupError::Unavailable)
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1_000), "took {took:?}");
    assert!(took >= Duration::from_millis(90), "took {took:?}");
}

#[tokio::test]
async fn invalidate_forgets_at_once_even_with_a_call_in_flight() {
    let svc = ConsentService::start().await;
    svc.put("c-1", record("c-1", "Authorised"));
    let (c, _) = client(svc.settings(|_| {}));
    assert_eq!(c.get("c-1").await.expect("record").status, "Authorised");
    svc.set_status("c-1", "Revoked");
    c.invalidate("c-1");
    assert_eq!(c.get("c-1").await.expect("record").status, "Revoked");
    assert_eq!(svc.calls(), 2);

    // A call in flight read the record before the revocation; its answer must not stick.
    svc.set_status("c-1", "Authorised");
    c.invalidate("c-1");
    svc.delay(Duration::from_millis(200));
    let c = Arc::new(c);
    let in_flight = {
        let c = c.clone();
        tokio::spawn(async move { c.get("c-1").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    svc.set_status("c-1", "Revoked");
    c.invalidate("c-1");
    let r = in_flight.await.expect("task").expect("record");
    assert_eq!(
        r.status, "Revoked",
        "the pre-revocation answer was refetched"
    );
    assert_eq!(svc.calls(), 4);
    svc.delay(Duration::ZERO);
    assert_eq!(c.get("c-1").await.expect("cached").status, "Revoked");
    assert_eq!(svc.calls(), 4);
}

#[tokio::test]
async fn ids_are_encoded_into_one_path_segment() {
    let svc = ConsentService::start().await;
    svc.put("a/b?c#d", record("a/b?c#d", "Authorised"));
    let (c, _) = client(svc.settings(|_| {}));
    assert!(c.get("a/b?c#d").await.is_ok());
    assert_eq!(
        svc.state.paths.lock().expect("lock").as_slice(),
        ["/consents/a%2Fb%3Fc%23d"]
    );
    let long = "x".repeat(300);
    for bad in ["", ".", "..", "a\nb", long.as_str()] {
        assert_eq!(
            c.get(bad).await.err(),
            Some(ConsentLookupError::Missing),
            "{bad:?}"
        );
    }
    assert_eq!(svc.calls(), 1, "implausible ids make no call");
}

#[test]
fn config_defaults_and_errors() {
    let s = config("http://consent.bank.svc/consents/{id}")
        .compile()
        .expect("compiles");
    assert_eq!(
        (
            s.timeout,
            s.cache_ttl,
            s.max_stale,
            s.negative_ttl,
            s.cache_capacity
        ),
        (
            Duration::from_millis(300),
            Duration::from_secs(15),
            Duration::ZERO,
            Duration::from_secs(5),
            10_000
        )
    );
    assert_eq!(
        s.url_for("c 1").map(|u| u.to_string()).as_deref(),
        Some("http://consent.bank.svc/consents/c%201")
    );
    let q = config("https://consent.bank.svc/v1/consent?id={id}&full=1")
        .compile()
        .expect("query placeholder");
    assert_eq!(
        q.url_for("c&1").map(|u| u.to_string()).as_deref(),
        Some("https://consent.bank.svc/v1/consent?id=c%261&full=1")
    );
    let cases: &[(&str, &str)] = &[
        ("url: http://consent.bank.svc/consents", "consent.url: "),
        ("url: http://consent.bank.svc/{id}/{id}", "more than one"),
        ("url: http://{id}.bank.svc/consents", "must be in the path"),
        ("url: ftp://consent.bank.svc/{id}", "http(s)"),
        ("url: http://consent.bank.svc/{id}#x", "no fragment"),
        ("url: 'http://consent bank/{id}'", "not a URL"),
        (
            "{url: 'http://c.svc/{id}', timeout: 0ms}",
            "consent.timeout",
        ),
        (
            "{url: 'http://c.svc/{id}', cache_capacity: 0}",
            "consent.cache_capacity",
        ),
    ];
    for (yaml, msg) in cases {
        let c: ConsentConfig = serde_yaml::from_str(yaml).expect("YAML");
        let err = c.compile().expect_err(yaml);
        assert!(err.contains(msg), "{yaml}: {err}");
    }
    for unknown in [
        "{url: 'http://c.svc/{id}', ttl: 1s}",
        "{url: 'http://c.svc/{id}', timeout: 300}",
    ] {
        assert!(
            serde_yaml::from_str::<ConsentConfig>(unknown).is_err(),
            "{unknown}"
        );
    }
}
