//! The attack table: every forged, stale, misdirected or malformed token gets 401
//! `invalid_token` with a `resource_metadata` pointer, and never reaches the handler.

use crate::helpers::*;
use serde_json::json;

fn assert_invalid_token(
    reason: &str,
    (status, challenge, body): &(u16, String, serde_json::Value),
) {
    assert_eq!(*status, 401, "{reason}: {body}");
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{reason}: {challenge}"
    );
    assert!(
        challenge.contains("resource_metadata=\"http://127.0.0.1:")
            && challenge.ends_with("/.well-known/oauth-protected-resource\""),
        "{reason}: {challenge}"
    );
    assert_eq!(body["error"], "invalid_token", "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misdirected_tokens_are_refused() {
    let issuer = spawn_issuer().await;
    let other_issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let other_aud_guard = mandate_guard::Guard::builder(&issuer.issuer, "http://127.0.0.1:9999")
        .build()
        .await
        .unwrap();
    let other_aud_app = spawn_protected(&other_aud_guard).await;

    let good = issuer.token("tickets.read").await;
    let parts: Vec<&str> = good.split('.').collect();
    let (header, payload, sig) = (decode(parts[0]), parts[1], parts[2]);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let server_jwk = issuer
        .jwks()
        .await
        .into_iter()
        .find(|k| k.kid == kid)
        .unwrap();

    let with_header = |h: serde_json::Value| format!("{}.{payload}.{sig}", b64(&h));
    let mut tampered_claims = decode(payload);
    tampered_claims["scope"] = json!("tickets.read billing.read");
    let mut tampered_sub = decode(payload);
    tampered_sub["tenant"] = json!("globex");
    let public_key_bytes = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &server_jwk.x,
    )
    .unwrap();
    let server_jwk_json = serde_json::to_value(&server_jwk).unwrap();

    let tickets = format!("{app}/tickets");
    let other_aud_tickets = format!("{other_aud_app}/tickets");
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "alg none, empty signature",
            &tickets,
            format!(
                "{}.{payload}.",
                b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}))
            ),
        ),
        (
            "alg none, original signature",
            &tickets,
            with_header(json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        ),
        (
            "HS256 keyed with the server's public key bytes",
            &tickets,
            sign_hs256(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                payload,
                &public_key_bytes,
            ),
        ),
        (
            "HS256 keyed with the server's JWK text",
            &tickets,
            sign_hs256(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                payload,
                server_jwk_json.to_string().as_bytes(),
            ),
        ),
        (
            "wrong issuer: another server's token",
            &tickets,
            other_issuer.token("tickets.read").await,
        ),
        (
            "wrong audience: token for the CRM at another resource",
            &other_aud_tickets,
            good.clone(),
        ),
        (
            "tampered payload: scope widened",
            &tickets,
            format!("{}.{}.{sig}", parts[0], b64(&tampered_claims)),
        ),
        (
            "tampered payload: tenant changed",
            &tickets,
            format!("{}.{}.{sig}", parts[0], b64(&tampered_sub)),
        ),
        (
            "unknown kid",
            &tickets,
            with_header(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "no-such-key"})),
        ),
        (
            "typ is not at+jwt",
            &tickets,
            with_header(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})),
        ),
        (
            "embedded jwk header with the attacker's key",
            &tickets,
            sign_with_stranger(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker", "jwk": null}),
                payload,
            )
            .0,
        ),
        (
            "embedded jwk header, server kid",
            &tickets,
            sign_with_stranger(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "jwk": null}),
                payload,
            )
            .0,
        ),
        (
            "jku header",
            &tickets,
            sign_with_stranger(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker", "jku": null}),
                payload,
            )
            .0,
        ),
        (
            "x5u header",
            &tickets,
            sign_with_stranger(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker", "x5u": null}),
                payload,
            )
            .0,
        ),
        (
            "signed by a stranger's key under the server's kid",
            &tickets,
            sign_with_stranger(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
                payload,
            )
            .0,
        ),
        ("two segments", &tickets, format!("{}.{payload}", parts[0])),
        ("four segments", &tickets, format!("{good}.{sig}")),
        ("garbage token", &tickets, "not-a-jwt".into()),
        ("garbage segments", &tickets, "a.b.c".into()),
        ("oversized token", &tickets, "a".repeat(9 * 1024)),
        (
            "truncated signature",
            &tickets,
            good[..good.len() - 4].to_owned(),
        ),
    ];
    for (reason, url, token) in &cases {
        assert_invalid_token(reason, &get_bearer(url, token).await);
    }

    // The same good token is accepted where it belongs: the refusals above are for cause.
    let (status, _, body) = get_bearer(&tickets, &good).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_headers_are_refused() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let url = format!("{app}/tickets");
    let oversized = format!("Bearer {}", "a".repeat(9 * 1024));
    // Far past the guard's limit but within the HTTP server's header limit, so it reaches the
    // guard (see the next test for a header the server itself refuses).
    let very_long = format!("Bearer {}", "a".repeat(300 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty header", b"".to_vec()),
        ("scheme without token", b"Bearer".to_vec()),
        ("scheme and space only", b"Bearer ".to_vec()),
        ("scheme and spaces only", b"Bearer     ".to_vec()),
        ("tab instead of space", b"Bearer\tabc".to_vec()),
        ("space inside token", b"Bearer abc def".to_vec()),
        ("quote inside token", b"Bearer abc\"def".to_vec()),
        ("no scheme", b"garbage".to_vec()),
        ("punctuation scheme", b"!!! token".to_vec()),
        ("non-ASCII bytes", b"Bearer \xff\xfe".to_vec()),
        (
            "obs-text byte inside the token",
            b"Bearer abc\x80def".to_vec(),
        ),
        ("obs-text scheme", b"B\xe9arer abc".to_vec()),
        ("oversized header", oversized.into_bytes()),
        ("300 KiB token", very_long.into_bytes()),
    ];
    for (reason, value) in &cases {
        assert_invalid_token(reason, &get_with(&url, &[value]).await);
    }
}

