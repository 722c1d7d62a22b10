//! Typed configuration, read once at start. A missing or malformed variable is an init error.

use std::env;

use secrecy::{ExposeSecret, SecretSlice, SecretString};

pub use crate::domain::LimitsConfig;
use crate::domain::RateLimits;
pub use crate::store::TableNames;
pub use service::Runtime;

/// How bearer tokens are verified. Exactly one key source is configured, and each key verifies
/// only the algorithms made for it, so no token can pick its own.
/// Secrets are `secrecy` types: redacted in `Debug`, zeroed when dropped, read only through
/// `expose_secret()` where a key is built.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 with a shared secret (`JWT_SECRET`).
    Hs256Secret(SecretSlice<u8>),
    /// A PEM-encoded public key (`JWT_PUBLIC_KEY`): RSA (RS256/384/512, PS256/384/512),
    /// EC (ES256, ES384) or Ed25519 (EdDSA).
    PublicKeyPem(String),
    /// The identity provider's JSON Web Key Set (`JWT_JWKS_URL`): fetched at start, cached, and
    /// fetched again for a token whose `kid` it does not know (at most once a minute).
    JwksUrl(String),
}

impl JwtKey {
    /// An HS256 key from the secret's bytes.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        Self::Hs256Secret(SecretSlice::from(secret.into()))
    }
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Telegram Mini App sign-in (`Authorization: tma <initData>`); off when `None`.
    pub telegram: Option<TelegramConfig>,
}

/// The bot whose Mini App may sign users in, and how old its init data may be.
#[derive(Clone, Debug)]
pub struct TelegramConfig {
    pub bot_token: SecretString,
    pub max_age_secs: u64,
}

/// The limits from `DAILY_MESSAGE_QUOTA`, `RATE_LIMIT_*_PER_MIN`, `MODEL_PRICES` and
/// `RETENTION_DAYS`, each with its documented default.
pub fn limits_from_env() -> Result<LimitsConfig, ConfigError> {
    let defaults = LimitsConfig::default();
    Ok(LimitsConfig {
        daily_quota: number("DAILY_MESSAGE_QUOTA", defaults.daily_quota)?,
        rate: RateLimits {
            append: number("RATE_LIMIT_APPEND_PER_MIN", defaults.rate.append)?,
            read: number("RATE_LIMIT_READ_PER_MIN", defaults.rate.read)?,
            other: number("RATE_LIMIT_OTHER_PER_MIN", defaults.rate.other)?,
            regenerate: number("RATE_LIMIT_REGENERATE_PER_MIN", defaults.rate.regenerate)?,
        },
        prices: optional("MODEL_PRICES")
            .map(|text| text.parse())
            .transpose()
            .map_err(|_| ConfigError::Invalid {
                name: "MODEL_PRICES",
                reason: "must look like model=0.15/0.60,other=3/15",
            })?
            .unwrap_or_default(),
        retention_days: number("RETENTION_DAYS", defaults.retention_days)?,
    })
}

pub use llm::{LlmConfig, LlmProvider};

