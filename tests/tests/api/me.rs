//! The caller's data as a whole: `GET /v1/me/export` pages through it, `DELETE /v1/me` erases
//! every item of it — and nothing of anyone else.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Item, TestApp, User, scan};

fn text(item: &Item, name: &str) -> String {
    item.get(name).and_then(|value| value.as_s().ok()).cloned().unwrap_or_default()
}

/// Every stored item that belongs to the user or to one of `sessions`, table by table.
async fn items_of(app: &TestApp, user: &User, sessions: &[String]) -> usize {
    let tables = &app.config.tables;
    let mut count = 0;
    for table in [&tables.sessions, &tables.memories, &tables.limits] {
        count += scan(table).await.iter().filter(|item| text(item, "user_id") == user.id).count();
    }
    let of_session = |value: String| sessions.iter().any(|session| value.starts_with(session.as_str()));
    count += scan(&tables.messages).await.into_iter().filter(|item| of_session(text(item, "session_id"))).count();
    count += scan(&tables.idempotency).await.into_iter().filter(|item| of_session(text(item, "scope"))).count();
    count
}

/// A user with a bit of everything: sessions (one deleted, one reset, one archived), messages (one
/// keyed, one deleted), memories of both scopes, a time zone, usage.
async fn lived_in(app: &TestApp, user: &User) -> Vec<String> {
    let mut sessions = Vec::new();
    for title in ["talk", "reset", "archived", "deleted"] {
        let session = app.session(user, title).await;
        let path = format!("/v1/sessions/{session}/messages");
        for i in 0..3 {
            app.post(user, &path, json!({"role": "user", "content": format!("{title} {i}")})).await.expect(201);
        }
        let reply = json!({"role": "assistant", "content": "ok", "usage": {"input_tokens": 5, "output_tokens": 2, "model": "m"}, "dedupe_key": format!("k-{title}")});
        app.post(user, &path, reply).await.expect(201);
        let memory = json!({"content": format!("about {title}"), "memory_type": "fact", "session_id": session});
        app.post(user, "/v1/memories", memory).await.expect(201);
        sessions.push(session);
    }
    app.delete(user, &format!("/v1/sessions/{}/messages/2", sessions[0])).await.expect(204);
    app.post(user, &format!("/v1/sessions/{}/reset", sessions[1]), json!({})).await.expect(200);
    app.post(user, &format!("/v1/sessions/{}/archive", sessions[2]), json!({})).await.expect(200);
    app.delete(user, &format!("/v1/sessions/{}", sessions[3])).await.expect(204);
    app.post(user, "/v1/memories", json!({"content": "user-wide", "memory_type": "preference"})).await.expect(201);
    app.patch(user, "/v1/limits/profile", json!({"timezone": "Europe/Berlin"})).await.expect(200);
    sessions
}

