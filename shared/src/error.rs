//! The one error type of the API and the one place that turns it into a status and a JSON body.

use std::error::Error as StdError;
use std::future::Future;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::{InputError, SessionStatus, Timestamp};
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

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidInput { field: String, message: String },
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the session is {}: it accepts no changes to its messages", .0.as_str())]
    SessionClosed(SessionStatus),
    #[error("{message}")]
    PayloadTooLarge { field: Option<String>, message: String },
    #[error("the daily message limit is used up")]
    DailyLimitExceeded { total: u64, resets_at: Timestamp, retry_after_secs: u64 },
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimit { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] Source),
    #[error("the database is unavailable; retry later")]
    ServiceUnavailable(#[source] Source),
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
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::SessionClosed(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::DailyLimitExceeded { .. } | Self::RateLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. } => "invalid_input",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::SessionClosed(_) => "session_closed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::DailyLimitExceeded { .. } => "daily_limit_exceeded",
            Self::RateLimit { .. } => "rate_limit",
            Self::Internal(_) => "internal",
            Self::ServiceUnavailable(_) => "service_unavailable",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::DailyLimitExceeded { retry_after_secs, .. } | Self::RateLimit { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            Self::ServiceUnavailable(_) => Some(1),
            _ => None,
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "error": self.code(),
            "message": self.to_string(),
            "request_id": current_request_id(),
        });
        let extra = match self {
            Self::InvalidInput { field, .. } => json!({ "field": field }),
            Self::PayloadTooLarge { field: Some(field), .. } => json!({ "field": field }),
            Self::SessionClosed(status) => json!({ "status": status }),
            Self::RateLimit { retry_after_secs } => json!({ "retry_after": retry_after_secs }),
            Self::DailyLimitExceeded { total, resets_at, retry_after_secs } => json!({
                "retry_after": retry_after_secs,
                "limits": { "remaining": 0, "total": total, "resets_at": resets_at },
            }),
            _ => Value::Null,
        };
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    }

    fn log(&self) {
        match self {
            Self::Internal(source) => {
                tracing::error!(error = %ErrorChain(source.as_ref()), "request failed: internal error");
            }
            Self::ServiceUnavailable(source) => {
                tracing::warn!(error = %ErrorChain(source.as_ref()), "request failed: database unavailable");
            }
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
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
            StoreError::SessionClosed(status) => Self::SessionClosed(status),
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::Forbidden(message) => Self::Forbidden(message),
            StoreError::DailyLimitExceeded { total, resets_at, retry_after_secs, .. } => {
                Self::DailyLimitExceeded { total, resets_at, retry_after_secs }
            }
            StoreError::RateLimited { retry_after_secs } => Self::RateLimit { retry_after_secs },
            StoreError::Invalid(input) => input.into(),
            StoreError::Unavailable(source) => Self::ServiceUnavailable(source),
            StoreError::Internal(source) => Self::Internal(source),
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
