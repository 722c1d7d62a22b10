//! The message item: its attributes, key and mapping to `Message`.

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::item::{Item, n, s};
use crate::schema::{
    self,
    messages::{SEQ, SESSION_ID},
};
use domain::{
    CharacterId, Content, Lease, Message, MessageAgent, MessageId, MessageStatus, MessageType, MessageUsage,
    ModelPrices, NewMessage, Part, Payload, ReplyError, Routing, Seq, SessionId, Timestamp, Usd,
};

const ID: &str = "id";

const ROLE: &str = "role";

const TYPE: &str = "type";

pub(super) const CONTENT: &str = "content";

/// A reply that called tools: its parts (text, calls, results) as JSON text.
pub(super) const PARTS: &str = "parts";

const PAYLOAD: &str = "payload";

const REPLY_TO: &str = "reply_to";

const CREATED_AT: &str = "created_at";

pub(super) const EDITED_AT: &str = "edited_at";

pub(super) const DELETED_AT: &str = "deleted_at";

pub(super) const STATUS: &str = "status";

pub(crate) const VARIANT: &str = "variant";
/// On the first message of an append made with an idempotency key: that key.
pub(crate) const DEDUPE_KEY: &str = "dedupe_key";

pub(super) const MODEL: &str = "model";

pub(super) const STOP_REASON: &str = "stop_reason";

pub(super) const USAGE: &str = "usage";

pub(super) const ERROR: &str = "error";

/// The session revision of the message's latest change after its creation: the sort key of the
/// `by_rev` index the change feed reads. A new message has none (its creation is found by seq,
/// see `changes`), so an append writes no index entry; the first change after it adds one.
pub(crate) const REV: &str = schema::messages::REV;

/// The session revision that created the message. Creations are in seq order, so the seqs created
/// after a revision are the ones above a boundary.
pub(crate) const CREATED_REV: &str = "created_rev";

/// When a generated reply's last write landed (its checkpoints and its end).
pub(super) const WRITTEN_AT: &str = "written_at";

/// Set by the write that ends a generated reply: nothing changes the reply after it.
pub(super) const FINISHED_AT: &str = "finished_at";

/// On a streaming reply: the quota day its turn counted a unit in (see `Lease`).
pub(super) const COUNTED_IN: &str = "counted_in";

pub(super) fn message_key(session: SessionId, seq: Seq) -> Item {
    Item::from([(SESSION_ID.to_owned(), s(session.to_string())), (SEQ.to_owned(), n(seq))])
}

/// The message item as stored, mapped by serde_dynamo. `payload` is kept as JSON text (its keys
/// are the caller's: a map of them would compete with the item's own attributes for size rules
/// and could nest deeper than DynamoDB allows).
#[derive(Serialize, Deserialize)]
struct MessageItem {
    session_id: String,
    seq: u64,
    id: String,
    role: String,
    #[serde(rename = "type")]
    message_type: String,
    content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usage: Option<UsageItem>,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at: Option<String>,
    /// Absent: `complete` (every message appended by a caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    /// Absent: 1 (never regenerated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variant: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorItem>,
    /// Set by the first change after the creation (edit, delete, a reply's end…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rev: Option<u64>,
    /// Absent on items written before the feed found creations by seq (their `rev` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_rev: Option<u64>,
    /// A generated reply's last write: its lease while it streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counted_in: Option<String>,
    /// A reply's agent, as it was when the reply started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<AgentItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routing: Option<RoutingItem>,
}

