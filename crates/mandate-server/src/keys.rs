//! Signing keys and the key-encryption key (KEK) that protects them at rest.
//!
//! Private signing keys are stored in the database sealed with AES-256-GCM under the KEK, which
//! lives outside the database (a 0600 file, generated on first start). A stolen database alone
//! therefore yields no signing key. Nodes that share a database must share the KEK file.
//!
//! [`KeyRing`] holds the parsed signing key for the process lifetime (parsing per token would
//! double the cost of issuance), every public key for verification, and the JWKS document
//! pre-rendered. Purpose-bound secrets for CSRF tokens and refresh successors are derived from
//! the KEK, so they too are shared by every node.

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate_core::jwt::{Algorithm, Jwk, Jwks, SigningKey, VerifyingKey};
use mandate_core::random::{self, Entropy};
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_store::{Store, StoredSigningKey};
use std::path::Path;

/// The key-encryption key and the purpose-bound secrets derived from it.
pub struct Kek {
    aead: LessSafeKey,
    csrf_key: [u8; 32],
    refresh_key: [u8; 32],
}

impl Kek {
    pub fn from_bytes(bytes: &[u8; 32]) -> anyhow::Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow::anyhow!("invalid key-encryption key"))?;
        Ok(Self {
            aead: LessSafeKey::new(unbound),
            csrf_key: secret::derive(bytes, "mandate csrf v1", b""),
            refresh_key: secret::derive(bytes, "mandate refresh v1", b""),
        })
    }

    /// Reads the KEK file, or creates it (mode 0600) with fresh random bytes.
    pub fn load_or_create(path: &Path, entropy: &dyn Entropy) -> anyhow::Result<Self> {
        if path.exists() {
            warn_if_readable_by_others(path);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading key-encryption key {}", path.display()))?;
            let raw = STANDARD
                .decode(text.trim())
                .context("the key-encryption key file is not base64")?;
            let bytes: [u8; 32] = raw
                .try_into()
                .map_err(|_| anyhow::anyhow!("the key-encryption key must be 32 bytes"))?;
            return Self::from_bytes(&bytes);
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut bytes = [0u8; 32];
        entropy.fill(&mut bytes);
        write_private_file(path, STANDARD.encode(bytes).as_bytes())
            .with_context(|| format!("creating key-encryption key {}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a new key-encryption key");
        Self::from_bytes(&bytes)
    }

    pub fn csrf_key(&self) -> &[u8] {
        &self.csrf_key
    }

    pub fn refresh_key(&self) -> &[u8] {
        &self.refresh_key
    }

    /// `nonce || ciphertext || tag`, authenticated together with `kid`.
    fn seal(&self, kid: &str, plaintext: &[u8], entropy: &dyn Entropy) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("sealing a signing key failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed signing key {kid} is truncated");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("sealed signing key {kid} has a bad nonce"))?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| {
                anyhow::anyhow!(
                    "signing key {kid} cannot be decrypted: is this the key-encryption key the database was created with?"
                )
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the key-encryption key is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// The active signing key, every published public key, and the JWKS document.
pub struct KeyRing {
    signer: SigningKey,
    verifiers: Vec<VerifyingKey>,
    jwks_json: String,
}

impl KeyRing {
    /// Loads the newest unretired key of `alg`, generating and storing one if there is none.
    /// Every node converges on the same newest key, even when several start at once.
    pub async fn load_or_create(
        store: &dyn Store,
        kek: &Kek,
        alg: Algorithm,
        entropy: &dyn Entropy,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let usable = |keys: &[StoredSigningKey]| {
            keys.iter()
                .filter(|k| k.alg == alg.as_str() && k.retired_at.is_none())
                .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.kid.cmp(&b.kid)))
                .cloned()
        };
        let mut keys = store.signing_keys().await?;
        if usable(&keys).is_none() {
            let kid = random::identifier(entropy, "k_");
            let (key, der) = SigningKey::generate(alg, kid.clone())
                .map_err(|e| anyhow::anyhow!("generating a signing key: {e}"))?;
            let stored = StoredSigningKey {
                kid: kid.clone(),
                alg: alg.as_str().to_owned(),
                private_sealed: kek.seal(&kid, &der, entropy)?,
                public_jwk: serde_json::to_value(key.public_jwk())?,
                created_at: now,
                retired_at: None,
            };
            store.insert_signing_key(&stored).await?;
            tracing::info!(kid = %kid, alg = %alg, "generated a new signing key");
            keys = store.signing_keys().await?;
        }
        let active = usable(&keys).context("no usable signing key after generation")?;
        let der = kek.open(&active.kid, &active.private_sealed)?;
        let signer = SigningKey::from_pkcs8(alg, active.kid.clone(), &der)
            .map_err(|e| anyhow::anyhow!("signing key {} is unusable: {e}", active.kid))?;
        let mut published = Vec::new();
        let mut verifiers = Vec::new();
        for k in &keys {
            let jwk: Jwk = serde_json::from_value(k.public_jwk.clone())
                .with_context(|| format!("public key {} is corrupt", k.kid))?;
            verifiers.push(
                VerifyingKey::from_jwk(&jwk)
                    .map_err(|e| anyhow::anyhow!("public key {} is unusable: {e}", k.kid))?,
            );
            published.push(jwk);
        }
        let jwks_json = serde_json::to_string(&Jwks { keys: published })?;
        Ok(Self {
            signer,
            verifiers,
            jwks_json,
        })
    }

    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    /// The public keys of the stored signing keys whose sealed private key opens under `kek`
    /// and matches the stored public key. Anyone able to write the database can add a public
    /// key, but not one sealed under the KEK, so this is the set to trust when checking a
    /// signature found in the database (an audit checkpoint); others are left out.
    pub async fn sealed_verifiers(
        store: &dyn Store,
        kek: &Kek,
    ) -> anyhow::Result<Vec<VerifyingKey>> {
        let mut verifiers = Vec::new();
        for k in store.signing_keys().await? {
            let Ok(alg) = k.alg.parse::<Algorithm>() else {
                continue;
            };
            let Ok(der) = kek.open(&k.kid, &k.private_sealed) else {
                continue;
            };
            let Ok(key) = SigningKey::from_pkcs8(alg, k.kid.clone(), &der) else {
                continue;
            };
            if serde_json::to_value(key.public_jwk())? != k.public_jwk {
                continue;
            }
            if let Ok(v) = VerifyingKey::from_jwk(key.public_jwk()) {
                verifiers.push(v);
            }
        }
        Ok(verifiers)
    }

    pub fn verifiers(&self) -> &[VerifyingKey] {
        &self.verifiers
    }

    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::random::SeededEntropy;

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_kid() {
        let e = SeededEntropy::new(3);
        let kek = Kek::from_bytes(&[1; 32]).unwrap();
        let sealed = kek.seal("k1", b"private", &e).unwrap();
        assert_eq!(kek.open("k1", &sealed).unwrap(), b"private");
        assert!(kek.open("k2", &sealed).is_err(), "kid is authenticated");
        let other = Kek::from_bytes(&[2; 32]).unwrap();
        assert!(other.open("k1", &sealed).is_err());
        assert!(kek.open("k1", &sealed[..5]).is_err());
    }

    #[tokio::test]
    async fn only_keys_sealed_under_the_kek_are_trusted_for_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = mandate_store::connect(&url).await.unwrap();
        let e = SeededEntropy::new(5);
        let kek = Kek::from_bytes(&[7; 32]).unwrap();
        let ring = KeyRing::load_or_create(
            store.as_ref(),
            &kek,
            Algorithm::EdDSA,
            &e,
            Timestamp::from_unix(1),
        )
        .await
        .unwrap();
        // Someone with write access to the database adds a public key of their own.
        let (forger, der) = SigningKey::generate(Algorithm::EdDSA, "k_forged".into()).unwrap();
        let other_kek = Kek::from_bytes(&[8; 32]).unwrap();
        store
            .insert_signing_key(&StoredSigningKey {
                kid: "k_forged".into(),
                alg: "EdDSA".into(),
                private_sealed: other_kek.seal("k_forged", &der, &e).unwrap(),
                public_jwk: serde_json::to_value(forger.public_jwk()).unwrap(),
                created_at: Timestamp::from_unix(2),
                retired_at: None,
            })
            .await
            .unwrap();
        let trusted = KeyRing::sealed_verifiers(store.as_ref(), &kek)
            .await
            .unwrap();
        let kids: Vec<&str> = trusted.iter().map(VerifyingKey::kid).collect();
        assert_eq!(kids, vec![ring.signer().kid()]);
        let everything = mandate_store::audit::stored_public_keys(store.as_ref())
            .await
            .unwrap();
        assert_eq!(everything.len(), 2, "the database alone would trust both");
    }

    #[cfg(unix)]
    #[test]
    fn kek_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/kek");
        let e = SeededEntropy::new(9);
        let a = Kek::load_or_create(&path, &e).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Kek::load_or_create(&path, &e).unwrap();
        assert_eq!(a.csrf_key(), b.csrf_key());
        std::fs::write(&path, "bm90IDMyIGJ5dGVz").unwrap();
        assert!(Kek::load_or_create(&path, &e).is_err());
    }
}
