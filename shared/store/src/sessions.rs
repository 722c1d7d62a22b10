//! Sessions table: one item per session, keyed by (user_id, session_id). Listing reads the sparse
//! `by_activity` index (partition `<user>#active|archived`, sorted by `activity_at`), never a scan.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::item::{Item, Reader, b, n, s};
use super::messages::{LogHead, last_message_of};
use super::schema::sessions::{ACTIVITY_AT, BY_ACTIVITY, EXPIRES_AT, LIST_PK, SESSION_ID, USER_ID};
use super::tx::{cancellation_reasons, reason_failed};
use super::{Store, StoreError, condition_failed, update_failed};
use domain::{
    CharacterId, Cursor, LastMessage, Message, Metadata, NewSession, Page, PageLimit, Refusal, Seq, Session,
    SessionChanges, SessionFilter, SessionId, SessionStatus, Settings, Timestamp, Title, UserId,
};

/// How long a deleted session's item stays (invisible) before DynamoDB's TTL purges it.
/// Items read per index page when a filter may discard some of them.
const FILTERED_PAGE: i32 = 100;

pub(super) const TITLE: &str = "title";
pub(super) const TITLE_FOLDED: &str = "title_folded";
pub(super) const STATUS: &str = "status";
pub(super) const ARCHIVED: &str = "archived";
pub(super) const METADATA: &str = "metadata";
pub(super) const SETTINGS: &str = "settings";
pub(super) const MESSAGE_COUNT: &str = "message_count";
pub(super) const LAST_SEQ: &str = "last_seq";
pub(super) const LAST_MESSAGE: &str = "last_message";
/// Messages with `seq <= visible_after` were cleared by new-scene or reset.
pub(super) const VISIBLE_AFTER: &str = "visible_after";
/// The revision at which `visible_after` last moved: the change feed's range tombstone.
pub(super) const HIDDEN_REV: &str = "hidden_rev";
/// Bumped by every change to the message summary; guards read-modify-write updates.
pub(super) const REV: &str = "rev";
/// When a message was last edited or deleted: pages read soon after are read strongly consistent.
pub(super) const REWRITTEN_AT: &str = "rewritten_at";
pub(super) const CREATED_AT: &str = "created_at";
pub(super) const UPDATED_AT: &str = "updated_at";
pub(super) const DELETED_AT: &str = "deleted_at";
/// Bumped by reset (and by deleting a session's memories): older session memories vanish at once.
pub(super) const MEMORY_EPOCH: &str = "memory_epoch";
pub(super) const CHARACTER_ID: &str = "character_id";

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

