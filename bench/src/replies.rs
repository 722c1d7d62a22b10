//! AI replies against the real local model (llama.cpp with SmolLM2-135M), through the local HTTP
//! server: what the backend adds before the model is asked, the DynamoDB round trips on that path,
//! the write units of a whole turn, the checkpoints of a long reply, and how much later than the
//! model's own first token the caller sees its first delta.
//!
//! A recording proxy sits between the API and the model: it notes when each completion request
//! arrives (and how many DynamoDB calls the process had made by then) and when the model's first
//! text comes back. Turns run one at a time, so the process-wide DynamoDB totals (`meter::totals`,
//! which also see the writes a reply makes from its own task) belong to the turn being measured.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use kit::tables::Streams;
use serde_json::json;
use shared::config::LlmConfig;

use crate::BoxError;
use crate::meter::{self, Totals};
use crate::server::{Api, token};
use crate::stats::Percentiles;

/// A turn: the user's message and a reply of about 300 tokens at most.
const TURN_TOKENS: u32 = 300;
/// Short turns before the measured ones, in a session of their own: a warm Lambda meets a warm
/// DynamoDB, and DynamoDB Local (Java) answers its first few hundred calls of each kind slower,
/// before its JIT has compiled them. (At most twice the measured turns: the smoke run's one turn
/// gets two.)
const WARM_UP_TURNS: usize = 30;
/// The long reply whose checkpoints are counted.
const LONG_TOKENS: u32 = 500;
const PROMPT: &str = "Tell me about the history of lighthouses, in detail.";
const LONG_PROMPT: &str = "Write a long story about a lighthouse keeper and a storm. Keep writing until told to stop.";

/// One completion request as the proxy saw it, with the process's DynamoDB totals when it arrived
/// and when its answer ended.
#[derive(Clone, Debug)]
pub(crate) struct ProviderCall {
    pub(crate) received: Instant,
    pub(crate) first_text: Option<Instant>,
    pub(crate) ended: Option<Instant>,
    pub(crate) totals_at_received: Totals,
    pub(crate) totals_at_end: Option<Totals>,
}

#[derive(Clone)]
pub(crate) struct Proxy {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<ProviderCall>>>,
}

impl Proxy {
    pub(crate) fn last(&self) -> Option<ProviderCall> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).last().cloned()
    }

    /// The requests after the first `count`.
    pub(crate) fn calls_since(&self, count: usize) -> Vec<ProviderCall> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).get(count..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// Every completion request so far.
    pub(crate) fn count(&self) -> usize {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

async fn forward(State(proxy): State<Proxy>, body: Bytes) -> Response {
    let call = ProviderCall {
        received: Instant::now(),
        first_text: None,
        ended: None,
        totals_at_received: meter::totals(),
        totals_at_end: None,
    };
    let index = {
        let mut calls = proxy.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.push(call);
        calls.len() - 1
    };
    let upstream =
        proxy.http.post(format!("{}/chat/completions", proxy.upstream)).header("content-type", "application/json");
    let response = match upstream.body(body).send().await {
        Ok(response) => response,
        Err(error) => return (axum::http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap_or_default();
    let calls = proxy.calls.clone();
    // The answer ends with its `[DONE]` line (or, without one, with the stream): marked as it
    // passes, since a client that stops reading after `[DONE]` may never let the stream end.
    let ended = move |calls: &Mutex<Vec<ProviderCall>>| {
        let mut calls = calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(call) = calls.get_mut(index).filter(|call| call.ended.is_none()) {
            call.ended = Some(Instant::now());
            call.totals_at_end = Some(meter::totals());
        }
    };
    let chunks = response.bytes_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            let text = String::from_utf8_lossy(bytes);
            if text.contains("\"content\":\"") {
                let mut calls = calls.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(call) = calls.get_mut(index).filter(|call| call.first_text.is_none()) {
                    call.first_text = Some(Instant::now());
                }
            }
            if text.contains("data: [DONE]") {
                ended(&calls);
            }
        }
        chunk
    });
    let calls = proxy.calls.clone();
    let end = futures::stream::once(async move {
        ended(&calls);
        Ok::<_, reqwest::Error>(Bytes::new())
    });
    let chunks = chunks.chain(end);
    (status, [("content-type", "text/event-stream")], Body::from_stream(chunks)).into_response()
}

pub(crate) async fn start_proxy(upstream: &str) -> Result<(String, Proxy), BoxError> {
    let proxy = Proxy { upstream: upstream.to_owned(), http: reqwest::Client::new(), calls: Arc::default() };
    let app = Router::new().route("/v1/chat/completions", post(forward)).with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, proxy))
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub turns: usize,
    pub warm_up_turns: usize,
    /// From sending the request to the provider receiving it.
    pub before_provider: Percentiles,
    /// The part of it some DynamoDB call was in flight, and the rest (the backend's own time and
    /// the local HTTP hops).
    pub dynamodb_before: Percentiles,
    pub own_before: Percentiles,
    /// DynamoDB round trips one after another between the request and the provider call (most
    /// and fewest seen), and the calls made in that time (most).
    pub round_trips_before: (u64, u64),
    pub calls_before: u64,
    /// Write units of a whole turn (user message, reply, checkpoints, end), as AWS bills them.
    pub write_units: Vec<f64>,
    /// The part the request itself wrote (the turn's append), the rest being the reply's own
    /// writes (checkpoints, end, summary preview).
    pub request_write_units: Vec<f64>,
    /// Checkpoints of the ~300-token turns.
    pub turn_checkpoints: Vec<u64>,
    pub output_tokens: Vec<u64>,
    /// Long replies: (output tokens, checkpoint writes).
    pub long_replies: Vec<(u64, u64)>,
    /// The caller's first `reply.delta`, after the model's first text reached the backend.
    pub first_delta_added: Percentiles,
    /// The model's own time to its first text.
    pub model_first_text: Percentiles,
}

