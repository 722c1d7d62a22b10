//! Lambda entry point for the memories function.

use shared::config::Config;
use shared::{AppState, http, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::from_env(&config).await?;
    state.store.warm_up().await;
    lambda_http::run(http::app(memories::routes(), state)).await
}
