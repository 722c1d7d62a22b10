//! Realtime delivery's service half, for any transport: a session's connections (the
//! [`Connections`] port: in memory on the dev server, the connections table and `@connections` on
//! AWS), a reply's progress posted to them as it streams ([`Delivery::stream`]), and the tables'
//! change records turned into the events they announce ([`Delivery::fan_out`]). The socket's edge
//! — connect, credentials, frames, refusals — is `shared::realtime`.

mod fanout;

pub use self::fanout::{Record, Source};

use std::sync::Arc;
use std::time::Duration;

use domain::{CharacterId, Part, Peer, Seq, ServerEvent, SessionId, all_segments, segments};
use futures::future::BoxFuture;

use crate::chat::{Progress, Turn};
use domain::MessageStatus;

/// A streaming reply's deltas go out at most this often (each carries what arrived meanwhile).
const DELTA_INTERVAL: Duration = Duration::from_millis(100);
/// A delta's text stays well inside a frame (JSON escaping can double it).
const DELTA_MAX_BYTES: usize = 12 * 1024;

/// The connection no longer exists (closed, or too slow to keep up): forget it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone;

/// The outbound port: each session's connections, and delivery to one of them.
pub trait Connections: Send + Sync {
    fn peers(&self, session: SessionId) -> BoxFuture<'_, Vec<Peer>>;
    fn post(&self, connection: &str, frame: String) -> BoxFuture<'_, Result<(), Gone>>;
    fn remove(&self, connection: &str) -> BoxFuture<'_, ()>;
}

/// Posts events to connections; a connection that is gone is forgotten. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    connections: Arc<dyn Connections>,
}

impl Delivery {
    pub fn new(connections: Arc<dyn Connections>) -> Self {
        Self { connections }
    }

    /// The session's connections.
    pub async fn peers(&self, session: SessionId) -> Vec<Peer> {
        self.connections.peers(session).await
    }

    /// Posts a reply's progress to the session's connections: typing, the deltas (the segments
    /// of its text, so they join to the stored content), its end, typing again; in a round
    /// (`mode: "all"`), then each further reply's in turn.
    pub async fn stream(self, session_id: SessionId, mut turn: Turn) {
        let round = turn.round.take();
        self.stream_one(session_id, turn).await;
        if let Some(mut round) = round {
            while let Some(next) = round.recv().await {
                self.stream_one(session_id, next).await;
            }
        }
    }

    async fn stream_one(&self, session_id: SessionId, turn: Turn) {
        let Turn { assistant_message, mut progress, .. } = turn;
        let seq = assistant_message.seq;
        let agent = assistant_message.agent.as_ref().map(|agent| agent.id.clone());
        let typing = |is_typing| ServerEvent::MessageTyping { session_id, is_typing, agent: agent.clone() };
        self.broadcast(session_id, &typing(true)).await;
        let mut sent = 0;
        let mut tools_sent = 0;
        loop {
            let current = progress.borrow_and_update().clone();
            match current {
                Progress::Streaming(draft) => {
                    let text = draft.content();
                    let (complete, _) = segments(&text);
                    let before = sent;
                    sent = self.deltas(session_id, seq, agent.as_ref(), &complete, sent).await;
                    tools_sent = self.tool_parts(session_id, seq, &draft.closed, tools_sent).await;
                    // What arrives meanwhile goes out as one frame: API Gateway bills per frame.
                    if sent > before {
                        tokio::time::sleep(DELTA_INTERVAL).await;
                    }
                }
                // Waiting for the client's tool results: the calls it must answer go out now.
                Progress::Paused(message) => {
                    tools_sent = self.tool_parts(session_id, seq, &message.parts, tools_sent).await;
                }
                Progress::Ended(message, _) => {
                    self.deltas(session_id, seq, agent.as_ref(), &all_segments(message.content.as_str()), sent).await;
                    self.tool_parts(session_id, seq, &message.parts, tools_sent).await;
                    let end = match (&message.status, &message.error) {
                        (MessageStatus::Failed, Some(error)) => ServerEvent::Error {
                            code: error.code.clone(),
                            message: error.message.clone(),
                            request_id: None,
                            field: None,
                            limits: None,
                        },
                        _ => ServerEvent::MessageComplete {
                            session_id,
                            seq,
                            message_id: message.id.to_string(),
                            tokens_used: message.usage.as_ref().map_or(0, |usage| usage.output_tokens),
                            agent: agent.clone(),
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
        self.broadcast(session_id, &typing(false)).await;
    }

    /// Posts the reply's tool calls and results after the first `sent` of them, in order, as
    /// `reply.tool_call` and `reply.tool_result`; returns how many are sent now.
    async fn tool_parts(&self, session_id: SessionId, seq: Seq, parts: &[Part], sent: usize) -> usize {
        let tools: Vec<&Part> = parts.iter().filter(|part| !matches!(part, Part::Text { .. })).collect();
        for part in tools.iter().skip(sent) {
            let event = match part {
                Part::ToolCall { id, name, arguments } => ServerEvent::ReplyToolCall {
                    session_id,
                    seq,
                    id: id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
                Part::ToolResult { tool_call_id, name, output, error } => ServerEvent::ReplyToolResult {
                    session_id,
                    seq,
                    tool_call_id: tool_call_id.clone(),
                    name: name.clone(),
                    output: output.clone(),
                    error: error.clone(),
                },
                Part::Text { .. } => continue,
            };
            self.broadcast(session_id, &event).await;
        }
        tools.len().max(sent)
    }

    /// Posts the segments after the first `sent` as one `message.delta` (split where a frame would
    /// pass its limit); returns how many are sent now.
    async fn deltas(
        &self,
        session_id: SessionId,
        seq: Seq,
        agent: Option<&CharacterId>,
        parts: &[&str],
        sent: usize,
    ) -> usize {
        let mut text = String::new();
        for part in parts.iter().skip(sent) {
            if text.len() + part.len() > DELTA_MAX_BYTES {
                let event = ServerEvent::MessageDelta {
                    session_id,
                    seq,
                    text: std::mem::take(&mut text),
                    agent: agent.cloned(),
                };
                self.broadcast(session_id, &event).await;
            }
            text.push_str(part);
        }
        if !text.is_empty() {
            self.broadcast(session_id, &ServerEvent::MessageDelta { session_id, seq, text, agent: agent.cloned() })
                .await;
        }
        sent.max(parts.len())
    }

    /// Posts an event to every connection of the session at once; returns how many took it.
    pub async fn broadcast(&self, session: SessionId, event: &ServerEvent) -> usize {
        let frame = event.frame();
        let peers = self.connections.peers(session).await;
        let sent = futures::future::join_all(peers.iter().map(|peer| self.post(&peer.id, frame.clone()))).await;
        sent.into_iter().filter(|delivered| *delivered).count()
    }

    /// Posts one event to one connection; returns whether it took it.
    pub async fn send(&self, connection: &str, event: &ServerEvent) -> bool {
        self.post(connection, event.frame()).await
    }

    async fn post(&self, connection: &str, frame: String) -> bool {
        if self.connections.post(connection, frame).await == Err(Gone) {
            self.connections.remove(connection).await;
            return false;
        }
        true
    }
}
