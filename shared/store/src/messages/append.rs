//! The append engine: one transaction per attempt, retried at once from the state a cancellation
//! returns, fair under contention (see `gate`).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{CancellationReason, Put, TransactWriteItem};

use super::item::{DEDUPE_KEY, message_item, stored_messages};
use super::reply::lease_keys;
use super::{Appended, LogHead};
use crate::item::{Item, s};
use crate::limits::meter_from_item;
use crate::schema::messages::SEQ;
use crate::sessions::last_message_of;
use crate::sessions::{DELETED_AT as SESSION_DELETED_AT, SessionRecord};
use crate::tx::{backoff, cancellation_reasons, is_conflict, reason_failed};
use crate::{Store, StoreError};
use domain::{
    AppendLimits, CharacterId, Charge, Idempotency, Message, Meter, MeterWrite, NewMessage, RateClass, Refusal,
    SessionId, Timestamp, UserId,
};

/// An append retries a stale guess at once (the cancellation told it the fresh state) and a
/// transaction conflict after a short jitter; only a database that keeps refusing for this many
/// attempts or this long is answered 503. Lost races end long before: inside a process a user's
/// writes take turns (`WriteGates`), so the contenders for an item are the processes.
const MAX_ATTEMPTS: u32 = 200;

const ATTEMPT_BUDGET: Duration = Duration::from_secs(10);

/// Why an append attempt did not commit.
enum AppendMiss {
    /// A guess was stale: retry on top of the session's head and the meter, where the cancelled
    /// transaction told them (`None`: that guess was right).
    Stale { head: Option<LogHead>, meter: Option<Meter> },
    /// Another transaction held an item: retry the same guesses.
    Conflict,
    /// The key was used before: this is the stored record.
    Replay(Item),
}