/// `LLM_TIMEOUT_SECS`, `LLM_CONTEXT_TOKENS`, `LLM_MAX_TOKENS`, `LLM_CONTEXT_MESSAGES`,
/// `LLM_REPLY_TIMEOUT_SECS`, `REPLY_LEASE_SECS`, `LLM_CONCURRENCY` and `LLM_TOOL_CALLS` where set,
/// over `config`.
pub fn tune_llm_from_env(mut config: LlmConfig) -> Result<LlmConfig, ConfigError> {
    config.timeout_secs = number("LLM_TIMEOUT_SECS", config.timeout_secs)?;
    config.context_tokens = number("LLM_CONTEXT_TOKENS", config.context_tokens)?;
    config.max_tokens = number("LLM_MAX_TOKENS", config.max_tokens)?;
    config.context_messages = number("LLM_CONTEXT_MESSAGES", config.context_messages)?;
    config.reply_timeout_secs = number("LLM_REPLY_TIMEOUT_SECS", config.reply_timeout_secs)?;
    config.lease_secs = number("REPLY_LEASE_SECS", config.lease_secs)?;
    if optional("LLM_CONCURRENCY").is_some() {
        let concurrency: u32 = number("LLM_CONCURRENCY", 0)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid { name: "LLM_CONCURRENCY", reason: "must be 1 or more" });
        }
        config.concurrency = Some(concurrency);
    }
    config.structured_tools = match optional("LLM_TOOL_CALLS").as_deref() {
        None | Some("native") => false,
        Some("structured") => true,
        Some(_) => return Err(ConfigError::Invalid { name: "LLM_TOOL_CALLS", reason: "must be native or structured" }),
    };
    if !(3..=60).contains(&config.lease_secs) {
        return Err(ConfigError::Invalid { name: "REPLY_LEASE_SECS", reason: "must be 3 to 60" });
    }
    if config.reply_timeout_secs == 0 {
        return Err(ConfigError::Invalid { name: "LLM_REPLY_TIMEOUT_SECS", reason: "must be positive" });
    }
    if !(1..=100).contains(&config.context_messages) {
        return Err(ConfigError::Invalid { name: "LLM_CONTEXT_MESSAGES", reason: "must be 1 to 100" });
    }
    if config.timeout_secs == 0 || config.max_tokens == 0 || config.context_tokens <= u64::from(config.max_tokens) {
        return Err(ConfigError::Invalid {
            name: "LLM_CONTEXT_TOKENS",
            reason: "timeout and max tokens must be positive, the context larger than max tokens",
        });
    }
    Ok(config)
}

/// The model from `LLM_PROVIDER`, `LLM_BASE_URL`, `LLM_MODEL`, `LLM_MODELS` and the tuning
/// variables; `None` when no model is configured.
pub fn llm_from_env() -> Result<Option<LlmConfig>, ConfigError> {
    let provider = match (optional("LLM_PROVIDER").as_deref(), optional("LLM_BASE_URL")) {
        (None | Some("none"), None) => return Ok(None),
        (None | Some("openai"), Some(base_url)) => {
            LlmProvider::OpenAi { base_url, api_key: optional("LLM_API_KEY").map(SecretString::from) }
        }
        (Some("openai"), None) => return Err(ConfigError::Missing("LLM_BASE_URL")),
        (Some("bedrock"), _) => LlmProvider::Bedrock,
        (Some(_), _) => {
            return Err(ConfigError::Invalid { name: "LLM_PROVIDER", reason: "must be openai, bedrock or none" });
        }
    };
    let model = required("LLM_MODEL")?;
    let mut models: Vec<String> = optional("LLM_MODELS")
        .map(|list| list.split(',').map(|name| name.trim().to_owned()).filter(|name| !name.is_empty()).collect())
        .unwrap_or_default();
    if !models.contains(&model) {
        models.insert(0, model.clone());
    }
    let config = tune_llm_from_env(LlmConfig { provider, models, ..LlmConfig::openai("", model) })?;
    Ok(Some(config))
}

#[derive(Clone, Debug)]
pub struct Config {
    pub tables: TableNames,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub llm: Option<LlmConfig>,
    /// Memories the model writes itself (`MEMORY_EXTRACTION`, `MEMORY_MODEL`).
    pub memory: MemoryConfig,
    /// Browser origins the local server answers CORS for (in AWS the HTTP API and the function
    /// URL answer it, from the stack's `CorsAllowedOrigins`).
    pub cors: CorsOrigins,
    /// Lambda when `AWS_LAMBDA_FUNCTION_NAME` is set (the Lambda runtime always sets it).
    pub runtime: Runtime,
    /// Where HTTP tools may be called (`TOOLS_ALLOWED_URLS`, `TOOLS_ALLOW_PRIVATE_URLS`).
    pub tools: UrlPolicy,
}

pub use webhooks::UrlPolicy;

