//! Memories table: every item of a user in one partition (`user_id`), sorted by `item`:
//!
//! - `m#<scope>#<memory_id>` — a memory; `rank` feeds the `by_rank` LSI (importance, then newest),
//!   `memory_id` the `by_id` LSI;
//! - `d#<scope>#<hash>` — the dedupe marker of one (type, content) in a scope;
//! - `c#<scope>` — the scope's memory count, which enforces the cap;
//! - `t#<hash>` — the tombstone of an extracted memory the user deleted: the hash of its
//!   fingerprint (words, lowercased), which extraction never adds again;
//! - `x#<session_id>` — how far extraction has read the session (`through_seq`);
//! - `y#<session_id>` — the session's summary (see `summary`);
//! - `l#<session_id>#<memory_id>` — an extracted memory's link to its source: the scope it is
//!   in, its seq range and the session's memory epoch when it was written; what an edit, a
//!   delete or a reset of the source finds its memories by.
//!
//! `<scope>` is `g` for the user's global memories and `s:<session_id>:<epoch>` for a session's.
//! Resetting a session bumps its `memory_epoch` in the same write that clears its messages, so
//! its memories disappear at once without a multi-item delete.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::item::{Item, s};
use crate::schema::memories::{ITEM, MEMORY_ID, USER_ID};
use domain::{
    Cursor, Importance, Memory, MemoryContent, MemoryId, MemoryOrigin, MemoryScope, MemorySource, MemoryType, Seq,
    SessionId, Timestamp, UserId,
};

mod extracted;
mod read;
mod summary;
mod write;

pub(crate) use self::extracted::Touched;
pub use self::extracted::{ExtractionBatch, ExtractionWrite};
pub use self::read::RankedMemory;
pub use self::summary::SummaryGuard;

/// At most this many memories per scope.
pub const MAX_PER_SCOPE: u64 = 500;
const SESSION_ID: &str = "session_id";
const MEMORY_TYPE: &str = "memory_type";
const CONTENT: &str = "content";
const IMPORTANCE: &str = "importance";
const CREATED_AT: &str = "created_at";
const UPDATED_AT: &str = "updated_at";
const ORIGIN: &str = "origin";
const SOURCE_SESSION: &str = "source_session";
const FROM_SEQ: &str = "from_seq";
const TO_SEQ: &str = "to_seq";
const SUPERSEDED_BY: &str = "superseded_by";
const COUNT: &str = "n";
const LINK_SCOPE: &str = "scope";
const EPOCH: &str = "epoch";
/// Memories deleted per transaction by a scope-wide delete (up to 3 items each — the memory, its
/// marker, an extracted one's tombstone — plus the counter: at most 100).
const DELETE_CHUNK: usize = 33;
const QUERY_PAGE: i32 = 100;

/// A scope with its storage key (for a session: at its current memory epoch).
#[derive(Clone, Debug)]
pub(crate) struct ScopeKey {
    scope: MemoryScope,
    pub(crate) key: String,
    /// The session's epoch, which a write checks is still current.
    epoch: Option<u64>,
}

impl ScopeKey {
    fn global() -> Self {
        Self { scope: MemoryScope::Global, key: "g".to_owned(), epoch: None }
    }

    pub(crate) fn session(session_id: SessionId, epoch: u64) -> Self {
        Self { scope: MemoryScope::Session(session_id), key: format!("s:{session_id}:{epoch}"), epoch: Some(epoch) }
    }

    fn memory_item(&self, id: MemoryId) -> String {
        format!("m#{}#{id}", self.key)
    }

    fn memory_prefix(&self) -> String {
        format!("m#{}#", self.key)
    }

    fn marker_item(&self, hash: &str) -> String {
        format!("d#{}#{hash}", self.key)
    }

    pub(crate) fn counter_item(&self) -> String {
        format!("c#{}", self.key)
    }
}

/// Sorts by importance (high first), then creation (new first), then id: the rank without scope.
fn rank_suffix(importance: Importance, created_at: Timestamp, id: MemoryId) -> String {
    let micros = created_at.datetime().unix_timestamp_nanos() / 1_000;
    let inverted = 9_999_999_999_999_999_i128 - micros;
    format!("{:02}#{inverted:016}#{id}", 10 - importance.get())
}

