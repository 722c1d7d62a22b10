//! A session's life: create (with its greeting and claim), read, list, update, delete.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem};

use super::{LogHead, last_message_of};
use crate::bulk::Wanted;
use crate::item::{Item, Reader, b, n, s};
use crate::schema::sessions::{ACTIVITY_AT, BY_ACTIVITY, EXPIRES_AT, LIST_PK, SESSION_ID};
use crate::tx::{cancellation_reasons, reason_failed};
use crate::{Store, StoreError, condition_failed, update_failed};
use domain::{
    Cursor, Message, NewSession, Page, PageLimit, Refusal, Session, SessionChanges, SessionFilter, SessionId,
    SessionStatus, UserId,
};

use super::{
    AGENTS, ARCHIVED, CHARACTER_ID, ChatClaim, DELETED_AT, FILTERED_PAGE, LastMessageItem, ListPosition, METADATA,
    SETTINGS, STATUS, SessionItem, SessionRecord, TITLE, TITLE_FOLDED, TOOLS, UPDATED_AT, list_pk, session_key,
    settings_text,
};

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
            agents: new.agents,
            tools: new.tools,
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
            agents: session.agents.iter().map(|id| id.as_str().to_owned()).collect(),
            tools: crate::tools::tools_text(&session.tools),
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
        self.session_record_from(id, output.item())
    }

    /// The session item, for a read together with others (`get_together`).
    pub(crate) fn session_wanted(&self, user: &UserId, id: SessionId) -> Wanted {
        Wanted { table: self.tables.sessions.clone(), key: session_key(user, id) }
    }

    /// The record of a session item as read (strongly consistent): `NotFound` when there is none
    /// or it is deleted.
    pub(crate) fn session_record_from(&self, id: SessionId, item: Option<&Item>) -> Result<SessionRecord, StoreError> {
        let item = item.filter(|item| !item.contains_key(DELETED_AT));
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
            for item in output.items.unwrap_or_default() {
                let activity_at = Reader::new(&item, "session").string(ACTIVITY_AT)?.to_owned();
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
        settings_were: Option<&domain::Settings>,
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
        if let Some(agents) = &changes.agents {
            let ids = agents.iter().map(|id| s(id.as_str())).collect();
            sets.push((AGENTS, aws_sdk_dynamodb::types::AttributeValue::L(ids)));
        }
        if let Some(tools) = &changes.tools {
            // `[]` as text rather than a REMOVE: the change is one SET like the others.
            sets.push((TOOLS, s(crate::tools::tools_text(tools).unwrap_or_else(|| "[]".to_owned()))));
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
        // Settings merged over what was read are written only over that.
        let mut settings_condition = String::new();
        if let Some(were) = settings_were {
            let text = settings_text(were);
            settings_condition = if were.as_map().is_empty() {
                " AND (attribute_not_exists(#settings_were) OR #settings_were = :settings_were)".to_owned()
            } else {
                " AND #settings_were = :settings_were".to_owned()
            };
            update = update
                .expression_attribute_names("#settings_were", SETTINGS)
                .expression_attribute_values(":settings_were", s(text));
        }
        let result = update
            .expression_attribute_values(":now", s(&now))
            .condition_expression(format!(
                "attribute_exists(#sk) AND attribute_not_exists(#deleted_at){settings_condition} AND ({})",
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
                    Some(item) if !item.contains_key(DELETED_AT) => {
                        let stored = SessionRecord::try_from(&item)?.session;
                        if settings_were.is_some_and(|were| stored.settings != *were) {
                            return Err(StoreError::Miss(crate::Miss::Replaced));
                        }
                        item
                    }
                    _ => return Err(StoreError::NotFound("session")),
                }
            }
            Err(error) => return Err(StoreError::from_sdk(error)),
        };
        Ok(SessionRecord::try_from(item)?.session)
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
