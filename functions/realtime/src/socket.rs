//! API Gateway's WebSocket routes. `$connect` checks the connect by the same rules as the dev
//! server (credential, session; 401/404/400 before the upgrade, nothing stored) and registers the
//! connection; `$disconnect` forgets it; `$default` answers a frame. A `send_message` frame is
//! handed to the reply worker as an asynchronous invocation: the integration answers at once, and
//! the reply streams for as long as the worker's timeout allows, not the integration's 29 s.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse as _;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use shared::ApiError;
use shared::domain::{ClientEvent, Peer};
use shared::error::with_request_id;
use shared::realtime::{Connect, PROTOCOL, Realtime};
use shared::store::{Store, StoreError};

/// A frame handed to the reply worker, with the connection it came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplyJob {
    pub connection_id: String,
    pub frame: String,
    /// API Gateway's id of the frame: the turn's idempotency key when the frame gives none, so a
    /// redelivered job (Lambda retries an asynchronous invocation whose run failed) finds the
    /// turn it started instead of starting another.
    #[serde(default)]
    pub frame_id: Option<String>,
}

/// Where `send_message` frames go: the reply worker, invoked asynchronously.
pub struct ReplyWorker {
    pub client: aws_sdk_lambda::Client,
    pub function: String,
}

pub struct Socket {
    pub realtime: Realtime,
    pub store: Store,
    /// `None`: frames are answered here, replies included (the worker itself).
    pub replies: Option<ReplyWorker>,
}

impl Socket {
    /// One event of the WebSocket API.
    /// Under API Gateway's request id: a refusal (a connect's body, a frame's `error` event)
    /// carries it.
    pub async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let request_id = event.request_context.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        with_request_id(request_id, Box::pin(self.dispatch(event))).await
    }

    async fn dispatch(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let context = &event.request_context;
        let connection = context.connection_id.clone().unwrap_or_default();
        match context.route_key.as_deref().unwrap_or("$default") {
            "$connect" => self.connect(connection, &event).await,
            "$disconnect" => {
                if let Err(error) = self.store.forget_connection(&connection).await {
                    tracing::warn!(error = %error, "a closed connection could not be forgotten");
                }
                ok(HeaderMap::new())
            }
            _ => {
                let frame_id = event.request_context.message_id.clone();
                self.frame(ReplyJob { connection_id: connection, frame: event.body.unwrap_or_default(), frame_id })
                    .await;
                ok(HeaderMap::new())
            }
        }
    }

    async fn connect(&self, connection: String, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let query = |name: &str| event.query_string_parameters.first(name).map(str::to_owned);
        let protocols = Connect::offered_protocols(&event.headers);
        let connect =
            Connect { session_id: query("session_id"), token: query("token"), init_data: query("initData"), protocols };
        let (user, session) = match self.realtime.authorize(&connect).await {
            Ok(checked) => checked,
            Err(error) => return refusal(error).await,
        };
        let peer = Peer { id: connection, user, session };
        if let Err(error) = self.store.save_connection(&peer).await {
            return refusal(error.into()).await;
        }
        let mut headers = HeaderMap::new();
        // A client that offered subprotocols must get one back, or API Gateway drops the socket.
        if connect.protocols.iter().any(|protocol| protocol == PROTOCOL) {
            headers.insert("sec-websocket-protocol", HeaderValue::from_static(PROTOCOL));
        }
        ok(headers)
    }

    /// Answers a frame from a registered connection; `send_message` goes to the worker.
    pub async fn frame(&self, job: ReplyJob) {
        let peer = match self.store.connection(&job.connection_id).await {
            Ok(Some(peer)) => peer,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(error = %error, "the connection could not be read");
                return;
            }
        };
        if let (Some(worker), Ok(ClientEvent::SendMessage(_))) = (&self.replies, ClientEvent::parse(&job.frame)) {
            match serde_json::to_vec(&job) {
                Ok(payload) => {
                    let invoked = worker
                        .client
                        .invoke()
                        .function_name(&worker.function)
                        .invocation_type(InvocationType::Event)
                        .payload(Blob::new(payload))
                        .send()
                        .await;
                    if let Err(error) = invoked {
                        let error = aws_sdk_lambda::error::DisplayErrorContext(&error);
                        tracing::error!(%error, "the reply worker could not be invoked");
                        let unavailable =
                            ApiError::from(StoreError::Unavailable("the reply could not be started".into()));
                        self.realtime.send_error(&peer.id, &unavailable).await;
                    }
                }
                Err(error) => tracing::error!(%error, "the reply job could not be encoded"),
            }
            return;
        }
        self.realtime.on_frame(&peer, &job.frame, job.frame_id.as_deref()).await;
    }
}

fn ok(headers: HeaderMap) -> ApiGatewayProxyResponse {
    response(200, headers, None)
}

fn response(status: i64, headers: HeaderMap, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.headers = headers;
    response.body = body.map(Body::Text);
    response
}

/// A refused connect, answered as the HTTP API answers: the status and the JSON error body.
async fn refusal(error: ApiError) -> ApiGatewayProxyResponse {
    error.log();
    let answer = error.into_response();
    let status = i64::from(answer.status().as_u16());
    let headers = answer.headers().clone();
    let body = match answer.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    response(status, headers, Some(body))
}
