//! Tool calls: a session's tools, the real local model calling one (`tool_choice: "required"`)
//! through the backend's structured-output path, an HTTP tool served here on loopback that checks
//! the Standard Webhooks signature, the call and its result stored in the reply's parts, streamed
//! as `reply.tool_call` / `reply.tool_result` with resumable ids, in the change feed; every way a
//! tool or a model's call goes wrong stored as a result; URLs and secrets kept in their place.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use shared::config::{LlmConfig, UrlPolicy};
use shared::domain::{Clock, ManualClock, SystemClock};

use crate::common::{TestApp, User, local_llm, unlimited};
use crate::replies::{bedrock_app, scripted_llm, stream};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the tool server received: the headers that matter and the body.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    path: String,
    signature_valid: bool,
    webhook_id: String,
    body: Value,
}

/// Tools on loopback: `/weather` (checks the signature, answers JSON), `/slow` (answers after
/// 3 s), `/broken` (500), `/huge` (10 MB of JSON), `/garbage` (not JSON).
pub(crate) async fn tool_server() -> (String, Arc<Mutex<Vec<Received>>>) {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = received.clone();
    let handler = move |path: &'static str| {
        let log = log.clone();
        move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let hook = standardwebhooks::Webhook::new(SECRET).unwrap();
                let signature_valid = hook.verify(&body, &headers).is_ok();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                log.lock().unwrap().push(Received {
                    path: path.to_owned(),
                    signature_valid,
                    webhook_id,
                    body: body.clone(),
                });
                match path {
                    "/weather" if signature_valid => {
                        let city = body["data"]["arguments"]["city"].clone();
                        axum::Json(json!({"city": city, "temperature_c": 21, "sky": "clear"})).into_response()
                    }
                    "/weather" => (StatusCode::UNAUTHORIZED, "bad signature").into_response(),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        axum::Json(json!({"late": true})).into_response()
                    }
                    "/broken" => (StatusCode::INTERNAL_SERVER_ERROR, "it broke").into_response(),
                    "/huge" => {
                        let padding = "x".repeat(10 * 1024 * 1024);
                        ([("content-type", "application/json")], format!("{{\"padding\": \"{padding}\"}}"))
                            .into_response()
                    }
                    _ => ([("content-type", "application/json")], "this is not json").into_response(),
                }
            }
        }
    };
    let app = Router::new()
        .route("/weather", post(handler("/weather")))
        .route("/slow", post(handler("/slow")))
        .route("/broken", post(handler("/broken")))
        .route("/huge", post(handler("/huge")))
        .route("/garbage", post(handler("/garbage")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

pub(crate) fn weather_tool(base: &str) -> Value {
    json!({
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]},
        "kind": "http",
        "url": format!("{base}/weather"),
        "secret": SECRET,
    })
}

pub(crate) fn dev_tools() -> UrlPolicy {
    UrlPolicy { allowed_prefixes: Vec::new(), allow_private: true }
}

pub(crate) fn structured(mut llm: LlmConfig) -> LlmConfig {
    llm.structured_tools = true;
    llm.max_tokens = 64;
    llm
}

pub(crate) async fn session_with_tools(app: &TestApp, user: &User, tools: Value) -> String {
    let body = app.post(user, "/v1/sessions", json!({"title": "tools", "tools": tools})).await.expect(201).body;
    body["id"].as_str().unwrap().to_owned()
}

fn parts_of(message: &Value) -> Vec<Value> {
    message["parts"].as_array().cloned().unwrap_or_default()
}

