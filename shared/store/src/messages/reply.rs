//! Generated replies in the log: the assistant message a reply streams into, its checkpoints, its
//! end (with the meter, in one transaction), cancel, regenerate, and the earlier variants.
//!
//! A reply's message is `streaming` from the append that starts it. Every write of the generator
//! is conditioned on the message still being the generation it writes (`variant`), not ended
//! (`finished_at` absent) and not deleted. Cancel is a conditional `status = cancelled` that the
//! generator's next checkpoint runs into, so a cancel from any instance stops it; the generator's
//! end then keeps `cancelled` and the text it had.
//!
//! Earlier variants move to items of their own — partition `<session_id>#<seq>`, sort key the
//! variant number — in the regenerate's transaction: the log's partition never holds them, so
//! pages and sync never see them.

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::item::{
    CONTENT, COUNTED_IN, DELETED_AT, EDITED_AT, ERROR, FINISHED_AT, MODEL, PARTS, REV, STATUS, STOP_REASON,
    StoredMessage, USAGE, VARIANT, WRITTEN_AT, error_value, message_item, message_key, parts_text, usage_value,
};
use super::{LogHead, visible};
use crate::item::{Item, Reader, n, s};
use crate::limits::meter_from_item;
use crate::schema::messages::{BY_LEASE, LEASE_SHARD, LEASE_USER, SEQ, SESSION_ID};
use crate::sessions::{SummaryChange, last_message_of};
use crate::tx::{backoff, cancellation_reasons, is_conflict, reason_failed};
use crate::{Miss, Store, StoreError, condition_failed};
use domain::{
    Content, DayUsage, Lease, Message, MessageAgent, MessageStatus, MessageUsage, MeterWrite, Part, ReplyError, Role,
    Routing, Seq, SessionId, Timestamp, UserId,
};

const MAX_ATTEMPTS: u32 = 20;

/// How many partitions of `by_lease` streaming replies are spread over (by session), so that no
/// partition takes every turn's write.
const LEASE_SHARDS: u32 = 8;

/// The `by_lease` keys a streaming reply carries until its end: the hourly job finds it by them.
pub(super) fn lease_keys(user: &UserId, session_id: SessionId) -> [(String, AttributeValue); 2] {
    let shard = session_id.to_string().bytes().fold(0u32, |hash, byte| hash.wrapping_mul(31).wrapping_add(byte.into()));
    [(LEASE_SHARD.to_owned(), s((shard % LEASE_SHARDS).to_string())), (LEASE_USER.to_owned(), s(user.as_str()))]
}

/// A streaming reply the hourly job found in `by_lease`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasedReply {
    pub user: UserId,
    pub session_id: SessionId,
    pub seq: Seq,
}

/// What a checkpoint found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    Saved,
    /// The reply is no longer this generation's to write: cancelled, regenerated or deleted.
    Stopped,
}

/// How a generated reply ended, as its last write stores it.
#[derive(Clone, Debug)]
pub struct ReplyEnd {
    pub content: Content,
    /// A reply that called tools: its parts (else empty).
    pub parts: Vec<Part>,
    pub status: MessageStatus,
    pub stop_reason: Option<String>,
    pub usage: Option<MessageUsage>,
    pub error: Option<ReplyError>,
    /// The quota window the turn's `user` message was counted in, when its unit is given back
    /// (the reply failed before any output).
    pub refund: Option<String>,
    /// Only if the generator's last write is older than this: the end of a reply whose lease
    /// passed, which must not overwrite a generator that is alive after all.
    pub written_before: Option<Timestamp>,
}

fn variants_partition(session_id: SessionId, seq: Seq) -> String {
    format!("{session_id}#{seq}")
}

/// The condition that a reply is still the generation `variant` writes: the variant attribute
/// is absent on a first generation appended before replies were generated, hence the `OR`.
fn generation_condition(variant: u32) -> &'static str {
    if variant == 1 { "(attribute_not_exists(#variant) OR #variant = :variant)" } else { "#variant = :variant" }
}

