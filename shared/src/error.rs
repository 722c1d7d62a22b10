//! The one error type of the API and the one place that turns it into a status and a JSON body.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::auth::{AuthError, AuthFailure};
use crate::chat::ReplyFailure;
use crate::domain::{
    Gate, InputError, MessagesLimit, RateClass, RateState, Refusal, ReplyError, SessionStatus, Timestamp,
};
use crate::store::StoreError;

type Source = Box<dyn StdError + Send + Sync>;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `future` with `request_id` visible to every error response built inside it.
pub async fn with_request_id<F: Future>(request_id: String, future: F) -> F::Output {
    REQUEST_ID.scope(request_id, future).await
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The body of every error response.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, for code to branch on.
    pub error: ErrorCode,
    /// What went wrong, for people; never contains stored content.
    pub message: String,
    /// The request's id (also in the `x-request-id` header), for support.
    pub request_id: Option<String>,
    /// The offending field, for `invalid_input` and `payload_too_large`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The session's status, for `session_closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    /// Seconds to wait, for `rate_limit` and `daily_limit_exceeded` (as in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The used-up quota, for `daily_limit_exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<MessagesLimit>,
    /// Whether the same request may succeed later, for the model's errors (`llm_*`,
    /// `context_too_long`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInput,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    /// The path exists, not with this method (`Allow` lists those it has): 405.
    MethodNotAllowed,
    SessionClosed,
    PayloadTooLarge,
    DailyLimitExceeded,
    RateLimit,
    Internal,
    ServiceUnavailable,
    /// The model provider failed (unreachable, 5xx, a broken or malformed stream): 502.
    LlmError,
    /// The model provider is rate limiting: 503 with `Retry-After`.
    LlmBusy,
    /// The model provider did not answer in time: 504.
    LlmTimeout,
    /// The conversation does not fit the model's context window even trimmed: 422.
    ContextTooLong,
    /// No such character, or it was deactivated: 404.
    CharacterNotFound,
    /// The character is for subscribers, and the caller has no active subscription: 403.
    PremiumRequired,
    /// The character is rated nsfw, and the caller has not confirmed being an adult
    /// (`POST /v1/me/confirm-adult`): 403.
    AdultConfirmationRequired,
    /// A reply named an agent the catalog does not have (or that is no longer active): 404.
    AgentNotFound,
    /// A reply named a character that is not one of the session's agents: 409.
    AgentNotInSession,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidInput { field: String, message: String },
    #[error("{0}")]
    Unauthorized(AuthFailure),
    /// The identity provider's keys (JWKS) cannot be fetched, so no token can be checked.
    #[error("the identity provider's keys cannot be fetched; retry later")]
    AuthUnavailable,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("this path does not take this method; the Allow header lists those it takes")]
    MethodNotAllowed,
    #[error("the session is {}: it accepts no changes to its messages", .0.as_str())]
    SessionClosed(SessionStatus),
    #[error("{message}")]
    PayloadTooLarge { field: Option<String>, message: String },
    #[error("the daily message limit is used up")]
    DailyLimitExceeded { total: u64, resets_at: Timestamp, retry_after_secs: u64, quota: MessagesLimit },
    #[error("too many {} requests: {limit} a minute; retry after {retry_after_secs} s", .class.as_str())]
    RateLimit { retry_after_secs: u64, class: RateClass, limit: u32 },
    #[error("internal error")]
    Internal(#[source] Source),
    #[error("the database is unavailable; retry later")]
    ServiceUnavailable(#[source] Source),
    /// A reply's model failed before any output (the turn is stored, the reply `failed`).
    #[error("{}", .0.message)]
    Model(ReplyError),
    #[error("no model is configured for replies")]
    NoModel,
    #[error("{}", gate_message(*.0))]
    Gate(Gate),
    /// A reply named an agent the catalog does not have.
    #[error("{0}")]
    AgentNotFound(String),
    /// A reply named a character that is not one of the session's agents.
    #[error("{0}")]
    AgentNotInSession(String),
}

fn gate_message(gate: Gate) -> &'static str {
    match gate {
        Gate::NotFound => "character not found (unknown or no longer active)",
        Gate::PremiumRequired => "this character needs an active subscription",
        Gate::AdultConfirmationRequired => {
            "this character is for adults: confirm your age with POST /v1/me/confirm-adult first"
        }
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidInput { field: field.into(), message: message.into() }
    }

    pub fn internal(source: impl Into<Source>) -> Self {
        Self::Internal(source.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::SessionClosed(_) => StatusCode::CONFLICT,
            Self::Gate(Gate::NotFound) | Self::AgentNotFound(_) => StatusCode::NOT_FOUND,
            Self::Gate(_) => StatusCode::FORBIDDEN,
            Self::AgentNotInSession(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::DailyLimitExceeded { .. } | Self::RateLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable(_) | Self::NoModel | Self::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Model(error) => match error.code.as_str() {
                "llm_busy" => StatusCode::SERVICE_UNAVAILABLE,
                "llm_timeout" => StatusCode::GATEWAY_TIMEOUT,
                "context_too_long" => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidInput { .. } => ErrorCode::InvalidInput,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Gate(Gate::NotFound) => ErrorCode::CharacterNotFound,
            Self::Gate(Gate::PremiumRequired) => ErrorCode::PremiumRequired,
            Self::Gate(Gate::AdultConfirmationRequired) => ErrorCode::AdultConfirmationRequired,
            Self::AgentNotFound(_) => ErrorCode::AgentNotFound,
            Self::AgentNotInSession(_) => ErrorCode::AgentNotInSession,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::SessionClosed(_) => ErrorCode::SessionClosed,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::DailyLimitExceeded { .. } => ErrorCode::DailyLimitExceeded,
            Self::RateLimit { .. } => ErrorCode::RateLimit,
            Self::Internal(_) => ErrorCode::Internal,
            Self::ServiceUnavailable(_) | Self::NoModel | Self::AuthUnavailable => ErrorCode::ServiceUnavailable,
            Self::Model(error) => match error.code.as_str() {
                "llm_busy" => ErrorCode::LlmBusy,
                "llm_timeout" => ErrorCode::LlmTimeout,
                "context_too_long" => ErrorCode::ContextTooLong,
                _ => ErrorCode::LlmError,
            },
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::DailyLimitExceeded { retry_after_secs, .. } | Self::RateLimit { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::ServiceUnavailable(_) => Some(1),
            Self::AuthUnavailable => Some(5),
            Self::Model(error) => error.retry_after,
            _ => None,
        }
    }

    fn body(&self) -> ErrorBody {
        let mut body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            request_id: current_request_id(),
            field: None,
            status: None,
            retry_after: None,
            limits: None,
            retryable: None,
        };
        match self {
            Self::InvalidInput { field, .. } | Self::PayloadTooLarge { field: Some(field), .. } => {
                body.field = Some(field.clone());
            }
            Self::SessionClosed(status) => body.status = Some(*status),
            Self::RateLimit { retry_after_secs, .. } => body.retry_after = Some(*retry_after_secs),
            Self::DailyLimitExceeded { retry_after_secs, quota, .. } => {
                body.retry_after = Some(*retry_after_secs);
                // A batch with more user messages than are left is refused whole; what is left stays.
                let remaining = quota.remaining.max(0) as u64;
                if remaining > 0 {
                    body.message = format!(
                        "the request has more user messages than the {remaining} left of today's quota; \
                         nothing was stored"
                    );
                }
                body.limits = Some(*quota);
            }
            Self::Model(error) => {
                body.retryable = Some(error.retryable);
                body.retry_after = error.retry_after;
            }
            _ => {}
        }
        body
    }

    /// Logs what the operator must see (internal causes with their source chain, unavailable
    /// dependencies, the model's failures); a refusal of the caller's input logs nothing. Called
    /// once per error: by the request middleware for HTTP, where a socket event is sent for sockets.
    pub fn log(&self) {
        match self {
            Self::Internal(source) => {
                tracing::error!(error = %ErrorChain(source.as_ref()), "request failed: internal error");
            }
            Self::ServiceUnavailable(source) => {
                tracing::warn!(error = %ErrorChain(source.as_ref()), "request failed: database unavailable");
            }
            Self::Model(error) => tracing::warn!(code = %error.code, "request failed: the model failed"),
            Self::AuthUnavailable => tracing::warn!("request failed: the JWKS is unavailable"),
            _ => {}
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Refused(failure) => Self::Unauthorized(failure),
            AuthError::Unavailable => Self::AuthUnavailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Self::Unauthorized(failure) = &self
            && let Ok(challenge) = HeaderValue::from_str(&failure.challenge())
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        // An append refused for its quota still tells the caller where it stands.
        if let Self::DailyLimitExceeded { quota, .. } = &self {
            quota_headers(response.headers_mut(), *quota);
        }
        if let Self::RateLimit { retry_after_secs, class, limit } = &self {
            let state = RateState { class: *class, limit: *limit, remaining: 0, reset_secs: *retry_after_secs };
            rate_headers(response.headers_mut(), state);
        }
        // The request middleware logs it, once, inside the request's span.
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// The daily quota after a request: `X-Quota-Limit`, `-Remaining`, `-Reset` (Unix seconds), and
/// the same under the seed's names `X-RateLimit-*`; -1 is unlimited. Set on every message append,
/// refused or not. (The per-minute rate limit has the IETF fields instead: [`rate_headers`].)
pub fn quota_headers(headers: &mut HeaderMap, quota: MessagesLimit) {
    for (prefix_limit, prefix_remaining, prefix_reset) in [
        ("x-quota-limit", "x-quota-remaining", "x-quota-reset"),
        ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"),
    ] {
        headers.insert(prefix_limit, HeaderValue::from(quota.total));
        headers.insert(prefix_remaining, HeaderValue::from(quota.remaining));
        headers.insert(prefix_reset, HeaderValue::from(quota.resets_at.unix_seconds()));
    }
}

/// A per-minute rate limit, as draft-ietf-httpapi-ratelimit-headers names it: the policy
/// (`RateLimit-Policy: "read";q=30;w=60`) and where the caller stands (`RateLimit:
/// "read";r=12;t=45`: 12 left, the window resets in 45 s). On every rate-counted response.
pub fn rate_headers(headers: &mut HeaderMap, state: RateState) {
    let name = state.class.as_str();
    if let Ok(policy) = HeaderValue::from_str(&format!("\"{name}\";q={};w=60", state.limit)) {
        headers.insert("ratelimit-policy", policy);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{name}\";r={};t={}", state.remaining, state.reset_secs)) {
        headers.insert("ratelimit", value);
    }
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> Self {
        Self::Unauthorized(failure)
    }
}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> Self {
        match error {
            InputError::Invalid { field, message } => Self::InvalidInput { field, message },
            InputError::TooLarge { field, message } => Self::PayloadTooLarge { field: Some(field), message },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Refused(refusal) => refusal.into(),
            // The service words every precondition it sets; one that reaches the edge is a bug.
            StoreError::Miss(miss) => Self::Internal(format!("an unworded store precondition: {miss:?}").into()),
            StoreError::Unavailable(source) => Self::ServiceUnavailable(source),
            StoreError::Internal(source) => Self::Internal(source),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::SessionClosed(status) => Self::SessionClosed(status),
            Refusal::Conflict(message) => Self::Conflict(message),
            Refusal::Forbidden(message) => Self::Forbidden(message),
            Refusal::DailyLimitExceeded { total, resets_at, retry_after_secs, quota } => {
                Self::DailyLimitExceeded { total, resets_at, retry_after_secs, quota }
            }
            Refusal::RateLimited { retry_after_secs, class, limit } => {
                Self::RateLimit { retry_after_secs, class, limit }
            }
            Refusal::Gate(gate) => Self::Gate(gate),
            Refusal::Invalid(input) => input.into(),
        }
    }
}

impl From<ReplyFailure> for ApiError {
    fn from(failure: ReplyFailure) -> Self {
        match failure {
            ReplyFailure::Store(error) => error.into(),
            ReplyFailure::Failed(error) => Self::Model(error),
            ReplyFailure::NoModel => Self::NoModel,
            ReplyFailure::Busy { retry_after_secs } => Self::Model(ReplyError {
                code: "llm_busy".to_owned(),
                message: failure.to_string(),
                retryable: true,
                retry_after: Some(retry_after_secs),
            }),
            ReplyFailure::Invalid { field, message } => Self::invalid(field, message),
            ReplyFailure::AgentNotFound(_) => Self::AgentNotFound(failure.to_string()),
            ReplyFailure::AgentNotInSession(_) => Self::AgentNotInSession(failure.to_string()),
        }
    }
}

/// Displays an error with its whole `source()` chain, for the one log line a failure gets.
struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