pub(super) fn session_key(user: &UserId, id: SessionId) -> Item {
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

pub(super) fn last_message_value(last: &LastMessage) -> AttributeValue {
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

    /// Every attribute is parsed into its domain type: an item that breaks a rule is corrupt.
    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let stored: SessionItem =
            serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("session", "attributes"))?;
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

/// Which chat a new session becomes the caller's chat with a character in place of.
pub struct ChatClaim {
    pub character_id: CharacterId,
    /// The recorded chat it replaces (deleted since), or `None` when there is none.
    pub replaces: Option<SessionId>,
}

/// The caller's chat with a character is recorded in the caller's limits partition
/// (`chat#<character_id>`), beside their other per-user items.
fn chat_key(user: &UserId, character: &CharacterId) -> Item {
    Item::from([
        (super::schema::limits::USER_ID.to_owned(), s(user.as_str())),
        (super::schema::limits::ITEM.to_owned(), s(format!("chat#{character}"))),
    ])
}

/// Where a listing stopped: the last returned session's index key.
#[derive(Serialize, Deserialize)]
struct ListPosition {
    #[serde(rename = "a")]
    activity_at: Timestamp,
    #[serde(rename = "s")]
    session_id: SessionId,
}

impl Store {
    /// Creates a session, with its greeting as seq 1 when it has one, and (for `claim`) as the
    /// caller's chat with the character — all in one write. A claim that lost to another request
    /// is `StoreError::Refused(Conflict)`; the caller reads the winner.
    pub async fn create_session(
        &self,
        user: &UserId,
        new: NewSession,
        claim: Option<&ChatClaim>,
    ) -> Result<Session, StoreError> {
        let now = self.now();
        let id = SessionId::generate();
        // The greeting is the log's first change.
        let count = u64::from(new.greeting.is_some());
        let greeting = new.greeting.map(|content| Message::greeting(id, content, now, count));
        let last_message = greeting.as_ref().map(last_message_of);
        let session = Session {
            id,
            character_id: new.character_id,
            title: new.title.unwrap_or_default(),
            status: SessionStatus::Open,
            archived: false,
            metadata: new.metadata,
            settings: new.settings,
            message_count: count,
            last_seq: count,
            last_message: last_message.clone(),
            rev: count,
            created_at: now,
            updated_at: now,
        };
        let item = SessionItem {
            user_id: user.as_str().to_owned(),
            session_id: session.id.to_string(),
            title: session.title.as_str().to_owned(),
            title_folded: session.title.folded(),
            status: session.status.as_str().to_owned(),
            archived: false,
            metadata: session.metadata.pairs().clone(),
            settings: Some(settings_text(&session.settings)),
            character_id: session.character_id.as_ref().map(ToString::to_string),
            message_count: count,
            last_seq: count,
            last_message: last_message.as_ref().map(LastMessageItem::from),
            visible_after: 0,
            hidden_rev: 0,
            rev: count,
            memory_epoch: 0,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            rewritten_at: None,
            list_pk: Some(list_pk(user, false)),
            activity_at: Some(now.to_string()),
        };
        let item: Item = serde_dynamo::to_item(item).map_err(StoreError::internal)?;
        let put = Put::builder()
            .table_name(&self.tables.sessions)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#sk)")
            .expression_attribute_names("#sk", SESSION_ID)
            .build()
            .map_err(StoreError::internal)?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        if let Some(greeting) = &greeting {
            items.push(TransactWriteItem::builder().put(self.new_message_put(greeting)?).build());
        }
        if let Some(claim) = claim {
            items.push(TransactWriteItem::builder().put(self.chat_claim_put(user, claim, session.id)?).build());
        }
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        if let Err(error) = result {
            let reasons = cancellation_reasons(error)?;
            let lost = claim.is_some() && reason_failed(reasons.last());
            return Err(if lost {
                Refusal::Conflict("another request opened this chat first".to_owned()).into()
            } else {
                StoreError::Unavailable("the session write was cancelled; retry".into())
            });
        }
        self.seq_hints.remember(session.id, LogHead { last_seq: count, rev: session.rev });
        Ok(session)
    }

    /// The session recorded as the caller's chat with `character`, if any (it may since have
    /// been deleted).
    pub async fn character_chat(
        &self,
        user: &UserId,
        character: &CharacterId,
    ) -> Result<Option<SessionId>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(chat_key(user, character)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map(|item| Reader::new(item, "character chat").parse(SESSION_ID)).transpose()
    }

    /// Records a session as the caller's chat with a character if there is none yet; `false`
    /// when there is.
    pub async fn claim_character_chat(
        &self,
        user: &UserId,
        claim: &ChatClaim,
        session: SessionId,
    ) -> Result<bool, StoreError> {
        let result = self.put_item(self.chat_claim_put(user, claim, session)?).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(error) => Err(StoreError::from_sdk(error)),
        }
    }

    /// The chat record's write: only over no record, or over the one `claim` replaces.
    fn chat_claim_put(&self, user: &UserId, claim: &ChatClaim, session: SessionId) -> Result<Put, StoreError> {
        let mut item = chat_key(user, &claim.character_id);
        item.insert(SESSION_ID.to_owned(), s(session.to_string()));
        let put = Put::builder().table_name(&self.tables.limits).set_item(Some(item));
        let put = match claim.replaces {
            None => put
                .condition_expression("attribute_not_exists(#item)")
                .expression_attribute_names("#item", super::schema::limits::ITEM),
            Some(old) => put
                .condition_expression("#session_id = :old")
                .expression_attribute_names("#session_id", SESSION_ID)
                .expression_attribute_values(":old", s(old.to_string())),
        };
        put.build().map_err(StoreError::internal)
    }

    pub async fn get_session(&self, user: &UserId, id: SessionId) -> Result<Session, StoreError> {
        Ok(self.session_record(user, id).await?.session)
    }

    /// The live session item, read strongly consistent; deleted or foreign sessions are `NotFound`.
    pub(crate) async fn session_record(&self, user: &UserId, id: SessionId) -> Result<SessionRecord, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let item = output.item().filter(|item| !item.contains_key(DELETED_AT));
        let record = SessionRecord::try_from(item.ok_or(StoreError::NotFound("session"))?)?;
        self.seq_hints.remember(id, LogHead::of(&record));
        Ok(record)
    }

    pub async fn list_sessions(
        &self,
        user: &UserId,
        filter: &SessionFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Session>, StoreError> {
        let partition = list_pk(user, filter.archived);
        let mut start_key = match cursor {
            Some(cursor) => {
                let position: ListPosition = cursor.decode()?;
                let mut key = session_key(user, position.session_id);
                key.insert(LIST_PK.to_owned(), s(&partition));
                key.insert(ACTIVITY_AT.to_owned(), s(position.activity_at.to_string()));
                Some(key)
            }
            None => None,
        };
        let wanted = limit.as_usize() + 1;
        let mut found: Vec<(Session, String)> = Vec::with_capacity(wanted);
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.tables.sessions)
                .index_name(BY_ACTIVITY)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", LIST_PK)
                .expression_attribute_values(":pk", s(&partition))
                .scan_index_forward(false)
                .set_exclusive_start_key(start_key.take());
            let mut conditions = Vec::new();
            if let Some(status) = filter.status {
                conditions.push("#status = :status");
                query = query
                    .expression_attribute_names("#status", STATUS)
                    .expression_attribute_values(":status", s(status.as_str()));
            }
            if let Some(character) = &filter.character_id {
                conditions.push("#character_id = :character_id");
                query = query
                    .expression_attribute_names("#character_id", CHARACTER_ID)
                    .expression_attribute_values(":character_id", s(character.as_str()));
            }
            if let Some(text) = &filter.title_contains {
                conditions.push("contains(#title_folded, :q)");
                query = query
                    .expression_attribute_names("#title_folded", TITLE_FOLDED)
                    .expression_attribute_values(":q", s(text));
            }
            let page_size = if conditions.is_empty() { (wanted - found.len()) as i32 } else { FILTERED_PAGE };
            if !conditions.is_empty() {
                query = query.filter_expression(conditions.join(" AND "));
            }
            let output = query.limit(page_size).send().await.map_err(StoreError::from_sdk)?;
            for item in output.items() {
                let activity_at = Reader::new(item, "session").string(ACTIVITY_AT)?.to_owned();
                found.push((SessionRecord::try_from(item)?.session, activity_at));
                if found.len() == wanted {
                    break;
                }
            }
            match output.last_evaluated_key {
                Some(key) if found.len() < wanted => start_key = Some(key),
                _ => break,
            }
        }
        let has_more = found.len() > limit.as_usize();
        found.truncate(limit.as_usize());
        let next_cursor = match found.last() {
            Some((session, activity_at)) if has_more => Some(Cursor::encode(&ListPosition {
                activity_at: activity_at.parse().map_err(|_| StoreError::corrupt("session", ACTIVITY_AT))?,
                session_id: session.id,
            })),
            _ => None,
        };
        Ok(Page { data: found.into_iter().map(|(session, _)| session).collect(), has_more, next_cursor })
    }

    pub async fn update_session(
        &self,
        user: &UserId,
        id: SessionId,
        changes: SessionChanges,
    ) -> Result<Session, StoreError> {
        let now = self.now().to_string();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, id)))
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut sets = Vec::new();
        if let Some(title) = &changes.title {
            sets.push((TITLE, s(title.as_str())));
            sets.push((TITLE_FOLDED, s(title.folded())));
        }
        if let Some(status) = changes.status {
            sets.push((STATUS, s(status.as_str())));
        }
        if let Some(metadata) = &changes.metadata {
            sets.push((METADATA, serde_dynamo::to_attribute_value(metadata.pairs()).map_err(StoreError::internal)?));
        }
        if let Some(settings) = &changes.settings {
            sets.push((SETTINGS, s(settings_text(settings))));
        }
        if let Some(archived) = changes.archived {
            sets.push((ARCHIVED, b(archived)));
            sets.push((LIST_PK, s(list_pk(user, archived))));
        }
        // A change that changes nothing writes nothing: `updated_at` stays and the session keeps
        // its place in the list. The condition asks for at least one attribute to differ.
        let mut assignments = Vec::with_capacity(sets.len() + 2);
        let mut differences = Vec::with_capacity(sets.len());
        for (index, (name, value)) in sets.into_iter().enumerate() {
            assignments.push(format!("#a{index} = :v{index}"));
            if name != LIST_PK {
                differences.push(format!("attribute_not_exists(#a{index}) OR #a{index} <> :v{index}"));
            }
            update = update
                .expression_attribute_names(format!("#a{index}"), name)
                .expression_attribute_values(format!(":v{index}"), value);
        }
        if differences.is_empty() {
            return Ok(self.session_record(user, id).await?.session);
        }
        for (name, placeholder) in [(UPDATED_AT, "#updated_at"), (ACTIVITY_AT, "#activity_at")] {
            assignments.push(format!("{placeholder} = :now"));
            update = update.expression_attribute_names(placeholder, name);
        }
        let result = update
            .expression_attribute_values(":now", s(&now))
            .condition_expression(format!(
                "attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND ({})",
                differences.join(" OR ")
            ))
            .update_expression(format!("SET {}", assignments.join(", ")))
            .send()
            .await;
        let item = match result {
            Ok(output) => output.attributes.ok_or_else(|| StoreError::corrupt("session", "attributes"))?,
            Err(error) if condition_failed(&error) => {
                // Either no such live session, or nothing to change: the old item says which.
                let old = match error.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                match old {
                    Some(item) if !item.contains_key(DELETED_AT) => item,
                    _ => return Err(StoreError::NotFound("session")),
                }
            }
            Err(error) => return Err(StoreError::from_sdk(error)),
        };
        Ok(SessionRecord::try_from(&item)?.session)
    }

    /// Soft delete: the session (and with it every message) disappears from reads at once; the
    /// item is purged by TTL after the retention period, its messages and memories after the
    /// hourly job's sweep has stamped them.
    pub async fn delete_session(&self, user: &UserId, id: SessionId) -> Result<(), StoreError> {
        self.list_sweep(user, id).await?;
        let now = self.now();
        let expires_at = self.expires_at(now);
        self.client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, id)))
            .condition_expression("attribute_exists(#sk) AND attribute_not_exists(#deleted_at)")
            .update_expression("SET #deleted_at = :now, #expires_at = :expires_at REMOVE #list_pk, #activity_at")
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_names("#list_pk", LIST_PK)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":expires_at", n(expires_at))
            .send()
            .await
            .map_err(|error| update_failed(error, || StoreError::NotFound("session")))?;
        self.seq_hints.forget(id);
        Ok(())
    }
}