/// `TOOLS_ALLOWED_URLS`: comma-separated URL prefixes an HTTP tool's URL must start with (unset:
/// any `https` URL); `TOOLS_ALLOW_PRIVATE_URLS=true`: loopback and private addresses allowed, and
/// plain `http` — for local development only.
pub fn tools_from_env() -> Result<UrlPolicy, ConfigError> {
    let allowed_prefixes = optional("TOOLS_ALLOWED_URLS")
        .map(|list| {
            list.split(',').map(|prefix| prefix.trim().to_owned()).filter(|prefix| !prefix.is_empty()).collect()
        })
        .unwrap_or_default();
    let allow_private = match optional("TOOLS_ALLOW_PRIVATE_URLS").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ConfigError::Invalid { name: "TOOLS_ALLOW_PRIVATE_URLS", reason: "must be true or false" });
        }
    };
    Ok(UrlPolicy { allowed_prefixes, allow_private })
}

/// Which browser origins may call the API (`CORS_ALLOWED_ORIGINS`: comma-separated origins such
/// as `https://app.example.com`, or `*` for any, meant for development; unset: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    #[default]
    None,
    Any,
    List(Vec<String>),
}

impl CorsOrigins {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let origins: Vec<&str> = text.split(',').map(str::trim).filter(|origin| !origin.is_empty()).collect();
        if origins.is_empty() {
            return Ok(Self::None);
        }
        if origins == ["*"] {
            return Ok(Self::Any);
        }
        let invalid = ConfigError::Invalid {
            name: "CORS_ALLOWED_ORIGINS",
            reason: "must be * or origins like https://app.example.com (scheme and host, no path), comma-separated",
        };
        let mut list = Vec::with_capacity(origins.len());
        for origin in origins {
            let (scheme, host) = origin.split_once("://").ok_or_else(|| invalid.clone())?;
            let valid = matches!(scheme, "http" | "https")
                && !host.is_empty()
                && !host.contains(['/', '?', '#', '*', ' '])
                && origin.is_ascii();
            if !valid {
                return Err(invalid);
            }
            list.push(origin.to_ascii_lowercase());
        }
        Ok(Self::List(list))
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        optional("CORS_ALLOWED_ORIGINS").map_or(Ok(Self::None), |text| Self::parse(&text))
    }
}

/// Whether the model reads ended replies for memories, and with which model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryConfig {
    /// `MEMORY_EXTRACTION`: whether a session that does not say (`settings.memory` unset, no
    /// character) is read for memories after each reply that ends with text: `auto` (the
    /// default) or `manual` (memories only through the API; a character chat is still `auto`);
    /// `off` reads no session, whatever it says.
    pub extraction: MemoryExtraction,
    /// `MEMORY_MODEL`: the model extraction asks, on the replies' provider (default `LLM_MODEL`).
    pub model: Option<String>,
    /// `MEMORY_DAILY_CALLS`: extraction calls per user per UTC day (default 200).
    pub daily_calls: Option<u64>,
    /// `SUMMARY_STEP_TOKENS`: how far (estimated tokens) the log before the recent window may run
    /// past the session's summary before a new one is written (default 1000).
    pub summary_step_tokens: Option<u64>,
    /// `MEMORY_TIMEOUT_SECS`: the most one extraction or summary call may wait for the model,
    /// queueing included (default 60). A slow or busy model ends the call retryable, nothing
    /// stored.
    pub timeout_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryExtraction {
    #[default]
    Auto,
    Manual,
    Off,
}

impl MemoryConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let extraction = match optional("MEMORY_EXTRACTION").as_deref() {
            None | Some("auto") => MemoryExtraction::Auto,
            Some("manual") => MemoryExtraction::Manual,
            Some("off") => MemoryExtraction::Off,
            Some(_) => {
                return Err(ConfigError::Invalid { name: "MEMORY_EXTRACTION", reason: "must be auto, manual or off" });
            }
        };
        let daily_calls = optional("MEMORY_DAILY_CALLS").map(|_| number("MEMORY_DAILY_CALLS", 0)).transpose()?;
        let summary_step_tokens =
            optional("SUMMARY_STEP_TOKENS").map(|_| number("SUMMARY_STEP_TOKENS", 0)).transpose()?;
        let timeout_secs = optional("MEMORY_TIMEOUT_SECS").map(|_| number("MEMORY_TIMEOUT_SECS", 1)).transpose()?;
        if timeout_secs == Some(0) {
            return Err(ConfigError::Invalid { name: "MEMORY_TIMEOUT_SECS", reason: "must be at least 1" });
        }
        Ok(Self { extraction, model: optional("MEMORY_MODEL"), daily_calls, summary_step_tokens, timeout_secs })
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: &'static str },
}

