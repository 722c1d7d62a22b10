//! Messages API: the ordered, idempotent, gapless per-session log and its session summary.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::common::{Resp, TestApp, User};

fn seqs(body: &Value) -> Vec<u64> {
    body["data"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Reads the whole live log and checks the session summary agrees with it.
async fn assert_summary_agrees(app: &TestApp, user: &User, session: &str) -> Value {
    let summary = app.get(user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    let mut live = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(user, &format!("/v1/sessions/{session}/messages?after_seq={after}&limit=200"))
            .await
            .expect(200)
            .body;
        assert_eq!(page["last_seq"], summary["last_seq"]);
        live.extend(page["data"].as_array().unwrap().iter().cloned());
        if page["has_more"] == false {
            break;
        }
        after = live.last().unwrap()["seq"].as_u64().unwrap();
    }
    assert_eq!(summary["message_count"].as_u64().unwrap(), live.len() as u64, "message_count vs log");
    match live.last() {
        Some(last) => {
            assert_eq!(summary["last_message"]["seq"], last["seq"]);
            assert_eq!(summary["last_message"]["role"], last["role"]);
            let preview: String = last["content"].as_str().unwrap().chars().take(120).collect();
            assert_eq!(summary["last_message"]["preview"], preview);
            assert_eq!(summary["last_message"]["created_at"], last["created_at"]);
        }
        None => assert_eq!(summary["last_message"], Value::Null),
    }
    assert!(live.iter().all(|m| m["seq"].as_u64().unwrap() <= summary["last_seq"].as_u64().unwrap()));
    summary
}

fn messages_path(session: &str) -> String {
    format!("/v1/sessions/{session}/messages")
}

#[tokio::test]
async fn append_returns_the_stored_message() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "chat").await;
    let request = json!({
        "role": "assistant",
        "content": "Olá 👋 — مرحبا\u{0}end",
        "type": "tool_call",
        "payload": {"tool": "weather", "args": {"city": "Lisbon"}},
        "usage": {"input_tokens": 120, "output_tokens": 30, "model": "gpt-4o-mini"},
    });
    let first = app.append(&user, &session, "user", "hello").await;
    let body = app.post(&user, &messages_path(&session), request.clone()).await.expect(201).body;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["type"], "text");
    assert_eq!(first["payload"], Value::Null);
    assert_eq!(body["seq"], 2);
    assert_eq!(body["session_id"], session.as_str());
    assert_eq!(body["content"], request["content"]);
    assert_eq!(body["type"], "tool_call");
    assert_eq!(body["payload"], request["payload"]);
    let mut usage = request["usage"].clone();
    usage["cost_usd"] = json!("0");
    usage["estimated"] = json!(false);
    assert_eq!(body["usage"], usage, "reported usage, priced (no price configured for the model)");
    assert_eq!(body["edited_at"], Value::Null);
    assert_eq!(body["status"], "complete");
    assert_eq!((body["variant"].as_u64(), body["variant_count"].as_u64()), (Some(1), Some(1)));
    assert_eq!(body["is_regenerated"], false);
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let fetched = app.get(&user, &format!("{}/2", messages_path(&session))).await.expect(200).body;
    assert_eq!(fetched, body, "what is read is what was written, byte for byte");
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["last_seq"], 2);
    assert_eq!(summary["updated_at"], body["created_at"]);
}

