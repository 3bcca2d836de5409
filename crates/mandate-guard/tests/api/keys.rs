//! Discovery and keys against a fake issuer whose JWKS the test controls.

use crate::helpers::*;
use mandate_core::time::Clock;
use mandate_guard::{BearerError, Guard, GuardError};
use std::time::Duration;

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_once_per_interval() {
    let fake = spawn_fake_issuer(None).await;
    let old = new_key("old");
    fake.publish(&old);
    let clock = clock_now();
    let guard = Guard::builder(&fake.issuer, CRM)
        .clock(clock.clone())
        .jwks_refresh_min_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    assert_eq!(fake.fetches(), 1, "build fetches the JWKS once");

    let claims = fake.claims(clock.now(), "contacts.read");
    let ok = guard
        .validate_token(&old.sign(&claims).unwrap())
        .await
        .unwrap();
    assert_eq!(ok.subject, "u_alice");
    assert_eq!(fake.fetches(), 1, "a known kid never refetches");

    // Rotation: the issuer publishes a new key; the first token signed with it triggers one
    // refetch and is accepted.
    let rotated = new_key("rotated");
    fake.publish(&rotated);
    let p = guard
        .validate_token(&rotated.sign(&claims).unwrap())
        .await
        .unwrap();
    assert_eq!(p.tenant, "acme");
    assert_eq!(fake.fetches(), 2, "unknown kid refetched once");

    // Within the interval, further unknown kids are refused without another fetch.
    for i in 0..5 {
        let stranger = new_key(&format!("stranger-{i}"));
        let err = guard
            .validate_token(&stranger.sign(&claims).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, BearerError::InvalidToken(_)), "{err:?}");
    }
    assert_eq!(fake.fetches(), 2, "refetch is rate-limited");
}

#[tokio::test]
async fn refetch_is_allowed_again_after_the_interval_and_never_for_alg_none() {
    let fake = spawn_fake_issuer(None).await;
    let key = new_key("k1");
    fake.publish(&key);
    let clock = clock_now();
    let guard = Guard::builder(&fake.issuer, CRM)
        .clock(clock.clone())
        .jwks_refresh_min_interval(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let claims = fake.claims(clock.now(), "contacts.read");
    let token = key.sign(&claims).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let none = format!(
        "{}.{payload}.",
        b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": "zz"}))
    );
    assert!(guard.validate_token(&none).await.is_err());
    assert_eq!(fake.fetches(), 1, "alg none is not worth a refetch");

    for i in 0..2 {
        let stranger = new_key(&format!("s{i}"));
        assert!(
            guard
                .validate_token(&stranger.sign(&claims).unwrap())
                .await
                .is_err()
        );
    }
    assert_eq!(
        fake.fetches(),
        3,
        "with a zero interval every unknown kid refetches"
    );
}

#[tokio::test]
async fn build_refuses_an_issuer_mismatch_and_an_empty_jwks() {
    let liar = spawn_fake_issuer(Some("https://evil.example")).await;
    liar.publish(&new_key("k"));
    let err = Guard::builder(&liar.issuer, CRM).build().await.unwrap_err();
    assert!(matches!(err, GuardError::IssuerMismatch { .. }), "{err}");

    let empty = spawn_fake_issuer(None).await;
    let err = Guard::builder(&empty.issuer, CRM)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::NoUsableKeys(_)), "{err}");

    let err = Guard::builder("ftp://x", CRM).build().await.unwrap_err();
    assert!(matches!(err, GuardError::InvalidUrl(_)), "{err}");

    let err = Guard::builder("http://127.0.0.1:1", CRM)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::Fetch { .. }), "{err}");
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let fake = spawn_fake_issuer(None).await;
    let key = new_key("k");
    fake.publish(&key);
    let clock = clock_now();
    let guard = Guard::builder(&fake.issuer, CRM)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let mut claims = serde_json::to_value(fake.claims(clock.now(), "contacts.read")).unwrap();
    claims["nbf"] = serde_json::json!(clock.now().unix() + 600);
    let err = guard
        .validate_token(&key.sign(&claims).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, BearerError::InvalidToken("the token is not valid yet"));

    claims["nbf"] = serde_json::json!(clock.now().unix() + 10);
    assert!(
        guard
            .validate_token(&key.sign(&claims).unwrap())
            .await
            .is_ok(),
        "within leeway"
    );
}