impl Store {
    /// The write of a new message item: it never overwrites a seq.
    fn message_put(&self, item: Item) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.tables.messages)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#seq)")
            .expression_attribute_names("#seq", SEQ)
            .build()
            .map_err(StoreError::internal)
    }

    /// The write of a new message, for another module's transaction (a chat's greeting).
    pub(crate) fn new_message_put(&self, message: &Message) -> Result<Put, StoreError> {
        self.message_put(message_item(message)?)
    }

    /// Appends messages as consecutive seqs, atomically with the session summary, the
    /// idempotency record and the meter (daily quota, append rate, usage; `character`: the
    /// session's, whose messages the day counts). All or nothing.
    pub async fn append_messages(
        &self,
        user: &UserId,
        session_id: SessionId,
        messages: Vec<NewMessage>,
        idempotency: Option<&Idempotency>,
        character: Option<&CharacterId>,
    ) -> Result<Appended, StoreError> {
        let _turn = self.gates.enter(user).await;
        let started = Instant::now();
        // What this instance does not know yet (the quota settings, the log's head, the meter) it
        // reads in one parallel round, so the transaction is the second round trip at most.
        let (limits, (mut head, mut verified), (mut meter, mut meter_verified)) = tokio::try_join!(
            self.append_limits(user, &messages, character),
            self.log_head(user, session_id),
            self.meter(user),
        )?;
        // The meter matters when the append is metered, or for the quota headers of a limited user.
        let metered = !limits.usage.is_empty() || limits.allowance.is_some() || limits.rated;
        if !metered {
            (meter, meter_verified) = (Meter::default(), true);
        }
        for attempt in 0..MAX_ATTEMPTS {
            if let Err(error) = NewMessage::check_reply_to(&messages, head.last_seq) {
                if verified {
                    return Err(error.into());
                }
                head = LogHead::of(&self.session_record(user, session_id).await?);
                verified = true;
                continue;
            }
            let (write, used_after) = match limits.charge(&meter) {
                Charge::Free { used } => (None, used),
                Charge::Write(write) => {
                    let used_after = write.used_after;
                    (Some(write), used_after)
                }
                // A refusal is only as good as the meter it read: check it against the stored one.
                Charge::OverQuota { .. } | Charge::RateLimited if !meter_verified => {
                    meter = self.fresh_meter(user).await?;
                    meter_verified = true;
                    continue;
                }
                Charge::OverQuota { allowance, used } => {
                    return self.over_quota(user, session_id, idempotency, &limits, allowance, used).await;
                }
                Charge::RateLimited => {
                    return Err(StoreError::Refused(Refusal::RateLimited {
                        retry_after_secs: limits.now.seconds_to_next_minute(),
                        class: RateClass::Append,
                        limit: limits.rate_limit.unwrap_or_default(),
                    }));
                }
            };
            let now = self.now();
            let counted_in = (write.is_some() && limits.counts_quota()).then(|| limits.window.day.clone());
            let mut stored =
                stored_messages(session_id, &messages, head.last_seq, head.rev + 1, now, &self.limits.prices);
            for lease in stored.iter_mut().filter_map(|message| message.lease.as_mut()) {
                lease.counted_in = counted_in.clone();
            }
            match self.try_append(user, session_id, &stored, head, idempotency, write.as_deref(), now).await? {
                Ok(()) => {
                    let next = LogHead { last_seq: head.last_seq + stored.len() as u64, rev: head.rev + 1 };
                    self.seq_hints.remember(session_id, next);
                    if let Some(write) = &write {
                        self.limit_caches.remember_meter(user, &write.next);
                    }
                    return Ok(Appended {
                        messages: stored,
                        replayed: false,
                        quota: limits.quota_state(used_after),
                        counted_in,
                        rate: limits.rate_state(write.as_deref().map(|write| &write.next)),
                    });
                }
                Err(AppendMiss::Replay(record)) => {
                    let quota = limits.quota_state(meter.used(&limits.window.day));
                    return self.replay(user, session_id, &record, idempotency, quota).await;
                }
                Err(AppendMiss::Stale { head: actual_head, meter: actual_meter }) => {
                    if let Some(actual) = actual_head {
                        self.seq_hints.remember(session_id, actual);
                        head = actual;
                        verified = true;
                    }
                    if let Some(actual) = actual_meter {
                        self.limit_caches.remember_meter(user, &actual);
                        meter = actual;
                        meter_verified = true;
                    }
                    // The cancellation carried the fresh state: the next attempt is right unless
                    // another process commits first, so it goes at once.
                }
                Err(AppendMiss::Conflict) => backoff(attempt).await,
            }
            if started.elapsed() > ATTEMPT_BUDGET {
                break;
            }
        }
        Err(StoreError::Unavailable("the session is too busy: append retries exhausted".into()))
    }

    /// The quota is used up: a retry of an append that was stored is still answered; anything
    /// else is 429 (a missing or foreign session stays 404).
    async fn over_quota(
        &self,
        user: &UserId,
        session_id: SessionId,
        idempotency: Option<&Idempotency>,
        limits: &AppendLimits,
        allowance: u64,
        used: u64,
    ) -> Result<Appended, StoreError> {
        let quota = limits.quota_state(used);
        let record = async {
            match idempotency {
                Some(idempotency) => self.idempotency_record(session_id, idempotency).await,
                None => Ok(None),
            }
        };
        let (_, record) = tokio::try_join!(self.session_record(user, session_id), record)?;
        if let Some(record) = record {
            return self.replay(user, session_id, &record, idempotency, quota).await;
        }
        Err(StoreError::Refused(Refusal::DailyLimitExceeded {
            total: allowance,
            resets_at: limits.window.resets_at,
            retry_after_secs: limits.window.retry_after_secs(limits.now),
            quota,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_append(
        &self,
        user: &UserId,
        session_id: SessionId,
        stored: &[Message],
        expected: LogHead,
        idempotency: Option<&Idempotency>,
        meter: Option<&MeterWrite>,
        now: Timestamp,
    ) -> Result<Result<(), AppendMiss>, StoreError> {
        let last = stored.last().ok_or_else(|| {
            StoreError::Refused(Refusal::Invalid(domain::InputError::invalid("messages", "must not be empty")))
        })?;
        let session_update =
            self.session_append_update(user, session_id, expected, &last_message_of(last), stored.len(), now)?;
        let mut items = vec![TransactWriteItem::builder().update(session_update).build()];
        for (index, message) in stored.iter().enumerate() {
            let mut item = message_item(message)?;
            if message.lease.is_some() {
                item.extend(lease_keys(user, session_id));
            }
            // The append's key, on its first message: erasure finds the idempotency record by it.
            if let (0, Some(idempotency)) = (index, idempotency) {
                item.insert(DEDUPE_KEY.to_owned(), s(idempotency.key.as_str()));
            }
            items.push(TransactWriteItem::builder().put(self.message_put(item)?).build());
        }
        if let Some(idempotency) = idempotency {
            let put = self.idempotency_put(session_id, idempotency, expected.last_seq + 1, stored.len(), now)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let meter_at = items.len();
        if let Some(write) = meter {
            let (update, closed) = self.meter_items(user, write)?;
            items.push(TransactWriteItem::builder().update(update).build());
            if let Some(closed) = closed {
                items.push(TransactWriteItem::builder().put(closed).build());
            }
        }
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        let Err(error) = result else {
            return Ok(Ok(()));
        };
        let reasons = cancellation_reasons(error)?;
        let session_reason = reasons.first();
        let idempotency_reason = idempotency.and_then(|_| reasons.get(meter_at - 1));
        let failed_item = |reason: Option<&CancellationReason>| {
            reason.filter(|r| reason_failed(Some(r))).and_then(CancellationReason::item).cloned()
        };
        let mut stale_head = None;
        if reason_failed(session_reason) {
            let Some(item) = session_reason.and_then(CancellationReason::item) else {
                return Err(StoreError::NotFound("session"));
            };
            if item.contains_key(SESSION_DELETED_AT) {
                return Err(StoreError::NotFound("session"));
            }
            if let Some(record) = failed_item(idempotency_reason) {
                return Ok(Err(AppendMiss::Replay(record)));
            }
            let record = SessionRecord::try_from(item)?;
            if !record.session.status.accepts_messages() {
                return Err(StoreError::Refused(Refusal::SessionClosed(record.session.status)));
            }
            stale_head = Some(LogHead::of(&record));
        }
        if let Some(record) = failed_item(idempotency_reason) {
            return Ok(Err(AppendMiss::Replay(record)));
        }
        let mut stale_meter = None;
        if meter.is_some() {
            let meter_reason = reasons.get(meter_at);
            if reason_failed(meter_reason) {
                stale_meter = Some(
                    meter_reason
                        .and_then(CancellationReason::item)
                        .map(meter_from_item)
                        .transpose()?
                        .unwrap_or_default(),
                );
            } else if reason_failed(reasons.get(meter_at + 1)) {
                // The finished day was stored already: read the meter as it stands now.
                stale_meter = Some(self.fresh_meter(user).await?);
            }
        }
        if stale_head.is_some() || stale_meter.is_some() {
            return Ok(Err(AppendMiss::Stale { head: stale_head, meter: stale_meter }));
        }
        if is_conflict(&reasons) {
            return Ok(Err(AppendMiss::Conflict));
        }
        Err(StoreError::internal(format!(
            "append transaction cancelled unexpectedly: {:?}",
            reasons.iter().map(CancellationReason::code).collect::<Vec<_>>()
        )))
    }
}
