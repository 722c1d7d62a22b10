//! Memories API and the assembled context: scopes, dedupe, ranking, the cap, and the interplay
//! with reset, new-scene and session deletion.

use serde_json::{Value, json};

use crate::common::{TestApp, User};

async fn remember(app: &TestApp, user: &User, body: Value) -> Value {
    app.post(user, "/v1/memories", body).await.expect(201).body
}

fn contents(body: &Value) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn add_returns_the_memory_with_defaults() {
    let app = TestApp::new().await;
    let user = app.user();
    let memory = remember(&app, &user, json!({"content": "Likes green tea 🍵", "memory_type": "preference"})).await;
    assert_eq!(memory["importance"], 5);
    assert_eq!(memory["session_id"], Value::Null);
    assert_eq!(memory["memory_type"], "preference");
    assert_eq!(memory["content"], "Likes green tea 🍵");
    assert_eq!(memory["created_at"], memory["updated_at"]);
    let id = memory["id"].as_str().unwrap();
    assert_eq!(app.get(&user, &format!("/v1/memories/{id}")).await.expect(200).body, memory);
}

#[tokio::test]
async fn add_validates_its_input() {
    let app = TestApp::new().await;
    let (user, other) = (app.user(), app.user());
    let foreign = app.session(&other, "not yours").await;
    for (body, field) in [
        (json!({"content": "", "memory_type": "fact"}), "content"),
        (json!({"content": "   ", "memory_type": "fact"}), "content"),
        (json!({"content": "x".repeat(2001), "memory_type": "fact"}), "content"),
        (json!({"content": "x", "memory_type": "opinion"}), "memory_type"),
        (json!({"content": "x", "memory_type": "fact", "importance": 0}), "importance"),
        (json!({"content": "x", "memory_type": "fact", "importance": 11}), "importance"),
        (json!({"content": "x", "memory_type": "fact", "importance": "high"}), "importance"),
        (json!({"content": "x", "memory_type": "fact", "session_id": "nope"}), "session_id"),
        (json!({"content": "x", "memory_type": "fact", "weight": 3}), "weight"),
        (json!({"memory_type": "fact"}), "content"),
    ] {
        let response = app.post(&user, "/v1/memories", body.clone()).await.expect_error(400, "invalid_input");
        assert_eq!(response.body["field"], field, "for {body}");
    }
    remember(&app, &user, json!({"content": "x".repeat(2000), "memory_type": "fact", "importance": 10})).await;
    let body = json!({"content": "x", "memory_type": "fact", "session_id": foreign});
    app.post(&user, "/v1/memories", body).await.expect_error(404, "not_found");
    let body = json!({"content": "x", "memory_type": "fact", "session_id": uuid::Uuid::new_v4()});
    app.post(&user, "/v1/memories", body).await.expect_error(404, "not_found");
}

#[tokio::test]
async fn the_same_content_and_type_in_a_scope_is_returned_not_duplicated() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "chat").await;
    let body = json!({"content": "Has a cat named Miso", "memory_type": "fact", "importance": 7});
    let first = remember(&app, &user, body.clone()).await;
    let again = app
        .post(&user, "/v1/memories", json!({"content": "Has a cat named Miso", "memory_type": "fact", "importance": 2}))
        .await
        .expect(200)
        .body;
    assert_eq!(again, first, "the existing memory, unchanged");
    let other_type =
        remember(&app, &user, json!({"content": "Has a cat named Miso", "memory_type": "relationship"})).await;
    assert_ne!(other_type["id"], first["id"]);
    let in_session =
        remember(&app, &user, json!({"content": "Has a cat named Miso", "memory_type": "fact", "session_id": session}))
            .await;
    assert_ne!(in_session["id"], first["id"]);
    let listed = app.get(&user, "/v1/memories").await.expect(200).body;
    assert_eq!(listed["total"], 2);
    // Concurrent duplicates: still one memory.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, user) = (app.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            app.post(&user, "/v1/memories", json!({"content": "Born in Porto", "memory_type": "fact"})).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert!(matches!(response.status.as_u16(), 200 | 201), "{}", response.body);
        ids.insert(response.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 3);
}

