//! Micro-benchmarks of the decision path and the crypto floor under it.
//! Run with `cargo bench --bench decide`; docs/benchmarks.md explains each group and the
//! numbers measured. Ratios within one run are what to compare: absolute numbers drift on shared
//! machines.
//!
//! 1. `warm_path`: the whole no-I/O decision of a certificate-bound request on a full-policy route
//!    (normalize, route match, token cache hit with its SHA-256, binding, scope, consent record
//!    from the consent client's cache, delegation, purpose, `decide`), composed of the same
//!    public functions `proxy::evaluate` calls, in the same order.
//! 2. `policy_compile`: generated policies of 10 / 100 / 1,000 routes through `PolicySet::compile`.
//! 3. `dpop`: `dpop::verify_proof` against the bare aws-lc-rs signature check, ES256/EdDSA/PS256.
//! 4. `token_cache`: verified-token cache hit against a miss (full ES256 JWT verification).
//! 5. `audit`: a decision record serialized, and serialized + sealed into the hash chain.
//! 6. `regorus`: the rules of (1) in Rego (`benches/rego/fapi_guard.rego`), evaluated by
//!    regorus; both engines are first checked to agree on allowed and denied inputs.
//!
//! Futures that must not wait on the warm path (a consent-cache hit, a JWT verification with
//! loaded keys) are polled once with `now_or_never`: that is what `.await` costs inside the
//! proxy's task when the value is ready, and a `None` (the future had to wait, i.e. I/O) fails the
//! benchmark instead of being timed.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

use fapi_guard::audit::chain::ChainState;
use fapi_guard::audit::{Actor, AuditRecord, ConsentInfo, TokenInfo, digest_prefix};
use fapi_guard::clock::Clock;
use fapi_guard::config::Config;
use fapi_guard::consent::{
    ConsentClient, ConsentConfig, ConsentContext, ConsentLookupError, ConsentRule, judge,
};
use fapi_guard::decide::{
    AuthScheme, BoundBy, Decision, DpopFact, Facts, TokenFact, decide, settled_before_consent,
};
use fapi_guard::demo::SigningKey;
use fapi_guard::dpop::{self, DpopSettings, ProofRequest};
use fapi_guard::http_client::HttpsClient;
use fapi_guard::metrics::Metrics;
use fapi_guard::path;
use fapi_guard::policy::PolicySet;
use fapi_guard::reason::DenyReason;
use fapi_guard::token::{self, TokenVerifier};

const PUBLIC_URL: &str = "https://api.bank.example";
const ISSUER: &str = "https://as.bank.example";
/// SHA-256 of the client certificate the token is bound to (RFC 8705 `cnf.x5t#S256`).
const CERT: [u8; 32] = [7u8; 32];
const OTHER_CERT: [u8; 32] = [8u8; 32];
const ACTOR: &str = "spiffe://bank.example/ns/aggregators/sa/agg";
const PRIOR_HOP: &str = "spiffe://bank.example/ns/platform/sa/gateway";
const BALANCES: &str = "/open-banking/v4.0/aisp/accounts/acc-1/balances";

/// The full-policy route of benchmark 1 among a few neighbours, so the router is not trivial.
/// `benches/rego/fapi_guard.rego` + [`rego_data`] state the same rules for regorus.
const FULL_POLICY: &str = r#"
api: accounts
audience: https://api.bank.example
defaults:
  binding: mtls
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /open-banking/v4.0/aisp/accounts
    consent: {claim: openbanking_intent_id, status: [Authorised], permissions: [ReadAccountsBasic]}
  - name: get-account
    method: GET
    path: /open-banking/v4.0/aisp/accounts/{AccountId}
    consent:
      claim: openbanking_intent_id
      permissions: [ReadAccountsDetail]
      resource: {accounts: "{AccountId}"}
  - name: get-balances
    method: GET
    path: /open-banking/v4.0/aisp/accounts/{AccountId}/balances
    consent:
      claim: openbanking_intent_id
      status: [Authorised]
      permissions: [ReadBalances]
      resource: {accounts: "{AccountId}"}
    delegation:
      max_depth: 2
      actors: ["spiffe://bank.example/ns/aggregators/*"]
      chain: ["spiffe://bank.example/*"]
    purpose: [account-information]
  - name: get-transactions
    method: GET
    path: /open-banking/v4.0/aisp/accounts/{AccountId}/transactions
    consent:
      claim: openbanking_intent_id
      permissions: [ReadTransactionsDetail]
      resource: {accounts: "{AccountId}"}
  - name: health
    method: GET
    path: /health
    public: true
