//! The chat socket (`/v1/ws`) with a real WebSocket client over TCP: connects checked before the
//! upgrade, frames answered (bad ones too, the socket staying open), typing relayed to the
//! user's other devices, and a reply requested over the socket streamed from the local model to
//! every device of the session; quota exhaustion arrives as an `error` event.

use std::sync::Arc;
use std::time::Duration;

use dev::hub::LocalHub;
use dev::streams::Followers;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared::config::CorsOrigins;
use shared::realtime::Realtime;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{TestApp, User, endpoint, local_llm, quota};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The app on a real port as `scripts/dev.sh` serves it, the tables' streams followed: the
/// socket's base URL, its hub, and the stream readers (they stop when dropped).
async fn serve(app: &TestApp) -> (String, Arc<LocalHub>, Followers) {
    let hub = Arc::new(LocalHub::default());
    let router = dev::app_with_hub(app.state.clone(), &CorsOrigins::None, hub.clone());
    let sdk = kit::dynamodb_local::sdk_config(endpoint());
    let followers =
        dev::streams::follow(&sdk, None, &app.config.tables, Realtime::new(app.state.clone(), hub.clone()), None)
            .await
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("ws://{address}/v1/ws"), hub, followers)
}

async fn open(base: &str, session: &str, user: &User) -> Socket {
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{base}?session_id={session}&token={}", user.token)).await.unwrap();
    socket
}

/// The HTTP status a refused connect was answered with.
async fn refused(url: String) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("not an HTTP refusal: {other}"),
        Ok(_) => panic!("the connect was accepted"),
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The next event (text frames only), within 60 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("an event in time");
        if let Some(Ok(Message::Text(text))) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
        assert!(matches!(frame, Some(Ok(_))), "the socket closed: {frame:?}");
    }
}

/// Events up to and including the first that `last` accepts.
async fn until(socket: &mut Socket, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = next(socket).await;
        let done = last(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The events the stream fan-out sends: changes of the log and of the session.
fn is_change(event: &Value) -> bool {
    ["message.new", "message.updated", "message.deleted", "session.updated"].contains(&event["event"].as_str().unwrap())
}

/// The next event that is not a change from the stream fan-out.
async fn next_direct(socket: &mut Socket) -> Value {
    loop {
        let event = next(socket).await;
        if !is_change(&event) {
            return event;
        }
    }
}

/// The next change the fan-out sends, as `(event, rev)`.
async fn next_change(socket: &mut Socket) -> (String, u64, Value) {
    loop {
        let event = next(socket).await;
        if is_change(&event) {
            let rev = event["data"]["rev"].as_u64().unwrap();
            return (event["event"].as_str().unwrap().to_owned(), rev, event["data"].clone());
        }
    }
}

fn typing_stopped(event: &Value) -> bool {
    event["event"] == "message.typing" && event["data"]["is_typing"] == false
}

#[tokio::test]
async fn a_connect_is_checked_before_the_upgrade_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let (base, hub, _followers) = serve(&app).await;
    let (alice, bob) = (app.user(), app.user());
    let session = app.session(&alice, "mine").await;
    let gone = app.session(&alice, "deleted").await;
    app.delete(&alice, &format!("/v1/sessions/{gone}")).await.expect(204);

    assert_eq!(refused(format!("{base}?session_id={session}")).await, 401, "no credential");
    assert_eq!(refused(format!("{base}?session_id={session}&token=not-a-jwt")).await, 401);
    assert_eq!(refused(format!("{base}?session_id={session}&initData=user%3D1%26hash%3Dx")).await, 401);
    assert_eq!(refused(format!("{base}?token={}", alice.token)).await, 400, "no session");
    assert_eq!(refused(format!("{base}?session_id={session}&token={}", bob.token)).await, 404, "another user's");
    assert_eq!(refused(format!("{base}?session_id={gone}&token={}", alice.token)).await, 404, "deleted");
    assert_eq!(hub.len(), 0, "no refused connect is registered");

    // The credential as a subprotocol entry, next to the protocol the server answers with.
    let mut request = format!("{base}?session_id={session}").into_client_request().unwrap();
    let offered = format!("chat.v1, bearer.{}", alice.token);
    request.headers_mut().insert("sec-websocket-protocol", offered.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), "chat.v1");
    send(&mut socket, json!({"event": "ping"})).await;
    assert_eq!(next(&mut socket).await, json!({"event": "pong", "data": {}}));
    assert_eq!(hub.len(), 1);
    socket.close(None).await.unwrap();
    for _ in 0..100 {
        if hub.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.len(), 0, "a closed socket is forgotten");
    let log = app.get(&alice, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_frames_get_an_error_event_and_the_socket_stays_open() {
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "frames").await;
    let mut socket = open(&base, &session, &user).await;
    for (frame, code) in [
        ("not json".to_owned(), "invalid_event"),
        (json!({"event": "shout", "data": {}}).to_string(), "invalid_event"),
        (json!({"event": "typing", "data": {"is_typing": "yes"}}).to_string(), "invalid_event"),
        (json!({"event": "send_message", "data": {"content": 5}}).to_string(), "invalid_event"),
        // This app has no model: the same answer as `POST …/replies`.
        (json!({"event": "send_message", "data": {"content": "hi"}}).to_string(), "service_unavailable"),
    ] {
        socket.send(Message::Text(frame.clone().into())).await.unwrap();
        let event = next(&mut socket).await;
        assert_eq!((event["event"].as_str(), event["data"]["code"].as_str()), (Some("error"), Some(code)), "{frame}");
        assert!(!event["data"]["message"].as_str().unwrap().is_empty());
    }
    socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next(&mut socket).await["data"]["code"], "invalid_event");
    send(&mut socket, json!({"event": "ping", "data": {}})).await;
    assert_eq!(next(&mut socket).await["event"], "pong", "still open");
    send(&mut socket, json!({"event": "sync", "data": {"after_rev": 0}})).await;
    let page = next_direct(&mut socket).await;
    assert_eq!(
        page,
        json!({"event": "changes", "data": {
            "session_id": session, "data": [], "has_more": false, "next_after_rev": 0
        }})
    );
}

