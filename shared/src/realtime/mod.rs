//! Realtime delivery over a chat socket, for any transport: the dev server's WebSocket route
//! locally, API Gateway's WebSocket API on AWS. The transport checks a connect with
//! [`Realtime::authorize`] before it upgrades, registers the connection, hands each text frame to
//! [`Realtime::on_frame`] and delivers what its [`Connections`] are asked to post.
//!
//! What a frame does: `ping` → `pong`; `typing` is relayed to the user's other connections of
//! the session (never stored); `send_message` does exactly what `POST …/replies` does and streams
//! the reply to every connection of the session (`message.typing` true, `message.delta`s,
//! `message.complete`, `message.typing` false); refusals arrive as `error` events with the HTTP
//! codes. A frame that is not understood is answered with an `error` event and the socket stays
//! open. `sync {after_rev}` answers with the change feed as `changes` events. The
//! `message.new`/`updated`/`deleted` and `session.updated` events come from the tables' streams,
//! through the service's [`Delivery::fan_out`]. Delivery itself — the [`Connections`] port, a
//! reply's progress posted as it streams — is `service::realtime`; this module is the socket's edge.

pub use service::realtime::{Connections, Delivery, Gone, Record, Source};

use std::sync::Arc;

use base64::Engine as _;

use crate::AppState;
use crate::auth::AuthFailure;
use crate::config::Runtime;
pub use crate::domain::Peer;
use crate::domain::{
    ClientEvent, CreateReply, DedupeKey, MAX_FRAME_BYTES, PageLimit, ProtocolError, ServerEvent, SessionId, UserId,
};
use crate::error::{ApiError, current_request_id, with_request_id};
use tracing::Instrument as _;

/// The subprotocol the server speaks; a client that offers subprotocols offers this one.
pub const PROTOCOL: &str = "chat.v1";
/// Pages of the change feed one `sync` sends (100 changes each).
const SYNC_PAGES: usize = 10;

/// How a connect names its session and credential: `?session_id=…&token=…` or `&initData=…`, or
/// a `Sec-WebSocket-Protocol` entry `bearer.<jwt>` or `tma.<init data, base64url>` next to
/// `chat.v1` (browsers cannot set headers on a socket; a subprotocol keeps the credential out of
/// URLs and so out of access logs).
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub session_id: Option<String>,
    pub token: Option<String>,
    pub init_data: Option<String>,
    /// The offered subprotocols, in order.
    pub protocols: Vec<String>,
}

impl Connect {
    /// The subprotocols a handshake's `Sec-WebSocket-Protocol` headers offer, in order.
    pub fn offered_protocols(headers: &axum::http::HeaderMap) -> Vec<String> {
        headers
            .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|protocol| protocol.trim().to_owned())
            .filter(|protocol| !protocol.is_empty())
            .collect()
    }

    /// The `Authorization` value the credential stands for.
    fn authorization(&self) -> Result<String, ApiError> {
        for protocol in &self.protocols {
            if let Some(token) = protocol.strip_prefix("bearer.") {
                return Ok(format!("Bearer {token}"));
            }
            if let Some(encoded) = protocol.strip_prefix("tma.") {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded.trim_end_matches('='))
                    .map_err(|_| ApiError::invalid("Sec-WebSocket-Protocol", "tma.<init data> must be base64url"))?;
                let init_data = String::from_utf8(bytes)
                    .map_err(|_| ApiError::invalid("Sec-WebSocket-Protocol", "tma.<init data> must be UTF-8"))?;
                return Ok(format!("tma {init_data}"));
            }
        }
        match (&self.token, &self.init_data) {
            (Some(token), _) => Ok(format!("Bearer {token}")),
            (None, Some(init_data)) => Ok(format!("tma {init_data}")),
            // No credential: the authenticator's own 401.
            (None, None) => Ok(String::new()),
        }
    }
}

/// The realtime service; cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    state: AppState,
    delivery: Delivery,
}

impl Realtime {
    pub fn new(state: AppState, connections: Arc<dyn Connections>) -> Self {
        Self { state, delivery: Delivery::new(connections) }
    }

    /// Delivers a batch of the tables' change records to the connections of their sessions.
    pub async fn fan_out(&self, records: Vec<Record>) -> usize {
        self.delivery.fan_out(records).await
    }

    /// Checks a connect before the upgrade: a valid credential (401 otherwise) for a live session
    /// of that user (404 otherwise, another user's included). Nothing is stored.
    pub async fn authorize(&self, connect: &Connect) -> Result<(UserId, SessionId), ApiError> {
        let session = connect.session_id.as_deref().ok_or_else(|| ApiError::invalid("session_id", "is required"))?;
        let session: SessionId = session.parse().map_err(|_| ApiError::invalid("session_id", "is not a session id"))?;
        let authorization = connect.authorization()?;
        if authorization.is_empty() {
            return Err(ApiError::Unauthorized(AuthFailure::MissingOnSocket));
        }
        let caller = self.state.auth.authenticate(Some(&authorization), self.state.clock.now()).await?;
        self.state.chat.session(&caller.user_id, session, None).await?;
        Ok((caller.user_id, session))
    }

