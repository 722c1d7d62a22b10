//! Memories table: every item of a user in one partition (`user_id`), sorted by `item`:
//!
//! - `m#<scope>#<memory_id>` — a memory; `rank` feeds the `by_rank` LSI (importance, then newest),
//!   `memory_id` the `by_id` LSI;
//! - `d#<scope>#<hash>` — the dedupe marker of one (type, content) in a scope;
//! - `c#<scope>` — the scope's memory count, which enforces the cap.
//!
//! `<scope>` is `g` for the user's global memories and `s:<session_id>:<epoch>` for a session's.
//! Resetting a session bumps its `memory_epoch` in the same write that clears its messages, so
//! its memories disappear at once without a multi-item delete.

use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::item::{Item, Reader, n, s};
use super::schema::memories::{BY_ID, BY_RANK, ITEM, MEMORY_ID, RANK, USER_ID};
use super::tx::{cancellation_reasons, reason_failed};
use super::{Store, StoreError};
use domain::{
    Cursor, Importance, Memory, MemoryChanges, MemoryContent, MemoryFilter, MemoryId, MemoryScope, MemoryType,
    NewMemory, PageLimit, Refusal, SessionId, SessionStatus, Timestamp, UserId,
};

/// At most this many memories per scope.
pub const MAX_PER_SCOPE: u64 = 500;
const SESSION_ID: &str = "session_id";
const MEMORY_TYPE: &str = "memory_type";
const CONTENT: &str = "content";
const IMPORTANCE: &str = "importance";
const CREATED_AT: &str = "created_at";
const UPDATED_AT: &str = "updated_at";
const COUNT: &str = "n";
/// Memories deleted per transaction by a scope-wide delete (2 items each, plus the counter).
const DELETE_CHUNK: usize = 49;
const QUERY_PAGE: i32 = 100;

/// A scope with its storage key (for a session: at its current memory epoch).
#[derive(Clone, Debug)]
pub(crate) struct ScopeKey {
    scope: MemoryScope,
    pub(super) key: String,
    /// The session's epoch, which a write checks is still current.
    epoch: Option<u64>,
}

impl ScopeKey {
    fn global() -> Self {
        Self { scope: MemoryScope::Global, key: "g".to_owned(), epoch: None }
    }

    pub(crate) fn session(session_id: SessionId, epoch: u64) -> Self {
        Self { scope: MemoryScope::Session(session_id), key: format!("s:{session_id}:{epoch}"), epoch: Some(epoch) }
    }

    fn memory_item(&self, id: MemoryId) -> String {
        format!("m#{}#{id}", self.key)
    }

    fn memory_prefix(&self) -> String {
        format!("m#{}#", self.key)
    }

    fn marker_item(&self, hash: &str) -> String {
        format!("d#{}#{hash}", self.key)
    }

    pub(crate) fn counter_item(&self) -> String {
        format!("c#{}", self.key)
    }
}

/// Sorts by importance (high first), then creation (new first), then id: the rank without scope.
fn rank_suffix(importance: Importance, created_at: Timestamp, id: MemoryId) -> String {
    let micros = created_at.datetime().unix_timestamp_nanos() / 1_000;
    let inverted = 9_999_999_999_999_999_i128 - micros;
    format!("{:02}#{inverted:016}#{id}", 10 - importance.get())
}

