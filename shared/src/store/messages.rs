//! Messages table: one item per message, keyed by (session_id, seq). The session item carries the
//! summary (`last_seq`, `message_count`, `last_message`) and every write to the log changes the
//! summary in the same transaction, so the two always agree.
//!
//! Appends are optimistic: the transaction asserts `last_seq = N` and writes seq N+1. The store
//! remembers each session's `last_seq` (`SeqHints`), so a warm append is one round trip; when the
//! guess is stale the cancelled transaction returns the current session item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and the retry uses it.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};

use super::hints::Hints;
use super::item::{Item, Reader, n, s};
use super::limits::{AppendLimits, Charge, Meter, MeterWrite, QuotaState, retry_after_minute};
use super::memories::ScopeKey;
use super::schema::idempotency::{EXPIRES_AT as IDEMPOTENCY_EXPIRES_AT, SCOPE};
use super::schema::messages::{SEQ, SESSION_ID};
use super::schema::sessions::{ACTIVITY_AT, SESSION_ID as SESSION_SK};
use super::sessions::{
    DELETED_AT as SESSION_DELETED_AT, LAST_MESSAGE, LAST_SEQ, MEMORY_EPOCH, MESSAGE_COUNT, REV, REWRITTEN_AT, STATUS,
    SessionRecord, UPDATED_AT, VISIBLE_AFTER, last_message_value, session_key,
};
use super::tx::{backoff, cancellation_reasons, is_conflict, reason_failed};
use super::{Store, StoreError};
use crate::domain::{
    Content, Idempotency, LastMessage, Message, MessageId, NewMessage, PageLimit, Role, Seq, Session, SessionId,
    SessionStatus, Timestamp, UserId, preview_of,
};

const ID: &str = "id";
const ROLE: &str = "role";
const TYPE: &str = "type";
const CONTENT: &str = "content";
const PAYLOAD: &str = "payload";
const REPLY_TO: &str = "reply_to";
const USAGE: &str = "usage";
const CREATED_AT: &str = "created_at";
const EDITED_AT: &str = "edited_at";
const DELETED_AT: &str = "deleted_at";

const FINGERPRINT: &str = "fingerprint";
const FIRST_SEQ: &str = "first_seq";
const COUNT: &str = "count";

/// Idempotency records answer retries for at least this long (TTL removes them some time after).
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// An append retries a stale guess at once (the cancellation told it the fresh state) and a
/// transaction conflict after a short jitter; only a database that keeps refusing for this many
/// attempts or this long is answered 503. Lost races end long before: inside a process a user's
/// writes take turns (`WriteGates`), so the contenders for an item are the processes.
const MAX_ATTEMPTS: u32 = 200;
const ATTEMPT_BUDGET: Duration = Duration::from_secs(10);
/// Read-modify-write operations (edit, delete, forget-recent, new-scene) retry this often.
const MAX_RMW_ATTEMPTS: u32 = 20;
/// Items read per page while skipping deleted messages.
const QUERY_PAGE: i32 = 100;
/// The last `last_seq` this process saw for each session: the guess an append starts from.
#[derive(Default)]
pub(crate) struct SeqHints(Hints<SessionId, u64>);

impl SeqHints {
    /// `last_seq` never goes down, so an older answer arriving late cannot lower the guess.
    pub(crate) fn remember(&self, session: SessionId, last_seq: u64) {
        self.0.update(session, |known| known.map_or(last_seq, |known| (*known).max(last_seq)));
    }

    pub(crate) fn forget(&self, session: SessionId) {
        self.0.remove(&session);
    }

    fn get(&self, session: SessionId) -> Option<u64> {
        self.0.get(&session)
    }
}

