//! A crowd: many streamed replies at once through one server against the local model, whose
//! admission is sized to the model's slots (`LLM_CONCURRENCY`). Each reply must either complete or
//! be refused up front (503 with `Retry-After`, nothing stored); none may be left streaming.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use shared::config::LlmConfig;

use crate::BoxError;
use crate::server::{Api, token};
use crate::stats::Percentiles;

/// The local model's slots, and so the server's admission.
const SLOTS: u32 = 4;
/// Each reply's length: short enough that the waiting ones get a slot within the admission wait.
const MAX_TOKENS: u32 = 96;
const PROMPT: &str = "Describe a lighthouse at night in a few sentences.";

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub replies: usize,
    pub slots: u32,
    /// Streamed to their end (`reply.completed`).
    pub completed: usize,
    /// Admitted, then ended otherwise (failed, incomplete).
    pub ended_otherwise: usize,
    /// 503 `llm_busy` with a `Retry-After` header.
    pub refused: usize,
    /// Any other answer (a 503 without `Retry-After` counts here): statuses.
    pub other: Vec<u16>,
    /// Admitted replies still `streaming` after every caller was answered.
    pub stuck: usize,
    /// Sessions of refused callers that hold a message (a refusal must store nothing).
    pub refused_but_stored: usize,
    /// From sending the request to the first `reply.delta`, for the admitted replies.
    pub first_delta: Percentiles,
    pub wall: Duration,
}

/// What one caller saw.
struct Answer {
    status: u16,
    retry_after: bool,
    first_delta: Option<Duration>,
    completed: bool,
}

pub async fn run(endpoint: &str, replies: usize) -> Result<Report, BoxError> {
    let model = kit::local_model::start(SLOTS)?;
    let mut llm = LlmConfig::openai(&model.base_url, kit::local_model::MODEL_ALIAS);
    llm.context_tokens = 2048;
    llm.max_tokens = 512;
    llm.concurrency = Some(SLOTS);
    let api = Api::start_with_streams(endpoint, Some(llm), kit::tables::Streams::Off).await?;
    // Every caller its own user and chat, so nothing but the model's slots is shared.
    let mut callers = Vec::with_capacity(replies);
    for _ in 0..replies {
        let token = token(&format!("crowd-{}", uuid::Uuid::new_v4().simple()))?;
        let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "crowd"}))).await?.body;
        callers.push((token, session["id"].as_str().ok_or("session id")?.to_owned()));
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    let calls = callers.iter().map(|(token, session)| {
        let request = http
            .post(format!("{}/v1/sessions/{session}/replies", api.base()))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .json(&json!({"content": PROMPT, "max_tokens": MAX_TOKENS}));
        async move {
            let sent = Instant::now();
            let response = request.send().await?;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let (mut first_delta, mut text) = (None, String::new());
            let mut events = response.bytes_stream();
            while let Some(chunk) = events.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk?));
                if first_delta.is_none() && text.contains("event: reply.delta") {
                    first_delta = Some(sent.elapsed());
                }
            }
            let completed = text.contains("event: reply.completed");
            Ok::<_, BoxError>(Answer { status, retry_after, first_delta, completed })
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut report = Report { replies, slots: SLOTS, wall: started.elapsed(), ..Report::default() };
    let mut first_delta = Vec::new();
    for ((token, session), answer) in callers.iter().zip(answers) {
        let answer = answer?;
        let stored = api.call(token, "GET", &format!("/v1/sessions/{session}"), None).await?.body;
        match answer.status {
            201 => {
                let reply = api.call(token, "GET", &format!("/v1/sessions/{session}/messages/2"), None).await?.body;
                if reply["status"] == "streaming" {
                    report.stuck += 1;
                }
                if answer.completed {
                    report.completed += 1
                } else {
                    report.ended_otherwise += 1
                }
                first_delta.extend(answer.first_delta);
            }
            503 if answer.retry_after => {
                report.refused += 1;
                if stored["message_count"].as_u64() != Some(0) {
                    report.refused_but_stored += 1;
                }
            }
            status => report.other.push(status),
        }
    }
    report.first_delta = Percentiles::new(first_delta);
    drop(model);
    Ok(report)
}

/// The section of BENCHMARKS.md.
pub fn markdown(report: &Report, out: &mut String) {
    use std::fmt::Write as _;
    let ms = |value: f64| format!("{value:.0}");
    let _ = writeln!(
        out,
        "### {} streamed replies at once\n\n\
         {} callers (each its own user and chat) send `POST …/replies` with `Accept: text/event-stream` \
         (`max_tokens` {MAX_TOKENS}) at the same moment through one server, against the local model with {} \
         slots; the server admits as many replies as the model has slots (`LLM_CONCURRENCY`), lets as many \
         more wait up to 10 s for one, and refuses the rest before storing anything.\n",
        report.replies, report.replies, report.slots
    );
    out.push_str("| measure | value |\n|---|---|\n");
    let _ = writeln!(out, "| completed (streamed to `reply.completed`) | {} |", report.completed);
    let _ = writeln!(out, "| admitted, ended otherwise (failed, incomplete) | {} |", report.ended_otherwise);
    let _ = writeln!(out, "| refused up front: 503 `llm_busy` with `Retry-After` | {} |", report.refused);
    let other = if report.other.is_empty() { "0".to_owned() } else { format!("{:?}", report.other) };
    let _ = writeln!(out, "| any other answer | {other} |");
    let _ = writeln!(out, "| left `streaming` after every caller was answered | {} |", report.stuck);
    let _ = writeln!(out, "| refused callers whose chat holds a message | {} |", report.refused_but_stored);
    let _ = writeln!(
        out,
        "| time to first `reply.delta`, admitted replies: p50 / p99 (ms) | {} / {} |",
        ms(report.first_delta.at(50.0)),
        ms(report.first_delta.at(99.0))
    );
    let _ = writeln!(out, "| all callers answered in (s) | {:.1} |\n", report.wall.as_secs_f64());
}
