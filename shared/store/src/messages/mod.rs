//! Messages table: one item per message, keyed by (session_id, seq). The session item carries the
//! summary (`last_seq`, `message_count`, `last_message`) and every write to the log changes the
//! summary in the same transaction, so the two always agree.
//!
//! Appends are optimistic: the transaction asserts `last_seq = N` and writes seq N+1. The store
//! remembers each session's `last_seq` (`SeqHints`), so a warm append is one round trip; when the
//! guess is stale the cancelled transaction returns the current session item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and the retry uses it.

mod append;
mod changes;
mod edit;
mod idempotency;
pub(super) mod item;
mod read;
mod reply;

use self::item::StoredMessage;
pub use self::read::ContextLog;
pub use self::reply::{Answered, Checkpoint, LeasedReply, ReplyEnd};
use super::item::Item;
pub(crate) use super::sessions::LogHead;
use super::sessions::SessionRecord;
use super::{Store, StoreError};
use domain::{Message, MessagesLimit, PageLimit, RateState, Refusal, SessionId, UserId};

/// The outcome of an append: the stored messages, and whether they were an idempotent replay.
#[derive(Clone, Debug)]
pub struct Appended {
    pub messages: Vec<Message>,
    pub replayed: bool,
    /// The caller's daily quota after this append.
    pub quota: MessagesLimit,
    /// The quota window (`Window::day`) this append's `user` messages were counted in, if they were.
    pub counted_in: Option<String>,
    /// Where the caller stands in the append rate, if this append counted against it.
    pub rate: Option<RateState>,
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

fn visible(record: &SessionRecord, stored: Option<StoredMessage>) -> Result<StoredMessage, StoreError> {
    match stored {
        Some(stored) if !stored.deleted && stored.message.seq.get() > record.visible_after => Ok(stored),
        _ => Err(StoreError::NotFound("message")),
    }
}

impl Store {
    /// Where the session's log stands, as this process last saw it (a read when it has not),
    /// and whether it was read just now.
    async fn log_head(&self, user: &UserId, session_id: SessionId) -> Result<(LogHead, bool), StoreError> {
        match self.seq_hints.get(session_id) {
            Some(head) => Ok((head, false)),
            None => Ok((LogHead::of(&self.session_record(user, session_id).await?), true)),
        }
    }

    /// The head a cancelled transaction's session item shows (`ALL_OLD`): the fresh guess, or
    /// `NotFound` for a session that is gone.
    fn head_from_cancellation(&self, session_id: SessionId, old: Option<&Item>) -> Result<LogHead, StoreError> {
        let record = old
            .filter(|old| !old.contains_key(super::sessions::DELETED_AT))
            .map(SessionRecord::try_from)
            .transpose()?
            .ok_or(StoreError::NotFound("session"))?;
        let head = LogHead::of(&record);
        self.seq_hints.remember(session_id, head);
        Ok(head)
    }

    /// The session, if it exists, belongs to `user`, and accepts changes to its messages.
    pub(crate) async fn writable_session(
        &self,
        user: &UserId,
        session_id: SessionId,
    ) -> Result<SessionRecord, StoreError> {
        let record = self.session_record(user, session_id).await?;
        if !record.session.status.accepts_messages() {
            return Err(StoreError::Refused(Refusal::SessionClosed(record.session.status)));
        }
        Ok(record)
    }
}
