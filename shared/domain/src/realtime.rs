//! The realtime protocol: the JSON frames a chat socket carries, the same locally and on AWS.
//! Every frame is `{"event": "<name>", "data": {…}}`. Server events about a session's log carry
//! the session revision (`rev`) of the change, so a client that reconnects asks for exactly what
//! it missed (`sync {after_rev}`). Pure: parsing and the frames' shapes, no transport.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Change, Changes, CreateReply, InputError, Memory, MemoryId, Message, MessagesLimit, Seq, Session, SessionId, UserId,
};

/// A connection whose credential and session were checked at connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub user: UserId,
    pub session: SessionId,
}

/// The largest frame API Gateway's WebSocket API takes (32 KB). The server sends none larger (a
/// change that does not fit is replaced by a reference the client fetches) and answers a larger
/// one from a client with an `error` event `payload_too_large`, the socket left open.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// The largest message API Gateway assembles from frames (128 KB); the dev server reads up to
/// this too. A larger one closes the socket (code 1009), there as here.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// What the client sends on a chat socket (`{"event": …, "data": {…}}`; `ping` may omit `data`).
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientEvent {
    /// Exactly what `POST …/replies` does — the same fields, the same checks (see
    /// [`ClientEvent::reply`]); the reply streams to every connection of the session.
    SendMessage(SendMessage),
    /// Relayed to the user's other connections of the session, never stored.
    Typing {
        is_typing: bool,
    },
    /// The changes after `after_rev`, in `rev` order.
    Sync {
        after_rev: u64,
    },
    Ping,
}

/// `send_message`'s data: the body `POST …/replies` takes, and an idempotency key.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The user's message (not blank); without it the model answers the log as it stands.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    #[schemars(range(min = 1, max = 4096))]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    /// As in `POST …/replies`: the agent that answers.
    #[serde(default)]
    pub agent: Option<super::CharacterId>,
    /// As in `POST …/replies`: `direct`, `orchestrated` or `all`.
    #[serde(default)]
    pub mode: Option<super::ReplyMode>,
    /// As in `POST …/replies`: `auto`, `required`, `none` or `{"name": "…"}`.
    #[serde(default)]
    pub tool_choice: Option<super::ToolChoiceInput>,
    /// As `Idempotency-Key` over HTTP: a retried frame never starts a second reply.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Why a client frame was not understood; answered with an `error` event, the socket stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub message: String,
}

impl ClientEvent {
    /// A `send_message` as the body `POST …/replies` takes, and its idempotency key.
    pub fn reply(self) -> Option<(CreateReply, Option<String>)> {
        match self {
            Self::SendMessage(SendMessage {
                content,
                model,
                max_tokens,
                temperature,
                agent,
                mode,
                tool_choice,
                idempotency_key,
            }) => Some((
                CreateReply { content, model, max_tokens, temperature, agent, mode, tool_choice },
                idempotency_key,
            )),
            _ => None,
        }
    }

    /// Parses one text frame. `ping` may come without `data`.
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let value: serde_json::Value =
            serde_json::from_str(frame).map_err(|_| ProtocolError { message: "the frame is not JSON".to_owned() })?;
        let name = value.get("event").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        if !["send_message", "typing", "sync", "ping"].contains(&name.as_str()) {
            let message = if name.is_empty() {
                "a frame needs an \"event\": send_message, typing, sync or ping".to_owned()
            } else {
                format!("unknown event {name:?}: expected send_message, typing, sync or ping")
            };
            return Err(ProtocolError { message });
        }
        let value = match value {
            serde_json::Value::Object(mut object) if name == "ping" => {
                object.remove("data");
                serde_json::Value::Object(object)
            }
            other => other,
        };
        // `send_message` carries a request body: its data is read on its own, so an error names
        // the field.
        if let serde_json::Value::Object(object) = &value
            && name == "send_message"
            && object.keys().all(|key| key == "event" || key == "data")
        {
            let data = object.get("data").cloned().unwrap_or_else(|| serde_json::json!({}));
            return serde_path_to_error::deserialize(data).map(Self::SendMessage).map_err(|error| {
                // "send_message: content: is required": the input error shows as "field: message".
                let said = InputError::from_serde(&error.path().to_string(), &error.into_inner().to_string());
                ProtocolError { message: format!("{name}: {said}") }
            });
        }
        serde_json::from_value(value)
            .map_err(|error| ProtocolError { message: format!("{name}: {}", first_line(&error.to_string())) })
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Which messages a `message.deleted` event hides: the seqs named (delete, forget-recent), or
/// every message up to a seq (new-scene, reset: one range event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Hidden {
    Seqs { seqs: Vec<Seq> },
    Through { through_seq: u64 },
}