"#;

/// `get-balances` for the Rego engine: the same route as [`FULL_POLICY`] states it.
fn rego_data() -> Value {
    json!({"fapi": {
        "issuer": ISSUER,
        "audience": PUBLIC_URL,
        "routes": [{
            "name": "get-balances",
            "method": "GET",
            "segments": ["open-banking", "v4.0", "aisp", "accounts", "{AccountId}", "balances"],
            "binding": "mtls",
            "scopes": ["accounts"],
            "consent": {"claim": "openbanking_intent_id", "status": ["Authorised"],
                        "permissions": ["ReadBalances"], "account_param": "AccountId"},
            "delegation": {"max_depth": 2, "actors": ["spiffe://bank.example/ns/aggregators/*"],
                           "chain": ["spiffe://bank.example/*"]},
            "purpose": ["account-information"],
        }],
    }})
}

/// Consent records the local consent service answers, by id (RFC 3339 `expires_at`, as the
/// consent service contract has it).
fn consent_records() -> Vec<Value> {
    let base = |id: &str, status: &str| {
        json!({"id": id, "status": status, "client_id": "tpp-1", "subject": "psu-9",
               "expires_at": "2099-01-01T00:00:00Z", "permissions": ["ReadBalances", "ReadAccountsDetail"],
               "accounts": ["acc-1", "acc-2"], "purpose": "account-information"})
    };
    let mut marketing = base("c-3", "Authorised");
    marketing["purpose"] = json!("marketing");
    vec![
        base("c-1", "Authorised"),
        base("c-2", "AwaitingAuthorisation"),
        marketing,
    ]
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The access token's claims; `edit` changes one variant.
fn claims(now: i64, edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = json!({
        "iss": ISSUER, "sub": "psu-9", "aud": PUBLIC_URL, "client_id": "tpp-1",
        "scope": "accounts openid", "iat": now, "exp": now + 300, "jti": "bench-1",
        "cnf": {"x5t#S256": b64(&CERT)},
        "openbanking_intent_id": "c-1", "purpose": "account-information",
        "act": {"sub": ACTOR, "client_id": "agg-1", "act": {"sub": PRIOR_HOP}},
    });
    if let Value::Object(m) = &mut c {
        edit(m);
    }
    c
}

/// A request of benchmark 1 / the engine comparison.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    cert: [u8; 32],
    claims: Value,
    expect_allow: bool,
}