/// The whole loop against the real model: a required call of a signed HTTP tool, its result, the
/// model's answer after it — one reply, streamed with resumable ids, stored, in the feed.
#[tokio::test]
async fn the_local_model_calls_a_signed_http_tool_and_answers_after_its_result() {
    let (base, received) = tool_server().await;
    let app = TestApp::with_llm_and_tools(structured(local_llm()), unlimited(), dev_tools()).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([weather_tool(&base)])).await;

    let shown = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    assert_eq!(shown["tools"][0]["name"], "get_weather");
    assert_eq!(shown["tools"][0]["has_secret"], true);
    assert!(!shown.to_string().contains("whsec_"), "the secret is never shown: {shown}");

    let body = json!({"content": "What is the weather in Paris right now?", "tool_choice": "required"});
    let (status, events) = stream(&app, &user, &format!("/v1/sessions/{session}/replies"), Some(body), &[]).await;
    assert_eq!(status, 201);
    let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>(), "ids one apart: {events:?}");
    let names: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    let call_at = names.iter().position(|name| *name == "reply.tool_call").expect("a tool call");
    assert_eq!(names[call_at + 1], "reply.tool_result", "the result right after its call: {names:?}");
    assert_eq!(names.last(), Some(&"reply.completed"), "{names:?}");
    let call = &events[call_at].data;
    assert_eq!(call["name"], "get_weather");
    assert!(call["arguments"]["city"].is_string(), "arguments meet the schema: {call}");
    let result = &events[call_at + 1].data;
    assert_eq!(result["tool_call_id"], call["id"]);
    assert_eq!(result["output"]["temperature_c"], 21, "the tool's answer: {result}");

    // The tool saw a signed Standard Webhooks message with the call's arguments.
    let calls = received.lock().unwrap().clone();
    let first = calls.iter().find(|r| r.path == "/weather").expect("the tool was called");
    assert!(first.signature_valid, "the signature verifies with the tool's secret");
    assert!(!first.webhook_id.is_empty());
    assert_eq!(first.body["type"], "tool.call");
    assert_eq!(first.body["data"]["tool"], "get_weather");
    assert_eq!(first.body["data"]["arguments"], call["arguments"]);

    // Stored: the call, its result and the answer after them, in order; the same after a reload
    // and in the change feed.
    let completed = &events.last().unwrap().data["assistant_message"];
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(&stored, completed, "what was streamed is what is stored");
    let parts = parts_of(&stored);
    assert_eq!(parts[0]["type"], "tool_call", "{parts:?}");
    assert_eq!(parts[1]["type"], "tool_result");
    assert_eq!(parts[1]["tool_call_id"], parts[0]["id"]);
    for pair in parts.windows(2) {
        if pair[0]["type"] == "tool_call" {
            assert_eq!(pair[1]["type"], "tool_result", "no call without its result: {parts:?}");
        }
    }
    let text: String = parts.iter().filter(|p| p["type"] == "text").map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(stored["content"].as_str().unwrap(), text, "content is the text parts joined");
    assert!(["complete", "incomplete"].contains(&stored["status"].as_str().unwrap()), "{stored}");
    assert!(!text.trim().is_empty(), "the model answered after the tool: {stored}");
    let usage = &stored["usage"];
    assert!(usage["output_tokens"].as_u64().unwrap() > 0 && usage["input_tokens"].as_u64().unwrap() > 100, "{usage}");
    let feed = app.get(&user, &format!("/v1/sessions/{session}/changes?after_rev=0")).await.expect(200).body;
    let fed = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["message"]["seq"] == 2)
        .unwrap_or_else(|| panic!("the reply in the feed: {feed}"));
    assert_eq!(parts_of(&fed["message"]), parts, "the feed carries the parts");

    // A stream resumed right after the call continues with its result, no gap, no repeat.
    let after = events[call_at].id.to_string();
    let resume = format!("/v1/sessions/{session}/messages/2/stream");
    let (status, resumed) = stream(&app, &user, &resume, None, &[("last-event-id", after.as_str())]).await;
    assert_eq!(status, 200);
    assert_eq!(resumed[0].id, events[call_at + 1].id);
    assert_eq!(resumed[0].event, "reply.tool_result");
    let rest: Vec<(u64, &str)> = resumed.iter().map(|e| (e.id, e.event.as_str())).collect();
    let expected: Vec<(u64, &str)> = events[call_at + 1..].iter().map(|e| (e.id, e.event.as_str())).collect();
    assert_eq!(rest, expected, "the same events with the same ids");

    // The next turn carries that round back to the real server (in the structured path's text
    // form), which takes it and answers.
    let body = json!({"content": "Thanks. And is it windy?", "max_tokens": 24, "tool_choice": "none"});
    let next = app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201).body;
    let status = next["assistant_message"]["status"].as_str().unwrap();
    assert!(["complete", "incomplete"].contains(&status), "{next}");
}

