//! The realtime protocol: the JSON frames a chat socket carries, the same locally and on AWS.
//! Every frame is `{"event": "<name>", "data": {…}}`. Server events about a session's log carry
//! the session revision (`rev`) of the change, so a client that reconnects asks for exactly what
//! it missed (`sync {after_rev}`). Pure: parsing and the frames' shapes, no transport.

use serde::{Deserialize, Serialize};

use super::{Message, Seq, Session, SessionId};

/// The largest frame API Gateway's WebSocket API delivers (32 KB); a larger one is replaced by a
/// reference the client fetches.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// What the client sends.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientEvent {
    /// Exactly what `POST …/replies` does; the reply streams to every connection of the session.
    SendMessage {
        content: String,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
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

/// Why a client frame was not understood; answered with an `error` event, the socket stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub message: String,
}

impl ClientEvent {
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

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", content = "data")]
pub enum ServerEvent {
    #[serde(rename = "message.new")]
    MessageNew { session_id: SessionId, seq: Seq, rev: u64, message: Box<Message> },
    /// An edit, a status change, a streaming reply's checkpoint, a new variant.
    #[serde(rename = "message.updated")]
    MessageUpdated { session_id: SessionId, seq: Seq, rev: u64, message: Box<Message> },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        session_id: SessionId,
        rev: u64,
        #[serde(flatten)]
        hidden: Hidden,
    },
    /// A reply started (`true`) or ended (`false`).
    #[serde(rename = "message.typing")]
    MessageTyping { session_id: SessionId, is_typing: bool },
    /// The next piece of a streaming reply; the pieces join to the stored content.
    #[serde(rename = "message.delta")]
    MessageDelta { session_id: SessionId, seq: Seq, text: String },
    #[serde(rename = "message.complete")]
    MessageComplete { session_id: SessionId, seq: Seq, message_id: String, tokens_used: u64 },
    /// Title, status, settings or archive changed.
    #[serde(rename = "session.updated")]
    SessionUpdated { session_id: SessionId, rev: u64, session: Box<Session> },
    /// The same codes as HTTP (`daily_limit_exceeded`, `rate_limit`, `invalid_event`, …).
    #[serde(rename = "error")]
    Error { code: String, message: String },
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

    /// An `error` event for a frame that was not understood.
    pub fn invalid(error: ProtocolError) -> Self {
        Self::Error { code: "invalid_event".to_owned(), message: error.message }
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
            Ok(ClientEvent::SendMessage { content: "hi".to_owned(), idempotency_key: None })
        );
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
            (r#"{"event":"send_message","data":{}}"#, "content"),
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
}
