//! Lambda entry point for the reply worker: a `send_message` frame the WebSocket handler handed
//! over asynchronously, answered here with the reply streamed to the session's sockets.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use realtime::socket::{ReplyJob, Socket};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (state, _, _, realtime) = realtime::init().await?;
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
