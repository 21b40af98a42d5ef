//! Through the real proxy: the DPoP replay store cannot be flushed. A proof is
//! recorded only once it binds an otherwise acceptable token, an unexpired proof is never
//! forgotten, and at the hard limit new proofs are refused (503, counted) instead.

mod common;

use common::*;
use http_body_util::BodyExt;
use serde_json::json;

const PUBLIC: &str = "https://api.test.example";

async fn metrics_text(proxy: &Proxy) -> String {
    let admin = proxy.admin.expect("admin listener");
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let resp = client().request(req).await.expect("metrics");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(body.to_vec()).expect("utf-8")
}

/// The value of an unlabelled sample, e.g. `fapi_guard_replay_cache_entries`.
async fn metric(proxy: &Proxy, name: &str) -> i64 {
    let text = metrics_text(proxy).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not exported in\n{text}"))
}

async fn call(proxy: &Proxy, token: &str, proof: &str) -> Reply {
    let auth = format!("DPoP {token}");
    get(
        &proxy.url("/bound"),
        &[("authorization", &auth), ("dpop", proof)],
    )
    .await
}

#[tokio::test]
async fn the_replay_store_cannot_be_flushed() {
    let issuer = TestKey::new("k1");
    let jwks = Jwks::start(vec![issuer.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "dpop:\n  replay_cache_max_entries: 5\n",
        POLICY,
    )
    .await;
    proxy.wait_ready().await;
    let htu = format!("{PUBLIC}/bound");

    // The victim's proof is used once and captured.
    let victim = DpopKey::new();
    let victim_jkt = victim.jkt.clone();
    let victim_token = issuer.token(|_, c| c["cnf"] = json!({"jkt": victim_jkt}));
    let captured = victim.proof("GET", &htu, &victim_token, |_, _| {});
    assert_eq!(call(&proxy, &victim_token, &captured).await.status, 200);
    assert_eq!(metric(&proxy, "fapi_guard_replay_cache_entries").await, 1);

    // The attacker floods with fresh proofs of its own key on tokens that are not acceptable:
    // expired, for another audience, or the victim's token with the attacker's key. None of
    // them may take a slot in the store.
    let attacker = DpopKey::new();
    let attacker_jkt = attacker.jkt.clone();
    let expired = issuer.token(|_, c| {
        c["cnf"] = json!({"jkt": attacker_jkt});
        c["iat"] = json!(now() - 600);
        c["exp"] = json!(now() - 300);
    });
    let attacker_jkt = attacker.jkt.clone();
    let other_audience = issuer.token(|_, c| {
        c["cnf"] = json!({"jkt": attacker_jkt});
        c["aud"] = json!("https://elsewhere.example");
    });
    let flood = [
        (&expired, "token_expired"),
        (&other_audience, "token_audience_mismatch"),
        (&victim_token, "dpop_key_mismatch"),
    ];
    for (token, reason) in flood {
        for _ in 0..10 {
            let p = attacker.proof("GET", &htu, token, |_, _| {});
            let r = call(&proxy, token, &p).await;
            assert_eq!((r.status, r.reason()), (401, Some(reason)));
        }
    }
    assert_eq!(
        metric(&proxy, "fapi_guard_replay_cache_entries").await,
        1,
        "no refused proof was recorded"
    );

    // Acceptable proofs fill the store up to its hard limit; the next one is refused, not
    // admitted by forgetting an older one.
    let attacker_jkt = attacker.jkt.clone();
    let valid = issuer.token(|_, c| c["cnf"] = json!({"jkt": attacker_jkt}));
    for i in 0..4 {
        let p = attacker.proof("GET", &htu, &valid, |_, _| {});
        assert_eq!(call(&proxy, &valid, &p).await.status, 200, "filler {i}");
    }
    let p = attacker.proof("GET", &htu, &valid, |_, _| {});
    let r = call(&proxy, &valid, &p).await;
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable")),
        "store full"
    );
    assert_eq!(
        metric(&proxy, "fapi_guard_replay_cache_full_total").await,
        1
    );
    assert_eq!(metric(&proxy, "fapi_guard_replay_cache_entries").await, 5);

    // The captured proof is still inside its window and still a replay.
    let r = call(&proxy, &victim_token, &captured).await;
    assert_eq!((r.status, r.reason()), (401, Some("dpop_proof_replayed")));
    assert_eq!(metric(&proxy, "fapi_guard_dpop_replays_total").await, 1);
    assert_eq!(
        echo.count(),
        5,
        "the victim's first call and the four fillers only"
    );
}

#[tokio::test]
async fn concurrent_uses_of_one_proof_have_one_winner() {
    let issuer = TestKey::new("k1");
    let jwks = Jwks::start(vec![issuer.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    let key = DpopKey::new();
    let jkt = key.jkt.clone();
    let token = issuer.token(|_, c| c["cnf"] = json!({"jkt": jkt}));
    let proof = key.proof("GET", &format!("{PUBLIC}/bound"), &token, |_, _| {});
    // Warm the token cache so the racers meet at the replay store, not at JWKS.
    let warm = key.proof("GET", &format!("{PUBLIC}/bound"), &token, |_, _| {});
    assert_eq!(call(&proxy, &token, &warm).await.status, 200);
    let racers: Vec<_> = (0..16).map(|_| call(&proxy, &token, &proof)).collect();
    let replies = futures_util::future::join_all(racers).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let replayed = replies
        .iter()
        .filter(|r| r.reason() == Some("dpop_proof_replayed"))
        .count();
    assert_eq!((ok, replayed), (1, 15));
    assert_eq!(echo.count(), 2);
}

/// The size gauge follows expiry, not only inserts: once a proof's window is over, the next
/// scrape reports it gone although no DPoP request came since.
#[tokio::test]
async fn the_size_gauge_is_fresh_without_dpop_traffic() {
    let issuer = TestKey::new("k1");
    let jwks = Jwks::start(vec![issuer.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "dpop:\n  proof_max_age: 1s\n",
        POLICY,
    )
    .await;
    proxy.wait_ready().await;
    let key = DpopKey::new();
    let jkt = key.jkt.clone();
    let token = issuer.token(|_, c| c["cnf"] = json!({"jkt": jkt}));
    // Proofs issued 10 s ago: still inside `proof_max_age` (1 s) + the 10 s clock skew, and
    // remembered only until `iat + 11 s`, a second from now.
    for _ in 0..3 {
        let p = key.proof("GET", &format!("{PUBLIC}/bound"), &token, |_, c| {
            c["iat"] = json!(now() - 10)
        });
        assert_eq!(call(&proxy, &token, &p).await.status, 200);
    }
    assert_eq!(metric(&proxy, "fapi_guard_replay_cache_entries").await, 3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    loop {
        let n = metric(&proxy, "fapi_guard_replay_cache_entries").await;
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {n} entries long after every window ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(echo.count(), 3);
}