fn dedupe_hash(memory_type: MemoryType, content: &MemoryContent) -> String {
    let digest = Sha256::digest(format!("{}\n{}", memory_type.as_str(), content.as_str()).as_bytes());
    digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

fn key(user: &UserId, item: String) -> Item {
    Item::from([(USER_ID.to_owned(), s(user.as_str())), (ITEM.to_owned(), s(item))])
}

/// A stored memory with what the store needs to change it.
pub(super) struct StoredMemory {
    pub(super) memory: Memory,
    pub(super) scope_key: String,
    hash: String,
    rank: String,
}

/// The memory item as stored, mapped by serde_dynamo.
#[derive(Serialize, Deserialize)]
struct MemoryItem {
    user_id: String,
    item: String,
    memory_id: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    memory_type: String,
    content: String,
    importance: u8,
    dedupe_hash: String,
    rank: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<&Item> for StoredMemory {
    type Error = StoreError;

    /// Every attribute is parsed into its domain type: an item that breaks a rule is corrupt.
    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let stored: MemoryItem =
            serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("memory", "attributes"))?;
        let corrupt = |name| StoreError::corrupt("memory", name);
        let memory = Memory {
            id: stored.memory_id.parse().map_err(|_| corrupt(MEMORY_ID))?,
            session_id: stored.session_id.map(|id| id.parse()).transpose().map_err(|_| corrupt(SESSION_ID))?,
            memory_type: stored.memory_type.parse().map_err(|_| corrupt(MEMORY_TYPE))?,
            content: MemoryContent::parse(stored.content).map_err(|_| corrupt(CONTENT))?,
            importance: Importance::new(IMPORTANCE, stored.importance.into()).map_err(|_| corrupt(IMPORTANCE))?,
            created_at: stored.created_at.parse().map_err(|_| corrupt(CREATED_AT))?,
            updated_at: stored.updated_at.parse().map_err(|_| corrupt(UPDATED_AT))?,
        };
        Ok(Self { memory, scope_key: stored.scope, hash: stored.dedupe_hash, rank: stored.rank })
    }
}

/// A page of memories, and how many match the filter in all.
#[derive(Clone, Debug)]
pub struct MemoryPage {
    pub data: Vec<Memory>,
    pub has_more: bool,
    pub next_cursor: Option<Cursor>,
    pub total: u64,
}

impl Store {
    /// The scope's key; for a session scope this checks the session is the user's and live.
    pub(crate) async fn scope_key(&self, user: &UserId, scope: MemoryScope) -> Result<ScopeKey, StoreError> {
        match scope {
            MemoryScope::Global => Ok(ScopeKey::global()),
            MemoryScope::Session(id) => {
                let record = self.session_record(user, id).await?;
                Ok(ScopeKey::session(id, record.memory_epoch))
            }
        }
    }

    fn session_is_current(&self, user: &UserId, scope: &ScopeKey) -> Result<Option<ConditionCheck>, StoreError> {
        let (Some(session_id), Some(epoch)) = (scope.scope.session_id(), scope.epoch) else {
            return Ok(None);
        };
        self.session_at_epoch(user, session_id, epoch).map(Some)
    }

