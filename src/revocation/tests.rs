use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::{IssuerSettings, KeySource};

fn issuer() -> Arc<IssuerSettings> {
    Arc::new(IssuerSettings {
        issuer: "https://as.example".into(),
        keys: KeySource::File("x".into()),
        algorithms: vec![],
        audiences: vec!["a".into()],
        max_token_lifetime: Duration::from_secs(600),
        clock_skew: Duration::from_secs(10),
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(10),
        purpose_claim: "purpose".into(),
        introspection: None,
    })
}

fn token(jti: &str, sub: &str, client: &str, iat: i64, digest: u8) -> VerifiedToken {
    let claims = json!({"iss":"https://as.example","sub":sub,"client_id":client,"jti":jti,
        "aud":"a","exp":iat + 300,"iat":iat});
    let Value::Object(m) = claims else {
        unreachable!("literal object")
    };
    VerifiedToken::from_claims(issuer(), [digest; 32], m).expect("claims")
}

use serde_json::Value;

fn rev(kind: Kind, value: &str, until: i64, at: i64) -> Revocation {
    Revocation {
        kind,
        value: value.into(),
        until,
        at_ms: at * 1000,
    }
}

#[test]
fn each_kind_matches_only_what_it_names() {
    let now = 1_000_000;
    let s = RevocationSet::new(100);
    let t = token("j1", "alice", "tpp-1", now - 10, 7);
    assert_eq!(s.token(&t, now), None, "empty set");
    let d = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let cases = [
        ("jti", rev(Kind::Jti, "j1", now + 60, now), Some(Hit::Jti)),
        (
            "sha256",
            rev(Kind::TokenSha256, &d, now + 60, now),
            Some(Hit::TokenSha256),
        ),
        (
            "subject",
            rev(Kind::Subject, "alice", now + 60, now),
            Some(Hit::Subject),
        ),
        (
            "client",
            rev(Kind::Client, "tpp-1", now + 60, now),
            Some(Hit::Client),
        ),
        ("other jti", rev(Kind::Jti, "j2", now + 60, now), None),
        (
            "other subject",
            rev(Kind::Subject, "bob", now + 60, now),
            None,
        ),
        // Revoked before the token was issued: a later sign-in works.
        (
            "subject before iat",
            rev(Kind::Subject, "alice", now + 60, now - 11),
            None,
        ),
        (
            "client before iat",
            rev(Kind::Client, "tpp-1", now + 60, now - 11),
            None,
        ),
        (
            "consent kind",
            rev(Kind::Consent, "alice", now + 60, now),
            None,
        ),
    ];
    for (name, r, want) in cases {
        let s = RevocationSet::new(100);
        assert_eq!(s.insert(&r, now), Ok(true), "{name}");
        assert_eq!(s.token(&t, now), want, "{name}");
    }
}

#[test]
fn entries_expire_by_time_and_the_set_refuses_rather_than_forgets() {
    let now = 1_000_000;
    let s = RevocationSet::new(2);
    let t = token("j1", "alice", "c", now - 1, 1);
    assert_eq!(s.insert(&rev(Kind::Jti, "j1", now + 5, now), now), Ok(true));
    assert_eq!(
        s.insert(&rev(Kind::Jti, "j1", now + 5, now), now),
        Ok(false),
        "repeat is a no-op"
    );
    assert_eq!(
        s.insert(&rev(Kind::Consent, "c1", now + 5, now), now),
        Ok(true)
    );
    assert_eq!(
        s.insert(&rev(Kind::Jti, "j3", now + 5, now), now),
        Err(SetFull)
    );
    assert_eq!(
        s.token(&t, now),
        Some(Hit::Jti),
        "the old entry is still enforced"
    );
    assert!(s.consent("c1", now + 5));
    assert_eq!(s.token(&t, now + 6), None, "expired");
    assert!(!s.consent("c1", now + 6));
    // Once expired entries are pruned there is room again.
    assert_eq!(
        s.insert(&rev(Kind::Jti, "j3", now + 20, now + 6), now + 6),
        Ok(true)
    );
    assert_eq!(s.len(), 1);
}

#[test]
fn validation_refuses_bad_input_and_canonicalises_digests() {
    let now = 1_000_000;
    let hex = "ab".repeat(32);
    let r = rev(Kind::TokenSha256, &hex, now + 1, now)
        .validated(now)
        .expect("hex");
    assert_eq!(r.value, URL_SAFE_NO_PAD.encode([0xab; 32]));
    let cases = [
        ("empty", rev(Kind::Jti, "", now + 1, now)),
        ("1 MB", rev(Kind::Jti, &"x".repeat(1 << 20), now + 1, now)),
        ("control", rev(Kind::Subject, "a\nb", now + 1, now)),
        ("bad digest", rev(Kind::TokenSha256, "zz", now + 1, now)),
        ("past", rev(Kind::Jti, "j", now - 1, now)),
        ("too far", rev(Kind::Jti, "j", now + 500 * 86_400, now)),
    ];
    for (name, r) in cases {
        assert!(r.validated(now).is_err(), "{name}");
    }
}
