//! Sessions table: one item per session, keyed by (user_id, session_id). Listing reads the sparse
//! `by_activity` index (partition `<user>#active|archived`, sorted by `activity_at`), never a scan.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::item::{Item, s};
use crate::schema::sessions::{SESSION_ID, USER_ID};
use domain::{
    CharacterId, LastMessage, Message, Metadata, Seq, Session, SessionId, Settings, Timestamp, Title, UserId,
    preview_of,
};

mod claims;
mod lifecycle;
mod log;

pub use self::claims::ChatClaim;
pub(crate) use self::log::{LogHead, SeqHints, SummaryChange};

/// Items read per index page when a filter may discard some of them.
const FILTERED_PAGE: i32 = 100;

pub(crate) const TITLE: &str = "title";
pub(crate) const TITLE_FOLDED: &str = "title_folded";
pub(crate) const STATUS: &str = "status";
pub(crate) const ARCHIVED: &str = "archived";
pub(crate) const METADATA: &str = "metadata";
pub(crate) const SETTINGS: &str = "settings";
pub(crate) const MESSAGE_COUNT: &str = "message_count";
pub(crate) const LAST_SEQ: &str = "last_seq";
pub(crate) const LAST_MESSAGE: &str = "last_message";
/// Messages with `seq <= visible_after` were cleared by new-scene or reset.
pub(crate) const VISIBLE_AFTER: &str = "visible_after";
/// The revision at which `visible_after` last moved: the change feed's range tombstone.
pub(crate) const HIDDEN_REV: &str = "hidden_rev";
/// Bumped by every change to the message summary; guards read-modify-write updates.
pub(crate) const REV: &str = "rev";
/// When a message was last edited or deleted: pages read soon after are read strongly consistent.
pub(crate) const REWRITTEN_AT: &str = "rewritten_at";
pub(crate) const CREATED_AT: &str = "created_at";
pub(crate) const UPDATED_AT: &str = "updated_at";
pub(crate) const DELETED_AT: &str = "deleted_at";
/// Bumped by reset (and by deleting a session's memories): older session memories vanish at once.
pub(crate) const MEMORY_EPOCH: &str = "memory_epoch";
pub(crate) const CHARACTER_ID: &str = "character_id";
pub(crate) const AGENTS: &str = "agents";
/// The session's tools as JSON text, secrets included (never returned: `Session` shows views).
pub(crate) const TOOLS: &str = "tools";

/// A live session item: the API view plus the bookkeeping the message log needs.
#[derive(Clone, Debug)]
pub(crate) struct SessionRecord {
    pub session: Session,
    pub visible_after: u64,
    /// The revision at which new-scene or reset last moved `visible_after` (0: never).
    pub hidden_rev: u64,
    pub memory_epoch: u64,
    pub rewritten_at: Option<Timestamp>,
}

pub(crate) fn session_key(user: &UserId, id: SessionId) -> Item {
    Item::from([(USER_ID.to_owned(), s(user.as_str())), (SESSION_ID.to_owned(), s(id.to_string()))])
}

fn list_pk(user: &UserId, archived: bool) -> String {
    format!("{user}#{}", if archived { "archived" } else { "active" })
}

/// The session's `last_message` summary as stored.
#[derive(Serialize, Deserialize)]
struct LastMessageItem {
    seq: u64,
    role: String,
    preview: String,
    created_at: String,
}

impl From<&LastMessage> for LastMessageItem {
    fn from(last: &LastMessage) -> Self {
        Self {
            seq: last.seq.get(),
            role: last.role.as_str().to_owned(),
            preview: last.preview.clone(),
            created_at: last.created_at.to_string(),
        }
    }
}

impl TryFrom<LastMessageItem> for LastMessage {
    type Error = StoreError;

    fn try_from(item: LastMessageItem) -> Result<Self, StoreError> {
        let corrupt = || StoreError::corrupt("session", "last_message");
        Ok(Self {
            seq: Seq::new(item.seq).ok_or_else(corrupt)?,
            role: item.role.parse().map_err(|_| corrupt())?,
            preview: item.preview,
            created_at: item.created_at.parse().map_err(|_| corrupt())?,
        })
    }
}

