//! Erasure: every item of a user, in every table — sessions (deleted ones too), their messages,
//! the variants of regenerated replies, idempotency records, memories, limits, usage and chores.
//! In bounded passes: a pass that runs out of time reports what it erased and leaves the rest for
//! the next call, which finds it again (a session item goes last, after its log).

use std::time::{Duration, Instant};

use super::item::{Item, Reader, s};
use super::messages::item::{DEDUPE_KEY, VARIANT};
use super::schema::{idempotency, limits, memories, messages, sessions};
use super::{Store, StoreError};
use domain::UserId;

/// How many items one pass erased, by kind; `complete`: nothing of the user is left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    pub sessions: u64,
    pub messages: u64,
    pub idempotency_records: u64,
    pub memories: u64,
    pub limits: u64,
    pub complete: bool,
}

impl Store {
    /// Erases what it can of `user` within `budget` (each pass makes progress however small the
    /// budget: it finishes at least the page it started).
    pub async fn erase_user(&self, user: &UserId, budget: Duration) -> Result<Erasure, StoreError> {
        let deadline = Instant::now() + budget;
        let mut erased = Erasure::default();
        let listing = self
            .client
            .query()
            .table_name(&self.tables.sessions)
            .key_condition_expression("#user = :user")
            .projection_expression("#user, #sid")
            .expression_attribute_names("#user", sessions::USER_ID)
            .expression_attribute_names("#sid", sessions::SESSION_ID)
            .expression_attribute_values(":user", s(user.as_str()))
            .consistent_read(true);
        let found = self.query_all(listing, deadline).await?;
        let mut complete = found.complete;
        for session in found.items {
            if !self.erase_log(&session, deadline, &mut erased).await? {
                return Ok(erased);
            }
            erased.sessions += self.delete_keys(&self.tables.sessions, vec![session]).await?;
            if Instant::now() > deadline {
                return Ok(erased);
            }
        }
        for (table, partition_key, sort_key, count) in [
            (&self.tables.memories, memories::USER_ID, memories::ITEM, &mut erased.memories),
            (&self.tables.limits, limits::USER_ID, limits::ITEM, &mut erased.limits),
        ] {
            let query = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("#user = :user")
                .projection_expression("#user, #item")
                .expression_attribute_names("#user", partition_key)
                .expression_attribute_names("#item", sort_key)
                .expression_attribute_values(":user", s(user.as_str()))
                .consistent_read(true);
            let found = self.query_all(query, deadline).await?;
            complete &= found.complete;
            *count += self.delete_keys(table, found.items).await?;
        }
        erased.complete = complete;
        Ok(erased)
    }

    /// Erases one session's messages, their variants and idempotency records; `false` when the
    /// deadline came first (the session item stays, so the next pass comes back).
    async fn erase_log(&self, session: &Item, deadline: Instant, erased: &mut Erasure) -> Result<bool, StoreError> {
        let session_id = Reader::new(session, "session").string(sessions::SESSION_ID)?.to_owned();
        let log = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("#sid = :sid")
            .projection_expression("#sid, #seq, #variant, #dedupe_key")
            .expression_attribute_names("#variant", VARIANT)
            .expression_attribute_names("#sid", messages::SESSION_ID)
            .expression_attribute_names("#seq", messages::SEQ)
            .expression_attribute_names("#dedupe_key", DEDUPE_KEY)
            .expression_attribute_values(":sid", s(&session_id))
            .consistent_read(true);
        let found = self.query_all(log, deadline).await?;
        let mut complete = found.complete;
        let (mut keys, mut records) = (Vec::with_capacity(found.items.len()), Vec::new());
        for item in found.items {
            let read = Reader::new(&item, "message");
            if let Some(key) = read.opt_string(DEDUPE_KEY)? {
                records.push(Item::from([(idempotency::SCOPE.to_owned(), s(format!("{session_id}#{key}")))]));
            }
            if let Some(variants) = self.variant_keys(&item, false, deadline).await? {
                let variants_complete = variants.complete;
                erased.messages += self.delete_keys(&self.tables.messages, variants.items).await?;
                if !variants_complete {
                    // The message stays, so the next pass finds its variants again.
                    complete = false;
                    continue;
                }
            }
            let key_only = [messages::SESSION_ID, messages::SEQ];
            keys.push(item.into_iter().filter(|(name, _)| key_only.contains(&name.as_str())).collect::<Item>());
        }
        erased.idempotency_records += self.delete_keys(&self.tables.idempotency, records).await?;
        erased.messages += self.delete_keys(&self.tables.messages, keys).await?;
        Ok(complete)
    }
}
