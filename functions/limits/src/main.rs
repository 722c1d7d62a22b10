//! Lambda entry point for the limits function: HTTP requests and the hourly scheduled job.

use lambda_http::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::Config;
use shared::{AppState, http, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::from_env(&config).await?;
    state.store.warm_up().await;
    let app = http::app(limits::routes(), state.clone());
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        limits::handle_event(app.clone(), state.clone(), event)
    }))
    .await
}