// `Hidden` as its schema says it: flattened into `message.deleted`, one of the two fields is
// there. (Derived, the untagged enum's `anyOf` beside the event's own fields reads as a union of
// the two in generated TypeScript, not as both.)
/// Which messages are hidden: `seqs` (delete, forget-recent) or every seq up to `through_seq`
/// (new scene, reset); exactly one of the two is present.
#[derive(JsonSchema)]
#[schemars(rename = "Hidden")]
#[allow(dead_code)]
struct HiddenSchema {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    seqs: Vec<Seq>,
    #[serde(skip_serializing_if = "is_zero")]
    through_seq: u64,
}

#[allow(dead_code)]
fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl JsonSchema for Hidden {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        HiddenSchema::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        HiddenSchema::json_schema(generator)
    }
}

/// What the server sends on a chat socket (`{"event": …, "data": {…}}`).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "event", content = "data")]
pub enum ServerEvent {
    /// `message` is absent when it does not fit in a frame: read it with `GET …/messages/{seq}`.
    #[serde(rename = "message.new")]
    MessageNew {
        session_id: SessionId,
        seq: Seq,
        rev: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<Box<Message>>,
    },
    /// An edit, a status change, a streaming reply's checkpoint (at the revision the reply is
    /// at: checkpoints are not changes of the feed), a new variant.
    #[serde(rename = "message.updated")]
    MessageUpdated {
        session_id: SessionId,
        seq: Seq,
        rev: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<Box<Message>>,
    },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        session_id: SessionId,
        rev: u64,
        #[serde(flatten)]
        hidden: Hidden,
    },
    /// A reply started (`true`) or ended (`false`).
    #[serde(rename = "message.typing")]
    MessageTyping {
        session_id: SessionId,
        is_typing: bool,
        /// The agent whose reply started or ended (absent for a device's typing and the plain assistant).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<super::CharacterId>,
    },
    /// The next piece of a streaming reply; the pieces join to the stored content.
    #[serde(rename = "message.delta")]
    MessageDelta {
        session_id: SessionId,
        seq: Seq,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<super::CharacterId>,
    },
    /// A streaming reply called one of the session's tools (sent with its result, which follows).
    #[serde(rename = "reply.tool_call")]
    ReplyToolCall { session_id: SessionId, seq: Seq, id: String, name: String, arguments: serde_json::Value },
    /// What a call gave the model: the tool's JSON `output`, or the `error` it read instead.
    #[serde(rename = "reply.tool_result")]
    ReplyToolResult {
        session_id: SessionId,
        seq: Seq,
        tool_call_id: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<super::ToolError>,
    },
    #[serde(rename = "message.complete")]
    MessageComplete {
        session_id: SessionId,
        seq: Seq,
        message_id: String,
        tokens_used: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<super::CharacterId>,
    },
    /// A memory of this session was added: read by the model from its turns (`origin:
    /// "extracted"`) or added through the API with this session's scope.
    #[serde(rename = "memory.new")]
    MemoryNew { session_id: SessionId, memory: Box<Memory> },
    /// Changed through the API, or superseded by a correction (`superseded_by` set).
    #[serde(rename = "memory.updated")]
    MemoryUpdated { session_id: SessionId, memory: Box<Memory> },
    /// Deleted by the user, or with the messages it was read from.
    #[serde(rename = "memory.deleted")]
    MemoryDeleted { session_id: SessionId, memory_id: MemoryId },
    /// Title, status, settings or archive changed.
    #[serde(rename = "session.updated")]
    SessionUpdated { session_id: SessionId, rev: u64, session: Box<Session> },
    /// The same codes as HTTP (`daily_limit_exceeded`, `rate_limit`, `invalid_event`, …).
    #[serde(rename = "error")]
    Error {
        code: String,
        message: String,
        /// The refusal's id, as an HTTP error's `request_id`: the server's logs carry it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// The offending field, for `invalid_input` and `payload_too_large`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// The used-up quota, for `daily_limit_exceeded` (as in the HTTP answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<MessagesLimit>,
    },
    /// The answer to `sync`: a page of the change feed (`GET …/changes`), cut to fit a frame.
    #[serde(rename = "changes")]
    Changes { session_id: SessionId, data: Vec<Change>, has_more: bool, next_after_rev: u64 },
    #[serde(rename = "pong")]
    Pong {},
}

