//! The realtime connections on AWS: one item per API Gateway connection id, with its user and
//! session, found by session through `by_session`. Written at `$connect`, removed at
//! `$disconnect` or when `@connections` answers 410; TTL at the 2-hour connection limit removes
//! what both missed.

use serde::{Deserialize, Serialize};

use super::item::{Item, s};
use super::schema::connections::{BY_SESSION, CONNECTION_ID, SESSION_ID};
use super::{Store, StoreError};
use domain::{Peer, SessionId, UserId};

/// API Gateway's longest connection.
const CONNECTION_SECS: i64 = 2 * 60 * 60;

#[derive(Serialize, Deserialize)]
struct ConnectionItem {
    connection_id: String,
    session_id: String,
    user_id: String,
    connected_at: String,
    expires_at: i64,
}

/// The socket a connection item records.
fn peer_of(item: Item) -> Result<Peer, StoreError> {
    let stored: ConnectionItem =
        serde_dynamo::from_item(item).map_err(|_| StoreError::corrupt("connection", "attributes"))?;
    Ok(Peer {
        id: stored.connection_id,
        user: UserId::parse(&stored.user_id).ok_or_else(|| StoreError::corrupt("connection", "user_id"))?,
        session: stored.session_id.parse().map_err(|_| StoreError::corrupt("connection", SESSION_ID))?,
    })
}

fn connection_key(id: &str) -> Item {
    Item::from([(CONNECTION_ID.to_owned(), s(id))])
}

impl Store {
    pub async fn save_connection(&self, peer: &Peer) -> Result<(), StoreError> {
        let now = self.now();
        let item = ConnectionItem {
            connection_id: peer.id.clone(),
            session_id: peer.session.to_string(),
            user_id: peer.user.as_str().to_owned(),
            connected_at: now.to_string(),
            expires_at: now.unix_seconds() + CONNECTION_SECS,
        };
        let item = serde_dynamo::to_item(item).map_err(StoreError::internal)?;
        self.client
            .put_item()
            .table_name(&self.tables.connections)
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// The connection, if it is still registered.
    pub async fn connection(&self, id: &str) -> Result<Option<Peer>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.connections)
            .set_key(Some(connection_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item.map(peer_of).transpose()
    }

    /// The session's connections (the index trails a connect by a moment: a socket that just
    /// connected catches up with `sync`).
    pub async fn session_connections(&self, session: SessionId) -> Result<Vec<Peer>, StoreError> {
        let mut peers = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.connections)
                .index_name(BY_SESSION)
                .key_condition_expression("#sid = :sid")
                .expression_attribute_names("#sid", SESSION_ID)
                .expression_attribute_values(":sid", s(session.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items.unwrap_or_default() {
                peers.push(peer_of(item)?);
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(peers),
            }
        }
    }

    pub async fn forget_connection(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.connections)
            .set_key(Some(connection_key(id)))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }
}