fn cases(now: i64) -> Vec<Case> {
    let case = |name, method, path, cert, claims, expect_allow| Case {
        name,
        method,
        path,
        cert,
        claims,
        expect_allow,
    };
    let get = || Method::GET;
    vec![
        case("allow", get(), BALANCES, CERT, claims(now, |_| {}), true),
        case(
            "wrong certificate",
            get(),
            BALANCES,
            OTHER_CERT,
            claims(now, |_| {}),
            false,
        ),
        case(
            "missing scope",
            get(),
            BALANCES,
            CERT,
            claims(now, |c| {
                c.insert("scope".into(), json!("openid"));
            }),
            false,
        ),
        case(
            "consent not authorised",
            get(),
            BALANCES,
            CERT,
            claims(now, |c| {
                c.insert("openbanking_intent_id".into(), json!("c-2"));
            }),
            false,
        ),
        case(
            "account not in consent",
            get(),
            "/open-banking/v4.0/aisp/accounts/acc-9/balances",
            CERT,
            claims(now, |_| {}),
            false,
        ),
        case(
            "actor not allowed",
            get(),
            BALANCES,
            CERT,
            claims(now, |c| {
                c.insert(
                    "act".into(),
                    json!({"sub": "spiffe://elsewhere.example/agg"}),
                );
            }),
            false,
        ),
        case(
            "prior hop not allowed",
            get(),
            BALANCES,
            CERT,
            claims(now, |c| {
                c.insert(
                    "act".into(),
                    json!({"sub": ACTOR, "act": {"sub": "spiffe://elsewhere.example/x"}}),
                );
            }),
            false,
        ),
        case(
            "consent purpose not allowed",
            get(),
            BALANCES,
            CERT,
            claims(now, |c| {
                c.insert("openbanking_intent_id".into(), json!("c-3"));
            }),
            false,
        ),
        case(
            "no delegation",
            get(),
            BALANCES,
            CERT,
            claims(now, |c| {
                c.remove("act");
            }),
            true,
        ),
        case(
            "wrong method",
            Method::POST,
            BALANCES,
            CERT,
            claims(now, |_| {}),
            false,
        ),
    ]
}

/// Everything benchmark 1 reads, warmed: tokens verified and cached, consent records cached.
struct Warm {
    clock: Clock,
    policies: PolicySet,
    verifier: TokenVerifier,
    consent: ConsentClient,
    /// The request's headers (the consent id comes from the token claim, not a header).
    headers: HeaderMap,
    /// Case name → signed token.
    tokens: HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

fn warm(rt: &tokio::runtime::Runtime, cases: &[Case]) -> Warm {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate("bench").expect("key");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwk]}).to_string(),
    )
    .expect("jwks");
    let cfg = Config::from_yaml(
        &dir.path().join("config.yaml"),
        &format!(
            "listen: {{public_url: '{PUBLIC_URL}'}}\nupstream: {{url: 'http://127.0.0.1:1'}}\n\
             issuers: [{{issuer: '{ISSUER}', jwks_file: jwks.json, audiences: ['{PUBLIC_URL}']}}]\n\
             policies: [x]\n"
        ),
    )
    .expect("config");
    let policies = PolicySet::compile(&[(PathBuf::from("accounts.yaml"), FULL_POLICY.to_owned())])
        .expect("full policy compiles");
    let verifier = TokenVerifier::new(
        &cfg.issuers,
        10_000,
        HttpsClient::new().expect("client"),
        Clock::system(),
        Arc::new(Metrics::new()),
    );
    let addr = rt.block_on(serve_consents(consent_records()));
    let settings = serde_yaml::from_str::<ConsentConfig>(&format!(
        "url: http://{addr}/consents/{{id}}\ncache_ttl: 1h\n"
    ))
    .expect("consent yaml")
    .compile()
    .expect("consent config");
    let consent = ConsentClient::new(
        settings,
        HttpsClient::new().expect("client"),
        Arc::new(Metrics::new()),
    );
    let mut tokens = HashMap::new();
    rt.block_on(async {
        verifier.issuers()[0]
            .keys
            .refresh_now()
            .await
            .expect("keys");
        for c in cases {
            let t = key.sign("at+jwt", &c.claims, false).expect("sign");
            verifier
                .verify(&t, token::digest(&t))
                .await
                .unwrap_or_else(|e| panic!("{}: token verifies: {e:?}", c.name));
            tokens.insert(c.name, t);
        }
        for rec in consent_records() {
            let id = rec["id"].as_str().expect("id");
            consent.get(id).await.expect("first fetch");
        }
    });
    Warm {
        clock: Clock::system(),
        policies,
        verifier,
        consent,
        headers: HeaderMap::new(),
        tokens,
        _dir: dir,
    }
}

