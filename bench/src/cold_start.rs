//! Cold starts of the real function binaries: each is started as Lambda starts it, against a
//! minimal Lambda Runtime API served here, and handed a sample API Gateway event from `events/`.
//! Measured: process start → first `/next` (init, including the DynamoDB warm-up when it is on)
//! and process start → first answered request; after `invocations` answers, the peak RSS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use shared::config::TableNames;
use tokio::sync::mpsc;

use crate::BoxError;
use crate::server::local_env;
use crate::stats::Percentiles;

/// A function binary and the sample event (from `events/`) it answers.
pub struct Function {
    pub name: &'static str,
    pub event: &'static str,
}

pub const FUNCTIONS: [Function; 5] = [
    Function { name: "sessions", event: "events/sessions/list-200.json" },
    Function { name: "messages", event: "events/messages/list-200.json" },
    Function { name: "messages-stream", event: "events/messages/list-200.json" },
    Function { name: "memories", event: "events/memories/list-200.json" },
    Function { name: "limits", event: "events/limits/get-200.json" },
];

pub struct Settings<'a> {
    pub binaries: &'a Path,
    pub endpoint: &'a str,
    pub tables: &'a TableNames,
    /// Replaces the demo session id in the events (so `messages` lists a real session).
    pub session: &'a str,
    pub runs: usize,
    pub invocations: usize,
}

pub struct ColdStart {
    pub function: &'static str,
    pub warm_up: bool,
    pub init: Percentiles,
    pub first_answer: Percentiles,
    /// Peak resident set size after `invocations` requests, KiB (the largest over the runs).
    pub peak_rss_kib: u64,
    pub binary_bytes: u64,
}

pub async fn run(settings: &Settings<'_>) -> Result<Vec<ColdStart>, BoxError> {
    let mut results = Vec::new();
    for function in &FUNCTIONS {
        let binary = settings.binaries.join(function.name);
        // No replayed event names a memory: its placeholder may stay.
        let file = kit::dynamodb_local::workspace_root().join(function.event);
        let event = kit::events::read(&file, settings.session, kit::events::DEMO_MEMORY)?;
        let binary_bytes = std::fs::metadata(&binary).map_err(|e| format!("{}: {e}", binary.display()))?.len();
        for warm_up in [true, false] {
            let (mut init, mut first_answer, mut peak_rss_kib) = (Vec::new(), Vec::new(), 0);
            for _ in 0..settings.runs {
                let start = start_once(settings, &binary, &event, warm_up).await?;
                init.push(start.init);
                first_answer.push(start.first_answer);
                peak_rss_kib = peak_rss_kib.max(start.peak_rss_kib);
            }
            results.push(ColdStart {
                function: function.name,
                warm_up,
                init: Percentiles::new(init),
                first_answer: Percentiles::new(first_answer),
                peak_rss_kib,
                binary_bytes,
            });
        }
    }
    Ok(results)
}

struct Started {
    init: Duration,
    first_answer: Duration,
    peak_rss_kib: u64,
}

