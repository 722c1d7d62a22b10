//! What every handler shares: built once at start, cloned cheaply per request.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::chat::Chat;
use crate::config::{Config, ConfigError, LlmConfig, LlmProvider, MemoryExtraction, Runtime};
use crate::domain::{Clock, SystemClock};
use crate::llm::{Bedrock, Model, OpenAi};
use crate::memory::{ExtractionConfig, Extractor};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The service layer over the store (the chat's rules and outbound ports).
    pub chat: Chat,
    /// The character catalog, served from this instance's snapshot.
    pub catalog: Catalog,
    pub auth: Arc<Authenticator>,
    /// The clock: the wall clock in production, a manual one in tests.
    pub clock: Arc<dyn Clock>,
    /// Lambda or a long-lived server: whether work may go on after a response.
    pub runtime: Runtime,
    /// Memory extraction from ended replies, when a model is configured and `MEMORY_EXTRACTION`
    /// is not `off`; the stream's readers call it, and it reads each session as its
    /// `settings.memory` (or `MEMORY_EXTRACTION`) says.
    pub extractor: Option<Extractor>,
}

impl AppState {
    /// State on the wall clock with a client from the standard AWS environment
    /// (`AWS_REGION`, credentials, and `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local).
    pub async fn from_env(config: &Config) -> Result<Self, ConfigError> {
        let sdk_config = aws_config::load_from_env().await;
        let client = crate::store::client(&sdk_config);
        let state = Self::with_aws(client, config, Arc::new(SystemClock), &sdk_config)?;
        state.auth.prefetch(state.clock.now()).await;
        Ok(state)
    }

    /// State whose AWS model provider (Bedrock), if configured, uses `sdk_config`.
    pub fn with_aws(
        client: aws_sdk_dynamodb::Client,
        config: &Config,
        clock: Arc<dyn Clock>,
        sdk_config: &aws_config::SdkConfig,
    ) -> Result<Self, ConfigError> {
        Self::build(client, config, clock, Some(sdk_config))
    }

    /// State without AWS configuration beyond the DynamoDB client: a Bedrock provider is refused.
    pub fn new(client: aws_sdk_dynamodb::Client, config: &Config, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        Self::build(client, config, clock, None)
    }

    fn build(
        client: aws_sdk_dynamodb::Client,
        config: &Config,
        clock: Arc<dyn Clock>,
        sdk_config: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ConfigError> {
        let store = Store::new(client, config.tables.clone(), config.limits.clone(), clock.clone());
        let catalog = Catalog::new(store.clone(), clock.clone(), config.runtime);
        let webhooks = webhooks::Webhooks::new(config.tools.clone()).map_err(|_| ConfigError::Invalid {
            name: "TOOLS_ALLOWED_URLS",
            reason: "cannot build the tools' HTTP client",
        })?;
        let mut chat = Chat::new(store.clone(), catalog.clone(), clock.clone()).with_webhooks(webhooks);
        let mut extractor = None;
        if let Some(llm) = &config.llm {
            let model = model_of(llm, sdk_config)?;
            chat = chat.with_model(model.clone(), llm.clone());
            // Built unless MEMORY_EXTRACTION is `off`: under `manual` a session (a character chat
            // by default) may still ask for `auto`.
            let name = config.memory.model.clone().unwrap_or_else(|| llm.model.clone());
            let mut extraction = ExtractionConfig::new(name);
            extraction.daily_calls = config.memory.daily_calls.unwrap_or(extraction.daily_calls);
            if let Some(seconds) = config.memory.timeout_secs {
                extraction.timeout = std::time::Duration::from_secs(seconds);
            }
            extraction.auto_by_default = config.memory.extraction == MemoryExtraction::Auto;
            extraction.summary_window = llm.context_messages;
            extraction.summary_step_tokens =
                config.memory.summary_step_tokens.unwrap_or(extraction.summary_step_tokens);
            // A summary call (instructions, previous summary, chunk, answer) within the model's
            // context, with a quarter of it as headroom for the estimate.
            let room = (llm.context_tokens * 3 / 4).saturating_sub(u64::from(extraction.summary_max_tokens) + 200);
            extraction.summary_chunk_tokens = extraction.summary_chunk_tokens.min(room.max(200));
            if config.memory.extraction != MemoryExtraction::Off {
                extractor = Some(Extractor::new(store.clone(), model, extraction));
            }
        }
        Ok(Self {
            chat,
            catalog,
            store,
            clock,
            runtime: config.runtime,
            extractor,
            auth: Arc::new(Authenticator::new(&config.auth)?),
        })
    }
}

/// The model client the configuration names, built once at start.
fn model_of(config: &LlmConfig, sdk_config: Option<&aws_config::SdkConfig>) -> Result<Arc<dyn Model>, ConfigError> {
    match &config.provider {
        LlmProvider::OpenAi { base_url, api_key } => {
            let client = OpenAi::new(base_url, api_key.clone(), std::time::Duration::from_secs(5)).map_err(|_| {
                ConfigError::Invalid { name: "LLM_BASE_URL", reason: "cannot build an HTTP client for it" }
            })?;
            Ok(Arc::new(client.with_structured_tools(config.structured_tools)))
        }
        LlmProvider::Bedrock => match sdk_config {
            Some(sdk_config) => Ok(Arc::new(Bedrock::new(sdk_config))),
            None => Err(ConfigError::Invalid { name: "LLM_PROVIDER", reason: "bedrock needs the AWS configuration" }),
        },
    }
}
