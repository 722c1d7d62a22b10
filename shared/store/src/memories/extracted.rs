//! What extraction reads and writes: how far it has read a session, the tombstones it must
//! respect, and one batch of decisions — new memories, the older ones they supersede, the scopes'
//! counts and the session's mark — in one transaction, so a batch is stored whole or not at all
//! and a batch delivered twice is stored once.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_dynamodb::types::{CancellationReason, Put, TransactWriteItem, Update};

use crate::item::{Reader, n, s};
use crate::limits::meter_from_item;
use crate::schema::memories::{ITEM, RANK};
use crate::tx::{backoff, cancellation_reasons, is_conflict, reason_failed};
use crate::{Store, StoreError};
use domain::{DayUsage, Memory, MemoryId, MemoryScope, MeterWrite, NewMemory, Seq, SessionId, UserId, utc_day};

use super::{
    COUNT, EPOCH, FROM_SEQ, LINK_SCOPE, MAX_PER_SCOPE, ScopeKey, StoredMemory, TO_SEQ, UPDATED_AT, dedupe_hash, key,
    link_put, tombstone_item,
};

const THROUGH_SEQ: &str = "through_seq";
/// Memories one transaction deletes when their source changes (4 items each at most).
const SOURCED_CHUNK: usize = 20;
const SUPERSEDED_BY: &str = "superseded_by";
const ATTEMPTS: u32 = 6;

/// One extraction's decisions, for the store to write at once.
#[derive(Clone, Debug)]
pub struct ExtractionBatch {
    /// How far the batch read the session: the mark moves here, and only forward.
    pub through: Seq,
    /// New memories, each with its `source`.
    pub adds: Vec<NewMemory>,
    /// Older memories replaced: (the old memory, its scope, the index in `adds` of the new one).
    pub supersedes: Vec<(MemoryId, MemoryScope, usize)>,
}

/// What became of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum ExtractionWrite {
    /// Written: the memories added (a candidate that met an equal memory written meanwhile, or a
    /// full scope, is left out).
    Stored(Vec<Memory>),
    /// The mark is at or past `through` already: a redelivered batch, nothing written.
    AlreadyDone,
    /// The session is gone, reset, locked or closed meanwhile: nothing written.
    SessionGone,
}

fn mark_item(session_id: SessionId) -> String {
    format!("x#{session_id}")
}

impl Store {
    /// How far extraction has read a session (`None`: not yet).
    pub async fn extraction_mark(&self, user: &UserId, session_id: SessionId) -> Result<Option<Seq>, StoreError> {
        let Some(item) = self.memories_item(user, mark_item(session_id)).await? else { return Ok(None) };
        let through: u64 = Reader::new(&item, "extraction mark").number(THROUGH_SEQ)?;
        Ok(Seq::new(through))
    }

    /// Memory extraction calls counted in the user's usage today (UTC).
    pub async fn extraction_calls_today(&self, user: &UserId) -> Result<u64, StoreError> {
        let (meter, _) = self.meter(user).await?;
        Ok(if meter.usage_day == utc_day(self.now()) { meter.usage.extraction_calls() } else { 0 })
    }

    /// Which of these fingerprints the user has deleted an extracted memory of.
    pub async fn tombstoned(&self, user: &UserId, fingerprints: &[String]) -> Result<HashSet<String>, StoreError> {
        let by_item: BTreeMap<String, &String> =
            fingerprints.iter().map(|fingerprint| (tombstone_item(fingerprint), fingerprint)).collect();
        let keys = by_item.keys().map(|item| key(user, item.clone())).collect();
        let found = self.batch_get(&self.tables.memories, keys).await?;
        Ok(found
            .iter()
            .filter_map(|item| item.get(ITEM).and_then(|item| item.as_s().ok()).and_then(|item| by_item.get(item)))
            .map(|fingerprint| (*fingerprint).clone())
            .collect())
    }

