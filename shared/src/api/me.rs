//! The caller's own data as a whole: export (`GET /v1/me/export`) and erasure (`DELETE /v1/me`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Cursor, InputError, LimitsView, Memory, Message, Session, Timestamp, UsageReport};
use crate::store::{Erasure, ExportPage};

/// `GET /v1/me/export?cursor=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `next_cursor` of the previous page; absent for the first.
    pub cursor: Option<String>,
}

impl ExportQuery {
    pub fn cursor(&self) -> Result<Option<Cursor>, InputError> {
        self.cursor.as_deref().map(Cursor::parse).transpose()
    }
}

/// One page of the caller's data. The first page holds the sessions (active and archived), the
/// memories, the limits and the last year of usage; each later page up to 200 messages of one
/// session, in order. Concatenate the arrays of all pages; stop when `next_cursor` is null.
/// Deleted and hidden items are not part of it: they are no longer the caller's conversation, and
/// expire after the retention period.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Export {
    pub user_id: String,
    pub exported_at: Timestamp,
    pub sessions: Vec<Session>,
    pub messages: Vec<Message>,
    pub memories: Vec<Memory>,
    /// On the first page only.
    pub limits: Option<LimitsView>,
    /// On the first page only.
    pub usage: Option<UsageReport>,
    pub next_cursor: Option<Cursor>,
}

impl Export {
    pub fn new(user_id: String, exported_at: Timestamp, page: ExportPage) -> Self {
        Self {
            user_id,
            exported_at,
            sessions: page.sessions,
            messages: page.messages,
            memories: page.memories,
            limits: page.limits,
            usage: page.usage,
            next_cursor: page.next,
        }
    }
}

/// What one `DELETE /v1/me` erased. `complete: false` (status 202): time ran out first; call
/// again, and the next call goes on where this one stopped.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErasureResult {
    pub complete: bool,
    pub erased: ErasedCounts,
}

/// Items erased by this call, by kind.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErasedCounts {
    /// Sessions, deleted ones included.
    pub sessions: u64,
    /// Messages, hidden and deleted ones and reply variants included.
    pub messages: u64,
    pub idempotency_records: u64,
    /// Memories with their bookkeeping items (dedupe markers, counters).
    pub memories: u64,
    /// Settings, meter, rate counters, usage days and job listings.
    pub limits: u64,
}

impl From<Erasure> for ErasureResult {
    fn from(erasure: Erasure) -> Self {
        Self {
            complete: erasure.complete,
            erased: ErasedCounts {
                sessions: erasure.sessions,
                messages: erasure.messages,
                idempotency_records: erasure.idempotency_records,
                memories: erasure.memories,
                limits: erasure.limits,
            },
        }
    }
}