pub(crate) fn last_message_value(last: &LastMessage) -> AttributeValue {
    serde_dynamo::to_attribute_value(LastMessageItem::from(last)).unwrap_or(AttributeValue::Null(true))
}

/// The session item as stored, mapped by serde_dynamo (the index projects all of it, so list
/// entries read the same way). `settings` is kept as JSON text, like a message's payload.
#[derive(Serialize, Deserialize)]
struct SessionItem {
    user_id: String,
    session_id: String,
    title: String,
    title_folded: String,
    status: String,
    archived: bool,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    character_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tools: Option<String>,
    message_count: u64,
    last_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_message: Option<LastMessageItem>,
    visible_after: u64,
    #[serde(default)]
    hidden_rev: u64,
    rev: u64,
    #[serde(default)]
    memory_epoch: u64,
    created_at: String,
    updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rewritten_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    list_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activity_at: Option<String>,
}

/// `settings` as stored: JSON text (written by create and by update alike).
fn settings_text(settings: &Settings) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| "{}".to_owned())
}

impl TryFrom<&Item> for SessionRecord {
    type Error = StoreError;

    fn try_from(item: &Item) -> Result<Self, StoreError> {
        Self::try_from(item.clone())
    }
}

impl TryFrom<Item> for SessionRecord {
    type Error = StoreError;

    /// Every attribute is parsed into its domain type: an item that breaks a rule is corrupt.
    /// (Owned: a list page's items are mapped without a copy.)
    fn try_from(item: Item) -> Result<Self, StoreError> {
        let stored: SessionItem =
            serde_dynamo::from_item(item).map_err(|_| StoreError::corrupt("session", "attributes"))?;
        let corrupt = |name| StoreError::corrupt("session", name);
        let settings = match stored.settings {
            Some(text) => match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(map)) => Settings::parse(map).map_err(|_| corrupt(SETTINGS))?,
                _ => return Err(corrupt(SETTINGS)),
            },
            None => Settings::default(),
        };
        let session = Session {
            id: stored.session_id.parse().map_err(|_| corrupt(SESSION_ID))?,
            character_id: stored
                .character_id
                .as_deref()
                .map(CharacterId::parse)
                .transpose()
                .map_err(|_| corrupt(CHARACTER_ID))?,
            agents: stored
                .agents
                .iter()
                .map(|id| CharacterId::parse(id))
                .collect::<Result<_, _>>()
                .map_err(|_| corrupt(AGENTS))?,
            tools: stored
                .tools
                .as_deref()
                .map(crate::tools::tools_from_text)
                .transpose()
                .map_err(|_| corrupt(TOOLS))?
                .unwrap_or_default(),
            title: Title::parse(&stored.title).map_err(|_| corrupt(TITLE))?,
            status: stored.status.parse().map_err(|_| corrupt(STATUS))?,
            archived: stored.archived,
            metadata: Metadata::parse(stored.metadata).map_err(|_| corrupt(METADATA))?,
            settings,
            message_count: stored.message_count,
            last_seq: stored.last_seq,
            last_message: stored.last_message.map(LastMessage::try_from).transpose()?,
            rev: stored.rev,
            created_at: stored.created_at.parse().map_err(|_| corrupt(CREATED_AT))?,
            updated_at: stored.updated_at.parse().map_err(|_| corrupt(UPDATED_AT))?,
        };
        Ok(Self {
            session,
            visible_after: stored.visible_after,
            hidden_rev: stored.hidden_rev,
            memory_epoch: stored.memory_epoch,
            rewritten_at: stored.rewritten_at.map(|at| at.parse()).transpose().map_err(|_| corrupt(REWRITTEN_AT))?,
        })
    }
}

/// Where a listing stopped: the last returned session's index key.
#[derive(Serialize, Deserialize)]
struct ListPosition {
    #[serde(rename = "a")]
    activity_at: Timestamp,
    #[serde(rename = "s")]
    session_id: SessionId,
}

/// The session's `last_message` summary of a message.
pub(crate) fn last_message_of(message: &Message) -> LastMessage {
    LastMessage {
        seq: message.seq,
        role: message.role,
        preview: preview_of(message.content.as_str()),
        created_at: message.created_at,
    }
}
