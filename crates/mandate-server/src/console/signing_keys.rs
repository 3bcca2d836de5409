//! `GET signing-keys`: each signing key's id, algorithm, status and dates, from
//! [`crate::admin::signing_keys`], which never hands over private material.

use super::Answer;
use super::pages::{SigningKeyRow, SigningKeysPage};
use super::session::Console;
use crate::admin::signing_keys::signing_key_status;
use crate::pages::{When, render};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

pub async fn signing_keys_get(State(app): State<AppState>, console: Console) -> Answer {
    let ctx = console.ctx(&app);
    let keys = signing_key_status(&ctx, app.keys.signer().kid()).await?;
    let page = SigningKeysPage {
        keys: keys
            .into_iter()
            .map(|k| SigningKeyRow {
                kid: k.kid,
                alg: k.alg,
                status: k.status.as_str(),
                created: When::new(k.created_at),
                retired: k.retired_at.map(When::new),
            })
            .collect(),
        nav: console.nav(&ctx, "signing-keys").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}
