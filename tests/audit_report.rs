//! `fapi-guard audit report` on audit trails written by the real proxy.
//!
//! Two replicas (one rotating its file every few records) run with one injected clock in front
//! of a real echo upstream and a real consent service; scripted clients call them over 40 days:
//!
//! | client | what it does | expected findings |
//! |---|---|---|
//! | tpp-good | DPoP-bound, exactly the scope and consent it needs | none |
//! | tpp-over | holds `payments` and three consent permissions, reads accounts only, probes `/transactions` | unused_scopes (high), unused_consent_permissions, repeated_denials |
//! | tpp-dormant | called 40 days ago only | dormant_client |
//! | tpp-deleg | reached through a two-hop `act` chain | deep_delegation (and both actors of the chain appear as principals) |
//! | tpp-long | 2-hour bearer tokens on an `unbound_allowed` route | long_lived_tokens (high), unbound_tokens |
//!
//! The report is produced by the real binary, in text, JSON (validated against
//! `docs/audit-report.schema.json` when Python is available) and HTML (rendered in headless
//! Chromium when available).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const DAY: i64 = 86_400;

const POLICY: &str = "\
api: accounts
defaults:
  binding: dpop
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
    consent:
      claim: openbanking_intent_id
      permissions: [ReadAccountsBasic]
  - name: get-transactions
    method: GET
    path: /transactions
    scopes: [transactions]
  - name: create-payment
    method: POST
    path: /payments
    scopes: [payments]
  - name: legacy-balances
    method: GET
    path: /legacy/balances
    binding: unbound_allowed
  - name: aggregated-accounts
    method: GET
    path: /aggregated/accounts
    delegation:
      max_depth: 2
      actors: [\"spiffe://bank.example/ns/aggregators/*\"]
  - name: health
    method: GET
    path: /health
    public: true
";

const AGGREGATOR: &str = "spiffe://bank.example/ns/aggregators/sa/agg";
/// The earlier hop of tpp-deleg's chain: the aggregator acts for the portal.
const PORTAL: &str = "spiffe://bank.example/ns/web/sa/portal";

/// The findings the scripted traffic must produce, and nothing else: (code, kind, principal).
const EXPECTED: &[(&str, &str, &str)] = &[
    ("dormant_client", "client", "tpp-dormant"),
    ("unused_scopes", "client", "tpp-over"),
    ("unused_consent_permissions", "client", "tpp-over"),
    ("repeated_denials", "client", "tpp-over"),
    ("long_lived_tokens", "client", "tpp-long"),
    ("unbound_tokens", "client", "tpp-long"),
    ("deep_delegation", "client", "tpp-deleg"),
];

/// The audit files of both replicas, the policy directory and the report's `--as-of`.
struct Trail {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    policies: PathBuf,
    as_of: String,
    /// Decision records written, per client (in and before the window).
    decisions: HashMap<String, u64>,
}

fn trail() -> &'static Trail {
    static TRAIL: OnceLock<Trail> = OnceLock::new();
    TRAIL.get_or_init(|| {
        // The proxies live in their own runtime, shut down before any test reads the files.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(build_trail())
        })
        .join()
        .expect("trail builder")
    })
}

// ---------------------------------------------------------------- the scripted traffic

