//! Signed plugins: an Ed25519 signature over a component's sha256, detached. What is signed is
//! the ASCII text `dibop-plugin-sha256:` followed by the lowercase hex sha256 of the component's
//! bytes (the prefix keeps these signatures from meaning anything else). An upload carries the
//! signature, base64, in the `X-Dibop-Signature` header; it verifies when the key of one of the
//! trusted signers (`/plugin-signers`) accepts it. `dibop plugin keygen` and `dibop plugin sign`
//! make keys and signatures; a private key file holds the PKCS#8 document, base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The header of an upload's signature.
pub const HEADER: &str = "x-dibop-signature";
/// Longest header or key text read (a signature is 88 characters of base64).
const MAX_TEXT: usize = 512;

/// What is signed for the component whose sha256 is `sha256_hex`.
pub fn message(sha256_hex: &str) -> Vec<u8> {
    format!("dibop-plugin-sha256:{sha256_hex}").into_bytes()
}

fn decode(text: &str, what: &str, len: Option<usize>) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() > MAX_TEXT {
        return Err(format!("{what}: at most {MAX_TEXT} characters"));
    }
    let bytes = STANDARD.decode(text).map_err(|e| format!("{what}: not base64 ({e})"))?;
    match len {
        Some(len) if bytes.len() != len => Err(format!("{what}: expected {len} bytes, got {}", bytes.len())),
        _ => Ok(bytes),
    }
}

/// A public key as given (base64 of its 32 bytes), checked.
pub fn parse_public_key(text: &str) -> Result<Vec<u8>, String> {
    decode(text, "public_key", Some(32))
}

/// A signature as given (base64 of its 64 bytes), checked.
pub fn parse_signature(text: &str) -> Result<Vec<u8>, String> {
    decode(text, "signature", Some(64))
}

/// Whether `signature` over the component `sha256_hex` verifies with `public_key`.
pub fn verifies(public_key: &[u8], sha256_hex: &str, signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key).verify(&message(sha256_hex), signature).is_ok()
}

/// A new key pair: the private key file's text (PKCS#8, base64) and the public key (base64).
pub fn generate() -> anyhow::Result<(String, String)> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("generating a key failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("the new key does not read"))?;
    Ok((STANDARD.encode(pkcs8.as_ref()), STANDARD.encode(pair.public_key().as_ref())))
}

/// The signature (base64) of the component `sha256_hex` with the private key file's text, and
/// the key's public half (base64).
pub fn sign(private_key: &str, sha256_hex: &str) -> anyhow::Result<(String, String)> {
    let pkcs8 = STANDARD.decode(private_key.trim()).map_err(|e| anyhow::anyhow!("the key file is not base64: {e}"))?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
        anyhow::anyhow!("the key file is not an Ed25519 private key (PKCS#8) made by dibop plugin keygen")
    })?;
    let signature = pair.sign(&message(sha256_hex));
    Ok((STANDARD.encode(signature.as_ref()), STANDARD.encode(pair.public_key().as_ref())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_signature_verifies_only_for_its_key_and_component() {
        let (private, public) = super::generate().expect("key");
        let sha = dibop_core::sha256_hex(b"component");
        let (signature, same_public) = super::sign(&private, &sha).expect("signed");
        assert_eq!(public, same_public);
        let key = super::parse_public_key(&public).expect("key");
        let signature = super::parse_signature(&signature).expect("signature");
        assert!(super::verifies(&key, &sha, &signature));
        assert!(!super::verifies(&key, &dibop_core::sha256_hex(b"other"), &signature), "another component");
        let (_, other) = super::generate().expect("key");
        assert!(!super::verifies(&super::parse_public_key(&other).expect("key"), &sha, &signature), "another key");
        assert!(super::parse_public_key("AAAA").is_err() && super::parse_signature("not base64!").is_err());
    }
}
