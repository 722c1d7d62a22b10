//! The API under measurement: `dev::app` (every function's routes, as `scripts/dev.sh` serves
//! them) on a real TCP port, with a middleware that records each request's total handler time
//! and DynamoDB usage, and an HTTP/1.1 keep-alive client to call it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kit::token::{DEV_JWT_SECRET, TokenRequest, dev_auth, mint};
use serde_json::Value;
use shared::AppState;
use shared::config::{Config, LimitsConfig, LlmConfig, TableNames};
use shared::domain::{RateLimits, SystemClock};

use crate::BoxError;
use crate::billing::Auditor;
use crate::meter::{self, CapacityMeter, Usage};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Served {
    /// From the router receiving the request to the response being ready.
    pub handler: Duration,
    pub dynamodb: Usage,
    /// Write units as AWS bills them (transactions recounted by [`crate::billing`]).
    pub billed_write_units: f64,
    /// The same by the rule used until 2026-12.
    pub earlier_rule_write_units: f64,
}

impl Served {
    /// The handler's own time: everything but waiting for DynamoDB and the benchmark's own work.
    pub fn overhead(&self) -> Duration {
        self.handler.saturating_sub(self.dynamodb.waiting).saturating_sub(self.dynamodb.instrumentation)
    }
}

type Log = Arc<Mutex<Vec<Served>>>;

pub struct Api {
    pub state: AppState,
    /// The DynamoDB endpoint the tables are on.
    pub endpoint: String,
    auditor: Auditor,
    base: String,
    log: Log,
    http: Http,
}

/// Limits as deployed (the quota counted, every request rate-limited) but set so high that the
/// benchmark never trips them: their DynamoDB writes are part of what is measured.
fn limits() -> LimitsConfig {
    let unreachable = 1_000_000_000;
    LimitsConfig {
        daily_quota: u64::from(unreachable),
        rate: RateLimits { append: unreachable, read: unreachable, other: unreachable, regenerate: unreachable },
        ..LimitsConfig::default()
    }
}

impl Api {
    /// Creates a fresh set of tables on `endpoint` and serves the API on a free local port.
    pub async fn start(endpoint: &str) -> Result<Self, BoxError> {
        Self::start_with(endpoint, None).await
    }

    /// The same, with replies from `llm`.
    pub async fn start_with(endpoint: &str, llm: Option<LlmConfig>) -> Result<Self, BoxError> {
        Self::start_with_streams(endpoint, llm, kit::tables::Streams::AsTemplate).await
    }

    /// The same, with or without the tables' streams (`Streams::Off` where nothing reads them:
    /// DynamoDB Local's emulation slows every write to a streamed table; AWS's does not).
    pub async fn start_with_streams(
        endpoint: &str,
        llm: Option<LlmConfig>,
        streams: kit::tables::Streams,
    ) -> Result<Self, BoxError> {
        Self::start_configured(endpoint, llm, streams, Default::default()).await
    }

