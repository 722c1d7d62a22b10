//! Listing memories, the best of them for a context, and counts.

use futures::future::try_join_all;

use crate::item::{Reader, s};
use crate::schema::memories::{BY_RANK, ITEM, RANK, USER_ID};
use crate::{Store, StoreError};
use domain::{Cursor, Importance, Memory, MemoryFilter, MemoryScope, PageLimit, SessionId, UserId};

use super::{COUNT, MEMORY_TYPE, MemoryPage, QUERY_PAGE, ScopeKey, StoredMemory};

impl Store {
    /// Moves a session's memories to a fresh epoch; returns how many the old one held.
    pub(super) async fn next_memory_epoch(&self, user: &UserId, session_id: SessionId) -> Result<u64, StoreError> {
        let epoch = self.bump_memory_epoch(user, session_id).await?;
        self.scope_count(user, &ScopeKey::session(session_id, epoch)).await
    }

    /// How many memories a scope holds.
    pub(crate) async fn scope_count(&self, user: &UserId, scope: &ScopeKey) -> Result<u64, StoreError> {
        let item = self.memories_item(user, scope.counter_item()).await?;
        item.map_or(Ok(0), |item| Reader::new(&item, "memory count").number(COUNT))
    }

    pub(super) async fn scope_items(
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
                let Some(rank) = stored.rank.as_deref().filter(|rank| *rank != low) else {
                    continue; // the cursor's own item
                };
                let suffix = rank.get(scope.key.len() + 1..).unwrap_or_default().to_owned();
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
