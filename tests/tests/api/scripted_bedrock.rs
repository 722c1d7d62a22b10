//! An endpoint that answers Bedrock's ConverseStream the way Bedrock does on the wire: AWS
//! event-stream frames (`application/vnd.amazon.eventstream`, encoded by aws-smithy-eventstream),
//! and JSON errors with `x-amzn-ErrorType`. So `aws-sdk-bedrockruntime`'s own signer, decoder and
//! error parsing run offline. The model id picks the script:
//!
//! - `claude-ok`: two text deltas, `end_turn`, usage 12 in / 4 out;
//! - `claude-max`: one delta, `max_tokens`, usage;
//! - `claude-throttled`: HTTP 429 `ThrottlingException`;
//! - `claude-too-long`: HTTP 400 `ValidationException` ("Input is too long…");
//! - `claude-stream-error`: a delta, then a `modelStreamErrorException` frame;
//! - `claude-tools`: offered tools, calls `get_weather` with `{"city": "Paris"}` (its input in two
//!   deltas, `tool_use`); asked again with a `toolResult`, answers with the request's last two
//!   messages as JSON text.

use std::sync::{Arc, Mutex};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const TEXT: [&str; 2] = ["Hello", " from Bedrock"];

fn frame(kind: &str, name: &str, payload: Value) -> Vec<u8> {
    let type_header = if kind == "event" { ":event-type" } else { ":exception-type" };
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(":message-type", HeaderValue::String(kind.to_owned().into())))
        .add_header(Header::new(type_header, HeaderValue::String(name.to_owned().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut bytes = Vec::new();
    write_message_to(&message, &mut bytes).expect("encode a frame");
    bytes
}

fn event(name: &str, payload: Value) -> Vec<u8> {
    frame("event", name, payload)
}

fn delta(text: &str) -> Vec<u8> {
    event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": text}}))
}

fn stream(frames: Vec<Vec<u8>>) -> Response {
    ([(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")], Body::from(frames.concat())).into_response()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, [("x-amzn-errortype", kind)], axum::Json(json!({"message": message}))).into_response()
}

/// What the endpoint saw: the request bodies, and whether each was signed.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<(Value, bool)>>>);

async fn converse_stream(
    State(seen): State<Seen>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    if let Ok(mut seen) = seen.0.lock() {
        seen.push((serde_json::from_slice(&body).unwrap_or_default(), signed));
    }
    let start = event("messageStart", json!({"role": "assistant"}));
    let usage = |input: u64, output: u64| {
        event(
            "metadata",
            json!({"usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output}, "metrics": {"latencyMs": 5}}),
        )
    };
    match model.as_str() {
        "claude-ok" => stream(vec![
            start,
            delta(TEXT[0]),
            delta(TEXT[1]),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("messageStop", json!({"stopReason": "end_turn"})),
            usage(12, 4),
        ]),
        "claude-max" => {
            stream(vec![start, delta(TEXT[0]), event("messageStop", json!({"stopReason": "max_tokens"})), usage(12, 1)])
        }
        "claude-throttled" => {
            error(StatusCode::TOO_MANY_REQUESTS, "ThrottlingException", "Too many requests, please wait")
        }
        "claude-too-long" => {
            error(StatusCode::BAD_REQUEST, "ValidationException", "Input is too long for requested model.")
        }
        "claude-stream-error" => stream(vec![
            start,
            delta(TEXT[0]),
            frame("exception", "modelStreamErrorException", json!({"message": "the model stream broke"})),
        ]),
        "claude-tools" => {
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            let messages = request["messages"].as_array().cloned().unwrap_or_default();
            let answered = messages.iter().any(|message| message["content"].to_string().contains("toolResult"));
            if answered {
                let said = json!(messages[messages.len().saturating_sub(2)..]).to_string();
                stream(vec![
                    start,
                    delta(&said),
                    event("contentBlockStop", json!({"contentBlockIndex": 0})),
                    event("messageStop", json!({"stopReason": "end_turn"})),
                    usage(40, 6),
                ])
            } else {
                let input = |text: &str| {
                    event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": text}}}))
                };
                stream(vec![
                    start,
                    event(
                        "contentBlockStart",
                        json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_bedrock_1", "name": "get_weather"}}}),
                    ),
                    input("{\"city\":"),
                    input(" \"Paris\"}"),
                    event("contentBlockStop", json!({"contentBlockIndex": 0})),
                    event("messageStop", json!({"stopReason": "tool_use"})),
                    usage(30, 8),
                ])
            }
        }
        _ => error(StatusCode::NOT_FOUND, "ResourceNotFoundException", "no such model"),
    }
}

/// Serves the scripts on a free loopback port: the endpoint URL, and what it will have seen.
pub async fn start() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Seen::default();
    let app = Router::new().route("/model/{model}/converse-stream", post(converse_stream)).with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), seen)
}

pub const MODELS: [&str; 6] =
    ["claude-ok", "claude-max", "claude-throttled", "claude-too-long", "claude-stream-error", "claude-tools"];
