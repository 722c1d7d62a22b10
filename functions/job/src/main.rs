//! Lambda entry point for the hourly job: EventBridge's scheduled event, not HTTP.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let state = shared::lambda::init().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| job::handle(state.clone(), event))).await
}