    /// Writes one extraction's batch in one transaction (see the module's documentation).
    pub async fn store_extraction(
        &self,
        user: &UserId,
        session_id: SessionId,
        mut batch: ExtractionBatch,
        usage: &DayUsage,
    ) -> Result<ExtractionWrite, StoreError> {
        let (mut meter, _) = self.meter(user).await?;
        for attempt in 0..ATTEMPTS {
            let record = match self.writable_session(user, session_id).await {
                Ok(record) => record,
                Err(StoreError::NotFound(_) | StoreError::Refused(_)) => return Ok(ExtractionWrite::SessionGone),
                Err(error) => return Err(error),
            };
            let session_scope = ScopeKey::session(session_id, record.memory_epoch);
            let scope_of = |scope: MemoryScope| match scope {
                MemoryScope::Global => ScopeKey::global(),
                MemoryScope::Session(_) => session_scope.clone(),
            };
            let now = self.now();
            let memories: Vec<Memory> = batch
                .adds
                .iter()
                .map(|new| Memory {
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
                })
                .collect();
            // Each position of the transaction, so a cancellation reason can be traced to its item.
            let mut roles = Vec::new();
            let mut items = Vec::new();
            items.push(
                TransactWriteItem::builder()
                    .condition_check(self.session_at_epoch(user, session_id, record.memory_epoch)?)
                    .build(),
            );
            roles.push(Role::Session);
            let mark = Update::builder()
                .table_name(&self.tables.memories)
                .set_key(Some(key(user, mark_item(session_id))))
                .update_expression("SET #through = :through, #updated_at = :now")
                .condition_expression("attribute_not_exists(#through) OR #through < :through")
                .expression_attribute_names("#through", THROUGH_SEQ)
                .expression_attribute_names("#updated_at", UPDATED_AT)
                .expression_attribute_values(":through", n(batch.through.get()))
                .expression_attribute_values(":now", s(now.to_string()))
                .build()
                .map_err(StoreError::internal)?;
            items.push(TransactWriteItem::builder().update(mark).build());
            roles.push(Role::Mark);
            let mut deltas: BTreeMap<String, (ScopeKey, i64)> = BTreeMap::new();
            for (index, (new, memory)) in batch.adds.iter().zip(&memories).enumerate() {
                let scope = scope_of(new.scope);
                let hash = dedupe_hash(memory.memory_type, &memory.content);
                let marker = self.marker_put(user, &scope, &hash, memory.id).build().map_err(StoreError::internal)?;
                items.push(TransactWriteItem::builder().put(marker).build());
                roles.push(Role::Add(index));
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.tables.memories)
                                .set_item(Some(self.memory_item(user, &scope, memory, &hash)?))
                                .build()
                                .map_err(StoreError::internal)?,
                        )
                        .build(),
                );
                roles.push(Role::Add(index));
                if let Some(source) = new.source {
                    let put = link_put(&self.tables.memories, user, source, &scope, memory.id, record.memory_epoch)?;
                    items.push(TransactWriteItem::builder().put(put).build());
                    roles.push(Role::Add(index));
                }
                deltas.entry(scope.key.clone()).or_insert((scope, 0)).1 += 1;
            }
            for (position, (old, scope, by)) in batch.supersedes.iter().enumerate() {
                let Some(new) = memories.get(*by) else { continue };
                let scope = scope_of(*scope);
                items.push(
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&self.tables.memories)
                                .set_key(Some(key(user, scope.memory_item(*old))))
                                .update_expression("REMOVE #rank SET #superseded_by = :new, #updated_at = :now")
                                .condition_expression("attribute_exists(#rank)")
                                .expression_attribute_names("#rank", RANK)
                                .expression_attribute_names("#superseded_by", SUPERSEDED_BY)
                                .expression_attribute_names("#updated_at", UPDATED_AT)
                                .expression_attribute_values(":new", s(new.id.to_string()))
                                .expression_attribute_values(":now", s(now.to_string()))
                                .build()
                                .map_err(StoreError::internal)?,
                        )
                        .build(),
                );
                roles.push(Role::Supersede(position));
                deltas.entry(scope.key.clone()).or_insert((scope, 0)).1 -= 1;
            }
            // The call's tokens land in today's usage, as their own kind.
            let write = MeterWrite::settle(&meter, now, usage, None);
            if let Some(write) = &write {
                let (update, closed) = self.meter_items(user, write)?;
                items.push(TransactWriteItem::builder().update(update).build());
                roles.push(Role::Meter);
                if let Some(closed) = closed {
                    items.push(TransactWriteItem::builder().put(closed).build());
                    roles.push(Role::ClosedDay);
                }
            }
            for (scope, delta) in deltas.into_values() {
                if delta == 0 {
                    continue;
                }
                let mut update = Update::builder()
                    .table_name(&self.tables.memories)
                    .set_key(Some(key(user, scope.counter_item())))
                    .update_expression("ADD #n :delta")
                    .expression_attribute_names("#n", COUNT)
                    .expression_attribute_values(":delta", n(delta));
                if delta > 0 {
                    let room = MAX_PER_SCOPE.saturating_sub(delta as u64);
                    update = update
                        .condition_expression("attribute_not_exists(#n) OR #n <= :room")
                        .expression_attribute_values(":room", n(room));
                }
                items.push(TransactWriteItem::builder().update(update.build().map_err(StoreError::internal)?).build());
                roles.push(Role::Count(scope.scope));
            }
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                if let Some(write) = &write {
                    self.limit_caches.remember_meter(user, &write.next);
                }
                return Ok(ExtractionWrite::Stored(memories));
            };
            let reasons = cancellation_reasons(error)?;
            let meter_reason = roles.iter().position(|role| matches!(role, Role::Meter)).and_then(|at| reasons.get(at));
            let failed: Vec<Role> = roles
                .iter()
                .zip(&reasons)
                .filter(|(_, reason)| reason_failed(Some(reason)))
                .map(|(role, _)| *role)
                .collect();
            if failed.is_empty() && !is_conflict(&reasons) {
                return Err(StoreError::internal("extraction transaction cancelled unexpectedly"));
            }
            for role in failed {
                match role {
                    Role::Session => return Ok(ExtractionWrite::SessionGone),
                    Role::Mark => return Ok(ExtractionWrite::AlreadyDone),
                    // An equal memory was added meanwhile: leave this one out.
                    Role::Add(index) => batch.drop_add(index),
                    // The old memory was deleted or superseded meanwhile: the new one stands alone.
                    Role::Supersede(position) => {
                        if let Some(entry) = batch.supersedes.get_mut(position) {
                            entry.2 = usize::MAX;
                        }
                    }
                    // The scope is full: its new memories are left out.
                    Role::Count(scope) => batch.drop_scope(scope),
                    // Another write moved the meter (or closed the day) first: read it again.
                    Role::Meter => {
                        meter = match meter_reason.and_then(CancellationReason::item) {
                            Some(item) => meter_from_item(item)?,
                            None => self.fresh_meter(user).await?,
                        };
                    }
                    Role::ClosedDay => meter = self.fresh_meter(user).await?,
                }
            }
            batch.supersedes.retain(|entry| entry.2 != usize::MAX);
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the memories are too busy: extraction retries exhausted".into()))
    }
}

