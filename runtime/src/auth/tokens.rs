//! Access tokens: HS256 JWTs carrying `sub` (user), `ent` (enterprise), `role`, `exp`, `iat`, `jti`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::store::User;

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub ent: String,
    pub role: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

/// Signs and checks access tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self { encoding: EncodingKey::from_secret(bytes), decoding: DecodingKey::from_secret(bytes), validation }
    }

    /// Issues a token for `user` valid for `minutes`; returns it with its lifetime in seconds.
    pub fn issue(&self, user: &User, minutes: i64) -> anyhow::Result<(String, i64)> {
        let now = chrono::Utc::now().timestamp();
        let expires_in = minutes * 60;
        let claims = Claims {
            sub: user.id.clone(),
            ent: user.enterprise_id.clone(),
            role: user.role.as_str().to_owned(),
            exp: now + expires_in,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires_in))
    }

    /// Checks signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|err| {
            match err.kind() {
                ErrorKind::ExpiredSignature => AppError::Unauthorized("token expired".into()),
                _ => AppError::Unauthorized("invalid token".into()),
            }
        })
    }
}

/// The configured secret, or the one kept in `<data_dir>/jwt-secret` (created on first start).
pub fn load_or_create_secret(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<SecretString> {
    if let Some(secret) = configured {
        anyhow::ensure!(secret.expose_secret().len() >= 16, "DIBOP_JWT_SECRET must be at least 16 characters");
        return Ok(secret.clone());
    }
    let path = data_dir.join("jwt-secret");
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let fresh = URL_SAFE_NO_PAD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(fresh.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            Ok(SecretString::from(fresh))
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(SecretString::from(text.trim().to_owned()))
        }
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}
