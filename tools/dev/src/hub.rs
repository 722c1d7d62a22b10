//! The dev server's socket connections: in memory, in place of API Gateway's connections table
//! and `@connections` API.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;
use shared::domain::{Peer, SessionId, UserId};
use shared::realtime::{Connections, Gone};
use tokio::sync::mpsc;

/// Frames a slow connection may have waiting before it is dropped.
const OUTBOX: usize = 256;

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
