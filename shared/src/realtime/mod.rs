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
//! through [`fanout`].

mod fanout;

pub use self::fanout::{Record, Source};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::AppState;
use crate::chat::{Progress, ReplyOptions, Turn};
use crate::config::Runtime;
pub use crate::domain::Peer;
use crate::domain::{
    ClientEvent, Content, DedupeKey, MessageStatus, PageLimit, ServerEvent, SessionId, UserId, all_segments, segments,
};
use crate::error::ApiError;

/// The subprotocol the server speaks; a client that offers subprotocols offers this one.
pub const PROTOCOL: &str = "chat.v1";
/// Frames a slow connection may have waiting before it is dropped (locally).
const OUTBOX: usize = 256;
/// A streaming reply's deltas go out at most this often (each carries what arrived meanwhile).
const DELTA_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A delta's text stays well inside a frame (JSON escaping can double it).
const DELTA_MAX_BYTES: usize = 12 * 1024;
/// Pages of the change feed one `sync` sends (100 changes each).
const SYNC_PAGES: usize = 10;

/// The connection no longer exists (closed, or too slow to keep up): forget it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone;

/// The outbound port: each session's connections, and delivery to one of them. Locally an
/// in-process hub ([`LocalHub`]); on AWS the connections table and the `@connections` API.
pub trait Connections: Send + Sync {
    fn peers(&self, session: SessionId) -> BoxFuture<'_, Vec<Peer>>;
    fn post(&self, connection: &str, frame: String) -> BoxFuture<'_, Result<(), Gone>>;
    fn remove(&self, connection: &str) -> BoxFuture<'_, ()>;
}

/// The dev server's connections: in memory, each with a bounded outbox its socket task drains.
#[derive(Default)]
pub struct LocalHub {
    connections: Mutex<HashMap<String, (Peer, mpsc::Sender<String>)>>,
}

impl LocalHub {
    /// Registers a checked connection; its socket task sends what arrives in the receiver.
    pub fn register(&self, user: UserId, session: SessionId) -> (Peer, mpsc::Receiver<String>) {
        let (sender, receiver) = mpsc::channel(OUTBOX);
        let peer = Peer { id: uuid::Uuid::new_v4().simple().to_string(), user, session };
        self.lock().insert(peer.id.clone(), (peer.clone(), sender));
        (peer, receiver)
    }

    /// Forgets a connection at once (one whose upgrade failed).
    pub fn unregister(&self, connection: &str) {
        self.lock().remove(connection);
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Peer, mpsc::Sender<String>)>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Connections for LocalHub {
    fn peers(&self, session: SessionId) -> BoxFuture<'_, Vec<Peer>> {
        let peers =
            self.lock().values().filter(|(peer, _)| peer.session == session).map(|(peer, _)| peer.clone()).collect();
        Box::pin(async move { peers })
    }

    fn post(&self, connection: &str, frame: String) -> BoxFuture<'_, Result<(), Gone>> {
        let sent = match self.lock().get(connection) {
            Some((_, sender)) => sender.try_send(frame).map_err(|_| Gone),
            None => Err(Gone),
        };
        Box::pin(async move { sent })
    }

    fn remove(&self, connection: &str) -> BoxFuture<'_, ()> {
        self.lock().remove(connection);
        Box::pin(async {})
    }
}

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
    connections: Arc<dyn Connections>,
}

impl Realtime {
    pub fn new(state: AppState, connections: Arc<dyn Connections>) -> Self {
        Self { state, connections }
    }

    /// Checks a connect before the upgrade: a valid credential (401 otherwise) for a live session
    /// of that user (404 otherwise, another user's included). Nothing is stored.
    pub async fn authorize(&self, connect: &Connect) -> Result<(UserId, SessionId), ApiError> {
        let session = connect.session_id.as_deref().ok_or_else(|| ApiError::invalid("session_id", "is required"))?;
        let session: SessionId = session.parse().map_err(|_| ApiError::invalid("session_id", "is not a session id"))?;
        let authorization = connect.authorization()?;
        let header = (!authorization.is_empty()).then_some(authorization.as_str());
        let caller = self.state.auth.authenticate(header, self.state.clock.now()).await?;
        self.state.chat.session(&caller.user_id, session, None).await?;
        Ok((caller.user_id, session))
    }

