//! The composition root every function's `main` shares: telemetry, config, SDK client (warmed
//! during init), then the Lambda runtime serving the function's routes (or, for the job, its
//! event handler).

use axum::Router;

use crate::config::{self, Config};
use crate::state::AppState;
use crate::{http, telemetry};

/// Telemetry, config and the state, with the DynamoDB connection warmed unless switched off.
pub async fn init() -> Result<AppState, lambda_http::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::from_env(&config).await?;
    if config::warm_up_from_env()? {
        state.store.warm_up().await;
    }
    Ok(state)
}

pub async fn run(routes: Router<AppState>) -> Result<(), lambda_http::Error> {
    let state = init().await?;
    lambda_http::run(http::app(routes, state)).await
}

/// The same routes in a function URL's response-streaming mode (`InvokeMode: RESPONSE_STREAM`):
/// bodies — replies' Server-Sent Events — reach the caller as they are written.
pub async fn run_streaming(routes: Router<AppState>) -> Result<(), lambda_http::Error> {
    let state = init().await?;
    lambda_http::run_with_streaming_response(http::app(routes, state)).await
}