async fn consent_service() -> String {
    let perms = |p: &[&str]| p.iter().map(|s| json!(s)).collect::<Vec<_>>();
    let records: Arc<HashMap<String, Value>> = Arc::new(
        [
            ("c-good", "tpp-good", perms(&["ReadAccountsBasic"])),
            (
                "c-over",
                "tpp-over",
                perms(&[
                    "ReadAccountsBasic",
                    "ReadAccountsDetail",
                    "ReadTransactionsDetail",
                ]),
            ),
            ("c-dormant", "tpp-dormant", perms(&["ReadAccountsBasic"])),
        ]
        .into_iter()
        .map(|(id, client, p)| {
            let rec = json!({"id": id, "status": "Authorised", "client_id": client,
                             "subject": "psu-9", "permissions": p, "accounts": ["acc-1"]});
            (id.to_owned(), rec)
        })
        .collect(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let records = records.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let records = records.clone();
                async move {
                    let id = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
                    let (status, body) = match records.get(&id) {
                        Some(r) => (StatusCode::OK, r.to_string()),
                        None => (StatusCode::NOT_FOUND, String::new()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/consents/{{id}}")
}

struct Replica {
    running: fapi_guard::server::Running,
    dir: PathBuf,
}

impl Replica {
    async fn start(
        dir: PathBuf,
        upstream: &str,
        jwks: &str,
        consent: &str,
        rotate: u64,
        clock: &fapi_guard::clock::Clock,
    ) -> Self {
        std::fs::create_dir_all(&dir).expect("replica dir");
        std::fs::write(dir.join("policy.yaml"), POLICY).expect("policy");
        // `max_token_lifetime: 24h`: the deployment lets 2-hour tokens through, which is what
        // the report must catch.
        let config = format!(
            "\
listen:
  address: 127.0.0.1:0
  public_url: https://api.test.example
admin:
  address: 127.0.0.1:0
upstream:
  url: {upstream}
  timeout: 2s
issuers:
  - issuer: {ISSUER}
    jwks_uri: {jwks}
    audiences: [{AUDIENCE}]
    max_token_lifetime: 24h
consent:
  url: {consent}
  timeout: 1s
  cache_ttl: 1s
audit:
  sink: file
  path: audit.jsonl
  rotate_bytes: {rotate}
policies: [policy.yaml]
"
        );
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).expect("config");
        let config = fapi_guard::config::Config::load(&path).expect("config loads");
        let guard = fapi_guard::app::build(config, clock.clone()).expect("build");
        guard.spawn_refresh();
        let running = fapi_guard::server::start(guard, Duration::from_secs(2))
            .await
            .expect("start");
        for _ in 0..200 {
            if running.guard.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(running.guard.is_ready(), "replica never became ready");
        Self { running, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }
}

/// One scripted client.
struct Tpp {
    client_id: &'static str,
    scope: &'static str,
    consent: Option<&'static str>,
    /// DPoP key; `None`: unbound bearer tokens.
    dpop: Option<DpopKey>,
    lifetime: i64,
    act: Option<Value>,
}

impl Tpp {
    fn token(&self, key: &TestKey, now: i64) -> String {
        key.token(|_, c| {
            c["client_id"] = json!(self.client_id);
            c["scope"] = json!(self.scope);
            c["iat"] = json!(now - 5);
            c["exp"] = json!(now - 5 + self.lifetime);
            if let Some(id) = self.consent {
                c["openbanking_intent_id"] = json!(id);
            }
            if let Some(d) = &self.dpop {
                c["cnf"] = json!({"jkt": d.jkt});
            }
            if let Some(a) = &self.act {
                c["act"] = a.clone();
            }
        })
    }

    /// Calls `path` on `replica` at the clock's time; returns the HTTP status.
    async fn call(&self, key: &TestKey, replica: &Replica, path: &str, now: i64) -> u16 {
        let token = self.token(key, now);
        let reply = match &self.dpop {
            Some(d) => {
                let htu = format!("https://api.test.example{path}");
                let proof = d.proof("GET", &htu, &token, |_, c| c["iat"] = json!(now));
                get(
                    &replica.url(path),
                    &[
                        ("authorization", &format!("DPoP {token}")),
                        ("dpop", &proof),
                    ],
                )
                .await
            }
            None => {
                get(
                    &replica.url(path),
                    &[("authorization", &format!("Bearer {token}"))],
                )
                .await
            }
        };
        reply.status
    }
}

async fn build_trail() -> Trail {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let consent = consent_service().await;
    let upstream = format!("http://{}", echo.addr);

    let as_of = now() / 3600 * 3600;
    let clock = fapi_guard::clock::Clock::fixed(as_of - 40 * DAY);
    // Replica A rotates every few records; replica B keeps one file.
    let a = Replica::start(
        dir.path().join("a"),
        &upstream,
        &jwks.uri(),
        &consent,
        2500,
        &clock,
    )
    .await;
    let b = Replica::start(
        dir.path().join("b"),
        &upstream,
        &jwks.uri(),
        &consent,
        0,
        &clock,
    )
    .await;

    let tpp = |client_id, scope, consent, bound: bool, lifetime, act| Tpp {
        client_id,
        scope,
        consent,
        dpop: bound.then(DpopKey::new),
        lifetime,
        act,
    };
    let good = tpp(
        "tpp-good",
        "accounts openid",
        Some("c-good"),
        true,
        300,
        None,
    );
    let over = tpp(
        "tpp-over",
        "accounts payments openid",
        Some("c-over"),
        true,
        300,
        None,
    );
    let dormant = tpp(
        "tpp-dormant",
        "accounts",
        Some("c-dormant"),
        true,
        300,
        None,
    );
    let deleg = tpp(
        "tpp-deleg",
        "accounts",
        None,
        true,
        300,
        Some(json!({"sub": AGGREGATOR, "client_id": "agg-1",
                    "act": {"sub": PORTAL}})),
    );
    let long = tpp("tpp-long", "accounts", None, false, 7200, None);

    let mut decisions: HashMap<String, u64> = HashMap::new();
    let mut expect = |client: &str, status: u16, want: u16| {
        assert_eq!(status, want, "{client}");
        *decisions.entry(client.to_owned()).or_default() += 1;
    };

    // 40 days before: the dormant client's last activity.
    for _ in 0..3 {
        let t = clock.now_unix();
        expect(
            "tpp-dormant",
            dormant.call(&key, &a, "/accounts", t).await,
            200,
        );
        clock.advance(3600);
    }
    // In the window: a few calls every few days.
    for days_ago in [25, 18, 12, 7, 3, 1] {
        clock.set(as_of - days_ago * DAY + 9 * 3600);
        let t = clock.now_unix();
        expect("tpp-good", good.call(&key, &b, "/accounts", t).await, 200);
        expect("tpp-over", over.call(&key, &a, "/accounts", t).await, 200);
        expect(
            "tpp-deleg",
            deleg.call(&key, &b, "/aggregated/accounts", t).await,
            200,
        );
        expect(
            "tpp-long",
            long.call(&key, &b, "/legacy/balances", t).await,
            200,
        );
        if days_ago <= 7 {
            // Probing a route it holds no scope for: scope_insufficient, three times.
            expect(
                "tpp-over",
                over.call(&key, &a, "/transactions", t).await,
                403,
            );
        }
        // Unattributed traffic: no token at all.
        let anon = get(&b.url("/accounts"), &[]).await;
        assert_eq!(anon.status, 401);
    }
    clock.set(as_of - 3600);
    let (a_dir, b_dir) = (a.dir.clone(), b.dir.clone());
    a.running.shutdown(Duration::from_secs(2)).await;
    b.running.shutdown(Duration::from_secs(2)).await;
    // Outcome records are written detached: let the writers drain.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut files = Vec::new();
    for d in [&a_dir, &b_dir] {
        for e in std::fs::read_dir(d).expect("list") {
            let p = e.expect("entry").path();
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".jsonl"))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let rotated = files.iter().filter(|p| !p.ends_with("audit.jsonl")).count();
    assert!(
        rotated >= 2,
        "replica A should have rotated its file: {files:?}"
    );
    Trail {
        policies: a_dir.join("policy.yaml"),
        _dir: dir,
        files,
        as_of: fapi_guard::audit::report::stamp::format_micros(as_of * 1_000_000),
        decisions,
    }
}

// ---------------------------------------------------------------- running the report

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn report(files: &[PathBuf], format: &str) -> Run {
    let t = trail();
    let out = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["audit", "report"])
        .args(files)
        .arg("--policies")
        .arg(&t.policies)
        .args(["--since", "30d", "--as-of", &t.as_of, "--format", format])
        .output()
        .expect("run fapi-guard");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn json_report(files: &[PathBuf]) -> (i32, Value) {
    let run = report(files, "json");
    let v =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{}", run.stdout));
    (run.code, v)
}

fn finding_set(v: &Value) -> BTreeSet<(String, String, String)> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["code"].as_str().expect("code").to_owned(),
                f["principal_kind"].as_str().expect("kind").to_owned(),
                f["principal"].as_str().expect("principal").to_owned(),
            )
        })
        .collect()
}

fn expected_set() -> BTreeSet<(String, String, String)> {
    EXPECTED
        .iter()
        .map(|(c, k, p)| (c.to_string(), k.to_string(), p.to_string()))
        .collect()
}

fn principal<'a>(v: &'a Value, kind: &str, id: &str) -> &'a Value {
    v["principals"]
        .as_array()
        .expect("principals")
        .iter()
        .find(|p| p["kind"] == kind && p["id"] == id)
        .unwrap_or_else(|| panic!("no {kind} {id} in the report"))
}