#[tokio::test]
async fn typing_reaches_the_users_other_devices_and_not_the_sender() {
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let (user, other) = (app.user(), app.user());
    let session = app.session(&user, "typing").await;
    let elsewhere = app.session(&other, "another chat").await;
    let (mut phone, mut laptop) = (open(&base, &session, &user).await, open(&base, &session, &user).await);
    let mut stranger = open(&base, &elsewhere, &other).await;

    send(&mut phone, json!({"event": "typing", "data": {"is_typing": true}})).await;
    let seen = next(&mut laptop).await;
    assert_eq!(seen, json!({"event": "message.typing", "data": {"session_id": session, "is_typing": true}}));
    for socket in [&mut phone, &mut stranger] {
        send(socket, json!({"event": "ping"})).await;
        assert_eq!(next(socket).await["event"], "pong", "the sender and other sessions hear nothing");
    }
}

/// A reply requested over one device's socket streams from the local model to both devices:
/// typing, the deltas (joining to exactly what is stored), complete, typing again. Once the quota
/// is used up the next request is an `error` event and nothing is stored.
#[tokio::test]
async fn a_reply_over_the_socket_streams_to_every_device_until_the_quota_is_used_up() {
    let app = TestApp::with_llm(local_llm(), quota(1)).await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "socket chat").await;
    let (mut phone, mut laptop) = (open(&base, &session, &user).await, open(&base, &session, &user).await);

    send(&mut phone, json!({"event": "send_message", "data": {"content": "Say hello in one short sentence."}})).await;
    let stored = loop {
        let message = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await;
        if message.status == 200 && message.body["status"] != "streaming" {
            break message.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for socket in [&mut phone, &mut laptop] {
        let events: Vec<Value> = until(socket, typing_stopped).await.into_iter().filter(|e| !is_change(e)).collect();
        let names: Vec<&str> = events.iter().map(|event| event["event"].as_str().unwrap()).collect();
        assert_eq!(names.first(), Some(&"message.typing"), "{names:?}");
        assert_eq!(events[0]["data"]["is_typing"], true);
        assert_eq!(&names[names.len() - 2..], ["message.complete", "message.typing"], "{names:?}");
        assert!(names[1..names.len() - 2].iter().all(|name| *name == "message.delta"), "{names:?}");
        let text: String = events
            .iter()
            .filter(|event| event["event"] == "message.delta")
            .map(|event| event["data"]["text"].as_str().unwrap())
            .collect();
        assert!(!text.trim().is_empty(), "a real answer");
        assert_eq!(text, stored["content"].as_str().unwrap(), "the deltas join to what is stored");
        let complete = &events[events.len() - 2]["data"];
        assert_eq!((complete["seq"].as_u64(), complete["message_id"].as_str()), (Some(2), stored["id"].as_str()));
        assert_eq!(complete["tokens_used"], stored["usage"]["output_tokens"]);
    }

    // The reply's end is a change of its own: the feed shows the reply as stored, at its revision.
    let feed = app.get(&user, &format!("/v1/sessions/{session}/changes?after_rev=0")).await.expect(200).body;
    let last = feed["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["rev"].as_u64(), last["message"]["seq"].as_u64()), (Some(2), Some(2)), "{feed}");
    assert_eq!(last["message"], stored, "the feed serves the reply as stored");

    send(&mut laptop, json!({"event": "send_message", "data": {"content": "And again?"}})).await;
    let refusal = next_direct(&mut laptop).await;
    assert_eq!(
        (refusal["event"].as_str(), refusal["data"]["code"].as_str()),
        (Some("error"), Some("daily_limit_exceeded"))
    );
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["data"].as_array().unwrap().len(), 2, "nothing stored by the refused request");
    send(&mut phone, json!({"event": "ping"})).await;
    assert_eq!(next_direct(&mut phone).await["event"], "pong", "the refusal went to the device that asked");
}

/// What one device does reaches the other through the tables' streams: each message as it is
/// stored, its edit, its delete, a new scene (one range), a rename — in revision order.
#[tokio::test]
async fn two_devices_see_each_others_changes_in_revision_order() {
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "two devices").await;
    let path = format!("/v1/sessions/{session}");
    let (mut phone, mut laptop) = (open(&base, &session, &user).await, open(&base, &session, &user).await);
    let first = app.append(&user, &session, "user", "from the phone").await;
    app.append(&user, &session, "assistant", "an answer").await;
    app.patch(&user, &format!("{path}/messages/1"), json!({"content": "from the phone, edited"})).await.expect(200);
    app.delete(&user, &format!("{path}/messages/2")).await.expect(204);
    app.append(&user, &session, "user", "three").await;
    app.post(&user, &format!("{path}/new-scene"), json!({"messages_to_keep": 0})).await.expect(200);
    app.patch(&user, &path, json!({"title": "Renamed"})).await.expect(200);
    for socket in [&mut phone, &mut laptop] {
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(next_change(socket).await);
        }
        let summary: Vec<(&str, u64)> = seen.iter().map(|(name, rev, _)| (name.as_str(), *rev)).collect();
        assert_eq!(
            summary,
            [
                ("message.new", 1),
                ("message.new", 2),
                ("message.updated", 3),
                ("message.deleted", 4),
                ("message.new", 5),
                ("message.deleted", 6),
                ("session.updated", 6)
            ]
        );
        assert_eq!(seen[0].2["message"]["id"], first["id"], "the message as stored");
        assert_eq!(seen[2].2["message"]["content"], "from the phone, edited");
        assert_eq!(seen[3].2["seqs"], json!([2]));
        assert_eq!(seen[5].2["through_seq"], 3, "new-scene hides a range, in one event");
        assert_eq!(seen[6].2["session"]["title"], "Renamed");
    }
}

