//! Who is calling: the credentials of the `Authorization` header (JWT or Telegram init data)
//! verified into a `Caller`. The HTTP extractors that hand the header over live in `http`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{AuthConfig, ConfigError, JwtKey, TelegramConfig};
use crate::domain::{Timestamp, UserId};
use crate::error::ApiError;
use crate::telegram;

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub is_admin: bool,
}

/// A caller with the admin role. Admin routes take it before their path and body, so everyone else
/// gets 403 whatever they sent (authorization before validation).
#[derive(Clone, Debug)]
pub struct Admin(pub Caller);

/// Verifies bearer JWTs with the one algorithm and key the deployment configured.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    telegram: Option<TelegramConfig>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let (key, algorithm) = match &config.key {
            JwtKey::Hs256Secret(secret) => (DecodingKey::from_secret(secret.expose_secret()), Algorithm::HS256),
            JwtKey::Rs256PublicKeyPem(pem) => (
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| ConfigError::Invalid {
                    name: "JWT_PUBLIC_KEY",
                    reason: "is not an RSA public key in PEM form",
                })?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        let mut required = vec!["exp", "sub"];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match &config.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        // A configured check is only a check when a token without the claim fails it.
        validation.set_required_spec_claims(&required);
        Ok(Self { key, validation, telegram: config.telegram.clone() })
    }

    /// The caller named by an `Authorization` header value: `Bearer <JWT>`, or `tma <initData>`
    /// from a Telegram Mini App when a bot token is configured.
    pub fn authenticate(&self, authorization: Option<&str>, now: Timestamp) -> Result<Caller, ApiError> {
        if let Some(init_data) = authorization.and_then(|value| value.strip_prefix("tma ")) {
            let telegram = self.telegram.as_ref().ok_or(ApiError::Unauthorized)?;
            let user_id = telegram::verify(init_data.trim(), telegram, now).ok_or_else(|| {
                tracing::debug!("telegram init data rejected");
                ApiError::Unauthorized
            })?;
            return Ok(Caller { user_id, is_admin: false });
        }
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let claims = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| {
                tracing::debug!(reason = ?error.kind(), "bearer token rejected");
                ApiError::Unauthorized
            })?
            .claims;
        // `tg:` ids belong to Telegram sign-in; no token may claim one.
        if claims.sub.starts_with(telegram::NAMESPACE) {
            return Err(ApiError::Unauthorized);
        }
        let user_id = UserId::parse(&claims.sub).ok_or(ApiError::Unauthorized)?;
        let is_admin = claims.role.as_deref() == Some("admin")
            || claims.scope.as_deref().is_some_and(|scope| scope.split(' ').any(|s| s == "admin"));
        Ok(Caller { user_id, is_admin })
    }
}