/// A tool that times out, answers 500, answers 10 MB or answers something that is not JSON: each
/// call's result is the error, the reply still ends, nothing is left streaming.
#[tokio::test]
async fn a_tool_that_fails_becomes_an_error_result_and_the_reply_still_ends() {
    let (base, _) = tool_server().await;
    let app = TestApp::with_llm_and_tools(structured(local_llm()), unlimited(), dev_tools()).await;
    let user = app.user();
    // Only the slow tool has a short timeout (it answers in 3 s): the others' answers must not
    // race a timeout on a busy machine.
    let tool = |name: &str, path: &str| {
        let timeout_ms = if path == "/slow" { 500 } else { 10_000 };
        json!({
            "name": name, "description": format!("Looks up {name}."), "kind": "http",
            "url": format!("{base}{path}"), "timeout_ms": timeout_ms,
            "parameters": {"type": "object", "properties": {}, "additionalProperties": false},
        })
    };
    let cases = [
        ("slow", "/slow", "timeout"),
        ("broken", "/broken", "http_error"),
        ("huge", "/huge", "too_large"),
        ("garbage", "/garbage", "invalid_json"),
    ];
    let tools: Vec<Value> = cases.iter().map(|(name, path, _)| tool(name, path)).collect();
    let session = session_with_tools(&app, &user, json!(tools)).await;
    for (name, _, code) in cases {
        let body = json!({"content": format!("Use {name} for 'x'."), "tool_choice": {"name": name}, "max_tokens": 48});
        let turn = app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201).body;
        let reply = &turn["assistant_message"];
        assert_ne!(reply["status"], "streaming", "{reply}");
        let parts = parts_of(reply);
        let result = parts
            .iter()
            .find(|p| p["type"] == "tool_result" && p["name"] == name)
            .unwrap_or_else(|| panic!("a result: {reply}"));
        assert_eq!(result["error"]["code"], code, "{name}: {result}");
        assert!(result.get("output").is_none(), "{result}");
        let stored =
            app.get(&user, &format!("/v1/sessions/{session}/messages/{}", reply["seq"])).await.expect(200).body;
        assert_eq!(&stored, reply);
    }
}

/// A model that calls a tool it was not offered, or passes arguments the schema refuses: both
/// stored as error results, sent back to the model in the provider's own format (an assistant
/// `tool_calls` message and `tool` messages with the same ids), and the reply ends.
#[tokio::test]
async fn an_unknown_tool_or_bad_arguments_are_error_results_the_model_reads() {
    let (base, received) = tool_server().await;
    let mut llm = scripted_llm().await;
    llm.model = "tools-wrong".to_owned();
    let app = TestApp::with_llm_and_tools(llm, unlimited(), dev_tools()).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([weather_tool(&base)])).await;
    let turn = app.post(&user, &format!("/v1/sessions/{session}/replies"), json!({"content": "hi"})).await.expect(201);
    let reply = &turn.body["assistant_message"];
    assert_eq!(reply["status"], "complete", "{reply}");
    let parts = parts_of(reply);
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["tool_call", "tool_result", "tool_call", "tool_result", "text"], "{parts:?}");
    assert_eq!(parts[1]["error"]["code"], "unknown_tool");
    assert_eq!(parts[3]["error"]["code"], "invalid_arguments");
    assert!(received.lock().unwrap().is_empty(), "no HTTP call for a call that failed its checks");
    // What the model was sent back: its calls under our ids, and one tool message per result.
    let said: Value = serde_json::from_str(parts[4]["text"].as_str().unwrap()).unwrap();
    let sent_calls = said["assistant"]["tool_calls"].as_array().unwrap();
    assert_eq!(sent_calls.len(), 2);
    assert_eq!(sent_calls[0]["id"], parts[0]["id"]);
    assert_eq!(sent_calls[1]["function"]["name"], "get_weather");
    let results = said["tool"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["tool_call_id"], parts[2]["id"]);
    assert!(results[0]["content"].as_str().unwrap().contains("no tool named"), "{results:?}");
    // Usage adds up over both rounds (20 + 30 in, 10 + 5 out).
    assert_eq!(reply["usage"]["input_tokens"], 50);
    assert_eq!(reply["usage"]["output_tokens"], 15);
}

