//! Messages: each session's ordered log.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CharacterId, InputError, Part, Routing, SessionId, Timestamp, Usd};

/// A message's position in its session: 1, 2, 3, ... with no gaps and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Seq(u64);

impl Seq {
    pub const FIRST: Seq = Seq(1);

    pub fn new(value: u64) -> Option<Self> {
        (value >= 1).then_some(Self(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The seq after `last` (0 when the log is empty).
    pub fn after(last: u64) -> Self {
        Self(last + 1)
    }
}

impl FromStr for Seq {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<u64>() {
            Ok(value) => Seq::new(value).ok_or_else(|| InputError::invalid("seq", "must be 1 or more")),
            Err(error) if *error.kind() == std::num::IntErrorKind::PosOverflow => {
                Err(InputError::invalid("seq", format!("is too large: at most {}", u64::MAX)))
            }
            Err(_) => Err(InputError::invalid("seq", "must be a whole number, 1 or more")),
        }
    }
}

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        Seq::new(value).ok_or_else(|| serde::de::Error::custom("must be 1 or more"))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message's id: a UUID the server generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(text: &str) -> Option<Self> {
        Uuid::try_parse(text).ok().map(Self)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
            Self::Tool => "tool",
        }
    }
}

impl FromStr for Role {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            "system" => Ok(Self::System),
            "tool" => Ok(Self::Tool),
            _ => Err(InputError::invalid("role", "must be one of user, assistant, system, tool")),
        }
    }
}

/// A caller-chosen kind of message (`text` unless said otherwise): 1–64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct MessageType(String);

impl MessageType {
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let chars = text.chars().count();
        if chars == 0 || chars > 64 || text.chars().any(char::is_control) {
            return Err(InputError::invalid("type", "must be 1 to 64 characters, no control characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MessageType {
    fn default() -> Self {
        Self("text".to_owned())
    }
}

/// Message text: at most 32 KiB of UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Content(String);

impl Content {
    pub const MAX_BYTES: usize = 32 * 1024;

    pub fn parse(text: String) -> Result<Self, InputError> {
        if text.len() > Self::MAX_BYTES {
            return Err(InputError::too_large("content", "must be at most 32768 bytes of UTF-8"));
        }
        Ok(Self(text))
    }

    /// Text a caller writes: also not blank (only whitespace), which says nothing and would still
    /// spend the quota.
    pub fn written(text: String) -> Result<Self, InputError> {
        if text.trim().is_empty() {
            return Err(InputError::invalid("content", "must not be empty or only whitespace"));
        }
        Self::parse(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Structured data riding with a message: a JSON object of at most 64 KiB.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Payload(serde_json::Map<String, serde_json::Value>);

impl Payload {
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn parse(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, InputError> {
        super::json_object_within("payload", object, Self::MAX_BYTES).map(Self)
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}

/// Model usage reported with a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub model: String,
}

impl Usage {
    pub fn validate(self) -> Result<Self, InputError> {
        let chars = self.model.chars().count();
        if chars == 0 || chars > 128 || self.model.chars().any(char::is_control) {
            return Err(InputError::invalid("usage.model", "must be 1 to 128 characters"));
        }
        Ok(self)
    }
}

/// Where a message is in its life. Messages a caller appends are `complete`; a reply the server
/// generates is `streaming` until it ends as one of the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    #[default]
    Complete,
    Streaming,
    /// The model stopped at `max_tokens` (or the reply reached the content limit).
    Incomplete,
    Failed,
    Cancelled,
    /// Paused: the reply called a client tool and waits for the client's result
    /// (`POST …/messages/{seq}/tool-results`); it resumes as `streaming`.
    RequiresAction,
}

/// How long a paused reply (`requires_action`) waits for its client tools' results before it is
/// ended `incomplete`, each unanswered call's result a `timeout` error.
pub const CLIENT_TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Streaming => "streaming",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::RequiresAction => "requires_action",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Streaming | Self::RequiresAction)
    }
}

impl FromStr for MessageStatus {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "complete" => Ok(Self::Complete),
            "streaming" => Ok(Self::Streaming),
            "incomplete" => Ok(Self::Incomplete),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            "requires_action" => Ok(Self::RequiresAction),
            _ => Err(InputError::invalid("status", "unknown message status")),
        }
    }
}

/// Why a generated reply failed, as its message keeps it (the same code the HTTP error has).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplyError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    /// Seconds to wait before retrying, when the provider said (`llm_busy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// A message's token usage: reported by the caller with an append, or counted by the provider
/// for a generated reply (`estimated` when the stream ended before the provider said).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub model: String,
    /// At the configured `MODEL_PRICES` when the message was stored; `"0"` for an unpriced model.
    pub cost_usd: Usd,
    pub estimated: bool,
}

