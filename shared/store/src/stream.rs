//! The tables' change records in domain terms, for the realtime fan-out: what a record of the
//! messages or sessions stream (`NEW_AND_OLD_IMAGES`) says happened to a session's log. Both
//! readers — DynamoDB Local's stream locally, the Lambda event source on AWS — hand their images
//! here, so the mapping from items exists once.

use aws_sdk_dynamodb::types::AttributeValue;

use super::StoreError;
use super::memories::StoredMemory;
use super::messages::item::StoredMessage;
use super::sessions::SessionRecord;
use domain::{Memory, MemoryId, Message, MessageStatus, Seq, Session, SessionId, UserId};

/// An item image as a stream record carries it: an item of the table.
pub type Image = super::item::Item;

/// A change to a session's log or to the session, as its sockets hear of it.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    MessageNew(Box<Message>),
    /// An edit, a status change, a streaming reply's checkpoint, a new variant, a reply's end.
    MessageUpdated(Box<Message>),
    /// Deleted (delete, forget-recent: one record per message).
    MessageDeleted {
        session_id: SessionId,
        seq: Seq,
        rev: u64,
    },
    /// New-scene or reset hid every message up to `through_seq`.
    Cleared {
        session_id: SessionId,
        through_seq: u64,
        rev: u64,
    },
    /// Title, status, settings, metadata or archive changed.
    SessionUpdated(Box<Session>),
    /// A memory of the session (its scope's, or read from its turns) was added, changed or
    /// superseded, or deleted.
    MemoryNew {
        session_id: SessionId,
        memory: Box<Memory>,
    },
    MemoryUpdated {
        session_id: SessionId,
        memory: Box<Memory>,
    },
    MemoryDeleted {
        session_id: SessionId,
        memory_id: MemoryId,
    },
}

impl Recorded {
    pub fn session_id(&self) -> SessionId {
        match self {
            Self::MessageNew(message) | Self::MessageUpdated(message) => message.session_id,
            Self::MessageDeleted { session_id, .. } | Self::Cleared { session_id, .. } => *session_id,
            Self::SessionUpdated(session) => session.id,
            Self::MemoryNew { session_id, .. }
            | Self::MemoryUpdated { session_id, .. }
            | Self::MemoryDeleted { session_id, .. } => *session_id,
        }
    }
}

/// What a record of the messages table says; `None` for what no socket hears of: an earlier
/// variant moved aside, a TTL stamp, a purge.
pub fn message_record(old: Option<Image>, new: Option<Image>) -> Result<Option<Recorded>, StoreError> {
    let Some(new) = new else { return Ok(None) };
    // Earlier variants live in partitions `<session_id>#<seq>`: not the log.
    if matches!(new.get(super::schema::messages::SESSION_ID), Some(AttributeValue::S(id)) if id.contains('#')) {
        return Ok(None);
    }
    let new = StoredMessage::try_from(new)?;
    let old = old.map(StoredMessage::try_from).transpose()?;
    Ok(match old {
        None if new.deleted => None,
        None => Some(Recorded::MessageNew(Box::new(new.message))),
        Some(old) if new.deleted && !old.deleted => Some(Recorded::MessageDeleted {
            session_id: new.message.session_id,
            seq: new.message.seq,
            rev: new.message.rev,
        }),
        Some(old) if new.deleted || old.message == new.message => None,
        Some(_) => Some(Recorded::MessageUpdated(Box::new(new.message))),
    })
}

/// What a record of the memories table says, for the session the memory belongs to (its scope's,
/// or the one it was read from); `None` for the other items (markers, counts, links, marks,
/// tombstones), a TTL stamp, and a memory of no session (a global one the user added).
pub fn memory_record(old: Option<Image>, new: Option<Image>) -> Result<Option<Recorded>, StoreError> {
    let is_memory = |image: &Option<Image>| {
        image
            .as_ref()
            .and_then(|item| item.get(super::schema::memories::ITEM))
            .is_some_and(|item| matches!(item, AttributeValue::S(name) if name.starts_with("m#")))
    };
    if !is_memory(&old) && !is_memory(&new) {
        return Ok(None);
    }
    let read =
        |image: Option<Image>| image.map(|item| StoredMemory::try_from(&item).map(|stored| stored.memory)).transpose();
    let (old, new) = (read(old)?, read(new)?);
    let session_of = |memory: &Memory| memory.session_id.or(memory.source.map(|source| source.session_id));
    Ok(match (old, new) {
        (None, Some(memory)) => {
            session_of(&memory).map(|session_id| Recorded::MemoryNew { session_id, memory: Box::new(memory) })
        }
        (Some(old), Some(memory)) if old != memory => {
            session_of(&memory).map(|session_id| Recorded::MemoryUpdated { session_id, memory: Box::new(memory) })
        }
        (Some(memory), None) => {
            session_of(&memory).map(|session_id| Recorded::MemoryDeleted { session_id, memory_id: memory.id })
        }
        _ => None,
    })
}

/// A generated reply that ended with text (`complete` or `incomplete`), and whose it is: the
/// one change of the log that memory extraction follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedReply {
    pub user: UserId,
    pub session_id: SessionId,
    pub seq: Seq,
}

/// Whether a record of the messages table is a reply's end: the old image is the streaming reply
/// (it carries its owner in the `by_lease` keys), the new one has ended with text.
pub fn ended_reply(old: Option<&Image>, new: Option<&Image>) -> Option<EndedReply> {
    let (old, new) = (old?, new?);
    let user = match old.get(super::schema::messages::LEASE_USER) {
        Some(AttributeValue::S(user)) => UserId::parse(user)?,
        _ => return None,
    };
    let old = StoredMessage::try_from(old.clone()).ok()?;
    let new = StoredMessage::try_from(new.clone()).ok()?;
    let ended = matches!(new.message.status, MessageStatus::Complete | MessageStatus::Incomplete);
    (old.message.status == MessageStatus::Streaming
        && ended
        && !new.deleted
        && !new.message.content.as_str().trim().is_empty())
    .then_some(EndedReply { user, session_id: new.message.session_id, seq: new.message.seq })
}

