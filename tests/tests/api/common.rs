//! The harness: DynamoDB Local once per run, fresh tables per test, a user per call of `user()`.

use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::Client;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kit::token::{DEV_JWT_SECRET, TokenRequest, dev_auth, mint};
use serde_json::Value;
use shared::AppState;
use shared::config::{AuthConfig, Config, CorsOrigins, LimitsConfig, LlmConfig, MemoryConfig, TableNames};
use shared::domain::{Clock, RateLimits, SystemClock};
use tower::ServiceExt;

static ENDPOINT: OnceLock<String> = OnceLock::new();
static LOCAL_MODEL: OnceLock<(String, Option<kit::local_model::LocalModel>)> = OnceLock::new();

/// The local model's base URL: `LLM_BASE_URL` when set, else a llama.cpp server started once
/// per run (SmolLM2-135M-Instruct, 4 slots).
pub fn local_model_url() -> &'static str {
    &LOCAL_MODEL
        .get_or_init(|| match std::env::var("LLM_BASE_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let model = kit::local_model::start(4).expect("start the local model");
                (model.base_url.clone(), Some(model))
            }
        })
        .0
}

/// A daily quota of `daily` user messages, with no per-minute limits.
pub fn quota(daily: u64) -> LimitsConfig {
    LimitsConfig {
        daily_quota: daily,
        rate: RateLimits { append: 0, read: 0, other: 0, regenerate: 0 },
        ..LimitsConfig::default()
    }
}

/// Replies from the local model, short ones by default.
/// The most one extraction or summary call waits for the local model in tests: with both cores
/// busy (and other tests' replies queued on its slot) an answer takes minutes, not seconds.
pub const MEMORY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub fn local_llm() -> LlmConfig {
    let mut config = LlmConfig::openai(local_model_url(), kit::local_model::MODEL_ALIAS);
    config.max_tokens = 48;
    config
}

pub fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(|| kit::dynamodb_local::endpoint_from_env_or_start().expect("start DynamoDB Local"))
}

pub fn client() -> Client {
    kit::dynamodb_local::client(endpoint())
}

/// A stored item, as a test reads it straight from a table.
pub type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// Every item of a table (a test's own tables are small).
pub async fn scan(table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client().scan().table_name(table).set_exclusive_start_key(start.take()).send().await.expect("scan");
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return items,
        }
    }
}

/// Quota and rate limits out of the way, for tests about something else.
pub fn unlimited() -> LimitsConfig {
    LimitsConfig {
        daily_quota: 1_000_000,
        rate: RateLimits { append: 0, read: 0, other: 0, regenerate: 0 },
        ..LimitsConfig::default()
    }
}

