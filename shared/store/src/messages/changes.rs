//! The change feed: what changed in a session's log after a revision a client holds.
//!
//! A message's creation and its later changes are found apart. Creations are in seq order (an
//! append takes the next seqs at the next revision), so the messages created after a revision
//! are the seqs above a boundary, read from the log itself; a new message therefore costs no
//! index entry. A change after the creation (an edit, a delete, a reply's end) sets the message's
//! `rev`, which puts it in the `by_rev` index (local, keys only, strongly consistent).
//!
//! Exact because revisions commit in order: every write that moves a session to revision R is
//! conditioned on it standing at R - 1, so when the session item shows R, every change up to R
//! has committed, and a strongly consistent read after it sees them all. The feed therefore reads
//! the session first, then the log and the index up to the session's revision.

use super::item::{CREATED_REV, REV, StoredMessage, message_key};
use crate::item::{Item, Reader, n, s};
use crate::schema::messages::{BY_REV, SEQ, SESSION_ID};
use crate::{Store, StoreError};
use domain::{Change, Changes, PageLimit, Seq, SessionId, UserId};

/// How many of the newest messages the feed reads first, looking for the boundary below the
/// creations it reports; the page grows fourfold while it has not found it.
const FIRST_SCAN: i32 = 8;

/// Past this many creations the feed stops reading down and searches for the boundary instead.
const MAX_SCAN: usize = 512;

/// One entry of the `by_rev` index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Changed {
    rev: u64,
    seq: Seq,
}

/// The part of a session's log the feed may report: above `visible_after`, up to `last_seq`.
struct Log {
    session_id: SessionId,
    visible_after: u64,
    last_seq: u64,
}

/// A message read by seq: the revision that created it, and whether a change since put it in
/// the index (items from before creations were found by seq have only `rev`: in the index).
struct Scanned {
    seq: Seq,
    created: u64,
    in_index: bool,
    item: Item,
}

impl Scanned {
    fn of(item: Item) -> Result<Self, StoreError> {
        let reader = Reader::new(&item, "message");
        let seq = Seq::new(reader.number(SEQ)?).ok_or_else(|| StoreError::corrupt("message", SEQ))?;
        let rev: Option<u64> = reader.opt_number(REV)?;
        let created = match reader.opt_number(CREATED_REV)? {
            Some(created) => created,
            None => rev.unwrap_or_default(),
        };
        Ok(Self { seq, created, in_index: rev.is_some(), item })
    }

    fn entry(self) -> (Changed, Item) {
        (Changed { rev: self.created, seq: self.seq }, self.item)
    }
}

/// The index's changes and the log's creations as one list, in revision order (seq order within
/// a revision).
fn in_revision_order(mut changed: Vec<Changed>, created: &[(Changed, Item)]) -> Vec<Changed> {
    changed.extend(created.iter().map(|(entry, _)| *entry));
    changed.sort_by_key(|entry| (entry.rev, entry.seq));
    changed
}

/// Cuts `found` (in rev order; `limit` + 1 of them when more follow) to a page that ends at a
/// revision boundary. `None`: the first revision alone is longer than the page.
fn cut_at_revision(found: &mut Vec<Changed>, limit: usize) -> Option<bool> {
    if found.len() <= limit {
        return Some(false);
    }
    let boundary = found[limit].rev;
    found.truncate(limit);
    found.retain(|changed| changed.rev != boundary);
    if found.is_empty() { None } else { Some(true) }
}