impl ServerEvent {
    /// The frame as sent.
    pub fn frame(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"event":"error","data":{"code":"internal","message":"unencodable event"}}"#.to_owned()
        })
    }

    /// The event as it fits in one frame: a message too large for one goes without its body
    /// (the client reads it by seq).
    pub fn fitted(self) -> Self {
        if self.frame().len() <= MAX_FRAME_BYTES {
            return self;
        }
        match self {
            Self::MessageNew { session_id, seq, rev, .. } => Self::MessageNew { session_id, seq, rev, message: None },
            Self::MessageUpdated { session_id, seq, rev, .. } => {
                Self::MessageUpdated { session_id, seq, rev, message: None }
            }
            other => other,
        }
    }

    /// A page of the change feed as `changes` events, each within a frame. A message too large
    /// for any frame becomes `too_large`; a frame that ends inside one revision's changes names
    /// the revision before as where to resume, so a client that stops there misses nothing.
    pub fn changes(session_id: SessionId, after_rev: u64, page: Changes) -> Vec<Self> {
        // Room for the envelope, the session id and the page fields.
        const ROOM: usize = MAX_FRAME_BYTES - 256;
        let size = |change: &Change| serde_json::to_string(change).map_or(usize::MAX, |text| text.len() + 1);
        let mut frames: Vec<Vec<Change>> = vec![Vec::new()];
        let mut used = 0;
        for change in page.data {
            let change = match change {
                Change::Message { rev, message } if size(&Change::Message { rev, message: message.clone() }) > ROOM => {
                    Change::TooLarge { rev, seq: message.seq }
                }
                other => other,
            };
            let bytes = size(&change);
            if used + bytes > ROOM && frames.last().is_some_and(|frame| !frame.is_empty()) {
                frames.push(Vec::new());
                used = 0;
            }
            used += bytes;
            if let Some(frame) = frames.last_mut() {
                frame.push(change);
            }
        }
        let count = frames.len();
        let mut resume = after_rev;
        let mut events = Vec::with_capacity(count);
        for index in 0..count {
            let last = index + 1 == count;
            let next_after_rev = if last {
                page.next_after_rev
            } else {
                let end = frames[index].last().map_or(resume, Change::rev);
                let next_starts_same = frames[index + 1].first().is_some_and(|change| change.rev() == end);
                if next_starts_same { end.saturating_sub(1).max(resume) } else { end }
            };
            resume = next_after_rev;
            let data = std::mem::take(&mut frames[index]);
            events.push(Self::Changes { session_id, data, has_more: !last || page.has_more, next_after_rev });
        }
        events
    }

    /// An `error` event for a frame that was not understood.
    pub fn invalid(error: ProtocolError) -> Self {
        Self::Error {
            code: "invalid_event".to_owned(),
            message: error.message,
            request_id: None,
            field: None,
            limits: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_events_parse_and_bad_frames_say_why() {
        assert_eq!(ClientEvent::parse(r#"{"event":"ping"}"#), Ok(ClientEvent::Ping));
        assert_eq!(ClientEvent::parse(r#"{"event":"ping","data":{}}"#), Ok(ClientEvent::Ping));
        assert_eq!(
            ClientEvent::parse(r#"{"event":"send_message","data":{"content":"hi"}}"#),
            Ok(ClientEvent::SendMessage(SendMessage { content: Some("hi".to_owned()), ..SendMessage::default() }))
        );
        // Every field of `POST …/replies` is a field of `send_message`.
        let frame = r#"{"event":"send_message","data":{"content":"hi","model":"m","max_tokens":9,"temperature":0.5,"idempotency_key":"k"}}"#;
        let asked = ClientEvent::parse(frame).ok().and_then(ClientEvent::reply);
        let body: Option<CreateReply> =
            serde_json::from_str(r#"{"content":"hi","model":"m","max_tokens":9,"temperature":0.5}"#).ok();
        assert_eq!(asked, body.map(|body| (body, Some("k".to_owned()))));
        assert_eq!(
            ClientEvent::parse(r#"{"event":"sync","data":{"after_rev":41}}"#),
            Ok(ClientEvent::Sync { after_rev: 41 })
        );
        assert_eq!(
            ClientEvent::parse(r#"{"event":"typing","data":{"is_typing":true}}"#),
            Ok(ClientEvent::Typing { is_typing: true })
        );
        for (frame, says) in [
            ("not json", "not JSON"),
            (r#"{"data":{}}"#, "needs an \"event\""),
            (r#"{"event":"shout","data":{}}"#, "unknown event \"shout\""),
            (r#"{"event":"sync","data":{"after_rev":-1}}"#, "sync:"),
            (r#"{"event":"send_message","data":{"content":7}}"#, "content"),
            (r#"{"event":"send_message","data":{"content":"hi","mood":"x"}}"#, "mood"),
            (r#"{"event":"typing","data":{"is_typing":true,"extra":1}}"#, "extra"),
        ] {
            match ClientEvent::parse(frame) {
                Err(error) => assert!(error.message.contains(says), "{frame}: {}", error.message),
                Ok(event) => panic!("{frame} parsed as {event:?}"),
            }
        }
    }

    #[test]
    fn server_events_are_event_and_data() {
        let session_id: SessionId = "018f2d6e-4a7b-7c3d-9e1f-2a3b4c5d6e7f".parse().unwrap_or_else(|_| unreachable!());
        let deleted = ServerEvent::MessageDeleted { session_id, rev: 7, hidden: Hidden::Through { through_seq: 12 } };
        let value: serde_json::Value = serde_json::from_str(&deleted.frame()).unwrap_or_default();
        assert_eq!(value["event"], "message.deleted");
        assert_eq!((value["data"]["rev"].as_u64(), value["data"]["through_seq"].as_u64()), (Some(7), Some(12)));
        let pong: serde_json::Value = serde_json::from_str(&ServerEvent::Pong {}.frame()).unwrap_or_default();
        assert_eq!(pong, serde_json::json!({"event": "pong", "data": {}}));
        let error = ServerEvent::invalid(ProtocolError { message: "x".to_owned() });
        assert!(error.frame().contains(r#""code":"invalid_event""#));
    }

    fn message(session_id: SessionId, seq: u64, rev: u64, bytes: usize) -> Box<Message> {
        let content = crate::Content::parse("x".repeat(bytes)).unwrap_or_else(|_| unreachable!());
        let now = "2026-12-03T00:00:00.000000Z".parse().unwrap_or_else(|_| unreachable!());
        let mut message = Message::greeting(session_id, content, now, rev);
        message.seq = Seq::new(seq).unwrap_or(Seq::FIRST);
        Box::new(message)
    }

    #[test]
    fn every_frame_fits_and_large_messages_become_references() {
        let session_id = SessionId::generate();
        let big = ServerEvent::MessageNew {
            session_id,
            seq: Seq::FIRST,
            rev: 3,
            message: Some(message(session_id, 1, 3, 32 * 1024)),
        };
        let fitted = big.fitted();
        assert!(fitted.frame().len() <= MAX_FRAME_BYTES);
        assert!(matches!(fitted, ServerEvent::MessageNew { message: None, rev: 3, .. }));
        let small = ServerEvent::MessageNew {
            session_id,
            seq: Seq::FIRST,
            rev: 3,
            message: Some(message(session_id, 1, 3, 10)),
        };
        assert_eq!(small.clone().fitted(), small);

        // Three 12 KB messages at revisions 5, 6, 6 and one too large for any frame at 7.
        let data = vec![
            Change::Message { rev: 5, message: message(session_id, 1, 5, 12_000) },
            Change::Message { rev: 6, message: message(session_id, 2, 6, 12_000) },
            Change::Message { rev: 6, message: message(session_id, 3, 6, 12_000) },
            Change::Message { rev: 7, message: message(session_id, 4, 7, 32 * 1024) },
        ];
        let events = ServerEvent::changes(session_id, 4, Changes { data, has_more: false, next_after_rev: 7 });
        let mut resumes = Vec::new();
        let mut kinds = Vec::new();
        for event in &events {
            assert!(event.frame().len() <= MAX_FRAME_BYTES);
            let ServerEvent::Changes { data, has_more, next_after_rev, .. } = event else { unreachable!() };
            resumes.push((*next_after_rev, *has_more));
            kinds.extend(data.iter().map(|change| (change.rev(), matches!(change, Change::TooLarge { .. }))));
        }
        assert_eq!(kinds, [(5, false), (6, false), (6, false), (7, true)], "all of them, in order");
        // Frames: [5, 6] [6, 7]: the first ends inside revision 6, so it resumes after 5.
        assert_eq!(resumes, [(5, true), (7, false)]);
    }
}