/// Tools are checked when declared: a loopback or private URL without the dev flag, a schema that
/// is not one, a weak secret — each a 400 naming its field; secrets never come back.
#[tokio::test]
async fn tool_declarations_are_checked_and_secrets_stay_hidden() {
    let app = TestApp::with_llm_and_tools(local_llm(), unlimited(), UrlPolicy::default()).await;
    let user = app.user();
    for url in [
        "http://127.0.0.1:9/x",
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/latest",
        "https://localhost/x",
    ] {
        let mut tool = weather_tool("https://tools.example.com");
        tool["url"] = json!(url);
        let refused = app.post(&user, "/v1/sessions", json!({"tools": [tool]})).await.expect(400).body;
        assert_eq!(refused["field"], "tools", "{url}: {refused}");
    }
    let mut schema = weather_tool("https://tools.example.com");
    schema["parameters"] = json!({"type": "object", "properties": 3});
    let refused = app.post(&user, "/v1/sessions", json!({"tools": [schema]})).await.expect(400).body;
    assert_eq!(refused["field"], "tools.parameters", "{refused}");
    let mut weak = weather_tool("https://tools.example.com");
    weak["secret"] = json!("whsec_c2hvcnQ=");
    let refused = app.post(&user, "/v1/sessions", json!({"tools": [weak]})).await.expect(400).body;
    assert_eq!(refused["field"], "tools.secret", "{refused}");

    let created = app
        .post(&user, "/v1/sessions", json!({"tools": [weather_tool("https://tools.example.com")]}))
        .await
        .expect(201)
        .body;
    let id = created["id"].as_str().unwrap();
    for path in [format!("/v1/sessions/{id}"), "/v1/sessions".to_owned(), "/v1/me/export".to_owned()] {
        let body = app.get(&user, &path).await.expect(200).body;
        assert!(!body.to_string().contains("whsec_"), "{path}: {body}");
    }
    // PATCH replaces the list; [] removes it; another user's session is 404.
    let patched = app.patch(&user, &format!("/v1/sessions/{id}"), json!({"tools": []})).await.expect(200).body;
    assert_eq!(patched["tools"], json!([]));
    let stranger = app.user();
    app.patch(&stranger, &format!("/v1/sessions/{id}"), json!({"tools": []})).await.expect(404);
}

/// Bedrock's Converse through the real SDK: the tools offered in `toolConfig`, a streamed
/// `toolUse` run as a call, and the result sent back as a `toolResult` under the same id.
#[tokio::test]
async fn bedrock_tool_use_runs_the_tool_and_sends_the_result_back() {
    let (base, received) = tool_server().await;
    let (app, seen) = bedrock_app(unlimited()).await;
    let app = app.calling_tools(dev_tools());
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([weather_tool(&base)])).await;
    let body = json!({"content": "Weather in Paris?", "model": "claude-tools", "tool_choice": "required"});
    let turn = app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201).body;
    let reply = &turn["assistant_message"];
    let parts = parts_of(reply);
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["tool_call", "tool_result", "text"], "{reply}");
    assert_eq!(parts[0]["arguments"], json!({"city": "Paris"}));
    assert_eq!(parts[1]["output"]["temperature_c"], 21);
    assert!(received.lock().unwrap()[0].signature_valid);
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "two Converse calls");
    let config = &requests[0].0["toolConfig"];
    assert_eq!(config["tools"][0]["toolSpec"]["name"], "get_weather");
    assert!(config["toolChoice"].get("any").is_some(), "required is Converse's any: {config}");
    // The second call carried the round: the assistant's toolUse and the user's toolResult.
    let said: Value = serde_json::from_str(parts[2]["text"].as_str().unwrap()).unwrap();
    let tool_use = &said[0]["content"][0]["toolUse"];
    assert_eq!(tool_use["toolUseId"], parts[0]["id"]);
    assert_eq!(tool_use["input"], json!({"city": "Paris"}));
    let tool_result = &said[1]["content"][0]["toolResult"];
    assert_eq!(tool_result["toolUseId"], parts[0]["id"]);
    assert_eq!(tool_result["content"][0]["json"]["temperature_c"], 21);
    assert_eq!(reply["usage"]["input_tokens"], 70);

    // The next turn tells that reply's round in Converse's blocks, its ids unique by its seq.
    let body = json!({"content": "And tomorrow?", "model": "claude-ok"});
    app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201);
    let requests = seen.0.lock().unwrap().clone();
    let history = requests[2].0["messages"].as_array().unwrap().clone();
    let blocks: Vec<(Value, Value)> = history
        .iter()
        .flat_map(|turn| turn["content"].as_array().unwrap().iter().map(|block| (turn["role"].clone(), block.clone())))
        .collect();
    let id = format!("m2_{}", parts[0]["id"].as_str().unwrap());
    let tool_use = blocks.iter().find(|(_, block)| block.get("toolUse").is_some()).expect("the earlier call");
    assert_eq!((&tool_use.0, &tool_use.1["toolUse"]["toolUseId"]), (&json!("assistant"), &json!(id)), "{history:?}");
    assert_eq!(tool_use.1["toolUse"]["input"], json!({"city": "Paris"}));
    let result = blocks.iter().find(|(_, block)| block.get("toolResult").is_some()).expect("its result");
    assert_eq!((&result.0, &result.1["toolResult"]["toolUseId"]), (&json!("user"), &json!(id)));
    assert_eq!(result.1["toolResult"]["content"][0]["json"]["temperature_c"], 21);
    let last = history.last().unwrap();
    assert_eq!((last["role"].as_str(), last["content"][0]["text"].as_str()), (Some("user"), Some("And tomorrow?")));
}