/// Which extracted memories of a session a change of its log touches.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Touched<'a> {
    /// Those whose source range holds one of these seqs (an edit, a delete, forget-recent).
    Seqs(&'a [Seq]),
    /// Every one (a reset).
    All,
    /// Those written before the session's memory epoch moved past this (a reset that crashed
    /// before deleting them, a deleted session).
    BeforeEpoch(u64),
}

impl Store {
    /// The extracted memories of a session that `touched` reaches, as stored (superseded ones
    /// too: their source is gone as well).
    pub(crate) async fn sourced_memories(
        &self,
        user: &UserId,
        session_id: SessionId,
        touched: Touched<'_>,
    ) -> Result<Vec<StoredMemory>, StoreError> {
        let mut links = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.memories)
                .key_condition_expression("#user = :user AND begins_with(#item, :prefix)")
                .expression_attribute_names("#user", crate::schema::memories::USER_ID)
                .expression_attribute_names("#item", ITEM)
                .expression_attribute_values(":user", s(user.as_str()))
                .expression_attribute_values(":prefix", s(format!("l#{session_id}#")))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                let link = Reader::new(item, "memory link");
                let (from, to): (u64, u64) = (link.number(FROM_SEQ)?, link.number(TO_SEQ)?);
                let reached = match touched {
                    Touched::All => true,
                    Touched::Seqs(seqs) => seqs.iter().any(|seq| (from..=to).contains(&seq.get())),
                    Touched::BeforeEpoch(epoch) => link.number::<u64>(EPOCH)? < epoch,
                };
                if reached {
                    let id = link.string(ITEM)?.rsplit('#').next().unwrap_or_default().to_owned();
                    links.push(format!("m#{}#{id}", link.string(LINK_SCOPE)?));
                }
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let keys = links.into_iter().map(|item| key(user, item)).collect();
        let found = self.batch_get(&self.tables.memories, keys).await?;
        found.iter().map(StoredMemory::try_from).collect()
    }

    /// Deletes the extracted memories written before the session's memory epoch passed `epoch`
    /// (the sweep's part: what a reset's crash or a session's delete left).
    pub(crate) async fn delete_sourced_before(
        &self,
        user: &UserId,
        session_id: SessionId,
        epoch: u64,
    ) -> Result<u64, StoreError> {
        self.delete_sourced(user, session_id, Touched::BeforeEpoch(epoch)).await
    }

    /// Deletes the extracted memories of a session that `touched` reaches, in transactions of
    /// `SOURCED_CHUNK` (each whole or not at all); returns how many. Used where the change of the
    /// log cannot carry them in its own transaction (a reset, or more than fit).
    pub(crate) async fn delete_sourced(
        &self,
        user: &UserId,
        session_id: SessionId,
        touched: Touched<'_>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for attempt in 0..ATTEMPTS * 4 {
            let doomed = self.sourced_memories(user, session_id, touched).await?;
            if doomed.is_empty() {
                return Ok(deleted);
            }
            let chunk: Vec<&StoredMemory> = doomed.iter().take(SOURCED_CHUNK).collect();
            let items = self.memory_delete_items(user, &chunk, false)?;
            match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => deleted += chunk.len() as u64,
                Err(error) => {
                    cancellation_reasons(error)?;
                    backoff(attempt).await;
                }
            }
        }
        Err(StoreError::Unavailable(
            "the memories are too busy: deleting a source's memories ran out of retries".into(),
        ))
    }
}

