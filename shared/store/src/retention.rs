//! Retention: what the API no longer shows is removed by DynamoDB's TTL after the retention
//! period (`RETENTION_DAYS`, default 30), at no write cost of its own.
//!
//! A deleted message or session gets its `expires_at` in the write that removes it. Messages
//! hidden by new-scene or reset, a session's memories of a left epoch, and a deleted session's
//! messages and memories are too many for the request that hid them: it lists a *sweep* of the
//! session among the hourly job's chores (before its own write, so a failure in between leaves a
//! sweep with nothing to do, never hidden items without one), and the job stamps them in bounded,
//! resumable passes. A sweep derives what is invisible from the session item as it stands.

use std::time::{Duration, Instant};

use super::item::{Item, Reader, s};
use super::limits::list_chore;
use super::messages::item::VARIANT;
use super::schema::{memories, messages};
use super::sessions::{DELETED_AT, MEMORY_EPOCH, VISIBLE_AFTER, session_key};
use super::{Store, StoreError};
use domain::{SessionId, Timestamp, UserId};

/// The limits-table item listing a session's sweep: `x#<session_id>`.
pub(super) const SWEEP_PREFIX: &str = "x#";

/// What one sweep stamped.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Swept {
    pub messages: u64,
    pub memories: u64,
    /// Everything invisible is stamped; `false`: the deadline came first.
    pub complete: bool,
}

/// What of a session is invisible, as its item says.
struct Invisible {
    /// Messages with `seq` up to this (all of them once the session is deleted).
    messages_through: u64,
    /// Memory epochs below this (all of them once the session is deleted).
    epochs_below: u64,
}

impl Store {
    pub(crate) fn retention(&self) -> Duration {
        Duration::from_secs(self.limits.retention_days * 24 * 3600)
    }

    /// When something removed at `now` is gone for good (`expires_at`, Unix seconds).
    pub(crate) fn expires_at(&self, now: Timestamp) -> i64 {
        now.plus(self.retention()).unix_seconds()
    }

    /// Lists a sweep of the session for the next run of the hourly job. The listing itself
    /// expires once the job can no longer find it (it looks back two weeks).
    pub(crate) async fn list_sweep(&self, user: &UserId, session_id: SessionId) -> Result<(), StoreError> {
        let now = self.now();
        let forgotten_at = now.plus(Duration::from_secs(15 * 24 * 3600)).unix_seconds();
        list_chore(self, user, &format!("{SWEEP_PREFIX}{session_id}"), now, Some(forgotten_at)).await
    }

    /// The job's sweep of one session: stamps `expires_at` on its invisible messages (and their
    /// regenerated variants) and on its memories of left epochs, until `deadline`.
    pub(super) async fn sweep_session(
        &self,
        user: &UserId,
        session_id: SessionId,
        now: Timestamp,
        deadline: Instant,
    ) -> Result<Swept, StoreError> {
        let Some(invisible) = self.invisible_of(user, session_id).await? else {
            // Erased already: nothing of it is left to stamp.
            return Ok(Swept { complete: true, ..Swept::default() });
        };
        let expires_at = self.expires_at(now);
        let sid = session_id.to_string();
        let hidden = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("#sid = :sid AND #seq <= :through")
            .filter_expression("attribute_not_exists(#expires_at)")
            .projection_expression("#sid, #seq, #variant")
            .expression_attribute_names("#variant", VARIANT)
            .expression_attribute_names("#sid", messages::SESSION_ID)
            .expression_attribute_names("#seq", messages::SEQ)
            .expression_attribute_names("#expires_at", messages::EXPIRES_AT)
            .expression_attribute_values(":sid", s(&sid))
            .expression_attribute_values(":through", super::item::n(invisible.messages_through));
        let found = self.query_all(hidden, deadline).await?;
        let mut complete = found.complete;
        let mut keys = Vec::with_capacity(found.items.len());
        for item in found.items {
            if let Some(variants) = self.variant_keys(&item, true, deadline).await? {
                complete &= variants.complete;
                keys.extend(variants.items);
            }
            keys.push(item.into_iter().filter(|(name, _)| name != VARIANT).collect::<Item>());
        }
        let messages_stamped = self.stamp_expiry(&self.tables.messages, messages::SEQ, keys, expires_at).await?;

        let mut memory_keys = Vec::new();
        for kind in ["m", "d", "c"] {
            let prefix = format!("{kind}#s:{sid}:");
            let query = self
                .client
                .query()
                .table_name(&self.tables.memories)
                .key_condition_expression("#user = :user AND begins_with(#item, :prefix)")
                .filter_expression("attribute_not_exists(#expires_at)")
                .projection_expression("#user, #item")
                .expression_attribute_names("#user", memories::USER_ID)
                .expression_attribute_names("#item", memories::ITEM)
                .expression_attribute_names("#expires_at", memories::EXPIRES_AT)
                .expression_attribute_values(":user", s(user.as_str()))
                .expression_attribute_values(":prefix", s(&prefix));
            let found = self.query_all(query, deadline).await?;
            complete &= found.complete;
            for item in found.items {
                let name = Reader::new(&item, "memory").string(memories::ITEM)?;
                let epoch = name[prefix.len()..].split('#').next().and_then(|epoch| epoch.parse::<u64>().ok());
                if epoch.is_some_and(|epoch| epoch < invisible.epochs_below) {
                    memory_keys.push(item);
                }
            }
        }
        let memories_stamped =
            self.stamp_expiry(&self.tables.memories, memories::ITEM, memory_keys, expires_at).await?;
        // Extracted memories read from what a reset (or the session's delete) removed: a reset
        // deletes them itself; this finishes what a crash left of that.
        self.delete_sourced_before(user, session_id, invisible.epochs_below).await?;
        Ok(Swept { messages: messages_stamped, memories: memories_stamped, complete })
    }

    /// `None`: the session item is gone (erased, or past its own TTL).
    async fn invisible_of(&self, user: &UserId, session_id: SessionId) -> Result<Option<Invisible>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(user, session_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let Some(item) = output.item else { return Ok(None) };
        let read = Reader::new(&item, "session");
        if read.has(DELETED_AT) {
            return Ok(Some(Invisible { messages_through: u64::MAX >> 1, epochs_below: u64::MAX }));
        }
        Ok(Some(Invisible {
            messages_through: read.opt_number(VISIBLE_AFTER)?.unwrap_or(0),
            epochs_below: read.opt_number(MEMORY_EPOCH)?.unwrap_or(0),
        }))
    }
}