impl Report {
    pub fn mean_write_units(&self) -> f64 {
        mean(&self.write_units)
    }

    pub fn mean_output_tokens(&self) -> f64 {
        mean(&self.output_tokens.iter().map(|&tokens| tokens as f64).collect::<Vec<_>>())
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

pub async fn run(endpoint: &str, turns: usize, streams: Streams) -> Result<Report, BoxError> {
    let model = kit::local_model::start(1)?;
    let (proxied, proxy) = start_proxy(&model.base_url).await?;
    let mut llm = LlmConfig::openai(&proxied, kit::local_model::MODEL_ALIAS);
    llm.context_tokens = 2048;
    llm.max_tokens = LONG_TOKENS;
    let api = Api::start_with_streams(endpoint, Some(llm), streams).await?;
    let user = format!("replies-{}", uuid::Uuid::new_v4().simple());
    let token = token(&user)?;
    let mut report = Report { turns, ..Report::default() };
    let warm_up = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "warm-up"}))).await?.body;
    let warm_up = format!("/v1/sessions/{}/replies", warm_up["id"].as_str().ok_or("session id")?);
    let warm_up_turns = WARM_UP_TURNS.min(2 * turns);
    report.warm_up_turns = warm_up_turns;
    for _ in 0..warm_up_turns {
        api.call(&token, "POST", &warm_up, Some(&json!({"content": PROMPT, "max_tokens": 4}))).await?;
    }
    let (mut before_provider, mut trips) = (Vec::new(), Vec::new());
    let (mut dynamodb_before, mut own_before) = (Vec::new(), Vec::new());
    // A chat: every turn in one session, the first a warm-up (connections, caches, the model's
    // prompt cache), as in a warm Lambda.
    let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "bench"}))).await?.body;
    let path = format!("/v1/sessions/{}/replies", session["id"].as_str().ok_or("session id")?);
    for index in 0..=turns {
        api.discard_served();
        let before = meter::totals();
        let sent = Instant::now();
        let body = json!({"content": PROMPT, "max_tokens": TURN_TOKENS});
        let answer = api.call(&token, "POST", &path, Some(&body)).await?.body;
        let after = meter::totals();
        let call = proxy.last().ok_or("the model was not called")?;
        if index == 0 {
            continue;
        }
        let before_call = call.received.saturating_duration_since(sent);
        before_provider.push(before_call);
        let spans: Vec<_> =
            meter::spans_between(&before, &after).into_iter().filter(|&(start, _)| start < call.received).collect();
        let in_dynamodb = meter::busy_time(&spans);
        dynamodb_before.push(in_dynamodb);
        own_before.push(before_call.saturating_sub(in_dynamodb));
        trips.push(meter::sequential_round_trips(&spans));
        report.calls_before = report.calls_before.max(spans.len() as u64);
        report.write_units.push(api.billed_between(&before, &after).await?);
        report.request_write_units.push(api.take_served().await?.iter().map(|served| served.billed_write_units).sum());
        report.turn_checkpoints.push(after.message_updates - before.message_updates);
        report.output_tokens.push(answer["assistant_message"]["usage"]["output_tokens"].as_u64().unwrap_or(0));
    }
    report.before_provider = Percentiles::new(before_provider);
    report.dynamodb_before = Percentiles::new(dynamodb_before);
    report.own_before = Percentiles::new(own_before);
    report.round_trips_before = (trips.iter().copied().max().unwrap_or(0), trips.iter().copied().min().unwrap_or(0));

    let http = reqwest::Client::new();
    let (mut added, mut model_first) = (Vec::new(), Vec::new());
    for _ in 0..turns {
        let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "stream"}))).await?.body;
        let url = format!("{}/v1/sessions/{}/replies", api.base(), session["id"].as_str().ok_or("session id")?);
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "text/event-stream")
            .json(&json!({"content": PROMPT, "max_tokens": 64}))
            .send()
            .await?;
        let mut events = response.bytes_stream();
        let mut first_delta = None;
        let mut text = String::new();
        while let Some(chunk) = events.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?));
            if first_delta.is_none() && text.contains("event: reply.delta") {
                first_delta = Some(Instant::now());
            }
        }
        let call = proxy.last().ok_or("the model was not called")?;
        if let (Some(first_delta), Some(first_text)) = (first_delta, call.first_text) {
            added.push(first_delta.saturating_duration_since(first_text));
            model_first.push(first_text.saturating_duration_since(call.received));
        }
    }
    report.first_delta_added = Percentiles::new(added);
    report.model_first_text = Percentiles::new(model_first);

    for _ in 0..turns.clamp(1, 5) {
        let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "long"}))).await?.body;
        let path = format!("/v1/sessions/{}/replies", session["id"].as_str().ok_or("session id")?);
        let before = meter::totals();
        let body = json!({"content": LONG_PROMPT, "max_tokens": LONG_TOKENS, "temperature": 0.8});
        let answer = api.call(&token, "POST", &path, Some(&body)).await?.body;
        let after = meter::totals();
        let tokens = answer["assistant_message"]["usage"]["output_tokens"].as_u64().unwrap_or(0);
        report.long_replies.push((tokens, after.message_updates - before.message_updates));
    }
    drop(model);
    Ok(report)
}

