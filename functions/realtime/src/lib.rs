//! The realtime protocol on AWS: API Gateway's WebSocket API in front of [`socket::handle`],
//! delivery through the `@connections` API ([`gateway::ApiGateway`]), and the stream fan-out fed
//! by the tables' DynamoDB Streams (`shared::lambda::stream_records`). The protocol itself is
//! `shared::realtime`, the same code the dev server runs.

pub mod gateway;
pub mod socket;

use std::sync::Arc;

use shared::AppState;
use shared::config::ConfigError;
use shared::realtime::Realtime;

/// What the realtime functions read from the environment besides the shared config.
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// The `@connections` endpoint: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`.
    pub endpoint: String,
    /// The function `send_message` frames are handed to (asynchronously): the reply worker.
    pub reply_function: Option<String>,
}

impl RealtimeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let read = |name| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        Ok(Self {
            endpoint: read("WEBSOCKET_ENDPOINT").ok_or(ConfigError::Missing("WEBSOCKET_ENDPOINT"))?,
            reply_function: read("REPLY_FUNCTION"),
        })
    }
}

/// What every realtime function starts from: the shared state, its own config, the SDK
/// configuration, and the realtime service delivering through `@connections`.
pub async fn init() -> Result<(AppState, RealtimeConfig, aws_config::SdkConfig, Realtime), lambda_runtime::Error> {
    let state = shared::lambda::init().await?;
    let config = RealtimeConfig::from_env()?;
    let sdk_config = aws_config::load_from_env().await;
    let gateway = Arc::new(gateway::ApiGateway::new(state.store.clone(), &sdk_config, &config.endpoint));
    let realtime = Realtime::new(state.clone(), gateway);
    Ok((state, config, sdk_config, realtime))
}
