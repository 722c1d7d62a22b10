//! Messages API shapes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{
    Content, DedupeKey, Idempotency, InputError, Message, MessageType, NewMessage, PageLimit, Payload, Role, Seq, Usage,
};
use crate::store::{MessageOrder, MessageQuery};

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// At most this many messages per batch append.
pub const MAX_BATCH: usize = 20;
/// `forget-recent` deletes at most this many messages per call.
pub const MAX_FORGET: usize = 50;
/// `new-scene` keeps at most this many messages.
pub const MAX_KEEP: usize = 1000;

/// One message as a caller sends it: the body of `POST /v1/sessions/{id}/messages`, and each
/// element of a batch (where `dedupe_key` belongs on the batch instead).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendMessage {
    pub role: Role,
    /// Not blank (only whitespace) unless `payload` is given.
    pub content: String,
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    pub payload: Option<JsonObject>,
    pub reply_to: Option<Seq>,
    pub usage: Option<Usage>,
    pub dedupe_key: Option<String>,
}

impl TryFrom<AppendMessage> for NewMessage {
    type Error = InputError;

    fn try_from(body: AppendMessage) -> Result<Self, InputError> {
        Ok(Self {
            role: body.role,
            message_type: body.message_type.as_deref().map(MessageType::parse).transpose()?.unwrap_or_default(),
            // Blank text is only a message when its payload carries it (a sticker, a card).
            content: if body.payload.is_some() {
                Content::parse(body.content)?
            } else {
                Content::written(body.content)?
            },
            payload: body.payload.map(Payload::parse).transpose()?,
            reply_to: body.reply_to,
            usage: body.usage.map(Usage::validate).transpose()?,
            reply: None,
            agent: None,
            routing: None,
            routing_usage: None,
        })
    }
}

/// `POST /v1/sessions/{id}/messages/batch`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBatch {
    #[schemars(length(min = 1, max = MAX_BATCH))]
    pub messages: Vec<AppendMessage>,
    pub dedupe_key: Option<String>,
}

/// A validated append: the messages and, when the caller gave a key, how to recognise a retry.
pub struct AppendRequest {
    pub messages: Vec<NewMessage>,
    pub idempotency: Option<Idempotency>,
}

impl AppendRequest {
    pub fn single(body: AppendMessage, header_key: Option<&str>) -> Result<Self, InputError> {
        let body_key = body.dedupe_key.clone();
        let messages = vec![NewMessage::try_from(body)?];
        Self::with_key(messages, "single", body_key.as_deref(), header_key)
    }

    pub fn batch(body: AppendBatch, header_key: Option<&str>) -> Result<Self, InputError> {
        if body.messages.is_empty() || body.messages.len() > MAX_BATCH {
            return Err(InputError::invalid("messages", "must hold 1 to 20 messages"));
        }
        let messages = body
            .messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| {
                if message.dedupe_key.is_some() {
                    return Err(InputError::invalid(
                        format!("messages[{index}].dedupe_key"),
                        "put dedupe_key on the batch, not on its messages",
                    ));
                }
                NewMessage::try_from(message).map_err(|error| in_batch(index, error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::with_key(messages, "batch", body.dedupe_key.as_deref(), header_key)
    }

    fn with_key(
        messages: Vec<NewMessage>,
        kind: &str,
        body_key: Option<&str>,
        header_key: Option<&str>,
    ) -> Result<Self, InputError> {
        let key = match (header_key, body_key) {
            (Some(header), Some(body)) if header != body => {
                return Err(InputError::invalid("dedupe_key", "differs from the Idempotency-Key header"));
            }
            (Some(header), _) => Some(DedupeKey::parse("Idempotency-Key", header)?),
            (None, Some(body)) => Some(DedupeKey::parse("dedupe_key", body)?),
            (None, None) => None,
        };
        let idempotency = key.map(|key| Idempotency::new(key, kind, &messages));
        Ok(Self { messages, idempotency })
    }
}

fn in_batch(index: usize, error: InputError) -> InputError {
    match error {
        InputError::Invalid { field, message } => InputError::invalid(format!("messages[{index}].{field}"), message),
        InputError::TooLarge { field, message } => InputError::too_large(format!("messages[{index}].{field}"), message),
    }
}

/// `GET /v1/sessions/{id}/messages?after_seq=&before_seq=&limit=&order=asc|desc`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMessages {
    pub after_seq: Option<u64>,
    pub before_seq: Option<u64>,
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
    pub order: Option<Order>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

impl TryFrom<ListMessages> for MessageQuery {
    type Error = InputError;

    fn try_from(query: ListMessages) -> Result<Self, InputError> {
        Ok(Self {
            after_seq: query.after_seq,
            before_seq: query.before_seq,
            limit: PageLimit::new("limit", query.limit, 50, 200)?,
            order: match query.order {
                Some(Order::Desc) => MessageOrder::Desc,
                Some(Order::Asc) | None => MessageOrder::Asc,
            },
        })
    }
}

/// `GET /v1/sessions/{id}/changes?after_rev=&limit=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListChanges {
    /// The revision the client holds (0, or absent: from the start).
    pub after_rev: Option<u64>,
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

impl ListChanges {
    pub fn limit(&self) -> Result<PageLimit, InputError> {
        PageLimit::new("limit", self.limit, 100, 200)
    }
}

/// `PATCH /v1/sessions/{id}/messages/{seq}`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// Not blank (only whitespace).
    pub content: String,
}

/// `POST /v1/sessions/{id}/forget-recent`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetRecent {
    #[schemars(range(min = 1, max = MAX_FORGET))]
    pub count: usize,
}

impl ForgetRecent {
    pub fn count(&self) -> Result<usize, InputError> {
        match self.count {
            n @ 1..=MAX_FORGET => Ok(n),
            _ => Err(InputError::invalid("count", "must be between 1 and 50")),
        }
    }
}

/// `POST /v1/sessions/{id}/new-scene`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScene {
    #[schemars(range(max = MAX_KEEP))]
    pub messages_to_keep: usize,
}

impl NewScene {
    pub fn keep(&self) -> Result<usize, InputError> {
        match self.messages_to_keep {
            n @ 0..=MAX_KEEP => Ok(n),
            _ => Err(InputError::invalid("messages_to_keep", "must be between 0 and 1000")),
        }
    }
}

/// `POST /v1/sessions/{id}/reset` takes no fields.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reset {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MessageList {
    pub data: Vec<Message>,
    pub has_more: bool,
    pub last_seq: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MessageBatch {
    pub data: Vec<Message>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ForgetRecentResult {
    pub deleted_count: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NewSceneResult {
    pub deleted_messages_count: u64,
    pub memories_preserved: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetResult {
    pub deleted_messages_count: u64,
    pub deleted_memories_count: u64,
}