/// The condition that a reply has the status the placeholder `status` names, is still the
/// generation `variant` writes, and has neither ended nor been deleted.
fn unfinished(status: &str, variant: u32) -> String {
    format!(
        "#status = {status} AND {} AND attribute_not_exists(#finished_at) AND attribute_not_exists(#deleted_at)",
        generation_condition(variant)
    )
}

/// The status an end expects the reply to have: `cancelled` when a cancel was met, `requires_action`
/// for a paused reply, else `streaming`.
fn was(status: MessageStatus, cancelled: bool) -> MessageStatus {
    match (cancelled, status) {
        (true, _) => MessageStatus::Cancelled,
        (false, MessageStatus::RequiresAction) => MessageStatus::RequiresAction,
        _ => MessageStatus::Streaming,
    }
}

/// What answering a paused reply's call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Stored; the reply still waits for other calls.
    Stored,
    /// Stored, and it was the last: the reply is `streaming` again, its generator's to resume.
    Resumed,
    /// The reply's parts or status changed meanwhile: read it again.
    Moved,
}

impl Store {
    /// Pauses a streaming reply that called client tools: `requires_action`, with its parts (the
    /// pending calls last), its text and the usage so far, if it is still this generation's.
    pub async fn pause_reply(
        &self,
        reply: &Message,
        content: &Content,
        parts: &[Part],
        usage: &MessageUsage,
    ) -> Result<Checkpoint, StoreError> {
        self.generator_write(reply.session_id, reply.seq, reply.variant, content, parts, Some(usage)).await
    }

