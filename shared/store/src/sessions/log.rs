//! The session item's log summary (last seq, revision, preview, visibility, memory epoch) as the
//! message writes change it: every such write to the session item is built here.

use aws_sdk_dynamodb::types::{ConditionCheck, ReturnValue, ReturnValuesOnConditionCheckFailure, Update};

use crate::hints::Hints;
use crate::item::{Reader, n, s};
use crate::schema::sessions::{ACTIVITY_AT, SESSION_ID};
use crate::{Store, StoreError, update_failed};
use domain::{LastMessage, Refusal, SessionId, SessionStatus, Timestamp, UserId};

use super::{
    DELETED_AT, HIDDEN_REV, LAST_MESSAGE, LAST_SEQ, MEMORY_EPOCH, MESSAGE_COUNT, REV, REWRITTEN_AT, STATUS,
    SessionRecord, UPDATED_AT, VISIBLE_AFTER, last_message_value, session_key,
};

/// Where a session's log stands: its newest seq and its revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogHead {
    pub last_seq: u64,
    pub rev: u64,
}

impl LogHead {
    pub(crate) fn of(record: &SessionRecord) -> Self {
        Self { last_seq: record.session.last_seq, rev: record.session.rev }
    }
}

/// The last head this process saw for each session: the guess an append starts from.
#[derive(Default)]
pub(crate) struct SeqHints(Hints<SessionId, LogHead>);

impl SeqHints {
    /// The revision never goes down, so an older answer arriving late cannot lower the guess.
    pub(crate) fn remember(&self, session: SessionId, head: LogHead) {
        self.0.update(session, |known| match known {
            Some(known) if known.rev > head.rev => *known,
            _ => head,
        });
    }

    pub(crate) fn forget(&self, session: SessionId) {
        self.0.remove(&session);
    }

    pub(crate) fn get(&self, session: SessionId) -> Option<LogHead> {
        self.0.get(&session)
    }
}