#[derive(Serialize, Deserialize)]
struct AgentItem {
    id: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RoutingItem {
    mode: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct UsageItem {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl From<&MessageUsage> for UsageItem {
    fn from(usage: &MessageUsage) -> Self {
        Self {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            model: usage.model.clone(),
            cost_usd: Some(usage.cost_usd.to_string()),
            estimated: usage.estimated,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct ErrorItem {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl From<&ReplyError> for ErrorItem {
    fn from(error: &ReplyError) -> Self {
        Self {
            code: error.code.clone(),
            message: error.message.clone(),
            retryable: error.retryable,
            retry_after: error.retry_after,
        }
    }
}

impl From<&Message> for MessageItem {
    fn from(message: &Message) -> Self {
        Self {
            session_id: message.session_id.to_string(),
            seq: message.seq.get(),
            id: message.id.to_string(),
            role: message.role.as_str().to_owned(),
            message_type: message.message_type.as_str().to_owned(),
            content: message.content.as_str().to_owned(),
            parts: parts_text(&message.parts),
            payload: message.payload.as_ref().and_then(|payload| serde_json::to_string(payload.as_map()).ok()),
            reply_to: message.reply_to.map(Seq::get),
            usage: message.usage.as_ref().map(UsageItem::from),
            created_at: message.created_at.to_string(),
            edited_at: message.edited_at.map(|at| at.to_string()),
            deleted_at: None,
            status: (message.status != MessageStatus::Complete).then(|| message.status.as_str().to_owned()),
            stop_reason: message.stop_reason.clone(),
            model: message.model.clone(),
            variant: (message.variant > 1 || message.model.is_some()).then_some(message.variant),
            error: message.error.as_ref().map(ErrorItem::from),
            rev: None,
            created_rev: Some(message.rev),
            written_at: message.lease.as_ref().map(|lease| lease.renewed_at.to_string()),
            finished_at: None,
            counted_in: message.lease.as_ref().and_then(|lease| lease.counted_in.clone()),
            agent: message.agent.as_ref().map(|agent| AgentItem {
                id: agent.id.as_str().to_owned(),
                name: agent.name.clone(),
                avatar_url: agent.avatar_url.clone(),
            }),
            routing: message
                .routing
                .as_ref()
                .map(|routing| RoutingItem { mode: routing.mode.as_str().to_owned(), reason: routing.reason.clone() }),
        }
    }
}

/// A reply's parts as stored: JSON text, absent when it called no tool.
pub(super) fn parts_text(parts: &[Part]) -> Option<String> {
    (!parts.is_empty()).then(|| serde_json::to_string(parts).unwrap_or_else(|_| "[]".to_owned()))
}

pub(super) fn usage_value(usage: &MessageUsage) -> Result<aws_sdk_dynamodb::types::AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(UsageItem::from(usage)).map_err(StoreError::internal)
}

pub(super) fn error_value(error: &ReplyError) -> Result<aws_sdk_dynamodb::types::AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(ErrorItem::from(error)).map_err(StoreError::internal)
}

pub(super) fn message_item(message: &Message) -> Result<Item, StoreError> {
    serde_dynamo::to_item(MessageItem::from(message)).map_err(StoreError::internal)
}

/// A stored message and whether it was deleted.
pub(crate) struct StoredMessage {
    pub message: Message,
    pub deleted: bool,
}

impl TryFrom<Item> for StoredMessage {
    type Error = StoreError;

    /// Every attribute is parsed into its domain type: an item that breaks a rule is corrupt, not
    /// skipped.
    fn try_from(item: Item) -> Result<Self, StoreError> {
        let stored: MessageItem =
            serde_dynamo::from_item(item).map_err(|_| StoreError::corrupt("message", "attributes"))?;
        let corrupt = |name| StoreError::corrupt("message", name);
        let payload = stored
            .payload
            .map(|text| match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(map)) => Payload::parse(map).map_err(|_| corrupt(PAYLOAD)),
                _ => Err(corrupt(PAYLOAD)),
            })
            .transpose()?;
        let variant = stored.variant.unwrap_or(1).max(1);
        let created_at: Timestamp = stored.created_at.parse().map_err(|_| corrupt(CREATED_AT))?;
        let status: MessageStatus =
            stored.status.as_deref().map(str::parse).transpose().map_err(|_| corrupt("status"))?.unwrap_or_default();
        // A generated reply that has not ended (streaming, or cancelled before its generator's
        // end) holds a lease.
        let unfinished = stored.model.is_some()
            && stored.finished_at.is_none()
            && matches!(status, MessageStatus::Streaming | MessageStatus::Cancelled | MessageStatus::RequiresAction);
        let lease = match (unfinished, stored.written_at) {
            (false, _) => None,
            (true, written_at) => Some(Lease {
                renewed_at: written_at
                    .map(|at| at.parse())
                    .transpose()
                    .map_err(|_| corrupt(WRITTEN_AT))?
                    .unwrap_or(created_at),
                counted_in: stored.counted_in,
            }),
        };
        let message = Message {
            id: MessageId::parse(&stored.id).ok_or_else(|| corrupt(ID))?,
            session_id: stored.session_id.parse().map_err(|_| corrupt(SESSION_ID))?,
            seq: Seq::new(stored.seq).ok_or_else(|| corrupt(SEQ))?,
            role: stored.role.parse().map_err(|_| corrupt(ROLE))?,
            message_type: MessageType::parse(&stored.message_type).map_err(|_| corrupt(TYPE))?,
            content: Content::parse(stored.content).map_err(|_| corrupt(CONTENT))?,
            parts: stored
                .parts
                .map(|text| serde_json::from_str(&text).map_err(|_| corrupt(PARTS)))
                .transpose()?
                .unwrap_or_default(),
            payload,
            reply_to: stored.reply_to.map(|seq| Seq::new(seq).ok_or_else(|| corrupt(REPLY_TO))).transpose()?,
            usage: stored
                .usage
                .map(|usage| {
                    let cost = usage.cost_usd.as_deref().unwrap_or("0").parse().map_err(|_| corrupt("usage"))?;
                    Ok::<_, StoreError>(MessageUsage {
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                        model: usage.model,
                        cost_usd: Usd(cost),
                        estimated: usage.estimated,
                    })
                })
                .transpose()?,
            created_at,
            edited_at: stored.edited_at.map(|at| at.parse()).transpose().map_err(|_| corrupt(EDITED_AT))?,
            status,
            stop_reason: stored.stop_reason,
            model: stored.model,
            variant,
            variant_count: variant,
            is_regenerated: variant > 1,
            error: stored.error.map(|error| ReplyError {
                code: error.code,
                message: error.message,
                retryable: error.retryable,
                retry_after: error.retry_after,
            }),
            rev: stored.rev.or(stored.created_rev).unwrap_or_default(),
            agent: stored
                .agent
                .map(|agent| {
                    Ok::<_, StoreError>(MessageAgent {
                        id: CharacterId::parse(&agent.id).map_err(|_| corrupt("agent"))?,
                        name: agent.name,
                        avatar_url: agent.avatar_url,
                    })
                })
                .transpose()?,
            routing: stored
                .routing
                .map(|routing| {
                    Ok::<_, StoreError>(Routing {
                        mode: routing.mode.parse().map_err(|_| corrupt("routing"))?,
                        reason: routing.reason,
                    })
                })
                .transpose()?,
            lease,
        };
        Ok(Self { message, deleted: stored.deleted_at.is_some() })
    }
}

/// The messages an append stores: consecutive seqs after `last_seq`, reported usage priced, all
/// at the session revision `rev`.
pub(super) fn stored_messages(
    session_id: SessionId,
    messages: &[NewMessage],
    last_seq: u64,
    rev: u64,
    now: Timestamp,
    prices: &ModelPrices,
) -> Vec<Message> {
    messages
        .iter()
        .enumerate()
        .map(|(index, new)| Message {
            id: MessageId::generate(),
            session_id,
            seq: Seq::after(last_seq + index as u64),
            role: new.role,
            message_type: new.message_type.clone(),
            content: new.content.clone(),
            parts: Vec::new(),
            payload: new.payload.clone(),
            reply_to: new.reply_to,
            usage: new.usage.as_ref().map(|usage| prices.price(usage)),
            created_at: now,
            edited_at: None,
            status: if new.reply.is_some() { MessageStatus::Streaming } else { MessageStatus::Complete },
            stop_reason: None,
            model: new.reply.clone(),
            variant: 1,
            variant_count: 1,
            is_regenerated: false,
            error: None,
            agent: new.agent.clone(),
            routing: new.routing.clone(),
            rev,
            // A reply's lease starts with its append; `counted_in` is the append's to fill.
            lease: new.reply.is_some().then_some(Lease { renewed_at: now, counted_in: None }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use domain::Role;

    /// The item keeps the layout every stored message has: strings, numbers, a usage map, and
    /// the payload as JSON text; reading it back gives the same message.
    #[test]
    fn a_message_round_trips_through_its_stored_layout() {
        let now: Timestamp = "2026-12-01T10:00:00.000000Z".parse().unwrap_or_else(|_| unreachable!());
        let payload = serde_json::json!({"blocks": [1, 2]}).as_object().cloned().unwrap_or_default();
        let message = Message {
            id: MessageId::generate(),
            session_id: SessionId::generate(),
            seq: Seq::after(6),
            role: Role::Assistant,
            message_type: MessageType::default(),
            content: Content::parse("hello 👩‍👩‍👧".to_owned()).unwrap_or_else(|_| unreachable!()),
            parts: vec![
                Part::ToolCall { id: "c1".to_owned(), name: "clock".to_owned(), arguments: serde_json::json!({}) },
                Part::ToolResult {
                    tool_call_id: "c1".to_owned(),
                    name: "clock".to_owned(),
                    output: Some(serde_json::json!({"time": "10:00"})),
                    error: None,
                },
                Part::Text { text: "hello 👩‍👩‍👧".to_owned() },
            ],
            payload: Some(Payload::parse(payload).unwrap_or_else(|_| unreachable!())),
            reply_to: Some(Seq::after(5)),
            usage: Some(MessageUsage {
                input_tokens: 10,
                output_tokens: 3,
                model: "m".to_owned(),
                cost_usd: Usd("0.0012".parse().unwrap_or_default()),
                estimated: true,
            }),
            created_at: now,
            edited_at: None,
            status: MessageStatus::Failed,
            stop_reason: Some("length".to_owned()),
            model: Some("m".to_owned()),
            variant: 1,
            variant_count: 1,
            is_regenerated: false,
            error: Some(ReplyError {
                code: "llm_error".to_owned(),
                message: "x".to_owned(),
                retryable: true,
                retry_after: None,
            }),
            agent: Some(MessageAgent {
                id: CharacterId::parse("chef-marco").unwrap_or_else(|_| unreachable!()),
                name: "Chef Marco".to_owned(),
                avatar_url: None,
            }),
            routing: Some(Routing { mode: domain::ReplyMode::Orchestrated, reason: "named".to_owned() }),
            rev: 9,
            lease: None,
        };
        let item = message_item(&message).unwrap_or_else(|_| unreachable!());
        assert_eq!(item.get("seq"), Some(&AttributeValue::N("7".to_owned())));
        assert_eq!(item.get("reply_to"), Some(&AttributeValue::N("6".to_owned())));
        assert_eq!(item.get("role"), Some(&AttributeValue::S("assistant".to_owned())));
        assert_eq!(item.get("payload"), Some(&AttributeValue::S(r#"{"blocks":[1,2]}"#.to_owned())));
        assert!(
            matches!(item.get("usage"), Some(AttributeValue::M(usage)) if usage.get("input_tokens") == Some(&AttributeValue::N("10".to_owned())))
        );
        assert!(!item.contains_key("edited_at") && !item.contains_key("deleted_at"), "absent, not NULL");
        let stored = StoredMessage::try_from(item.clone()).unwrap_or_else(|_| unreachable!());
        assert_eq!(stored.message, message);
        assert!(!stored.deleted);

        // A streaming reply keeps its lease: when it was renewed, the day its turn counted in.
        let lease = Lease { renewed_at: now, counted_in: Some("2026-12-01".to_owned()) };
        let streaming = Message {
            status: MessageStatus::Streaming,
            error: None,
            usage: None,
            stop_reason: None,
            lease: Some(lease.clone()),
            ..message
        };
        let leased = message_item(&streaming).unwrap_or_else(|_| unreachable!());
        assert_eq!(leased.get("counted_in"), Some(&AttributeValue::S("2026-12-01".to_owned())));
        let stored = StoredMessage::try_from(leased).unwrap_or_else(|_| unreachable!());
        assert_eq!(stored.message.lease, Some(lease));

        let mut broken = item.clone();
        broken.insert("seq".to_owned(), AttributeValue::N("0".to_owned()));
        assert!(StoredMessage::try_from(broken).is_err(), "a seq of 0 is corrupt, not skipped");
        let mut deleted = item;
        deleted.insert("deleted_at".to_owned(), AttributeValue::S(now.to_string()));
        assert!(StoredMessage::try_from(deleted).is_ok_and(|stored| stored.deleted));
    }
}
