//! Micro-benchmarks of the per-request primitives on the token hot path.
//!
//! Run with `cargo bench -p mandate-core --bench tokens` (about 3 s of measurement per case);
//! add `-- --measurement-time 1 --warm-up-time 0.5` for a quick look. Results and the
//! DESIGN.md targets they are compared with are in BENCHMARKS.md at the repository root.
//!
//! Cases:
//! - `jwt/sign/{EdDSA,ES256}`: one RFC 9068 access token with the claims the
//!   client-credentials path issues (JSON serialisation, base64url, one signature).
//! - `jwt/verify/{EdDSA,ES256}`: `jwt::verify` of such a token against a one-key set (header
//!   and claims JSON parsing plus one signature verification; no time/issuer checks).
//! - `ed25519/verify/*`: the bare signature check of such a token's signing input: aws-lc-rs
//!   with the key as bytes (`aws-lc-rs`, how `jwt` verified before) and parsed once
//!   (`aws-lc-rs-parsed`, how it verifies now), and ed25519-dalek on a key decompressed once,
//!   `verify` (`dalek`) and `verify_strict` (`dalek-strict`), the alternative measured.
//! - `secret/hash+verify`: `hash_secret` then `verify_secret` of a 43-character secret (the
//!   shape of every opaque credential): two SHA-256 digests and a constant-time compare.
//! - `scope/parse`: `ScopeSet::parse("contacts.read contacts.write tickets.read")`.
//! - `refresh/standing/{live,behind-1,behind-max}`: recognising a presented refresh token
//!   against its family's live token (`refresh::standing`): the live token itself (one
//!   digest), the one just rotated (one derivation), and one the most generations back that is
//!   still recognised (`MAX_GENERATIONS_BEHIND` derivations: the most a forged old generation
//!   can make the server compute).

// Benchmarks are test code: failing loudly on a broken fixture is the right behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use mandate_core::jwt::{self, AccessTokenClaims, Algorithm, SigningKey, VerifyingKey};
use mandate_core::scope::ScopeSet;
use mandate_core::secret::{hash_secret, verify_secret};
use std::hint::black_box;
use std::time::Duration;

/// A fixed instant (2025-01-01T00:00:00Z): benchmarks never read the system clock.
const NOW: i64 = 1_735_689_600;

/// Claims shaped like a real client-credentials token from the demo configuration.
fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "svc-agent".into(),
        aud: "http://127.0.0.1:8081".into(),
        exp: NOW + 900,
        iat: NOW,
        jti: "at_5f0c6b1e9a7d4c3b8e2f1a0d9c8b7a65".into(),
        client_id: "svc-agent".into(),
        scope: ScopeSet::parse("tickets.read tickets.write").expect("valid scopes"),
        tenant: "acme".into(),
        gid: "g_0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(),
        act: None,
    }
}

fn jwt_benches(c: &mut Criterion) {
    let claims = claims();
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let (key, _pkcs8) =
            SigningKey::generate(alg, format!("bench-{alg}")).expect("key generation");
        let verifiers = [VerifyingKey::from_jwk(key.public_jwk()).expect("public key")];
        let token = key.sign(&claims).expect("signing");
        assert_eq!(
            jwt::verify(&token, &verifiers).expect("round trip"),
            claims,
            "the benchmarked token must verify to the claims it was signed from"
        );

        c.bench_function(&format!("jwt/sign/{alg}"), |b| {
            b.iter(|| key.sign(black_box(&claims)).expect("signing"));
        });
        c.bench_function(&format!("jwt/verify/{alg}"), |b| {
            b.iter(|| jwt::verify(black_box(&token), black_box(&verifiers)).expect("verify"));
        });
    }
}