    /// Adds a memory, or returns the one with the same type and content in that scope
    /// (`false`: nothing was written).
    pub async fn add_memory(&self, user: &UserId, new: NewMemory) -> Result<(Memory, bool), StoreError> {
        for _ in 0..3 {
            let scope = match new.scope {
                MemoryScope::Global => ScopeKey::global(),
                MemoryScope::Session(id) => {
                    // A session that refuses message changes takes no new memories either.
                    let record = self.session_record(user, id).await?;
                    if record.session.status != SessionStatus::Open {
                        return Err(StoreError::Refused(Refusal::SessionClosed(record.session.status)));
                    }
                    ScopeKey::session(id, record.memory_epoch)
                }
            };
            let now = self.now();
            let memory = Memory {
                id: MemoryId::generate(),
                session_id: new.scope.session_id(),
                memory_type: new.memory_type,
                content: new.content.clone(),
                importance: new.importance,
                created_at: now,
                updated_at: now,
            };
            let hash = dedupe_hash(memory.memory_type, &memory.content);
            let mut items = Vec::new();
            let session_check = self.session_is_current(user, &scope)?;
            let has_session_check = session_check.is_some();
            if let Some(check) = session_check {
                items.push(TransactWriteItem::builder().condition_check(check).build());
            }
            let mut marker = key(user, scope.marker_item(&hash));
            marker.insert(MEMORY_ID.to_owned(), s(memory.id.to_string()));
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables.memories)
                            .set_item(Some(marker))
                            .condition_expression("attribute_not_exists(#item)")
                            .expression_attribute_names("#item", ITEM)
                            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.tables.memories)
                            .set_key(Some(key(user, scope.counter_item())))
                            .update_expression("ADD #n :one")
                            .condition_expression("attribute_not_exists(#n) OR #n < :cap")
                            .expression_attribute_names("#n", COUNT)
                            .expression_attribute_values(":one", n(1))
                            .expression_attribute_values(":cap", n(MAX_PER_SCOPE))
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables.memories)
                            .set_item(Some(self.memory_item(user, &scope, &memory, &hash)?))
                            .condition_expression("attribute_not_exists(#item)")
                            .expression_attribute_names("#item", ITEM)
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            );
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                return Ok((memory, true));
            };
            let reasons = cancellation_reasons(error)?;
            let offset = usize::from(has_session_check);
            if has_session_check && reason_failed(reasons.first()) {
                continue; // deleted or reset meanwhile: look again
            }
            if let Some(existing) = reasons.get(offset).filter(|r| reason_failed(Some(r))).and_then(|r| r.item()) {
                let id: MemoryId = Reader::new(existing, "memory marker").parse(MEMORY_ID)?;
                let stored = self.memory_at(user, scope.memory_item(id)).await?;
                return Ok((stored.ok_or(StoreError::NotFound("memory"))?.memory, false));
            }
            if reason_failed(reasons.get(offset + 1)) {
                return Err(StoreError::Refused(Refusal::Conflict(format!(
                    "this scope already holds {MAX_PER_SCOPE} memories; delete some before adding more"
                ))));
            }
            return Err(StoreError::internal("memory transaction cancelled unexpectedly"));
        }
        Err(StoreError::NotFound("session"))
    }

    fn memory_item(&self, user: &UserId, scope: &ScopeKey, memory: &Memory, hash: &str) -> Result<Item, StoreError> {
        let item = MemoryItem {
            user_id: user.as_str().to_owned(),
            item: scope.memory_item(memory.id),
            memory_id: memory.id.to_string(),
            scope: scope.key.clone(),
            session_id: memory.session_id.map(|id| id.to_string()),
            memory_type: memory.memory_type.as_str().to_owned(),
            content: memory.content.as_str().to_owned(),
            importance: memory.importance.get(),
            dedupe_hash: hash.to_owned(),
            rank: format!("{}#{}", scope.key, rank_suffix(memory.importance, memory.created_at, memory.id)),
            created_at: memory.created_at.to_string(),
            updated_at: memory.updated_at.to_string(),
        };
        serde_dynamo::to_item(item).map_err(StoreError::internal)
    }

    async fn memory_at(&self, user: &UserId, item: String) -> Result<Option<StoredMemory>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.memories)
            .set_key(Some(key(user, item)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map(StoredMemory::try_from).transpose()
    }

    /// A memory by id, if it is the user's and its scope is live (session not deleted or reset).
    async fn stored_memory(&self, user: &UserId, id: MemoryId) -> Result<(StoredMemory, ScopeKey), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.memories)
            .index_name(BY_ID)
            .key_condition_expression("#user = :user AND #id = :id")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#id", MEMORY_ID)
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":id", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let stored = output
            .items()
            .iter()
            .filter(|item| Reader::new(item, "memory").has(RANK))
            .map(StoredMemory::try_from)
            .next()
            .transpose()?
            .ok_or(StoreError::NotFound("memory"))?;
        let scope = match stored.memory.session_id {
            None => ScopeKey::global(),
            Some(session_id) => match self.scope_key(user, MemoryScope::Session(session_id)).await {
                Ok(scope) => scope,
                Err(StoreError::NotFound(_)) => return Err(StoreError::NotFound("memory")),
                Err(error) => return Err(error),
            },
        };
        if scope.key != stored.scope_key {
            return Err(StoreError::NotFound("memory"));
        }
        Ok((stored, scope))
    }

    pub async fn get_memory(&self, user: &UserId, id: MemoryId) -> Result<Memory, StoreError> {
        Ok(self.stored_memory(user, id).await?.0.memory)
    }

    pub async fn update_memory(
        &self,
        user: &UserId,
        id: MemoryId,
        changes: MemoryChanges,
    ) -> Result<Memory, StoreError> {
        for _ in 0..5 {
            let (stored, scope) = self.stored_memory(user, id).await?;
            let mut memory = stored.memory.clone();
            if let Some(content) = &changes.content {
                memory.content = content.clone();
            }
            memory.memory_type = changes.memory_type.unwrap_or(memory.memory_type);
            memory.importance = changes.importance.unwrap_or(memory.importance);
            memory.updated_at = self.now();
            let hash = dedupe_hash(memory.memory_type, &memory.content);
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables.memories)
                            .set_item(Some(self.memory_item(user, &scope, &memory, &hash)?))
                            .condition_expression("#updated_at = :seen")
                            .expression_attribute_names("#updated_at", UPDATED_AT)
                            .expression_attribute_values(":seen", s(stored.memory.updated_at.to_string()))
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            ];
            if hash != stored.hash {
                let mut marker = key(user, scope.marker_item(&hash));
                marker.insert(MEMORY_ID.to_owned(), s(id.to_string()));
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.tables.memories)
                                .set_item(Some(marker))
                                .condition_expression("attribute_not_exists(#item)")
                                .expression_attribute_names("#item", ITEM)
                                .build()
                                .map_err(StoreError::internal)?,
                        )
                        .build(),
                );
                items.push(
                    TransactWriteItem::builder().delete(self.delete_marker(user, &scope, &stored.hash, id)?).build(),
                );
            }
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                return Ok(memory);
            };
            let reasons = cancellation_reasons(error)?;
            if reason_failed(reasons.get(1)) {
                return Err(StoreError::Refused(Refusal::Conflict(
                    "another memory in this scope already has this type and content".to_owned(),
                )));
            }
            if !reason_failed(reasons.first()) && !reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                return Err(StoreError::internal("memory update cancelled unexpectedly"));
            }
        }
        Err(StoreError::Unavailable("the memory is too busy: update retries exhausted".into()))
    }

    fn delete_marker(&self, user: &UserId, scope: &ScopeKey, hash: &str, id: MemoryId) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.tables.memories)
            .set_key(Some(key(user, scope.marker_item(hash))))
            .condition_expression("#id = :id")
            .expression_attribute_names("#id", MEMORY_ID)
            .expression_attribute_values(":id", s(id.to_string()))
            .build()
            .map_err(StoreError::internal)
    }

    /// Deletes memories of one scope, the markers and the count in one transaction.
    async fn delete_memories(
        &self,
        user: &UserId,
        scope: &ScopeKey,
        doomed: &[(MemoryId, String)],
    ) -> Result<bool, StoreError> {
        let mut items = Vec::with_capacity(doomed.len() * 2 + 1);
        for (id, hash) in doomed {
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.tables.memories)
                            .set_key(Some(key(user, scope.memory_item(*id))))
                            .condition_expression("attribute_exists(#item)")
                            .expression_attribute_names("#item", ITEM)
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            );
            items.push(TransactWriteItem::builder().delete(self.delete_marker(user, scope, hash, *id)?).build());
        }
        items.push(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.tables.memories)
                        .set_key(Some(key(user, scope.counter_item())))
                        .update_expression("ADD #n :minus")
                        .expression_attribute_names("#n", COUNT)
                        .expression_attribute_values(":minus", n(-(doomed.len() as i64)))
                        .build()
                        .map_err(StoreError::internal)?,
                )
                .build(),
        );
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                cancellation_reasons(error)?;
                Ok(false)
            }
        }
    }

    pub async fn delete_memory(&self, user: &UserId, id: MemoryId) -> Result<(), StoreError> {
        for _ in 0..5 {
            let (stored, scope) = self.stored_memory(user, id).await?;
            if self.delete_memories(user, &scope, &[(id, stored.hash)]).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable("the memory is too busy: delete retries exhausted".into()))
    }

    /// Deletes every memory of a scope; returns how many there were. A session scope moves to a
    /// new epoch in one write; the global scope is deleted in transactions of 49 memories, each
    /// keeping the count exact, so a retry after a failure finishes the job.
    pub async fn delete_scope(&self, user: &UserId, scope: MemoryScope) -> Result<u64, StoreError> {
        if let MemoryScope::Session(session_id) = scope {
            self.list_sweep(user, session_id).await?;
            return self.next_memory_epoch(user, session_id).await;
        }
        let scope = ScopeKey::global();
        let mut deleted = 0;
        let mut misses = 0;
        loop {
            let batch = self.scope_items(user, &scope, DELETE_CHUNK).await?;
            if batch.is_empty() {
                return Ok(deleted);
            }
            let doomed: Vec<_> = batch.iter().map(|stored| (stored.memory.id, stored.hash.clone())).collect();
            if self.delete_memories(user, &scope, &doomed).await? {
                deleted += doomed.len() as u64;
                misses = 0;
            } else {
                // A concurrent change: read the scope again, but never forever.
                misses += 1;
                if misses >= 5 {
                    return Err(StoreError::Unavailable("the memories are too busy: delete retries exhausted".into()));
                }
            }
        }
    }

    /// Moves a session's memories to a fresh epoch; returns how many the old one held.
    async fn next_memory_epoch(&self, user: &UserId, session_id: SessionId) -> Result<u64, StoreError> {
        let epoch = self.bump_memory_epoch(user, session_id).await?;
        self.scope_count(user, &ScopeKey::session(session_id, epoch)).await
    }

    /// How many memories a scope holds.
    pub(crate) async fn scope_count(&self, user: &UserId, scope: &ScopeKey) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.memories)
            .set_key(Some(key(user, scope.counter_item())))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map_or(Ok(0), |item| Reader::new(item, "memory count").number(COUNT))
    }

    async fn scope_items(
        &self,
        user: &UserId,
        scope: &ScopeKey,
        limit: usize,
    ) -> Result<Vec<StoredMemory>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.memories)
            .key_condition_expression("#user = :user AND begins_with(#item, :prefix)")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#item", ITEM)
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":prefix", s(scope.memory_prefix()))
            .consistent_read(true)
            .limit(limit as i32)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.items().iter().map(StoredMemory::try_from).collect()
    }

    /// Memories by importance, then newest first; `total` counts every match of the filter.
    pub async fn list_memories(
        &self,
        user: &UserId,
        filter: &MemoryFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<MemoryPage, StoreError> {
        let after: Option<String> = cursor.map(|cursor| cursor.decode::<String>()).transpose()?;
        let mut scopes = vec![self.scope_key(user, filter.scope).await?];
        if filter.include_global && filter.scope != MemoryScope::Global {
            scopes.push(ScopeKey::global());
        }
        let wanted = limit.as_usize() + 1;
        let pages = scopes.iter().map(|scope| self.ranked(user, scope, filter, after.as_deref(), wanted));
        let counts = scopes.iter().map(|scope| self.ranked_count(user, scope, filter));
        let (pages, counts) = tokio::try_join!(try_join_all(pages), try_join_all(counts))?;
        let mut merged: Vec<(String, Memory)> = pages.into_iter().flatten().collect();
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        let has_more = merged.len() > limit.as_usize();
        merged.truncate(limit.as_usize());
        let next_cursor = merged.last().filter(|_| has_more).map(|(suffix, _)| Cursor::encode(suffix));
        Ok(MemoryPage {
            data: merged.into_iter().map(|(_, memory)| memory).collect(),
            has_more,
            next_cursor,
            total: counts.into_iter().sum(),
        })
    }

    /// The top `wanted` memories of a scope in rank order, after `after` (a rank suffix).
    pub(crate) async fn ranked(
        &self,
        user: &UserId,
        scope: &ScopeKey,
        filter: &MemoryFilter,
        after: Option<&str>,
        wanted: usize,
    ) -> Result<Vec<(String, Memory)>, StoreError> {
        let (low, high) = rank_bounds(scope, filter, after);
        let mut found = Vec::with_capacity(wanted);
        let mut start_key = None;
        loop {
            let output = self
                .ranked_query(user, filter, &low, &high)
                .consistent_read(true)
                .limit(QUERY_PAGE)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                let stored = StoredMemory::try_from(item)?;
                if stored.rank == low {
                    continue; // the cursor's own item
                }
                let suffix = stored.rank[scope.key.len() + 1..].to_owned();
                found.push((suffix, stored.memory));
                if found.len() == wanted {
                    return Ok(found);
                }
            }
            match output.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => return Ok(found),
            }
        }
    }

    /// The `by_rank` query over `[low, high]`, filtered by memory type when the filter says so.
    fn ranked_query(
        &self,
        user: &UserId,
        filter: &MemoryFilter,
        low: &str,
        high: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let query = self
            .client
            .query()
            .table_name(&self.tables.memories)
            .index_name(BY_RANK)
            .key_condition_expression("#user = :user AND #rank BETWEEN :low AND :high")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#rank", RANK)
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(high));
        match filter.memory_type {
            Some(memory_type) => query
                .filter_expression("#type = :type")
                .expression_attribute_names("#type", MEMORY_TYPE)
                .expression_attribute_values(":type", s(memory_type.as_str())),
            None => query,
        }
    }

    async fn ranked_count(&self, user: &UserId, scope: &ScopeKey, filter: &MemoryFilter) -> Result<u64, StoreError> {
        let (low, high) = rank_bounds(scope, filter, None);
        let mut total = 0;
        let mut start_key = None;
        loop {
            let output = self
                .ranked_query(user, filter, &low, &high)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            total += output.count().max(0) as u64;
            match output.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => return Ok(total),
            }
        }
    }
}