/// One test's app: its own tables, the merged router of all four functions.
#[derive(Clone)]
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub config: Config,
    /// The AWS configuration model providers on AWS (Bedrock) use; `None`: not needed.
    pub aws: Option<aws_config::SdkConfig>,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self
    }

    /// Asserts an error response: status, code, and the documented body shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        let this = self.expect(status);
        assert_eq!(this.body["error"], code, "body: {}", this.body);
        assert!(this.body["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {}", this.body);
        assert!(this.body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "body: {}", this.body);
        this
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_auth(dev_auth()).await
    }

    pub async fn with_auth(auth: AuthConfig) -> Self {
        Self::build(auth, unlimited(), Arc::new(SystemClock)).await
    }

    /// An app answering CORS for `origins`, as `CORS_ALLOWED_ORIGINS` configures the local server.
    pub async fn with_cors(origins: CorsOrigins) -> Self {
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let tables = TableNames::with_prefix(&prefix);
        kit::tables::create_tables(&client(), &tables).await.expect("create tables");
        Self::on_tables(
            Config {
                tables,
                auth: dev_auth(),
                limits: unlimited(),
                llm: None,
                memory: Default::default(),
                cors: origins,
                runtime: Default::default(),
                tools: Default::default(),
            },
            Arc::new(SystemClock),
        )
    }

    /// An app verifying tokens with `auth`, on a clock the test controls.
    pub async fn with_auth_and_clock(auth: AuthConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(auth, unlimited(), clock).await
    }

    /// An app with quotas and rate limits switched on, on a clock the test controls.
    pub async fn with_limits(limits: LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(dev_auth(), limits, clock).await
    }

    async fn build(auth: AuthConfig, limits: LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build_with(auth, limits, None, clock).await
    }

    /// An app whose replies come from `llm`.
    pub async fn with_llm(llm: LlmConfig, limits: LimitsConfig) -> Self {
        Self::build_with(dev_auth(), limits, Some(llm), Arc::new(SystemClock)).await
    }

    /// An app whose replies come from `llm`, on a clock the test controls.
    pub async fn with_llm_and_clock(llm: LlmConfig, limits: LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build_with(dev_auth(), limits, Some(llm), clock).await
    }

    /// An app whose replies come from `llm` and may call HTTP tools where `tools` allows.
    pub async fn with_llm_and_tools(llm: LlmConfig, limits: LimitsConfig, tools: shared::config::UrlPolicy) -> Self {
        Self::build_with(dev_auth(), limits, Some(llm), Arc::new(SystemClock)).await.calling_tools(tools)
    }

    /// This app (its tables, model and AWS configuration) with HTTP tools allowed where `tools` says.
    pub fn calling_tools(&self, tools: shared::config::UrlPolicy) -> Self {
        let mut config = self.config.clone();
        config.tools = tools;
        Self::assemble(client(), config, Arc::new(SystemClock), self.aws.clone())
    }

    async fn build_with(auth: AuthConfig, limits: LimitsConfig, llm: Option<LlmConfig>, clock: Arc<dyn Clock>) -> Self {
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let tables = TableNames::with_prefix(&prefix);
        kit::tables::create_tables(&client(), &tables).await.expect("create tables");
        Self::on_tables(
            Config {
                tables,
                auth,
                limits,
                llm,
                memory: MemoryConfig { timeout_secs: Some(MEMORY_TIMEOUT.as_secs()), ..Default::default() },
                cors: CorsOrigins::None,
                runtime: Default::default(),
                tools: Default::default(),
            },
            clock,
        )
    }

    /// An app on a database of the test's own (for fault tests), with these limits.
    pub async fn on_database(client: Client, limits: LimitsConfig) -> Self {
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let tables = TableNames::with_prefix(&prefix);
        kit::tables::create_tables(&client, &tables).await.expect("create tables");
        Self::assemble(
            client,
            Config {
                tables,
                auth: dev_auth(),
                limits,
                llm: None,
                memory: Default::default(),
                cors: CorsOrigins::None,
                runtime: Default::default(),
                tools: Default::default(),
            },
            Arc::new(SystemClock),
            None,
        )
    }

    /// An app whose replies come from Bedrock at `endpoint` (a test endpoint speaking its wire
    /// format), through the real SDK with dummy credentials.
    pub async fn with_bedrock(endpoint: &str, llm: LlmConfig, limits: LimitsConfig) -> Self {
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let tables = TableNames::with_prefix(&prefix);
        kit::tables::create_tables(&client(), &tables).await.expect("create tables");
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("local", "local", None, None, "local"),
            ))
            .endpoint_url(endpoint)
            .build();
        let config = Config {
            tables,
            auth: dev_auth(),
            limits,
            llm: Some(llm),
            memory: Default::default(),
            cors: CorsOrigins::None,
            runtime: Default::default(),
            tools: Default::default(),
        };
        Self::assemble(client(), config, Arc::new(SystemClock), Some(aws))
    }

    /// This app's configuration reaching DynamoDB through another endpoint (a dead port, a fault proxy).
    pub fn through(&self, endpoint: &str) -> Self {
        Self::assemble(
            kit::dynamodb_local::client(endpoint),
            self.config.clone(),
            Arc::new(SystemClock),
            self.aws.clone(),
        )
    }

    /// Another "Lambda container" on the same tables: a fresh store with cold caches.
    pub fn sibling(&self) -> Self {
        Self::assemble(client(), self.config.clone(), Arc::new(SystemClock), self.aws.clone())
    }

    /// Another container on the same tables and clock.
    pub fn sibling_with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self::on_tables(self.config.clone(), clock)
    }

    /// Another instance on the same tables, as a Lambda runs it (nothing outlives a request).
    pub fn sibling_on_lambda(&self, clock: Arc<dyn Clock>) -> Self {
        Self::on_tables(Config { runtime: shared::config::Runtime::Lambda, ..self.config.clone() }, clock)
    }

    fn on_tables(config: Config, clock: Arc<dyn Clock>) -> Self {
        Self::assemble(client(), config, clock, None)
    }

    fn assemble(client: Client, config: Config, clock: Arc<dyn Clock>, aws: Option<aws_config::SdkConfig>) -> Self {
        let state = match &aws {
            Some(aws) => AppState::with_aws(client, &config, clock, aws),
            None => AppState::new(client, &config, clock),
        }
        .expect("valid config");
        Self { router: dev::app(state.clone(), &config.cors), state, config, aws }
    }

    pub fn user(&self) -> User {
        Self::user_with(false)
    }

    pub fn admin(&self) -> User {
        Self::user_with(true)
    }

    fn user_with(admin: bool) -> User {
        let id = format!("user-{}", uuid::Uuid::new_v4().simple());
        // Long-lived: tests that move a manual clock forward must not outrun their tokens.
        let request = TokenRequest { sub: &id, ttl_secs: 400 * 24 * 3600, issuer: None, audience: None, admin };
        let token = mint(DEV_JWT_SECRET.as_bytes(), &request).expect("sign");
        User { id, token }
    }

    /// Sends a request and reads the body as it is (for event streams).
    pub async fn send_raw(&self, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).expect("UTF-8 body"))
    }

    pub async fn send(&self, request: Request<Body>) -> Resp {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("non-JSON body: {bytes:?}"))
        };
        Resp { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&body).expect("json"))
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).expect("request")).await
    }

    pub async fn get(&self, user: &User, path: &str) -> Resp {
        self.call(Method::GET, path, Some(&user.token), None).await
    }

    pub async fn post(&self, user: &User, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&user.token), Some(body)).await
    }

    pub async fn patch(&self, user: &User, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(&user.token), Some(body)).await
    }

    pub async fn delete(&self, user: &User, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(&user.token), None).await
    }

    /// Creates a session and returns its id.
    pub async fn session(&self, user: &User, title: &str) -> String {
        let body = self.post(user, "/v1/sessions", serde_json::json!({ "title": title })).await.expect(201).body;
        body["id"].as_str().expect("id").to_owned()
    }

    /// Appends a message and returns its JSON.
    pub async fn append(&self, user: &User, session: &str, role: &str, content: &str) -> Value {
        let body = serde_json::json!({ "role": role, "content": content });
        self.post(user, &format!("/v1/sessions/{session}/messages"), body).await.expect(201).body
    }

    pub async fn raw_owned(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
        let mut builder = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        self.send(builder.body(Body::from(body.to_vec())).expect("request")).await
    }

    pub async fn raw(&self, method: &str, path: &str, token: Option<&str>, body: &'static [u8]) -> Resp {
        let mut builder = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        self.send(builder.body(Body::from(body)).expect("request")).await
    }
}
