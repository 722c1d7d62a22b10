//! `POST /v1/sessions/{id}/replies` and the reply routes: the local model's real answers, streamed
//! and stored; resume, cancel, regenerate, idempotency; and each provider failure, injected by a
//! scripted endpoint that speaks the real wire format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};
use shared::config::{LimitsConfig, LlmConfig};
use shared::domain::{ManualClock, RateLimits};

use crate::common::{Resp, TestApp, User, local_llm, quota, unlimited};
use crate::scripted_model;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    pub(crate) id: u64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

fn parse_events(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().parse().ok();
                } else if let Some(value) = line.strip_prefix("event:") {
                    event = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            Some(Sse { id: id?, event: event?, data: serde_json::from_str(&data).ok()? })
        })
        .collect()
}

fn deltas(events: &[Sse]) -> String {
    events.iter().filter(|e| e.event == "reply.delta").map(|e| e.data["text"].as_str().unwrap().to_owned()).collect()
}

fn request(user: &User, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder =
        Request::builder().method(method).uri(path).header("authorization", format!("Bearer {}", user.token));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    match body {
        Some(body) => builder.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap()
}

pub(crate) async fn stream(
    app: &TestApp,
    user: &User,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Vec<Sse>) {
    let mut all = vec![("accept", "text/event-stream")];
    all.extend_from_slice(headers);
    let method = if body.is_some() { Method::POST } else { Method::GET };
    let (status, response_headers, text) = app.send_raw(request(user, method, path, body, &all)).await;
    if status.is_success() {
        assert_eq!(response_headers["content-type"], "text/event-stream", "{text}");
    }
    (status.as_u16(), parse_events(&text))
}

fn replies_path(session: &str) -> String {
    format!("/v1/sessions/{session}/replies")
}

pub(crate) async fn scripted_llm() -> LlmConfig {
    let url = scripted_model::start().await;
    let mut llm = LlmConfig::openai(url, "quirky");
    llm.models = scripted_model::MODELS.iter().map(|name| (*name).to_owned()).collect();
    llm.timeout_secs = 1;
    llm
}

async fn scripted_app(limits: LimitsConfig) -> TestApp {
    TestApp::with_llm(scripted_llm().await, limits).await
}

/// The first chat of a new user: the local model answers, and the turn is stored as it was sent.
#[tokio::test]
async fn a_reply_comes_from_the_local_model_and_is_stored() {
    let app = TestApp::with_llm(local_llm(), quota(10)).await;
    let user = app.user();
    let session = app.session(&user, "first chat").await;
    let turn = app
        .post(&user, &replies_path(&session), json!({"content": "Say hello in one short sentence."}))
        .await
        .expect(201);
    let (user_message, reply) = (&turn.body["user_message"], &turn.body["assistant_message"]);
    assert_eq!((user_message["seq"].as_u64(), user_message["role"].as_str()), (Some(1), Some("user")));
    assert_eq!((reply["seq"].as_u64(), reply["role"].as_str()), (Some(2), Some("assistant")));
    assert!(["complete", "incomplete"].contains(&reply["status"].as_str().unwrap()), "{reply}");
    assert!(!reply["content"].as_str().unwrap().trim().is_empty(), "a real answer: {reply}");
    assert_eq!(reply["model"], kit::local_model::MODEL_ALIAS);
    let usage = &reply["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 10 && usage["output_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage["estimated"], false, "llama.cpp reports usage in the stream");
    assert_eq!(turn.body["limits"]["remaining"], 9);
    assert_eq!(turn.header("x-ratelimit-remaining"), Some("9"));
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(&stored, reply, "what was answered is what is stored");
    let summary = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    assert_eq!(summary["last_seq"], 2);
    let preview = summary["last_message"]["preview"].as_str().unwrap();
    assert!(reply["content"].as_str().unwrap().starts_with(preview), "the summary shows the reply's text: {summary}");
    let day = &app.get(&user, "/v1/usage").await.expect(200).body;
    let models = day["by_model"].as_array().unwrap();
    let row = models.iter().find(|row| row["model"] == kit::local_model::MODEL_ALIAS).expect("the reply's model");
    assert_eq!(row["output_tokens"], usage["output_tokens"], "usage lands in /v1/usage: {day}");
}

/// Streamed: `reply.started`, deltas, `reply.completed`, ids one apart; the deltas join to the
/// stored text; a resume with Last-Event-ID sends exactly the rest.
#[tokio::test]
async fn a_streamed_reply_joins_to_the_stored_text_and_resumes_exactly() {
    let app = TestApp::with_llm(local_llm(), unlimited()).await;
    let user = app.user();
    let session = app.session(&user, "stream").await;
    let body = json!({"content": "Name three colours, with a word about each.", "max_tokens": 40});
    let (status, events) = stream(&app, &user, &replies_path(&session), Some(body), &[]).await;
    assert_eq!(status, 201);
    let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>(), "ids increase by one");
    assert_eq!(events[0].event, "reply.started");
    assert_eq!(events[0].data["assistant_message"]["status"], "streaming");
    assert_eq!(events[0].data["user_message"]["seq"], 1);
    let last = events.last().unwrap();
    assert_eq!(last.event, "reply.completed", "{events:?}");
    let text = deltas(&events);
    assert!(events.len() > 4, "several deltas: {events:?}");
    assert_eq!(last.data["assistant_message"]["content"], text.as_str());
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(stored["content"], text.as_str(), "the concatenated deltas are the stored content");

    let stream_path = format!("/v1/sessions/{session}/messages/2/stream");
    let (status, resumed) = stream(&app, &user, &stream_path, None, &[("last-event-id", "3")]).await;
    assert_eq!(status, 200);
    assert_eq!(resumed.first().map(|e| e.id), Some(4), "after event 3: {resumed:?}");
    let received: String = events
        .iter()
        .filter(|e| e.event == "reply.delta" && e.id <= 3)
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(format!("{received}{}", deltas(&resumed)), text, "the rest, exactly");
    assert_eq!(resumed.last().unwrap().id, last.id, "the same ids as the first stream");
    let (_, whole) = stream(&app, &user, &stream_path, None, &[]).await;
    assert_eq!(deltas(&whole), text);
}