#[tokio::test]
async fn append_validates_its_input() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "chat").await;
    let path = messages_path(&session);
    for (body, field) in [
        (json!({"role": "narrator", "content": "x"}), "role"),
        (json!({"content": "x"}), "role"),
        (json!({"role": "user"}), "content"),
        (json!({"role": "user", "content": "x", "type": ""}), "type"),
        (json!({"role": "user", "content": "x", "type": "t".repeat(65)}), "type"),
        (json!({"role": "user", "content": "x", "payload": [1]}), "payload"),
        (json!({"role": "user", "content": "x", "reply_to": 0}), "reply_to"),
        (json!({"role": "user", "content": "x", "reply_to": 1}), "reply_to"),
        (json!({"role": "user", "content": "x", "usage": {"input_tokens": 1, "output_tokens": 1}}), "usage.model"),
        (
            json!({"role": "user", "content": "x", "usage": {"input_tokens": 1, "output_tokens": 1, "model": ""}}),
            "usage.model",
        ),
        (json!({"role": "user", "content": "x", "dedupe_key": "k".repeat(129)}), "dedupe_key"),
        (json!({"role": "user", "content": "x", "seq": 7}), "seq"),
        (json!({"role": "user", "content": ""}), "content"),
        (json!({"role": "user", "content": "   "}), "content"),
        (json!({"role": "assistant", "content": "\n\t "}), "content"),
    ] {
        let response = app.post(&user, &path, body.clone()).await.expect_error(400, "invalid_input");
        let reported = response.body["field"].as_str().unwrap();
        assert!(reported.starts_with(field), "for {body}: field {reported}, wanted {field}");
    }
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["last_seq"], 0, "rejected appends consume no seq");
    app.append(&user, &session, "user", "first").await;
    let reply = app.post(&user, &path, json!({"role": "assistant", "content": "re", "reply_to": 1})).await.expect(201);
    assert_eq!(reply.body["reply_to"], 1);
    // Blank text is a message only when a payload carries it; an edit to blank is refused.
    let sticker = json!({"role": "user", "content": "", "type": "sticker", "payload": {"id": "cat"}});
    app.post(&user, &path, sticker).await.expect(201);
    let edit =
        app.patch(&user, &format!("{path}/1"), json!({"content": "  "})).await.expect_error(400, "invalid_input");
    assert_eq!(edit.body["field"], "content");
    assert_eq!(app.get(&user, &format!("{path}/1")).await.expect(200).body["content"], "first");
}

#[tokio::test]
async fn size_limits_are_32k_content_and_64k_payload() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "big").await;
    let path = messages_path(&session);
    let max_content = "é".repeat(16 * 1024);
    let stored = app.post(&user, &path, json!({"role": "user", "content": max_content})).await.expect(201);
    assert_eq!(stored.body["content"].as_str().unwrap().len(), 32 * 1024);
    let over = app.post(&user, &path, json!({"role": "user", "content": format!("{max_content}x")})).await;
    assert_eq!(over.expect_error(413, "payload_too_large").body["field"], "content");
    let payload = json!({"blob": "p".repeat(64 * 1024 - 20)});
    app.post(&user, &path, json!({"role": "tool", "content": "", "payload": payload})).await.expect(201);
    let over = app
        .post(&user, &path, json!({"role": "tool", "content": "", "payload": {"blob": "p".repeat(64 * 1024)}}))
        .await;
    assert_eq!(over.expect_error(413, "payload_too_large").body["field"], "payload");
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["last_seq"], 2);
}

#[tokio::test]
async fn concurrent_appends_get_gapless_unique_seqs() {
    let app = TestApp::new().await;
    let other_container = app.sibling();
    let user = app.user();
    let session = app.session(&user, "busy").await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let target = if i % 2 == 0 { app.clone() } else { other_container.clone() };
        let (user, session) = (user.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            let app = target;
            app.post(&user, &messages_path(&session), json!({"role": "user", "content": format!("m{i}")})).await
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        let response: Resp = task.await.unwrap().expect(201);
        assert!(seen.insert(response.body["seq"].as_u64().unwrap()), "duplicate seq");
    }
    assert_eq!(seen, (1..=32).collect::<HashSet<u64>>());
    let listed = app.get(&user, &format!("{}?limit=200", messages_path(&session))).await.expect(200).body;
    assert_eq!(seqs(&listed), (1..=32).collect::<Vec<u64>>());
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["last_seq"], 32);
    assert_eq!(summary["message_count"], 32);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_store_one_message() {
    let app = TestApp::new().await;
    let other_container = app.sibling();
    let user = app.user();
    let session = app.session(&user, "retries").await;
    app.append(&user, &session, "user", "before").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let target = if i % 2 == 0 { app.clone() } else { other_container.clone() };
        let (user, session) = (user.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            let request = axum::http::Request::builder()
                .method("POST")
                .uri(messages_path(&session))
                .header("authorization", format!("Bearer {}", user.token))
                .header("idempotency-key", "retry-me")
                .body(axum::body::Body::from(json!({"role": "assistant", "content": "once"}).to_string()))
                .unwrap();
            let app = target;
            app.send(request).await
        }));
    }
    let mut ids = HashSet::new();
    let (mut created, mut replayed) = (0, 0);
    for task in tasks {
        let response = task.await.unwrap();
        match response.status.as_u16() {
            201 => created += 1,
            200 => {
                assert_eq!(response.header("idempotent-replayed"), Some("true"));
                replayed += 1;
            }
            other => panic!("unexpected {other}: {}", response.body),
        }
        ids.insert(response.body["id"].as_str().unwrap().to_owned());
        assert_eq!(response.body["seq"], 2);
    }
    assert_eq!((created, replayed, ids.len()), (1, 15, 1));
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["message_count"], 2);
}

