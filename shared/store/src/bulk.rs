//! Work over many items: every key a query finds, stamping a TTL on them, deleting them in
//! batches. Used by the hourly job's sweeps (retention) and by erasure, both bounded by a deadline
//! and both resumable: what one pass leaves, the next finds again.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, WriteRequest};
use futures::StreamExt as _;

use super::item::{Item, Reader, n, s};
use super::messages::item::VARIANT;
use super::schema::messages;
use super::tx::backoff;
use super::{Store, StoreError};

/// Writes in flight at once while stamping.
const CONCURRENT_WRITES: usize = 16;
/// BatchWriteItem's limit.
const BATCH: usize = 25;
/// BatchGetItem's limit.
const GET_BATCH: usize = 100;

/// One item a batch read wants: its table and its key.
pub(crate) struct Wanted {
    pub table: String,
    pub key: Item,
}

impl Wanted {
    fn is(&self, table: &str, item: &Item) -> bool {
        self.table == table && self.key.iter().all(|(name, value)| item.get(name) == Some(value))
    }
}

/// Items a bounded pass found, and whether it saw them all.
pub(super) struct Found {
    pub items: Vec<Item>,
    pub complete: bool,
}

impl Store {
    /// Single items of any tables in one round trip (BatchGetItem, strongly consistent): each
    /// wanted item, or `None` where there is none, in the order asked. For reads that would
    /// otherwise be parallel `GetItem`s: one call instead of several, the same read units.
    pub(crate) async fn get_together<const N: usize>(
        &self,
        wanted: [Wanted; N],
    ) -> Result<[Option<Item>; N], StoreError> {
        let mut keys: HashMap<String, Vec<Item>> = HashMap::new();
        for item in &wanted {
            keys.entry(item.table.clone()).or_default().push(item.key.clone());
        }
        let mut found: [Option<Item>; N] = std::array::from_fn(|_| None);
        for (table, item) in self.batch_read(keys).await? {
            if let Some(index) = wanted.iter().position(|wanted| wanted.is(&table, &item)) {
                found[index] = Some(item);
            }
        }
        Ok(found)
    }

    /// The items with these keys that exist, read strongly consistent, in no particular order.
    pub(super) async fn batch_get(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(GET_BATCH) {
            let read = self.batch_read(HashMap::from([(table.to_owned(), chunk.to_vec())])).await?;
            items.extend(read.into_iter().map(|(_, item)| item));
        }
        Ok(items)
    }

    /// One BatchGetItem of `keys` (per table, `GET_BATCH` at most in all), strongly consistent,
    /// asked again for the keys DynamoDB did not get to (throttling, the 16 MB cap): every item
    /// found, with its table.
    async fn batch_read(&self, keys: HashMap<String, Vec<Item>>) -> Result<Vec<(String, Item)>, StoreError> {
        let mut request = HashMap::with_capacity(keys.len());
        for (table, keys) in keys {
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(StoreError::internal)?;
            request.insert(table, keys);
        }
        let mut found = Vec::new();
        let mut attempt = 0;
        while !request.is_empty() {
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for (table, items) in output.responses.unwrap_or_default() {
                found.extend(items.into_iter().map(|item| (table.clone(), item)));
            }
            request = output.unprocessed_keys.unwrap_or_default();
            if !request.is_empty() {
                if attempt >= 20 {
                    return Err(StoreError::Unavailable("the table keeps deferring reads".into()));
                }
                backoff(attempt).await;
                attempt += 1;
            }
        }
        Ok(found)
    }

    /// Every item `query` returns, page after page, until `deadline` passes (the first page is
    /// always read, so a pass makes progress however short its budget).
    pub(super) async fn query_all(&self, query: QueryFluentBuilder, deadline: Instant) -> Result<Found, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            if start.is_some() && Instant::now() > deadline {
                return Ok(Found { items, complete: false });
            }
            let output =
                query.clone().set_exclusive_start_key(start.take()).send().await.map_err(StoreError::from_sdk)?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(Found { items, complete: true }),
            }
        }
    }

    /// The keys of a regenerated reply's earlier variants, if `message` (a message item with
    /// its `variant`) has any: they live in a partition of their own, `<session_id>#<seq>`.
    /// `unstamped`: only those without an `expires_at` yet.
    pub(super) async fn variant_keys(
        &self,
        message: &Item,
        unstamped: bool,
        deadline: Instant,
    ) -> Result<Option<Found>, StoreError> {
        let read = Reader::new(message, "message");
        if read.opt_number::<u32>(VARIANT)?.is_none_or(|variant| variant <= 1) {
            return Ok(None);
        }
        let partition = format!("{}#{}", read.string(messages::SESSION_ID)?, read.number::<u64>(messages::SEQ)?);
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("#sid = :sid")
            .projection_expression("#sid, #seq")
            .expression_attribute_names("#sid", messages::SESSION_ID)
            .expression_attribute_names("#seq", messages::SEQ)
            .expression_attribute_values(":sid", s(partition))
            .consistent_read(true);
        if unstamped {
            query = query
                .filter_expression("attribute_not_exists(#expires_at)")
                .expression_attribute_names("#expires_at", messages::EXPIRES_AT);
        }
        self.query_all(query, deadline).await.map(Some)
    }

    /// Sets `expires_at` on each item (by `keys`), if it still exists: an update never brings back
    /// an item deleted meanwhile. Returns how many it stamped.
    pub(super) async fn stamp_expiry(
        &self,
        table: &str,
        key_attribute: &str,
        keys: Vec<Item>,
        expires_at: i64,
    ) -> Result<u64, StoreError> {
        let writes = keys.into_iter().map(|key| {
            self.client
                .update_item()
                .table_name(table)
                .set_key(Some(key))
                .update_expression("SET #expires_at = :expires_at")
                .condition_expression("attribute_exists(#key)")
                .expression_attribute_names("#expires_at", "expires_at")
                .expression_attribute_names("#key", key_attribute)
                .expression_attribute_values(":expires_at", n(expires_at))
                .send()
        });
        let mut results = futures::stream::iter(writes).buffer_unordered(CONCURRENT_WRITES);
        let mut stamped = 0;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => stamped += 1,
                Err(error) if super::condition_failed(&error) => {}
                Err(error) => return Err(StoreError::from_sdk(error)),
            }
        }
        Ok(stamped)
    }

    /// Deletes the items with these keys, 25 to a batch, retrying what DynamoDB leaves
    /// unprocessed. Returns how many it deleted.
    pub(super) async fn delete_keys(&self, table: &str, keys: Vec<Item>) -> Result<u64, StoreError> {
        let count = keys.len() as u64;
        let mut requests: Vec<WriteRequest> = keys
            .into_iter()
            .map(|key| {
                let delete = DeleteRequest::builder().set_key(Some(key)).build().map_err(StoreError::internal)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<_, StoreError>>()?;
        let mut attempt = 0;
        while !requests.is_empty() {
            let batch: Vec<WriteRequest> = requests.drain(..requests.len().min(BATCH)).collect();
            let output = self
                .client
                .batch_write_item()
                .request_items(table, batch)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            let unprocessed = output.unprocessed_items.and_then(|mut left| left.remove(table)).unwrap_or_default();
            if !unprocessed.is_empty() {
                if attempt > 20 {
                    return Err(StoreError::Unavailable("deletes throttled: retries exhausted".into()));
                }
                backoff(attempt).await;
                attempt += 1;
                requests.extend(unprocessed);
            }
        }
        Ok(count)
    }
}