/// A device that drops and reconnects with its last `rev` gets exactly what it missed, once:
/// `sync` answers with the change feed, the same as `GET …/changes`.
#[tokio::test]
async fn a_device_that_reconnects_gets_exactly_the_changes_it_missed() {
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "reconnect").await;
    let path = format!("/v1/sessions/{session}");
    let mut laptop = open(&base, &session, &user).await;
    app.append(&user, &session, "user", "seen live").await;
    let (_, last_rev, _) = next_change(&mut laptop).await;
    assert_eq!(last_rev, 1);
    laptop.close(None).await.unwrap();
    drop(laptop);

    app.append(&user, &session, "user", "missed one").await;
    app.append(&user, &session, "assistant", "missed two").await;
    app.patch(&user, &format!("{path}/messages/1"), json!({"content": "seen live, edited"})).await.expect(200);
    app.post(&user, &format!("{path}/forget-recent"), json!({"count": 1})).await.expect(200);

    let mut laptop = open(&base, &session, &user).await;
    send(&mut laptop, json!({"event": "sync", "data": {"after_rev": last_rev}})).await;
    let page = next_direct(&mut laptop).await;
    assert_eq!(page["event"], "changes");
    let changes: Vec<(String, u64, u64)> = page["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| {
            let seq = change["message"]["seq"].as_u64().or(change["seq"].as_u64()).unwrap();
            (change["type"].as_str().unwrap().to_owned(), change["rev"].as_u64().unwrap(), seq)
        })
        .collect();
    let expected = [("message", 2, 2), ("message", 4, 1), ("deleted", 5, 3)];
    let expected: Vec<(String, u64, u64)> = expected.iter().map(|(k, r, s)| (k.to_string(), *r, *s)).collect();
    assert_eq!(changes, expected, "the missed changes, each once, in rev order");
    assert_eq!((page["data"]["has_more"].as_bool(), page["data"]["next_after_rev"].as_u64()), (Some(false), Some(5)));
    let feed = app.get(&user, &format!("{path}/changes?after_rev={last_rev}")).await.expect(200).body;
    assert_eq!(feed["data"], page["data"]["data"], "the socket and HTTP serve the same feed");
    send(&mut laptop, json!({"event": "sync", "data": {"after_rev": 5}})).await;
    assert_eq!(next_direct(&mut laptop).await["data"]["data"], json!([]), "nothing twice");
}