/// The warm, no-I/O part of `proxy::evaluate` for a certificate-bound `Bearer` request: the same
/// crate functions in the same order (decide, then the consent record, then decide again).
/// `Err` means the warm-path premise broke (a cache miss, a future that had to wait).
fn guard_decision(
    w: &Warm,
    method: &Method,
    raw_path: &str,
    raw_token: &str,
    cert: &[u8; 32],
) -> Result<Decision, &'static str> {
    let Ok(norm) = path::normalize(raw_path) else {
        return Ok(Decision::Deny(DenyReason::RequestMalformed));
    };
    let Some(m) = w.policies.lookup(method, &norm) else {
        return Ok(Decision::Deny(DenyReason::RouteNotFound));
    };
    let route = m.route;
    let t = w
        .verifier
        .cached(&token::digest(raw_token))
        .ok_or("token not in the verified-token cache")?;
    let now = w.clock.now_unix();
    let mut facts = Facts {
        now,
        scheme: AuthScheme::Bearer,
        token: TokenFact::Verified(&t),
        dpop: DpopFact::Absent,
        client_cert_sha256: Some(cert),
        consent: Ok(()),
        consent_purpose: None,
    };
    let first = decide(&facts, route);
    let Some(rule) = &route.consent else {
        return Ok(first);
    };
    if settled_before_consent(first) {
        return Ok(first);
    }
    let ConsentRule::Record(record_rule) = rule else {
        return Err("the benchmark routes name consent records");
    };
    let id = match record_rule.consent_id(&t.extra, &w.headers) {
        Ok(id) => id,
        Err(r) => {
            facts.consent = Err(r);
            return Ok(decide(&facts, route));
        }
    };
    let record = match w.consent.get(id).now_or_never() {
        None => return Err("consent lookup had to wait: not a cache hit"),
        Some(Ok(r)) => r,
        Some(Err(ConsentLookupError::Missing)) => {
            facts.consent = Err(DenyReason::ConsentMissing);
            return Ok(decide(&facts, route));
        }
        Some(Err(ConsentLookupError::Unavailable)) => {
            return Ok(Decision::Deny(DenyReason::DependencyUnavailable));
        }
    };
    let params = path::decode_params(&m.params);
    let ctx = ConsentContext {
        client_id: &t.client_id,
        subject: &t.sub,
        params: &params,
        query: None,
        public_origin: PUBLIC_URL,
        now,
        body: None,
    };
    let outcome = judge(rule, &t.extra, &ctx, Some((id, &record)));
    facts.consent = outcome.result;
    facts.consent_purpose = outcome.purpose.as_deref();
    Ok(decide(&facts, route))
}

/// The Rego input for one case: what `guard_decision` reads, already fetched. The consent
/// record's `expires_at` is given in Unix seconds, as fapi-guard's cached record holds it.
fn rego_input(c: &Case, now: i64) -> regorus::Value {
    let token_id = c.claims["openbanking_intent_id"].as_str().unwrap_or("");
    let mut consent = consent_records()
        .into_iter()
        .find(|r| r["id"] == token_id)
        .unwrap_or_else(|| json!({}));
    if let Some(e) = consent.get("expires_at").and_then(Value::as_str) {
        consent["expires_at"] = json!(fapi_guard::consent::parse_rfc3339(e).expect("rfc3339"));
    }
    let input = json!({
        "now": now,
        "request": {"method": c.method.as_str(), "path": c.path},
        "client_cert_x5t": b64(&c.cert),
        "token": c.claims,
        "consent": consent,
    });
    regorus::Value::from_json_str(&input.to_string()).expect("rego input")
}

fn rego_engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(
            "fapi_guard.rego".to_owned(),
            include_str!("rego/fapi_guard.rego").to_owned(),
        )
        .expect("rego policy parses");
    engine
        .add_data(regorus::Value::from_json_str(&rego_data().to_string()).expect("rego data"))
        .expect("rego data");
    engine
}

