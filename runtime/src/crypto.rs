//! Secrets at rest: generated keys kept in the data directory, and sealing of connection
//! credentials with XChaCha20-Poly1305.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// The configured secret, or the one kept in `<data_dir>/<file>` (created with `bytes` random
/// bytes, base64url, mode 0600, on first use).
pub fn persistent_secret(
    configured: Option<&SecretString>,
    data_dir: &Path,
    file: &str,
    bytes: usize,
) -> anyhow::Result<SecretString> {
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    let path = data_dir.join(file);
    let mut random = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let fresh = URL_SAFE_NO_PAD.encode(&random);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut handle) => {
            handle.write_all(fresh.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            Ok(SecretString::from(fresh))
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(SecretString::from(text.trim().to_owned()))
        }
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}

pub use dibop_core::sha256_hex;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh secret: `prefix` followed by `len` random bytes in hex.
pub fn random_secret(prefix: &str, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex(&bytes))
}

/// Prefix of values sealed with associated data.
const BOUND: &str = "v2.";

/// Seals and opens small secrets (connection credentials).
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// A sealer keyed by `DIBOP_SECRET_KEY` (32 bytes, base64 or base64url) or by the key kept in
    /// `<data_dir>/secret-key`. Nodes sharing a database must share the key.
    pub fn new(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<Self> {
        let key = persistent_secret(configured, data_dir, "secret-key", 32)?;
        let text = key.expose_secret().trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(text))
            .context("the secret key is not base64")?;
        anyhow::ensure!(bytes.len() == 32, "the secret key must be 32 bytes, got {}", bytes.len());
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| anyhow::anyhow!("bad key length"))?;
        Ok(Self { cipher })
    }

    /// base64(nonce || ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self.cipher.encrypt(&nonce, plaintext).map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(STANDARD.encode(out))
    }

    /// Seals `plaintext` bound to `context` (AEAD associated data, e.g. the connection it
    /// belongs to): it opens only with the same context, so a sealed value copied to another
    /// row is useless there. `v2.` + base64(nonce || ciphertext).
    pub fn seal_bound(&self, plaintext: &[u8], context: &str) -> anyhow::Result<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = chacha20poly1305::aead::Payload { msg: plaintext, aad: context.as_bytes() };
        let ciphertext = self.cipher.encrypt(&nonce, payload).map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{BOUND}{}", STANDARD.encode(out)))
    }

    /// Opens a value of [`Sealer::seal_bound`] with its context (or an older unbound value).
    pub fn open_bound(&self, sealed: &str, context: &str) -> anyhow::Result<Vec<u8>> {
        let Some(encoded) = sealed.strip_prefix(BOUND) else { return self.open(sealed) };
        let bytes = STANDARD.decode(encoded).context("sealed value is not base64")?;
        anyhow::ensure!(bytes.len() > 24, "sealed value too short");
        let (nonce, ciphertext) = bytes.split_at(24);
        let payload = chacha20poly1305::aead::Payload { msg: ciphertext, aad: context.as_bytes() };
        self.cipher.decrypt(XNonce::from_slice(nonce), payload).map_err(|_| {
            anyhow::anyhow!("credentials cannot be decrypted: another secret key, or sealed for another connection")
        })
    }

    pub fn open(&self, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = STANDARD.decode(sealed).context("sealed value is not base64")?;
        anyhow::ensure!(bytes.len() > 24, "sealed value too short");
        let (nonce, ciphertext) = bytes.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| anyhow::anyhow!("credentials cannot be decrypted with this secret key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let dir = std::env::temp_dir().join(format!("dibop-crypto-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let sealer = Sealer::new(None, &dir).expect("sealer");
        let sealed = sealer.seal(b"{\"api_key\":\"s3cret\"}").expect("seal");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(sealer.open(&sealed).expect("open"), b"{\"api_key\":\"s3cret\"}");
        let again = Sealer::new(None, &dir).expect("same key from the file");
        assert!(again.open(&sealed).is_ok());
        let other = Sealer::new(Some(&SecretString::from(URL_SAFE_NO_PAD.encode([7u8; 32]))), &dir).expect("other");
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn bound_values_open_only_in_their_context() {
        let dir = std::env::temp_dir().join(format!("dibop-crypto-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let sealer = Sealer::new(None, &dir).expect("sealer");
        let sealed = sealer.seal_bound(b"s3cret", "connection:e1:c1").expect("seal");
        assert_eq!(sealer.open_bound(&sealed, "connection:e1:c1").expect("open"), b"s3cret");
        assert!(sealer.open_bound(&sealed, "connection:e1:c2").is_err());
        // Values sealed before binding existed still open.
        let legacy = sealer.seal(b"old").expect("seal");
        assert_eq!(sealer.open_bound(&legacy, "connection:e1:c1").expect("open"), b"old");
    }
}