/// Eight chats written at once: every committed message reaches its chat's socket exactly once,
/// through the stream (concurrent writers are where a stream reader loses records, if it can).
#[tokio::test]
async fn concurrent_chats_each_get_every_message_once() {
    const CHATS: usize = 8;
    const MESSAGES: u64 = 10;
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let chats = (0..CHATS).map(|index| {
        let (app, user, base) = (&app, &user, &base);
        async move {
            let session = app.session(user, &format!("chat {index}")).await;
            let mut socket = open(base, &session, user).await;
            let mut seen = Vec::new();
            for _ in 0..MESSAGES {
                let message = app.append(user, &session, "user", "at once").await;
                loop {
                    let (name, _, data) = next_change(&mut socket).await;
                    if name == "message.new" {
                        seen.push(data["seq"].as_u64().unwrap());
                        if data["seq"] == message["seq"] {
                            break;
                        }
                    }
                }
            }
            seen
        }
    });
    for seen in futures::future::join_all(chats).await {
        assert_eq!(seen, (1..=MESSAGES).collect::<Vec<_>>(), "each message once, in order");
    }
}

/// `send_message` is `POST …/replies` over the socket: the same fields and the same checks. A
/// blank or out-of-range request is an `invalid_input` error event naming its field, with nothing
/// stored and no quota spent; a frame over 32 KB is `payload_too_large` and the socket stays
/// open; every refusal carries a request id of its own; `max_tokens` and `temperature` bound
/// the reply.
#[tokio::test]
async fn send_message_is_checked_as_post_replies_is() {
    let app = TestApp::with_llm(local_llm(), quota(5)).await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "one door").await;
    let mut socket = open(&base, &session, &user).await;
    let big = "x".repeat(40 * 1024);
    let mut request_ids = Vec::new();
    for (data, code, field) in [
        (json!({"content": ""}), "invalid_input", "content"),
        (json!({"content": " \n\t "}), "invalid_input", "content"),
        (json!({"content": "hi", "max_tokens": 0}), "invalid_input", "max_tokens"),
        (json!({"content": "hi", "temperature": 3.0}), "invalid_input", "temperature"),
        (json!({"content": big}), "payload_too_large", "32768"),
    ] {
        send(&mut socket, json!({"event": "send_message", "data": data})).await;
        let event = next_direct(&mut socket).await;
        assert_eq!((event["event"].as_str(), event["data"]["code"].as_str()), (Some("error"), Some(code)), "{event}");
        let said = format!("{} {}", event["data"]["field"], event["data"]["message"]);
        assert!(said.contains(field), "{event}");
        let request_id = event["data"]["request_id"].as_str().expect("a request id").to_owned();
        assert!(!request_ids.contains(&request_id), "one id per refusal");
        request_ids.push(request_id);
    }
    send(&mut socket, json!({"event": "ping"})).await;
    assert_eq!(next_direct(&mut socket).await["event"], "pong", "still open after the large frame");
    let stored = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    assert_eq!(stored["last_seq"], 0, "nothing stored: {stored}");
    assert_eq!(app.get(&user, "/v1/limits").await.body["messages_limit"]["used"], 0, "no quota spent");

    let data = json!({"content": "Count from one to fifty.", "max_tokens": 8, "temperature": 0.0});
    send(&mut socket, json!({"event": "send_message", "data": data})).await;
    let events = until(&mut socket, typing_stopped).await;
    let complete = events.iter().find(|event| event["event"] == "message.complete").expect("the reply completes");
    let tokens = complete["data"]["tokens_used"].as_u64().unwrap();
    assert!((1..=8).contains(&tokens), "max_tokens bounds the reply: {complete}");
    let reply = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(reply["stop_reason"], "length", "{reply}");
}