/// The session item's log summary as the message writes change it. This module owns the session
/// item: every write to it is built here.
impl Store {
    /// The session update of an append of `added` messages ending with `last`: it commits only on
    /// top of `expected` (the seq and the revision), for this user's live, open session, and moves
    /// the revision to `expected.rev + 1`.
    pub(crate) fn session_append_update(
        &self,
        user: &UserId,
        session_id: SessionId,
        expected: LogHead,
        last: &LastMessage,
        added: usize,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression(
                "attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #status = :open \
                 AND #last_seq = :expected AND #rev = :rev",
            )
            .update_expression(
                "SET #last_seq = :new_last, #count = #count + :added, #last_message = :last_message, \
                 #updated_at = :now, #activity_at = :now, #rev = :next_rev",
            )
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#last_message", LAST_MESSAGE)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":expected", n(expected.last_seq))
            .expression_attribute_values(":rev", n(expected.rev))
            .expression_attribute_values(":next_rev", n(expected.rev + 1))
            .expression_attribute_values(":new_last", n(last.seq))
            .expression_attribute_values(":added", n(added))
            .expression_attribute_values(":last_message", last_message_value(last))
            .expression_attribute_values(":now", s(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::internal)
    }

    /// The session update of a change to one message that leaves the summary's counts (a
    /// reply's end, a cancel): it commits at `expected.rev + 1`, on top of `expected`, and shows
    /// `last` as the summary's latest message when given.
    pub(crate) fn session_rev_update(
        &self,
        user: &UserId,
        session_id: SessionId,
        expected: LogHead,
        last: Option<&LastMessage>,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #rev = :rev")
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_values(":rev", n(expected.rev))
            .expression_attribute_values(":next_rev", n(expected.rev + 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut expression = "SET #rev = :next_rev".to_owned();
        if let Some(last) = last {
            expression.push_str(", #last_message = :last_message");
            update = update
                .expression_attribute_names("#last_message", LAST_MESSAGE)
                .expression_attribute_values(":last_message", last_message_value(last));
        }
        update.update_expression(expression).build().map_err(StoreError::internal)
    }

    /// The session update of a read-modify-write: it commits only if the session is still at the
    /// revision it was read at. `rewrites`: message items change too (an edit or delete).
    pub(crate) fn session_summary_update(
        &self,
        user: &UserId,
        session_id: SessionId,
        summary: &SummaryChange,
        rewrites: bool,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("#rev = :rev AND #status = :open AND attribute_not_exists(#deleted_at)")
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_values(":rev", n(summary.rev))
            .expression_attribute_values(":next_rev", n(summary.next_rev()))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":removed", n(summary.removed))
            .expression_attribute_values(":now", s(summary.now.to_string()));
        let mut sets =
            vec!["#rev = :next_rev", "#count = #count - :removed", "#updated_at = :now", "#activity_at = :now"];
        if rewrites {
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
            sets.push("#hidden_rev = :next_rev");
            update = update
                .expression_attribute_names("#visible_after", VISIBLE_AFTER)
                .expression_attribute_names("#hidden_rev", HIDDEN_REV)
                .expression_attribute_values(":visible_after", n(watermark));
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        update.update_expression(expression).build().map_err(StoreError::internal)
    }

    /// The session item's half of a reset that restarts the log with `first` (a character's
    /// greeting, at `last_seq + 1`): every earlier message hidden (one revision), `first` the one
    /// live message (the next), the memories at a fresh epoch — if the session is still at the
    /// revision `record` was read at.
    pub(crate) fn restart_log_update(
        &self,
        user: &UserId,
        record: &SessionRecord,
        first: &LastMessage,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        let session = &record.session;
        Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session.id)))
            .condition_expression("#rev = :rev AND #status = :open AND attribute_not_exists(#deleted_at)")
            .update_expression(
                "SET #visible_after = :watermark, #last_seq = :first, #count = :one, #updated_at = :now, \
                 #activity_at = :now, #rev = :first_rev, #hidden_rev = :hidden_rev, \
                 #epoch = if_not_exists(#epoch, :zero) + :one, #last_message = :last_message",
            )
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#visible_after", VISIBLE_AFTER)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#hidden_rev", HIDDEN_REV)
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#last_message", LAST_MESSAGE)
            .expression_attribute_values(":rev", n(session.rev))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":watermark", n(session.last_seq))
            .expression_attribute_values(":first", n(first.seq.get()))
            .expression_attribute_values(":hidden_rev", n(session.rev + 1))
            .expression_attribute_values(":first_rev", n(session.rev + 2))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":last_message", last_message_value(first))
            .build()
            .map_err(StoreError::internal)
    }

    /// Hides every message (the watermark moves to `last_seq`) and moves the session's memories to
    /// a fresh epoch, in one conditional write; returns the session as it was.
    pub(crate) async fn clear_log(&self, user: &UserId, session_id: SessionId) -> Result<SessionRecord, StoreError> {
        let now = self.now();
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#sk) AND attribute_not_exists(#deleted_at) AND #status = :open")
            .update_expression(
                "SET #visible_after = #last_seq, #count = :zero, #updated_at = :now, #activity_at = :now, \
                 #rev = #rev + :one, #hidden_rev = #rev + :one, #epoch = if_not_exists(#epoch, :zero) + :one \
                 REMOVE #last_message",
            )
            .expression_attribute_names("#sk", SESSION_ID)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#visible_after", VISIBLE_AFTER)
            .expression_attribute_names("#last_seq", LAST_SEQ)
            .expression_attribute_names("#count", MESSAGE_COUNT)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#activity_at", ACTIVITY_AT)
            .expression_attribute_names("#rev", REV)
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#hidden_rev", HIDDEN_REV)
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
                SessionRecord::try_from(old)
            }
            Err(error) => {
                let old = error.as_service_error().and_then(|service| match service {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                        failed,
                    ) => Some(failed.item().cloned()),
                    _ => None,
                });
                match old {
                    Some(Some(item)) if !item.contains_key(DELETED_AT) => {
                        Err(StoreError::Refused(Refusal::SessionClosed(SessionRecord::try_from(&item)?.session.status)))
                    }
                    Some(_) => Err(StoreError::NotFound("session")),
                    None => Err(StoreError::from_sdk(error)),
                }
            }
        }
    }

    /// A check, for a memory write's transaction, that the session is live at `epoch`.
    pub(crate) fn session_at_epoch(
        &self,
        user: &UserId,
        session_id: SessionId,
        epoch: u64,
    ) -> Result<ConditionCheck, StoreError> {
        // Open, too: a session that refuses message changes (locked, closed) takes no new memories.
        let condition = if epoch == 0 {
            "attribute_not_exists(#deleted_at) AND attribute_exists(#epoch) AND #epoch = :epoch AND #status = :open"
        } else {
            "attribute_not_exists(#deleted_at) AND #epoch = :epoch AND #status = :open"
        };
        ConditionCheck::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression(condition)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_values(":epoch", n(epoch))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .build()
            .map_err(StoreError::internal)
    }

    /// Moves a live session's memories to a fresh epoch; returns the old epoch.
    pub(crate) async fn bump_memory_epoch(&self, user: &UserId, session_id: SessionId) -> Result<u64, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .condition_expression("attribute_exists(#epoch) AND attribute_not_exists(#deleted_at)")
            .update_expression("SET #epoch = #epoch + :one")
            .expression_attribute_names("#epoch", MEMORY_EPOCH)
            .expression_attribute_names("#deleted_at", DELETED_AT)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| update_failed(error, || StoreError::NotFound("session")))?;
        let old = output.attributes().ok_or_else(|| StoreError::corrupt("session", MEMORY_EPOCH))?;
        Reader::new(old, "session").number(MEMORY_EPOCH)
    }
}

/// How a read-modify-write changes the session summary.
pub(crate) struct SummaryChange {
    /// The revision the session was read at; the change commits at the next one.
    pub rev: u64,
    /// The session's `last_seq` (a read-modify-write never appends).
    pub last_seq: u64,
    pub now: Timestamp,
    pub removed: u64,
    /// `Some(None)` clears `last_message`; `None` leaves it.
    pub last_message: Option<Option<LastMessage>>,
    pub visible_after: Option<u64>,
}

impl SummaryChange {
    pub(crate) fn new(record: &SessionRecord, now: Timestamp) -> Self {
        Self {
            rev: record.session.rev,
            last_seq: record.session.last_seq,
            now,
            removed: 0,
            last_message: None,
            visible_after: None,
        }
    }

    /// The revision this change commits at.
    pub(crate) fn next_rev(&self) -> u64 {
        self.rev + 1
    }
}
