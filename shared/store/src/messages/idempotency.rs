//! Idempotency records: a retried append with the same key and body is answered with what it
//! stored the first time; the same key with another body is a conflict.

use std::time::Duration;

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure};
use serde::{Deserialize, Serialize};

use super::Appended;
use super::item::StoredMessage;
use crate::item::{Item, n, s};
use crate::schema::idempotency::{EXPIRES_AT as IDEMPOTENCY_EXPIRES_AT, SCOPE};
use crate::schema::messages::{SEQ, SESSION_ID};
use crate::{Store, StoreError};
use domain::{Idempotency, MessagesLimit, Refusal, SessionId, Timestamp, UserId};

/// An idempotency record as stored, mapped by serde_dynamo: which request (its body's
/// fingerprint) stored which seqs.
#[derive(Serialize, Deserialize)]
struct IdempotencyRecord {
    scope: String,
    fingerprint: String,
    first_seq: u64,
    count: u64,
    expires_at: i64,
}

fn record_of(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("idempotency", "attributes"))
}

/// Idempotency records answer retries for at least this long (TTL removes them some time after).
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

fn idempotency_scope(session_id: SessionId, idempotency: &Idempotency) -> String {
    format!("{session_id}#{}", idempotency.key.as_str())
}

impl Store {
    pub(super) async fn idempotency_record(
        &self,
        session_id: SessionId,
        idempotency: &Idempotency,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.idempotency)
            .key(SCOPE, s(idempotency_scope(session_id, idempotency)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let now = self.now().unix_seconds();
        Ok(output.item().filter(|item| record_of(item).is_ok_and(|record| record.expires_at >= now)).cloned())
    }

    /// What a retried request stored, answered again — unless a message of it has since been
    /// deleted or cleared (delete, forget-recent, new scene, reset): then 409, and the text the
    /// caller removed is not handed back.
    pub(super) async fn replay(
        &self,
        user: &UserId,
        session_id: SessionId,
        record: &Item,
        idempotency: Option<&Idempotency>,
        quota: MessagesLimit,
    ) -> Result<Appended, StoreError> {
        let record = record_of(record)?;
        let same_request = idempotency.is_some_and(|wanted| record.fingerprint == wanted.fingerprint);
        if !same_request {
            return Err(StoreError::Refused(Refusal::Conflict(
                "this idempotency key was already used with a different request body".to_owned(),
            )));
        }
        let (first, count) = (record.first_seq, record.count);
        let query = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("#sid = :sid AND #seq BETWEEN :first AND :last")
            .expression_attribute_names("#sid", SESSION_ID)
            .expression_attribute_names("#seq", SEQ)
            .expression_attribute_values(":sid", s(session_id.to_string()))
            .expression_attribute_values(":first", n(first))
            .expression_attribute_values(":last", n(first + count.saturating_sub(1)))
            .consistent_read(true)
            .send();
        let (output, session) = tokio::try_join!(
            async { query.await.map_err(StoreError::from_sdk) },
            self.session_record(user, session_id)
        )?;
        let stored =
            output.items.unwrap_or_default().into_iter().map(StoredMessage::try_from).collect::<Result<Vec<_>, _>>()?;
        let removed = stored.len() as u64 != count
            || stored.iter().any(|stored| stored.deleted || stored.message.seq.get() <= session.visible_after);
        if removed {
            return Err(StoreError::Refused(Refusal::Conflict(
                "this request was already stored, and its message has since been deleted".to_owned(),
            )));
        }
        let messages = stored.into_iter().map(|stored| stored.message).collect();
        Ok(Appended { messages, replayed: true, quota, counted_in: None, rate: None })
    }

    /// The record of an append of `count` messages from `first_seq`, for its transaction: put if
    /// the key is new (or its record expired); otherwise the cancellation returns the record.
    pub(super) fn idempotency_put(
        &self,
        session_id: SessionId,
        idempotency: &Idempotency,
        first_seq: u64,
        count: usize,
        now: Timestamp,
    ) -> Result<Put, StoreError> {
        let record = IdempotencyRecord {
            scope: idempotency_scope(session_id, idempotency),
            fingerprint: idempotency.fingerprint.clone(),
            first_seq,
            count: count as u64,
            expires_at: now.plus(IDEMPOTENCY_WINDOW).unix_seconds(),
        };
        let record: Item = serde_dynamo::to_item(record).map_err(StoreError::internal)?;
        Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(#scope) OR #expires_at < :now_secs")
            .expression_attribute_names("#scope", SCOPE)
            .expression_attribute_names("#expires_at", IDEMPOTENCY_EXPIRES_AT)
            .expression_attribute_values(":now_secs", n(now.unix_seconds()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::internal)
    }
}
