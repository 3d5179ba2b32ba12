//! Access tokens: HS256 JWTs carrying `sub` (user), `ent` (enterprise), `role`, `exp`, `iat`, `jti`.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
    }
    crate::crypto::persistent_secret(configured, data_dir, "jwt-secret", 48)
}
