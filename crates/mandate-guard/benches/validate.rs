//! Guard validation cost: a token seen for the first time (signature check, claims, cache
//! insert) against a repeated token (hash, cache lookup, revocation check).
//!
//! A fake issuer on 127.0.0.1:0 serves metadata and a JWKS so the guard is built exactly as in
//! production; the measured loop does no IO. DESIGN.md targets: ≥ 25,000/s uncached and
//! ≥ 500,000/s repeated, per core.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::routing::get;
use axum::{Json, Router};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mandate_core::jwt::{AccessTokenClaims, Algorithm, Jwks, SigningKey};
use mandate_core::scope::ScopeSet;
use mandate_core::time::SystemClock;
use mandate_core::time::{Clock, ManualClock};
use mandate_guard::Guard;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const CRM: &str = "http://127.0.0.1:8081";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (key, _) = SigningKey::generate(Algorithm::EdDSA, "k1".into()).unwrap();
    let jwks = Jwks {
        keys: vec![key.public_jwk().clone()],
    };
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let (issuer, guard) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let meta = serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json")});
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { Json(meta) }),
            )
            .route("/jwks.json", get(move || async move { Json(jwks) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let guard = Guard::builder(&issuer, CRM)
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        (issuer, guard)
    });
    let now = clock.now().unix();
    let n = AtomicU64::new(0);
    let token = |jti: u64| {
        key.sign(&AccessTokenClaims {
            iss: issuer.clone(),
            sub: "u_alice".into(),
            aud: CRM.into(),
            exp: now + 900,
            iat: now,
            jti: format!("jti-{jti}"),
            client_id: "cli-agent".into(),
            scope: ScopeSet::parse("contacts.read tickets.read").unwrap(),
            tenant: "acme".into(),
            gid: "g_1".into(),
            act: None,
        })
        .unwrap()
    };
    let header = |t: String| format!("Bearer {t}");

    c.bench_function("guard validate, uncached (EdDSA)", |b| {
        b.iter_batched(
            || header(token(n.fetch_add(1, Ordering::Relaxed))),
            |h| rt.block_on(guard.validate(&h)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let repeated = header(token(u64::MAX));
    c.bench_function("guard validate, repeated token (cached)", |b| {
        b.iter(|| rt.block_on(guard.validate(&repeated)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