fn dedupe_hash(memory_type: MemoryType, content: &MemoryContent) -> String {
    let digest = Sha256::digest(format!("{}\n{}", memory_type.as_str(), content.as_str()).as_bytes());
    digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// An extracted memory's link to its source session.
pub(crate) fn link_item(session_id: SessionId, id: MemoryId) -> String {
    format!("l#{session_id}#{id}")
}

/// The put of an extracted memory's link to its source (in `scope`, written at the source
/// session's memory `epoch`).
fn link_put(
    table: &str,
    user: &UserId,
    source: MemorySource,
    scope: &ScopeKey,
    id: MemoryId,
    epoch: u64,
) -> Result<aws_sdk_dynamodb::types::Put, StoreError> {
    let mut link = key(user, link_item(source.session_id, id));
    link.insert(LINK_SCOPE.to_owned(), s(scope.key.clone()));
    link.insert(FROM_SEQ.to_owned(), crate::item::n(source.from_seq.get()));
    link.insert(TO_SEQ.to_owned(), crate::item::n(source.to_seq.get()));
    link.insert(EPOCH.to_owned(), crate::item::n(epoch));
    aws_sdk_dynamodb::types::Put::builder().table_name(table).set_item(Some(link)).build().map_err(StoreError::internal)
}

/// The tombstone of a fact by its fingerprint (see `domain::fingerprint`).
pub(crate) fn tombstone_item(fingerprint: &str) -> String {
    let digest = Sha256::digest(fingerprint.as_bytes());
    format!("t#{}", digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect::<String>())
}

fn key(user: &UserId, item: String) -> Item {
    Item::from([(USER_ID.to_owned(), s(user.as_str())), (ITEM.to_owned(), s(item))])
}

/// A stored memory with what the store needs to change it.
pub(crate) struct StoredMemory {
    pub(crate) memory: Memory,
    pub(crate) scope_key: String,
    hash: String,
    /// `None` once superseded.
    rank: Option<String>,
}

/// The memory item as stored, mapped by serde_dynamo.
#[derive(Serialize, Deserialize)]
struct MemoryItem {
    user_id: String,
    item: String,
    memory_id: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    memory_type: String,
    content: String,
    importance: u8,
    dedupe_hash: String,
    /// Absent on a superseded memory: it has left `by_rank` (lists, contexts) and the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rank: Option<String>,
    /// `extracted`, or absent for the user's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    /// An extracted memory's source: session and seq range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    superseded_by: Option<String>,
    created_at: String,
    updated_at: String,
}

impl TryFrom<&Item> for StoredMemory {
    type Error = StoreError;

    /// Every attribute is parsed into its domain type: an item that breaks a rule is corrupt.
    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let stored: MemoryItem =
            serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("memory", "attributes"))?;
        let corrupt = |name| StoreError::corrupt("memory", name);
        let source = match (stored.source_session, stored.from_seq, stored.to_seq) {
            (Some(session), Some(from), Some(to)) => Some(MemorySource {
                session_id: session.parse().map_err(|_| corrupt(SOURCE_SESSION))?,
                from_seq: Seq::new(from).ok_or_else(|| corrupt(FROM_SEQ))?,
                to_seq: Seq::new(to).ok_or_else(|| corrupt(TO_SEQ))?,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt(SOURCE_SESSION)),
        };
        let origin = match stored.origin.as_deref() {
            None => MemoryOrigin::User,
            Some("extracted") => MemoryOrigin::Extracted,
            Some(_) => return Err(corrupt(ORIGIN)),
        };
        let memory = Memory {
            id: stored.memory_id.parse().map_err(|_| corrupt(MEMORY_ID))?,
            session_id: stored.session_id.map(|id| id.parse()).transpose().map_err(|_| corrupt(SESSION_ID))?,
            memory_type: stored.memory_type.parse().map_err(|_| corrupt(MEMORY_TYPE))?,
            content: MemoryContent::parse(stored.content).map_err(|_| corrupt(CONTENT))?,
            importance: Importance::new(IMPORTANCE, stored.importance.into()).map_err(|_| corrupt(IMPORTANCE))?,
            origin,
            source,
            superseded_by: stored.superseded_by.map(|id| id.parse()).transpose().map_err(|_| corrupt(SUPERSEDED_BY))?,
            created_at: stored.created_at.parse().map_err(|_| corrupt(CREATED_AT))?,
            updated_at: stored.updated_at.parse().map_err(|_| corrupt(UPDATED_AT))?,
        };
        Ok(Self { memory, scope_key: stored.scope, hash: stored.dedupe_hash, rank: stored.rank })
    }
}

impl crate::Store {
    /// One item of the user's memories partition (`item` its sort key), read strongly consistent.
    pub(super) async fn memories_item(&self, user: &UserId, item: String) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.memories)
            .set_key(Some(key(user, item)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(output.item)
    }
}

/// A page of memories, and how many match the filter in all.
#[derive(Clone, Debug)]
pub struct MemoryPage {
    pub data: Vec<Memory>,
    pub has_more: bool,
    pub next_cursor: Option<Cursor>,
    pub total: u64,
}