/// The minimum HS256 secret length, per RFC 7518 §3.2.
pub const MIN_SECRET_BYTES: usize = 32;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            tables: TableNames::named_by(|env, _| required(env))?,
            auth: AuthConfig::from_env()?,
            limits: limits_from_env()?,
            llm: llm_from_env()?,
            memory: MemoryConfig::from_env()?,
            cors: CorsOrigins::from_env()?,
            runtime: if env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() { Runtime::Lambda } else { Runtime::Server },
            tools: tools_from_env()?,
        })
    }
}

impl AuthConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let key = match (optional("JWT_SECRET"), optional("JWT_PUBLIC_KEY"), optional("JWT_JWKS_URL")) {
            (Some(secret), None, None) => JwtKey::hs256(secret.into_bytes()),
            (None, Some(pem), None) => JwtKey::PublicKeyPem(pem.replace("\\n", "\n")),
            (None, None, Some(url)) => JwtKey::JwksUrl(url.trim().to_owned()),
            (None, None, None) => return Err(ConfigError::Missing("JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL")),
            _ => {
                return Err(ConfigError::Invalid {
                    name: "JWT_SECRET",
                    reason: "set one of JWT_SECRET (HS256), JWT_PUBLIC_KEY (PEM) or JWT_JWKS_URL (JWKS)",
                });
            }
        };
        let telegram = match optional("TELEGRAM_BOT_TOKEN") {
            Some(bot_token) => Some(TelegramConfig {
                bot_token: SecretString::from(bot_token),
                max_age_secs: number("TELEGRAM_INIT_DATA_MAX_AGE_SECS", 86_400)?,
            }),
            None => None,
        };
        let config = Self { key, issuer: optional("JWT_ISSUER"), audience: optional("JWT_AUDIENCE"), telegram };
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        match &self.key {
            JwtKey::Hs256Secret(secret) if secret.expose_secret().len() < MIN_SECRET_BYTES => {
                Err(ConfigError::Invalid { name: "JWT_SECRET", reason: "must be at least 32 bytes" })
            }
            JwtKey::PublicKeyPem(pem) if !pem.trim_start().starts_with("-----BEGIN") => {
                Err(ConfigError::Invalid { name: "JWT_PUBLIC_KEY", reason: "must be a PEM public key" })
            }
            JwtKey::PublicKeyPem(pem) if pem.contains("PRIVATE KEY-----") => Err(ConfigError::Invalid {
                name: "JWT_PUBLIC_KEY",
                reason: "is a private key: configure its public half (openssl pkey -pubout)",
            }),
            JwtKey::JwksUrl(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                Err(ConfigError::Invalid { name: "JWT_JWKS_URL", reason: "must be an http(s) URL" })
            }
            _ => Ok(()),
        }
    }
}

/// Whether init opens the DynamoDB connection before the first request (`DYNAMODB_WARM_UP`,
/// default `true`). Off only to measure what the warm-up saves (`cargo run -p bench`).
pub fn warm_up_from_env() -> Result<bool, ConfigError> {
    match optional("DYNAMODB_WARM_UP").as_deref().map(str::trim) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ConfigError::Invalid { name: "DYNAMODB_WARM_UP", reason: "must be true or false" }),
    }
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    optional(name).ok_or(ConfigError::Missing(name))
}

fn number<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError> {
    match optional(name) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| ConfigError::Invalid { name, reason: "must be a whole number" }),
    }
}

fn optional(name: &'static str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.trim().is_empty())
}