fn ed25519_benches(c: &mut Criterion) {
    use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key generation");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key pair");
    let (key, _) = SigningKey::generate(Algorithm::EdDSA, "bench".into()).expect("key");
    // The signing input of a real token: what verification hashes.
    let token = key.sign(&claims()).expect("signing");
    let message = token.rsplit_once('.').expect("three parts").0.as_bytes();
    let sig = pair.sign(message);
    let public: [u8; 32] = pair.public_key().as_ref().try_into().expect("32 bytes");
    c.bench_function("ed25519/verify/aws-lc-rs", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&signature::ED25519, black_box(&public))
                .verify(black_box(message), black_box(sig.as_ref()))
                .expect("verify")
        });
    });
    let parsed = signature::ParsedPublicKey::new(&signature::ED25519, public).expect("public key");
    c.bench_function("ed25519/verify/aws-lc-rs-parsed", |b| {
        b.iter(|| {
            black_box(&parsed)
                .verify_sig(black_box(message), black_box(sig.as_ref()))
                .expect("verify")
        });
    });
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("public key");
    let dalek_sig = ed25519_dalek::Signature::from_slice(sig.as_ref()).expect("signature");
    c.bench_function("ed25519/verify/dalek", |b| {
        b.iter(|| {
            use ed25519_dalek::Verifier;
            black_box(&dalek)
                .verify(black_box(message), black_box(&dalek_sig))
                .expect("verify")
        });
    });
    c.bench_function("ed25519/verify/dalek-strict", |b| {
        b.iter(|| {
            black_box(&dalek)
                .verify_strict(black_box(message), black_box(&dalek_sig))
                .expect("verify")
        });
    });
}

fn secret_benches(c: &mut Criterion) {
    // 43 characters: 256 random bits in base64url, like every credential Mandate issues.
    let secret = "k3Jx9QmZp2VbT7wLc0sRfYhN5aGdE8uIoP1qWxz4AbC";
    assert_eq!(secret.len(), 43);
    c.bench_function("secret/hash+verify", |b| {
        b.iter(|| {
            let stored = hash_secret(black_box(secret));
            assert!(verify_secret(black_box(secret), &stored));
        });
    });
}

fn scope_benches(c: &mut Criterion) {
    let input = "contacts.read contacts.write tickets.read";
    c.bench_function("scope/parse", |b| {
        b.iter(|| ScopeSet::parse(black_box(input)).expect("valid scopes"));
    });
}

fn refresh_benches(c: &mut Criterion) {
    use mandate_core::random::SeededEntropy;
    use mandate_core::refresh::{self, LiveToken, MAX_GENERATIONS_BEHIND};
    use mandate_core::time::Timestamp;
    let key = [7u8; 32];
    let (first, _) = refresh::first_token(
        &SeededEntropy::new(1),
        "rf_0190abcdef0123456789abcdef012345",
        Timestamp::from_unix(0),
        Timestamp::from_unix(3600),
    );
    let mut chain = vec![first];
    for _ in 0..MAX_GENERATIONS_BEHIND {
        let last = chain.last().expect("a first token");
        let next = refresh::successor(&key, last, refresh::name(last).expect("named"));
        chain.push(next);
    }
    let live_token = chain.last().expect("a live token");
    let live = LiveToken {
        generation: MAX_GENERATIONS_BEHIND,
        token_hash: hash_secret(live_token),
        issued_at: Timestamp::from_unix(0),
        expires_at: Timestamp::from_unix(3600),
    };
    let behind = |n: u64| {
        let back = usize::try_from(n).expect("small");
        chain.iter().rev().nth(back).expect("in the chain")
    };
    for (case, presented) in [
        ("live", behind(0)),
        ("behind-1", behind(1)),
        ("behind-max", behind(MAX_GENERATIONS_BEHIND)),
    ] {
        c.bench_function(&format!("refresh/standing/{case}"), |b| {
            b.iter(|| {
                let name = refresh::name(black_box(presented)).expect("named");
                refresh::standing(&key, presented, name, &live).expect("recognised")
            });
        });
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = jwt_benches, ed25519_benches, secret_benches, scope_benches, refresh_benches
}
criterion_main!(benches);