/// The session item's log summary as the message writes change it. This module owns the session
/// item: every write to it is built here.
impl Store {
    /// The session update of an append of `added` messages ending with `last`: it commits only on
    /// top of `expected` (the seq and the revision), for this user's live, open session, and moves
    /// the revision to `expected.rev + 1`.
    pub(super) fn session_append_update(
        &self,
        user: &UserId,
        session_id: SessionId,
        expected: LogHead,
        last: &LastMessage,
        added: usize,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression(
                "attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #status = :open \
                 AND #last_seq = :expected AND #rev = :rev",
            )
            .update_expression(
                "SET #last_seq = :new_last, #count = #count + :added, #last_message = :last_message, \
                 #updated_at = :now, #activity_at = :now, #rev = :next_rev",
            )
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#last_message", LAST_MESSAGE)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":expected", n(expected.last_seq))
            .expression_attribute_values(":rev", n(expected.rev))
            .expression_attribute_values(":next_rev", n(expected.rev + 1))
            .expression_attribute_values(":new_last", n(last.seq))
            .expression_attribute_values(":added", n(added))
            .expression_attribute_values(":last_message", last_message_value(last))
            .expression_attribute_values(":now", s(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::internal)
    }

    /// The session update of a change to one message that leaves the summary's counts (a
    /// reply's end, a cancel): it commits at `expected.rev + 1`, on top of `expected`, and shows
    /// `last` as the summary's latest message when given.
    pub(super) fn session_rev_update(
        &self,
        user: &UserId,
        session_id: SessionId,
        expected: LogHead,
        last: Option<&LastMessage>,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #rev = :rev")
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":rev", n(expected.rev))
            .expression_attribute_values(":next_rev", n(expected.rev + 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut expression = "SET #rev = :next_rev".to_owned();
        if let Some(last) = last {
            expression.push_str(", #last_message = :last_message");
            update = update
                .expression_attribute_names("#last_message", LAST_MESSAGE)
                .expression_attribute_values(":last_message", last_message_value(last));
        }
        update.update_expression(expression).build().map_err(StoreError::internal)
    }

    /// The session update of a read-modify-write: it commits only if the session is still at the
    /// revision it was read at. `rewrites`: message items change too (an edit or delete).
    pub(super) fn session_summary_update(
        &self,
        user: &UserId,
        session_id: SessionId,
        summary: &SummaryChange,
        rewrites: bool,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("#rev = :rev AND #status = :open AND attribute_not_exists(#deleted_at)")
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_values(":rev", n(summary.rev))
            .expression_attribute_values(":next_rev", n(summary.next_rev()))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":removed", n(summary.removed))
            .expression_attribute_values(":now", s(summary.now.to_string()));
        let mut sets =
            vec!["#rev = :next_rev", "#count = #count - :removed", "#updated_at = :now", "#activity_at = :now"];
        if rewrites {
            // Pages read in the next moments must not come from a replica that missed this.
            sets.push("#rewritten_at = :now");
            update = update.expression_attribute_names("#rewritten_at", REWRITTEN_AT);
        }
        let mut removes = Vec::new();
        match &summary.last_message {
            Some(Some(last)) => {
                sets.push("#last_message = :last_message");
                update = update
                    .expression_attribute_names("#last_message", LAST_MESSAGE)
                    .expression_attribute_values(":last_message", last_message_value(last));
            }
            Some(None) => {
                removes.push("#last_message");
                update = update.expression_attribute_names("#last_message", LAST_MESSAGE);
            }
            None => {}
        }
        if let Some(watermark) = summary.visible_after {
            sets.push("#visible_after = :visible_after");
            sets.push("#hidden_rev = :next_rev");
            update = update
                .expression_attribute_names("#visible_after", VISIBLE_AFTER)
                .expression_attribute_names("#hidden_rev", HIDDEN_REV)
                .expression_attribute_values(":visible_after", n(watermark));
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        update.update_expression(expression).build().map_err(StoreError::internal)
    }

    /// Hides every message (the watermark moves to `last_seq`) and moves the session's memories to
    /// a fresh epoch, in one conditional write; returns the session as it was.
    pub(super) async fn clear_log(&self, user: &UserId, session_id: SessionId) -> Result<SessionRecord, StoreError> {
        let now = self.now();
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #status = :open")
            .update_expression(
                "SET #visible_after = #last_seq, #count = :zero, #updated_at = :now, #activity_at = :now, \
                 #rev = #rev + :one, #hidden_rev = #rev + :one, #epoch = if_not_exists(#epoch, :zero) + :one \
                 REMOVE #last_message",
            )
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#visible_after", VISIBLE_AFTER)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#hidden_rev", HIDDEN_REV)
            .expression_attribute_names("#last_message", LAST_MESSAGE)
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_string()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match output {
            Ok(output) => {
                let old = output.attributes().ok_or_else(|| StoreError::corrupt("session", "attributes"))?;
                SessionRecord::try_from(old)
            }
            Err(error) => {
                let old = error.as_service_error().and_then(|service| match service {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                        failed,
                    ) => Some(failed.item().cloned()),
                    _ => None,
                });
                match old {
                    Some(Some(item)) if !item.contains_key(DELETED_AT) => {
                        Err(StoreError::Refused(Refusal::SessionClosed(SessionRecord::try_from(&item)?.session.status)))
                    }
                    Some(_) => Err(StoreError::NotFound("session")),
                    None => Err(StoreError::from_sdk(error)),
                }
            }
        }
    }

    /// A check, for a memory write's transaction, that the session is live at `epoch`.
    pub(super) fn session_at_epoch(
        &self,
        user: &UserId,
        session_id: SessionId,
        epoch: u64,
    ) -> Result<ConditionCheck, StoreError> {
        // Open, too: a session that refuses message changes (locked, closed) takes no new memories.
        let condition = if epoch == 0 {
            "attribute_not_exists(#deleted_at) AND attribute_exists(#epoch) AND #epoch = :epoch AND #status = :open"
        } else {
            "attribute_not_exists(#deleted_at) AND #epoch = :epoch AND #status = :open"
        };
        ConditionCheck::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression(condition)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_values(":epoch", n(epoch))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .build()
            .map_err(StoreError::internal)
    }

    /// Moves a live session's memories to a fresh epoch; returns the old epoch.
    pub(super) async fn bump_memory_epoch(&self, user: &UserId, session_id: SessionId) -> Result<u64, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#epoch) AND attribute_not_exists(#deleted_at)")
            .update_expression("SET #epoch = #epoch + :one")
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| update_failed(error, || StoreError::NotFound("session")))?;
        let old = output.attributes().ok_or_else(|| StoreError::corrupt("session", MEMORY_EPOCH))?;
        Reader::new(old, "session").number(MEMORY_EPOCH)
    }
}

/// How a read-modify-write changes the session summary.
pub(super) struct SummaryChange {
    /// The revision the session was read at; the change commits at the next one.
    pub rev: u64,
    /// The session's `last_seq` (a read-modify-write never appends).
    pub last_seq: u64,
    pub now: Timestamp,
    pub removed: u64,
    /// `Some(None)` clears `last_message`; `None` leaves it.
    pub last_message: Option<Option<LastMessage>>,
    pub visible_after: Option<u64>,
}

impl SummaryChange {
    pub(super) fn new(record: &SessionRecord, now: Timestamp) -> Self {
        Self {
            rev: record.session.rev,
            last_seq: record.session.last_seq,
            now,
            removed: 0,
            last_message: None,
            visible_after: None,
        }
    }

    /// The revision this change commits at.
    pub(super) fn next_rev(&self) -> u64 {
        self.rev + 1
    }
}
