//! The event port: what changed in a session's log, for whoever must hear of it. Realtime
//! delivery (WebSocket fan-out) will be an implementation; today's is the log.

use crate::domain::{Seq, SessionId};

/// A change to a session or its log, by ids only: never content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatEvent {
    MessagesAppended {
        session_id: SessionId,
        seqs: Vec<Seq>,
    },
    MessageEdited {
        session_id: SessionId,
        seq: Seq,
    },
    /// Deleted, forgotten, or hidden by new-scene or reset.
    MessagesHidden {
        session_id: SessionId,
        count: u64,
    },
    /// Title, status, metadata, settings or archive changed.
    SessionUpdated {
        session_id: SessionId,
    },
    SessionDeleted {
        session_id: SessionId,
    },
}

/// Where the service reports changes. Publishing must not fail the request that made the change:
/// an implementation that can fail handles (and logs) its own failures.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: ChatEvent);
}

/// Writes each event to the structured log (ids and counts, never content).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEvents;

impl EventSink for LogEvents {
    fn publish(&self, event: ChatEvent) {
        match event {
            ChatEvent::MessagesAppended { session_id, seqs } => {
                let (first, last) = (seqs.first().map(|seq| seq.get()), seqs.last().map(|seq| seq.get()));
                tracing::debug!(event = "messages.appended", session = %session_id, first, last);
            }
            ChatEvent::MessageEdited { session_id, seq } => {
                tracing::debug!(event = "message.edited", session = %session_id, seq = seq.get());
            }
            ChatEvent::MessagesHidden { session_id, count } => {
                tracing::debug!(event = "messages.hidden", session = %session_id, count);
            }
            ChatEvent::SessionUpdated { session_id } => {
                tracing::debug!(event = "session.updated", session = %session_id);
            }
            ChatEvent::SessionDeleted { session_id } => {
                tracing::debug!(event = "session.deleted", session = %session_id);
            }
        }
    }
}