/// What a record of the sessions table says: a range hidden, the session's own fields changed,
/// or both. A create, a delete and a change of the log's summary alone say nothing new (the
/// messages' own records do).
pub fn session_record(old: Option<Image>, new: Option<Image>) -> Result<Vec<Recorded>, StoreError> {
    let (Some(old), Some(new)) = (old, new) else { return Ok(Vec::new()) };
    if new.contains_key(super::sessions::DELETED_AT) || old.contains_key(super::sessions::DELETED_AT) {
        return Ok(Vec::new());
    }
    let (old, new) = (SessionRecord::try_from(old)?, SessionRecord::try_from(new)?);
    let mut recorded = Vec::new();
    if new.visible_after > old.visible_after {
        recorded.push(Recorded::Cleared {
            session_id: new.session.id,
            through_seq: new.visible_after,
            rev: new.hidden_rev,
        });
    }
    let (a, b) = (&old.session, &new.session);
    if a.title != b.title
        || a.status != b.status
        || a.archived != b.archived
        || a.metadata != b.metadata
        || a.settings != b.settings
    {
        recorded.push(Recorded::SessionUpdated(Box::new(new.session)));
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(pairs: &[(&str, AttributeValue)]) -> Image {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
    }

    fn message(rev: u64, content: &str, extra: &[(&str, AttributeValue)]) -> Image {
        let s = |text: &str| AttributeValue::S(text.to_owned());
        let mut item = image(&[
            ("session_id", s("018f2d6e-4a7b-7c3d-9e1f-2a3b4c5d6e7f")),
            ("seq", AttributeValue::N("4".to_owned())),
            ("rev", AttributeValue::N(rev.to_string())),
            ("id", s("00000000-0000-4000-8000-0000000000b1")),
            ("role", s("user")),
            ("type", s("text")),
            ("content", s(content)),
            ("created_at", s("2026-12-03T00:00:00.000000Z")),
        ]);
        item.extend(image(extra));
        item
    }

    #[test]
    fn message_records_say_what_a_socket_hears() {
        let deleted = [("deleted_at", AttributeValue::S("2026-12-03T00:00:01.000000Z".to_owned()))];
        let ttl = [("expires_at", AttributeValue::N("1800000000".to_owned()))];
        let new = message_record(None, Some(message(1, "hi", &[]))).unwrap_or_default();
        assert!(matches!(new, Some(Recorded::MessageNew(m)) if m.rev == 1 && m.content.as_str() == "hi"));
        let edited = message_record(Some(message(1, "hi", &[])), Some(message(2, "hey", &[]))).unwrap_or_default();
        assert!(matches!(edited, Some(Recorded::MessageUpdated(m)) if m.rev == 2));
        let gone = message_record(Some(message(2, "hey", &[])), Some(message(3, "hey", &deleted))).unwrap_or_default();
        assert!(matches!(gone, Some(Recorded::MessageDeleted { rev: 3, .. })));
        // The job stamping a hidden message's expiry, a purge, a variant moved aside: nothing.
        let mut both = deleted.to_vec();
        both.extend(ttl.clone());
        assert_eq!(message_record(Some(message(3, "hey", &deleted)), Some(message(3, "hey", &both))).ok(), Some(None));
        assert_eq!(message_record(Some(message(1, "hi", &[])), Some(message(1, "hi", &ttl))).ok(), Some(None));
        assert_eq!(message_record(Some(message(1, "hi", &[])), None).ok(), Some(None));
        let mut variant = message(1, "old", &[]);
        variant.insert("session_id".to_owned(), AttributeValue::S("018f2d6e-4a7b-7c3d-9e1f-2a3b4c5d6e7f#4".to_owned()));
        assert_eq!(message_record(None, Some(variant)).ok(), Some(None));
    }

    #[test]
    fn a_reply_that_ends_with_text_is_an_ended_reply_of_the_user_its_lease_names() {
        let s = |text: &str| AttributeValue::S(text.to_owned());
        let streaming = |content: &str| {
            message(
                5,
                content,
                &[
                    ("role", s("assistant")),
                    ("status", s("streaming")),
                    ("lease_user", s("user-1")),
                    ("lease_shard", s("3")),
                ],
            )
        };
        let ended =
            |status: &str, content: &str| message(6, content, &[("role", s("assistant")), ("status", s(status))]);
        let Some(reply) = ended_reply(Some(&streaming("Hel")), Some(&ended("complete", "Hello"))) else {
            panic!("not an ended reply")
        };
        assert_eq!((reply.user.as_str(), reply.seq.get()), ("user-1", 4));
        assert!(ended_reply(Some(&streaming("Hel")), Some(&ended("incomplete", "Hello"))).is_some());
        // Failed, cancelled, ended without text, a checkpoint, an edit of an ended reply: no.
        assert!(ended_reply(Some(&streaming("")), Some(&ended("failed", ""))).is_none());
        assert!(ended_reply(Some(&streaming("Hel")), Some(&ended("cancelled", "Hel"))).is_none());
        assert!(ended_reply(Some(&streaming("")), Some(&ended("complete", " "))).is_none());
        assert!(ended_reply(Some(&streaming("Hel")), Some(&streaming("Hello"))).is_none());
        assert!(ended_reply(Some(&ended("complete", "Hello")), Some(&ended("complete", "Hi"))).is_none());
        assert!(ended_reply(None, Some(&ended("complete", "Hello"))).is_none());
    }
}