/// The `rank` range of a scope's memories with importance ≥ the filter's, after `after`.
fn rank_bounds(scope: &ScopeKey, filter: &MemoryFilter, after: Option<&str>) -> (String, String) {
    let low = match after {
        Some(suffix) => format!("{}#{suffix}", scope.key),
        None => format!("{}#", scope.key),
    };
    let high = format!("{}#{:02}~", scope.key, 10 - filter.min_importance.get());
    (low, high)
}

/// Memories considered for a context, per scope: the top of the ranking.
const CONTEXT_MEMORIES: usize = 50;

impl Store {
    /// The memories a model's context draws on, best first: the user's global memories, or (given
    /// a session and its memory epoch) that session's own.
    pub async fn context_memories(
        &self,
        user: &UserId,
        session: Option<(SessionId, u64)>,
    ) -> Result<Vec<RankedMemory>, StoreError> {
        let everything = MemoryFilter {
            scope: MemoryScope::Global,
            include_global: false,
            memory_type: None,
            min_importance: Importance::MIN,
        };
        let scope = match session {
            Some((session_id, epoch)) => ScopeKey::session(session_id, epoch),
            None => ScopeKey::global(),
        };
        let ranked = self.ranked(user, &scope, &everything, None, CONTEXT_MEMORIES).await?;
        Ok(ranked.into_iter().map(|(rank, memory)| RankedMemory { rank, memory }).collect())
    }

    /// How many memories a session held at `epoch` (what a reset removed).
    pub async fn session_memory_count(
        &self,
        user: &UserId,
        session_id: SessionId,
        epoch: u64,
    ) -> Result<u64, StoreError> {
        self.scope_count(user, &ScopeKey::session(session_id, epoch)).await
    }
}

/// A memory with its place in the ranking (importance, then newest); ranks of global and session
/// memories sort together.
#[derive(Clone, Debug)]
pub struct RankedMemory {
    pub rank: String,
    pub memory: Memory,
}