#[tokio::test]
async fn listing_ranks_by_importance_then_newest_and_pages() {
    let app = TestApp::new().await;
    let user = app.user();
    for (content, importance, memory_type) in [
        ("a-5", 5, "fact"),
        ("b-9", 9, "fact"),
        ("c-5", 5, "preference"),
        ("d-1", 1, "emotion"),
        ("e-9", 9, "relationship"),
        ("f-5", 5, "fact"),
    ] {
        remember(&app, &user, json!({"content": content, "memory_type": memory_type, "importance": importance})).await;
    }
    let all = app.get(&user, "/v1/memories").await.expect(200).body;
    assert_eq!(contents(&all), ["e-9", "b-9", "f-5", "c-5", "a-5", "d-1"]);
    assert_eq!((all["total"].clone(), all["has_more"].clone()), (json!(6), json!(false)));

    let mut seen = Vec::new();
    let mut path = "/v1/memories?limit=4".to_owned();
    loop {
        let page = app.get(&user, &path).await.expect(200).body;
        assert_eq!(page["total"], 6);
        seen.extend(contents(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/memories?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["e-9", "b-9", "f-5", "c-5", "a-5", "d-1"]);

    let important = app.get(&user, "/v1/memories?min_importance=5").await.expect(200).body;
    assert_eq!((contents(&important).len(), important["total"].clone()), (5, json!(5)));
    let facts = app.get(&user, "/v1/memories?memory_type=fact&limit=1").await.expect(200).body;
    assert_eq!(
        (contents(&facts), facts["total"].clone(), facts["has_more"].clone()),
        (vec!["b-9".to_owned()], json!(3), json!(true))
    );
    let cursor = facts["next_cursor"].as_str().unwrap();
    let next = app.get(&user, &format!("/v1/memories?memory_type=fact&limit=5&cursor={cursor}")).await.expect(200).body;
    assert_eq!(contents(&next), ["f-5", "a-5"]);
    for bad in [
        "limit=0",
        "limit=101",
        "min_importance=0",
        "min_importance=11",
        "memory_type=x",
        "cursor=%%",
        "include_global=true",
    ] {
        app.get(&user, &format!("/v1/memories?{bad}")).await.expect_error(400, "invalid_input");
    }
}

#[tokio::test]
async fn session_scope_and_include_global() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "chat").await;
    remember(&app, &user, json!({"content": "global-7", "memory_type": "fact", "importance": 7})).await;
    remember(
        &app,
        &user,
        json!({"content": "session-8", "memory_type": "fact", "importance": 8, "session_id": session}),
    )
    .await;
    remember(
        &app,
        &user,
        json!({"content": "session-3", "memory_type": "emotion", "importance": 3, "session_id": session}),
    )
    .await;
    assert_eq!(contents(&app.get(&user, "/v1/memories").await.expect(200).body), ["global-7"]);
    let own = app.get(&user, &format!("/v1/memories?session_id={session}")).await.expect(200).body;
    assert_eq!(
        (contents(&own), own["total"].clone()),
        (vec!["session-8".to_owned(), "session-3".to_owned()], json!(2))
    );
    let both = app.get(&user, &format!("/v1/memories?session_id={session}&include_global=true")).await.expect(200).body;
    assert_eq!(contents(&both), ["session-8", "global-7", "session-3"]);
    assert_eq!(both["total"], 3);
    let page = app
        .get(&user, &format!("/v1/memories?session_id={session}&include_global=true&limit=2"))
        .await
        .expect(200)
        .body;
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&user, &format!("/v1/memories?session_id={session}&include_global=true&limit=2&cursor={cursor}"))
        .await
        .expect(200)
        .body;
    assert_eq!(contents(&rest), ["session-3"]);
    assert_eq!(own["data"][0]["session_id"], session.as_str());
}

#[tokio::test]
async fn get_update_and_delete_by_id() {
    let app = TestApp::new().await;
    let user = app.user();
    let first = remember(&app, &user, json!({"content": "Works nights", "memory_type": "fact", "importance": 3})).await;
    remember(&app, &user, json!({"content": "Loves jazz", "memory_type": "preference", "importance": 6})).await;
    let id = first["id"].as_str().unwrap();
    let path = format!("/v1/memories/{id}");
    let updated =
        app.patch(&user, &path, json!({"importance": 10, "content": "Works night shifts"})).await.expect(200).body;
    assert_eq!((updated["importance"].clone(), updated["content"].clone()), (json!(10), json!("Works night shifts")));
    assert_eq!(updated["created_at"], first["created_at"]);
    assert!(updated["updated_at"].as_str() > first["updated_at"].as_str());
    assert_eq!(contents(&app.get(&user, "/v1/memories").await.expect(200).body), ["Works night shifts", "Loves jazz"]);
    // The old text is free again; the new one is taken.
    remember(&app, &user, json!({"content": "Works nights", "memory_type": "fact"})).await;
    app.patch(&user, &path, json!({"content": "Loves jazz", "memory_type": "preference"}))
        .await
        .expect_error(409, "conflict");
    app.patch(&user, &path, json!({})).await.expect_error(400, "invalid_input");
    app.patch(&user, &path, json!({"importance": 0})).await.expect_error(400, "invalid_input");
    app.get(&user, "/v1/memories/not-a-uuid").await.expect_error(400, "invalid_input");
    let deleted = app.delete(&user, &path).await.expect(200).body;
    assert_eq!(deleted, json!({"success": true, "deleted_id": id}));
    app.get(&user, &path).await.expect_error(404, "not_found");
    app.delete(&user, &path).await.expect_error(404, "not_found");
    app.patch(&user, &path, json!({"importance": 2})).await.expect_error(404, "not_found");
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 2);
}