pub(crate) fn local_time_tool() -> Value {
    json!({
        "name": "local_time",
        "description": "The user's local time, from their device.",
        "kind": "client",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": false},
    })
}

/// Polls the reply until it is paused (within 5 minutes: the model may share busy cores), and
/// returns it.
async fn until_paused(app: &TestApp, user: &User, session: &str) -> Value {
    for _ in 0..3000 {
        let message = app.get(user, &format!("/v1/sessions/{session}/messages/2")).await;
        if message.status == 200 && message.body["status"] == "requires_action" {
            return message.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the reply never paused");
}

/// A client tool pauses the reply (`requires_action`, the call in its parts and on its stream);
/// the client's answer resumes it in place: the same open stream goes on with the result and the
/// model's answer, ids one apart; a second answer changes nothing; another user cannot answer.
#[tokio::test]
async fn a_client_tool_pauses_the_reply_and_the_answer_resumes_the_same_stream() {
    let app = TestApp::with_llm_and_tools(structured(local_llm()), unlimited(), dev_tools()).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([local_time_tool()])).await;
    let path = format!("/v1/sessions/{session}/replies");
    let body = json!({"content": "What time is it for me?", "tool_choice": {"name": "local_time"}});
    let results = format!("/v1/sessions/{session}/messages/2/tool-results");
    let answer = json!({"tool_call_id": "call_1", "output": {"time": "21:15", "timezone": "Europe/Paris"}});
    let both = async {
        tokio::join!(stream(&app, &user, &path, Some(body), &[]), async {
            let paused = until_paused(&app, &user, &session).await;
            let parts = parts_of(&paused);
            assert_eq!(parts.len(), 1, "{paused}");
            assert_eq!((parts[0]["type"].as_str(), parts[0]["id"].as_str()), (Some("tool_call"), Some("call_1")));
            let stranger = app.user();
            app.post(&stranger, &results, answer.clone()).await.expect(404);
            app.post(&user, &results, answer.clone()).await.expect(200).body
        })
    };
    let ((status, events), resumed) =
        tokio::time::timeout(Duration::from_secs(300), both).await.expect("the resumed reply ends its stream");
    assert_eq!(status, 201);
    assert!(
        ["complete", "incomplete"].contains(&resumed["status"].as_str().unwrap()),
        "the last answer resumes the reply and answers at its end: {resumed}"
    );
    let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>(), "one stream, ids one apart: {events:?}");
    let names: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(&names[..3], ["reply.started", "reply.tool_call", "reply.tool_result"], "{names:?}");
    assert_eq!(names.last(), Some(&"reply.completed"), "{names:?}");
    assert_eq!(events[2].data["output"]["time"], "21:15");
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(&stored, &events.last().unwrap().data["assistant_message"]);
    assert_eq!(stored, resumed);
    assert!(!stored["content"].as_str().unwrap().trim().is_empty(), "the model answered after the result: {stored}");
    assert_eq!(stored["variant"], 1, "the same message, resumed in place");

    // Answering again changes nothing; a call the reply never made is 404.
    let again = app.post(&user, &results, answer).await.expect(200).body;
    assert_eq!(again, stored);
    app.post(&user, &results, json!({"tool_call_id": "call_9", "output": 1})).await.expect(404);
    // A stream resumed after the call continues with its result.
    let (_, rest) =
        stream(&app, &user, &format!("/v1/sessions/{session}/messages/2/stream"), None, &[("last-event-id", "2")])
            .await;
    assert_eq!((rest[0].id, rest[0].event.as_str()), (3, "reply.tool_result"));
}

