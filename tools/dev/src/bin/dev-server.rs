//! The whole API on one base URL, against DynamoDB Local: `scripts/dev.sh` runs this.
//! Creates any missing table from `template.yaml`, starts the local model unless a provider is
//! configured (`LLM_BASE_URL`, `LLM_PROVIDER`), adds the demo characters, then serves every route
//! on `PORT` (3000) — and the web app (`web/dist`) at `/`.

use std::error::Error;
use std::net::SocketAddr;

use std::sync::Arc;

use dev::hub::LocalHub;
use secrecy::ExposeSecret;
use shared::config::{Config, JwtKey, LlmConfig};
use shared::memory::ExtractionQueue;
use shared::realtime::Realtime;
use shared::{AppState, telemetry};

/// Replies the local model generates at once.
const LOCAL_MODEL_SLOTS: u32 = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    telemetry::init();
    let mut config = Config::from_env()?;
    for what in dev::defaults::apply(&mut config) {
        tracing::info!("dev default: {what}");
    }
    // Without a provider of its own, a new user's first chat gets a real answer from the local
    // model (set LLM_PROVIDER=none to serve without one).
    let _model = match (&config.llm, std::env::var("LLM_PROVIDER").as_deref()) {
        (None, Err(_)) => {
            tracing::info!("starting the local model (SmolLM2-135M-Instruct on llama.cpp)");
            let model = kit::local_model::start(LOCAL_MODEL_SLOTS)?;
            tracing::info!(base_url = %model.base_url, "local model ready");
            // Each of the server's slots has 2048 tokens of context.
            let mut llm = LlmConfig::openai(&model.base_url, kit::local_model::MODEL_ALIAS);
            llm.context_tokens = 2048;
            llm.max_tokens = 512;
            // As many replies at once as the model has slots; a few more wait for one.
            llm.concurrency = Some(LOCAL_MODEL_SLOTS);
            config.llm = Some(shared::config::tune_llm_from_env(llm)?);
            Some(model)
        }
        _ => None,
    };
    let sdk_config = aws_config_from_env().await;
    let created = kit::tables::create_tables(&shared::store::client(&sdk_config), &config.tables).await?;
    for table in created {
        tracing::info!(table, "created table from template.yaml");
    }
    let state = AppState::from_env(&config).await?;
    let seeded = dev::web::seed_characters(&state.catalog).await?;
    if seeded > 0 {
        tracing::info!(seeded, "added the demo characters (tools/dev/seed/characters.json)");
    }
    // The chat socket's connections, and the stream reader that fans the tables' changes out to
    // them: the same fan-out code the `fanout` function runs on AWS.
    let hub = Arc::new(LocalHub::default());
    let streams_endpoint =
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB_STREAMS").or_else(|_| std::env::var("AWS_ENDPOINT_URL_DYNAMODB")).ok();
    let realtime = Realtime::new(state.clone(), hub.clone());
    let extraction = state.extractor.clone().map(ExtractionQueue::new);
    let _followers =
        dev::streams::follow(&sdk_config, streams_endpoint.as_deref(), &config.tables, realtime, extraction).await?;
    let port: u16 = std::env::var("PORT").ok().and_then(|port| port.parse().ok()).unwrap_or(3000);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    let web_dir = dev::web::web_dir();
    if !web_dir.join("index.html").exists() {
        tracing::warn!(dir = %web_dir.display(), "the web app is not built (scripts/dev.sh builds it): / answers 404");
    }
    // Dev sign-in only while the server checks tokens with a shared secret it can sign with.
    let sign_in = match &config.auth.key {
        JwtKey::Hs256Secret(secret) => Some(dev::web::DevSignIn {
            secret: secret.expose_secret().to_vec(),
            issuer: config.auth.issuer.clone(),
            audience: config.auth.audience.clone(),
        }),
        _ => None,
    };
    let app = dev::dev_app(state, &config.cors, hub, dev::web::router(&web_dir, sign_in));
    tracing::info!(%address, "serving the chat API and the web app");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn aws_config_from_env() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}
