//! A session's summary: one item of the user's memories partition, `y#<session_id>`, with the
//! text, the last seq it covers, and what it was written against — the session's memory epoch and
//! `visible_after`. A reset (new epoch) or a new scene (new `visible_after`) leaves it describing
//! what is gone: it is then not read. An edit or delete of a message it covers deletes it in the
//! change's own transaction (`summary_delete`); the summarizer's write is conditioned on the
//! session's `rewritten_at` being what it read, so a change made while the model wrote it wins.

use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem};

use crate::bulk::Wanted;
use crate::item::{Item, Reader, n, s};
use crate::schema::memories::ITEM;
use crate::sessions::{MEMORY_EPOCH, REWRITTEN_AT, SessionRecord, VISIBLE_AFTER, session_key};
use crate::tx::{backoff, cancellation_reasons, reason_failed};
use crate::{Store, StoreError};
use domain::{DayUsage, MeterWrite, Seq, SessionId, Summary, Timestamp, UserId, estimate_tokens};

use super::key;

const TEXT: &str = "text";
const THROUGH_SEQ: &str = "through_seq";
const TOKENS: &str = "tokens";
const UPDATED_AT: &str = "updated_at";
const EPOCH: &str = "epoch";
const AFTER_SEQ: &str = "after_seq";

fn summary_item(session_id: SessionId) -> String {
    format!("y#{session_id}")
}

/// What a summarizer read, which its write is conditioned on.
#[derive(Clone, Debug)]
pub struct SummaryGuard {
    epoch: u64,
    visible_after: u64,
    rewritten_at: Option<Timestamp>,
    /// The summary it read, if any was current.
    previous: Option<Seq>,
}

impl SummaryGuard {
    /// Where the messages still to summarize start after: the summary's last seq, else the
    /// first visible message.
    pub fn after_seq(&self) -> u64 {
        self.previous.map_or(self.visible_after, |seq| seq.get().max(self.visible_after))
    }
}

/// A stored summary and what it was written against.
pub(crate) struct Stored {
    summary: Summary,
    epoch: u64,
    after_seq: u64,
}

fn stored_of(item: &Item) -> Result<Stored, StoreError> {
    let read = Reader::new(item, "summary");
    let through: u64 = read.number(THROUGH_SEQ)?;
    Ok(Stored {
        summary: Summary {
            text: read.string(TEXT)?.to_owned(),
            through_seq: Seq::new(through).ok_or_else(|| StoreError::corrupt("summary", THROUGH_SEQ))?,
            tokens: read.number(TOKENS)?,
            updated_at: read.parse(UPDATED_AT)?,
        },
        epoch: read.number(EPOCH)?,
        after_seq: read.number(AFTER_SEQ)?,
    })
}

impl Store {
    pub(crate) async fn stored_summary(
        &self,
        user: &UserId,
        session_id: SessionId,
    ) -> Result<Option<Stored>, StoreError> {
        Self::stored_summary_from(self.memories_item(user, summary_item(session_id)).await?.as_ref())
    }

    /// The summary item, for a read together with others (`get_together`).
    pub(crate) fn summary_wanted(&self, user: &UserId, session_id: SessionId) -> Wanted {
        Wanted { table: self.tables.memories.clone(), key: key(user, summary_item(session_id)) }
    }

    pub(crate) fn stored_summary_from(item: Option<&Item>) -> Result<Option<Stored>, StoreError> {
        item.map(stored_of).transpose()
    }

    /// The summary if it still describes the session as it is (not reset, no new scene since).
    pub(crate) fn current(record: &SessionRecord, stored: Option<Stored>) -> Option<Summary> {
        stored
            .filter(|stored| stored.epoch == record.memory_epoch && stored.after_seq == record.visible_after)
            .filter(|stored| stored.summary.through_seq.get() <= record.session.last_seq)
            .map(|stored| stored.summary)
    }

    /// The session's current summary (`NotFound` for a session that is not the user's).
    pub async fn session_summary(&self, user: &UserId, session_id: SessionId) -> Result<Option<Summary>, StoreError> {
        Ok(self.summary_state(user, session_id).await?.0)
    }

    /// The current summary and the guard a new one is written under.
    pub async fn summary_state(
        &self,
        user: &UserId,
        session_id: SessionId,
    ) -> Result<(Option<Summary>, SummaryGuard), StoreError> {
        let (record, stored) =
            tokio::try_join!(self.session_record(user, session_id), self.stored_summary(user, session_id))?;
        let current = Self::current(&record, stored);
        let guard = SummaryGuard {
            epoch: record.memory_epoch,
            visible_after: record.visible_after,
            rewritten_at: record.rewritten_at,
            previous: current.as_ref().map(|summary| summary.through_seq),
        };
        Ok((current, guard))
    }

