//! Lambda entry point for the WebSocket API ($connect, $disconnect, $default).

use std::sync::Arc;

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use realtime::socket::{ReplyWorker, Socket};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (state, config, sdk_config, realtime) = realtime::init().await?;
    let replies = config
        .reply_function
        .map(|function| ReplyWorker { client: aws_sdk_lambda::Client::new(&sdk_config), function });
    let socket = Arc::new(Socket { realtime, store: state.store.clone(), replies });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let socket = socket.clone();
        async move { Ok::<_, lambda_runtime::Error>(socket.handle(event.payload).await) }
    }))
    .await
}
