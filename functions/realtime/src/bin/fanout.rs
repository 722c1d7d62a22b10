//! Lambda entry point for the stream fan-out: the messages and sessions tables' DynamoDB Streams
//! records, posted to the sockets of their sessions.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};
use realtime::RealtimeConfig;
use realtime::gateway::ApiGateway;
use shared::config::Config;
use shared::realtime::Realtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let state = shared::lambda::init().await?;
    let tables = Config::from_env()?.tables;
    let config = RealtimeConfig::from_env()?;
    let sdk_config = aws_config::load_from_env().await;
    let gateway = Arc::new(ApiGateway::new(state.store.clone(), &sdk_config, &config.endpoint));
    let realtime = Realtime::new(state, gateway);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let (realtime, tables) = (realtime.clone(), tables.clone());
        async move {
            let delivered = realtime.fan_out(realtime::fanout::records(&tables, event.payload.records)).await;
            tracing::info!(delivered, "fanned out");
            Ok::<_, lambda_runtime::Error>(())
        }
    }))
    .await
}
