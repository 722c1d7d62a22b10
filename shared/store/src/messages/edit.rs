//! Read-modify-write changes of the log — edit, delete, forget-recent, new-scene — each committed
//! with the session summary, guarded by the session's revision; and reset.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::LogHead;
use super::item::{CONTENT, DELETED_AT, EDITED_AT, REV, message_key};
use super::read::Consistency;
use super::visible;
use crate::item::{n, s};
use crate::memories::{StoredMemory, Touched};
use crate::schema::messages::{self, SEQ};
use crate::sessions::SummaryChange;
use crate::sessions::last_message_of;
use crate::tx::{backoff, cancellation_reasons, is_conflict, reason_failed};
use crate::{Miss, Store, StoreError};
use domain::{Content, Message, Role, Seq, SessionId, Timestamp, UserId};

/// Read-modify-write operations (edit, delete, forget-recent, new-scene) retry this often.
const MAX_RMW_ATTEMPTS: u32 = 20;
/// Extracted memories a change of their source deletes in its own transaction (up to 4 items
/// each; forget-recent's messages and the session take the rest of the 100).
const SOURCED_IN_CHANGE: usize = 12;

impl Store {
    /// Replaces a message's content and stamps `edited_at`, if the message is of the role `editable`
    /// (else `Miss::NotEditable`; which roles may be edited is the service's rule).
    pub async fn edit_message(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
        content: Content,
        editable: Role,
    ) -> Result<Message, StoreError> {
        let _turn = self.gates.enter(user).await;
        let touched = [seq];
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let (record, stored, sourced) = tokio::try_join!(
                self.writable_session(user, session_id),
                self.stored_message(session_id, seq),
                self.sourced_memories(user, session_id, Touched::Seqs(&touched)),
            )?;
            let mut message = visible(&record, stored)?.message;
            if message.role != editable {
                return Err(StoreError::Miss(Miss::NotEditable));
            }
            let now = self.now();
            let mut summary = SummaryChange::new(&record, now);
            message.content = content.clone();
            message.edited_at = Some(now);
            message.rev = summary.next_rev();
            if record.session.last_message.as_ref().is_some_and(|last| last.seq == seq) {
                summary.last_message = Some(Some(last_message_of(&message)));
            }
            let edit = Update::builder()
                .table_name(&self.tables.messages)
                .set_key(Some(message_key(session_id, seq)))
                .condition_expression("attribute_exists(#seq) AND attribute_not_exists(#deleted_at)")
                .update_expression("SET #content = :content, #edited_at = :now, #rev = :rev")
                .expression_attribute_names("#seq", SEQ)
                .expression_attribute_names("#deleted_at", DELETED_AT)
                .expression_attribute_names("#content", CONTENT)
                .expression_attribute_names("#edited_at", EDITED_AT)
                .expression_attribute_names("#rev", REV)
                .expression_attribute_values(":rev", n(message.rev))
                .expression_attribute_values(":content", s(content.as_str()))
                .expression_attribute_values(":now", s(now.to_string()))
                .build()
                .map_err(StoreError::internal)?;
            if self.commit_forgetting(user, session_id, summary, vec![edit], &sourced, &touched).await? {
                return Ok(message);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: edit retries exhausted".into()))
    }

    /// Soft-deletes one message; its seq is never reused.
    pub async fn delete_message(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<(), StoreError> {
        let _turn = self.gates.enter(user).await;
        let touched = [seq];
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let (record, stored, sourced) = tokio::try_join!(
                self.writable_session(user, session_id),
                self.stored_message(session_id, seq),
                self.sourced_memories(user, session_id, Touched::Seqs(&touched)),
            )?;
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
            let delete = self.soft_delete(session_id, seq, summary.next_rev(), now)?;
            if self.commit_forgetting(user, session_id, summary, vec![delete], &sourced, &touched).await? {
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
                .map(|message| self.soft_delete(session_id, message.seq, summary.next_rev(), now))
                .collect::<Result<_, _>>()?;
            let touched: Vec<Seq> = doomed.iter().map(|message| message.seq).collect();
            let sourced = self.sourced_memories(user, session_id, Touched::Seqs(&touched)).await?;
            if self.commit_forgetting(user, session_id, summary, deletes, &sourced, &touched).await? {
                return Ok(doomed.len() as u64);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: forget-recent retries exhausted".into()))
    }

    /// Hides every live message but the newest `keep`; returns how many were hidden.
    pub async fn new_scene(&self, user: &UserId, session_id: SessionId, keep: usize) -> Result<u64, StoreError> {
        let _turn = self.gates.enter(user).await;
        self.list_sweep(user, session_id).await?;
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
    /// conditional write; with a `greeting` (a character chat's), the same write starts the log
    /// again with it. Returns how many messages were live and the epoch the memories left.
    pub async fn reset_session(
        &self,
        user: &UserId,
        session_id: SessionId,
        greeting: Option<Content>,
    ) -> Result<(u64, u64), StoreError> {
        self.list_sweep(user, session_id).await?;
        let Some(greeting) = greeting else {
            let old = self.clear_log(user, session_id).await?;
            self.delete_sourced(user, session_id, Touched::All).await?;
            return Ok((old.session.message_count, old.memory_epoch));
        };
        let _turn = self.gates.enter(user).await;
        for attempt in 0..MAX_RMW_ATTEMPTS {
            let record = self.writable_session(user, session_id).await?;
            let now = self.now();
            let head = LogHead { last_seq: record.session.last_seq + 1, rev: record.session.rev + 2 };
            let mut first = Message::greeting(session_id, greeting.clone(), now, head.rev);
            first.seq = Seq::after(record.session.last_seq);
            let items = vec![
                TransactWriteItem::builder()
                    .update(self.restart_log_update(user, &record, &last_message_of(&first), now)?)
                    .build(),
                TransactWriteItem::builder().put(self.new_message_put(&first)?).build(),
            ];
            if self.commit_at_revision(session_id, items, head, "reset").await? {
                // Every memory read from the session goes with it (its session-scoped ones went
                // with the epoch; these are the user's own, read from it). A crash here leaves
                // them to the job's sweep of the session, listed above.
                self.delete_sourced(user, session_id, Touched::All).await?;
                return Ok((record.session.message_count, record.memory_epoch));
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("the session is too busy: reset retries exhausted".into()))
    }

    /// A message's delete at revision `rev`: the feed shows it as a tombstone.
    fn soft_delete(&self, session_id: SessionId, seq: Seq, rev: u64, now: Timestamp) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(session_id, seq)))
            .condition_expression("attribute_exists(#seq) AND attribute_not_exists(#deleted_at)")
            .update_expression("SET #deleted_at = :now, #expires_at = :expires_at, #rev = :rev")
            .expression_attribute_names("#seq", SEQ)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":rev", n(rev))
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#expires_at", messages::EXPIRES_AT)
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":expires_at", n(self.expires_at(now)))
            .build()
            .map_err(StoreError::internal)
    }

    /// Commits message updates with a summary change and, in the same transaction, the deletion of
    /// the extracted memories (`sourced`) the changed messages were their source of and of the
    /// session's summary if it covers one of them; memories beyond what one transaction holds
    /// are deleted right after. `false`: read again.
    async fn commit_forgetting(
        &self,
        user: &UserId,
        session_id: SessionId,
        summary: SummaryChange,
        message_updates: Vec<Update>,
        sourced: &[StoredMemory],
        touched: &[Seq],
    ) -> Result<bool, StoreError> {
        // Up to 5 items a memory (its item, marker, link, tombstone-free; a scope's count each at
        // worst) beside the messages and the session in DynamoDB's 100.
        let room = (98 - message_updates.len().min(98)) / 5;
        let now: Vec<&StoredMemory> = sourced.iter().take(SOURCED_IN_CHANGE.min(room)).collect();
        let mut items: Vec<TransactWriteItem> =
            message_updates.into_iter().map(|update| TransactWriteItem::builder().update(update).build()).collect();
        items.extend(self.memory_delete_items(user, &now, false)?);
        // A summary that describes a changed message goes with the change.
        items.extend(self.summary_delete(user, session_id, touched).await?);
        if !self.commit_items_with_summary(user, session_id, summary, items, true).await? {
            return Ok(false);
        }
        if sourced.len() > now.len() {
            self.delete_sourced(user, session_id, Touched::Seqs(touched)).await?;
        }
        Ok(true)
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
        let rewrites = !message_updates.is_empty();
        let items =
            message_updates.into_iter().map(|update| TransactWriteItem::builder().update(update).build()).collect();
        self.commit_items_with_summary(user, session_id, summary, items, rewrites).await
    }

    /// Commits `items` with the session summary change, guarded by the session's revision;
    /// `false`: the revision moved on (or another transaction held an item), retry.
    pub(super) async fn commit_items_with_summary(
        &self,
        user: &UserId,
        session_id: SessionId,
        summary: SummaryChange,
        items: Vec<TransactWriteItem>,
        rewrites: bool,
    ) -> Result<bool, StoreError> {
        let session_update = self.session_summary_update(user, session_id, &summary, rewrites)?;
        let mut all = vec![TransactWriteItem::builder().update(session_update).build()];
        all.extend(items);
        let head = LogHead { last_seq: summary.last_seq, rev: summary.next_rev() };
        self.commit_at_revision(session_id, all, head, "summary").await
    }

    /// Commits a transaction whose session update is guarded by the revision it was read at,
    /// and remembers the log's `head` after it; `false`: a condition failed or another
    /// transaction held an item — read again and retry. `what` names it in an internal error.
    async fn commit_at_revision(
        &self,
        session_id: SessionId,
        items: Vec<TransactWriteItem>,
        head: LogHead,
        what: &str,
    ) -> Result<bool, StoreError> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => {
                self.seq_hints.remember(session_id, head);
                Ok(true)
            }
            Err(error) => {
                let reasons = cancellation_reasons(error)?;
                if reasons.iter().any(|reason| reason_failed(Some(reason))) || is_conflict(&reasons) {
                    Ok(false)
                } else {
                    Err(StoreError::internal(format!("{what} transaction cancelled unexpectedly")))
                }
            }
        }
    }
}
