//! Who is calling: the credentials of the `Authorization` header (JWT or Telegram init data)
//! verified into a `Caller`. The HTTP extractors that hand the header over live in `http`.
//!
//! Schemes are case-insensitive (RFC 9110 §11.1): `Bearer <JWT>`, `tma <initData>`. A bearer
//! token is verified with the key its header names (`kid`) and only with an algorithm that key
//! was made for. Claims other than `sub`, `exp`, `nbf`, `iss` and `aud` are ignored whatever
//! their shape, except the admin claims: `role` or `roles` equal to or containing `"admin"`, or
//! `scope` or `scp` holding `admin` (a space-separated string or an array of strings).

mod keys;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{AuthConfig, ConfigError, TelegramConfig};
use crate::domain::{TelegramAccount, Timestamp, UserId};
use crate::telegram;
use keys::{KeyError, Keys};

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub is_admin: bool,
    /// The Telegram account, when signed in with Telegram init data.
    pub telegram: Option<TelegramAccount>,
}

/// A caller with the admin role. Admin routes take it before their path and body, so everyone else
/// gets 403 whatever they sent (authorization before validation).
#[derive(Clone, Debug)]
pub struct Admin(pub Caller);

/// Why credentials were refused: said in the 401's message and its `WWW-Authenticate` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credentials: send Authorization: Bearer <token> (or tma <initData>)")]
    Missing,
    #[error(
        "no credentials: a socket offers the subprotocol bearer.<token> (or tma.<initData, base64url>) beside chat.v1, \
         or connects with ?token=… (or ?initData=…)"
    )]
    MissingOnSocket,
    #[error("unsupported authorization scheme: use Bearer or tma")]
    Scheme,
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token's key (kid) is not one of the issuer's keys")]
    UnknownKey,
    #[error("the token's algorithm is not accepted for its key")]
    Algorithm,
    #[error("the token's issuer or audience is not accepted")]
    IssuerOrAudience,
    #[error("the token lacks a required claim (sub, exp, and iss/aud when configured)")]
    MissingClaim,
    #[error("the token's subject is not a valid user id")]
    Subject,
    #[error("Telegram sign-in is not enabled")]
    TelegramOff,
    #[error("the Telegram init data does not verify or has expired")]
    Telegram,
}

/// Why a request could not be authenticated: its credentials were refused, or the identity
/// provider's keys (JWKS) cannot be fetched, so no token can be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Refused(#[from] AuthFailure),
    #[error("the identity provider's keys cannot be fetched")]
    Unavailable,
}

impl AuthFailure {
    /// The `WWW-Authenticate` challenge (RFC 6750 §3): which scheme, and why the credentials failed.
    pub fn challenge(self) -> String {
        let scheme = if matches!(self, Self::Telegram | Self::TelegramOff) { "tma" } else { "Bearer" };
        match self {
            Self::Missing | Self::MissingOnSocket => format!("{scheme} realm=\"chat-api\""),
            _ => format!("{scheme} realm=\"chat-api\", error=\"invalid_token\", error_description=\"{self}\""),
        }
    }
}

/// Verifies bearer JWTs with the configured key (or key set) and Telegram init data with the
/// configured bot.
pub struct Authenticator {
    keys: Keys,
    /// `exp`, `nbf`, `iss`, `aud` as configured; the algorithm is set per token from its key.
    validation: Validation,
    telegram: Option<TelegramConfig>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<Value>,
    #[serde(default)]
    roles: Option<Value>,
    #[serde(default)]
    scope: Option<Value>,
    #[serde(default)]
    scp: Option<Value>,
}

impl Claims {
    fn is_admin(&self) -> bool {
        let names = |claim: &Option<Value>, split: bool| -> bool {
            let has = |text: &str| if split { text.split(' ').any(|name| name == "admin") } else { text == "admin" };
            match claim {
                Some(Value::String(text)) => has(text),
                Some(Value::Array(items)) => items.iter().any(|item| item.as_str().is_some_and(has)),
                _ => false,
            }
        };
        names(&self.role, false) || names(&self.roles, false) || names(&self.scope, true) || names(&self.scp, true)
    }
}

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

enum Scheme {
    Bearer,
    Tma,
}

/// The scheme and credentials of an `Authorization` value.
fn credentials(authorization: Option<&str>) -> Result<(Scheme, &str), AuthFailure> {
    let value = authorization.map(str::trim).filter(|value| !value.is_empty()).ok_or(AuthFailure::Missing)?;
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    let rest = rest.trim();
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("tma") {
        Scheme::Tma
    } else {
        return Err(AuthFailure::Scheme);
    };
    if rest.is_empty() {
        return Err(AuthFailure::Missing);
    }
    Ok((scheme, rest))
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let keys = Keys::new(&config.key)?;
        let mut validation = Validation::default();
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
        Ok(Self { keys, validation, telegram: config.telegram.clone() })
    }

    /// Fetches the key set at start when there is one (a failure is logged; requests retry it).
    pub async fn prefetch(&self, now: Timestamp) {
        self.keys.prefetch(now).await;
    }

    /// The caller named by an `Authorization` header value: `Bearer <JWT>`, or `tma <initData>`
    /// from a Telegram Mini App when a bot token is configured.
    pub async fn authenticate(&self, authorization: Option<&str>, now: Timestamp) -> Result<Caller, AuthError> {
        let (scheme, credentials) = credentials(authorization)?;
        match scheme {
            Scheme::Tma => {
                let telegram = self.telegram.as_ref().ok_or(AuthFailure::TelegramOff)?;
                let (user_id, account) = telegram::verify(credentials, telegram, now).ok_or(AuthFailure::Telegram)?;
                Ok(Caller { user_id, is_admin: false, telegram: Some(account) })
            }
            Scheme::Bearer => self.bearer(credentials, now).await,
        }
    }

    async fn bearer(&self, token: &str, now: Timestamp) -> Result<Caller, AuthError> {
        let header = decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        let key = self.keys.resolve(header.kid.as_deref(), header.alg, now).await.map_err(|error| match error {
            KeyError::UnknownKey => AuthError::Refused(AuthFailure::UnknownKey),
            KeyError::Algorithm => AuthError::Refused(AuthFailure::Algorithm),
            KeyError::Unavailable => AuthError::Unavailable,
        })?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| {
                tracing::debug!(reason = ?error.kind(), "bearer token rejected");
                match error.kind() {
                    ErrorKind::ExpiredSignature => AuthFailure::Expired,
                    ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => AuthFailure::IssuerOrAudience,
                    ErrorKind::MissingRequiredClaim(_) => AuthFailure::MissingClaim,
                    ErrorKind::InvalidSignature => AuthFailure::Signature,
                    ErrorKind::Json(_) => AuthFailure::Subject,
                    _ => AuthFailure::Malformed,
                }
            })?
            .claims;
        // `tg:` ids belong to Telegram sign-in; no token may claim one.
        if claims.sub.starts_with(telegram::NAMESPACE) {
            return Err(AuthFailure::Subject.into());
        }
        let user_id = UserId::parse(&claims.sub).ok_or(AuthFailure::Subject)?;
        Ok(Caller { is_admin: claims.is_admin(), user_id, telegram: None })
    }
}