#[tokio::test]
async fn other_users_memories_are_404_and_untouched() {
    let app = TestApp::new().await;
    let (alice, bob) = (app.user(), app.user());
    let session = app.session(&alice, "private").await;
    let memory =
        remember(&app, &alice, json!({"content": "secret", "memory_type": "fact", "session_id": session})).await;
    let path = format!("/v1/memories/{}", memory["id"].as_str().unwrap());
    app.get(&bob, &path).await.expect_error(404, "not_found");
    app.patch(&bob, &path, json!({"importance": 1})).await.expect_error(404, "not_found");
    app.delete(&bob, &path).await.expect_error(404, "not_found");
    app.get(&bob, &format!("/v1/memories?session_id={session}")).await.expect_error(404, "not_found");
    app.delete(&bob, &format!("/v1/memories?session_id={session}")).await.expect_error(404, "not_found");
    assert_eq!(app.get(&bob, "/v1/memories").await.expect(200).body["total"], 0);
    app.get(&bob, &format!("/v1/sessions/{session}/context")).await.expect_error(404, "not_found");
    assert_eq!(app.get(&alice, &path).await.expect(200).body, memory);
}

#[tokio::test]
async fn each_scope_holds_at_most_500() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "full").await;
    let mut first_id = String::new();
    for i in 0..500 {
        let memory = remember(
            &app,
            &user,
            json!({"content": format!("fact {i}"), "memory_type": "fact", "session_id": session}),
        )
        .await;
        if i == 0 {
            first_id = memory["id"].as_str().unwrap().to_owned();
        }
    }
    let over = json!({"content": "one too many", "memory_type": "fact", "session_id": session});
    let response = app.post(&user, "/v1/memories", over.clone()).await.expect_error(409, "conflict");
    assert!(response.body["message"].as_str().unwrap().contains("500"));
    // A duplicate is still answered, and other scopes are not affected.
    app.post(&user, "/v1/memories", json!({"content": "fact 7", "memory_type": "fact", "session_id": session}))
        .await
        .expect(200);
    remember(&app, &user, json!({"content": "global is its own scope", "memory_type": "fact"})).await;
    app.delete(&user, &format!("/v1/memories/{first_id}")).await.expect(200);
    app.post(&user, "/v1/memories", over).await.expect(201);
    let listed = app.get(&user, &format!("/v1/memories?session_id={session}&limit=1")).await.expect(200).body;
    assert_eq!(listed["total"], 500);
}

#[tokio::test]
async fn delete_all_in_a_scope() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "chat").await;
    for i in 0..60 {
        remember(&app, &user, json!({"content": format!("g{i}"), "memory_type": "fact"})).await;
    }
    for i in 0..3 {
        remember(&app, &user, json!({"content": format!("s{i}"), "memory_type": "fact", "session_id": session})).await;
    }
    let deleted = app.delete(&user, &format!("/v1/memories?session_id={session}")).await.expect(200).body;
    assert_eq!(deleted, json!({"success": true, "deleted_count": 3}));
    assert_eq!(app.get(&user, &format!("/v1/memories?session_id={session}")).await.expect(200).body["total"], 0);
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 60);
    let deleted = app.delete(&user, "/v1/memories").await.expect(200).body;
    assert_eq!(deleted, json!({"success": true, "deleted_count": 60}));
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 0);
    // The freed scope accepts the same memories again.
    remember(&app, &user, json!({"content": "g1", "memory_type": "fact"})).await;
    remember(&app, &user, json!({"content": "s1", "memory_type": "fact", "session_id": session})).await;
}

