//! An OpenAI-compatible endpoint that misbehaves on purpose, for the failures a real provider has
//! and a healthy local model cannot be made to show. The requested `model` picks the script:
//!
//! - `fail-500`, `busy-429` (Retry-After: 7), `context-400` (llama.cpp's context error body),
//!   `reject-400`: an error status before any output;
//! - `hang`: accepts and never answers;
//! - `cut-mid-stream`: two pieces, then the connection ends without a finish;
//! - `error-event`: two pieces, then an `error` chunk;
//! - `malformed`: a piece, then a chunk that is not JSON;
//! - `no-usage`: pieces and a finish, no usage chunk, no `[DONE]`;
//! - `quirky`: a `model` alias in the answer, a chunk with `choices: []`, an undocumented
//!   `finish_reason`, usage in the last chunk;
//! - `slow`: a piece every 50 ms for 30 s (for cancel), with usage at the end;
//! - `tools-wrong`: offered tools, calls two in streamed pieces (as OpenAI does) — one the
//!   request does not offer and one with arguments its schema refuses; asked again with their
//!   results, answers with the `tool` messages it was sent, as JSON text;
//! - `tools-args`: calls the first tool offered with the last user message (a JSON object) as
//!   its arguments — a call whose arguments a test chooses; asked again, answers with the
//!   `tool` messages it was sent, as JSON text;
//! - `echo`: answers with what it was asked — the request's `messages`, `max_tokens` and
//!   `temperature` as one JSON text — so a test can see the prompt a reply was built from.
//!
//! It speaks the real wire format (SSE `data:` lines of chat.completion.chunk JSON), so the
//! production client and parser run unchanged.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};

pub const TEXT: [&str; 2] = ["Hello", " there"];

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let body = json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": "alias-of-the-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {body}\n\n")
}

fn usage_chunk(input: u64, output: u64) -> String {
    let body = json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": "alias-of-the-model",
        "choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    });
    format!("data: {body}\n\n")
}

/// The `tool` messages after the last user message: this turn's results (an earlier turn's rounds
/// come before it).
fn this_turns_results(request: &Value) -> Vec<Value> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let start = messages.iter().rposition(|message| message["role"] == "user").map_or(0, |at| at + 1);
    messages[start..].iter().filter(|message| message["role"] == "tool").cloned().collect()
}

fn pieces() -> Vec<String> {
    TEXT.iter().map(|text| chunk(json!({"content": text}), None)).collect()
}

fn events(parts: Vec<String>, gap: Duration) -> Response {
    let body = stream::iter(parts).then(move |part| async move {
        tokio::time::sleep(gap).await;
        Ok::<_, Infallible>(Bytes::from(part))
    });
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(body)).into_response()
}

async fn completions(body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let gap = Duration::from_millis(5);
    match request["model"].as_str().unwrap_or_default() {
        "fail-500" => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
        "busy-429" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], "slow down").into_response(),
        "context-400" => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 2048}})),
        )
            .into_response(),
        "reject-400" => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "temperature is invalid"}}))).into_response()
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::OK.into_response()
        }
        "cut-mid-stream" => events(pieces(), gap),
        "error-event" => {
            let mut parts = pieces();
            parts.push(format!("data: {}\n\n", json!({"error": {"message": "the model crashed"}})));
            events(parts, gap)
        }
        "malformed" => events(vec![chunk(json!({"content": "Hello"}), None), "data: {not json\n\n".to_owned()], gap),
        "no-usage" => {
            let mut parts = pieces();
            parts.push(chunk(json!({}), Some("stop")));
            events(parts, gap)
        }
        "quirky" => {
            let mut parts = vec![chunk(json!({"role": "assistant", "content": null}), None)];
            parts.extend(pieces());
            parts.push(chunk(json!({}), Some("eos_token")));
            parts.push(usage_chunk(11, 2));
            parts.push("data: [DONE]\n\n".to_owned());
            events(parts, gap)
        }
        "slow" => {
            let mut parts: Vec<String> = (0..600).map(|i| chunk(json!({"content": format!("w{i} ")}), None)).collect();
            parts.push(chunk(json!({}), Some("stop")));
            parts.push(usage_chunk(5, 600));
            parts.push("data: [DONE]\n\n".to_owned());
            events(parts, Duration::from_millis(50))
        }
        "tools-wrong" => {
            let results = this_turns_results(&request);
            let parts = if results.is_empty() {
                let call = |index: usize, id: &str, name: &str| {
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]})
                };
                let arguments = |index: usize, text: &str| {
                    json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]})
                };
                vec![
                    chunk(call(0, "provider-id-1", "no_such_tool"), None),
                    chunk(arguments(0, "{}"), None),
                    chunk(call(1, "provider-id-2", "get_weather"), None),
                    chunk(arguments(1, "{\"town\":"), None),
                    chunk(arguments(1, " 3}"), None),
                    chunk(json!({}), Some("tool_calls")),
                    usage_chunk(20, 10),
                    "data: [DONE]\n\n".to_owned(),
                ]
            } else {
                let assistant = request["messages"]
                    .as_array()
                    .and_then(|messages| messages.iter().find(|message| message["tool_calls"].is_array()).cloned());
                let said = json!({"assistant": assistant, "tool": results});
                vec![
                    chunk(json!({"content": said.to_string()}), None),
                    chunk(json!({}), Some("stop")),
                    usage_chunk(30, 5),
                    "data: [DONE]\n\n".to_owned(),
                ]
            };
            events(parts, gap)
        }
        "tools-args" => {
            let messages = request["messages"].as_array().cloned().unwrap_or_default();
            let results = this_turns_results(&request);
            let parts = if results.is_empty() {
                let name = request["tools"][0]["function"]["name"].clone();
                let said = messages.iter().rev().find(|message| message["role"] == "user");
                let arguments = said.and_then(|message| message["content"].as_str()).unwrap_or("{}");
                let call = json!({"tool_calls": [{"index": 0, "id": "provider-id", "type": "function",
                    "function": {"name": name, "arguments": arguments}}]});
                vec![chunk(call, None), chunk(json!({}), Some("tool_calls")), "data: [DONE]\n\n".to_owned()]
            } else {
                let said = Value::from(results.iter().map(|result| result["content"].clone()).collect::<Vec<_>>());
                vec![
                    chunk(json!({"content": said.to_string()}), None),
                    chunk(json!({}), Some("stop")),
                    "data: [DONE]\n\n".to_owned(),
                ]
            };
            events(parts, gap)
        }
        "echo" => {
            let asked = json!({
                "messages": request["messages"], "max_tokens": request["max_tokens"], "temperature": request["temperature"],
            });
            let parts = vec![
                chunk(json!({"content": asked.to_string()}), None),
                chunk(json!({}), Some("stop")),
                usage_chunk(1, 1),
                "data: [DONE]\n\n".to_owned(),
            ];
            events(parts, gap)
        }
        _ => (StatusCode::NOT_FOUND, "no such script").into_response(),
    }
}

/// Serves the scripts on a free loopback port; returns the base URL (`…/v1`).
pub async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new().route("/v1/chat/completions", post(completions));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/v1")
}

/// The scripts as the models a test app may name.
pub const MODELS: [&str; 15] = [
    "tools-wrong",
    "tools-args",
    "fail-500",
    "busy-429",
    "context-400",
    "reject-400",
    "hang",
    "cut-mid-stream",
    "error-event",
    "malformed",
    "no-usage",
    "quirky",
    "slow",
    "echo",
    "none-such",
];