async fn start_once(
    settings: &Settings<'_>,
    binary: &PathBuf,
    event: &str,
    warm_up: bool,
) -> Result<Started, BoxError> {
    let (answers, mut answered) = mpsc::unbounded_channel();
    let runtime = Arc::new(Runtime {
        event: event.to_owned(),
        remaining: Mutex::new(settings.invocations),
        first_next: Mutex::new(None),
        answers,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(axum::serve(listener, runtime.clone().router()).into_future());

    let tables = settings.tables;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(local_env(settings.endpoint, tables))
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", address.to_string().as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "bench"),
            // A model provider configured, as deployed: the messages functions build its client
            // at init (the others ignore these).
            ("LLM_PROVIDER", "openai"),
            ("LLM_BASE_URL", "http://127.0.0.1:9/v1"),
            ("LLM_MODEL", "bench-model"),
            // Rate limits as deployed (one counter write per request) but out of reach of the runs.
            ("RATE_LIMIT_READ_PER_MIN", "1000000000"),
            ("RATE_LIMIT_APPEND_PER_MIN", "1000000000"),
            ("RATE_LIMIT_OTHER_PER_MIN", "1000000000"),
            ("RUST_LOG", "warn"),
            ("DYNAMODB_WARM_UP", if warm_up { "true" } else { "false" }),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("child exited")?;

    let mut first_answer = None;
    for _ in 0..settings.invocations {
        let answer = tokio::time::timeout(Duration::from_secs(30), answered.recv())
            .await
            .map_err(|_| format!("{}: no answer within 30 s", binary.display()))?
            .ok_or("runtime API closed")?;
        let status =
            answer.status.ok_or_else(|| format!("{}: invocation failed: {}", binary.display(), answer.body))?;
        if !(200..300).contains(&status) {
            return Err(format!("{}: answered {status}: {}", binary.display(), answer.body).into());
        }
        first_answer.get_or_insert(answer.at - started);
    }
    let peak_rss_kib = peak_rss_kib(pid)?;
    child.kill().await?;
    server.abort();
    let init = runtime.first_next.lock().unwrap_or_else(PoisonError::into_inner).ok_or("never asked for an event")?;
    Ok(Started { init: init - started, first_answer: first_answer.ok_or("no answer")?, peak_rss_kib })
}

/// `VmHWM` from `/proc/<pid>/status`: the process's peak resident set size.
fn peak_rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).ok_or("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).ok_or("VmHWM value")?.parse()?)
}

/// The part of the Lambda Runtime API a function uses: hand out events, take answers.
struct Runtime {
    event: String,
    remaining: Mutex<usize>,
    first_next: Mutex<Option<Instant>>,
    answers: mpsc::UnboundedSender<Answer>,
}

struct Answer {
    at: Instant,
    /// The API Gateway response's `statusCode`; `None` for an invocation or init error.
    status: Option<u16>,
    body: String,
}

impl Runtime {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(error))
            .with_state(self)
    }

    fn answer(&self, status: Option<u16>, body: &Bytes) -> StatusCode {
        let at = Instant::now();
        let _ =
            self.answers.send(Answer { at, status, body: String::from_utf8_lossy(body).chars().take(500).collect() });
        StatusCode::ACCEPTED
    }
}

async fn next(State(runtime): State<Arc<Runtime>>) -> (HeaderMap, String) {
    runtime.first_next.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(Instant::now);
    let id = {
        let mut remaining = runtime.remaining.lock().unwrap_or_else(PoisonError::into_inner);
        let id = *remaining;
        *remaining = remaining.saturating_sub(1);
        id
    };
    if id == 0 {
        // No more events: the function waits here, as it would in an idle Lambda sandbox.
        std::future::pending::<()>().await;
    }
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(30);
    let mut headers = HeaderMap::new();
    let values = [
        ("lambda-runtime-aws-request-id", format!("bench-{id}")),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench".into()),
        ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into()),
    ];
    for (name, value) in values {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    (headers, runtime.event.clone())
}

async fn response(State(runtime): State<Arc<Runtime>>, body: Bytes) -> StatusCode {
    // A streamed response (`messages-stream`) opens with its JSON prelude, then 8 NUL bytes.
    let prelude = body.windows(8).position(|window| window == [0u8; 8]).map_or(&body[..], |end| &body[..end]);
    let status = serde_json::from_slice::<Value>(prelude)
        .ok()
        .and_then(|answer| answer.get("statusCode").and_then(Value::as_u64))
        .and_then(|status| u16::try_from(status).ok());
    runtime.answer(Some(status.unwrap_or(0)), &body)
}

async fn error(State(runtime): State<Arc<Runtime>>, body: Bytes) -> StatusCode {
    runtime.answer(None, &body)
}