/// A paused reply that is cancelled ends at once, its pending call answered `cancelled`; one the
/// client never answers ends `incomplete` after `CLIENT_TOOL_TIMEOUT`, its call answered `timeout`,
/// and a late answer is refused. Neither stays `requires_action`, and the next turn works.
#[tokio::test]
async fn a_paused_reply_ends_on_cancel_or_when_its_client_never_answers() {
    let app = TestApp::with_llm(structured(local_llm()), unlimited()).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([local_time_tool()])).await;
    let path = format!("/v1/sessions/{session}/replies");
    let body = json!({"content": "What time is it?", "tool_choice": {"name": "local_time"}});
    let turn = app.post(&user, &path, body.clone()).await.expect(201).body;
    let paused = &turn["assistant_message"];
    assert_eq!(paused["status"], "requires_action", "a JSON caller gets the paused reply: {paused}");
    let cancelled =
        app.post(&user, &format!("/v1/sessions/{session}/messages/2/cancel"), json!({})).await.expect(200).body;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let parts = parts_of(&cancelled);
    assert_eq!(parts.last().unwrap()["error"]["code"], "cancelled", "{parts:?}");

    let turn = app.post(&user, &path, body).await.expect(201).body;
    let seq = turn["assistant_message"]["seq"].as_u64().unwrap();
    assert_eq!(turn["assistant_message"]["status"], "requires_action");
    let later = SystemClock.now().plus(shared::domain::CLIENT_TOOL_TIMEOUT + Duration::from_secs(5));
    let later = app.sibling_with_clock(Arc::new(ManualClock::new(later)));
    let ended = later.get(&user, &format!("/v1/sessions/{session}/messages/{seq}")).await.expect(200).body;
    assert_eq!(
        (ended["status"].as_str(), ended["stop_reason"].as_str()),
        (Some("incomplete"), Some("timeout")),
        "{ended}"
    );
    let parts = parts_of(&ended);
    assert_eq!(parts.last().unwrap()["error"]["code"], "timeout", "{parts:?}");
    let late = json!({"tool_call_id": "call_1", "output": {"time": "now"}});
    later.post(&user, &format!("/v1/sessions/{session}/messages/{seq}/tool-results"), late).await.expect(409);
    let next = app.post(&user, &path, json!({"content": "Hello?", "tool_choice": "none"})).await.expect(201).body;
    assert_ne!(next["assistant_message"]["status"], "requires_action");
}

/// A character's own tools (admin API): shown to admins only (the secret never), checked against
/// the URL policy, and called in its chats like a session's.
#[tokio::test]
async fn a_characters_tools_are_called_in_its_chats() {
    let (base, received) = tool_server().await;
    let app = TestApp::with_llm_and_tools(structured(local_llm()), unlimited(), dev_tools()).await;
    let admin = app.admin();
    let body = json!({"id": "forecaster", "name": "Forecaster", "system_prompt": "You report the weather.", "tools": [weather_tool(&base)]});
    let created = app.post(&admin, "/v1/admin/characters", body).await.expect(201).body;
    assert_eq!(created["tools"][0]["has_secret"], true);
    assert!(!created.to_string().contains("whsec_"), "{created}");
    let user = app.user();
    let shown = app.get(&user, "/v1/characters/forecaster").await.expect(200).body;
    assert!(shown.get("tools").is_none(), "users do not see a character's tools: {shown}");
    let session = app.get(&user, "/v1/characters/forecaster/session").await.expect(200).body;
    assert_eq!(session["tools"], json!([]), "the session declares none of its own");
    let id = session["id"].as_str().unwrap();
    let body = json!({"content": "Weather in Oslo?", "tool_choice": {"name": "get_weather"}});
    let turn = app.post(&user, &format!("/v1/sessions/{id}/replies"), body).await.expect(201).body;
    let parts = parts_of(&turn["assistant_message"]);
    assert_eq!(parts[1]["output"]["temperature_c"], 21, "{parts:?}");
    assert!(received.lock().unwrap()[0].signature_valid);

    // Without the dev flag, an admin cannot point a tool at loopback either.
    let strict = app.calling_tools(UrlPolicy::default());
    let body = json!({"tools": [weather_tool(&base)]});
    let refused = strict.patch(&admin, "/v1/admin/characters/forecaster", body).await.expect(400).body;
    assert_eq!(refused["field"], "tools", "{refused}");
}