#[tokio::test]
async fn reset_deletes_session_memories_new_scene_keeps_them_delete_hides_them() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "story").await;
    remember(&app, &user, json!({"content": "global stays", "memory_type": "fact"})).await;
    let kept =
        remember(&app, &user, json!({"content": "scene one", "memory_type": "emotion", "session_id": session})).await;
    remember(&app, &user, json!({"content": "scene two", "memory_type": "emotion", "session_id": session})).await;
    app.append(&user, &session, "user", "hi").await;
    let scene = app.post(&user, &format!("/v1/sessions/{session}/new-scene"), json!({"messages_to_keep": 0})).await;
    assert_eq!(scene.expect(200).body["memories_preserved"], true);
    assert_eq!(app.get(&user, &format!("/v1/memories?session_id={session}")).await.expect(200).body["total"], 2);

    let reset = app.post(&user, &format!("/v1/sessions/{session}/reset"), json!({})).await.expect(200).body;
    assert_eq!(reset, json!({"deleted_messages_count": 0, "deleted_memories_count": 2}));
    assert_eq!(app.get(&user, &format!("/v1/memories?session_id={session}")).await.expect(200).body["total"], 0);
    app.get(&user, &format!("/v1/memories/{}", kept["id"].as_str().unwrap())).await.expect_error(404, "not_found");
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 1);
    remember(&app, &user, json!({"content": "scene one", "memory_type": "emotion", "session_id": session})).await;

    let after =
        remember(&app, &user, json!({"content": "after reset", "memory_type": "fact", "session_id": session})).await;
    app.delete(&user, &format!("/v1/sessions/{session}")).await.expect(204);
    app.get(&user, &format!("/v1/memories/{}", after["id"].as_str().unwrap())).await.expect_error(404, "not_found");
    app.get(&user, &format!("/v1/memories?session_id={session}")).await.expect_error(404, "not_found");
    let body = json!({"content": "late", "memory_type": "fact", "session_id": session});
    app.post(&user, "/v1/memories", body).await.expect_error(404, "not_found");
    assert_eq!(app.get(&user, "/v1/memories").await.expect(200).body["total"], 1);
}