/// What an item of the extraction's transaction is there for.
#[derive(Clone, Copy, Debug)]
enum Role {
    Session,
    Mark,
    Add(usize),
    Supersede(usize),
    Count(MemoryScope),
    Meter,
    ClosedDay,
}

impl ExtractionBatch {
    /// Leaves out the add at `index` (and the supersede it made), keeping the others' indexes.
    fn drop_add(&mut self, index: usize) {
        if index >= self.adds.len() {
            return;
        }
        self.adds.remove(index);
        self.supersedes.retain(|entry| entry.2 != index);
        for entry in &mut self.supersedes {
            if entry.2 != usize::MAX && entry.2 > index {
                entry.2 -= 1;
            }
        }
    }

    fn drop_scope(&mut self, scope: MemoryScope) {
        let same = |other: MemoryScope| std::mem::discriminant(&other) == std::mem::discriminant(&scope);
        while let Some(index) = self.adds.iter().position(|new| same(new.scope)) {
            self.drop_add(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Importance, MemoryContent, MemoryType};

    fn add(text: &str, scope: MemoryScope) -> NewMemory {
        let Ok(content) = MemoryContent::parse(text.to_owned()) else { panic!("content") };
        NewMemory { scope, memory_type: MemoryType::Fact, content, importance: Importance::DEFAULT, source: None }
    }

    #[test]
    fn dropping_an_add_keeps_the_other_supersedes_pointing_at_their_own_memory() {
        let session = MemoryScope::Session(SessionId::generate());
        let (a, b) = (MemoryId::generate(), MemoryId::generate());
        let mut batch = ExtractionBatch {
            through: Seq::new(4).unwrap_or_else(|| unreachable!()),
            adds: vec![add("one", MemoryScope::Global), add("two", session), add("three", MemoryScope::Global)],
            supersedes: vec![(a, MemoryScope::Global, 0), (b, MemoryScope::Global, 2)],
        };
        batch.drop_add(0);
        assert_eq!(batch.adds.len(), 2);
        assert_eq!(batch.supersedes, vec![(b, MemoryScope::Global, 1)]);
        batch.drop_scope(MemoryScope::Global);
        assert_eq!(batch.adds.iter().map(|new| new.content.as_str()).collect::<Vec<_>>(), ["two"]);
        assert!(batch.supersedes.is_empty());
    }
}
