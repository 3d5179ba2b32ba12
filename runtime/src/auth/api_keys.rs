//! API keys: `dbp_` followed by 32 random bytes in base64url. Only a SHA-256 of the key is
//! stored; a key has 256 bits of entropy, so a fast hash is enough and lookups stay one index
//! probe.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// Every key starts with this, which is how the middleware tells keys from JWTs.
pub const PREFIX: &str = "dbp_";

/// A freshly generated key.
pub struct GeneratedKey {
    /// The plaintext, shown to the creator once.
    pub key: String,
    /// The first characters, kept to recognise the key in lists.
    pub prefix: String,
    /// What is stored.
    pub hash: String,
}

pub fn generate() -> GeneratedKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix = key[..PREFIX.len() + 8].to_owned();
    let hash = hash(&key);
    GeneratedKey { key, prefix, hash }
}

pub fn hash(key: &str) -> String {
    crate::crypto::sha256_hex(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_long_and_hash_to_what_is_stored() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(PREFIX) && a.key.len() >= PREFIX.len() + 43);
        assert!(a.key.starts_with(&a.prefix));
        assert_eq!(hash(&a.key), a.hash);
        assert_ne!(a.hash, b.hash);
    }
}