#[tokio::test]
async fn context_ranks_and_keeps_the_recent_turns() {
    let app = TestApp::new().await;
    let user = app.user();
    let created = app
        .post(&user, "/v1/sessions", json!({"title": "Luna", "settings": {"relationship_type": "friend"}}))
        .await
        .expect(201)
        .body;
    let session = created["id"].as_str().unwrap().to_owned();
    remember(&app, &user, json!({"content": "global-4", "memory_type": "fact", "importance": 4})).await;
    remember(
        &app,
        &user,
        json!({"content": "session-9", "memory_type": "emotion", "importance": 9, "session_id": session}),
    )
    .await;
    remember(&app, &user, json!({"content": "global-9-newer", "memory_type": "fact", "importance": 9})).await;
    let other = app.session(&user, "other").await;
    remember(
        &app,
        &user,
        json!({"content": "other-session-10", "memory_type": "fact", "importance": 10, "session_id": other}),
    )
    .await;
    for i in 1..=10 {
        app.append(&user, &session, if i % 2 == 1 { "user" } else { "assistant" }, &format!("turn {i}")).await;
    }
    app.delete(&user, &format!("/v1/sessions/{session}/messages/9")).await.expect(204);

    let before = app.state.store.dynamodb_calls();
    let context = app.get(&user, &format!("/v1/sessions/{session}/context?recent=4")).await.expect(200).body;
    assert!(
        app.state.store.dynamodb_calls() - before <= 4,
        "two rounds: 3 parallel calls (the log's query, the session with its summary and the profile in one \
         batch read, the global memories), then the session's own memories"
    );
    assert_eq!(
        context["session"],
        json!({"id": session, "title": "Luna", "settings": {"relationship_type": "friend"}})
    );
    assert_eq!(contents(&json!({"data": context["memories"]})), ["global-9-newer", "session-9", "global-4"]);
    let seqs: Vec<_> = context["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [6, 7, 8, 10]);
    assert_eq!(context["truncated"], false);
    // ceil(bytes/4) of each part as the model reads it: the default prompt (28 bytes) 7, no
    // profile, "What you know about the user:\n- global-9-newer\n- session-9\n- global-4" (69) 18,
    // "Your relationship with the user: friend." (40) 10, no summary, and the messages 2+2+2+2.
    assert_eq!(context["token_estimate"], 7 + 18 + 10 + 8);
    let tokens: Vec<_> = context["parts"].as_array().unwrap().iter().map(|part| part["tokens"].clone()).collect();
    assert_eq!(tokens, [json!(7), json!(0), json!(18), json!(10), json!(0), json!(8)]);
    assert_eq!(context["system_prompt"], json!({"source": "default", "text": "You are a helpful assistant."}));

    let tight =
        app.get(&user, &format!("/v1/sessions/{session}/context?recent=4&max_tokens=36")).await.expect(200).body;
    assert_eq!(tight["truncated"], true);
    // 43 tokens > 36: drop global-4 (memories 18 → 15), then turn 6 (2), then session-9 (15 → 12) → 35.
    assert_eq!(contents(&json!({"data": tight["memories"]})), ["global-9-newer"]);
    let seqs: Vec<_> = tight["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [7, 8, 10]);
    assert_eq!(tight["token_estimate"], 35);

    let tiny = app.get(&user, &format!("/v1/sessions/{session}/context?max_tokens=1")).await.expect(200).body;
    assert_eq!(tiny["memories"], json!([]));
    assert_eq!(tiny["messages"].as_array().unwrap().len(), 1, "the newest message is never dropped");
    assert_eq!(tiny["messages"][0]["seq"], 10);

    for bad in ["recent=0", "recent=101", "max_tokens=0", "max_tokens=abc"] {
        app.get(&user, &format!("/v1/sessions/{session}/context?{bad}")).await.expect_error(400, "invalid_input");
    }
    app.post(&user, &format!("/v1/sessions/{session}/new-scene"), json!({"messages_to_keep": 2})).await.expect(200);
    let scene = app.get(&user, &format!("/v1/sessions/{session}/context")).await.expect(200).body;
    let seqs: Vec<_> = scene["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [8, 10]);
    assert_eq!(scene["memories"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_locked_or_closed_session_takes_no_new_memories() {
    let app = TestApp::new().await;
    let user = app.user();
    for status in ["locked", "closed"] {
        let session = app.session(&user, status).await;
        remember(&app, &user, json!({"content": "likes tea", "memory_type": "preference", "session_id": session}))
            .await;
        app.patch(&user, &format!("/v1/sessions/{session}"), json!({"status": status})).await.expect(200);
        let refused = app
            .post(
                &user,
                "/v1/memories",
                json!({"content": "likes coffee", "memory_type": "preference", "session_id": session}),
            )
            .await;
        let refused = refused.expect_error(409, "session_closed");
        assert_eq!(refused.body["status"], status);
        let listed = app.get(&user, &format!("/v1/memories?session_id={session}")).await.expect(200).body;
        assert_eq!(listed["data"].as_array().unwrap().len(), 1, "nothing was added");
        // Reopened, it takes them again; user-wide memories were never affected.
        app.patch(&user, &format!("/v1/sessions/{session}"), json!({"status": "open"})).await.expect(200);
        app.post(
            &user,
            "/v1/memories",
            json!({"content": "likes coffee", "memory_type": "preference", "session_id": session}),
        )
        .await
        .expect(201);
    }
    app.post(&user, "/v1/memories", json!({"content": "global fact", "memory_type": "fact"})).await.expect(201);
}

/// The context reads a session's own memories at the memory epoch this instance last saw, beside
/// the session item: after a reset on another instance that guess is stale, and the context still
/// shows exactly the new epoch's memories (the reset's are gone, the one added since is there).
#[tokio::test]
async fn after_a_reset_elsewhere_the_context_shows_only_the_new_epochs_memories() {
    let app = TestApp::new().await;
    let elsewhere = app.sibling();
    let user = app.user();
    let session = app.session(&user, "epochs").await;
    let context = format!("/v1/sessions/{session}/context");
    let mine = |body: &Value| -> Vec<String> {
        body["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|memory| memory["content"].as_str().unwrap().to_owned())
            .collect()
    };
    remember(&app, &user, json!({"content": "Keeps bees on the roof", "memory_type": "fact", "session_id": session}))
        .await;
    let before = app.get(&user, &context).await.expect(200).body;
    assert_eq!(mine(&before), ["Keeps bees on the roof"], "{before}");
    elsewhere.post(&user, &format!("/v1/sessions/{session}/reset"), json!({})).await.expect(200);
    remember(
        &elsewhere,
        &user,
        json!({"content": "Moved the hives to the garden", "memory_type": "fact", "session_id": session}),
    )
    .await;
    for _ in 0..2 {
        let after = app.get(&user, &context).await.expect(200).body;
        assert_eq!(mine(&after), ["Moved the hives to the garden"], "{after}");
    }
}
