//! Lambda entry point for the stream fan-out: the messages and sessions tables' DynamoDB Streams
//! records, posted to the sockets of their sessions.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (_, _, _, realtime) = realtime::init().await?;
    let tables = Config::from_env()?.tables;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let (realtime, tables) = (realtime.clone(), tables.clone());
        async move {
            let delivered = realtime.fan_out(shared::lambda::stream_records(&tables, event.payload.records)).await;
            tracing::info!(delivered, "fanned out");
            Ok::<_, lambda_runtime::Error>(())
        }
    }))
    .await
}
