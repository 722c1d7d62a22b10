//! Newtypes and rules. Nothing here knows about HTTP or DynamoDB: a value of these types is valid.

mod idempotency;
mod message;
mod page;
mod session;
mod time;

pub use self::idempotency::{DedupeKey, Idempotency};
pub use self::message::{Content, Message, MessageId, MessageType, NewMessage, Payload, Role, Seq, Usage, preview_of};
pub use self::page::{Cursor, Page, PageLimit};
pub use self::session::{
    LastMessage, Metadata, NewSession, Session, SessionChanges, SessionFilter, SessionId, SessionStatus, Settings,
    Title, UserId,
};
pub use self::time::{Clock, SystemClock, Timestamp, TimestampParseError};

/// Input that breaks a rule, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: {message}")]
    TooLarge { field: String, message: String },
}

impl InputError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    pub fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::TooLarge { field: field.into(), message: message.into() }
    }
}