    /// Stores a summary through `through`, if nothing it was written from changed (the session's
    /// epoch, `visible_after` and `rewritten_at` as read, the summary the one read), with the
    /// call's `usage` in the meter. `false`: it changed; read again.
    pub async fn store_summary(
        &self,
        user: &UserId,
        session_id: SessionId,
        guard: &SummaryGuard,
        text: &str,
        through: Seq,
        usage: &DayUsage,
    ) -> Result<bool, StoreError> {
        let mut check = ConditionCheck::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#visible_after", VISIBLE_AFTER)
            .expression_attribute_names("#rewritten_at", REWRITTEN_AT)
            .expression_attribute_values(":epoch", n(guard.epoch))
            .expression_attribute_values(":visible_after", n(guard.visible_after));
        let epoch =
            if guard.epoch == 0 { "(attribute_not_exists(#epoch) OR #epoch = :epoch)" } else { "#epoch = :epoch" };
        let visible = if guard.visible_after == 0 {
            "(attribute_not_exists(#visible_after) OR #visible_after = :visible_after)"
        } else {
            "#visible_after = :visible_after"
        };
        let rewritten = match guard.rewritten_at {
            Some(at) => {
                check = check.expression_attribute_values(":rewritten_at", s(at.to_string()));
                "#rewritten_at = :rewritten_at"
            }
            None => "attribute_not_exists(#rewritten_at)",
        };
        let check = check.condition_expression(format!("{epoch} AND {visible} AND {rewritten}"));
        let now = self.now();
        let mut item = key(user, summary_item(session_id));
        item.insert(TEXT.to_owned(), s(text));
        item.insert(THROUGH_SEQ.to_owned(), n(through.get()));
        item.insert(TOKENS.to_owned(), n(estimate_tokens(text)));
        item.insert(UPDATED_AT.to_owned(), s(now.to_string()));
        item.insert(EPOCH.to_owned(), n(guard.epoch));
        item.insert(AFTER_SEQ.to_owned(), n(guard.visible_after));
        let mut put = Put::builder().table_name(&self.tables.memories).set_item(Some(item));
        put = match guard.previous {
            Some(previous) => put
                .condition_expression("#through = :previous")
                .expression_attribute_names("#through", THROUGH_SEQ)
                .expression_attribute_values(":previous", n(previous.get())),
            // None was current: none, or one of an earlier epoch or scene, may be replaced.
            None => put
                .condition_expression("attribute_not_exists(#item) OR #epoch <> :epoch OR #after <> :after")
                .expression_attribute_names("#item", ITEM)
                .expression_attribute_names("#epoch", EPOCH)
                .expression_attribute_names("#after", AFTER_SEQ)
                .expression_attribute_values(":epoch", n(guard.epoch))
                .expression_attribute_values(":after", n(guard.visible_after)),
        };
        let (check, put) = (check.build().map_err(StoreError::internal)?, put.build().map_err(StoreError::internal)?);
        // The call's tokens land in today's usage (the `memory` kind) in the same transaction.
        let (mut meter, _) = self.meter(user).await?;
        for attempt in 0..6 {
            let mut items = vec![
                TransactWriteItem::builder().condition_check(check.clone()).build(),
                TransactWriteItem::builder().put(put.clone()).build(),
            ];
            let write = MeterWrite::settle(&meter, now, usage, None);
            if let Some(write) = &write {
                let (update, closed) = self.meter_items(user, write)?;
                items.push(TransactWriteItem::builder().update(update).build());
                items.extend(closed.map(|closed| TransactWriteItem::builder().put(closed).build()));
            }
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                if let Some(write) = &write {
                    self.limit_caches.remember_meter(user, &write.next);
                }
                return Ok(true);
            };
            let reasons = cancellation_reasons(error)?;
            if reasons.iter().take(2).any(|reason| reason_failed(Some(reason))) {
                return Ok(false);
            }
            if reasons.iter().skip(2).any(|reason| reason_failed(Some(reason))) {
                meter = self.fresh_meter(user).await?;
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the summary write collided; try again".into()))
    }

    /// The item that deletes the session's summary, when one covers any of `seqs` (an edit or a
    /// delete of a message it describes); `None` otherwise.
    pub(crate) async fn summary_delete(
        &self,
        user: &UserId,
        session_id: SessionId,
        seqs: &[Seq],
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        let Some(stored) = self.stored_summary(user, session_id).await? else { return Ok(None) };
        if !seqs.iter().any(|seq| *seq <= stored.summary.through_seq) {
            return Ok(None);
        }
        let delete = Delete::builder()
            .table_name(&self.tables.memories)
            .set_key(Some(key(user, summary_item(session_id))))
            .build()
            .map_err(StoreError::internal)?;
        Ok(Some(TransactWriteItem::builder().delete(delete).build()))
    }
}