    /// The same, with HTTP tools allowed by `tools`.
    pub async fn start_configured(
        endpoint: &str,
        llm: Option<LlmConfig>,
        streams: kit::tables::Streams,
        tools: shared::config::UrlPolicy,
    ) -> Result<Self, BoxError> {
        let plain = kit::dynamodb_local::client(endpoint);
        let client =
            aws_sdk_dynamodb::Client::from_conf(plain.config().to_builder().interceptor(CapacityMeter).build());
        let prefix = format!("bench-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let tables = TableNames::with_prefix(&prefix);
        kit::tables::create_tables_with(&client, &tables, streams).await?;
        let config = Config {
            tools,
            tables,
            auth: dev_auth(),
            limits: limits(),
            llm,
            // Extraction would share the model with the measured replies: it has a phase of its own.
            memory: shared::config::MemoryConfig {
                extraction: shared::config::MemoryExtraction::Manual,
                ..Default::default()
            },
            cors: shared::config::CorsOrigins::None,
            runtime: Default::default(),
        };
        let state = AppState::new(client, &config, Arc::new(SystemClock))?;
        let log = Log::default();
        let app = dev::app(state.clone(), &shared::config::CorsOrigins::None)
            .layer(middleware::from_fn_with_state(log.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { state, endpoint: endpoint.to_owned(), auditor: Auditor::new(plain), base, log, http: http_client() })
    }

    /// Forgets the requests served so far (warm-up traffic).
    pub fn discard_served(&self) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The requests served since the last call, in completion order, with their billed write units.
    pub async fn take_served(&self) -> Result<Vec<Served>, BoxError> {
        let mut served = std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner));
        for request in &mut served {
            let usage = &request.dynamodb;
            let transactions = self.auditor.write_units(&usage.transaction_items).await?;
            let single = usage.write_units - usage.transaction_write_units;
            request.billed_write_units = single + transactions.units;
            request.earlier_rule_write_units = single + transactions.earlier_rule;
        }
        Ok(served)
    }

    /// Write units as AWS bills them for what the process wrote between two marks: the units
    /// DynamoDB Local reported for single-item writes, transactions recounted from their items.
    pub async fn billed_between(
        &self,
        before: &crate::meter::Totals,
        after: &crate::meter::Totals,
    ) -> Result<f64, BoxError> {
        let single =
            (after.write_units - after.transaction_write_units) - (before.write_units - before.transaction_write_units);
        Ok(single + self.auditor.write_units(&crate::meter::items_between(before, after)).await?.units)
    }

    /// The base URL the API serves on.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request as `token`'s user; a status other than 2xx is an error.
    pub async fn call(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Called, BoxError> {
        self.call_keyed(token, method, path, body, None).await
    }

    /// The same, with an `Idempotency-Key`.
    pub async fn call_keyed(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Called, BoxError> {
        let answer = send(&self.http, &self.base, token, method, path, body, idempotency_key).await?;
        if !(200..300).contains(&answer.status) {
            return Err(format!("{method} {path}: {} {}", answer.status, answer.body).into());
        }
        Ok(Called { latency: answer.latency, body: answer.body })
    }
}

/// The benchmark's HTTP/1.1 keep-alive client.
pub type Http = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> Http {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http()
}

/// One answer, whatever its status.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub latency: Duration,
}

/// Sends one request as `token`'s user to the server at `base`.
pub async fn send(
    http: &Http,
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<Answer, BoxError> {
    let body = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(Full::new(Bytes::from(body)))?;
    let started = Instant::now();
    let response = http.request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let latency = started.elapsed();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
    Ok(Answer { status, body, latency })
}

pub struct Called {
    pub latency: Duration,
    pub body: Value,
}

async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (response, dynamodb) = meter::measure(next.run(request)).await;
    let served =
        Served { handler: started.elapsed(), dynamodb, billed_write_units: 0.0, earlier_rule_write_units: 0.0 };
    log.lock().unwrap_or_else(PoisonError::into_inner).push(served);
    response
}

/// The environment a binary of this workspace needs to run against the benchmark's DynamoDB
/// Local tables and verify its dev tokens.
pub fn local_env(endpoint: &str, tables: &TableNames) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.to_owned()),
        ("JWT_SECRET", DEV_JWT_SECRET.to_owned()),
    ];
    env.extend(tables.env());
    env
}

/// A dev token for `user` (HS256, the local secret), valid for an hour.
pub fn token(user: &str) -> Result<String, BoxError> {
    minted(user, false)
}

/// The same for an admin.
pub fn admin_token(user: &str) -> Result<String, BoxError> {
    minted(user, true)
}

fn minted(user: &str, admin: bool) -> Result<String, BoxError> {
    Ok(mint(
        DEV_JWT_SECRET.as_bytes(),
        &TokenRequest { sub: user, ttl_secs: 3600, issuer: None, audience: None, admin },
    )?)
}