#[tokio::test]
async fn idempotency_key_replays_and_conflicts() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "keys").await;
    let path = messages_path(&session);
    let body = json!({"role": "user", "content": "pay once", "dedupe_key": "order-1"});
    let first = app.post(&user, &path, body.clone()).await.expect(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = app.post(&user, &path, body.clone()).await.expect(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    let changed = json!({"role": "user", "content": "pay twice", "dedupe_key": "order-1"});
    app.post(&user, &path, changed).await.expect_error(409, "conflict");
    // The same key in another session is another key.
    let other = app.session(&user, "other").await;
    app.post(&user, &messages_path(&other), body).await.expect(201);
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["message_count"], 1);
    // Header and body keys must agree when both are given.
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(&path)
        .header("authorization", format!("Bearer {}", user.token))
        .header("idempotency-key", "a")
        .body(axum::body::Body::from(json!({"role": "user", "content": "x", "dedupe_key": "b"}).to_string()))
        .unwrap();
    app.send(request).await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn a_retry_never_hands_back_a_message_deleted_since() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "keys").await;
    let path = messages_path(&session);
    let secret = json!({"role": "user", "content": "my secret", "dedupe_key": "k-delete"});
    app.post(&user, &path, secret.clone()).await.expect(201);
    app.delete(&user, &format!("{path}/1")).await.expect(204);
    let retry = app.post(&user, &path, secret.clone()).await.expect_error(409, "conflict");
    assert!(!retry.body.to_string().contains("my secret"), "{}", retry.body);
    assert!(retry.body["message"].as_str().unwrap().contains("deleted"), "{}", retry.body);

    // Cleared by a reset or a new scene: the same.
    let cleared = json!({"role": "user", "content": "cleared text", "dedupe_key": "k-reset"});
    app.post(&user, &path, cleared.clone()).await.expect(201);
    app.post(&user, &format!("/v1/sessions/{session}/reset"), json!({})).await.expect(200);
    let retry = app.post(&user, &path, cleared).await.expect_error(409, "conflict");
    assert!(!retry.body.to_string().contains("cleared text"), "{}", retry.body);
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["last_seq"], 2, "no retry stored anything again");
}