/// A connect without a credential is told how a socket sends one (a browser cannot set
/// `Authorization` on a socket), with a request id like any refusal.
/// A reply over the socket that calls a tool: `reply.tool_call` and `reply.tool_result` reach the
/// devices between the typing and the end, as `send_message` asked (`tool_choice`).
#[tokio::test]
async fn a_tool_round_over_the_socket_sends_the_call_and_its_result() {
    use crate::tools::{dev_tools, session_with_tools, structured, tool_server, weather_tool};
    let (tools, _) = tool_server().await;
    let app = TestApp::with_llm_and_tools(structured(local_llm()), quota(5), dev_tools()).await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([weather_tool(&tools)])).await;
    let mut socket = open(&base, &session, &user).await;
    let frame = json!({"content": "What is the weather in Rome?", "tool_choice": {"name": "get_weather"}});
    send(&mut socket, json!({"event": "send_message", "data": frame})).await;
    let events: Vec<Value> = until(&mut socket, typing_stopped).await.into_iter().filter(|e| !is_change(e)).collect();
    let names: Vec<&str> = events.iter().map(|event| event["event"].as_str().unwrap()).collect();
    let call = names.iter().position(|name| *name == "reply.tool_call").unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(names[call + 1], "reply.tool_result", "{names:?}");
    assert_eq!(&names[names.len() - 2..], ["message.complete", "message.typing"], "{names:?}");
    assert_eq!(events[call]["data"]["name"], "get_weather");
    assert_eq!(events[call + 1]["data"]["tool_call_id"], events[call]["data"]["id"]);
    assert_eq!(events[call + 1]["data"]["output"]["temperature_c"], 21);
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(stored["parts"][0]["id"], events[call]["data"]["id"], "the socket's call is the stored one");
}