impl Store {
    /// The changes to the session's log after `after_rev`, at most `limit` of them (more only
    /// when one revision holds more, such as a batch append or a forget-recent of many messages).
    pub async fn changes(
        &self,
        user: &UserId,
        session_id: SessionId,
        after_rev: u64,
        limit: PageLimit,
    ) -> Result<Changes, StoreError> {
        let record = self.session_record(user, session_id).await?;
        let head = record.session.rev;
        let log = Log { session_id, visible_after: record.visible_after, last_seq: record.session.last_seq };
        let limit = limit.as_usize();
        let (changed, mut created) = tokio::try_join!(
            self.changed_between(session_id, after_rev, head, Some(limit + 1)),
            self.created_between(&log, after_rev, head, Some(limit + 1)),
        )?;
        let mut found = in_revision_order(changed, &created);
        let first = found.first().map_or(after_rev + 1, |changed| changed.rev);
        let has_more = match cut_at_revision(&mut found, limit) {
            Some(has_more) => has_more,
            None => {
                let (changed, whole) = tokio::try_join!(
                    self.changed_between(session_id, first - 1, first, None),
                    self.created_between(&log, first - 1, first, None),
                )?;
                found = in_revision_order(changed, &whole);
                created = whole;
                first < head
            }
        };
        let last = found.last().map(|changed| changed.rev);
        // Messages new-scene or reset hid are covered by its one `cleared` change.
        found.retain(|changed| changed.seq.get() > record.visible_after);
        let mut by_seq = std::collections::HashMap::new();
        for (_, item) in created {
            let stored = StoredMessage::try_from(item)?;
            by_seq.insert(stored.message.seq, stored);
        }
        let missing: Vec<Item> =
            found.iter().filter(|c| !by_seq.contains_key(&c.seq)).map(|c| message_key(session_id, c.seq)).collect();
        for item in self.batch_get(&self.tables.messages, missing).await? {
            let stored = StoredMessage::try_from(item)?;
            by_seq.insert(stored.message.seq, stored);
        }
        let mut data = Vec::with_capacity(found.len() + 1);
        for changed in &found {
            // The item as it is now: a later change shows again at its own revision.
            match by_seq.remove(&changed.seq) {
                Some(stored) if stored.deleted => data.push(Change::Deleted { rev: changed.rev, seq: changed.seq }),
                Some(stored) => data.push(Change::Message { rev: changed.rev, message: Box::new(stored.message) }),
                // Purged after its retention period: as deleted as it gets.
                None => data.push(Change::Deleted { rev: changed.rev, seq: changed.seq }),
            }
        }
        let covered = if has_more { last.unwrap_or(after_rev) } else { head };
        if record.hidden_rev > after_rev && record.hidden_rev <= covered {
            let cleared = Change::Cleared { rev: record.hidden_rev, through_seq: record.visible_after };
            let at = data.partition_point(|change| change.rev() < record.hidden_rev);
            data.insert(at, cleared);
        }
        Ok(Changes { data, has_more, next_after_rev: covered.max(after_rev) })
    }