#[tokio::test]
async fn a_warm_append_is_one_dynamodb_round_trip() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "cost").await;
    // The first append of a user in an instance also reads the user's profile and quota counter.
    let before = app.state.store.dynamodb_calls();
    app.append(&user, &session, "user", "first").await;
    assert_eq!(app.state.store.dynamodb_calls() - before, 3, "profile, counter, then the write");
    for _ in 0..3 {
        let before = app.state.store.dynamodb_calls();
        app.append(&user, &session, "user", "counted").await;
        assert_eq!(app.state.store.dynamodb_calls() - before, 1);
    }
    let before = app.state.store.dynamodb_calls();
    let batch = json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "usage": {"input_tokens": 1, "output_tokens": 2, "model": "m"}}]});
    app.post(&user, &format!("{}/batch", messages_path(&session)), batch).await.expect(201);
    assert_eq!(app.state.store.dynamodb_calls() - before, 1, "a batch is one transaction too");
    let keyed = json!({"role": "user", "content": "k", "dedupe_key": "one-trip"});
    let before = app.state.store.dynamodb_calls();
    app.post(&user, &messages_path(&session), keyed).await.expect(201);
    assert_eq!(app.state.store.dynamodb_calls() - before, 1, "the idempotency record rides in the same transaction");

    // A fresh container knows nothing: the session read runs beside the profile and counter reads.
    let cold = app.sibling();
    let before = cold.state.store.dynamodb_calls();
    cold.append(&user, &session, "user", "cold").await;
    assert_eq!(cold.state.store.dynamodb_calls() - before, 4, "3 reads in two parallel rounds, then the write");
    let before = cold.state.store.dynamodb_calls();
    cold.append(&user, &session, "user", "warm again").await;
    assert_eq!(cold.state.store.dynamodb_calls() - before, 1);

    // The first container's guesses are now stale: the cancelled transaction tells it the truth.
    let before = app.state.store.dynamodb_calls();
    let stale = app.append(&user, &session, "user", "stale guess").await;
    assert_eq!(app.state.store.dynamodb_calls() - before, 2);
    assert_eq!(stale["seq"], 10);
    assert_summary_agrees(&app, &user, &session).await;
}

#[tokio::test]
async fn closed_and_locked_sessions_refuse_changes_but_archived_accept() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "gated").await;
    app.append(&user, &session, "user", "one").await;
    let path = messages_path(&session);
    for status in ["locked", "closed"] {
        app.patch(&user, &format!("/v1/sessions/{session}"), json!({"status": status})).await.expect(200);
        let response = app.post(&user, &path, json!({"role": "user", "content": "no"})).await;
        assert_eq!(response.expect_error(409, "session_closed").body["status"], status);
        let batch = json!({"messages": [{"role": "user", "content": "no"}]});
        app.post(&user, &format!("{path}/batch"), batch).await.expect_error(409, "session_closed");
        app.patch(&user, &format!("{path}/1"), json!({"content": "no"})).await.expect_error(409, "session_closed");
        app.delete(&user, &format!("{path}/1")).await.expect_error(409, "session_closed");
        let session_path = format!("/v1/sessions/{session}");
        app.post(&user, &format!("{session_path}/forget-recent"), json!({"count": 1}))
            .await
            .expect_error(409, "session_closed");
        app.post(&user, &format!("{session_path}/new-scene"), json!({"messages_to_keep": 0}))
            .await
            .expect_error(409, "session_closed");
        app.post(&user, &format!("{session_path}/reset"), json!({})).await.expect_error(409, "session_closed");
        // Reads still work.
        assert_eq!(seqs(&app.get(&user, &path).await.expect(200).body), [1]);
    }
    app.patch(&user, &format!("/v1/sessions/{session}"), json!({"status": "open", "archived": true})).await.expect(200);
    let reopened = app.append(&user, &session, "user", "archived still accepts").await;
    assert_eq!(reopened["seq"], 2);
    assert_summary_agrees(&app, &user, &session).await;
}