/// The outcome of an append: the stored messages, and whether they were an idempotent replay.
#[derive(Clone, Debug)]
pub struct Appended {
    pub messages: Vec<Message>,
    pub replayed: bool,
    /// The caller's daily quota after this append.
    pub quota: QuotaState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageOrder {
    #[default]
    Asc,
    Desc,
}

/// Which live messages a listing returns: seqs strictly between `after_seq` and `before_seq`.
#[derive(Clone, Copy, Debug)]
pub struct MessageQuery {
    pub after_seq: Option<u64>,
    pub before_seq: Option<u64>,
    pub limit: PageLimit,
    pub order: MessageOrder,
}

#[derive(Clone, Debug)]
pub struct MessageSlice {
    pub data: Vec<Message>,
    pub has_more: bool,
    pub last_seq: u64,
}

fn message_key(session: SessionId, seq: Seq) -> Item {
    Item::from([(SESSION_ID.to_owned(), s(session.to_string())), (SEQ.to_owned(), n(seq))])
}

fn message_item(message: &Message) -> Item {
    let mut item = message_key(message.session_id, message.seq);
    item.extend([
        (ID.to_owned(), s(message.id.to_string())),
        (ROLE.to_owned(), s(message.role.as_str())),
        (TYPE.to_owned(), s(message.message_type.as_str())),
        (CONTENT.to_owned(), s(message.content.as_str())),
        (CREATED_AT.to_owned(), s(message.created_at.to_string())),
    ]);
    if let Some(payload) = &message.payload {
        item.insert(PAYLOAD.to_owned(), s(serde_json::to_string(payload.as_map()).unwrap_or_default()));
    }
    if let Some(reply_to) = message.reply_to {
        item.insert(REPLY_TO.to_owned(), n(reply_to));
    }
    if let Some(usage) = &message.usage {
        item.insert(
            USAGE.to_owned(),
            AttributeValue::M(Item::from([
                ("input_tokens".to_owned(), n(usage.input_tokens)),
                ("output_tokens".to_owned(), n(usage.output_tokens)),
                ("model".to_owned(), s(&usage.model)),
            ])),
        );
    }
    item
}

/// A stored message and whether it was deleted.
struct StoredMessage {
    message: Message,
    deleted: bool,
}

impl TryFrom<&Item> for StoredMessage {
    type Error = StoreError;

    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let read = Reader::new(item, "message");
        let corrupt = |name| StoreError::corrupt("message", name);
        let usage = read
            .opt_map(USAGE)?
            .map(|map| {
                let usage = Reader::new(map, "message.usage");
                Ok::<_, StoreError>(crate::domain::Usage {
                    input_tokens: usage.number("input_tokens")?,
                    output_tokens: usage.number("output_tokens")?,
                    model: usage.string("model")?.to_owned(),
                })
            })
            .transpose()?;
        let message = Message {
            id: MessageId::parse(read.string(ID)?).ok_or_else(|| corrupt(ID))?,
            session_id: read.parse(SESSION_ID)?,
            seq: Seq::new(read.number(SEQ)?).ok_or_else(|| corrupt(SEQ))?,
            role: read.parse(ROLE)?,
            message_type: crate::domain::MessageType::parse(read.string(TYPE)?).map_err(|_| corrupt(TYPE))?,
            content: Content::parse(read.string(CONTENT)?.to_owned()).map_err(|_| corrupt(CONTENT))?,
            payload: read
                .opt_json_object(PAYLOAD)?
                .map(crate::domain::Payload::parse)
                .transpose()
                .map_err(|_| corrupt(PAYLOAD))?,
            reply_to: read
                .opt_number::<u64>(REPLY_TO)?
                .map(|seq| Seq::new(seq).ok_or_else(|| corrupt(REPLY_TO)))
                .transpose()?,
            usage,
            created_at: read.parse(CREATED_AT)?,
            edited_at: read.opt_parse(EDITED_AT)?,
        };
        Ok(Self { message, deleted: read.has(DELETED_AT) })
    }
}

fn last_message_of(message: &Message) -> LastMessage {
    LastMessage {
        seq: message.seq,
        role: message.role,
        preview: preview_of(message.content.as_str()),
        created_at: message.created_at,
    }
}

/// Why an append attempt did not commit.
enum AppendMiss {
    /// A guess was stale: retry on top of the session's `last_seq` and the meter, where the
    /// cancelled transaction told them (`None`: that guess was right).
    Stale { last_seq: Option<u64>, meter: Option<Meter> },
    /// Another transaction held an item: retry the same guesses.
    Conflict,
    /// The key was used before: this is the stored record.
    Replay(Item),
}