    /// The messages created at a revision `after < rev <= through` and not changed since (a
    /// changed one is in the index), in seq order, `limit` at most, with their items.
    async fn created_between(
        &self,
        log: &Log,
        after: u64,
        through: u64,
        limit: Option<usize>,
    ) -> Result<Vec<(Changed, Item)>, StoreError> {
        if through <= after || log.last_seq <= log.visible_after {
            return Ok(Vec::new());
        }
        // Down from the newest message to the first one created at or before `after`.
        let mut above = Vec::new();
        let mut start = None;
        let mut page = FIRST_SCAN;
        let reached = loop {
            let (items, next) = self.log_page(log, log.visible_after + 1, log.last_seq, false, page, start).await?;
            let mut reached = false;
            for item in items {
                let scanned = Scanned::of(item)?;
                if scanned.created <= after {
                    reached = true;
                    break;
                }
                above.push(scanned);
            }
            match next {
                _ if reached => break true,
                None => break true,
                Some(_) if above.len() >= MAX_SCAN => break false,
                Some(key) => start = Some(key),
            }
            page = page.saturating_mul(4);
        };
        let wanted = |scanned: &Scanned| !scanned.in_index && scanned.created > after && scanned.created <= through;
        let mut found = Vec::new();
        if reached {
            for scanned in above.into_iter().rev().filter(wanted) {
                if limit.is_some_and(|limit| found.len() >= limit) {
                    break;
                }
                found.push(scanned.entry());
            }
            return Ok(found);
        }
        // Many creations since `after` (a client long away): find the boundary, read up from it.
        let lowest_read = above.last().map_or(log.last_seq, |scanned| scanned.seq.get());
        let from = self.first_created_after(log, after, lowest_read).await?;
        let mut start = None;
        loop {
            let (items, next) = self.log_page(log, from, log.last_seq, true, FIRST_SCAN * 8, start).await?;
            for item in items {
                let scanned = Scanned::of(item)?;
                if scanned.created > through || limit.is_some_and(|limit| found.len() >= limit) {
                    return Ok(found);
                }
                if wanted(&scanned) {
                    found.push(scanned.entry());
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(found),
            }
        }
    }

    /// The lowest seq in `visible_after < seq <= known` whose message was created after `after`,
    /// where `known`'s was: a binary search over the log (messages purged after their retention
    /// leave holes, so each probe reads the first message at or above a seq).
    async fn first_created_after(&self, log: &Log, after: u64, known: u64) -> Result<u64, StoreError> {
        let (mut low, mut high) = (log.visible_after + 1, known);
        while low < high {
            let middle = low + (high - low) / 2;
            let (items, _) = self.log_page(log, middle, known, true, 1, None).await?;
            let created_after = match items.into_iter().next() {
                Some(item) => Scanned::of(item)?.created > after,
                None => true,
            };
            if created_after { high = middle } else { low = middle + 1 }
        }
        Ok(low)
    }

    /// One page of the log between two seqs (inclusive), strongly consistent.
    async fn log_page(
        &self,
        log: &Log,
        low: u64,
        high: u64,
        forward: bool,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("#sid = :sid AND #seq BETWEEN :low AND :high")
            .expression_attribute_names("#sid", SESSION_ID)
            .expression_attribute_names("#seq", SEQ)
            .expression_attribute_values(":sid", s(log.session_id.to_string()))
            .expression_attribute_values(":low", n(low))
            .expression_attribute_values(":high", n(high))
            .scan_index_forward(forward)
            .consistent_read(true)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
    }

    /// The index entries with `after < rev <= through`, in rev order, `limit` at most.
    async fn changed_between(
        &self,
        session_id: SessionId,
        after: u64,
        through: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Changed>, StoreError> {
        if through <= after {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let remaining = limit.map(|limit| limit.saturating_sub(found.len()) as i32);
            let output = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .index_name(BY_REV)
                .key_condition_expression("#sid = :sid AND #rev BETWEEN :low AND :high")
                .expression_attribute_names("#sid", SESSION_ID)
                .expression_attribute_names("#rev", REV)
                .expression_attribute_values(":sid", s(session_id.to_string()))
                .expression_attribute_values(":low", n(after + 1))
                .expression_attribute_values(":high", n(through))
                .consistent_read(true)
                .set_limit(remaining)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                let reader = Reader::new(item, "message");
                let seq = Seq::new(reader.number(SEQ)?).ok_or_else(|| StoreError::corrupt("message", SEQ))?;
                found.push(Changed { rev: reader.number(REV)?, seq });
            }
            let full = limit.is_some_and(|limit| found.len() >= limit);
            match output.last_evaluated_key {
                Some(key) if !full => start = Some(key),
                _ => return Ok(found),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(revs: &[u64]) -> Vec<Changed> {
        revs.iter().enumerate().map(|(index, &rev)| Changed { rev, seq: Seq::after(index as u64) }).collect()
    }

    #[test]
    fn a_page_never_splits_a_revision() {
        let mut short = changed(&[3, 4]);
        assert_eq!(cut_at_revision(&mut short, 3), Some(false));
        assert_eq!(short.len(), 2);
        let mut clean = changed(&[3, 4, 5, 6]);
        assert_eq!(cut_at_revision(&mut clean, 3), Some(true));
        assert_eq!(clean.iter().map(|c| c.rev).collect::<Vec<_>>(), [3, 4, 5]);
        // Revision 5 runs past the page: it goes whole into the next one.
        let mut split = changed(&[3, 5, 5, 5]);
        assert_eq!(cut_at_revision(&mut split, 3), Some(true));
        assert_eq!(split.iter().map(|c| c.rev).collect::<Vec<_>>(), [3]);
        // One revision fills the page and more: the caller reads that revision whole.
        let mut one = changed(&[5, 5, 5, 5]);
        assert_eq!(cut_at_revision(&mut one, 3), None);
    }
}
