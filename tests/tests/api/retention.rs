//! Retention: whatever the API stops showing gets an `expires_at`, so DynamoDB's TTL removes it
//! after `RETENTION_DAYS` — in the removing write itself, or by the hourly job's sweep.

use std::time::Duration;

use serde_json::json;
use shared::config::LimitsConfig;

use crate::common::{Item, TestApp, User, scan, unlimited};

fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name).and_then(|value| value.as_s().ok()).map(String::as_str).unwrap_or_default()
}

fn expires_at(item: &Item) -> Option<i64> {
    item.get("expires_at").and_then(|value| value.as_n().ok()).and_then(|n| n.parse().ok())
}

/// The session's messages as stored: seq → expires_at.
async fn message_expiry(app: &TestApp, session: &str) -> Vec<(u64, Option<i64>)> {
    let mut found: Vec<(u64, Option<i64>)> = scan(&app.config.tables.messages)
        .await
        .iter()
        .filter(|item| text(item, "session_id") == session)
        .map(|item| (item["seq"].as_n().unwrap().parse().unwrap(), expires_at(item)))
        .collect();
    found.sort();
    found
}

fn in_days(days: u64) -> i64 {
    (std::time::SystemTime::now() + Duration::from_secs(days * 86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[track_caller]
fn about(actual: Option<i64>, expected: i64) {
    let actual = actual.expect("an expires_at");
    assert!((actual - expected).abs() < 120, "expires_at {actual}, expected about {expected}");
}

async fn chat(app: &TestApp, user: &User, messages: usize) -> String {
    let session = app.session(user, "kept").await;
    for i in 0..messages {
        app.append(user, &session, if i % 2 == 0 { "user" } else { "assistant" }, &format!("m{i}")).await;
    }
    session
}

async fn run_job(app: &TestApp) -> serde_json::Value {
    serde_json::to_value(app.state.store.run_chores(Duration::from_secs(30)).await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_deleted_message_expires_in_the_write_that_deletes_it() {
    let app = TestApp::with_limits(
        LimitsConfig { retention_days: 7, ..unlimited() },
        std::sync::Arc::new(shared::domain::SystemClock),
    )
    .await;
    let user = app.user();
    let session = chat(&app, &user, 4).await;
    app.delete(&user, &format!("/v1/sessions/{session}/messages/2")).await.expect(204);
    app.post(&user, &format!("/v1/sessions/{session}/forget-recent"), json!({"count": 1})).await.expect(200);
    let stored = message_expiry(&app, &session).await;
    assert_eq!(
        stored.iter().map(|(seq, at)| (*seq, at.is_some())).collect::<Vec<_>>(),
        [(1, false), (2, true), (3, false), (4, true)]
    );
    about(stored[1].1, in_days(7));
    about(stored[3].1, in_days(7));
}

#[tokio::test]
async fn the_job_stamps_what_new_scene_reset_and_delete_hid_and_nothing_else() {
    let app = TestApp::new().await;
    let (user, other) = (app.user(), app.user());
    let scene = chat(&app, &user, 5).await;
    let reset = chat(&app, &user, 3).await;
    let deleted = chat(&app, &user, 2).await;
    let untouched = chat(&app, &other, 3).await;
    for (session, content) in [(&reset, "old epoch"), (&deleted, "of a deleted session"), (&untouched, "theirs")] {
        let owner = if session == &untouched { &other } else { &user };
        let body = json!({"content": content, "memory_type": "fact", "session_id": session});
        app.post(owner, "/v1/memories", body).await.expect(201);
    }
    app.post(&user, "/v1/memories", json!({"content": "user-wide", "memory_type": "fact"})).await.expect(201);

    app.post(&user, &format!("/v1/sessions/{scene}/new-scene"), json!({"messages_to_keep": 2})).await.expect(200);
    app.post(&user, &format!("/v1/sessions/{reset}/reset"), json!({})).await.expect(200);
    let fresh = json!({"content": "new epoch", "memory_type": "fact", "session_id": reset});
    app.post(&user, "/v1/memories", fresh).await.expect(201);
    app.append(&user, &reset, "user", "after the reset").await;
    app.delete(&user, &format!("/v1/sessions/{deleted}")).await.expect(204);
    // Nothing is stamped yet: the requests only listed their sweeps.
    assert!(message_expiry(&app, &scene).await.iter().all(|(_, at)| at.is_none()));

    let report = run_job(&app).await;
    assert_eq!(report["sessions_swept"], 3, "{report}");
    assert_eq!(report["messages_expired"], 3 + 3 + 2, "{report}");
    assert_eq!(report["finished"], true);

    let stamped = |stored: Vec<(u64, Option<i64>)>| {
        stored.iter().filter(|(_, at)| at.is_some()).map(|(seq, _)| *seq).collect::<Vec<_>>()
    };
    assert_eq!(stamped(message_expiry(&app, &scene).await), [1, 2, 3], "the scene's kept two stay");
    assert_eq!(stamped(message_expiry(&app, &reset).await), [1, 2, 3], "the message after the reset stays");
    assert_eq!(stamped(message_expiry(&app, &deleted).await), [1, 2]);
    assert!(stamped(message_expiry(&app, &untouched).await).is_empty(), "another user's log is untouched");
    about(message_expiry(&app, &scene).await[0].1, in_days(30));

    // Memories: the reset's old epoch and the deleted session's (memory, dedupe marker, counter).
    let memories = scan(&app.config.tables.memories).await;
    let memory = |content: &str| memories.iter().find(|item| text(item, "content") == content).unwrap();
    for gone in ["old epoch", "of a deleted session"] {
        about(expires_at(memory(gone)), in_days(30));
    }
    for kept in ["new epoch", "user-wide", "theirs"] {
        assert_eq!(expires_at(memory(kept)), None, "{kept}");
    }
    let stamped_memory_items = memories.iter().filter(|item| expires_at(item).is_some()).count();
    assert_eq!(report["memories_expired"], stamped_memory_items as u64, "{report}");
    assert_eq!(stamped_memory_items, 6, "two memories, their markers and counters");
    let session_item =
        scan(&app.config.tables.sessions).await.into_iter().find(|item| text(item, "session_id") == deleted).unwrap();
    about(expires_at(&session_item), in_days(30));

    // What the API shows is unchanged, and a second run has nothing left to do.
    let listed = app.get(&user, &format!("/v1/sessions/{scene}/messages")).await.expect(200).body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let again = run_job(&app).await;
    assert_eq!((again["sessions_swept"].as_u64(), again["messages_expired"].as_u64()), (Some(0), Some(0)), "{again}");
}