#[tokio::test]
async fn batch_is_all_or_nothing_with_consecutive_seqs() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "batch").await;
    app.append(&user, &session, "system", "be brief").await;
    let path = format!("{}/batch", messages_path(&session));
    let body = json!({"messages": [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "answer", "reply_to": 2, "usage": {"input_tokens": 5, "output_tokens": 7, "model": "m"}},
    ]});
    let created = app.post(&user, &path, body).await.expect(201).body;
    assert_eq!(seqs(&created), [2, 3]);
    assert_eq!(created["data"][1]["reply_to"], 2);

    let invalid = json!({"messages": [{"role": "user", "content": "fine"}, {"role": "robot", "content": "bad"}]});
    let response = app.post(&user, &path, invalid).await.expect_error(400, "invalid_input");
    assert_eq!(response.body["field"], "messages[1].role");
    let too_big =
        json!({"messages": [{"role": "user", "content": "fine"}, {"role": "user", "content": "x".repeat(40_000)}]});
    let response = app.post(&user, &path, too_big).await.expect_error(413, "payload_too_large");
    assert_eq!(response.body["field"], "messages[1].content");
    let forward =
        json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b", "reply_to": 5}]});
    app.post(&user, &path, forward).await.expect_error(400, "invalid_input");
    let many: Vec<Value> = (0..21).map(|i| json!({"role": "user", "content": format!("{i}")})).collect();
    app.post(&user, &path, json!({"messages": many})).await.expect_error(400, "invalid_input");
    app.post(&user, &path, json!({"messages": []})).await.expect_error(400, "invalid_input");
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!((summary["last_seq"].as_u64(), summary["message_count"].as_u64()), (Some(3), Some(3)));

    let twenty: Vec<Value> = (0..20).map(|i| json!({"role": "user", "content": format!("{i}")})).collect();
    let created = app.post(&user, &path, json!({"messages": twenty, "dedupe_key": "b20"})).await.expect(201).body;
    assert_eq!(seqs(&created), (4..=23).collect::<Vec<u64>>());
}

#[tokio::test]
async fn listing_pages_in_both_directions_and_skips_deleted() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "log").await;
    let batch: Vec<Value> = (1..=10).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect();
    app.post(&user, &format!("{}/batch", messages_path(&session)), json!({"messages": batch})).await.expect(201);
    for seq in [4, 5, 9] {
        app.delete(&user, &format!("{}/{seq}", messages_path(&session))).await.expect(204);
    }
    let path = messages_path(&session);
    let all = app.get(&user, &path).await.expect(200).body;
    assert_eq!(seqs(&all), [1, 2, 3, 6, 7, 8, 10]);
    assert_eq!((all["has_more"].clone(), all["last_seq"].clone()), (json!(false), json!(10)));
    let page = app.get(&user, &format!("{path}?after_seq=2&limit=3")).await.expect(200).body;
    assert_eq!((seqs(&page), page["has_more"].clone()), (vec![3, 6, 7], json!(true)));
    let page = app.get(&user, &format!("{path}?after_seq=7&limit=3")).await.expect(200).body;
    assert_eq!((seqs(&page), page["has_more"].clone()), (vec![8, 10], json!(false)));
    let page = app.get(&user, &format!("{path}?order=desc&limit=2")).await.expect(200).body;
    assert_eq!((seqs(&page), page["has_more"].clone()), (vec![10, 8], json!(true)));
    let page = app.get(&user, &format!("{path}?order=desc&before_seq=8&limit=10")).await.expect(200).body;
    assert_eq!((seqs(&page), page["has_more"].clone()), (vec![7, 6, 3, 2, 1], json!(false)));
    let page = app.get(&user, &format!("{path}?after_seq=2&before_seq=7")).await.expect(200).body;
    assert_eq!(seqs(&page), [3, 6]);
    let page = app.get(&user, &format!("{path}?after_seq=10")).await.expect(200).body;
    assert_eq!((seqs(&page), page["last_seq"].clone()), (vec![], json!(10)));
    for bad in ["limit=0", "limit=201", "after_seq=-1", "after_seq=x", "order=sideways", "before_seq=1.5"] {
        app.get(&user, &format!("{path}?{bad}")).await.expect_error(400, "invalid_input");
    }
    let limit200 = app.get(&user, &format!("{path}?limit=200")).await.expect(200).body;
    assert_eq!(seqs(&limit200).len(), 7);
}

