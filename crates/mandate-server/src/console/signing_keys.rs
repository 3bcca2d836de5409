//! `GET signing-keys`: each signing key's id, algorithm, state and dates, from
//! [`crate::admin::signing_keys`], which never hands over private material. Rotation and
//! withdrawal are operator actions of the admin API and the CLI, not of the console.

use super::Answer;
use super::pages::{SigningKeyRow, SigningKeysPage};
use super::session::Console;
use crate::admin::signing_keys::list;
use crate::pages::{When, render};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mandate_core::time::Timestamp;

pub async fn signing_keys_get(State(app): State<AppState>, console: Console) -> Answer {
    let ctx = console.ctx(&app);
    let keys = list(&ctx, &app.keys).await?;
    let page = SigningKeysPage {
        keys: keys
            .into_iter()
            .map(|k| SigningKeyRow {
                kid: k.kid,
                alg: k.alg,
                status: k.status,
                created: When::new(Timestamp::from_unix(k.created_at)),
                activates: When::new(Timestamp::from_unix(k.activates_at)),
                until: k
                    .trusted_until
                    .or(k.withdrawn_at)
                    .map(|t| When::new(Timestamp::from_unix(t))),
            })
            .collect(),
        nav: console.nav(&ctx, "signing-keys").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}
