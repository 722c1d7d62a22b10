//! `domain`: the product's newtypes and rules. A value of these types is valid: a `Seq` is
//! positive, a `Content` is within its size, an `Importance` is 1–10. Pricing, quota math, the
//! catalog's gates and the realtime protocol's frames are decided here.
//!
//! Architecture invariant: this crate knows no AWS SDK, DynamoDB, HTTP, axum, Lambda, model
//! provider or I/O — it depends only on serde, schemars and small value crates. Every other
//! crate may depend on it; it depends on none of them (its Cargo.toml is the proof).

mod character;
mod context;
mod idempotency;
mod limits;
mod memory;
mod message;
mod meter;
mod page;
mod profile;
mod realtime;
mod refusal;
mod reply;
mod reply_request;
mod session;
mod time;
mod tool;
mod wording;

pub use self::character::{
    AccessType, CatalogFilter, CatalogIndex, CatalogPage, CatalogSort, Character, CharacterId, ContentRating,
    Entitlements, Gate, Label, ModelSettings, Popularity, Tag, TagCount, fold,
};
pub use self::context::{
    Context, ContextPart, ContextParts, ContextProfile, ContextSession, DEFAULT_SYSTEM_PROMPT, PartName, PromptSource,
    SystemPrompt, estimate_tokens,
};
pub use self::idempotency::{DedupeKey, Idempotency};
pub use self::limits::{
    DailyUsage, KindUsage, LimitsConfig, LimitsView, ManualClock, MessagesLimit, ModelPrices, ModelUsage,
    PricesParseError, QuotaSettings, RateClass, RateLimits, RateState, Subscription, SubscriptionStatus,
    SubscriptionView, TIMEZONE_CHANGE_INTERVAL, TimeZone, UsageDay, UsageKind, UsageReport, UsageTotals, Usd, Window,
    utc_day, utc_day_start,
};
pub use self::memory::{
    Importance, Memory, MemoryChanges, MemoryContent, MemoryFilter, MemoryId, MemoryOrigin, MemoryScope, MemorySource,
    MemoryType, NewMemory, Summary, fingerprint,
};
pub use self::message::{
    CLIENT_TOOL_TIMEOUT, Change, Changes, Content, Lease, Message, MessageAgent, MessageId, MessageStatus, MessageType,
    MessageUsage, NewMessage, Payload, ReplyError, Role, Seq, Usage, preview_of,
};
pub use self::meter::{AppendLimits, Charge, DayUsage, Meter, MeterWrite, ModelTokens};
pub use self::page::{Cursor, Page, PageLimit};
pub use self::profile::{DisplayName, Gender, Language, Profile, ProfileChanges, TelegramAccount};
pub use self::realtime::{
    ClientEvent, Hidden, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, Peer, ProtocolError, SendMessage, ServerEvent,
};
pub use self::refusal::Refusal;
pub use self::reply::{SEGMENT_MAX_CHARS, all_segments, segments};
pub use self::reply_request::{CreateReply, Regenerate, ReplyMode, ReplyOptions, Routing};
pub use self::session::{
    LastMessage, MAX_AGENTS, MOOD_PREFERENCES, Metadata, NewSession, RELATIONSHIP_TYPES, Session, SessionChanges,
    SessionFilter, SessionId, SessionStatus, Settings, Title, UserId, agents_of,
};
pub use self::time::{Clock, SystemClock, Timestamp, TimestampParseError};
pub use self::tool::{
    Builtin, Draft, MAX_RESULT_BYTES, MAX_SCHEMA_BYTES, MAX_TOOL_ROUNDS, MAX_TOOLS, Part, RememberArguments,
    TOOL_TIMEOUT_DEFAULT_MS, Tool, ToolChoice, ToolChoiceInput, ToolError, ToolInput, ToolKind, ToolName, ToolSecret,
    ToolView, answer_pending, pending_calls, tools_of,
};

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

/// A JSON object whose serialized form is at most `max_bytes`, else `TooLarge` on `field`.
pub fn json_object_within(
    field: &str,
    object: serde_json::Map<String, serde_json::Value>,
    max_bytes: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, InputError> {
    let size = serde_json::to_vec(&object).map(|bytes| bytes.len()).unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(InputError::too_large(field, format!("must be at most {max_bytes} bytes as JSON")));
    }
    Ok(object)
}
