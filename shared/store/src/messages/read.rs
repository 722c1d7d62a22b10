//! Reading the log: pages (by seq, either direction), one message, the newest few.

use std::time::Duration;

use super::item::{DELETED_AT, StoredMessage, message_key};
use super::{MessageOrder, MessageQuery, MessageSlice, visible};
use crate::item::{n, s};
use crate::schema::messages::{SEQ, SESSION_ID};
use crate::sessions::SessionRecord;
use crate::{Store, StoreError};
use domain::{Message, PageLimit, Profile, Seq, Session, SessionId, Summary, UserId};

/// What a model's context reads of a session's log (`Store::context_log`).
pub struct ContextLog {
    pub session: Session,
    /// The session's memory epoch: its own memories are read at it.
    pub epoch: u64,
    /// The newest visible messages, oldest first.
    pub messages: Vec<Message>,
    /// The session's summary, if it is current.
    pub summary: Option<Summary>,
    /// The user's profile, once created.
    pub profile: Option<Profile>,
}

/// Items read per page while skipping deleted messages.
const QUERY_PAGE: i32 = 100;

/// How many items to read for `remaining` live ones: two more, so a deleted message or two inside
/// the window do not cost a second round trip, while a page reads (and pays for) little more
/// than it returns.
fn read_ahead(remaining: usize) -> i32 {
    ((remaining + 2) as i32).clamp(1, QUERY_PAGE)
}

/// How a page of the log is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Consistency {
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

impl Store {
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
        let asked = query.after_seq.unwrap_or(0);
        let (record, (mut data, mut has_more)) =
            tokio::try_join!(self.session_record(user, session_id), read(asked, Consistency::Eventual))?;
        // New-scene or reset hid the messages up to the watermark.
        let lower = asked.max(record.visible_after);
        if lower > asked {
            if forward {
                (data, has_more) = read(lower, Consistency::Eventual).await?;
            } else {
                let before = data.len();
                data.retain(|message| message.seq.get() > lower);
                has_more = has_more && data.len() == before;
            }
        }
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
        }
        Ok((record, data, has_more))
    }

    /// What a model's context needs of the log: the session, its memory epoch, its newest
    /// `count` visible messages, oldest first, its summary if current, and the user's profile —
    /// in one round of two calls (the messages' query; the session, summary and settings items
    /// read together).
    pub async fn context_log(
        &self,
        user: &UserId,
        session_id: SessionId,
        count: PageLimit,
    ) -> Result<ContextLog, StoreError> {
        let items =
            [self.session_wanted(user, session_id), self.summary_wanted(user, session_id), self.settings_wanted(user)];
        let ([session, summary, settings], mut messages) =
            tokio::try_join!(self.get_together(items), self.latest_live(session_id, count))?;
        let record = self.session_record_from(session_id, session.as_ref())?;
        messages.retain(|message| message.seq.get() > record.visible_after);
        messages.reverse();
        let summary = Self::current(&record, Self::stored_summary_from(summary.as_ref())?);
        Ok(ContextLog {
            epoch: record.memory_epoch,
            session: record.session,
            messages,
            summary,
            profile: self.profile_read(user, settings.as_ref())?,
        })
    }

    /// The newest `count` live messages, newest first, before any watermark is applied.
    async fn latest_live(&self, session_id: SessionId, count: PageLimit) -> Result<Vec<Message>, StoreError> {
        Ok(self.live_messages(session_id, 0, None, false, count.as_usize(), Consistency::Strong).await?.0)
    }

    /// Reads live messages with seq strictly between `lower` and `upper`, `wanted` of them at most.
    pub(super) async fn live_messages(
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
            for item in output.items.unwrap_or_default() {
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

    pub(super) async fn stored_message(
        &self,
        session_id: SessionId,
        seq: Seq,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .set_key(Some(message_key(session_id, seq)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item.map(StoredMessage::try_from).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::super::item::stored_messages;
    use super::*;
    use domain::{Content, MessageType, NewMessage, Role, SessionId, Timestamp};

    fn page(seqs: &[u64]) -> Vec<Message> {
        let new = NewMessage {
            role: Role::User,
            message_type: MessageType::default(),
            content: Content::parse("hi".to_owned()).unwrap_or_else(|_| unreachable!()),
            payload: None,
            reply_to: None,
            usage: None,
            reply: None,
            agent: None,
            routing: None,
            routing_usage: None,
        };
        let now: Timestamp = "2026-12-01T00:00:00.000000Z".parse().unwrap_or_else(|_| unreachable!());
        let mut messages =
            stored_messages(SessionId::generate(), &vec![new; seqs.len()], 0, 1, now, &Default::default());
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
