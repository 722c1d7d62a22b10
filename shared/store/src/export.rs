//! Export: what the API shows of a user, page by page. The first page holds the sessions, the
//! memories, the limits and a year of usage; each page after it holds up to 200 messages of one
//! session, in session-id then seq order. A client concatenates the arrays of every page.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::item::{Reader, s};
use super::memories::StoredMemory;
use super::messages::{MessageOrder, MessageQuery};
use super::schema::{memories, sessions};
use super::sessions::{DELETED_AT, SessionRecord};
use super::{Store, StoreError};
use domain::{
    Cursor, LimitsView, Memory, Message, PageLimit, Session, SessionId, Timestamp, UsageReport, UserId, utc_day,
};

/// Messages per page after the first.
const MESSAGES_PER_PAGE: u32 = 200;

/// One page of an export.
#[derive(Clone, Debug, Default)]
pub struct ExportPage {
    pub sessions: Vec<Session>,
    pub messages: Vec<Message>,
    pub memories: Vec<Memory>,
    pub limits: Option<LimitsView>,
    pub usage: Option<UsageReport>,
    pub next: Option<Cursor>,
}

/// Where the next page starts: after `after_seq` in `session`.
#[derive(Serialize, Deserialize)]
struct Position {
    session: SessionId,
    after_seq: u64,
}

impl Store {
    pub async fn export_page(&self, user: &UserId, cursor: Option<&Cursor>) -> Result<ExportPage, StoreError> {
        let records = self.live_sessions(user).await?;
        let Some(cursor) = cursor else { return self.first_export_page(user, records).await };
        let position: Position = cursor.decode()?;
        let mut page = ExportPage::default();
        // A session deleted since the last page is skipped, with its messages.
        let Some(record) = records.iter().find(|record| record.session.id >= position.session) else {
            return Ok(page);
        };
        let after_seq = if record.session.id == position.session { position.after_seq } else { 0 };
        let query = MessageQuery {
            after_seq: Some(after_seq),
            before_seq: None,
            limit: PageLimit::fixed(MESSAGES_PER_PAGE),
            order: MessageOrder::Asc,
        };
        let slice = self.list_messages(user, record.session.id, query).await?;
        let next_session = records.iter().find(|next| next.session.id > record.session.id);
        page.next = match (slice.has_more, slice.data.last(), next_session) {
            (true, Some(last), _) => Some(Position { session: record.session.id, after_seq: last.seq.get() }),
            (_, _, Some(next)) => Some(Position { session: next.session.id, after_seq: 0 }),
            _ => None,
        }
        .map(|position| Cursor::encode(&position));
        page.messages = slice.data;
        Ok(page)
    }

    async fn first_export_page(&self, user: &UserId, records: Vec<SessionRecord>) -> Result<ExportPage, StoreError> {
        let now = self.now();
        let year_ago = utc_day(Timestamp::from_datetime(now.datetime() - Duration::from_secs(365 * 86_400)));
        let today = utc_day(now);
        let (memories, limits, usage) = tokio::try_join!(
            self.visible_memories(user, &records),
            self.limits_view(user),
            self.usage_days(user, &year_ago, &today),
        )?;
        let next = records.first().map(|first| Cursor::encode(&Position { session: first.session.id, after_seq: 0 }));
        Ok(ExportPage {
            sessions: records.into_iter().map(|record| record.session).collect(),
            messages: Vec::new(),
            memories,
            limits: Some(limits),
            usage: Some(UsageReport::tally(&usage, &self.limits.prices)),
            next,
        })
    }

    /// The user's live sessions (archived ones too), by id.
    async fn live_sessions(&self, user: &UserId) -> Result<Vec<SessionRecord>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.sessions)
            .key_condition_expression("#user = :user")
            .expression_attribute_names("#user", sessions::USER_ID)
            .expression_attribute_values(":user", s(user.as_str()))
            .consistent_read(true);
        let found = self.query_all(query, std::time::Instant::now() + Duration::from_secs(3600)).await?;
        let mut records = Vec::with_capacity(found.items.len());
        for item in found.items {
            if !Reader::new(&item, "session").has(DELETED_AT) {
                records.push(SessionRecord::try_from(item)?);
            }
        }
        records.sort_by_key(|record| record.session.id);
        Ok(records)
    }

    /// The user-wide memories and each live session's memories of its current epoch.
    async fn visible_memories(&self, user: &UserId, records: &[SessionRecord]) -> Result<Vec<Memory>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.memories)
            .key_condition_expression("#user = :user AND begins_with(#item, :memories)")
            .expression_attribute_names("#user", memories::USER_ID)
            .expression_attribute_names("#item", memories::ITEM)
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":memories", s("m#"))
            .consistent_read(true);
        let found = self.query_all(query, std::time::Instant::now() + Duration::from_secs(3600)).await?;
        let current: Vec<String> = records
            .iter()
            .map(|record| super::memories::ScopeKey::session(record.session.id, record.memory_epoch).key)
            .collect();
        let mut visible = Vec::new();
        for item in &found.items {
            let stored = StoredMemory::try_from(item)?;
            if stored.scope_key == "g" || current.contains(&stored.scope_key) {
                visible.push(stored.memory);
            }
        }
        Ok(visible)
    }
}