fn remember_tool() -> Value {
    json!({"name": "remember", "kind": "builtin"})
}

/// A chat offering `remember` to the scripted `tools-args` model, which calls it with the user's
/// message as its arguments.
async fn remembering_chat() -> (TestApp, User, String) {
    let mut llm = scripted_llm().await;
    llm.model = "tools-args".to_owned();
    let app = TestApp::with_llm_and_tools(llm, unlimited(), UrlPolicy::default()).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([remember_tool()])).await;
    (app, user, session)
}

/// The result of the reply's one call, after a turn of `content`.
async fn remembered(app: &TestApp, user: &User, session: &str, content: Value) -> (Value, Value) {
    let body = json!({"content": content.to_string()});
    let turn = app.post(user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201);
    let reply = turn.body["assistant_message"].clone();
    assert_eq!(reply["status"], "complete", "{reply}");
    let parts = parts_of(&reply);
    assert_eq!(parts[0]["name"], "remember", "{parts:?}");
    (parts[1].clone(), reply)
}

/// The built-in `remember` tool called by the real model: the memory is written through the
/// memories' rules with origin `extracted` and the turn as its source, and an edit of that turn
/// takes it, as it does an extracted memory.
#[tokio::test]
async fn the_local_model_remembers_through_the_builtin_tool() {
    let app = TestApp::with_llm_and_tools(structured(local_llm()), unlimited(), UrlPolicy::default()).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([remember_tool()])).await;
    let shown = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    let tool = &shown["tools"][0];
    assert_eq!(tool["kind"], "builtin");
    assert!(tool["description"].as_str().unwrap().contains("Remember"), "its own description: {tool}");
    assert_eq!(tool["parameters"]["required"], json!(["content"]), "its own schema: {tool}");

    let body =
        json!({"content": "My name is Anna and I work as a nurse in Leeds.", "tool_choice": {"name": "remember"}});
    let turn = app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201);
    let reply = &turn.body["assistant_message"];
    let parts = parts_of(reply);
    assert_eq!(parts[0]["type"], "tool_call", "{reply}");
    assert_eq!(parts[0]["name"], "remember");
    let said = parts[0]["arguments"]["content"].as_str().unwrap();
    let result = &parts[1];
    assert_eq!(result["tool_call_id"], parts[0]["id"]);
    assert_eq!(result["output"]["remembered"], true, "{result}");
    assert_eq!(result["output"]["new"], true, "{result}");
    let id = result["output"]["memory_id"].as_str().unwrap();
    let memory = app.get(&user, &format!("/v1/memories/{id}")).await.expect(200).body;
    assert_eq!(memory["content"], said.trim());
    assert_eq!(memory["origin"], "extracted");
    assert_eq!(memory["source"], json!({"session_id": session, "from_seq": 1, "to_seq": 2}));
    assert!(["complete", "incomplete"].contains(&reply["status"].as_str().unwrap()), "the reply ended: {reply}");

    app.patch(&user, &format!("/v1/sessions/{session}/messages/1"), json!({"content": "Never mind."}))
        .await
        .expect(200);
    app.get(&user, &format!("/v1/memories/{id}")).await.expect(404);
}

