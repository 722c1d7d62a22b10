//! The realtime functions as AWS runs them, against DynamoDB Local: the WebSocket API's events
//! (events/realtime/, the same files `cargo lambda invoke` takes) through the socket handler, the
//! stream fan-out's records, and delivery through the `@connections` API. API Gateway cannot run
//! here, so a small HTTP server speaks its `@connections` protocol, answering 410 (`GoneException`)
//! and 429 (`LimitExceededException`) where a test asks it to.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::event::dynamodb::Event;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use realtime::gateway::ApiGateway;
use realtime::socket::Socket;
use serde_json::Value;
use shared::domain::Peer;
use shared::realtime::Realtime;

use crate::common::{TestApp, User, endpoint};

/// What the `@connections` stand-in was sent, and how it answers.
#[derive(Default)]
struct Connections {
    frames: Mutex<Vec<(String, Value)>>,
    gone: Mutex<HashSet<String>>,
    /// Connection id → how many more posts answer 429 first.
    busy: Mutex<HashMap<String, u32>>,
}

impl Connections {
    fn frames_to(&self, connection: &str) -> Vec<Value> {
        self.frames.lock().unwrap().iter().filter(|(to, _)| to == connection).map(|(_, frame)| frame.clone()).collect()
    }
}

async fn post_to_connection(
    State(connections): State<Arc<Connections>>,
    Path(id): Path<String>,
    body: String,
) -> (StatusCode, HeaderMap, String) {
    let error = |status: StatusCode, kind: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-errortype", kind.parse().unwrap());
        (status, headers, format!(r#"{{"message":"{kind}"}}"#))
    };
    if connections.gone.lock().unwrap().contains(&id) {
        return error(StatusCode::GONE, "GoneException");
    }
    if let Some(left) = connections.busy.lock().unwrap().get_mut(&id).filter(|left| **left > 0) {
        *left -= 1;
        return error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException");
    }
    connections.frames.lock().unwrap().push((id, serde_json::from_str(&body).unwrap()));
    (StatusCode::OK, HeaderMap::new(), String::new())
}

/// The `@connections` stand-in on a real port; the endpoint the functions are configured with.
async fn api_gateway() -> (String, Arc<Connections>) {
    let connections = Arc::new(Connections::default());
    let router =
        axum::Router::new().route("/prod/@connections/{id}", post(post_to_connection)).with_state(connections.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/prod"), connections)
}

fn socket(app: &TestApp, gateway_url: &str) -> Socket {
    let sdk = kit::dynamodb_local::sdk_config(endpoint());
    let gateway = Arc::new(ApiGateway::new(app.state.store.clone(), &sdk, gateway_url));
    Socket { realtime: Realtime::new(app.state.clone(), gateway), store: app.state.store.clone(), replies: None }
}

/// A sample event from events/realtime/, for this test's session and user.
fn sample(name: &str, session: &str, user: &User) -> String {
    let path = kit::dynamodb_local::workspace_root().join(format!("events/realtime/{name}.json"));
    let text = std::fs::read_to_string(path).unwrap();
    let demo_token = text.split("bearer.").nth(1).map(|rest| rest.split('"').next().unwrap().to_owned());
    let text = text.replace("00000000-0000-4000-8000-000000000001", session);
    match demo_token {
        Some(demo) => text.replace(&demo, &user.token),
        None => text,
    }
}

fn websocket_event(text: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(text).unwrap()
}

/// `$connect` checks the connect as locally and registers it (answering the subprotocol it was
/// offered); a frame on it is answered through `@connections`; `$disconnect` forgets it. A bad
/// credential or a foreign session is refused with the API's JSON error, nothing stored.
#[tokio::test]
async fn the_websocket_routes_register_answer_and_forget_a_connection() {
    let app = TestApp::new().await;
    let (url, sent) = api_gateway().await;
    let socket = socket(&app, &url);
    let user = app.user();
    let session = app.session(&user, "on aws").await;

    let connected = socket.handle(websocket_event(&sample("connect-200", &session, &user))).await;
    assert_eq!(connected.status_code, 200);
    assert_eq!(connected.headers.get("sec-websocket-protocol").unwrap(), "chat.v1");
    let peer = app.state.store.connection("demo-connection").await.unwrap().expect("registered");
    assert_eq!((peer.user.as_str(), peer.session.to_string()), (user.id.as_str(), session.clone()));

    socket.handle(websocket_event(&sample("ping", &session, &user))).await;
    assert_eq!(sent.frames_to("demo-connection"), [serde_json::json!({"event": "pong", "data": {}})]);
    app.append(&user, &session, "user", "hello").await;
    socket.handle(websocket_event(&sample("sync", &session, &user))).await;
    let page = sent.frames_to("demo-connection").pop().unwrap();
    assert_eq!((page["event"].as_str(), page["data"]["next_after_rev"].as_u64()), (Some("changes"), Some(1)));
    assert_eq!(page["data"]["data"][0]["message"]["content"], "hello");

    socket.handle(websocket_event(&sample("disconnect", &session, &user))).await;
    assert_eq!(app.state.store.connection("demo-connection").await.unwrap(), None);

    for (name, status, code) in [("connect-401", 401, "unauthorized"), ("connect-404", 404, "not_found")] {
        let refused = socket.handle(websocket_event(&sample(name, &session, &user))).await;
        assert_eq!(refused.status_code, status, "{name}");
        let body = match refused.body.unwrap() {
            aws_lambda_events::encodings::Body::Text(text) => serde_json::from_str::<Value>(&text).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(body["error"], code, "{name}");
        assert_eq!(app.state.store.connection("demo-connection").await.unwrap(), None, "{name}: nothing stored");
    }
}

/// The fan-out posts a stream record's event to every connection of the session: one that API
/// Gateway answers 410 is forgotten, one it answers 429 gets the frame on a retry.
#[tokio::test]
async fn the_fan_out_forgets_gone_connections_and_retries_limits() {
    let app = TestApp::new().await;
    let (url, sent) = api_gateway().await;
    let socket = socket(&app, &url);
    let user = app.user();
    let session = app.session(&user, "fan-out").await;
    for id in ["phone", "laptop", "old-tab"] {
        let peer = Peer {
            id: id.to_owned(),
            user: shared::domain::UserId::parse(&user.id).unwrap(),
            session: session.parse().unwrap(),
        };
        app.state.store.save_connection(&peer).await.unwrap();
    }
    sent.gone.lock().unwrap().insert("old-tab".to_owned());
    sent.busy.lock().unwrap().insert("laptop".to_owned(), 2);

    let mut event: Event = serde_json::from_str(&sample("stream-insert", &session, &user)).unwrap();
    for record in &mut event.records {
        let arn = record.event_source_arn.take().unwrap();
        record.event_source_arn =
            Some(arn.replace("table/chat-messages/", &format!("table/{}/", app.config.tables.messages)));
    }
    let records = shared::lambda::stream_records(&app.config.tables, event.records);
    // The index of connections by session trails a write by a moment.
    let mut delivered = 0;
    for _ in 0..50 {
        if app.state.store.session_connections(session.parse().unwrap()).await.unwrap().len() == 3 {
            delivered = socket.realtime.fan_out(records.clone()).await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(delivered, 2, "the phone and the laptop");
    for device in ["phone", "laptop"] {
        let frames = sent.frames_to(device);
        assert_eq!(frames.len(), 1, "{device}");
        assert_eq!((frames[0]["event"].as_str(), frames[0]["data"]["rev"].as_u64()), (Some("message.new"), Some(1)));
        assert_eq!(frames[0]["data"]["message"]["content"], "Hi from another device");
    }
    assert_eq!(app.state.store.connection("old-tab").await.unwrap(), None, "410: forgotten");
    assert!(app.state.store.connection("laptop").await.unwrap().is_some(), "429: kept");
}

/// A `send_message` frame delivered twice — the reply worker's asynchronous invocation is retried
/// by Lambda when a run fails — starts one turn: API Gateway's id of the frame keys a frame that
/// carries no `idempotency_key`. Another frame with the same words is another turn.
#[tokio::test]
async fn a_redelivered_send_message_starts_one_turn() {
    let app = TestApp::with_llm(crate::common::local_llm(), crate::common::unlimited()).await;
    let (url, sent) = api_gateway().await;
    let socket = socket(&app, &url);
    let user = app.user();
    let session = app.session(&user, "redelivered").await;
    socket.handle(websocket_event(&sample("connect-200", &session, &user))).await;

    let frame = sample("send-message", &session, &user);
    for _ in 0..2 {
        let answered = socket.handle(websocket_event(&frame)).await;
        assert_eq!(answered.status_code, 200);
    }
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    let roles: Vec<&str> = log["data"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant"], "one turn: {log}");
    // The generator posts typing and deltas itself (the rest comes through the stream's fan-out);
    // the redelivery is answered with no error.
    let frames = sent.frames_to("demo-connection");
    assert!(frames.iter().any(|frame| frame["event"] == "message.typing"), "{frames:?}");
    assert!(frames.iter().all(|frame| frame["event"] != "error"), "{frames:?}");

    let another = frame.replace("ZBbOMfjxoAMCJkw=", "ZBbOTfjxoAMCJpQ=");
    socket.handle(websocket_event(&another)).await;
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["data"].as_array().unwrap().len(), 4, "another frame, another turn: {log}");
}
