//! Access tokens: HS256 JWTs carrying `sub` (user), `ent` (enterprise), `role`, `exp`, `iat`, `jti`,
//! `iss` and `aud` (checked on every request, so a token minted for another system that happens
//! to share the secret is refused) and `gen`, the user's token generation when it was issued: a
//! password change or a deactivation moves the generation on, which ends every earlier token.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::store::User;

/// `iss` of every token this server issues and accepts.
pub const ISSUER: &str = "dibop";
/// `aud` of every token this server issues and accepts.
pub const AUDIENCE: &str = "dibop-api";
/// Shortest accepted secret: HS256 wants at least as many key bytes as its output.
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub ent: String,
    pub role: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// The user's token generation at issue; tokens from before this claim existed count as 0.
    #[serde(default)]
    pub r#gen: i64,
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
        validation.set_required_spec_claims(&["exp", "sub", "iat", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
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
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            r#gen: user.token_generation,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires_in))
    }

    /// Checks signature, algorithm, expiry, issuer and audience.
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

/// Refuses a configured secret shorter than [`MIN_SECRET_BYTES`], before anything else starts.
pub fn check_configured_secret(configured: Option<&SecretString>) -> anyhow::Result<()> {
    if let Some(secret) = configured {
        let len = secret.expose_secret().len();
        anyhow::ensure!(
            len >= MIN_SECRET_BYTES,
            "DIBOP_JWT_SECRET is {len} bytes; it must be at least {MIN_SECRET_BYTES} \
             (generate one with `openssl rand -base64 48`)"
        );
    }
    Ok(())
}

/// The configured secret, or the one kept in `<data_dir>/jwt-secret` (created on first start,
/// 48 random bytes); either must be at least [`MIN_SECRET_BYTES`] long.
pub fn load_or_create_secret(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<SecretString> {
    check_configured_secret(configured)?;
    let secret = crate::crypto::persistent_secret(configured, data_dir, "jwt-secret", 48)?;
    let len = secret.expose_secret().len();
    anyhow::ensure!(
        len >= MIN_SECRET_BYTES,
        "{} holds a JWT secret of {len} bytes; it must be at least {MIN_SECRET_BYTES} \
         (delete the file to generate a new one, or set DIBOP_JWT_SECRET)",
        data_dir.join("jwt-secret").display()
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_with_a_clear_message() {
        let short = SecretString::from("x".repeat(31));
        let err = check_configured_secret(Some(&short)).expect_err("31 bytes");
        assert!(err.to_string().contains("at least 32"), "{err}");
        assert!(!err.to_string().contains(&"x".repeat(31)), "the secret itself is not printed");
        assert!(check_configured_secret(Some(&SecretString::from("x".repeat(32)))).is_ok());
        assert!(check_configured_secret(None).is_ok());
    }

    #[test]
    fn tokens_for_another_audience_or_issuer_are_refused() {
        let secret = SecretString::from("s".repeat(40));
        let tokens = Tokens::new(&secret);
        let now = chrono::Utc::now().timestamp();
        let sign = |aud: &str, iss: &str| {
            let claims = serde_json::json!({"sub": "u", "ent": "e", "role": "viewer", "iat": now, "exp": now + 60,
                                            "jti": "j", "iss": iss, "aud": aud});
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(&[b's'; 40])).expect("sign")
        };
        assert!(tokens.verify(&sign(AUDIENCE, ISSUER)).is_ok());
        assert!(tokens.verify(&sign("other-api", ISSUER)).is_err());
        assert!(tokens.verify(&sign(AUDIENCE, "someone-else")).is_err());
    }
}
