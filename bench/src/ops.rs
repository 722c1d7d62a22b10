//! Each API operation under load: N clients, each its own user with a session that already has
//! messages and memories, send requests back to back over keep-alive connections.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::BoxError;
use crate::server::{Api, token};
use crate::stats::{Percentiles, ServerSide};

#[derive(Clone, Copy, Debug)]
pub enum Operation {
    CreateSession,
    Append,
    AppendUser,
    AppendAssistant,
    AppendKeyed,
    BatchAppend,
    ListMessages,
    FirstScreen,
    GetSession,
    Context,
    AddMemory,
    GetLimits,
}

pub const OPERATIONS: [Operation; 12] = [
    Operation::CreateSession,
    Operation::Append,
    Operation::AppendUser,
    Operation::AppendAssistant,
    Operation::AppendKeyed,
    Operation::BatchAppend,
    Operation::ListMessages,
    Operation::FirstScreen,
    Operation::GetSession,
    Operation::Context,
    Operation::AddMemory,
    Operation::GetLimits,
];

/// Unmeasured requests per client and operation before measuring.
const WARM_UP: usize = 10;

/// Messages in one batch append.
pub const BATCH: usize = 10;

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateSession => "create session",
            Self::Append => "append",
            Self::AppendUser => "append (user message)",
            Self::AppendAssistant => "append (assistant message)",
            Self::AppendKeyed => "append (user message, Idempotency-Key)",
            Self::BatchAppend => "batch append (10)",
            Self::ListMessages => "list messages (latest 50)",
            Self::FirstScreen => "first screen (sessions + the latest one's 50 messages)",
            Self::GetSession => "get session",
            Self::Context => "context",
            Self::AddMemory => "add memory",
            Self::GetLimits => "get limits",
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Self::CreateSession => "POST /v1/sessions",
            Self::Append | Self::AppendUser | Self::AppendAssistant | Self::AppendKeyed => {
                "POST /v1/sessions/{id}/messages"
            }
            Self::BatchAppend => "POST /v1/sessions/{id}/messages/batch",
            Self::ListMessages => "GET /v1/sessions/{id}/messages?order=desc&limit=50",
            Self::FirstScreen => "GET /v1/sessions?include=latest_messages&messages_limit=50",
            Self::GetSession => "GET /v1/sessions/{id}",
            Self::Context => "GET /v1/sessions/{id}/context",
            Self::AddMemory => "POST /v1/memories",
            Self::GetLimits => "GET /v1/limits",
        }
    }

    /// The `i`-th request of one client whose session is `session`.
    fn request(self, session: &str, i: usize) -> (&'static str, String, Option<Value>) {
        let messages = format!("/v1/sessions/{session}/messages");
        match self {
            Self::CreateSession => ("POST", "/v1/sessions".into(), Some(json!({"title": format!("chat {i}")}))),
            Self::Append => ("POST", messages, Some(message(i))),
            Self::AppendUser | Self::AppendKeyed => ("POST", messages, Some(message(2 * i))),
            Self::AppendAssistant => ("POST", messages, Some(message(2 * i + 1))),
            Self::BatchAppend => (
                "POST",
                format!("{messages}/batch"),
                Some(json!({"messages": (0..BATCH).map(|k| message(i * BATCH + k)).collect::<Vec<_>>()})),
            ),
            Self::ListMessages => ("GET", format!("{messages}?order=desc&limit=50"), None),
            Self::FirstScreen => ("GET", "/v1/sessions?include=latest_messages&messages_limit=50".into(), None),
            Self::GetSession => ("GET", format!("/v1/sessions/{session}"), None),
            Self::Context => ("GET", format!("/v1/sessions/{session}/context"), None),
            Self::AddMemory => (
                "POST",
                "/v1/memories".into(),
                Some(
                    json!({"content": format!("Likes green tea, fact {i}"), "memory_type": "preference", "importance": 6}),
                ),
            ),
            Self::GetLimits => ("GET", "/v1/limits".into(), None),
        }
    }
}

