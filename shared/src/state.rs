//! What every handler shares: built once at start, cloned cheaply per request.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::chat::{Chat, LogEvents};
use crate::config::{Config, ConfigError, LlmConfig, LlmProvider};
use crate::domain::{Clock, SystemClock};
use crate::llm::{Model, OpenAi};
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
        let mut chat = Chat::new(store.clone(), Arc::new(LogEvents));
        if let Some(llm) = &config.llm {
            chat = chat.with_model(model_of(llm)?, llm.clone());
        }
        Ok(Self { chat, store, auth: Arc::new(Authenticator::new(&config.auth)?) })
    }
}

/// The model client the configuration names, built once at start.
fn model_of(config: &LlmConfig) -> Result<Arc<dyn Model>, ConfigError> {
    match &config.provider {
        LlmProvider::OpenAi { base_url, api_key } => {
            let client = OpenAi::new(base_url, api_key.clone(), std::time::Duration::from_secs(5)).map_err(|_| {
                ConfigError::Invalid { name: "LLM_BASE_URL", reason: "cannot build an HTTP client for it" }
            })?;
            Ok(Arc::new(client))
        }
        LlmProvider::Bedrock => {
            Err(ConfigError::Invalid { name: "LLM_PROVIDER", reason: "bedrock is not available in this build yet" })
        }
    }
}
