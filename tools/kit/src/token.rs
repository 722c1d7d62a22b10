//! Dev tokens: HS256 JWTs signed with the local secret.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;
use shared::config::{AuthConfig, JwtKey};

/// The secret `scripts/dev.sh` uses when `JWT_SECRET` is not set. Never deploy it.
pub const DEV_JWT_SECRET: &str = "local-dev-secret-not-for-production-0123456789";

/// Verification of dev tokens: HS256 with [`DEV_JWT_SECRET`], no issuer, audience or Telegram.
pub fn dev_auth() -> AuthConfig {
    AuthConfig { key: JwtKey::hs256(DEV_JWT_SECRET.as_bytes()), issuer: None, audience: None, telegram: None }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// What to put in a dev token.
pub struct TokenRequest<'a> {
    pub sub: &'a str,
    pub ttl_secs: i64,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub admin: bool,
}

/// Signs an HS256 token for `request.sub`, valid from now for `ttl_secs`.
pub fn mint(secret: &[u8], request: &TokenRequest<'_>) -> Result<String, jsonwebtoken::errors::Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        sub: request.sub,
        iat: now,
        exp: now + request.ttl_secs,
        iss: request.issuer,
        aud: request.audience,
        role: request.admin.then_some("admin"),
    };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret))
}
