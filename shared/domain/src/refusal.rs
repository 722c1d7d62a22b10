//! Why a rule refused a request. The rules live here and in the service layer; the store enforces
//! some of them atomically inside its conditional writes (a closed session, a used-up quota) and
//! reports them with these, beside its own storage errors.

use super::{Gate, InputError, MessagesLimit, RateClass, SessionStatus, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("session is {}", .0.as_str())]
    SessionClosed(SessionStatus),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the daily message quota is used up")]
    DailyLimitExceeded { total: u64, resets_at: Timestamp, retry_after_secs: u64, quota: MessagesLimit },
    /// Over the per-minute limit of `class`, which allows `limit` requests a minute.
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64, class: RateClass, limit: u32 },
    /// A character gate: unknown or inactive, premium, adults only.
    #[error("{0:?}")]
    Gate(Gate),
    #[error(transparent)]
    Invalid(#[from] InputError),
}
