//! `mandate signing-key`: list, rotate and withdraw the keys that sign access tokens, on the
//! local database (with the key-encryption key, which sealing a new key needs) or through a
//! remote server's admin API (`--server`, operators only for changes).

use crate::admin::open_local;
use crate::cli::{Global, SigningKeyCmd};
use crate::output;
use crate::remote::Remote;
use anyhow::Context;
use mandate_core::time::Clock;
use mandate_server::admin::context::Ctx;
use mandate_server::admin::signing_keys::{self, RotateSigningKey, SigningKeyView};
use mandate_server::keys::{Kek, KeyRing};
use mandate_server::system::{OsEntropy, SystemClock};
use std::sync::Arc;

pub async fn run(global: &Global, cmd: SigningKeyCmd) -> anyhow::Result<()> {
    let views = match &global.server {
        Some(server) => remote(&Remote::connect(server).await?, &cmd).await?,
        None => local(global, &cmd).await?,
    };
    match cmd {
        SigningKeyCmd::List => {
            let rows = views
                .iter()
                .map(|k| {
                    vec![
                        k.kid.clone(),
                        k.alg.clone(),
                        k.status.clone(),
                        k.created_at.to_string(),
                        k.activates_at.to_string(),
                        output::time(k.trusted_until.or(k.withdrawn_at)),
                    ]
                })
                .collect();
            output::print(
                global.json,
                &views,
                &[
                    "kid",
                    "alg",
                    "status",
                    "created",
                    "signs from",
                    "verifies until",
                ],
                rows,
            )
        }
        SigningKeyCmd::Rotate { .. } => {
            let k = views.first().context("the server returned no key")?;
            let text = format!(
                "signing key {} ({}) is published now and signs from {} (Unix time)",
                k.kid, k.alg, k.activates_at
            );
            output::created(global.json, k, &text)
        }
        SigningKeyCmd::Withdraw { .. } => {
            let k = views.first().context("the server returned no key")?;
            let text = format!(
                "signing key {} is withdrawn: it no longer verifies nor is published",
                k.kid
            );
            output::created(global.json, k, &text)
        }
    }
}

async fn remote(remote: &Remote, cmd: &SigningKeyCmd) -> anyhow::Result<Vec<SigningKeyView>> {
    Ok(match cmd {
        SigningKeyCmd::List => remote.get("/signing-keys").await?,
        SigningKeyCmd::Rotate { activate_in } => {
            let req = RotateSigningKey {
                activate_in_seconds: *activate_in,
            };
            vec![remote.post("/signing-keys", &req).await?]
        }
        SigningKeyCmd::Withdraw { kid } => {
            let path = format!("/signing-keys/{}/withdraw", crate::remote::encode(kid));
            vec![remote.post(&path, &serde_json::json!({})).await?]
        }
    })
}

async fn local(global: &Global, cmd: &SigningKeyCmd) -> anyhow::Result<Vec<SigningKeyView>> {
    let (config, store) = open_local(global).await?;
    let entropy = OsEntropy::default();
    let now = SystemClock.now();
    let kek = Arc::new(Kek::load_or_create(&config.kek_path(), &entropy)?);
    let ring = KeyRing::load_or_create(
        store.clone(),
        kek,
        config.signing_keys.policy(config.signing_algorithm),
        &entropy,
        now,
    )
    .await
    .context("loading signing keys")?;
    let ctx = Ctx::local(store.as_ref(), &entropy, now, config.api_keys.policy());
    Ok(match cmd {
        SigningKeyCmd::List => signing_keys::list(&ctx, &ring).await?,
        SigningKeyCmd::Rotate { activate_in } => {
            let req = RotateSigningKey {
                activate_in_seconds: *activate_in,
            };
            vec![signing_keys::rotate(&ctx, &ring, req).await?]
        }
        SigningKeyCmd::Withdraw { kid } => vec![signing_keys::withdraw(&ctx, &ring, kid).await?],
    })
}