/// The section of BENCHMARKS.md.
pub fn markdown(report: &Report, shared: &Report, out: &mut String) {
    use std::fmt::Write as _;
    let ms = |value: f64| format!("{value:.2}");
    let _ = writeln!(
        out,
        "## AI replies (local model)\n\n\
         `POST /v1/sessions/{{id}}/replies` against llama.cpp serving SmolLM2-135M-Instruct on this machine, \
         through the local HTTP server, one turn at a time ({} turns after {} short warm-up turns in a \
         session of their own and one in the chat), on a DynamoDB Local \
         of its own and tables without streams (nothing in this phase reads them; DynamoDB Local's emulation of \
         them slows every write, AWS's does not). A recording proxy between the API and the model timestamps the provider call and the \
         model's first text.\n",
        report.turns, report.warm_up_turns
    );
    out.push_str("| measure | p50 | p99 | target |\n|---|---|---|---|\n");
    let _ = writeln!(
        out,
        "| backend time before the provider receives the request (ms) | {} | {} | ≤ 15 ms p99 warm |",
        ms(report.before_provider.at(50.0)),
        ms(report.before_provider.at(99.0))
    );
    let _ = writeln!(
        out,
        "| of it, some DynamoDB call in flight (ms) | {} | {} | |\n\
         | of it, the backend's own time and the local HTTP hops (ms) | {} | {} | |",
        ms(report.dynamodb_before.at(50.0)),
        ms(report.dynamodb_before.at(99.0)),
        ms(report.own_before.at(50.0)),
        ms(report.own_before.at(99.0))
    );
    let _ = writeln!(
        out,
        "| the same, on the benchmark's shared DynamoDB Local after the earlier phases, tables with streams \
         ({} turns; the stream emulation slows every write as its records grow) | {} | {} | |",
        shared.turns,
        ms(shared.before_provider.at(50.0)),
        ms(shared.before_provider.at(99.0))
    );
    let _ = writeln!(
        out,
        "| first `reply.delta` at the caller after the model's first text reached the backend (ms) | {} | {} | |",
        ms(report.first_delta_added.at(50.0)),
        ms(report.first_delta_added.at(99.0))
    );
    let _ = writeln!(
        out,
        "| the model's own time to its first text (ms, for scale) | {} | {} | |",
        ms(report.model_first_text.at(50.0)),
        ms(report.model_first_text.at(99.0))
    );
    let _ = writeln!(
        out,
        "\n- DynamoDB round trips before the provider call, one after another: {} at most, {} at least (target ≤ 2); \
         calls in that time (some in parallel): {} at most.",
        report.round_trips_before.0, report.round_trips_before.1, report.calls_before
    );
    let checkpoints = mean(&report.turn_checkpoints.iter().map(|&n| n as f64).collect::<Vec<_>>());
    let _ = writeln!(
        out,
        "- Write units per turn (user message + reply of {:.0} tokens on average), billed as AWS bills them: \
         {:.2} on average (target ≤ 20) — the turn's append {:.2}, the reply's own writes {:.2} \
         ({checkpoints:.1} checkpoints, its end with the meter, the summary's preview).",
        report.mean_output_tokens(),
        report.mean_write_units(),
        mean(&report.request_write_units),
        report.mean_write_units() - mean(&report.request_write_units),
    );
    let long: Vec<String> =
        report.long_replies.iter().map(|(tokens, writes)| format!("{tokens} tokens → {writes} checkpoints")).collect();
    let _ = writeln!(
        out,
        "- Checkpoint writes of a long reply (`max_tokens` {LONG_TOKENS}; at most one a second, only when the text grew; \
         target ≤ 4 per 500 tokens): {}.\n",
        long.join(", ")
    );
}
