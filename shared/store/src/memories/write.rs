//! Adding, changing and deleting memories — each write with its dedupe marker and the scope's
//! counter in one transaction — and the reads those writes start from.

use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use crate::item::{Item, Reader, n, s};
use crate::schema::memories::{BY_ID, ITEM, MEMORY_ID, USER_ID};
use crate::tx::{cancellation_reasons, reason_failed};
use crate::{Store, StoreError};
use domain::{Memory, MemoryChanges, MemoryId, MemoryOrigin, MemoryScope, NewMemory, Refusal, UserId};

use super::{
    COUNT, DELETE_CHUNK, MAX_PER_SCOPE, MemoryItem, ScopeKey, StoredMemory, UPDATED_AT, dedupe_hash, key, link_item,
    link_put, rank_suffix, tombstone_item,
};

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
    /// (`false`: nothing was written). A memory with a `source` (the `remember` tool's) is
    /// written with its link to it, so an edit or a reset of the source removes it as it does an
    /// extracted one.
    pub async fn add_memory(&self, user: &UserId, new: NewMemory) -> Result<(Memory, bool), StoreError> {
        for _ in 0..3 {
            let (scope, scope_epoch) = match new.scope {
                MemoryScope::Global => (ScopeKey::global(), None),
                MemoryScope::Session(id) => {
                    // A session that refuses message changes takes no new memories either.
                    let record = self.writable_session(user, id).await?;
                    (ScopeKey::session(id, record.memory_epoch), Some(record.memory_epoch))
                }
            };
            let source = match new.source {
                None => None,
                Some(source) if new.scope.session_id() == Some(source.session_id) => {
                    scope_epoch.map(|epoch| (source, epoch, false))
                }
                Some(source) => {
                    let record = self.writable_session(user, source.session_id).await?;
                    Some((source, record.memory_epoch, true))
                }
            };
            let now = self.now();
            let memory = Memory {
                id: MemoryId::generate(),
                session_id: new.scope.session_id(),
                memory_type: new.memory_type,
                content: new.content.clone(),
                importance: new.importance,
                origin: new.origin(),
                source: new.source,
                superseded_by: None,
                created_at: now,
                updated_at: now,
            };
            let hash = dedupe_hash(memory.memory_type, &memory.content);
            let mut items = Vec::new();
            if let Some(check) = self.session_is_current(user, &scope)? {
                items.push(TransactWriteItem::builder().condition_check(check).build());
            }
            // The source session, when it is not the scope's, is checked as well.
            if let Some((source, epoch, true)) = source {
                let check = self.session_at_epoch(user, source.session_id, epoch)?;
                items.push(TransactWriteItem::builder().condition_check(check).build());
            }
            let checks = items.len();
            let marker = self
                .marker_put(user, &scope, &hash, memory.id)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            items.push(TransactWriteItem::builder().put(marker.build().map_err(StoreError::internal)?).build());
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
            if let Some((source, epoch, _)) = source {
                let link = link_put(&self.tables.memories, user, source, &scope, memory.id, epoch)?;
                items.push(TransactWriteItem::builder().put(link).build());
            }
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                return Ok((memory, true));
            };
            let reasons = cancellation_reasons(error)?;
            let offset = checks;
            if reasons.iter().take(checks).any(|reason| reason_failed(Some(reason))) {
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

    pub(super) fn memory_item(
        &self,
        user: &UserId,
        scope: &ScopeKey,
        memory: &Memory,
        hash: &str,
    ) -> Result<Item, StoreError> {
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
            rank: memory
                .superseded_by
                .is_none()
                .then(|| format!("{}#{}", scope.key, rank_suffix(memory.importance, memory.created_at, memory.id))),
            origin: (memory.origin == MemoryOrigin::Extracted).then(|| memory.origin.as_str().to_owned()),
            source_session: memory.source.map(|source| source.session_id.to_string()),
            from_seq: memory.source.map(|source| source.from_seq.get()),
            to_seq: memory.source.map(|source| source.to_seq.get()),
            superseded_by: memory.superseded_by.map(|id| id.to_string()),
            created_at: memory.created_at.to_string(),
            updated_at: memory.updated_at.to_string(),
        };
        serde_dynamo::to_item(item).map_err(StoreError::internal)
    }

    async fn memory_at(&self, user: &UserId, item: String) -> Result<Option<StoredMemory>, StoreError> {
        self.memories_item(user, item).await?.as_ref().map(StoredMemory::try_from).transpose()
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
            // The index also holds the memory's dedupe marker (it carries the id): only `m#` items.
            .filter(|item| item.get(ITEM).and_then(|item| item.as_s().ok()).is_some_and(|item| item.starts_with("m#")))
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
                let marker = self.marker_put(user, &scope, &hash, id).build().map_err(StoreError::internal)?;
                items.push(TransactWriteItem::builder().put(marker).build());
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

    /// The dedupe marker of `id`'s type and content (`hash`) in `scope`, written only if no memory
    /// there holds it yet.
    pub(super) fn marker_put(&self, user: &UserId, scope: &ScopeKey, hash: &str, id: MemoryId) -> PutBuilder {
        let mut marker = key(user, scope.marker_item(hash));
        marker.insert(MEMORY_ID.to_owned(), s(id.to_string()));
        Put::builder()
            .table_name(&self.tables.memories)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(#item)")
            .expression_attribute_names("#item", ITEM)
    }

    fn delete_marker(&self, user: &UserId, scope: &ScopeKey, hash: &str, id: MemoryId) -> Result<Delete, StoreError> {
        self.marker_delete(user, &scope.key, hash, id)
    }

    fn marker_delete(&self, user: &UserId, scope_key: &str, hash: &str, id: MemoryId) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.tables.memories)
            .set_key(Some(key(user, format!("d#{scope_key}#{hash}"))))
            .condition_expression("#id = :id")
            .expression_attribute_names("#id", MEMORY_ID)
            .expression_attribute_values(":id", s(id.to_string()))
            .build()
            .map_err(StoreError::internal)
    }

    /// The items that delete `doomed` (of any scopes): each memory (it must still be there), its
    /// dedupe marker, its source link, and — when `tombstones`, for an extracted memory — its
    /// tombstone; then each scope's count, less those still counted (a superseded memory left it).
    pub(crate) fn memory_delete_items(
        &self,
        user: &UserId,
        doomed: &[&StoredMemory],
        tombstones: bool,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::with_capacity(doomed.len() * 4 + 1);
        let mut counted: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for stored in doomed {
            let id = stored.memory.id;
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.tables.memories)
                            .set_key(Some(key(user, format!("m#{}#{id}", stored.scope_key))))
                            .condition_expression("attribute_exists(#item)")
                            .expression_attribute_names("#item", ITEM)
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .delete(self.marker_delete(user, &stored.scope_key, &stored.hash, id)?)
                    .build(),
            );
            if let Some(source) = stored.memory.source {
                let link = Delete::builder()
                    .table_name(&self.tables.memories)
                    .set_key(Some(key(user, link_item(source.session_id, id))))
                    .build()
                    .map_err(StoreError::internal)?;
                items.push(TransactWriteItem::builder().delete(link).build());
            }
            if tombstones && stored.memory.origin == MemoryOrigin::Extracted {
                let tombstone = Put::builder()
                    .table_name(&self.tables.memories)
                    .set_item(Some(key(user, tombstone_item(&stored.memory.content.fingerprint()))))
                    .build()
                    .map_err(StoreError::internal)?;
                items.push(TransactWriteItem::builder().put(tombstone).build());
            }
            if stored.rank.is_some() {
                *counted.entry(stored.scope_key.as_str()).or_default() += 1;
            }
        }
        for (scope_key, count) in counted {
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.tables.memories)
                            .set_key(Some(key(user, format!("c#{scope_key}"))))
                            .update_expression("ADD #n :minus")
                            .expression_attribute_names("#n", COUNT)
                            .expression_attribute_values(":minus", n(-count))
                            .build()
                            .map_err(StoreError::internal)?,
                    )
                    .build(),
            );
        }
        Ok(items)
    }

    /// Deletes memories (the user's own delete: extracted ones leave tombstones) in one
    /// transaction; `false`: one changed meanwhile, read again.
    async fn delete_memories(&self, user: &UserId, doomed: &[&StoredMemory]) -> Result<bool, StoreError> {
        let items = self.memory_delete_items(user, doomed, true)?;
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
            let (stored, _) = self.stored_memory(user, id).await?;
            if self.delete_memories(user, &[&stored]).await? {
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
            let doomed: Vec<_> = batch.iter().collect();
            if self.delete_memories(user, &doomed).await? {
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
}