/// A message to append, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub role: Role,
    pub message_type: MessageType,
    pub content: Content,
    pub payload: Option<Payload>,
    pub reply_to: Option<Seq>,
    pub usage: Option<Usage>,
    /// `streaming` (with the model it streams from) only for the reply the server is about to
    /// generate.
    pub reply: Option<String>,
    /// The agent the reply comes from, and how it was chosen.
    pub agent: Option<MessageAgent>,
    pub routing: Option<Routing>,
    /// The routing call's tokens (an orchestrated reply): metered with the append, under their
    /// own kind; not part of the message.
    pub routing_usage: Option<Usage>,
}

impl NewMessage {
    /// The user's message of a reply turn.
    pub fn user(content: Content) -> Self {
        Self {
            role: Role::User,
            message_type: Default::default(),
            content,
            payload: None,
            reply_to: None,
            usage: None,
            reply: None,
            agent: None,
            routing: None,
            routing_usage: None,
        }
    }
}

impl NewMessage {
    /// The assistant message a generated reply starts as: empty, `streaming` from `model`.
    pub fn reply_placeholder(model: &str, reply_to: Option<Seq>) -> Self {
        Self {
            role: Role::Assistant,
            message_type: MessageType::default(),
            content: Content(String::new()),
            payload: None,
            reply_to,
            usage: None,
            reply: Some(model.to_owned()),
            agent: None,
            routing: None,
            routing_usage: None,
        }
    }
}

impl Message {
    /// A character's greeting: the first message of a chat with it.
    pub fn greeting(session_id: SessionId, content: Content, now: Timestamp, rev: u64) -> Self {
        Self {
            id: MessageId::generate(),
            session_id,
            seq: Seq::FIRST,
            role: Role::Assistant,
            message_type: MessageType::default(),
            content,
            parts: Vec::new(),
            payload: None,
            reply_to: None,
            usage: None,
            created_at: now,
            edited_at: None,
            status: MessageStatus::Complete,
            stop_reason: None,
            model: None,
            variant: 1,
            variant_count: 1,
            is_regenerated: false,
            error: None,
            agent: None,
            routing: None,
            rev,
            lease: None,
        }
    }
}

impl NewMessage {
    /// A message may only reply to an earlier one: checked where the batch's first seq is known
    /// (`last_seq` + 1), inside the append.
    pub fn check_reply_to(messages: &[NewMessage], last_seq: u64) -> Result<(), InputError> {
        for (index, message) in messages.iter().enumerate() {
            let own_seq = last_seq + 1 + index as u64;
            if message.reply_to.is_some_and(|reply_to| reply_to.get() >= own_seq) {
                return Err(InputError::invalid("reply_to", "must be the seq of an earlier message in this session"));
            }
        }
        Ok(())
    }
}

/// The catalog character a reply is from, with what a chat shows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MessageAgent {
    pub id: CharacterId,
    pub name: String,
    pub avatar_url: Option<String>,
}

/// A stored message as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Message {
    pub id: MessageId,
    pub session_id: SessionId,
    pub seq: Seq,
    pub role: Role,
    #[serde(rename = "type")]
    pub message_type: MessageType,
    pub content: Content,
    /// A reply that called tools: its text, each call and each call's result, in order
    /// (`content` is its text parts joined). Absent on every other message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    pub payload: Option<Payload>,
    pub reply_to: Option<Seq>,
    pub usage: Option<MessageUsage>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub status: MessageStatus,
    /// The provider's reason for a generated reply's end (`stop`, `length`, `cancelled`, …).
    pub stop_reason: Option<String>,
    /// The model that generated this reply.
    pub model: Option<String>,
    /// Which generation of this seq this is (1, 2, … after each regenerate).
    pub variant: u32,
    /// How many generations this seq has had; earlier ones are listed by `…/variants`.
    pub variant_count: u32,
    pub is_regenerated: bool,
    /// Why a `failed` reply failed.
    pub error: Option<ReplyError>,
    /// The agent (a catalog character) that wrote this reply, as it was then; `null` for the
    /// plain assistant and for every message a caller appends.
    pub agent: Option<MessageAgent>,
    /// How the agent was chosen, in a session with agents.
    pub routing: Option<Routing>,
    /// The session revision of this message's latest change (its append, edit or end); a
    /// streaming reply's checkpoints leave it.
    pub rev: u64,
    /// A streaming reply's lease, as stored; never in the API.
    #[serde(skip)]
    #[schemars(skip)]
    pub lease: Option<Lease>,
}