#[tokio::test]
async fn get_edit_and_delete_single_messages() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "edits").await;
    app.append(&user, &session, "user", "typo hre").await;
    app.append(&user, &session, "assistant", "reply").await;
    let path = messages_path(&session);
    app.get(&user, &format!("{path}/3")).await.expect_error(404, "not_found");
    app.get(&user, &format!("{path}/zero")).await.expect_error(400, "invalid_input");
    app.get(&user, &format!("{path}/0")).await.expect_error(400, "invalid_input");

    let edited = app.patch(&user, &format!("{path}/1"), json!({"content": "typo here"})).await.expect(200).body;
    assert_eq!(edited["content"], "typo here");
    assert!(edited["edited_at"].is_string());
    assert_eq!(app.get(&user, &format!("{path}/1")).await.expect(200).body, edited);
    let forbidden = app.patch(&user, &format!("{path}/2"), json!({"content": "put words in its mouth"})).await;
    forbidden.expect_error(403, "forbidden");
    app.patch(&user, &format!("{path}/1"), json!({"content": "x".repeat(33_000)}))
        .await
        .expect_error(413, "payload_too_large");
    app.patch(&user, &format!("{path}/1"), json!({"text": "x"})).await.expect_error(400, "invalid_input");

    // Editing the newest message updates the summary preview.
    app.append(&user, &session, "user", "last words").await;
    app.patch(&user, &format!("{path}/3"), json!({"content": "final words"})).await.expect(200);
    assert_eq!(assert_summary_agrees(&app, &user, &session).await["last_message"]["preview"], "final words");

    app.delete(&user, &format!("{path}/3")).await.expect(204);
    app.delete(&user, &format!("{path}/3")).await.expect_error(404, "not_found");
    app.get(&user, &format!("{path}/3")).await.expect_error(404, "not_found");
    app.patch(&user, &format!("{path}/3"), json!({"content": "back"})).await.expect_error(404, "not_found");
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!((summary["last_message"]["seq"].as_u64(), summary["last_seq"].as_u64()), (Some(2), Some(3)));
    let next = app.append(&user, &session, "user", "seq is never reused").await;
    assert_eq!(next["seq"], 4);
    assert_summary_agrees(&app, &user, &session).await;
}

#[tokio::test]
async fn forget_recent_new_scene_and_reset_keep_the_summary_true() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "scenes").await;
    let base = format!("/v1/sessions/{session}");
    for i in 1..=8 {
        app.append(&user, &session, if i % 2 == 1 { "user" } else { "assistant" }, &format!("m{i}")).await;
    }
    app.delete(&user, &format!("{base}/messages/7")).await.expect(204);

    let forgot = app.post(&user, &format!("{base}/forget-recent"), json!({"count": 2})).await.expect(200).body;
    assert_eq!(forgot, json!({"deleted_count": 2}));
    assert_eq!(seqs(&app.get(&user, &format!("{base}/messages")).await.expect(200).body), [1, 2, 3, 4, 5]);
    assert_summary_agrees(&app, &user, &session).await;

    let scene = app.post(&user, &format!("{base}/new-scene"), json!({"messages_to_keep": 2})).await.expect(200).body;
    assert_eq!(scene, json!({"deleted_messages_count": 3, "memories_preserved": true}));
    assert_eq!(seqs(&app.get(&user, &format!("{base}/messages")).await.expect(200).body), [4, 5]);
    assert_eq!(seqs(&app.get(&user, &format!("{base}/messages?order=desc")).await.expect(200).body), [5, 4]);
    app.get(&user, &format!("{base}/messages/3")).await.expect_error(404, "not_found");
    assert_summary_agrees(&app, &user, &session).await;
    let nothing = app.post(&user, &format!("{base}/new-scene"), json!({"messages_to_keep": 5})).await.expect(200).body;
    assert_eq!(nothing["deleted_messages_count"], 0);

    let next = app.append(&user, &session, "user", "after the scene").await;
    assert_eq!(next["seq"], 9);
    let forgot = app.post(&user, &format!("{base}/forget-recent"), json!({"count": 50})).await.expect(200).body;
    assert_eq!(forgot["deleted_count"], 3, "only live, visible messages are forgotten");
    assert_summary_agrees(&app, &user, &session).await;

    for i in 10..=12 {
        app.append(&user, &session, "user", &format!("m{i}")).await;
    }
    let reset = app.post(&user, &format!("{base}/reset"), json!({})).await.expect(200).body;
    assert_eq!(reset, json!({"deleted_messages_count": 3, "deleted_memories_count": 0}));
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!((summary["message_count"].as_u64(), summary["last_seq"].as_u64()), (Some(0), Some(12)));
    assert_eq!(app.append(&user, &session, "user", "fresh start").await["seq"], 13);

    for (path, body) in [
        ("forget-recent", json!({"count": 0})),
        ("forget-recent", json!({"count": 51})),
        ("forget-recent", json!({})),
        ("new-scene", json!({"messages_to_keep": -1})),
        ("new-scene", json!({"messages_to_keep": 1001})),
        ("reset", json!({"everything": true})),
    ] {
        app.post(&user, &format!("{base}/{path}"), body).await.expect_error(400, "invalid_input");
    }
}

