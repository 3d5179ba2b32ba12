//! Sealing of small secrets at rest (connection credentials) with XChaCha20-Poly1305, and
//! random secrets for the values the API hands out once (webhook and alert-channel secrets).
//!
//! The key comes from the caller: keeping it in the data directory is the server's job, so
//! this module does no file I/O.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// Prefix of values sealed with associated data.
const BOUND: &str = "v2.";

/// Why a key was refused or a sealed value did not open.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(String);

impl SealError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Seals and opens small secrets (connection credentials).
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// A sealer keyed by `key`: 32 bytes in base64 or base64url (padded or not). Nodes sharing
    /// a database must share the key.
    pub fn from_key(key: &SecretString) -> Result<Self, SealError> {
        let text = key.expose_secret().trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(text))
            .map_err(|_| SealError::new("the secret key is not base64"))?;
        if bytes.len() != 32 {
            return Err(SealError::new(format!("the secret key must be 32 bytes, got {}", bytes.len())));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::new("bad key length"))?;
        Ok(Self { cipher })
    }

    /// base64(nonce || ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self.cipher.encrypt(&nonce, plaintext).map_err(|_| SealError::new("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(STANDARD.encode(out))
    }

    /// Seals `plaintext` bound to `context` (AEAD associated data, e.g. the connection it
    /// belongs to): it opens only with the same context, so a sealed value copied to another
    /// row is useless there. `v2.` + base64(nonce || ciphertext).
    pub fn seal_bound(&self, plaintext: &[u8], context: &str) -> Result<String, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = chacha20poly1305::aead::Payload { msg: plaintext, aad: context.as_bytes() };
        let ciphertext = self.cipher.encrypt(&nonce, payload).map_err(|_| SealError::new("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{BOUND}{}", STANDARD.encode(out)))
    }

    /// Opens a value of [`Sealer::seal_bound`] with its context (or an older unbound value).
    pub fn open_bound(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SealError> {
        let Some(encoded) = sealed.strip_prefix(BOUND) else { return self.open(sealed) };
        let (nonce, ciphertext) = split(encoded)?;
        let payload = chacha20poly1305::aead::Payload { msg: &ciphertext, aad: context.as_bytes() };
        self.cipher.decrypt(XNonce::from_slice(&nonce), payload).map_err(|_| {
            SealError::new("credentials cannot be decrypted: another secret key, or sealed for another connection")
        })
    }

    /// Opens a value of [`Sealer::seal`].
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let (nonce, ciphertext) = split(sealed)?;
        self.cipher
            .decrypt(XNonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| SealError::new("credentials cannot be decrypted with this secret key"))
    }
}

/// The nonce and the ciphertext of a base64 sealed value.
fn split(encoded: &str) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let mut bytes = STANDARD.decode(encoded).map_err(|_| SealError::new("sealed value is not base64"))?;
    if bytes.len() <= 24 {
        return Err(SealError::new("sealed value too short"));
    }
    let ciphertext = bytes.split_off(24);
    Ok((bytes, ciphertext))
}

/// `bytes` fresh random bytes in base64url without padding (a generated key).
pub fn random_key(bytes: usize) -> SecretString {
    let mut random = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut random);
    SecretString::from(URL_SAFE_NO_PAD.encode(&random))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let key = random_key(32);
        let sealer = Sealer::from_key(&key).expect("sealer");
        let sealed = sealer.seal(b"{\"api_key\":\"s3cret\"}").expect("seal");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(sealer.open(&sealed).expect("open"), b"{\"api_key\":\"s3cret\"}");
        let again = Sealer::from_key(&key).expect("same key");
        assert!(again.open(&sealed).is_ok());
        let other = Sealer::from_key(&SecretString::from(URL_SAFE_NO_PAD.encode([7u8; 32]))).expect("other");
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn bound_values_open_only_in_their_context() {
        let sealer = Sealer::from_key(&random_key(32)).expect("sealer");
        let sealed = sealer.seal_bound(b"s3cret", "connection:e1:c1").expect("seal");
        assert_eq!(sealer.open_bound(&sealed, "connection:e1:c1").expect("open"), b"s3cret");
        assert!(sealer.open_bound(&sealed, "connection:e1:c2").is_err());
        // Values sealed before binding existed still open.
        let legacy = sealer.seal(b"old").expect("seal");
        assert_eq!(sealer.open_bound(&legacy, "connection:e1:c1").expect("open"), b"old");
    }

    #[test]
    fn keys_of_the_wrong_size_or_encoding_are_refused() {
        assert!(Sealer::from_key(&SecretString::from("not base64!".to_owned())).is_err());
        assert!(Sealer::from_key(&random_key(16)).is_err());
        let padded = SecretString::from(STANDARD.encode([9u8; 32]));
        assert!(Sealer::from_key(&padded).is_ok());
    }
}