/// A streaming reply's lease: its generator renews it with every write (a checkpoint, or a
/// renewal when there is nothing new to store). A reply whose lease has passed has lost its
/// generator — the process died, or Lambda ended the invocation — and whoever meets it ends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// When the generator last wrote (the append, for a reply that has not written yet).
    pub renewed_at: Timestamp,
    /// The quota day the turn's `user` message counted a unit in, if it did: a reply ended
    /// without any text gives it back.
    pub counted_in: Option<String>,
}

impl Lease {
    /// Whether a lease of `length` renewed at `renewed_at` has passed at `now`.
    pub fn expired(&self, now: Timestamp, length: std::time::Duration) -> bool {
        self.renewed_at.plus(length) < now
    }
}

impl Message {
    /// Whether this is a reply whose generator is gone before its end (it is streaming, or was
    /// cancelled and its generator never stored the end): its lease of `length` passed.
    /// A paused reply's "lease" is the time its client has to answer (`CLIENT_TOOL_TIMEOUT`).
    pub fn lease_expired(&self, now: Timestamp, length: std::time::Duration) -> bool {
        let length = if self.status == MessageStatus::RequiresAction { CLIENT_TOOL_TIMEOUT } else { length };
        self.lease.as_ref().is_some_and(|lease| lease.expired(now, length))
    }
}

/// One change of a session's log, as the change feed returns it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A message was appended or changed (an edit, a reply's end or cancel, a new variant): the
    /// message as it is now.
    Message { rev: u64, message: Box<Message> },
    /// A message was deleted (delete, forget-recent): a tombstone.
    Deleted { rev: u64, seq: Seq },
    /// New-scene or reset hid every message with `seq <= through_seq`.
    Cleared { rev: u64, through_seq: u64 },
    /// Only over the socket: a message whose change does not fit in one frame; read it with
    /// `GET /v1/sessions/{session_id}/messages/{seq}`.
    TooLarge { rev: u64, seq: Seq },
}

impl Change {
    pub fn rev(&self) -> u64 {
        match self {
            Self::Message { rev, .. }
            | Self::Deleted { rev, .. }
            | Self::Cleared { rev, .. }
            | Self::TooLarge { rev, .. } => *rev,
        }
    }
}

/// A page of the change feed: the changes after `after_rev`, in `rev` order; a page never splits
/// the changes of one revision.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Changes {
    pub data: Vec<Change>,
    pub has_more: bool,
    /// The `after_rev` of the next call: the last revision this page covers (the session's
    /// revision when nothing is left).
    pub next_after_rev: u64,
}

/// The first 120 user-perceived characters (grapheme clusters) of a message, as the session
/// summary shows it: a cut never splits a family emoji, a flag or a letter from its accent.
pub fn preview_of(content: &str) -> String {
    use unicode_segmentation::UnicodeSegmentation as _;
    const PREVIEW_GRAPHEMES: usize = 120;
    content.graphemes(true).take(PREVIEW_GRAPHEMES).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_passes_after_its_length_and_only_on_an_unfinished_reply() {
        let at: Timestamp = "2026-12-01T10:00:00.000000Z".parse().unwrap_or_else(|_| unreachable!());
        let content = Content::parse("hi".to_owned()).unwrap_or_else(|_| unreachable!());
        let mut reply = Message::greeting(SessionId::generate(), content, at, 1);
        let lease = Duration::from_secs(30);
        assert!(!reply.lease_expired(at.plus(Duration::from_secs(3600)), lease), "no lease: an ended message");
        reply.status = MessageStatus::Streaming;
        reply.lease = Some(Lease { renewed_at: at, counted_in: None });
        assert!(!reply.lease_expired(at.plus(Duration::from_secs(30)), lease), "at its length it still holds");
        assert!(reply.lease_expired(at.plus(Duration::from_secs(31)), lease));
    }
}
