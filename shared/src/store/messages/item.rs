//! The message item: its attributes, key and mapping to `Message`.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{Content, LastMessage, Message, MessageId, NewMessage, Seq, SessionId, Timestamp, preview_of};
use crate::store::StoreError;
use crate::store::item::{Item, Reader, n, s};
use crate::store::schema::messages::{SEQ, SESSION_ID};

const ID: &str = "id";

const ROLE: &str = "role";

const TYPE: &str = "type";

pub(super) const CONTENT: &str = "content";

const PAYLOAD: &str = "payload";

const REPLY_TO: &str = "reply_to";

const USAGE: &str = "usage";

const CREATED_AT: &str = "created_at";

pub(super) const EDITED_AT: &str = "edited_at";

pub(super) const DELETED_AT: &str = "deleted_at";

pub(super) fn message_key(session: SessionId, seq: Seq) -> Item {
    Item::from([(SESSION_ID.to_owned(), s(session.to_string())), (SEQ.to_owned(), n(seq))])
}

pub(super) fn message_item(message: &Message) -> Item {
    let mut item = message_key(message.session_id, message.seq);
    item.extend([
        (ID.to_owned(), s(message.id.to_string())),
        (ROLE.to_owned(), s(message.role.as_str())),
        (TYPE.to_owned(), s(message.message_type.as_str())),
        (CONTENT.to_owned(), s(message.content.as_str())),
        (CREATED_AT.to_owned(), s(message.created_at.to_string())),
    ]);
    if let Some(payload) = &message.payload {
        item.insert(PAYLOAD.to_owned(), s(serde_json::to_string(payload.as_map()).unwrap_or_default()));
    }
    if let Some(reply_to) = message.reply_to {
        item.insert(REPLY_TO.to_owned(), n(reply_to));
    }
    if let Some(usage) = &message.usage {
        item.insert(
            USAGE.to_owned(),
            AttributeValue::M(Item::from([
                ("input_tokens".to_owned(), n(usage.input_tokens)),
                ("output_tokens".to_owned(), n(usage.output_tokens)),
                ("model".to_owned(), s(&usage.model)),
            ])),
        );
    }
    item
}

/// A stored message and whether it was deleted.
pub(super) struct StoredMessage {
    pub message: Message,
    pub deleted: bool,
}

impl TryFrom<&Item> for StoredMessage {
    type Error = StoreError;

    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let read = Reader::new(item, "message");
        let corrupt = |name| StoreError::corrupt("message", name);
        let usage = read
            .opt_map(USAGE)?
            .map(|map| {
                let usage = Reader::new(map, "message.usage");
                Ok::<_, StoreError>(crate::domain::Usage {
                    input_tokens: usage.number("input_tokens")?,
                    output_tokens: usage.number("output_tokens")?,
                    model: usage.string("model")?.to_owned(),
                })
            })
            .transpose()?;
        let message = Message {
            id: MessageId::parse(read.string(ID)?).ok_or_else(|| corrupt(ID))?,
            session_id: read.parse(SESSION_ID)?,
            seq: Seq::new(read.number(SEQ)?).ok_or_else(|| corrupt(SEQ))?,
            role: read.parse(ROLE)?,
            message_type: crate::domain::MessageType::parse(read.string(TYPE)?).map_err(|_| corrupt(TYPE))?,
            content: Content::parse(read.string(CONTENT)?.to_owned()).map_err(|_| corrupt(CONTENT))?,
            payload: read
                .opt_json_object(PAYLOAD)?
                .map(crate::domain::Payload::parse)
                .transpose()
                .map_err(|_| corrupt(PAYLOAD))?,
            reply_to: read
                .opt_number::<u64>(REPLY_TO)?
                .map(|seq| Seq::new(seq).ok_or_else(|| corrupt(REPLY_TO)))
                .transpose()?,
            usage,
            created_at: read.parse(CREATED_AT)?,
            edited_at: read.opt_parse(EDITED_AT)?,
        };
        Ok(Self { message, deleted: read.has(DELETED_AT) })
    }
}

pub(super) fn last_message_of(message: &Message) -> LastMessage {
    LastMessage {
        seq: message.seq,
        role: message.role,
        preview: preview_of(message.content.as_str()),
        created_at: message.created_at,
    }
}

pub(super) fn stored_messages(
    session_id: SessionId,
    messages: &[NewMessage],
    last_seq: u64,
    now: Timestamp,
) -> Vec<Message> {
    messages
        .iter()
        .enumerate()
        .map(|(index, new)| Message {
            id: MessageId::generate(),
            session_id,
            seq: Seq::after(last_seq + index as u64),
            role: new.role,
            message_type: new.message_type.clone(),
            content: new.content.clone(),
            payload: new.payload.clone(),
            reply_to: new.reply_to,
            usage: new.usage.clone(),
            created_at: now,
            edited_at: None,
        })
        .collect()
}