/// A retry with the same key never generates twice: the finished turn is replayed.
#[tokio::test]
async fn a_retried_reply_with_the_same_key_is_replayed_not_generated_again() {
    let app = TestApp::with_llm(local_llm(), quota(10)).await;
    let user = app.user();
    let session = app.session(&user, "retry").await;
    let body = json!({"content": "Hi!"});
    let headers = [("idempotency-key", "turn-1")];
    let send = || async {
        let (status, headers, text) =
            app.send_raw(request(&user, Method::POST, &replies_path(&session), Some(body.clone()), &headers)).await;
        (status.as_u16(), headers, serde_json::from_str::<Value>(&text).unwrap())
    };
    let (first_status, _, first) = send().await;
    let (second_status, second_headers, second) = send().await;
    assert_eq!((first_status, second_status), (201, 200));
    assert_eq!(second_headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(second["assistant_message"], first["assistant_message"], "the same reply, not a second one");
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["last_seq"], 2, "one turn stored: {log}");
    let other = json!({"content": "Something else"});
    let refused = app.send(request(&user, Method::POST, &replies_path(&session), Some(other), &headers)).await;
    refused.expect_error(409, "conflict");
}

/// Regenerate: a new variant at the same seq, the old one kept; only the latest reply.
#[tokio::test]
async fn regenerate_adds_a_variant_at_the_same_seq_and_keeps_the_earlier_one() {
    let app = TestApp::with_llm(local_llm(), unlimited()).await;
    let user = app.user();
    let session = app.session(&user, "variants").await;
    let first = app.post(&user, &replies_path(&session), json!({"content": "Tell me a fact."})).await.expect(201).body;
    let path = format!("/v1/sessions/{session}/messages/2/regenerate");
    let second = app.post(&user, &path, json!({"temperature": 1.2})).await.expect(201).body;
    let reply = &second["assistant_message"];
    assert_eq!(
        (reply["seq"].as_u64(), reply["variant"].as_u64(), reply["variant_count"].as_u64()),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(reply["is_regenerated"], true);
    assert_eq!(reply["id"], first["assistant_message"]["id"], "the same message, a new generation");
    assert!(!reply["content"].as_str().unwrap().is_empty());
    let variants = app.get(&user, &format!("/v1/sessions/{session}/messages/2/variants")).await.expect(200).body;
    let data = variants["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["content"], first["assistant_message"]["content"], "the first variant is kept");
    assert_eq!((data[0]["variant"].as_u64(), data[0]["variant_count"].as_u64()), (Some(1), Some(2)));
    assert_eq!(data[1], *reply);
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["last_seq"], 2, "the log stays gapless: {log}");
    assert_eq!(log["data"].as_array().unwrap().len(), 2);
    let user_seq = format!("/v1/sessions/{session}/messages/1/regenerate");
    app.post(&user, &user_seq, json!({})).await.expect_error(409, "conflict");
    let stranger = app.user();
    app.post(&stranger, &path, json!({})).await.expect_error(404, "not_found");
}

/// Cancel from another instance stops the reply within about a second; the partial text stays
/// and the stream ends with it; cancelling again changes nothing.
#[tokio::test]
async fn cancel_stops_a_streaming_reply_and_keeps_its_text() {
    let app = scripted_app(unlimited()).await;
    let other_instance = app.sibling();
    let user = app.user();
    let session = app.session(&user, "cancel").await;
    let body = json!({"content": "Talk for a long while.", "model": "slow"});
    let streaming = {
        let (app, user, session) = (app.clone(), user.clone(), session.clone());
        tokio::spawn(async move { stream(&app, &user, &replies_path(&session), Some(body), &[]).await })
    };
    let message = format!("/v1/sessions/{session}/messages/2");
    let started = Instant::now();
    while app.get(&user, &message).await.body["content"].as_str().is_none_or(str::is_empty) {
        assert!(started.elapsed() < Duration::from_secs(10), "no checkpoint arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled_at = Instant::now();
    let cancelled = other_instance.post(&user, &format!("{message}/cancel"), json!({})).await.expect(200).body;
    assert_eq!(cancelled["status"], "cancelled");
    let (status, events) = streaming.await.unwrap();
    let stopped_in = cancelled_at.elapsed();
    assert_eq!(status, 201);
    assert!(stopped_in < Duration::from_millis(2500), "stopped {stopped_in:?} after the cancel");
    let last = events.last().unwrap();
    assert_eq!(last.event, "reply.completed");
    assert_eq!(last.data["assistant_message"]["status"], "cancelled");
    let stored = app.get(&user, &message).await.expect(200).body;
    assert_eq!(stored["status"], "cancelled");
    assert_eq!(stored["content"], deltas(&events).as_str(), "the partial text stays, as it was streamed");
    assert!(stored["content"].as_str().unwrap().len() < 600 * 4, "it did stop early");
    let again = app.post(&user, &format!("{message}/cancel"), json!({})).await.expect(200).body;
    assert_eq!(again, stored, "cancelling an ended reply is a no-op");
    app.post(&user, &format!("/v1/sessions/{session}/messages/1/cancel"), json!({}))
        .await
        .expect_error(409, "conflict");
}

async fn failed_before_output(app: &TestApp, model: &str, status: u16, code: &str) -> Resp {
    let user = app.user();
    let session = app.session(&user, model).await;
    let response = app.post(&user, &replies_path(&session), json!({"content": "Hello?", "model": model})).await;
    let response = response.expect_error(status, code);
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    let data = log["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "the user message stays stored: {log}");
    assert_eq!(data[0]["content"], "Hello?");
    assert_eq!(data[1]["status"], "failed");
    assert_eq!(data[1]["error"]["code"], code);
    assert_eq!(data[1]["content"], "");
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], 0, "the quota unit is given back: {limits}");
    response
}

#[tokio::test]
async fn provider_failures_before_output_map_to_statuses_and_give_the_quota_back() {
    let app = scripted_app(quota(5)).await;
    let unavailable = failed_before_output(&app, "fail-500", 502, "llm_error").await;
    assert_eq!(unavailable.body["retryable"], true);
    let busy = failed_before_output(&app, "busy-429", 503, "llm_busy").await;
    assert_eq!(busy.header("retry-after"), Some("7"));
    let started = Instant::now();
    failed_before_output(&app, "hang", 504, "llm_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(5), "LLM_TIMEOUT_SECS=1 bounds the wait");
    let long = failed_before_output(&app, "context-400", 422, "context_too_long").await;
    assert_eq!(long.body["retryable"], false);
    let rejected = failed_before_output(&app, "reject-400", 502, "llm_error").await;
    assert_eq!(rejected.body["retryable"], false);

    let user = app.user();
    let session = app.session(&user, "bad model").await;
    let bad = app.post(&user, &replies_path(&session), json!({"content": "x", "model": "gpt-9"})).await;
    assert_eq!(bad.expect_error(400, "invalid_input").body["field"], "model");
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["last_seq"], 0, "a bad request stores nothing");
}

/// After output started: `reply.failed`, the partial text kept, usage estimated.
#[tokio::test]
async fn a_stream_that_breaks_after_output_fails_with_its_partial_text() {
    let app = scripted_app(unlimited()).await;
    for (model, code) in [("cut-mid-stream", "llm_error"), ("error-event", "llm_error"), ("malformed", "llm_error")] {
        let user = app.user();
        let session = app.session(&user, model).await;
        let (status, events) =
            stream(&app, &user, &replies_path(&session), Some(json!({"content": "Hi", "model": model})), &[]).await;
        assert_eq!(status, 201, "{model}");
        let last = events.last().unwrap();
        assert_eq!(last.event, "reply.failed", "{model}: {events:?}");
        assert_eq!(last.data["error"]["code"], code);
        assert_eq!(last.data["error"]["retryable"], true);
        let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
        assert_eq!(stored["status"], "failed");
        assert_eq!(stored["content"], deltas(&events).as_str(), "{model}: the partial text is kept");
        assert!(!deltas(&events).is_empty());
        assert_eq!(stored["usage"]["estimated"], true, "{model}");
    }
}

/// Real servers' quirks are tolerated; a stream without usage stores an estimate.
#[tokio::test]
async fn quirks_are_tolerated_and_missing_usage_is_estimated() {
    let app = scripted_app(unlimited()).await;
    let user = app.user();
    let session = app.session(&user, "quirks").await;
    let quirky = app.post(&user, &replies_path(&session), json!({"content": "Hi"})).await.expect(201).body;
    let reply = &quirky["assistant_message"];
    assert_eq!(reply["content"], scripted_model::TEXT.concat());
    assert_eq!(reply["status"], "complete");
    assert_eq!(reply["stop_reason"], "eos_token");
    assert_eq!(reply["model"], "quirky", "the model asked for, not the alias answered");
    assert_eq!(
        (reply["usage"]["input_tokens"].as_u64(), reply["usage"]["output_tokens"].as_u64()),
        (Some(11), Some(2))
    );
    assert_eq!(reply["usage"]["estimated"], false);
    let estimated = app.post(&user, &replies_path(&session), json!({"content": "Again", "model": "no-usage"})).await;
    let usage = &estimated.expect(201).body["assistant_message"]["usage"];
    assert_eq!(usage["estimated"], true, "{usage}");
    assert!(usage["input_tokens"].as_u64().unwrap() > 0 && usage["output_tokens"].as_u64().unwrap() > 0);
}

/// A conversation that cannot fit even trimmed is refused before the model is asked.
#[tokio::test]
async fn a_context_over_the_budget_is_422_and_nothing_is_charged() {
    let url = scripted_model::start().await;
    let mut llm = LlmConfig::openai(url, "quirky");
    llm.context_tokens = 60;
    llm.max_tokens = 50;
    let app = TestApp::with_llm(llm, quota(5)).await;
    let user = app.user();
    let session = app.session(&user, "long").await;
    let long = "word ".repeat(100);
    app.post(&user, &replies_path(&session), json!({"content": long})).await.expect_error(422, "context_too_long");
    let limits = app.get(&user, "/v1/limits").await.expect(200).body;
    assert_eq!(limits["messages_limit"]["used"], 0, "{limits}");
}

#[tokio::test]
async fn without_a_model_replies_are_503_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "no model").await;
    app.post(&user, &replies_path(&session), json!({"content": "Hi"})).await.expect_error(503, "service_unavailable");
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["last_seq"], 0);
}