/// `remember`'s rules, with the call's arguments chosen by the test: an identical memory is not
/// written twice, the session scope is the session's, arguments the memories API refuses are an
/// error result, the cap of a scope and a memory the user deleted are respected.
#[tokio::test]
async fn remember_follows_the_memories_rules() {
    let (app, user, session) = remembering_chat().await;
    let fact = json!({"content": "The user's name is Anna.", "importance": 8});

    let (first, reply) = remembered(&app, &user, &session, fact.clone()).await;
    assert_eq!(first["output"]["new"], true, "{first}");
    let id = first["output"]["memory_id"].as_str().unwrap().to_owned();
    let said: Value = serde_json::from_str(reply["content"].as_str().unwrap()).unwrap();
    assert!(said[0].as_str().unwrap().contains(&id), "the model read the result: {said}");
    let memory = app.get(&user, &format!("/v1/memories/{id}")).await.expect(200).body;
    assert_eq!((memory["importance"].clone(), memory["memory_type"].clone()), (json!(8), json!("fact")));
    assert_eq!(memory["session_id"], Value::Null, "the user's scope by default");
    assert_eq!(memory["source"]["to_seq"], 2);

    let (again, _) = remembered(&app, &user, &session, fact.clone()).await;
    assert_eq!((again["output"]["memory_id"].as_str(), &again["output"]["new"]), (Some(id.as_str()), &json!(false)));

    let local = json!({"content": "We are on the third chapter.", "scope": "session", "memory_type": "fact"});
    let (scoped, _) = remembered(&app, &user, &session, local).await;
    let scoped_id = scoped["output"]["memory_id"].as_str().unwrap();
    let memory = app.get(&user, &format!("/v1/memories/{scoped_id}")).await.expect(200).body;
    assert_eq!(memory["session_id"], session.as_str());

    let (blank, _) = remembered(&app, &user, &session, json!({"content": "   "})).await;
    assert_eq!(blank["error"]["code"], "invalid_arguments", "{blank}");
    let (odd, _) = remembered(&app, &user, &session, json!({"content": "x", "importance": 11})).await;
    assert_eq!(odd["error"]["code"], "invalid_arguments", "the schema's bounds: {odd}");

    app.delete(&user, &format!("/v1/memories/{id}")).await.expect(200);
    let (forgotten, _) = remembered(&app, &user, &session, fact).await;
    assert_eq!(forgotten["error"]["code"], "forgotten", "a deleted memory is not written again: {forgotten}");
    let listed = app.get(&user, "/v1/memories?limit=100").await.expect(200).body;
    assert_eq!(listed["total"], 0, "the deleted memory stays deleted: {listed}");

    // A built-in tool is named by its name and takes no schema of the caller's.
    for tool in [
        json!({"name": "recall", "kind": "builtin"}),
        json!({"name": "remember", "kind": "builtin", "parameters": {"type": "object"}}),
        json!({"name": "remember", "kind": "builtin", "url": "https://tools.example.com/x"}),
    ] {
        let refused = app.post(&user, "/v1/sessions", json!({"title": "t", "tools": [tool]})).await.expect(400).body;
        assert!(refused.to_string().contains("tools"), "{refused}");
    }
}

/// An earlier reply's calls and results reach the model in the provider's own format on the next
/// turns: the assistant's `tool_calls`, a `tool` message for each under the same id (made unique
/// by the reply's seq), then what the reply said after them.
#[tokio::test]
async fn an_earlier_replys_tool_round_is_sent_back_as_calls_and_results() {
    let (app, user, session) = remembering_chat().await;
    let fact = json!({"content": "The user's name is Anna."});
    let (result, reply) = remembered(&app, &user, &session, fact.clone()).await;
    let call_id = format!("m2_{}", result["tool_call_id"].as_str().unwrap());

    let body = json!({"content": "What is my name?", "model": "echo"});
    let turn = app.post(&user, &format!("/v1/sessions/{session}/replies"), body).await.expect(201).body;
    let asked: Value = serde_json::from_str(turn["assistant_message"]["content"].as_str().unwrap()).unwrap();
    let messages = asked["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "user"], "{messages:?}");
    assert_eq!(messages[1]["content"], fact.to_string());
    let call = &messages[2]["tool_calls"][0];
    assert_eq!((&call["id"], &call["function"]["name"]), (&json!(call_id), &json!("remember")), "{call}");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, fact);
    assert_eq!(messages[3]["tool_call_id"], call_id.as_str());
    let output: Value = serde_json::from_str(messages[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(output, result["output"], "the stored result, as the model read it");
    assert_eq!(messages[4]["content"], reply["content"], "the text after the round");
    assert_eq!(messages[5]["content"], "What is my name?");
}