fn rego_allow(engine: &mut regorus::Engine, input: &regorus::Value) -> bool {
    engine.set_input(input.clone());
    match engine.eval_rule("data.fapi.guard.allow".to_owned()) {
        Ok(regorus::Value::Bool(b)) => b,
        other => panic!("data.fapi.guard.allow is not a boolean: {other:?}"),
    }
}

/// Benchmarks 1 and 6, after checking that both engines agree on every case.
fn decision_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let now = Clock::system().now_unix();
    let cases = cases(now);
    let w = warm(rt, &cases);
    let mut engine = rego_engine();
    for case in &cases {
        let guard = guard_decision(
            &w,
            &case.method,
            case.path,
            &w.tokens[case.name],
            &case.cert,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let rego = rego_allow(&mut engine, &rego_input(case, now));
        let guard_allows = matches!(guard, Decision::Allow(_));
        assert_eq!(
            guard_allows, case.expect_allow,
            "{}: fapi-guard decided {guard:?}",
            case.name
        );
        assert_eq!(
            rego, case.expect_allow,
            "{}: regorus allow = {rego}",
            case.name
        );
    }

    let allow = &cases[0];
    let allow_token = &w.tokens[allow.name];
    assert_eq!(
        guard_decision(&w, &Method::GET, BALANCES, allow_token, &CERT),
        Ok(Decision::Allow(BoundBy::Mtls))
    );
    let mut g = c.benchmark_group("decision");
    g.bench_function("warm_path full policy (fapi-guard)", |b| {
        b.iter(|| {
            guard_decision(
                &w,
                &Method::GET,
                black_box(BALANCES),
                black_box(allow_token),
                black_box(&CERT),
            )
            .expect("warm")
        })
    });
    let deny = &cases[3];
    g.bench_function("warm_path deny consent_not_authorised (fapi-guard)", |b| {
        b.iter(|| {
            guard_decision(
                &w,
                &Method::GET,
                black_box(BALANCES),
                black_box(&w.tokens[deny.name]),
                black_box(&CERT),
            )
            .expect("warm")
        })
    });
    let input = rego_input(allow, now);
    g.bench_function("same rules in Rego (regorus eval, allow)", |b| {
        b.iter(|| rego_allow(&mut engine, black_box(&input)))
    });
    g.finish();
}

/// A policy of `n` full-featured routes, each on its own path.
fn generated_policy(n: usize) -> String {
    let mut y = String::from(
        "api: generated\naudience: https://api.bank.example\n\
         defaults: {binding: mtls, scopes: [accounts]}\nroutes:\n",
    );
    for i in 0..n {
        y.push_str(&format!(
            "  - name: route-{i}\n    method: GET\n    path: /v1/resource-{i}/{{AccountId}}/items\n\
             \x20   consent: {{claim: openbanking_intent_id, permissions: [ReadBalances], resource: {{accounts: \"{{AccountId}}\"}}}}\n\
             \x20   delegation: {{max_depth: 1, actors: [\"spiffe://bank.example/ns/aggregators/*\"]}}\n\
             \x20   purpose: [account-information]\n"
        ));
    }
    y
}

fn compile_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_compile");
    for n in [10, 100, 1_000] {
        let sources = vec![(PathBuf::from("generated.yaml"), generated_policy(n))];
        let set = PolicySet::compile(&sources).expect("generated policy compiles");
        assert_eq!(set.routes().len(), n);
        g.bench_with_input(BenchmarkId::new("routes", n), &sources, |b, s| {
            b.iter(|| PolicySet::compile(black_box(s)).expect("compiles"))
        });
    }
    g.finish();
}

/// A DPoP proof key, minted here with aws-lc-rs (not with the crate's verifier code).
enum ProofKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Ps256(RsaKeyPair),
}