pub(crate) async fn bedrock_app(limits: LimitsConfig) -> (TestApp, crate::scripted_bedrock::Seen) {
    let (endpoint, seen) = crate::scripted_bedrock::start().await;
    let mut llm = LlmConfig::openai("", "claude-ok");
    llm.provider = shared::config::LlmProvider::Bedrock;
    llm.models = crate::scripted_bedrock::MODELS.iter().map(|name| (*name).to_owned()).collect();
    llm.timeout_secs = 5;
    (TestApp::with_bedrock(&endpoint, llm, limits).await, seen)
}

/// Bedrock's ConverseStream through the real SDK (signed, decoded from event-stream frames):
/// text, stop reason and usage mapped; a greeting-first log still makes a valid conversation.
#[tokio::test]
async fn bedrock_replies_stream_through_the_sdk_with_usage_and_stop_reason() {
    let (app, seen) = bedrock_app(quota(5)).await;
    let user = app.user();
    let session = app.session(&user, "bedrock").await;
    app.append(&user, &session, "assistant", "Welcome back!").await;
    let (status, events) = stream(&app, &user, &replies_path(&session), Some(json!({"content": "Hi"})), &[]).await;
    assert_eq!(status, 201);
    assert_eq!(deltas(&events), crate::scripted_bedrock::TEXT.concat());
    let reply = &events.last().unwrap().data["assistant_message"];
    assert_eq!((reply["status"].as_str(), reply["stop_reason"].as_str()), (Some("complete"), Some("end_turn")));
    assert_eq!(
        (reply["usage"]["input_tokens"].as_u64(), reply["usage"]["output_tokens"].as_u64()),
        (Some(12), Some(4))
    );
    assert_eq!(reply["usage"]["estimated"], false);
    let (request, signed) = seen.0.lock().unwrap()[0].clone();
    assert!(signed, "SigV4-signed by the SDK");
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "user", "a conversation starts with the user: {request}");
    assert!(request["system"].to_string().contains("Welcome back!"), "the greeting is told in the system prompt");
    assert_eq!(request["inferenceConfig"]["maxTokens"], 1024);

    let max =
        app.post(&user, &replies_path(&session), json!({"content": "More", "model": "claude-max"})).await.expect(201);
    assert_eq!(max.body["assistant_message"]["status"], "incomplete");
    assert_eq!(max.body["assistant_message"]["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn bedrock_failures_map_like_every_provider() {
    let (app, _) = bedrock_app(quota(5)).await;
    let busy = failed_before_output(&app, "claude-throttled", 503, "llm_busy").await;
    assert!(busy.header("retry-after").is_some());
    failed_before_output(&app, "claude-too-long", 422, "context_too_long").await;
    let user = app.user();
    let session = app.session(&user, "broken").await;
    let body = json!({"content": "Hi", "model": "claude-stream-error"});
    let (status, events) = stream(&app, &user, &replies_path(&session), Some(body), &[]).await;
    assert_eq!(status, 201);
    let last = events.last().unwrap();
    assert_eq!(last.event, "reply.failed");
    assert_eq!(last.data["error"]["code"], "llm_error");
    assert_eq!(last.data["assistant_message"]["content"], crate::scripted_bedrock::TEXT[0]);
}

/// A reply turn counts against the append rate (with or without content); regenerate has its
/// own, smaller limit. On a fixed clock, so no minute boundary splits the count.
#[tokio::test]
async fn replies_count_against_the_append_rate_and_regenerate_against_its_own() {
    let limits = LimitsConfig {
        daily_quota: 100,
        rate: RateLimits { append: 2, read: 0, other: 0, regenerate: 1 },
        ..LimitsConfig::default()
    };
    let clock = Arc::new(ManualClock::new("2426-11-21T10:00:05.000000Z".parse().unwrap()));
    let app = TestApp::with_llm_and_clock(scripted_llm().await, limits, clock.clone()).await;
    let user = app.user();
    let session = app.session(&user, "rates").await;
    app.post(&user, &replies_path(&session), json!({"content": "one"})).await.expect(201);
    app.post(&user, &replies_path(&session), json!({})).await.expect(201);
    let third = app.post(&user, &replies_path(&session), json!({"content": "three"})).await;
    assert!(third.expect_error(429, "rate_limit").header("retry-after").is_some());
    let regenerate = format!("/v1/sessions/{session}/messages/3/regenerate");
    app.post(&user, &regenerate, json!({})).await.expect(201);
    app.post(&user, &regenerate, json!({})).await.expect_error(429, "rate_limit");
    clock.advance(Duration::from_secs(60));
    app.post(&user, &regenerate, json!({})).await.expect(201);
    app.post(&user, &replies_path(&session), json!({"content": "next minute"})).await.expect(201);
}

/// Replies to the log as it stands, twice: the log then ends in several assistant messages in a
/// row, which the prompt joins into one turn (llama.cpp refuses two assistant turns at the end).
#[tokio::test]
async fn replies_without_content_answer_a_log_that_ends_with_the_assistant() {
    let app = TestApp::with_llm(local_llm(), unlimited()).await;
    let user = app.user();
    let session = app.session(&user, "greeting first").await;
    app.append(&user, &session, "assistant", "Welcome back! What shall we talk about?").await;
    for expected_seq in [2, 3] {
        let turn = app.post(&user, &replies_path(&session), json!({"max_tokens": 16})).await.expect(201).body;
        assert_eq!(turn["user_message"], Value::Null);
        assert_eq!(turn["assistant_message"]["seq"], expected_seq);
        assert_ne!(turn["assistant_message"]["status"], "failed", "{turn}");
    }
}
