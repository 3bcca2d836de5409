//! Signing-key status for administrators: which keys exist, which one signs new tokens, which
//! are retired. Only public facts leave this module (key id, algorithm, dates): the stored
//! record's sealed private key is dropped here, so no page or answer built on it can show it.
//!
//! Any administrator may read it: the same keys are published at `/jwks.json`, and none
//! belongs to a tenant, so a tenant admin learns nothing about other tenants from it.

use super::context::Ctx;
use crate::errors::ServerError;
use mandate_core::time::Timestamp;

/// Where a signing key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Signs the tokens this server issues now.
    Active,
    /// Not retired, but not the key this server signs with (another algorithm, or a newer
    /// key took over); still published for verification.
    Standby,
    /// Retired: signs nothing; still published until the tokens it signed have expired.
    Retired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Standby => "standby",
            Self::Retired => "retired",
        }
    }
}

/// A signing key as administrators see it: never its private part.
#[derive(Debug, Clone)]
pub struct SigningKeyView {
    pub kid: String,
    pub alg: String,
    pub status: KeyStatus,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// Every stored signing key, newest first. `signing_kid` is the key this server signs with.
pub async fn signing_key_status(
    ctx: &Ctx<'_>,
    signing_kid: &str,
) -> Result<Vec<SigningKeyView>, ServerError> {
    let keys = ctx.store.signing_keys().await?;
    Ok(keys
        .into_iter()
        .map(|k| {
            let status = match k.retired_at {
                Some(at) if at <= ctx.now => KeyStatus::Retired,
                _ if k.kid == signing_kid => KeyStatus::Active,
                _ => KeyStatus::Standby,
            };
            SigningKeyView {
                kid: k.kid,
                alg: k.alg,
                status,
                created_at: k.created_at,
                retired_at: k.retired_at,
            }
        })
        .collect())
}
