//! Idempotency records: a retried append with the same key and body is answered with what it
//! stored the first time; the same key with another body is a conflict.

use std::time::Duration;

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure};

use super::Appended;
use super::item::StoredMessage;
use crate::domain::QuotaState;
use crate::domain::Refusal;
use crate::domain::{Idempotency, SessionId, Timestamp};
use crate::store::item::{Item, Reader, n, s};
use crate::store::schema::idempotency::{EXPIRES_AT as IDEMPOTENCY_EXPIRES_AT, SCOPE};
use crate::store::schema::messages::{SEQ, SESSION_ID};
use crate::store::{Store, StoreError};

const FINGERPRINT: &str = "fingerprint";

const FIRST_SEQ: &str = "first_seq";

const COUNT: &str = "count";

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
        Ok(output
            .item()
            .filter(|item| {
                Reader::new(item, "idempotency").number::<i64>(IDEMPOTENCY_EXPIRES_AT).is_ok_and(|at| at >= now)
            })
            .cloned())
    }

    pub(super) async fn replay(
        &self,
        session_id: SessionId,
        record: &Item,
        idempotency: Option<&Idempotency>,
        quota: QuotaState,
    ) -> Result<Appended, StoreError> {
        let read = Reader::new(record, "idempotency");
        let same_request = idempotency.is_some_and(|wanted| read.string(FINGERPRINT).ok() == Some(&wanted.fingerprint));
        if !same_request {
            return Err(StoreError::Refused(Refusal::Conflict(
                "this idempotency key was already used with a different request body".to_owned(),
            )));
        }
        let first: u64 = read.number(FIRST_SEQ)?;
        let count: u64 = read.number(COUNT)?;
        let output = self
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
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let messages = output
            .items()
            .iter()
            .map(|item| StoredMessage::try_from(item).map(|stored| stored.message))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Appended { messages, replayed: true, quota })
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
        let record = Item::from([
            (SCOPE.to_owned(), s(idempotency_scope(session_id, idempotency))),
            (FINGERPRINT.to_owned(), s(&idempotency.fingerprint)),
            (FIRST_SEQ.to_owned(), n(first_seq)),
            (COUNT.to_owned(), n(count)),
            (IDEMPOTENCY_EXPIRES_AT.to_owned(), n(now.plus(IDEMPOTENCY_WINDOW).unix_seconds())),
        ]);
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
