//! Signing keys and the key-encryption key (KEK) that protects them at rest.
//!
//! Private signing keys are stored in the database sealed with AES-256-GCM under the KEK, which
//! lives outside the database (a 0600 file, generated on first start). A stolen database alone
//! therefore yields no signing key. Nodes that share a database must share the KEK file.
//!
//! [`KeyRing`] (in [`ring`]) holds the parsed signing keys, the public keys to verify with and
//! the JWKS document, re-read from the database so that every node follows a rotation made on
//! any of them; [`verified`] remembers which tokens it already verified. Purpose-bound secrets for CSRF tokens and refresh successors are derived from
//! the KEK, so they too are shared by every node.

pub mod ring;
pub mod rotation;
pub mod verified;

pub use ring::{KeyPolicy, KeyRing, KeySet, KeyState};

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate_core::random::Entropy;
use mandate_core::secret;
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

    /// Reads the KEK file, or creates it (mode 0600) with fresh random bytes. Nodes sharing
    /// the file that start at the same moment agree: the file appears atomically and only
    /// once, and a node that loses the race reads the winner's key.
    pub fn load_or_create(path: &Path, entropy: &dyn Entropy) -> anyhow::Result<Self> {
        if path.exists() {
            return Self::read(path);
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut bytes = [0u8; 32];
        entropy.fill(&mut bytes);
        match write_private_file(path, STANDARD.encode(bytes).as_bytes()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated a new key-encryption key");
                Self::from_bytes(&bytes)
            }
            // Another process created it a moment ago, completely (see `write_private_file`).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("creating key-encryption key {}", path.display()))),
        }
    }

    fn read(path: &Path) -> anyhow::Result<Self> {
        warn_if_readable_by_others(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading key-encryption key {}", path.display()))?;
        let raw = STANDARD
            .decode(text.trim())
            .context("the key-encryption key file is not base64")?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| anyhow::anyhow!("the key-encryption key must be 32 bytes"))?;
        Self::from_bytes(&bytes)
    }

    pub fn csrf_key(&self) -> &[u8] {
        &self.csrf_key
    }

    pub fn refresh_key(&self) -> &[u8] {
        &self.refresh_key
    }

    /// `nonce || ciphertext || tag`, authenticated together with `kid`.
    pub(crate) fn seal(
        &self,
        kid: &str,
        plaintext: &[u8],
        entropy: &dyn Entropy,
    ) -> anyhow::Result<Vec<u8>> {
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

    pub(crate) fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
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

/// Writes `contents` to `path` (mode 0600) only if `path` does not exist, atomically: the file
/// is written and synced under a temporary name, then hard-linked into place, so nobody ever
/// reads it half-written; `AlreadyExists` if another process got there first.
#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    written
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
