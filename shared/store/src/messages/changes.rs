//! The change feed: what changed in a session's log after a revision a client holds, read from
//! the `by_rev` index (keys only, strongly consistent) and the message items.
//!
//! Exact because revisions commit in order: every write that moves a session to revision R is
//! conditioned on it standing at R - 1, so when the session item shows R, every change up to R
//! has committed, and a strongly consistent read after it sees them all. The feed therefore reads
//! the session first and the index up to the session's revision.

use super::item::{REV, StoredMessage, message_key};
use crate::item::{Item, Reader, n, s};
use crate::schema::messages::{BY_REV, SEQ, SESSION_ID};
use crate::{Store, StoreError};
use domain::{Change, Changes, PageLimit, Seq, SessionId, UserId};

/// One entry of the `by_rev` index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Changed {
    rev: u64,
    seq: Seq,
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
    /// when one revision holds more, such as a forget-recent of many messages).
    pub async fn changes(
        &self,
        user: &UserId,
        session_id: SessionId,
        after_rev: u64,
        limit: PageLimit,
    ) -> Result<Changes, StoreError> {
        let record = self.session_record(user, session_id).await?;
        let head = record.session.rev;
        let limit = limit.as_usize();
        let mut found = self.changed_between(session_id, after_rev, head, Some(limit + 1)).await?;
        let first = found.first().map_or(after_rev + 1, |changed| changed.rev);
        let has_more = match cut_at_revision(&mut found, limit) {
            Some(has_more) => has_more,
            None => {
                found = self.changed_between(session_id, first - 1, first, None).await?;
                first < head
            }
        };
        let last = found.last().map(|changed| changed.rev);
        // Messages new-scene or reset hid are covered by its one `cleared` change.
        found.retain(|changed| changed.seq.get() > record.visible_after);
        let items =
            self.batch_get(&self.tables.messages, found.iter().map(|c| message_key(session_id, c.seq)).collect());
        let mut by_seq = std::collections::HashMap::new();
        for item in items.await? {
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
