//! The keys bearer tokens are verified with: the one configured key, or the identity provider's
//! JSON Web Key Set fetched and cached. Each key carries the algorithms it was made for, so a
//! token cannot choose another (an HS256 token "signed" with an RSA public key finds no key).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::ExposeSecret;

use crate::config::{ConfigError, JwtKey};
use crate::domain::Timestamp;

/// A token naming a `kid` the cached set lacks fetches the set again at most this often.
const REFETCH_AFTER_SECS: i64 = 60;
/// While the provider fails, a fetch is tried again at most this often (requests in between get
/// 503 at once instead of each waiting on the provider).
const RETRY_FAILED_AFTER_SECS: i64 = 5;
/// A set older than this is fetched again on next use, so a key the provider withdrew stops
/// verifying; while that fetch fails the old set keeps serving (tried again once a minute).
const REFRESH_AFTER_SECS: i64 = 3600;
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// One public key (or the HS256 secret) and what it may verify.
pub(super) struct VerifyingKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// Why no key verifies a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyError {
    /// No key has the token's `kid`.
    UnknownKey,
    /// The key exists but was not made for the token's `alg`.
    Algorithm,
    /// The key set cannot be fetched.
    Unavailable,
}

pub(super) enum Keys {
    Static(Arc<VerifyingKey>),
    Jwks(Jwks),
}

impl Keys {
    pub fn new(config: &JwtKey) -> Result<Self, ConfigError> {
        match config {
            JwtKey::Hs256Secret(secret) => Ok(Self::Static(Arc::new(VerifyingKey {
                kid: None,
                key: DecodingKey::from_secret(secret.expose_secret()),
                algorithms: vec![Algorithm::HS256],
            }))),
            JwtKey::PublicKeyPem(pem) => pem_key(pem).map(|key| Self::Static(Arc::new(key))),
            JwtKey::JwksUrl(url) => Jwks::new(url).map(Self::Jwks),
        }
    }

    /// The key for a token's `kid` and `alg`.
    pub async fn resolve(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
        now: Timestamp,
    ) -> Result<Arc<VerifyingKey>, KeyError> {
        match self {
            Self::Static(key) if key.algorithms.contains(&algorithm) => Ok(Arc::clone(key)),
            Self::Static(_) => Err(KeyError::Algorithm),
            Self::Jwks(jwks) => jwks.resolve(kid, algorithm, now).await,
        }
    }

    /// Fetches a key set now (at start), so the first request does not wait on the provider.
    pub async fn prefetch(&self, now: Timestamp) {
        if let Self::Jwks(jwks) = self {
            let mut fetch = jwks.fetch.lock().await;
            jwks.refresh(&mut fetch, now).await;
        }
    }
}

/// A public key in PEM form: its type says which algorithms it verifies.
fn pem_key(pem: &str) -> Result<VerifyingKey, ConfigError> {
    let bytes = pem.as_bytes();
    let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        (key, RSA.to_vec())
    } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        (key, vec![Algorithm::ES256, Algorithm::ES384])
    } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        (key, vec![Algorithm::EdDSA])
    } else {
        return Err(ConfigError::Invalid {
            name: "JWT_PUBLIC_KEY",
            reason: "is not an RSA, EC or Ed25519 public key in PEM form",
        });
    };
    Ok(VerifyingKey { kid: None, key, algorithms })
}

/// A JWKS endpoint's keys, cached per instance. Fetches are single-flight: requests that find
/// their key never wait; those that miss queue behind one fetch.
pub(super) struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<Arc<VerifyingKey>>>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Timestamp>,
    fetched_at: Option<Timestamp>,
    failing: bool,
}

impl FetchState {
    fn due(&self, now: Timestamp, after_secs: i64) -> bool {
        let wait = if self.failing { RETRY_FAILED_AFTER_SECS } else { after_secs };
        self.last_attempt.is_none_or(|at| now.unix_seconds() - at.unix_seconds() >= wait)
    }

    /// Fetched over an hour ago, and not tried in the last minute.
    fn old(&self, now: Timestamp) -> bool {
        let since = |at: Option<Timestamp>| at.map_or(i64::MAX, |at| now.unix_seconds() - at.unix_seconds());
        self.fetched_at.is_some()
            && since(self.fetched_at) >= REFRESH_AFTER_SECS
            && since(self.last_attempt) >= REFETCH_AFTER_SECS
    }
}

impl Jwks {
    fn new(url: &str) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|_| ConfigError::Invalid { name: "JWT_JWKS_URL", reason: "cannot build an HTTP client for it" })?;
        Ok(Self { url: url.to_owned(), http, keys: RwLock::default(), fetch: tokio::sync::Mutex::default() })
    }

    async fn resolve(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
        now: Timestamp,
    ) -> Result<Arc<VerifyingKey>, KeyError> {
        if let Some(found) = self.find(kid, algorithm) {
            // Once the set is old, one request (whichever finds the fetch free) renews it.
            if let Ok(mut fetch) = self.fetch.try_lock()
                && fetch.old(now)
            {
                self.refresh(&mut fetch, now).await;
            }
            return found;
        }
        let mut fetch = self.fetch.lock().await;
        // Another request may have fetched the key while this one queued.
        if let Some(found) = self.find(kid, algorithm) {
            return found;
        }
        if fetch.due(now, REFETCH_AFTER_SECS) {
            self.refresh(&mut fetch, now).await;
            if let Some(found) = self.find(kid, algorithm) {
                return found;
            }
        }
        Err(if fetch.failing { KeyError::Unavailable } else { KeyError::UnknownKey })
    }

    async fn refresh(&self, fetch: &mut FetchState, now: Timestamp) {
        fetch.last_attempt = Some(now);
        match self.download().await {
            Ok(set) => {
                let keys: Vec<Arc<VerifyingKey>> = set.keys.iter().filter_map(jwk_key).map(Arc::new).collect();
                tracing::info!(keys = keys.len(), "fetched the JWKS");
                if let Ok(mut cached) = self.keys.write() {
                    *cached = Arc::new(keys);
                }
                fetch.fetched_at = Some(now);
                fetch.failing = false;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot fetch the JWKS");
                fetch.failing = true;
            }
        }
    }

    async fn download(&self) -> Result<JwkSet, reqwest::Error> {
        self.http.get(&self.url).send().await?.error_for_status()?.json().await
    }

    /// `None`: no key with the token's `kid` (any key when the token names none).
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<Result<Arc<VerifyingKey>, KeyError>> {
        let keys = self.keys.read().map(|keys| Arc::clone(&keys)).ok()?;
        let mut named = keys.iter().filter(|key| kid.is_none() || key.kid.as_deref() == kid).peekable();
        named.peek()?;
        Some(named.find(|key| key.algorithms.contains(&algorithm)).cloned().ok_or(KeyError::Algorithm))
    }
}

/// A JWK as a verifying key: the algorithm its `alg` names, or those its type allows. Encryption
/// keys, symmetric keys and unknown types are skipped (a JWKS publishes public signing keys).
fn jwk_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let named = Algorithm::try_from(named).ok()?;
            by_type.contains(&named).then(|| vec![named])?
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { kid: jwk.common.key_id.clone(), key, algorithms })
}
