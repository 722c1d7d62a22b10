//! A server process killed (`kill -9`) in the middle of a streamed reply, and started again on
//! the same data: the reply it left `streaming` is ended once its lease passes, the quota and
//! the log stay consistent, and regenerate and a new reply work. The real dev server binary,
//! DynamoDB Local and the local model.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kit::token::{DEV_JWT_SECRET, TokenRequest, mint};
use serde_json::json;
use shared::config::TableNames;

use crate::dev_server::{Server, call, dev_server_binary};

#[tokio::test]
async fn a_reply_left_streaming_by_a_killed_server_is_ended_when_its_lease_passes() {
    let binary = dev_server_binary();
    let tables = TableNames::with_prefix(&format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let user = format!("user-{}", uuid::Uuid::new_v4().simple());
    let request = TokenRequest { sub: &user, ttl_secs: 3600, issuer: None, audience: None, admin: false };
    let token = mint(DEV_JWT_SECRET.as_bytes(), &request).expect("sign");
    let client = reqwest::Client::new();

    let first = Server::start(&binary, &tables).await;
    let (status, session) = call(
        &client,
        &token,
        reqwest::Method::POST,
        format!("{}/v1/sessions", first.base),
        Some(json!({"title": "crash"})),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().expect("a session id").to_owned();
    let sessions = format!("/v1/sessions/{session}");

    // A streamed reply, read until its text has begun; its connection stays open.
    let body = json!({"content": "Tell me a long story about a dragon and a knight.", "max_tokens": 400});
    let response = client
        .post(format!("{}{sessions}/replies", first.base))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("the reply starts");
    assert_eq!(response.status(), 201);
    let mut events = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: reply.delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(60), events.next()).await.expect("a delta in time");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream goes on").expect("bytes")));
    }
    // Its first checkpoint is stored, then the process dies.
    let message = format!("{sessions}/messages/2");
    let started = Instant::now();
    let checkpoint = loop {
        let (_, stored) = call(&client, &token, reqwest::Method::GET, format!("{}{message}", first.base), None).await;
        let text = stored["content"].as_str().unwrap_or_default().to_owned();
        if !text.is_empty() {
            assert_eq!(stored["status"], "streaming", "killed mid-reply, not after it: {stored}");
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no checkpoint was stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.kill();
    drop(events);

    // Started again on the same data: the first reader after the lease ends the reply.
    let second = Server::start(&binary, &tables).await;
    let started = Instant::now();
    let ended = loop {
        let (status, stored) =
            call(&client, &token, reqwest::Method::GET, format!("{}{message}", second.base), None).await;
        assert_eq!(status, 200, "{stored}");
        if stored["status"] != "streaming" {
            break stored;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the reply stayed streaming past its lease");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!((ended["status"].as_str(), ended["stop_reason"].as_str()), (Some("incomplete"), Some("interrupted")));
    let kept = ended["content"].as_str().unwrap();
    assert!(kept.starts_with(&checkpoint), "the last checkpoint's text is kept: {kept:?} vs {checkpoint:?}");
    let (_, limits) = call(&client, &token, reqwest::Method::GET, format!("{}/v1/limits", second.base), None).await;
    assert_eq!(limits["messages_limit"]["used"], 1, "the turn's unit, once: {limits}");
    let (_, summary) = call(&client, &token, reqwest::Method::GET, format!("{}{sessions}", second.base), None).await;
    assert_eq!(summary["last_seq"], 2, "{summary}");

    let short = json!({"max_tokens": 16});
    let (status, regenerated) =
        call(&client, &token, reqwest::Method::POST, format!("{}{message}/regenerate", second.base), Some(short)).await;
    assert_eq!(status, 201, "{regenerated}");
    assert_eq!(regenerated["assistant_message"]["variant"], 2);
    let next = json!({"content": "And then?", "max_tokens": 16});
    let (status, turn) =
        call(&client, &token, reqwest::Method::POST, format!("{}{sessions}/replies", second.base), Some(next)).await;
    assert_eq!(status, 201, "{turn}");
    assert_eq!(turn["assistant_message"]["seq"], 4);
    let (_, limits) = call(&client, &token, reqwest::Method::GET, format!("{}/v1/limits", second.base), None).await;
    assert_eq!(limits["messages_limit"]["used"], 2, "{limits}");
    second.kill();
}
