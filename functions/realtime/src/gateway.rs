//! [`Connections`] on AWS: the connections table finds a session's sockets, the `@connections`
//! API (`PostToConnection`) delivers to one. A connection API Gateway no longer has answers 410
//! (`GoneException`) and is forgotten; `LimitExceededException` and throttling are retried with
//! a short backoff.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::future::BoxFuture;
use shared::domain::{Peer, SessionId};
use shared::realtime::{Connections, Gone};
use shared::store::Store;

/// Attempts per frame while API Gateway says it is over its rate.
const POST_ATTEMPTS: u32 = 4;

pub struct ApiGateway {
    store: Store,
    client: Client,
}

impl ApiGateway {
    /// `endpoint`: the WebSocket API's `https://…/{stage}` (the `@connections` API lives there).
    pub fn new(store: Store, sdk_config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config).endpoint_url(endpoint).build();
        Self { store, client: Client::from_conf(config) }
    }

    async fn post_frame(&self, connection: &str, frame: String) -> Result<(), Gone> {
        let data = Blob::new(frame.into_bytes());
        for attempt in 0..POST_ATTEMPTS {
            let result = self.client.post_to_connection().connection_id(connection).data(data.clone()).send().await;
            let Err(error) = result else { return Ok(()) };
            match error.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => return Err(Gone),
                // 403: an id API Gateway does not know (or one from another API).
                Some(PostToConnectionError::ForbiddenException(_)) => return Err(Gone),
                Some(PostToConnectionError::LimitExceededException(_)) if attempt + 1 < POST_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                _ => {
                    let error = aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&error);
                    tracing::warn!(%error, "a frame was not delivered");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Connections for ApiGateway {
    fn peers(&self, session: SessionId) -> BoxFuture<'_, Vec<Peer>> {
        Box::pin(async move {
            self.store.session_connections(session).await.unwrap_or_else(|error| {
                tracing::error!(error = %error, "the session's connections could not be read");
                Vec::new()
            })
        })
    }

    fn post(&self, connection: &str, frame: String) -> BoxFuture<'_, Result<(), Gone>> {
        let connection = connection.to_owned();
        Box::pin(async move { self.post_frame(&connection, frame).await })
    }

    fn remove(&self, connection: &str) -> BoxFuture<'_, ()> {
        let connection = connection.to_owned();
        Box::pin(async move {
            if let Err(error) = self.store.forget_connection(&connection).await {
                tracing::warn!(error = %error, "a gone connection could not be forgotten");
            }
        })
    }
}
