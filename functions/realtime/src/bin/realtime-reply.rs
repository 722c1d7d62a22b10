//! Lambda entry point for the reply worker: a `send_message` frame the WebSocket handler handed
//! over asynchronously, answered here with the reply streamed to the session's sockets.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use realtime::RealtimeConfig;
use realtime::gateway::ApiGateway;
use realtime::socket::{ReplyJob, Socket};
use shared::realtime::Realtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let state = shared::lambda::init().await?;
    let config = RealtimeConfig::from_env()?;
    let sdk_config = aws_config::load_from_env().await;
    let gateway = Arc::new(ApiGateway::new(state.store.clone(), &sdk_config, &config.endpoint));
    let realtime = Realtime::new(state.clone(), gateway).streaming_in_place();
    let socket = Arc::new(Socket { realtime, store: state.store.clone(), replies: None });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ReplyJob>| {
        let socket = socket.clone();
        async move {
            socket.frame(event.payload).await;
            Ok::<_, lambda_runtime::Error>(())
        }
    }))
    .await
}