impl Store {
    /// Appends messages as consecutive seqs, atomically with the session summary, the
    /// idempotency record, the daily quota, the append rate limit and the usage roll-up.
    /// All or nothing.
    pub async fn append_messages(
        &self,
        user: &UserId,
        session_id: SessionId,
        messages: Vec<NewMessage>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Appended, StoreError> {
        let _turn = self.gates.enter(user).await;
        let started = Instant::now();
        let limits = self.append_limits(user, &messages).await?;
        // What this instance does not know yet it reads in one parallel round.
        let seq_hint = self.seq_hints.get(session_id);
        let session = async {
            match seq_hint {
                Some(last_seq) => Ok((last_seq, false)),
                None => Ok((self.session_record(user, session_id).await?.session.last_seq, true)),
            }
        };
        // The meter matters when the append is metered, or for the quota headers of a limited user.
        let metered = !limits.usage.is_empty() || limits.allowance.is_some();
        let meter = async { if metered { self.meter(user).await } else { Ok((Meter::default(), true)) } };
        let ((mut last_seq, mut verified), (mut meter, mut meter_verified)) = tokio::try_join!(session, meter)?;
        for attempt in 0..MAX_ATTEMPTS {
            if let Err(error) = check_reply_to(&messages, last_seq) {
                if verified {
                    return Err(error);
                }
                last_seq = self.session_record(user, session_id).await?.session.last_seq;
                verified = true;
                continue;
            }
            let (write, used_after) = match limits.charge(&meter) {
                Charge::Free { used } => (None, used),
                Charge::Write(write) => {
                    let used_after = write.used_after;
                    (Some(write), used_after)
                }
                refused @ (Charge::OverQuota { .. } | Charge::RateLimited) if !meter_verified => {
                    drop(refused);
                    meter = self.fresh_meter(user).await?;
                    meter_verified = true;
                    continue;
                }
                Charge::OverQuota { allowance, used } => {
                    return self.over_quota(user, session_id, idempotency, &limits, allowance, used).await;
                }
                Charge::RateLimited => {
                    return Err(StoreError::RateLimited { retry_after_secs: retry_after_minute(limits.now) });
                }
            };
            let now = self.now();
            let stored = stored_messages(session_id, &messages, last_seq, now);
            match self.try_append(user, session_id, &stored, last_seq, idempotency, write.as_deref(), now).await? {
                Ok(()) => {
                    self.seq_hints.remember(session_id, last_seq + stored.len() as u64);
                    if let Some(write) = &write {
                        self.limit_caches.remember_meter(user, &write.next);
                    }
                    return Ok(Appended { messages: stored, replayed: false, quota: limits.quota_state(used_after) });
                }
                Err(AppendMiss::Replay(record)) => {
                    let quota = limits.quota_state(meter.used(&limits.window.day));
                    return self.replay(session_id, &record, idempotency, quota).await;
                }
                Err(AppendMiss::Stale { last_seq: actual_seq, meter: actual_meter }) => {
                    if let Some(actual) = actual_seq {
                        self.seq_hints.remember(session_id, actual);
                        last_seq = actual;
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
            return self.replay(session_id, &record, idempotency, quota).await;
        }
        Err(StoreError::DailyLimitExceeded {
            total: allowance,
            resets_at: limits.window.resets_at,
            retry_after_secs: limits.window.retry_after_secs(limits.now),
            quota,
        })
    }

    async fn idempotency_record(
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

    #[allow(clippy::too_many_arguments)]
    async fn try_append(
        &self,
        user: &UserId,
        session_id: SessionId,
        stored: &[Message],
        expected_last: u64,
        idempotency: Option<&Idempotency>,
        meter: Option<&MeterWrite>,
        now: Timestamp,
    ) -> Result<Result<(), AppendMiss>, StoreError> {
        let last = stored
            .last()
            .ok_or_else(|| StoreError::Invalid(crate::domain::InputError::invalid("messages", "must not be empty")))?;
        let session_update = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression(
                "attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #status = :open AND #last_seq = :expected",
            )
            .update_expression(
                "SET #last_seq = :new_last, #count = #count + :added, #last_message = :last_message, \
                 #updated_at = :now, #activity_at = :now, #rev = #rev + :one",
            )
            .expression_attribute_names("#sk", SESSION_SK)
            .expression_attribute_names("#deleted_at", SESSION_DELETED_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#last_message", LAST_MESSAGE)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":expected", n(expected_last))
            .expression_attribute_values(":new_last", n(last.seq))
            .expression_attribute_values(":added", n(stored.len()))
            .expression_attribute_values(":last_message", last_message_value(&last_message_of(last)))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::internal)?;
        let mut items = vec![TransactWriteItem::builder().update(session_update).build()];
        for message in stored {
            let put = Put::builder()
                .table_name(&self.tables.messages)
                .set_item(Some(message_item(message)))
                .condition_expression("attribute_not_exists(#seq)")
                .expression_attribute_names("#seq", SEQ)
                .build()
                .map_err(StoreError::internal)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if let Some(idempotency) = idempotency {
            let record = Item::from([
                (SCOPE.to_owned(), s(idempotency_scope(session_id, idempotency))),
                (FINGERPRINT.to_owned(), s(&idempotency.fingerprint)),
                (FIRST_SEQ.to_owned(), n(expected_last + 1)),
                (COUNT.to_owned(), n(stored.len())),
                (IDEMPOTENCY_EXPIRES_AT.to_owned(), n(now.plus(IDEMPOTENCY_WINDOW).unix_seconds())),
            ]);
            let put = Put::builder()
                .table_name(&self.tables.idempotency)
                .set_item(Some(record))
                .condition_expression("attribute_not_exists(#scope) OR #expires_at < :now_secs")
                .expression_attribute_names("#scope", SCOPE)
                .expression_attribute_names("#expires_at", IDEMPOTENCY_EXPIRES_AT)
                .expression_attribute_values(":now_secs", n(now.unix_seconds()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(StoreError::internal)?;
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
        let mut stale_seq = None;
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
                return Err(StoreError::SessionClosed(record.session.status));
            }
            stale_seq = Some(record.session.last_seq);
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
                        .map(Meter::from_item)
                        .transpose()?
                        .unwrap_or_default(),
                );
            } else if reason_failed(reasons.get(meter_at + 1)) {
                // The finished day was stored already: read the meter as it stands now.
                stale_meter = Some(self.fresh_meter(user).await?);
            }
        }
        if stale_seq.is_some() || stale_meter.is_some() {
            return Ok(Err(AppendMiss::Stale { last_seq: stale_seq, meter: stale_meter }));
        }
        if is_conflict(&reasons) {
            return Ok(Err(AppendMiss::Conflict));
        }
        Err(StoreError::internal(format!(
            "append transaction cancelled unexpectedly: {:?}",
            reasons.iter().map(CancellationReason::code).collect::<Vec<_>>()
        )))
    }

    async fn replay(
        &self,
        session_id: SessionId,
        record: &Item,
        idempotency: Option<&Idempotency>,
        quota: QuotaState,
    ) -> Result<Appended, StoreError> {
        let read = Reader::new(record, "idempotency");
        let same_request = idempotency.is_some_and(|wanted| read.string(FINGERPRINT).ok() == Some(&wanted.fingerprint));
        if !same_request {
            return Err(StoreError::Conflict(
                "this idempotency key was already used with a different request body".to_owned(),
            ));
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

    /// Live messages of a session, in seq order, skipping deleted and cleared ones.
    pub async fn list_messages(
        &self,
        user: &UserId,
        session_id: SessionId,
        query: MessageQuery,
    ) -> Result<MessageSlice, StoreError> {
        let (record, data, has_more) = self.read_log(user, session_id, query).await?;
        Ok(MessageSlice { data, has_more, last_seq: record.session.last_seq })
    }

    /// The session and its newest `count` live messages, oldest first: a chat screen's first load.
    pub async fn session_with_latest(
        &self,
        user: &UserId,
        session_id: SessionId,
        count: PageLimit,
    ) -> Result<(Session, Vec<Message>), StoreError> {
        let query = MessageQuery { after_seq: None, before_seq: None, limit: count, order: MessageOrder::Desc };
        let (record, mut messages, _) = self.read_log(user, session_id, query).await?;
        messages.reverse();
        Ok((record.session, messages))
    }

    /// Reads the session item (strongly consistent) and a page of the log (eventually consistent,
    /// half the read units) in parallel; the session item decides what is visible. The page is
    /// read again strongly consistent when the session item shows it may be behind: it lacks the
    /// newest live message although its range holds it, or a message was edited or deleted within
    /// `REWRITE_SETTLE`. So a client always sees its own appends, edits and deletes.
    async fn read_log(
        &self,
        user: &UserId,
        session_id: SessionId,
        query: MessageQuery,
    ) -> Result<(SessionRecord, Vec<Message>, bool), StoreError> {
        let forward = query.order == MessageOrder::Asc;
        let wanted = query.limit.as_usize();
        let read = |lower: u64, consistency: Consistency| {
            self.live_messages(session_id, lower, query.before_seq, forward, wanted, consistency)
        };
        let lower = query.after_seq.unwrap_or(0);
        let (record, (mut data, mut has_more)) =
            tokio::try_join!(self.session_record(user, session_id), read(lower, Consistency::Eventual))?;
        let lower = lower.max(record.visible_after);
        let page = PageCheck {
            lower,
            before_seq: query.before_seq,
            forward,
            newest_live: record.session.last_message.as_ref().map(|last| last.seq.get()),
            rewritten_recently: record
                .rewritten_at
                .is_some_and(|at| self.now().datetime() - at.datetime() < REWRITE_SETTLE),
        };
        if page.may_be_behind(&data, has_more) {
            (data, has_more) = read(lower, Consistency::Strong).await?;
        } else if lower > query.after_seq.unwrap_or(0) {
            if forward {
                (data, has_more) = read(lower, Consistency::Eventual).await?;
            } else {
                let before = data.len();
                data.retain(|message| message.seq.get() > lower);
                has_more = has_more && data.len() == before;
            }
        }
        Ok((record, data, has_more))
    }

    /// The newest `count` live messages, newest first, before any watermark is applied.
    pub(crate) async fn latest_live(
        &self,
        session_id: SessionId,
        count: PageLimit,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(self.live_messages(session_id, 0, None, false, count.as_usize(), Consistency::Strong).await?.0)
    }

    /// Reads live messages with seq strictly between `lower` and `upper`, `wanted` of them at most.
    async fn live_messages(
        &self,
        session_id: SessionId,
        lower: u64,
        upper: Option<u64>,
        forward: bool,
        wanted: usize,
        consistency: Consistency,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let low = lower.saturating_add(1);
        let high = upper.map_or(i64::MAX as u64, |upper| upper.saturating_sub(1));
        if low > high || wanted == 0 {
            return Ok((Vec::new(), false));
        }
        let mut found = Vec::with_capacity(wanted + 1);
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .key_condition_expression("#sid = :sid AND #seq BETWEEN :low AND :high")
                .filter_expression("attribute_not_exists(#deleted_at)")
                .expression_attribute_names("#sid", SESSION_ID)
                .expression_attribute_names("#seq", SEQ)
                .expression_attribute_names("#deleted_at", DELETED_AT)
                .expression_attribute_values(":sid", s(session_id.to_string()))
                .expression_attribute_values(":low", n(low))
                .expression_attribute_values(":high", n(high))
                .scan_index_forward(forward)
                .consistent_read(consistency == Consistency::Strong)
                .limit(read_ahead(wanted + 1 - found.len()))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                found.push(StoredMessage::try_from(item)?.message);
                if found.len() > wanted {
                    break;
                }
            }
            match output.last_evaluated_key {
                Some(key) if found.len() <= wanted => start_key = Some(key),
                _ => break,
            }
        }
        let has_more = found.len() > wanted;
        found.truncate(wanted);
        Ok((found, has_more))
    }

    /// One live, visible message.
    pub async fn get_message(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<Message, StoreError> {
        let (record, stored) =
            tokio::try_join!(self.session_record(user, session_id), self.stored_message(session_id, seq))?;
        visible(&record, stored).map(|stored| stored.message)
    }

    async fn stored_message(&self, session_id: SessionId, seq: Seq) -> Result<Option<StoredMessage>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(session_id, seq)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map(StoredMessage::try_from).transpose()
    }

    /// Replaces a `user` message's content and stamps `edited_at`.
    pub async fn edit_message(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
        content: Content,
    ) -> Result<Message, StoreError> {
        let _turn = self.gates.enter(user).await;
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let (record, stored) =
                tokio::try_join!(self.writable_session(user, session_id), self.stored_message(session_id, seq))?;
            let mut message = visible(&record, stored)?.message;
            if message.role != Role::User {
                return Err(StoreError::Forbidden("only user messages can be edited".to_owned()));
            }
            let now = self.now();
            message.content = content.clone();
            message.edited_at = Some(now);
            let mut summary = SummaryChange::new(&record, now);
            if record.session.last_message.as_ref().is_some_and(|last| last.seq == seq) {
                summary.last_message = Some(Some(last_message_of(&message)));
            }
            let edit = Update::builder()
                .table_name(&self.tables.messages)
                .set_key(Some(message_key(session_id, seq)))
                .condition_expression("attribute_exists(#seq) AND attribute_not_exists(#deleted_at)")
                .update_expression("SET #content = :content, #edited_at = :now")
                .expression_attribute_names("#seq", SEQ)
                .expression_attribute_names("#deleted_at", DELETED_AT)
                .expression_attribute_names("#content", CONTENT)
                .expression_attribute_names("#edited_at", EDITED_AT)
                .expression_attribute_values(":content", s(content.as_str()))
                .expression_attribute_values(":now", s(now.to_string()))
                .build()
                .map_err(StoreError::internal)?;
            if self.commit_with_summary(user, session_id, summary, vec![edit]).await? {
                return Ok(message);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: edit retries exhausted".into()))
    }

    /// Soft-deletes one message; its seq is never reused.
    pub async fn delete_message(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<(), StoreError> {
        let _turn = self.gates.enter(user).await;
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let (record, stored) =
                tokio::try_join!(self.writable_session(user, session_id), self.stored_message(session_id, seq))?;
            visible(&record, stored)?;
            let now = self.now();
            let mut summary = SummaryChange::new(&record, now);
            summary.removed = 1;
            if record.session.last_message.as_ref().is_some_and(|last| last.seq == seq) {
                let (previous, _) = self
                    .live_messages(session_id, record.visible_after, Some(seq.get()), false, 1, Consistency::Strong)
                    .await?;
                summary.last_message = Some(previous.first().map(last_message_of));
            }
            let delete = self.soft_delete(session_id, seq, now)?;
            if self.commit_with_summary(user, session_id, summary, vec![delete]).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: delete retries exhausted".into()))
    }

    /// Soft-deletes the newest `count` live messages; returns how many there were.
    pub async fn forget_recent(&self, user: &UserId, session_id: SessionId, count: usize) -> Result<u64, StoreError> {
        let _turn = self.gates.enter(user).await;
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let record = self.writable_session(user, session_id).await?;
            let (newest, _) = self
                .live_messages(session_id, record.visible_after, None, false, count + 1, Consistency::Strong)
                .await?;
            let doomed = &newest[..count.min(newest.len())];
            if doomed.is_empty() {
                return Ok(0);
            }
            let now = self.now();
            let mut summary = SummaryChange::new(&record, now);
            summary.removed = doomed.len() as u64;
            summary.last_message = Some(newest.get(count).map(last_message_of));
            let deletes = doomed
                .iter()
                .map(|message| self.soft_delete(session_id, message.seq, now))
                .collect::<Result<_, _>>()?;
            if self.commit_with_summary(user, session_id, summary, deletes).await? {
                return Ok(doomed.len() as u64);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: forget-recent retries exhausted".into()))
    }

    /// Hides every live message but the newest `keep`; returns how many were hidden.
    pub async fn new_scene(&self, user: &UserId, session_id: SessionId, keep: usize) -> Result<u64, StoreError> {
        let _turn = self.gates.enter(user).await;
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let record = self.writable_session(user, session_id).await?;
            let live = record.session.message_count;
            if live <= keep as u64 {
                return Ok(0);
            }
            let watermark = if keep == 0 {
                record.session.last_seq
            } else {
                let (newest, _) = self
                    .live_messages(session_id, record.visible_after, None, false, keep + 1, Consistency::Strong)
                    .await?;
                match newest.get(keep) {
                    Some(first_hidden) => first_hidden.seq.get(),
                    None => return Ok(0),
                }
            };
            let now = self.now();
            let mut summary = SummaryChange::new(&record, now);
            summary.removed = live - keep as u64;
            summary.visible_after = Some(watermark);
            if keep == 0 {
                summary.last_message = Some(None);
            }
            if self.commit_with_summary(user, session_id, summary, Vec::new()).await? {
                return Ok(live - keep as u64);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: new-scene retries exhausted".into()))
    }

    /// Hides every message of the session and moves its memories to a fresh epoch, in one
    /// conditional write. Returns how many messages were live and how many memories it held.
    pub async fn reset_session(&self, user: &UserId, session_id: SessionId) -> Result<(u64, u64), StoreError> {
        let now = self.now();
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #status = :open")
            .update_expression(
                "SET #visible_after = #last_seq, #count = :zero, #updated_at = :now, #activity_at = :now, \
                 #rev = #rev + :one, #epoch = if_not_exists(#epoch, :zero) + :one REMOVE #last_message",
            )
            .expression_attribute_names("#sk", SESSION_SK)
            .expression_attribute_names("#deleted_at", SESSION_DELETED_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#visible_after", VISIBLE_AFTER)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#last_message", LAST_MESSAGE)
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_string()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match output {
            Ok(output) => {
                let old = output.attributes().ok_or_else(|| StoreError::corrupt("session", "attributes"))?;
                let old = SessionRecord::try_from(old)?;
                let memories = self.scope_count(user, &ScopeKey::session(session_id, old.memory_epoch)).await?;
                Ok((old.session.message_count, memories))
            }
            Err(error) => {
                let old = error.as_service_error().and_then(|service| match service {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                        failed,
                    ) => Some(failed.item().cloned()),
                    _ => None,
                });
                match old {
                    Some(Some(item)) if !item.contains_key(SESSION_DELETED_AT) => {
                        Err(StoreError::SessionClosed(SessionRecord::try_from(&item)?.session.status))
                    }
                    Some(_) => Err(StoreError::NotFound("session")),
                    None => Err(StoreError::from_sdk(error)),
                }
            }
        }
    }

    /// The session, if it exists, belongs to `user`, and accepts changes to its messages.
    async fn writable_session(&self, user: &UserId, session_id: SessionId) -> Result<SessionRecord, StoreError> {
        let record = self.session_record(user, session_id).await?;
        if !record.session.status.accepts_messages() {
            return Err(StoreError::SessionClosed(record.session.status));
        }
        Ok(record)
    }

    fn soft_delete(&self, session_id: SessionId, seq: Seq, now: Timestamp) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(session_id, seq)))
            .condition_expression("attribute_exists(#seq) AND attribute_not_exists(#deleted_at)")
            .update_expression("SET #deleted_at = :now")
            .expression_attribute_names("#seq", SEQ)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_values(":now", s(now.to_string()))
            .build()
            .map_err(StoreError::internal)
    }

    /// Commits message updates together with a summary change, if the session is still at the
    /// revision it was read at. `Ok(false)` means something changed meanwhile: read again.
    async fn commit_with_summary(
        &self,
        user: &UserId,
        session_id: SessionId,
        summary: SummaryChange,
        message_updates: Vec<Update>,
    ) -> Result<bool, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("#rev = :rev AND #status = :open AND attribute_not_exists(#deleted_at)")
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#deleted_at", SESSION_DELETED_AT)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_values(":rev", n(summary.rev))
            .expression_attribute_values(":next_rev", n(summary.rev + 1))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":removed", n(summary.removed))
            .expression_attribute_values(":now", s(summary.now.to_string()));
        let mut sets =
            vec!["#rev = :next_rev", "#count = #count - :removed", "#updated_at = :now", "#activity_at = :now"];
        if !message_updates.is_empty() {
            // Pages read in the next moments must not come from a replica that missed this.
            sets.push("#rewritten_at = :now");
            update = update.expression_attribute_names("#rewritten_at", REWRITTEN_AT);
        }
        let mut removes = Vec::new();
        match &summary.last_message {
            Some(Some(last)) => {
                sets.push("#last_message = :last_message");
                update = update
                    .expression_attribute_names("#last_message", LAST_MESSAGE)
                    .expression_attribute_values(":last_message", last_message_value(last));
            }
            Some(None) => {
                removes.push("#last_message");
                update = update.expression_attribute_names("#last_message", LAST_MESSAGE);
            }
            None => {}
        }
        if let Some(watermark) = summary.visible_after {
            sets.push("#visible_after = :visible_after");
            update = update
                .expression_attribute_names("#visible_after", VISIBLE_AFTER)
                .expression_attribute_values(":visible_after", n(watermark));
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let session_update = update.update_expression(expression).build().map_err(StoreError::internal)?;
        let mut items = vec![TransactWriteItem::builder().update(session_update).build()];
        items.extend(message_updates.into_iter().map(|update| TransactWriteItem::builder().update(update).build()));
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                let reasons = cancellation_reasons(error)?;
                if reasons.iter().any(|reason| reason_failed(Some(reason))) || is_conflict(&reasons) {
                    Ok(false)
                } else {
                    Err(StoreError::internal("summary transaction cancelled unexpectedly"))
                }
            }
        }
    }
}

/// How a read-modify-write changes the session summary.
struct SummaryChange {
    rev: u64,
    now: Timestamp,
    removed: u64,
    /// `Some(None)` clears `last_message`; `None` leaves it.
    last_message: Option<Option<LastMessage>>,
    visible_after: Option<u64>,
}

impl SummaryChange {
    fn new(record: &SessionRecord, now: Timestamp) -> Self {
        Self { rev: record.rev, now, removed: 0, last_message: None, visible_after: None }
    }
}

/// How many items to read for `remaining` live ones: two more, so a deleted message or two inside
/// the window do not cost a second round trip, while a page reads (and pays for) little more
/// than it returns.
fn read_ahead(remaining: usize) -> i32 {
    ((remaining + 2) as i32).clamp(1, QUERY_PAGE)
}

/// How a page of the log is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consistency {
    /// Half the read units; may trail the latest writes by a moment.
    Eventual,
    Strong,
}

/// What the session item says about a page read eventually consistent.
struct PageCheck {
    /// The page's exclusive lower bound, the watermark applied.
    lower: u64,
    before_seq: Option<u64>,
    forward: bool,
    /// The seq of the session's newest live message (its `last_message`).
    newest_live: Option<u64>,
    rewritten_recently: bool,
}

impl PageCheck {
    /// Whether the page may trail the session item: a message was edited or deleted a moment ago,
    /// or the page's range holds the newest live message and the page does not reach it.
    fn may_be_behind(&self, page: &[Message], has_more: bool) -> bool {
        if self.rewritten_recently {
            return true;
        }
        let Some(newest) = self.newest_live else { return false };
        let in_range = newest > self.lower && self.before_seq.is_none_or(|before| newest < before);
        let reached = if self.forward {
            has_more || page.last().is_some_and(|message| message.seq.get() >= newest)
        } else {
            page.first().is_some_and(|message| message.seq.get() >= newest)
        };
        in_range && !reached
    }
}

/// After an edit or delete, pages are read strongly consistent this long (DynamoDB's eventually
/// consistent reads typically catch up within a second).
const REWRITE_SETTLE: Duration = Duration::from_secs(2);

fn visible(record: &SessionRecord, stored: Option<StoredMessage>) -> Result<StoredMessage, StoreError> {
    match stored {
        Some(stored) if !stored.deleted && stored.message.seq.get() > record.visible_after => Ok(stored),
        _ => Err(StoreError::NotFound("message")),
    }
}

fn idempotency_scope(session_id: SessionId, idempotency: &Idempotency) -> String {
    format!("{session_id}#{}", idempotency.key.as_str())
}

fn check_reply_to(messages: &[NewMessage], last_seq: u64) -> Result<(), StoreError> {
    for (index, message) in messages.iter().enumerate() {
        let own_seq = last_seq + 1 + index as u64;
        if message.reply_to.is_some_and(|reply_to| reply_to.get() >= own_seq) {
            return Err(crate::domain::InputError::invalid(
                "reply_to",
                "must be the seq of an earlier message in this session",
            )
            .into());
        }
    }
    Ok(())
}

fn stored_messages(session_id: SessionId, messages: &[NewMessage], last_seq: u64, now: Timestamp) -> Vec<Message> {
    messages
        .iter()
        .enumerate()
        .map(|(index, new)| Message {
            id: MessageId::generate(),
            session_id,
            seq: Seq::after(last_seq + index as u64),
            role: new.role,
            message_type: new.message_type.clone(),
            content: new.content.clone(),
            payload: new.payload.clone(),
            reply_to: new.reply_to,
            usage: new.usage.clone(),
            created_at: now,
            edited_at: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seqs: &[u64]) -> Vec<Message> {
        let new = NewMessage {
            role: Role::User,
            message_type: crate::domain::MessageType::default(),
            content: Content::parse("hi".to_owned()).unwrap_or_else(|_| unreachable!()),
            payload: None,
            reply_to: None,
            usage: None,
        };
        let now: Timestamp = "2026-12-01T00:00:00.000000Z".parse().unwrap_or_else(|_| unreachable!());
        let mut messages = stored_messages(SessionId::generate(), &vec![new; seqs.len()], 0, now);
        for (message, seq) in messages.iter_mut().zip(seqs) {
            message.seq = Seq::after(seq - 1);
        }
        messages
    }

    fn check(newest_live: Option<u64>, forward: bool) -> PageCheck {
        PageCheck { lower: 0, before_seq: None, forward, newest_live, rewritten_recently: false }
    }

    #[test]
    fn a_page_missing_the_newest_message_is_read_again() {
        // Latest first: the replica has not seen seq 5 yet.
        assert!(check(Some(5), false).may_be_behind(&page(&[4, 3]), false));
        assert!(!check(Some(5), false).may_be_behind(&page(&[5, 4]), false));
        // Oldest first: a complete page must end at the newest live message.
        assert!(check(Some(5), true).may_be_behind(&page(&[3, 4]), false));
        assert!(!check(Some(5), true).may_be_behind(&page(&[3, 4]), true), "more pages follow");
        assert!(!check(Some(5), true).may_be_behind(&page(&[4, 5]), false));
        // An empty log, or a range that excludes the newest message, has nothing to miss.
        assert!(!check(None, false).may_be_behind(&[], false));
        let older = PageCheck { before_seq: Some(3), ..check(Some(5), false) };
        assert!(!older.may_be_behind(&page(&[2, 1]), false));
        let after = PageCheck { lower: 5, ..check(Some(5), true) };
        assert!(!after.may_be_behind(&[], false), "sync after the newest seq is up to date");
        assert!(check(Some(5), true).may_be_behind(&[], false), "an empty page cannot be right");
    }

    #[test]
    fn a_recent_edit_or_delete_forces_a_strong_read() {
        let recent = PageCheck { rewritten_recently: true, ..check(Some(5), false) };
        assert!(recent.may_be_behind(&page(&[5, 4]), false));
    }
}
