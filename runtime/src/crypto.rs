//! Secrets at rest: generated keys kept in the data directory. Sealing itself (and the other
//! crypto helpers) is `dibop_core::crypto`'s.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

pub use dibop_core::crypto::{Sealer, hex, random_secret};
pub use dibop_core::sha256_hex;

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
    let fresh = dibop_core::crypto::random_key(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut handle) => {
            handle
                .write_all(fresh.expose_secret().as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(fresh)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(SecretString::from(text.trim().to_owned()))
        }
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}

/// The sealer keyed by `DIBOP_SECRET_KEY` or by the key kept in `<data_dir>/secret-key`.
pub fn sealer(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<Sealer> {
    let key = persistent_secret(configured, data_dir, "secret-key", 32)?;
    Ok(Sealer::from_key(&key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_key_is_kept_and_opens_what_it_sealed() {
        let dir = std::env::temp_dir().join(format!("dibop-crypto-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let sealed = sealer(None, &dir).expect("sealer").seal(b"s3cret").expect("seal");
        assert!(sealer(None, &dir).expect("same key from the file").open(&sealed).is_ok());
        let other = SecretString::from("A".repeat(43));
        assert!(sealer(Some(&other), &dir).expect("configured key").open(&sealed).is_err());
    }
}