    /// Answers one text frame from `peer`, under a request id of its own (unless the transport
    /// gave it one): the id its refusals carry and its logs are kept under.
    ///
    /// `frame_id` — the transport's id of the frame (API Gateway's `messageId`), the same on every
    /// delivery of it — keys a `send_message` that carries no `idempotency_key` of its own.
    pub async fn on_frame(&self, peer: &Peer, frame: &str, frame_id: Option<&str>) {
        let request_id = current_request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = tracing::info_span!("frame", request_id = %request_id);
        with_request_id(request_id, Box::pin(self.answer(peer, frame, frame_id))).instrument(span).await;
    }

    /// A binary frame: the socket speaks JSON text.
    pub async fn on_binary(&self, peer: &Peer) {
        let error = ProtocolError { message: "frames are JSON text, not binary".to_owned() };
        let request_id = current_request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        with_request_id(request_id, self.send(&peer.id, &ServerEvent::invalid(error))).await;
    }

    async fn answer(&self, peer: &Peer, frame: &str, frame_id: Option<&str>) {
        if frame.len() > MAX_FRAME_BYTES {
            let message = format!(
                "a frame may hold at most {MAX_FRAME_BYTES} bytes (API Gateway's limit); this one holds {}",
                frame.len()
            );
            let refusal = ServerEvent::Error {
                code: "payload_too_large".to_owned(),
                message,
                request_id: None,
                field: Some("frame".to_owned()),
                limits: None,
            };
            return self.send(&peer.id, &refusal).await;
        }
        match ClientEvent::parse(frame) {
            Err(error) => self.send(&peer.id, &ServerEvent::invalid(error)).await,
            Ok(ClientEvent::Ping) => self.send(&peer.id, &ServerEvent::Pong {}).await,
            Ok(ClientEvent::Typing { is_typing }) => {
                let event = ServerEvent::MessageTyping { session_id: peer.session, is_typing, agent: None };
                for other in self.delivery.peers(peer.session).await {
                    if other.id != peer.id && other.user == peer.user {
                        self.send(&other.id, &event).await;
                    }
                }
            }
            Ok(event @ ClientEvent::SendMessage(_)) => {
                let Some((reply, key)) = event.reply() else { return };
                let keyed = |key: &String| DedupeKey::parse("idempotency_key", key).is_ok();
                let key = key.or_else(|| frame_id.map(|id| format!("frame:{id}")).filter(keyed));
                if let Err(error) = self.send_message(peer, reply, key).await {
                    self.send(&peer.id, &error_event(&error)).await;
                }
            }
            Ok(ClientEvent::Sync { after_rev }) => {
                if let Err(error) = self.sync(peer, after_rev).await {
                    self.send(&peer.id, &error_event(&error)).await;
                }
            }
        }
    }

    /// Sends the changes after `after_rev` as `changes` events: up to `SYNC_PAGES` pages of the
    /// feed; a client that gets `has_more` at the end asks again from `next_after_rev`.
    async fn sync(&self, peer: &Peer, after_rev: u64) -> Result<(), ApiError> {
        let mut after = after_rev;
        for _ in 0..SYNC_PAGES {
            let page = self.state.chat.changes(&peer.user, peer.session, after, PageLimit::fixed(100)).await?;
            let more = page.has_more;
            let next = page.next_after_rev;
            for event in ServerEvent::changes(peer.session, after, page) {
                self.send(&peer.id, &event).await;
            }
            if !more || next <= after {
                break;
            }
            after = next;
        }
        Ok(())
    }

    /// Starts the reply (its refusals come back to the caller's connection) and streams it to
    /// every connection of the session in the background.
    async fn send_message(&self, peer: &Peer, reply: CreateReply, key: Option<String>) -> Result<(), ApiError> {
        let (content, options) = reply.parse()?;
        let key = key.map(|key| DedupeKey::parse("idempotency_key", &key)).transpose()?;
        let turn = self.state.chat.reply(&peer.user, peer.session, content, options, key).await?;
        // A server streams it in a task of its own; on Lambda, whose process may stop once the
        // handler returns, it streams before the frame's invocation ends.
        let delivery = self.delivery.clone();
        if self.state.runtime == Runtime::Server {
            tokio::spawn(delivery.stream(peer.session, turn));
        } else {
            delivery.stream(peer.session, turn).await;
        }
        Ok(())
    }

    /// Posts an `error` event with the code and message the HTTP answer would carry.
    pub async fn send_error(&self, connection: &str, error: &ApiError) {
        self.send(connection, &error_event(error)).await;
    }

    /// Posts one event to one connection; a refusal carries the frame's request id.
    async fn send(&self, connection: &str, event: &ServerEvent) {
        match event {
            ServerEvent::Error { code, message, request_id: None, field, limits } => {
                let event = ServerEvent::Error {
                    code: code.clone(),
                    message: message.clone(),
                    request_id: current_request_id(),
                    field: field.clone(),
                    limits: *limits,
                };
                self.delivery.send(connection, &event).await
            }
            _ => self.delivery.send(connection, event).await,
        };
    }
}

/// An `error` event with the code and message the HTTP answer would carry.
fn error_event(error: &ApiError) -> ServerEvent {
    error.log();
    let code = serde_json::to_value(error.code()).ok().and_then(|code| code.as_str().map(str::to_owned));
    ServerEvent::Error {
        code: code.unwrap_or_else(|| "internal".to_owned()),
        message: error.to_string(),
        request_id: current_request_id(),
        field: match error {
            ApiError::InvalidInput { field, .. } => Some(field.clone()),
            _ => None,
        },
        limits: match error {
            ApiError::DailyLimitExceeded { quota, .. } => Some(*quota),
            _ => None,
        },
    }
}