    /// Answers one text frame from `peer`.
    pub async fn on_frame(&self, peer: &Peer, frame: &str) {
        match ClientEvent::parse(frame) {
            Err(error) => self.send(&peer.id, &ServerEvent::invalid(error)).await,
            Ok(ClientEvent::Ping) => self.send(&peer.id, &ServerEvent::Pong {}).await,
            Ok(ClientEvent::Typing { is_typing }) => {
                let event = ServerEvent::MessageTyping { session_id: peer.session, is_typing };
                for other in self.connections.peers(peer.session).await {
                    if other.id != peer.id && other.user == peer.user {
                        self.send(&other.id, &event).await;
                    }
                }
            }
            Ok(ClientEvent::SendMessage { content, idempotency_key }) => {
                if let Err(error) = self.send_message(peer, content, idempotency_key).await {
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
    async fn send_message(&self, peer: &Peer, content: String, key: Option<String>) -> Result<(), ApiError> {
        let content = Content::parse(content).map_err(ApiError::from)?;
        let key = key.map(|key| DedupeKey::parse("idempotency_key", &key)).transpose()?;
        let turn = self.state.chat.reply(&peer.user, peer.session, Some(content), ReplyOptions::default(), key).await?;
        // A server streams it in a task of its own; on Lambda, whose process may stop once the
        // handler returns, it streams before the frame's invocation ends.
        if self.state.runtime == Runtime::Server {
            tokio::spawn(self.clone().stream(peer.session, turn));
        } else {
            self.clone().stream(peer.session, turn).await;
        }
        Ok(())
    }

    /// Posts a reply's progress to the session's connections: typing, the deltas (the segments
    /// of its text, so they join to the stored content), its end, typing again.
    async fn stream(self, session_id: SessionId, turn: Turn) {
        let Turn { assistant_message, mut progress, .. } = turn;
        let seq = assistant_message.seq;
        self.broadcast(session_id, &ServerEvent::MessageTyping { session_id, is_typing: true }).await;
        let mut sent = 0;
        loop {
            let current = progress.borrow_and_update().clone();
            match current {
                Progress::Streaming(text) => {
                    let (complete, _) = segments(&text);
                    let before = sent;
                    sent = self.deltas(session_id, seq, &complete, sent).await;
                    // What arrives meanwhile goes out as one frame: API Gateway bills per frame.
                    if sent > before {
                        tokio::time::sleep(DELTA_INTERVAL).await;
                    }
                }
                Progress::Ended(message, _) => {
                    self.deltas(session_id, seq, &all_segments(message.content.as_str()), sent).await;
                    let end = match (&message.status, &message.error) {
                        (MessageStatus::Failed, Some(error)) => {
                            ServerEvent::Error { code: error.code.clone(), message: error.message.clone() }
                        }
                        _ => ServerEvent::MessageComplete {
                            session_id,
                            seq,
                            message_id: message.id.to_string(),
                            tokens_used: message.usage.as_ref().map_or(0, |usage| usage.output_tokens),
                        },
                    };
                    self.broadcast(session_id, &end).await;
                    break;
                }
            }
            // The generator is gone: nothing more comes.
            if progress.changed().await.is_err() {
                break;
            }
        }
        self.broadcast(session_id, &ServerEvent::MessageTyping { session_id, is_typing: false }).await;
    }

    /// Posts the segments after the first `sent` as one `message.delta` (split where a frame would
    /// pass its limit); returns how many are sent now.
    async fn deltas(&self, session_id: SessionId, seq: crate::domain::Seq, parts: &[&str], sent: usize) -> usize {
        let mut text = String::new();
        for part in parts.iter().skip(sent) {
            if text.len() + part.len() > DELTA_MAX_BYTES {
                let event = ServerEvent::MessageDelta { session_id, seq, text: std::mem::take(&mut text) };
                self.broadcast(session_id, &event).await;
            }
            text.push_str(part);
        }
        if !text.is_empty() {
            self.broadcast(session_id, &ServerEvent::MessageDelta { session_id, seq, text }).await;
        }
        sent.max(parts.len())
    }

    /// Posts an event to every connection of the session at once; returns how many took it.
    async fn broadcast(&self, session: SessionId, event: &ServerEvent) -> usize {
        let frame = event.frame();
        let peers = self.connections.peers(session).await;
        let sent = futures::future::join_all(peers.iter().map(|peer| self.post(&peer.id, frame.clone()))).await;
        sent.into_iter().filter(|delivered| *delivered).count()
    }

    /// Posts an `error` event with the code and message the HTTP answer would carry.
    pub async fn send_error(&self, connection: &str, error: &ApiError) {
        self.send(connection, &error_event(error)).await;
    }

    /// Posts one event; a connection that is gone is forgotten.
    async fn send(&self, connection: &str, event: &ServerEvent) {
        self.post(connection, event.frame()).await;
    }

    async fn post(&self, connection: &str, frame: String) -> bool {
        if self.connections.post(connection, frame).await == Err(Gone) {
            self.connections.remove(connection).await;
            return false;
        }
        true
    }
}

/// An `error` event with the code and message the HTTP answer would carry.
fn error_event(error: &ApiError) -> ServerEvent {
    error.log();
    let code = serde_json::to_value(error.code()).ok().and_then(|code| code.as_str().map(str::to_owned));
    ServerEvent::Error { code: code.unwrap_or_else(|| "internal".to_owned()), message: error.to_string() }
}