#[tokio::test]
async fn export_pages_through_what_the_api_shows_of_the_caller() {
    let app = TestApp::new().await;
    let (user, other) = (app.user(), app.user());
    let sessions = lived_in(&app, &user).await;
    lived_in(&app, &other).await;
    // Enough messages in one session to need two pages of it.
    for i in 0..250 {
        app.append(&user, &sessions[0], "user", &format!("long {i}")).await;
    }

    let first = app.get(&user, "/v1/me/export").await.expect(200).body;
    assert_eq!(first["user_id"], user.id);
    let mut ids: Vec<&str> = first["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut live = vec![sessions[0].as_str(), sessions[1].as_str(), sessions[2].as_str()];
    live.sort();
    assert_eq!(ids, live, "active and archived sessions; not the deleted one");
    let memories: Vec<&str> =
        first["memories"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(memories.len(), 3, "{memories:?}: the reset and deleted sessions' memories are not shown");
    assert!(
        memories.contains(&"user-wide") && memories.contains(&"about talk") && memories.contains(&"about archived")
    );
    assert_eq!(first["limits"]["timezone"], "Europe/Berlin");
    assert!(first["usage"].is_object());
    assert_eq!(first["messages"].as_array().unwrap().len(), 0);

    let mut messages: Vec<Value> = Vec::new();
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(next) = cursor {
        let page = app.get(&user, &format!("/v1/me/export?cursor={next}")).await.expect(200).body;
        assert!(page["limits"].is_null() && page["sessions"].as_array().unwrap().is_empty());
        messages.extend(page["messages"].as_array().unwrap().iter().cloned());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages += 1;
    }
    // talk: 4 - 1 deleted + 250; reset: 0; archived: 4.
    assert_eq!(messages.len(), 3 + 250 + 4);
    assert!(pages >= 4, "{pages} pages");
    let exported = serde_json::to_string(&messages).unwrap();
    assert!(!exported.contains("talk 1"), "the deleted message is not exported");
    assert!(!exported.contains("reset 0"), "the reset log is not exported");
    assert!(messages.iter().all(|m| sessions.iter().any(|s| m["session_id"] == s.as_str())), "only the caller's");
    app.get(&user, "/v1/me/export?cursor=garbage").await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn erasure_leaves_nothing_of_the_caller_and_touches_nobody_else() {
    let app = TestApp::new().await;
    let (user, other) = (app.user(), app.user());
    let sessions = lived_in(&app, &user).await;
    let their_sessions = lived_in(&app, &other).await;
    let theirs = items_of(&app, &other, &their_sessions).await;
    let mine = items_of(&app, &user, &sessions).await;
    assert!(mine > 40, "{mine} items to erase");

    let erased = app.delete(&user, "/v1/me").await.expect(200).body;
    assert_eq!(erased["complete"], true);
    assert_eq!(erased["erased"]["sessions"], 4);
    assert_eq!(erased["erased"]["messages"], 16, "hidden and deleted ones too");
    assert_eq!(erased["erased"]["idempotency_records"], 4);
    assert!(erased["erased"]["memories"].as_u64().unwrap() >= 5);
    let total: u64 = ["sessions", "messages", "idempotency_records", "memories", "limits"]
        .iter()
        .map(|kind| erased["erased"][kind].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, mine, "the counts are the items that were stored");
    assert_eq!(items_of(&app, &user, &sessions).await, 0, "nothing of the caller remains");
    assert_eq!(items_of(&app, &other, &their_sessions).await, theirs, "nothing of anyone else is touched");

    // The caller starts over as a new user; a second erasure finds nothing.
    assert_eq!(app.get(&user, "/v1/sessions").await.expect(200).body["data"].as_array().unwrap().len(), 0);
    app.get(&user, &format!("/v1/sessions/{}", sessions[0])).await.expect_error(404, "not_found");
    let again = app.delete(&user, "/v1/me").await.expect(200).body;
    assert_eq!(again["erased"]["messages"], 0);
}

#[tokio::test]
async fn erasure_in_short_passes_resumes_until_complete() {
    let app = TestApp::new().await;
    let user = app.user();
    let sessions = lived_in(&app, &user).await;
    let mine = items_of(&app, &user, &sessions).await;
    let user_id = shared::domain::UserId::parse(&user.id).unwrap();
    let (mut passes, mut total) = (0, 0);
    loop {
        let pass = app.state.store.erase_user(&user_id, Duration::ZERO).await.unwrap();
        passes += 1;
        total += pass.sessions + pass.messages + pass.idempotency_records + pass.memories + pass.limits;
        if pass.complete {
            break;
        }
        assert!(passes < 50, "every pass makes progress");
    }
    assert!(passes >= 5, "with no time to spare each pass erases one session, then the rest ({passes})");
    assert_eq!(total as usize, mine);
    assert_eq!(items_of(&app, &user, &sessions).await, 0);
}

#[tokio::test]
async fn the_profile_is_created_on_first_use_and_patched_field_by_field() {
    let app = TestApp::new().await;
    let user = app.user();
    let me = app.get(&user, "/v1/me").await.expect(200).body;
    assert_eq!(me["id"], user.id.as_str());
    assert_eq!((me["display_name"].clone(), me["language"].clone()), (Value::Null, Value::Null));
    assert_eq!((me["time_zone"].clone(), me["is_adult_confirmed"].clone()), (json!("UTC"), json!(false)));
    assert_eq!(me["telegram"], Value::Null);

    let changed = app
        .patch(&user, "/v1/me", json!({"display_name": "  Ana  ", "gender": "non_binary", "language": "pt-br"}))
        .await
        .expect(200)
        .body;
    assert_eq!(changed["display_name"], "Ana");
    assert_eq!(changed["gender"], "non_binary");
    assert_eq!(changed["language"], "pt-BR", "canonical case");
    assert_eq!(changed["created_at"], me["created_at"]);
    let cleared = app.patch(&user, "/v1/me", json!({"gender": null})).await.expect(200).body;
    assert_eq!((cleared["gender"].clone(), cleared["display_name"].clone()), (Value::Null, json!("Ana")));

    let zoned = app.patch(&user, "/v1/me", json!({"time_zone": "Europe/Lisbon"})).await.expect(200).body;
    assert_eq!(zoned["time_zone"], "Europe/Lisbon");
    assert_eq!(app.get(&user, "/v1/limits").await.expect(200).body["timezone"], "Europe/Lisbon");
    app.patch(&user, "/v1/me", json!({"time_zone": "Asia/Tokyo", "display_name": "Bea"}))
        .await
        .expect_error(409, "conflict");
    assert_eq!(app.get(&user, "/v1/me").await.expect(200).body["display_name"], "Ana", "nothing of a refused change");

    for bad in [
        json!({}),
        json!({"gender": "robot"}),
        json!({"language": "english"}),
        json!({"language": "en_US"}),
        json!({"display_name": ""}),
        json!({"time_zone": "Mars/Olympus"}),
        json!({"nickname": "x"}),
    ] {
        app.patch(&user, "/v1/me", bad).await.expect_error(400, "invalid_input");
    }

    // The old time-zone route still answers, marked deprecated.
    let other = app.user();
    let old = app.patch(&other, "/v1/limits/profile", json!({"timezone": "Asia/Tokyo"})).await.expect(200);
    assert_eq!(old.header("deprecation"), Some("true"));
    assert_eq!(old.header("link"), Some("</v1/me>; rel=\"successor-version\""));
    assert_eq!(app.get(&other, "/v1/me").await.expect(200).body["time_zone"], "Asia/Tokyo");
}
