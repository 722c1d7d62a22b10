//! What every handler shares: built once at start, cloned cheaply per request.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::chat::{Chat, LogEvents};
use crate::config::{Config, ConfigError};
use crate::domain::{Clock, SystemClock};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The service layer over the store (the chat's rules and outbound ports).
    pub chat: Chat,
    pub auth: Arc<Authenticator>,
}

impl AppState {
    /// State on the wall clock with a client from the standard AWS environment
    /// (`AWS_REGION`, credentials, and `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local).
    pub async fn from_env(config: &Config) -> Result<Self, ConfigError> {
        let sdk_config = aws_config::load_from_env().await;
        let client = crate::store::client(&sdk_config);
        Self::new(client, config, Arc::new(SystemClock))
    }

    pub fn new(client: aws_sdk_dynamodb::Client, config: &Config, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let store = Store::new(client, config.tables.clone(), config.limits.clone(), clock);
        Ok(Self {
            chat: Chat::new(store.clone(), Arc::new(LogEvents)),
            store,
            auth: Arc::new(Authenticator::new(&config.auth)?),
        })
    }
}