impl ProofKey {
    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::EdDsa(_) => "EdDSA",
            Self::Ps256(_) => "PS256",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Self::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Self::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            Self::Ps256(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "n": b64(p.modulus().big_endian_without_leading_zero()),
                       "e": b64(p.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Es256(k) => k.sign(&rng, input).expect("sign").as_ref().to_vec(),
            Self::EdDsa(k) => k.sign(input).as_ref().to_vec(),
            Self::Ps256(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PSS_SHA256, &rng, input, &mut sig)
                    .expect("sign");
                sig
            }
        }
    }

    /// The bare signature check, as a JOSE library does it: one aws-lc-rs call from the public
    /// key's JWK form (EC point, Ed25519 key, RSA n and e).
    fn raw_verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Es256(k) => signature::UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                k.public_key().as_ref(),
            )
            .verify(input, sig)
            .is_ok(),
            Self::EdDsa(k) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, k.public_key().as_ref())
                    .verify(input, sig)
                    .is_ok()
            }
            Self::Ps256(k) => {
                let p = k.public_key();
                RsaPublicKeyComponents {
                    n: p.modulus().big_endian_without_leading_zero(),
                    e: p.exponent().big_endian_without_leading_zero(),
                }
                .verify(&signature::RSA_PSS_2048_8192_SHA256, input, sig)
                .is_ok()
            }
        }
    }
}

fn dpop_benches(c: &mut Criterion) {
    let now = Clock::system().now_unix();
    let access_token = "eyJhbGciOiJFUzI1NiJ9.bench-access-token.sig";
    let htu = format!("{PUBLIC_URL}{BALANCES}");
    let settings = DpopSettings::default();
    let keys = [
        ProofKey::Es256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256")),
        ProofKey::EdDsa(Ed25519KeyPair::generate().expect("ed25519")),
        ProofKey::Ps256(RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa")),
    ];
    let mut g = c.benchmark_group("dpop");
    for key in &keys {
        let header = json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk()});
        let claims = json!({"jti": format!("proof-{}", key.alg()), "htm": "GET", "htu": htu,
                            "iat": now, "ath": dpop::ath(access_token)});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.sign(input.as_bytes());
        let proof = format!("{input}.{}", b64(&sig));
        let req = ProofRequest {
            proof: &proof,
            method: "GET",
            htu: &htu,
            access_token: Some(access_token),
            now,
        };
        let expected_jkt = fapi_guard::jwk::thumbprint(key.jwk().as_object().expect("object"))
            .expect("thumbprint");
        let verified = dpop::verify_proof(&req, &settings).expect("proof verifies");
        assert_eq!(verified.jkt, expected_jkt);
        assert!(
            key.raw_verify(input.as_bytes(), &sig),
            "raw signature verifies"
        );
        let mut forged = sig.clone();
        forged[4] ^= 1;
        assert!(
            !key.raw_verify(input.as_bytes(), &forged),
            "raw check rejects"
        );

        g.bench_function(BenchmarkId::new("verify_proof (full)", key.alg()), |b| {
            b.iter(|| dpop::verify_proof(black_box(&req), &settings).expect("valid"))
        });
        g.bench_function(BenchmarkId::new("signature only (raw)", key.alg()), |b| {
            b.iter(|| assert!(key.raw_verify(black_box(input.as_bytes()), black_box(&sig))))
        });
    }
    g.finish();
}