    /// Stores a client's result of a paused reply's call: `parts` replace `expected` (the parts as
    /// read) while the reply is paused; with `resume` (no call left pending) the reply is
    /// `streaming` again and its lease renewed, for the caller to generate the rest.
    pub async fn answer_tool_call(
        &self,
        reply: &Message,
        expected: &[Part],
        parts: &[Part],
        resume: bool,
    ) -> Result<Answered, StoreError> {
        let was = parts_text(expected).unwrap_or_else(|| "[]".to_owned());
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(reply.session_id, reply.seq)))
            .condition_expression(format!("#parts = :was AND {}", unfinished(":paused", reply.variant)))
            .expression_attribute_names("#parts", PARTS)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#variant", VARIANT)
            .expression_attribute_names("#finished_at", FINISHED_AT)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_values(":paused", s(MessageStatus::RequiresAction.as_str()))
            .expression_attribute_values(":was", s(was))
            .expression_attribute_values(":parts", s(parts_text(parts).unwrap_or_else(|| "[]".to_owned())))
            .expression_attribute_values(":variant", n(reply.variant));
        let mut expression = "SET #parts = :parts".to_owned();
        if resume {
            expression.push_str(", #status = :streaming, #written_at = :now");
            update = update
                .expression_attribute_names("#written_at", WRITTEN_AT)
                .expression_attribute_values(":streaming", s(MessageStatus::Streaming.as_str()))
                .expression_attribute_values(":now", s(self.now().to_string()));
        }
        match update.update_expression(expression).send().await {
            Ok(_) if resume => Ok(Answered::Resumed),
            Ok(_) => Ok(Answered::Stored),
            Err(error) if condition_failed(&error) => Ok(Answered::Moved),
            Err(error) => Err(StoreError::from_sdk(error)),
        }
    }

    /// Stores a streaming reply's text so far, if the reply is still this generation's.
    pub async fn checkpoint_reply(
        &self,
        session_id: SessionId,
        seq: Seq,
        variant: u32,
        content: &Content,
        parts: &[Part],
    ) -> Result<Checkpoint, StoreError> {
        self.generator_write(session_id, seq, variant, content, parts, None).await
    }

    /// A write of a streaming reply's generator, if the reply is still this generation's: its
    /// text and parts so far (which renews its lease), and with `pause` its pause — the status
    /// `requires_action` and the usage so far.
    async fn generator_write(
        &self,
        session_id: SessionId,
        seq: Seq,
        variant: u32,
        content: &Content,
        parts: &[Part],
        pause: Option<&MessageUsage>,
    ) -> Result<Checkpoint, StoreError> {
        let mut update = self.client.update_item();
        let mut expression = "SET #content = :content, #written_at = :now".to_owned();
        if let Some(parts) = parts_text(parts) {
            expression.push_str(", #parts = :parts");
            update = update.expression_attribute_names("#parts", PARTS).expression_attribute_values(":parts", s(parts));
        }
        if let Some(usage) = pause {
            expression.push_str(", #status = :paused, #usage = :usage");
            update = update
                .expression_attribute_values(":paused", s(MessageStatus::RequiresAction.as_str()))
                .expression_attribute_names("#usage", USAGE)
                .expression_attribute_values(":usage", usage_value(usage)?);
        }
        let result = update
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(session_id, seq)))
            .update_expression(expression)
            .condition_expression(unfinished(":streaming", variant))
            .expression_attribute_names("#content", CONTENT)
            .expression_attribute_names("#written_at", WRITTEN_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#variant", VARIANT)
            .expression_attribute_names("#finished_at", FINISHED_AT)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_values(":content", s(content.as_str()))
            .expression_attribute_values(":now", s(self.now().to_string()))
            .expression_attribute_values(":streaming", s(MessageStatus::Streaming.as_str()))
            .expression_attribute_values(":variant", n(variant))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Checkpoint::Saved),
            Err(error) if condition_failed(&error) => Ok(Checkpoint::Stopped),
            Err(error) => Err(StoreError::from_sdk(error)),
        }
    }

    /// Ends a generated reply: its text, status, usage and error, and in the same transaction the
    /// meter (the usage lands in `/v1/usage`; a refund gives the quota unit back). A reply that
    /// was cancelled meanwhile stays `cancelled`. Returns the message as stored.
    pub async fn finish_reply(&self, user: &UserId, reply: &Message, end: ReplyEnd) -> Result<Message, StoreError> {
        let _turn = self.gates.enter(user).await;
        let usage = match &end.usage {
            Some(usage) => DayUsage::of_reply(&usage.model, usage.input_tokens, usage.output_tokens),
            None => DayUsage::default(),
        };
        let ((mut meter, _), (mut head, _)) =
            tokio::try_join!(self.meter(user), self.log_head(user, reply.session_id))?;
        let mut cancelled = false;
        for attempt in 0..MAX_ATTEMPTS {
            let mut message = reply.clone();
            message.rev = head.rev + 1;
            message.content = end.content.clone();
            message.parts = end.parts.clone();
            message.status = if cancelled { MessageStatus::Cancelled } else { end.status };
            message.stop_reason = if cancelled { Some("cancelled".to_owned()) } else { end.stop_reason.clone() };
            message.usage = end.usage.clone();
            message.error = if cancelled { None } else { end.error.clone() };
            message.lease = None;
            let write = MeterWrite::settle(&meter, self.now(), &usage, end.refund.as_deref());
            let mut items = vec![
                TransactWriteItem::builder()
                    .update(self.reply_end_update(&message, was(reply.status, cancelled), end.written_before)?)
                    .build(),
            ];
            if let Some(write) = &write {
                let (update, closed) = self.meter_items(user, write)?;
                items.push(TransactWriteItem::builder().update(update).build());
                if let Some(closed) = closed {
                    items.push(TransactWriteItem::builder().put(closed).build());
                }
            }
            // The end is a change of the log: the session moves to the message's revision, and its
            // summary shows the final text while the reply is still its latest message.
            let preview = (head.last_seq == message.seq.get() && !message.content.as_str().is_empty())
                .then(|| last_message_of(&message));
            let session_at = items.len();
            let session_update = self.session_rev_update(user, message.session_id, head, preview.as_ref())?;
            items.push(TransactWriteItem::builder().update(session_update).build());
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                if let Some(write) = &write {
                    self.limit_caches.remember_meter(user, &write.next);
                }
                self.seq_hints.remember(message.session_id, LogHead { rev: message.rev, ..head });
                return Ok(message);
            };
            let reasons = cancellation_reasons(error)?;
            if reason_failed(reasons.first()) {
                let current = reasons
                    .first()
                    .and_then(CancellationReason::item)
                    .map(|item| StoredMessage::try_from(item.clone()));
                match current.transpose()? {
                    Some(stored)
                        if stored.message.status == MessageStatus::Cancelled
                            && stored.message.variant == reply.variant
                            && !cancelled =>
                    {
                        cancelled = true;
                        continue;
                    }
                    // Ended, regenerated or deleted meanwhile: nothing of this generation to store.
                    _ => return Err(StoreError::Miss(Miss::Replaced)),
                }
            }
            let mut stale = false;
            if reason_failed(reasons.get(session_at)) {
                let old = reasons.get(session_at).and_then(CancellationReason::item);
                head = self.head_from_cancellation(reply.session_id, old)?;
                stale = true;
            }
            if write.is_some() && reason_failed(reasons.get(1)) {
                meter = match reasons.get(1).and_then(CancellationReason::item) {
                    Some(item) => meter_from_item(item)?,
                    None => Default::default(),
                };
                continue;
            }
            if write.is_some() && session_at > 2 && reason_failed(reasons.get(2)) {
                meter = self.fresh_meter(user).await?;
                continue;
            }
            if stale {
                continue;
            }
            if is_conflict(&reasons) {
                backoff(attempt).await;
                continue;
            }
            return Err(StoreError::internal("reply end cancelled unexpectedly"));
        }
        Err(StoreError::Unavailable("the reply's end could not be stored: retries exhausted".into()))
    }

    fn reply_end_update(
        &self,
        message: &Message,
        status: MessageStatus,
        written_before: Option<Timestamp>,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(message.session_id, message.seq)))
            .condition_expression(format!(
                "{}{}",
                unfinished(":was", message.variant),
                if written_before.is_some() { " AND #written_at < :written_before" } else { "" }
            ))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_names("#content", CONTENT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#variant", VARIANT)
            .expression_attribute_names("#finished_at", FINISHED_AT)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#written_at", WRITTEN_AT)
            .expression_attribute_values(":was", s(status.as_str()))
            .expression_attribute_values(":variant", n(message.variant))
            .expression_attribute_values(":content", s(message.content.as_str()))
            .expression_attribute_values(":status", s(message.status.as_str()))
            .expression_attribute_values(":now", s(self.now().to_string()))
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":rev", n(message.rev));
        if let Some(at) = written_before {
            update = update.expression_attribute_values(":written_before", s(at.to_string()));
        }
        let mut sets = vec![
            "#content = :content",
            "#status = :status",
            "#written_at = :now",
            "#finished_at = :now",
            "#rev = :rev",
        ];
        if let Some(reason) = &message.stop_reason {
            sets.push("#stop_reason = :stop_reason");
            update = update
                .expression_attribute_names("#stop_reason", STOP_REASON)
                .expression_attribute_values(":stop_reason", s(reason));
        }
        if let Some(parts) = parts_text(&message.parts) {
            sets.push("#parts = :parts");
            update = update.expression_attribute_names("#parts", PARTS).expression_attribute_values(":parts", s(parts));
        }
        if let Some(usage) = &message.usage {
            sets.push("#usage = :usage");
            update = update
                .expression_attribute_names("#usage", USAGE)
                .expression_attribute_values(":usage", usage_value(usage)?);
        }
        if let Some(error) = &message.error {
            sets.push("#error = :error");
            update = update
                .expression_attribute_names("#error", ERROR)
                .expression_attribute_values(":error", error_value(error)?);
        }
        // The reply leaves `by_lease`: it has ended.
        let update = update
            .expression_attribute_names("#lease_shard", LEASE_SHARD)
            .expression_attribute_names("#lease_user", LEASE_USER)
            .expression_attribute_names("#counted_in", COUNTED_IN);
        update
            .update_expression(format!("SET {} REMOVE #lease_shard, #lease_user, #counted_in", sets.join(", ")))
            .build()
            .map_err(StoreError::internal)
    }

    /// Stops a streaming reply: `cancelled`, with the text stored so far (the generator adds what
    /// it had when it stops). A reply that has ended is returned as it is: cancel is idempotent.
    pub async fn cancel_reply(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<Message, StoreError> {
        let (record, stored) =
            tokio::try_join!(self.session_record(user, session_id), self.stored_message(session_id, seq))?;
        let message = visible(&record, stored)?.message;
        if message.model.is_none() {
            return Err(StoreError::Miss(Miss::NotGenerated));
        }
        if message.status != MessageStatus::Streaming {
            return Ok(message);
        }
        let mut head = LogHead::of(&record);
        for attempt in 0..MAX_ATTEMPTS {
            let cancel = Update::builder()
                .table_name(&self.tables.messages)
                .set_key(Some(message_key(session_id, seq)))
                .update_expression(
                    "SET #status = :cancelled, #stop_reason = :cancelled, #written_at = :now, #rev = :rev",
                )
                .condition_expression(format!(
                    "#status = :streaming AND {} AND attribute_not_exists(#finished_at)",
                    generation_condition(message.variant)
                ))
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_names("#stop_reason", STOP_REASON)
                .expression_attribute_names("#written_at", WRITTEN_AT)
                .expression_attribute_names("#variant", VARIANT)
                .expression_attribute_names("#finished_at", FINISHED_AT)
                .expression_attribute_names("#rev", REV)
                .expression_attribute_values(":cancelled", s(MessageStatus::Cancelled.as_str()))
                .expression_attribute_values(":streaming", s(MessageStatus::Streaming.as_str()))
                .expression_attribute_values(":variant", n(message.variant))
                .expression_attribute_values(":now", s(self.now().to_string()))
                .expression_attribute_values(":rev", n(head.rev + 1))
                .build()
                .map_err(StoreError::internal)?;
            let items = vec![
                TransactWriteItem::builder().update(cancel).build(),
                TransactWriteItem::builder().update(self.session_rev_update(user, session_id, head, None)?).build(),
            ];
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                self.seq_hints.remember(session_id, LogHead { rev: head.rev + 1, ..head });
                return Ok(Message {
                    status: MessageStatus::Cancelled,
                    stop_reason: Some("cancelled".to_owned()),
                    rev: head.rev + 1,
                    ..message
                });
            };
            let reasons = cancellation_reasons(error)?;
            if reason_failed(reasons.first()) {
                // It ended (or was replaced) meanwhile: answer it as it stands.
                let stored = self.stored_message(session_id, seq).await?;
                return Ok(visible(&record, stored)?.message);
            }
            if reason_failed(reasons.get(1)) {
                head = self.head_from_cancellation(session_id, reasons.get(1).and_then(CancellationReason::item))?;
                continue;
            }
            if !is_conflict(&reasons) {
                return Err(StoreError::internal("cancel cancelled unexpectedly"));
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: cancel retries exhausted".into()))
    }

    /// Starts a new generation of the latest message, an assistant reply that is not streaming:
    /// its current text moves to a variant item, and the message becomes an empty `streaming`
    /// reply from `model` at the same seq. One transaction with the session summary.
    pub async fn regenerate_reply(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
        model: &str,
        switch: Option<(MessageAgent, Option<Routing>)>,
    ) -> Result<Message, StoreError> {
        let _turn = self.gates.enter(user).await;
        for attempt in 0..MAX_ATTEMPTS {
            let (record, stored) =
                tokio::try_join!(self.writable_session(user, session_id), self.stored_message(session_id, seq))?;
            let old = visible(&record, stored)?.message;
            if record.session.last_seq != seq.get() || old.role != Role::Assistant {
                return Err(StoreError::Miss(Miss::NotLatestReply));
            }
            if old.status == MessageStatus::Streaming {
                return Err(StoreError::Miss(Miss::StillStreaming));
            }
            let now = self.now();
            let mut summary = SummaryChange::new(&record, now);
            let next = Message {
                content: Content::parse(String::new())?,
                usage: None,
                edited_at: None,
                status: MessageStatus::Streaming,
                stop_reason: None,
                model: Some(model.to_owned()),
                variant: old.variant + 1,
                variant_count: old.variant + 1,
                is_regenerated: true,
                error: None,
                rev: summary.next_rev(),
                lease: Some(Lease { renewed_at: now, counted_in: None }),
                // The agent of the reply it replaces, unless the request switched to another.
                agent: switch.as_ref().map_or_else(|| old.agent.clone(), |(agent, _)| Some(agent.clone())),
                routing: switch.as_ref().map_or_else(|| old.routing.clone(), |(_, routing)| routing.clone()),
                ..old.clone()
            };
            let mut archived = message_item(&old)?;
            // Earlier variants are not in the change feed: the current generation's change is.
            archived.remove(REV);
            archived.insert(SESSION_ID.to_owned(), s(variants_partition(session_id, seq)));
            archived.insert(SEQ.to_owned(), n(old.variant));
            let archive = Put::builder()
                .table_name(&self.tables.messages)
                .set_item(Some(archived))
                .condition_expression("attribute_not_exists(#seq)")
                .expression_attribute_names("#seq", SEQ)
                .build()
                .map_err(StoreError::internal)?;
            let [(_, lease_shard), (_, lease_user)] = lease_keys(user, session_id);
            let restart = Update::builder()
                .table_name(&self.tables.messages)
                .set_key(Some(message_key(session_id, seq)))
                .update_expression(
                    "SET #content = :empty, #status = :streaming, #variant = :next, #model = :model, #written_at = :now, \
                     #rev = :rev, #lease_shard = :lease_shard, #lease_user = :lease_user \
                     REMOVE #usage, #stop_reason, #error, #finished_at, #edited_at",
                )
                .condition_expression(format!(
                    "{} AND (attribute_not_exists(#status) OR #status <> :streaming) AND attribute_not_exists(#deleted_at)",
                    generation_condition(old.variant)
                ))
                .expression_attribute_names("#content", CONTENT)
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_names("#variant", VARIANT)
                .expression_attribute_names("#model", MODEL)
                .expression_attribute_names("#written_at", WRITTEN_AT)
                .expression_attribute_names("#usage", USAGE)
                .expression_attribute_names("#stop_reason", STOP_REASON)
                .expression_attribute_names("#error", ERROR)
                .expression_attribute_names("#finished_at", FINISHED_AT)
                .expression_attribute_names("#edited_at", EDITED_AT)
                .expression_attribute_names("#deleted_at", DELETED_AT)
                .expression_attribute_names("#rev", REV)
                .expression_attribute_values(":rev", n(next.rev))
                .expression_attribute_values(":empty", s(""))
                .expression_attribute_values(":streaming", s(MessageStatus::Streaming.as_str()))
                .expression_attribute_values(":next", n(next.variant))
                .expression_attribute_values(":variant", n(old.variant))
                .expression_attribute_values(":model", s(model))
                .expression_attribute_values(":now", s(now.to_string()))
                .expression_attribute_names("#lease_shard", LEASE_SHARD)
                .expression_attribute_names("#lease_user", LEASE_USER)
                .expression_attribute_values(":lease_shard", lease_shard)
                .expression_attribute_values(":lease_user", lease_user)
                .build()
                .map_err(StoreError::internal)?;
            summary.last_message = Some(Some(last_message_of(&next)));
            let items = vec![
                TransactWriteItem::builder().put(archive).build(),
                TransactWriteItem::builder().update(restart).build(),
            ];
            if self.commit_items_with_summary(user, session_id, summary, items, true).await? {
                return Ok(next);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: regenerate retries exhausted".into()))
    }

    /// Every generation of a message, the first first; the current one last.
    pub async fn reply_variants(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
    ) -> Result<Vec<Message>, StoreError> {
        let (record, stored) =
            tokio::try_join!(self.session_record(user, session_id), self.stored_message(session_id, seq))?;
        let current = visible(&record, stored)?.message;
        let mut variants = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .key_condition_expression("#sid = :sid")
                .expression_attribute_names("#sid", SESSION_ID)
                .expression_attribute_values(":sid", s(variants_partition(session_id, seq)))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for mut item in output.items.unwrap_or_default() {
                let variant = item.get(SEQ).cloned();
                item.insert(SESSION_ID.to_owned(), s(session_id.to_string()));
                item.insert(SEQ.to_owned(), n(seq));
                if let Some(AttributeValue::N(number)) = variant {
                    item.insert(VARIANT.to_owned(), AttributeValue::N(number));
                }
                variants.push(StoredMessage::try_from(item)?.message);
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let count = current.variant;
        variants.push(current);
        for variant in &mut variants {
            variant.variant_count = count;
        }
        Ok(variants)
    }

    /// Whether the reply is still generation `variant`'s to write: streaming, not ended, not
    /// deleted. Eventually consistent (half a read unit): a cancel is seen a moment later at worst.
    pub async fn reply_generating(&self, session_id: SessionId, seq: Seq, variant: u32) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(session_id, seq)))
            .projection_expression("#status, #variant, #finished_at, #deleted_at")
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#variant", VARIANT)
            .expression_attribute_names("#finished_at", FINISHED_AT)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let Some(item) = output.item else { return Ok(false) };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.as_str()),
            _ => None,
        };
        let stored_variant = match item.get(VARIANT) {
            Some(AttributeValue::N(number)) => number.parse().unwrap_or(0),
            _ => 1,
        };
        Ok(text(STATUS) == Some(MessageStatus::Streaming.as_str())
            && stored_variant == variant
            && !item.contains_key(FINISHED_AT)
            && !item.contains_key(DELETED_AT))
    }

    /// Every reply in `by_lease`: those streaming now, and those whose generator died without
    /// ending them. The index is eventually consistent: a reply that ended a moment ago may
    /// still be listed (its read shows it ended).
    pub async fn leased_replies(&self) -> Result<Vec<LeasedReply>, StoreError> {
        let mut replies = Vec::new();
        for shard in 0..LEASE_SHARDS {
            let mut start: Option<Item> = None;
            loop {
                let output = self
                    .client
                    .query()
                    .table_name(&self.tables.messages)
                    .index_name(BY_LEASE)
                    .key_condition_expression("#shard = :shard")
                    .expression_attribute_names("#shard", LEASE_SHARD)
                    .expression_attribute_values(":shard", s(shard.to_string()))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                for item in output.items() {
                    let read = Reader::new(item, "message");
                    replies.push(LeasedReply {
                        user: UserId::parse(read.string(LEASE_USER)?)
                            .ok_or_else(|| StoreError::corrupt("message", LEASE_USER))?,
                        session_id: read.parse(SESSION_ID)?,
                        seq: Seq::new(read.number(SEQ)?).ok_or_else(|| StoreError::corrupt("message", SEQ))?,
                    });
                }
                match output.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        Ok(replies)
    }

    /// A message as stored right now (strongly consistent), for following a reply; `None` once
    /// it is deleted.
    pub async fn reply_state(&self, session_id: SessionId, seq: Seq) -> Result<Option<Message>, StoreError> {
        Ok(self.stored_message(session_id, seq).await?.filter(|stored| !stored.deleted).map(|stored| stored.message))
    }
}