#[tokio::test]
async fn new_scene_keeping_zero_clears_the_view() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "clear").await;
    for i in 1..=3 {
        app.append(&user, &session, "user", &format!("m{i}")).await;
    }
    let scene = app.post(&user, &format!("/v1/sessions/{session}/new-scene"), json!({"messages_to_keep": 0})).await;
    assert_eq!(scene.expect(200).body["deleted_messages_count"], 3);
    let summary = assert_summary_agrees(&app, &user, &session).await;
    assert_eq!(summary["last_message"], Value::Null);
    let listed = app.get(&user, &format!("{}?after_seq=1", messages_path(&session))).await.expect(200).body;
    assert!(seqs(&listed).is_empty(), "a sync from before the scene sees nothing hidden");
}

#[tokio::test]
async fn another_users_messages_are_404_and_untouched() {
    let app = TestApp::new().await;
    let (alice, bob) = (app.user(), app.user());
    let session = app.session(&alice, "private").await;
    app.append(&alice, &session, "user", "secret").await;
    let base = format!("/v1/sessions/{session}");
    let path = messages_path(&session);
    app.post(&bob, &path, json!({"role": "user", "content": "intrude"})).await.expect_error(404, "not_found");
    app.post(&bob, &format!("{path}/batch"), json!({"messages": [{"role": "user", "content": "x"}]}))
        .await
        .expect_error(404, "not_found");
    app.get(&bob, &path).await.expect_error(404, "not_found");
    app.get(&bob, &format!("{path}/1")).await.expect_error(404, "not_found");
    app.patch(&bob, &format!("{path}/1"), json!({"content": "x"})).await.expect_error(404, "not_found");
    app.delete(&bob, &format!("{path}/1")).await.expect_error(404, "not_found");
    app.post(&bob, &format!("{base}/forget-recent"), json!({"count": 1})).await.expect_error(404, "not_found");
    app.post(&bob, &format!("{base}/new-scene"), json!({"messages_to_keep": 0})).await.expect_error(404, "not_found");
    app.post(&bob, &format!("{base}/reset"), json!({})).await.expect_error(404, "not_found");
    let log = app.get(&alice, &path).await.expect(200).body;
    assert_eq!(log["data"][0]["content"], "secret");
    assert_eq!(log["data"][0]["edited_at"], Value::Null);
    assert_summary_agrees(&app, &alice, &session).await;
}

#[tokio::test]
async fn the_preview_never_cuts_a_grapheme() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "emoji").await;
    let family = "👩\u{200d}👩\u{200d}👧\u{200d}👦";
    let content = format!("{}{family}{}", "a".repeat(119), "b".repeat(10));
    app.append(&user, &session, "user", &content).await;
    let summary = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    let preview = summary["last_message"]["preview"].as_str().unwrap();
    assert_eq!(preview, format!("{}{family}", "a".repeat(119)), "120 graphemes, the family whole");
    let flags = "🇺🇦🇯🇵".repeat(70);
    app.append(&user, &session, "user", &flags).await;
    let summary = app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    assert_eq!(summary["last_message"]["preview"].as_str().unwrap(), "🇺🇦🇯🇵".repeat(60));
}