fn token_cache_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let now = Clock::system().now_unix();
    let w = warm(rt, &cases(now)[..1]);
    let raw = &w.tokens["allow"];
    let digest = token::digest(raw);
    let cache = w.verifier.cache();
    // `verify` may touch the runtime (key refresh timers): give the polled future one.
    let _guard = rt.enter();
    let mut g = c.benchmark_group("token_cache");
    g.bench_function("hit (SHA-256 + lookup)", |b| {
        b.iter(|| {
            w.verifier
                .cached(&token::digest(black_box(raw)))
                .expect("hit")
        })
    });
    g.bench_function(
        "miss (SHA-256 + lookup + ES256 JWT verification + insert)",
        |b| {
            b.iter_batched(
                || cache.invalidate(&digest),
                |()| {
                    let d = token::digest(black_box(raw));
                    if w.verifier.cached(&d).is_some() {
                        panic!("expected a cache miss");
                    }
                    w.verifier
                        .verify(raw, d)
                        .now_or_never()
                        .expect("verification with loaded keys does not wait")
                        .expect("valid token")
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

/// A decision record as `proxy::record::decision` fills it for the warm path's allow.
fn decision_record() -> AuditRecord {
    AuditRecord::decision(None)
        .interaction_id("c7a3e0b4-8f5e-4a8a-9b51-3d2f1c0e9a77")
        .trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
        .request_raw("GET", BALANCES)
        .policy_revision("sha256:9f2c4e1a7b3d5f6e8a0c2b4d6f8e0a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e")
        .decide_us(1)
        .route("accounts", "get-balances")
        .consent(ConsentInfo {
            id: "c-1".into(),
            source: "record",
            status: Some("Authorised".into()),
            permissions: Some(vec!["ReadBalances".into(), "ReadAccountsDetail".into()]),
        })
        .client_id("tpp-1")
        .subject("psu-9")
        .issuer(ISSUER)
        .scopes(vec!["accounts".into(), "openid".into()])
        .delegation(vec![
            Actor {
                sub: ACTOR.into(),
                client_id: Some("agg-1".into()),
                iss: None,
            },
            Actor {
                sub: PRIOR_HOP.into(),
                client_id: None,
                iss: None,
            },
        ])
        .purpose("account-information")
        .token(TokenInfo {
            jti: Some("bench-1".into()),
            sha256: digest_prefix(&token::digest("bench-token")),
            exp: Some(1_764_000_300),
            iat: Some(1_764_000_000),
            binding: "mtls",
            jkt: None,
        })
}

fn audit_benches(c: &mut Criterion) {
    let rec = decision_record();
    let ts = Clock::system().now_micros();
    let mut chain = ChainState::genesis();
    let mut buf = Vec::with_capacity(4096);
    chain.seal_into(&rec, ts, &mut buf).expect("seals");
    let line = buf.strip_suffix(b"\n").expect("newline");
    assert_eq!(
        ChainState::after_line(line).expect("parses"),
        chain,
        "the sealed line carries the chain state"
    );

    let mut g = c.benchmark_group("audit");
    g.bench_function("record serialize only (serde_json)", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&rec)).expect("serializes");
            buf.len()
        })
    });
    g.bench_function("record serialize + chain seal (SHA-256 prev)", |b| {
        b.iter(|| {
            buf.clear();
            chain
                .seal_into(black_box(&rec), ts, &mut buf)
                .expect("seals");
            buf.len()
        })
    });
    g.bench_function("build record + serialize + seal", |b| {
        b.iter(|| {
            buf.clear();
            chain
                .seal_into(&decision_record(), ts, &mut buf)
                .expect("seals");
            buf.len()
        })
    });
    g.finish();
}

/// A consent service answering each record by id (404 for others).
async fn serve_consents(records: Vec<Value>) -> SocketAddr {
    let by_path: Arc<HashMap<String, String>> = Arc::new(
        records
            .iter()
            .map(|r| {
                let id = r["id"].as_str().expect("id");
                (format!("/consents/{id}"), r.to_string())
            })
            .collect(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let by_path = by_path.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let found = by_path.get(req.uri().path()).cloned();
                    async move {
                        let mut resp = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(found.clone().unwrap_or_default()),
                        ));
                        if found.is_none() {
                            *resp.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    decision_benches(c, &rt);
    compile_benches(c);
    dpop_benches(c);
    token_cache_benches(c, &rt);
    audit_benches(c);
}

criterion_group!(decide_benches, benches);
criterion_main!(decide_benches);
