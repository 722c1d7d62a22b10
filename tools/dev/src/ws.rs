//! The dev server's chat socket, `ws://127.0.0.1:3000/v1/ws?session_id=…`: the realtime
//! protocol (`shared::realtime`) over axum's WebSocket, with the in-process hub standing in for
//! API Gateway's `@connections`. A connect is checked before the upgrade: a bad credential is a
//! plain `401`, another user's or a deleted session `404`, with the API's JSON error body.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use shared::AppState;
use shared::domain::{MAX_MESSAGE_BYTES, Peer};
use shared::error::with_request_id;
use shared::realtime::{Connect, Connections, PROTOCOL, Realtime};

use crate::hub::LocalHub;

/// Bytes read from a socket at a time (tungstenite's default, 128 KiB, is kept per connection).
const READ_BUFFER: usize = 4 * 1024;

#[derive(Clone)]
struct Socket {
    realtime: Realtime,
    hub: Arc<LocalHub>,
}

/// The socket route, on its own state.
pub fn router(state: AppState, hub: Arc<LocalHub>) -> Router {
    let realtime = Realtime::new(state, hub.clone());
    Router::new().route("/v1/ws", get(connect)).with_state(Socket { realtime, hub })
}

async fn connect(
    State(socket): State<Socket>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocols = Connect::offered_protocols(&headers);
    let connect = Connect {
        session_id: query.get("session_id").cloned(),
        token: query.get("token").cloned(),
        init_data: query.get("initData").cloned(),
        protocols,
    };
    match socket.realtime.authorize(&connect).await {
        // Refused as the HTTP API refuses: the JSON error body, with a request id.
        Err(error) => {
            with_request_id(uuid::Uuid::new_v4().to_string(), async {
                error.log();
                error.into_response()
            })
            .await
        }
        Ok((user, session)) => {
            let offered = connect.protocols.iter().any(|protocol| protocol == PROTOCOL);
            // Small buffers: a chat frame is small, and an idle connection should cost little.
            let upgrade = upgrade
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0)
                .max_message_size(MAX_MESSAGE_BYTES)
                .max_frame_size(MAX_MESSAGE_BYTES);
            let upgrade = if offered { upgrade.protocols([PROTOCOL]) } else { upgrade };
            // Registered before the handshake's answer leaves: the client may act on that answer
            // at once (another device's frames then wait in the outbox, never pass it by).
            let (peer, outbox) = socket.hub.register(user, session);
            let (hub, id) = (socket.hub.clone(), peer.id.clone());
            upgrade
                .on_failed_upgrade(move |_| hub.unregister(&id))
                .on_upgrade(move |ws| serve(socket, ws, peer, outbox))
        }
    }
}

/// One open socket: frames in go to the service, the hub's frames for it go out.
async fn serve(socket: Socket, ws: WebSocket, peer: Peer, mut outbox: tokio::sync::mpsc::Receiver<String>) {
    let (mut sink, mut incoming) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            if sink.send(Message::Text(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => socket.realtime.on_frame(&peer, text.as_str(), None).await,
            Message::Binary(_) => socket.realtime.on_binary(&peer).await,
            Message::Close(_) => break,
            // axum answers pings itself.
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    socket.hub.remove(&peer.id).await;
    let _ = writer.await;
}