/// A client tool over the socket: the device gets the pending `reply.tool_call`, answers it over
/// HTTP, and the same socket then carries the result, the answer and `message.complete`.
#[tokio::test]
async fn a_client_tool_round_trip_over_the_socket() {
    use crate::tools::{local_time_tool, session_with_tools, structured};
    let app = TestApp::with_llm(structured(local_llm()), quota(5)).await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = session_with_tools(&app, &user, json!([local_time_tool()])).await;
    let mut socket = open(&base, &session, &user).await;
    let frame = json!({"content": "What time is it for me?", "tool_choice": {"name": "local_time"}});
    send(&mut socket, json!({"event": "send_message", "data": frame})).await;
    let call = loop {
        let event = next_direct(&mut socket).await;
        if event["event"] == "reply.tool_call" {
            break event["data"].clone();
        }
    };
    assert_eq!(call["name"], "local_time");
    let paused = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(paused["status"], "requires_action");
    let answer = json!({"tool_call_id": call["id"], "output": {"time": "08:30"}});
    let answered = app.post(&user, &format!("/v1/sessions/{session}/messages/2/tool-results"), answer).await;
    answered.expect(200);
    let rest: Vec<Value> = until(&mut socket, typing_stopped).await.into_iter().filter(|e| !is_change(e)).collect();
    let names: Vec<&str> = rest.iter().map(|event| event["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"reply.tool_result"), "{names:?}");
    assert_eq!(rest[0]["data"]["output"]["time"], "08:30");
    assert_eq!(&names[names.len() - 2..], ["message.complete", "message.typing"], "{names:?}");
}

#[tokio::test]
async fn a_connect_without_a_credential_is_told_how_a_socket_sends_one() {
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "no credential").await;
    let Err(tungstenite::Error::Http(response)) =
        tokio_tungstenite::connect_async(format!("{base}?session_id={session}")).await
    else {
        panic!("the connect was not refused over HTTP");
    };
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
    assert!(body["message"].as_str().unwrap().contains("bearer."), "{body}");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
}

/// Memories reach the sockets of the session they belong to: one read from its turns
/// (`memory.new` with `origin: "extracted"`), one added with its scope, a correction that
/// supersedes (`memory.updated`), and deletes (`memory.deleted`).
#[tokio::test]
async fn memories_of_a_session_reach_its_sockets() {
    use shared::domain::{
        DayUsage, Importance, MemoryContent, MemoryScope, MemorySource, MemoryType, NewMemory, Seq, SessionId, UserId,
    };
    use shared::store::{ExtractionBatch, ExtractionWrite};
    let app = TestApp::new().await;
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.session(&user, "memories").await;
    let mut socket = open(&base, &session, &user).await;
    send(&mut socket, json!({"event": "ping", "data": {}})).await;
    assert_eq!(next(&mut socket).await["event"], "pong");
    let (user_id, session_id) = (UserId::parse(&user.id).unwrap(), session.parse::<SessionId>().unwrap());
    let one = Seq::new(1).unwrap();
    let new = |text: &str| NewMemory {
        scope: MemoryScope::Global,
        memory_type: MemoryType::Fact,
        content: MemoryContent::parse(text.to_owned()).unwrap(),
        importance: Importance::DEFAULT,
        source: Some(MemorySource { session_id, from_seq: one, to_seq: one }),
    };
    let batch = ExtractionBatch { through: one, adds: vec![new("The user lives in Berlin")], supersedes: vec![] };
    let ExtractionWrite::Stored(berlin) =
        app.state.store.store_extraction(&user_id, session_id, batch, &DayUsage::default()).await.unwrap()
    else {
        panic!("not stored")
    };
    let event = until(&mut socket, |event| event["event"] == "memory.new").await.pop().unwrap();
    assert_eq!(event["data"]["session_id"], session);
    assert_eq!(event["data"]["memory"]["id"], berlin[0].id.to_string());
    assert_eq!(event["data"]["memory"]["origin"], "extracted");
    let two = Seq::new(2).unwrap();
    let correction = ExtractionBatch {
        through: two,
        adds: vec![new("The user lives in Munich")],
        supersedes: vec![(berlin[0].id, MemoryScope::Global, 0)],
    };
    app.state.store.store_extraction(&user_id, session_id, correction, &DayUsage::default()).await.unwrap();
    let events = until(&mut socket, |event| event["event"] == "memory.updated").await;
    let updated = events.last().unwrap();
    assert_eq!(updated["data"]["memory"]["id"], berlin[0].id.to_string());
    assert!(updated["data"]["memory"]["superseded_by"].is_string(), "{updated}");
    let scoped = app.post(
        &user,
        "/v1/memories",
        json!({"content": "Chapter two", "memory_type": "fact", "session_id": session}),
    );
    let scoped = scoped.await.expect(201).body;
    let event =
        until(&mut socket, |event| event["event"] == "memory.new" && event["data"]["memory"]["id"] == scoped["id"])
            .await;
    assert_eq!(event.last().unwrap()["data"]["memory"]["origin"], "user");
    app.delete(&user, &format!("/v1/memories/{}", scoped["id"].as_str().unwrap())).await.expect(200);
    let deleted = until(&mut socket, |event| event["event"] == "memory.deleted").await.pop().unwrap();
    assert_eq!(deleted["data"], json!({"session_id": session, "memory_id": scoped["id"]}));
}

/// In a group chat a socket's `send_message` names the agent as `POST …/replies` does, and the
/// reply's events carry it: `message.typing` (both), the deltas and `message.complete`; a
/// character outside the session is refused with `agent_not_in_session`, nothing stored.
#[tokio::test]
async fn a_group_reply_over_the_socket_says_which_agent_speaks() {
    let app = TestApp::with_llm(local_llm(), quota(5)).await;
    let admin = app.admin();
    for (id, name) in [("alice", "Alice"), ("bob", "Bob"), ("cleo", "Cleo")] {
        app.post(
            &admin,
            "/v1/admin/characters",
            json!({"id": id, "name": name, "system_prompt": format!("You are {name}.")}),
        )
        .await
        .expect(201);
    }
    let (base, _, _followers) = serve(&app).await;
    let user = app.user();
    let session = app.post(&user, "/v1/sessions", json!({"agents": ["alice", "bob"]})).await.expect(201).body;
    let session = session["id"].as_str().unwrap().to_owned();
    let mut socket = open(&base, &session, &user).await;
    let ask = json!({"event": "send_message", "data": {"content": "Hi Bob!", "agent": "cleo", "max_tokens": 8}});
    send(&mut socket, ask).await;
    assert_eq!(next_direct(&mut socket).await["data"]["code"], "agent_not_in_session");
    let ask = json!({"event": "send_message", "data": {"content": "Hi Bob!", "agent": "bob", "mode": "direct", "max_tokens": 16}});
    send(&mut socket, ask).await;
    let events: Vec<Value> = until(&mut socket, typing_stopped).await.into_iter().filter(|e| !is_change(e)).collect();
    let live: Vec<&Value> = events
        .iter()
        .filter(|event| {
            ["message.typing", "message.delta", "message.complete"].contains(&event["event"].as_str().unwrap())
        })
        .collect();
    assert!(live.len() >= 3, "{events:?}");
    assert!(live.iter().all(|event| event["data"]["agent"] == "bob"), "every event names Bob: {live:?}");
    let stored = app.get(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(200).body;
    assert_eq!(stored["agent"]["id"], "bob");
    let log = app.get(&user, &format!("/v1/sessions/{session}/messages")).await.expect(200).body;
    assert_eq!(log["data"].as_array().unwrap().len(), 2, "the refused frame stored nothing");

    // A round over the socket: each agent's reply in turn, typing to complete, named throughout.
    let ask = json!({"event": "send_message", "data": {"content": "Hi both!", "mode": "all", "max_tokens": 8}});
    send(&mut socket, ask).await;
    let mut spoke = Vec::new();
    for _ in 0..2 {
        let events: Vec<Value> =
            until(&mut socket, typing_stopped).await.into_iter().filter(|e| !is_change(e)).collect();
        let complete = events.iter().find(|event| event["event"] == "message.complete").expect("a complete event");
        spoke.push((complete["data"]["seq"].as_u64().unwrap(), complete["data"]["agent"].as_str().unwrap().to_owned()));
        let typing = events.iter().find(|event| event["event"] == "message.typing").expect("a typing event");
        assert_eq!(typing["data"]["agent"], complete["data"]["agent"], "{events:?}");
    }
    assert_eq!(spoke, [(4, "alice".to_owned()), (5, "bob".to_owned())]);
}