/// A 1 MiB token is past what the HTTP server reads as a request head: hyper answers 431 (or
/// closes while the client is still sending), never a 5xx, and keeps serving. The guard itself
/// refuses such a token with a proper challenge wherever it does get to see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_token_is_refused_without_a_server_error() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let url = format!("{app}/tickets");
    let huge = format!("Bearer {}", "a".repeat(1024 * 1024));

    match reqwest::Client::new()
        .get(&url)
        .header("authorization", &huge)
        .send()
        .await
    {
        Ok(resp) => assert!(
            resp.status().is_client_error(),
            "a 4xx, not {}",
            resp.status()
        ),
        Err(err) => assert!(
            !err.is_timeout(),
            "refused by closing, not by hanging: {err}"
        ),
    }
    let good = issuer.token("tickets.read").await;
    assert_eq!(get_bearer(&url, &good).await.0, 200, "still serving");

    let err = guard.validate(&huge).await.unwrap_err();
    assert_eq!(err.status(), 401);
    let challenge = err.challenge(guard.metadata_url());
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_foreign_credentials_get_a_bare_challenge() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let bare =
        "Bearer resource_metadata=\"http://127.0.0.1:8081/.well-known/oauth-protected-resource\"";
    for (reason, headers) in [
        ("no Authorization header", vec![]),
        ("Basic credentials", vec![&b"Basic c3ZjOnB3"[..]]),
    ] {
        let (status, challenge, _) = get_with(&format!("{app}/tickets"), &headers).await;
        assert_eq!(status, 401, "{reason}");
        assert_eq!(challenge, bare, "{reason}: no error code (RFC 6750 §3.1)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_an_invalid_request() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let token = format!("Bearer {}", issuer.token("tickets.read").await);
    let (token, garbage, empty) = (token.as_bytes(), &b"Bearer \xff"[..], &b""[..]);
    // RFC 6750 §3.1: more than one method is `invalid_request` (400); the guard never picks
    // the valid one out of several.
    let cases: Vec<(&str, Vec<&[u8]>)> = vec![
        ("the same token twice", vec![token, token]),
        ("a valid token, then garbage", vec![token, garbage]),
        ("garbage, then a valid token", vec![garbage, token]),
        ("an empty header, then a valid token", vec![empty, token]),
        ("three headers", vec![token, token, token]),
    ];
    for (reason, headers) in cases {
        let (status, challenge, body) = get_with(&format!("{app}/tickets"), &headers).await;
        assert_eq!(status, 400, "{reason}: {body}");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_request\"")
                && challenge.contains("resource_metadata="),
            "{reason}: {challenge}"
        );
        assert_eq!(body["error"], "invalid_request", "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_tokens_are_refused_even_when_cached() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    let guard = issuer.guard(clock.clone()).await;
    let app = spawn_protected(&guard).await;
    let url = format!("{app}/tickets");
    let token = issuer.token("tickets.read").await;
    let exp = decode(token.split('.').nth(1).unwrap())["exp"]
        .as_i64()
        .unwrap();
    let iat = decode(token.split('.').nth(1).unwrap())["iat"]
        .as_i64()
        .unwrap();

    // Within the leeway both ways: accepted (and now cached).
    use mandate_core::time::{Clock, Timestamp};
    clock.set(Timestamp::from_unix(iat - 29));
    assert_eq!(get_bearer(&url, &token).await.0, 200, "iat within leeway");
    clock.set(Timestamp::from_unix(exp + 29));
    assert_eq!(get_bearer(&url, &token).await.0, 200, "exp within leeway");

    clock.set(Timestamp::from_unix(exp + 30));
    assert_invalid_token("expired (cached)", &get_bearer(&url, &token).await);
    clock.set(Timestamp::from_unix(iat - 31));
    assert_invalid_token("not yet valid (cached)", &get_bearer(&url, &token).await);

    // Uncached: a fresh guard whose clock is already out of the window.
    for (reason, at) in [("expired", exp + 31), ("not yet valid", iat - 3600)] {
        let clock = clock_now();
        clock.set(Timestamp::from_unix(at));
        let fresh = issuer.guard(clock.clone()).await;
        let app = spawn_protected(&fresh).await;
        assert_invalid_token(reason, &get_bearer(&format!("{app}/tickets"), &token).await);
        assert_eq!(clock.now().unix(), at);
    }
}
