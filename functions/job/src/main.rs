//! Lambda entry point for the hourly job: EventBridge's scheduled event, not HTTP.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::{self, Config};
use shared::{AppState, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::from_env(&config).await?;
    if config::warm_up_from_env()? {
        state.store.warm_up().await;
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| job::handle(state.clone(), event))).await
}