fn finding<'a>(v: &'a Value, code: &str, id: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == code && f["principal"] == id)
        .unwrap_or_else(|| panic!("no finding {code} for {id}"))
}

/// Every decision record's interaction id in `files`.
fn interaction_ids(files: &[PathBuf]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for f in files {
        for line in std::fs::read_to_string(f).expect("read").lines() {
            let v: Value = serde_json::from_str(line).expect("json line");
            if v["kind"] == "decision"
                && let Some(i) = v["interaction_id"].as_str()
            {
                ids.insert(i.to_owned());
            }
        }
    }
    ids
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("read").lines().count()
}

// ---------------------------------------------------------------- tests

#[test]
fn json_report_names_exactly_the_expected_findings_with_evidence() {
    let t = trail();
    let (code, v) = json_report(&t.files);
    assert_eq!(code, 0, "every file verifies");
    assert_eq!(finding_set(&v), expected_set());
    assert_eq!(v["integrity"]["untrusted_files"], 0);
    let chains = v["integrity"]["chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 2, "one chain per replica: {chains:?}");
    assert!(chains.iter().all(|c| c["starts"] == "genesis"));
    let total_lines: usize = t.files.iter().map(|f| lines(f)).sum();
    assert_eq!(v["totals"]["records"], total_lines as u64);

    // Ranked: high first, ranks 1..n.
    let findings = v["findings"].as_array().expect("findings");
    let ranks: Vec<u64> = findings
        .iter()
        .map(|f| f["rank"].as_u64().expect("rank"))
        .collect();
    assert_eq!(ranks, (1..=findings.len() as u64).collect::<Vec<_>>());
    let sev: Vec<&str> = findings
        .iter()
        .map(|f| f["severity"].as_str().expect("sev"))
        .collect();
    let order = |s: &str| ["high", "medium", "low"].iter().position(|x| *x == s);
    assert!(
        sev.windows(2).all(|w| order(w[0]) <= order(w[1])),
        "{sev:?}"
    );

    // Evidence: counts, first/last seen, an interaction id that is in the trail.
    let ids = interaction_ids(&t.files);
    for f in findings {
        let e = &f["evidence"];
        assert!(e["count"].as_u64().expect("count") > 0, "{f}");
        assert!(
            e["first_seen"].is_string() && e["last_seen"].is_string(),
            "{f}"
        );
        let iid = e["example_interaction_id"].as_str().expect("example id");
        assert!(ids.contains(iid), "{iid} is not a decision in the trail");
    }

    let over = principal(&v, "client", "tpp-over");
    assert_eq!(over["scopes"]["granted"], json!(["accounts", "payments"]));
    assert_eq!(over["scopes"]["ignored"], json!(["openid"]));
    assert_eq!(
        over["scopes"]["unused"],
        json!([{"name": "payments", "needed_by": ["POST accounts/create-payment"]}])
    );
    let unused_perms: Vec<&str> = over["consent_permissions"]["unused"]
        .as_array()
        .expect("unused")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        unused_perms,
        ["ReadAccountsDetail", "ReadTransactionsDetail"]
    );
    assert_eq!(finding(&v, "unused_scopes", "tpp-over")["severity"], "high");
    assert_eq!(over["calls"], t.decisions["tpp-over"]);
    assert_eq!(over["deny_reasons"][0]["reason"], "scope_insufficient");
    assert_eq!(over["deny_reasons"][0]["evidence"]["count"], 3);
    assert_eq!(
        finding(&v, "repeated_denials", "tpp-over")["items"],
        json!(["scope_insufficient ×3"])
    );

    let dormant = principal(&v, "client", "tpp-dormant");
    assert_eq!(dormant["dormant"], true);
    assert_eq!(dormant["calls"], 0);
    assert_eq!(dormant["calls_before_window"], 3);
    assert_eq!(dormant["score"], 0);
    let seen = dormant["seen"]["last_seen"].as_str().expect("last seen");
    assert!(
        seen < v["window"]["since"].as_str().expect("since"),
        "{seen}"
    );
    assert_eq!(
        finding(&v, "dormant_client", "tpp-dormant")["evidence"]["count"],
        3
    );

    let long = principal(&v, "client", "tpp-long");
    assert_eq!(long["tokens"]["max_lifetime_seconds"], 7200);
    assert_eq!(long["tokens"]["unbound_share"], 1.0);
    assert_eq!(long["tokens"]["unbound_allowed_route_calls"], 6);
    assert_eq!(
        finding(&v, "long_lived_tokens", "tpp-long")["severity"],
        "high"
    );

    let deleg = principal(&v, "client", "tpp-deleg");
    assert_eq!(deleg["tokens"]["max_delegation_depth"], 2);
    assert_eq!(deleg["delegation_peers"], json!([AGGREGATOR, PORTAL]));
    // Both actors of the chain are principals: the current one and the earlier hop.
    let actor = principal(&v, "actor", AGGREGATOR);
    assert_eq!(actor["calls"], 6);
    assert_eq!(
        (
            &actor["calls_as_current_actor"],
            &actor["calls_as_prior_actor"]
        ),
        (&json!(6), &json!(0))
    );
    assert_eq!(actor["delegation_peers"], json!(["tpp-deleg"]));
    assert_eq!(actor["routes"][0]["route"], "aggregated-accounts");
    let inner = principal(&v, "actor", PORTAL);
    assert_eq!(inner["calls"], 6);
    assert_eq!(
        (
            &inner["calls_as_current_actor"],
            &inner["calls_as_prior_actor"]
        ),
        (&json!(0), &json!(6))
    );
    assert_eq!(inner["delegation_peers"], json!(["tpp-deleg"]));
    assert_eq!(inner["routes"][0]["route"], "aggregated-accounts");
    assert_eq!(inner["tokens"]["max_delegation_depth"], 2);
    // Clients carry no actor role.
    assert_eq!(deleg["calls_as_prior_actor"], 0);

    let good = principal(&v, "client", "tpp-good");
    assert_eq!(good["score"], 100);
    assert_eq!(good["scopes"]["unused"], json!([]));
    assert_eq!(
        good["consent_permissions"]["used"],
        json!(["ReadAccountsBasic"])
    );
    assert!(over["score"].as_u64() < good["score"].as_u64());

    assert_eq!(v["totals"]["unattributed"], 6);
    let reasons: Vec<(&str, u64)> = v["deny_reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().expect("r"),
                r["count"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(reasons, [("token_missing", 6), ("scope_insufficient", 3)]);
    let timeline: u64 = v["timeline"]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["allow"].as_u64().expect("a") + b["deny"].as_u64().expect("d"))
        .sum();
    assert_eq!(
        timeline,
        v["totals"]["decisions_in_window"].as_u64().expect("n")
    );
}

#[test]
fn file_order_does_not_matter() {
    let t = trail();
    let (_, sorted) = json_report(&t.files);
    let mut reversed = t.files.clone();
    reversed.reverse();
    let (code, v) = json_report(&reversed);
    assert_eq!(code, 0);
    assert_eq!(v["principals"], sorted["principals"]);
    assert_eq!(v["findings"], sorted["findings"]);
    // Directories stand for their audit files.
    let dirs: BTreeSet<PathBuf> = t
        .files
        .iter()
        .map(|f| f.parent().expect("dir").to_owned())
        .collect();
    let (code, v) = json_report(&dirs.into_iter().collect::<Vec<_>>());
    assert_eq!(code, 0);
    assert_eq!(v["findings"], sorted["findings"]);
}

#[test]
fn text_report_names_the_same_findings() {
    let t = trail();
    let run = report(&t.files, "text");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let findings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains("] "))
        .collect();
    assert_eq!(findings.len(), EXPECTED.len(), "{}", run.stdout);
    for (code, kind, who) in EXPECTED {
        let needle = format!("{code} {kind} {who}:");
        assert!(
            findings.iter().any(|l| l.contains(&needle)),
            "{needle} missing from\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("client tpp-dormant  score 0 DORMANT"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("UNUSED [payments]"), "{}", run.stdout);
}

#[test]
fn tampered_truncated_and_duplicated_files_are_reported_and_not_counted() {
    let t = trail();
    let (_, clean) = json_report(&t.files);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut copies = Vec::new();
    for (i, f) in t.files.iter().enumerate() {
        let name = format!(
            "{i}-{}",
            f.file_name().and_then(|n| n.to_str()).expect("name")
        );
        let to = dir.path().join(name);
        std::fs::copy(f, &to).expect("copy");
        copies.push(to);
    }
    // Tamper: in a rotated file of replica A, an allow becomes a deny on a line that is not
    // the file's last (an edit of the very last line only shows against the next file).
    let rotated = copies
        .iter()
        .find(|p| !p.to_string_lossy().ends_with("audit.jsonl") && lines(p) >= 2)
        .expect("a rotated file")
        .clone();
    let text = std::fs::read_to_string(&rotated).expect("read");
    let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = (0..l.len() - 1)
        .find(|&i| l[i].contains("\"decision\":\"allow\""))
        .expect("an allow to tamper with");
    l[i] = l[i].replacen("\"decision\":\"allow\"", "\"decision\":\"deny\"", 1);
    std::fs::write(
        &rotated,
        l.iter().map(|x| format!("{x}\n")).collect::<String>(),
    )
    .expect("tamper");
    // Truncate: replica B's active file (sorted last) cut mid-line, as a torn copy would be.
    let active_b = copies.last().expect("files").clone();
    assert!(active_b.to_string_lossy().ends_with("audit.jsonl") && lines(&active_b) > 3);
    let bytes = std::fs::read(&active_b).expect("read");
    std::fs::write(&active_b, &bytes[..bytes.len() - 25]).expect("truncate");
    // Duplicate: a clean file copied under another name is counted once.
    let dup = dir.path().join("copy-of-first.jsonl");
    let first_clean = copies
        .iter()
        .find(|p| **p != rotated && **p != active_b)
        .expect("a clean file")
        .clone();
    std::fs::copy(&first_clean, &dup).expect("dup");
    copies.push(dup.clone());

    let run = report(&copies, "json");
    assert_eq!(
        run.code, 1,
        "untrusted files → exit 1; stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("untrusted, not counted"),
        "{}",
        run.stderr
    );
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["integrity"]["untrusted_files"], 2);
    let status = |p: &Path| -> (String, String) {
        let f = v["integrity"]["files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == p.display().to_string())
            .unwrap_or_else(|| panic!("{} not listed", p.display()));
        (
            f["status"].as_str().expect("status").to_owned(),
            f["reason"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (st, why) = status(&rotated);
    assert_eq!(st, "untrusted");
    assert!(why.contains("does not match the hash"), "{why}");
    let (st, why) = status(&active_b);
    assert_eq!(st, "untrusted");
    assert!(why.contains("incomplete line"), "{why}");
    let (st_a, _) = status(&first_clean);
    let (st_b, why) = status(&dup);
    assert_eq!(
        BTreeSet::from([st_a.as_str(), st_b.as_str()]),
        BTreeSet::from(["trusted", "duplicate"]),
        "{why}"
    );
    // Not counted: exactly the records of the two untrusted files are missing.
    let missing = (lines(&rotated) + lines(&active_b)) as u64;
    let clean_records = clean["totals"]["records"].as_u64().expect("n");
    let got = v["totals"]["records"].as_u64().expect("n");
    // The truncated file lost part of its last line; `lines` counts that partial line too.
    assert_eq!(got, clean_records - missing, "records counted");
}

/// A rotated set with a file missing in the middle, or a rotated file cut exactly at a line
/// boundary (so it still verifies on its own), would look like a log that simply starts later:
/// the report calls it incomplete evidence, exits 1 with a line naming both files, and counts
/// neither side of the gap.
#[test]
fn a_missing_or_cut_rotated_file_is_incomplete_evidence() {
    let t = trail();
    let (_, clean) = json_report(&t.files);
    let clean_records = clean["totals"]["records"].as_u64().expect("n");
    // Each replica's files keep their names, in a directory of their own.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = |case: &str| -> (Vec<PathBuf>, Vec<PathBuf>, PathBuf) {
        let mut files = Vec::new();
        for f in &t.files {
            let replica = f.parent().and_then(|d| d.file_name()).expect("replica dir");
            let to_dir = dir.path().join(case).join(replica);
            std::fs::create_dir_all(&to_dir).expect("mkdir");
            let to = to_dir.join(f.file_name().expect("name"));
            std::fs::copy(f, &to).expect("copy");
            files.push(to);
        }
        // Replica A's rotated files in chain order (their names carry the first seq), and its
        // active file.
        let mut rotated: Vec<PathBuf> = files
            .iter()
            .filter(|p| !p.to_string_lossy().ends_with("audit.jsonl"))
            .cloned()
            .collect();
        rotated.sort();
        let active = rotated[0].with_file_name("audit.jsonl");
        assert!(files.contains(&active));
        (files, rotated, active)
    };
    let untrusted_reason = |v: &Value, p: &Path| -> Option<String> {
        v["integrity"]["files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == p.display().to_string())
            .filter(|f| f["status"] == "untrusted")
            .map(|f| f["reason"].as_str().unwrap_or("").to_owned())
    };

    // The newest rotated file deleted: the gap is between the one before it and the active file.
    let (mut files, rotated, active) = copy("missing");
    assert!(rotated.len() >= 2, "{rotated:?}");
    let (before, gone) = (&rotated[rotated.len() - 2], &rotated[rotated.len() - 1]);
    let lost = lines(gone) + lines(before) + lines(&active);
    std::fs::remove_file(gone).expect("delete");
    files.retain(|p| p != gone);
    let run = report(&files, "json");
    assert_eq!(run.code, 1, "incomplete evidence → exit 1: {}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("incomplete evidence"))
        .unwrap_or_else(|| panic!("no clear line on stderr: {}", run.stderr));
    assert!(
        line.contains(&before.display().to_string())
            && line.contains(&active.display().to_string())
            && line.contains("are missing"),
        "{line}"
    );
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    for p in [before, &active] {
        let why = untrusted_reason(&v, p).unwrap_or_else(|| panic!("{} trusted", p.display()));
        assert!(why.contains("incomplete evidence"), "{why}");
    }
    assert_eq!(v["integrity"]["untrusted_files"], 2);
    assert_eq!(
        v["totals"]["records"].as_u64(),
        Some(clean_records - lost as u64),
        "neither side of the gap is counted"
    );

    // The newest rotated file cut after its second-to-last line: it verifies on its own.
    let (files, rotated, active) = copy("cut");
    let cut = &rotated[rotated.len() - 1];
    let text = std::fs::read_to_string(cut).expect("read");
    let kept: Vec<&str> = text.lines().collect();
    assert!(kept.len() >= 2);
    let kept = &kept[..kept.len() - 1];
    std::fs::write(cut, format!("{}\n", kept.join("\n"))).expect("cut");
    let audit_verify = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["audit", "verify"])
        .arg(cut)
        .output()
        .expect("audit verify");
    assert!(audit_verify.status.success(), "the cut file verifies alone");
    let run = report(&files, "json");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    for p in [cut, &active] {
        let why = untrusted_reason(&v, p).unwrap_or_else(|| panic!("{} trusted", p.display()));
        assert!(why.contains("incomplete evidence"), "{why}");
    }
    assert!(
        untrusted_reason(&v, &rotated[0]).is_none(),
        "the files before stay counted"
    );
    assert_eq!(v["integrity"]["untrusted_files"], 2);

    // Control: the same copies untouched are one trusted chain per replica.
    let (files, _, _) = copy("whole");
    let (code, v) = json_report(&files);
    assert_eq!(code, 0);
    assert_eq!(v["totals"]["records"].as_u64(), Some(clean_records));
}

/// The text between `from` and the next `to` after it.
fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in the page"));
    let rest = &text[start + from.len()..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

#[test]
fn html_report_is_self_contained_and_names_the_findings() {
    let t = trail();
    let run = report(&t.files, "html");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let html = &run.stdout;
    let (_, v) = json_report(&t.files);
    assert!(html.starts_with("<!DOCTYPE html>"));
    for forbidden in ["<script", " src=", " href=", "<link", "@import", "url("] {
        assert!(
            !html.contains(forbidden),
            "HTML must not contain {forbidden:?}"
        );
    }

    // The findings table lists exactly the expected findings, once each.
    let heading = format!("<h2>Findings ({})</h2>", EXPECTED.len());
    assert!(html.contains(&heading), "{heading} missing");
    let table = between(html, &heading, "</section>");
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    let shown: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| {
            let code = between(row, "<td><code>", "</code>");
            let cells: Vec<&str> = row.split("<td>").collect();
            let who = cells
                .iter()
                .find(|c| c.contains("<b>"))
                .expect("a who cell");
            let kind = who.split(' ').next().expect("kind");
            let id = between(who, "<b>", "</b>");
            (code.to_owned(), kind.to_owned(), id.to_owned())
        })
        .collect();
    assert_eq!(shown.len(), EXPECTED.len(), "{shown:?}");
    assert_eq!(
        shown.iter().cloned().collect::<BTreeSet<_>>(),
        expected_set()
    );

    // Exactly two charts: calls over time and deny reasons, drawing the report's own numbers.
    assert_eq!(html.matches("<svg").count(), 2, "two inline SVG charts");
    let timeline = between(html, "aria-label=\"Calls over time\"", "</svg>");
    let sum = |what: &str| -> u64 {
        timeline
            .split("<title>")
            .filter_map(|t| t.split("</title>").next())
            .filter_map(|t| {
                t.strip_suffix(what)?
                    .rsplit(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(
        sum(" allowed"),
        v["totals"]["allows"].as_u64().expect("allows")
    );
    assert_eq!(
        sum(" denied"),
        v["totals"]["denies"].as_u64().expect("denies")
    );
    let reasons = between(html, "aria-label=\"Deny reasons\"", "</svg>");
    let drawn: Vec<String> = reasons
        .split("text-anchor=\"end\" fill=\"#1d2430\">")
        .skip(1)
        .filter_map(|t| t.split("</text>").next())
        .map(str::to_owned)
        .collect();
    assert_eq!(drawn, ["token_missing", "scope_insufficient"]);
    assert_eq!(reasons.matches("<rect").count(), 2);

    assert!(html.contains("Granted vs used"));
    assert!(html.contains("<td class=\"unused\">✗</td>"));
}

#[test]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with jsonschema: set FAPI_GUARD_TEST_PYTHON=/path/to/python"
)]
fn json_report_validates_against_the_committed_schema() {
    let python = std::env::var("FAPI_GUARD_TEST_PYTHON")
        .expect("FAPI_GUARD_TEST_PYTHON must name a Python interpreter");
    let t = trail();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit-report.schema.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reports = vec![report(&t.files, "json").stdout];
    // The degraded shapes too: untrusted files and no policies.
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"v\":1,\"seq\":1").expect("write");
    let mut with_broken = t.files.clone();
    with_broken.push(broken);
    reports.push(report(&with_broken, "json").stdout);
    let out = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["audit", "report", "--format", "json"])
        .args(&t.files)
        .output()
        .expect("run");
    reports.push(String::from_utf8(out.stdout).expect("utf-8"));
    for (i, r) in reports.iter().enumerate() {
        let path = dir.path().join(format!("report-{i}.json"));
        std::fs::write(&path, r).expect("write report");
        let script = "import json,sys,jsonschema\n\
             schema=json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             jsonschema.Draft202012Validator(schema,format_checker=jsonschema.FormatChecker()).validate(json.load(open(sys.argv[2])))\n\
             print('valid')";
        let out = Command::new(&python)
            .args(["-c", script])
            .arg(&schema)
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("valid"),
            "report {i} does not validate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Renders `page` in headless Chromium (a fresh profile, no network) into `shot`: Chromium's
/// stderr, where the page's console messages are logged.
fn render_in_chromium(chromium: &str, page: &Path, shot: &Path, size: &str) -> String {
    let profile = page.with_extension("profile");
    let _ = std::fs::remove_file(shot);
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {chromium}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    stderr
}

/// The lines of Chromium's log that report a problem on the page: any console message (the
/// report has no script, so nothing may log), an uncaught error, a Content Security Policy
/// violation (a resource the page tried to load).
fn console_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(fapi_guard_test_chromium),
    ignore = "needs Chromium: set FAPI_GUARD_TEST_CHROMIUM=/usr/bin/chromium"
)]
fn html_report_renders_in_headless_chromium_without_console_errors() {
    let chromium = std::env::var("FAPI_GUARD_TEST_CHROMIUM")
        .expect("FAPI_GUARD_TEST_CHROMIUM must name a Chromium binary");
    let dir = tempfile::tempdir().expect("tempdir");

    // Negative control: a page with a console error, an uncaught exception and a resource its
    // CSP forbids. Each must be caught by `console_problems` in this Chromium's log format, or
    // a clean result below would prove nothing.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body><p>control</p>\
         <script>console.error('deliberate console error'); notAFunction();</script>\
         <img src=\"http://127.0.0.1:9/forbidden.png\"></body></html>",
    )
    .expect("write control");
    let stderr = render_in_chromium(
        &chromium,
        &control,
        &dir.path().join("control.png"),
        "800,600",
    );
    let caught = console_problems(&stderr).join("\n");
    for (what, needle) in [
        ("console.error", "deliberate console error"),
        ("uncaught exception", "notAFunction"),
        ("CSP violation", "forbidden.png"),
    ] {
        assert!(
            caught.contains(needle),
            "the check misses a {what}: {stderr}"
        );
    }

    let t = trail();
    let run = report(&t.files, "html");
    assert_eq!(run.code, 0);
    let page = dir.path().join("report.html");
    std::fs::write(&page, &run.stdout).expect("write page");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-report.png");
    let stderr = render_in_chromium(&chromium, &page, &shot, "1300,2900");
    let problems = console_problems(&stderr);
    assert!(problems.is_empty(), "console problems: {problems:#?}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