/// A ~300-byte chat message; even `i` are the user's, odd the assistant's.
pub fn text(i: usize) -> String {
    format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(12)).chars().take(300).collect()
}

pub fn message(i: usize) -> Value {
    json!({"role": if i.is_multiple_of(2) { "user" } else { "assistant" }, "content": text(i)})
}

pub struct OperationReport {
    pub operation: Operation,
    pub client: Percentiles,
    pub server: ServerSide,
    /// The same operation from a single client: the handler's overhead without CPU contention.
    pub alone: ServerSide,
}

#[derive(Clone)]
struct Client {
    token: String,
    session: String,
}

/// Every operation in turn, `clients` concurrent clients sending `requests` each.
pub async fn run(api: &Arc<Api>, clients: usize, requests: usize) -> Result<Vec<OperationReport>, BoxError> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut prepared = Vec::with_capacity(clients);
    for c in 0..clients {
        prepared.push(prepare(api, &format!("ops-{run}-{c}")).await?);
    }
    let prepared = Arc::new(prepared);
    let mut reports = Vec::with_capacity(OPERATIONS.len());
    // One unmeasured pass warms connections, caches and DynamoDB Local's JIT for every operation.
    for operation in OPERATIONS {
        load(api, &prepared, operation, WARM_UP, 0).await?;
    }
    api.discard_served();
    let first = Arc::new(prepared.iter().take(1).cloned().collect::<Vec<_>>());
    for operation in OPERATIONS {
        let latencies = load(api, &prepared, operation, requests, WARM_UP).await?;
        let server = served(api, operation, latencies.len()).await?;
        let alone = load(api, &first, operation, requests, WARM_UP + requests).await?;
        let alone = served(api, operation, alone.len()).await?;
        reports.push(OperationReport { operation, client: Percentiles::new(latencies), server, alone });
    }
    Ok(reports)
}

async fn served(api: &Api, operation: Operation, sent: usize) -> Result<ServerSide, BoxError> {
    let served = api.take_served().await?;
    if served.len() != sent {
        return Err(format!("{}: {sent} requests sent, {} served", operation.name(), served.len()).into());
    }
    ServerSide::of(&served).ok_or_else(|| "nothing served".into())
}

/// A user with a session of 60 messages and 10 memories, so reads return full pages.
async fn prepare(api: &Api, user: &str) -> Result<Client, BoxError> {
    let token = token(user)?;
    let created = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "bench"}))).await?;
    let session = created.body["id"].as_str().ok_or("session id")?.to_owned();
    for batch in 0..3 {
        let messages: Vec<Value> = (0..20).map(|k| message(batch * 20 + k)).collect();
        let path = format!("/v1/sessions/{session}/messages/batch");
        api.call(&token, "POST", &path, Some(&json!({"messages": messages}))).await?;
    }
    for i in 0..10 {
        let memory =
            json!({"content": format!("Has a cat named Miso, fact {i}"), "memory_type": "fact", "importance": 7});
        api.call(&token, "POST", "/v1/memories", Some(&memory)).await?;
    }
    Ok(Client { token, session })
}

/// Each client sends `requests` requests back to back; returns every latency.
async fn load(
    api: &Arc<Api>,
    clients: &Arc<Vec<Client>>,
    operation: Operation,
    requests: usize,
    first: usize,
) -> Result<Vec<Duration>, BoxError> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients.len() {
        let (api, clients) = (api.clone(), clients.clone());
        tasks.spawn(async move {
            let client = &clients[c];
            let mut latencies = Vec::with_capacity(requests);
            for i in first..first + requests {
                let (method, path, body) = operation.request(&client.session, i);
                let key = matches!(operation, Operation::AppendKeyed).then(|| format!("{}-{i}", client.session));
                latencies
                    .push(api.call_keyed(&client.token, method, &path, body.as_ref(), key.as_deref()).await?.latency);
            }
            Ok::<_, BoxError>(latencies)
        });
    }
    let mut all = Vec::with_capacity(clients.len() * requests);
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies??);
    }
    Ok(all)
}
