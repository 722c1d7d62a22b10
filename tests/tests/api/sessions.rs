//! Sessions API: create, list, get, update, archive, delete; paging, filters and isolation.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::common::TestApp;

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn create_returns_201_with_defaults() {
    let app = TestApp::new().await;
    let user = app.user();
    let body = app.post(&user, "/v1/sessions", json!({})).await.expect(201).body;
    assert_eq!(body["title"], "New chat");
    assert_eq!(body["status"], "open");
    assert_eq!(body["archived"], false);
    assert_eq!(body["metadata"], json!({}));
    assert_eq!(body["settings"], json!({}));
    assert_eq!(body["message_count"], 0);
    assert_eq!(body["last_seq"], 0);
    assert_eq!(body["last_message"], Value::Null);
    assert_eq!(body["created_at"], body["updated_at"]);
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn create_with_empty_body_uses_defaults() {
    let app = TestApp::new().await;
    let user = app.user();
    let body = app.raw("POST", "/v1/sessions", Some(&user.token), b"").await.expect(201).body;
    assert_eq!(body["title"], "New chat");
}

#[tokio::test]
async fn create_keeps_title_metadata_and_settings() {
    let app = TestApp::new().await;
    let user = app.user();
    let request = json!({
        "title": "  Лиссабон 🌊 trip  ",
        "metadata": {"character": "guide", "lang": "pt"},
        "settings": {"relationship_type": "friend", "mood_preference": "playful", "style": {"level": 3, "tags": ["calm"]}},
    });
    let created = app.post(&user, "/v1/sessions", request).await.expect(201).body;
    assert_eq!(created["title"], "Лиссабон 🌊 trip");
    assert_eq!(created["metadata"], json!({"character": "guide", "lang": "pt"}));
    assert_eq!(created["settings"]["style"]["tags"][0], "calm");
    assert_eq!(created["settings"]["mood_preference"], "playful");
    let id = created["id"].as_str().unwrap();
    let fetched = app.get(&user, &format!("/v1/sessions/{id}")).await.expect(200).body;
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn create_rejects_invalid_fields_with_the_field_named() {
    let app = TestApp::new().await;
    let user = app.user();
    let cases = [
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "x".repeat(256)}), "title"),
        (json!({"title": 5}), "title"),
        (json!({"metadata": {"k": 1}}), "metadata.k"),
        (json!({"metadata": {"": "v"}}), "metadata"),
        (
            json!({"metadata": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "metadata",
        ),
        (json!({"settings": [1, 2]}), "settings"),
        (json!({"colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let response = app.post(&user, "/v1/sessions", body.clone()).await.expect_error(400, "invalid_input");
        assert_eq!(response.body["field"], field, "for {body}: {}", response.body);
    }
    assert!(app.post(&user, "/v1/sessions", json!({"title": "x".repeat(255)})).await.status.is_success());
}

#[tokio::test]
async fn oversize_settings_are_413() {
    let app = TestApp::new().await;
    let user = app.user();
    let response = app.post(&user, "/v1/sessions", json!({"settings": {"blob": "x".repeat(5000)}})).await;
    assert_eq!(response.expect_error(413, "payload_too_large").body["field"], "settings");
}

#[tokio::test]
async fn get_unknown_bad_and_foreign_ids() {
    let app = TestApp::new().await;
    let (alice, bob) = (app.user(), app.user());
    let id = app.session(&alice, "mine").await;
    app.get(&alice, &format!("/v1/sessions/{}", uuid::Uuid::new_v4())).await.expect_error(404, "not_found");
    let bad = app.get(&alice, "/v1/sessions/not-a-uuid").await.expect_error(400, "invalid_input");
    assert_eq!(bad.body["field"], "session_id");
    let foreign = app.get(&bob, &format!("/v1/sessions/{id}")).await.expect_error(404, "not_found");
    assert!(!foreign.body.to_string().contains("mine"));
}

#[tokio::test]
async fn list_is_newest_activity_first() {
    let app = TestApp::new().await;
    let user = app.user();
    let first = app.session(&user, "first").await;
    let second = app.session(&user, "second").await;
    let third = app.session(&user, "third").await;
    assert_eq!(
        ids(&app.get(&user, "/v1/sessions").await.expect(200).body),
        [third.clone(), second.clone(), first.clone()]
    );
    app.append(&user, &first, "user", "bump").await;
    assert_eq!(
        ids(&app.get(&user, "/v1/sessions").await.expect(200).body),
        [first.clone(), third.clone(), second.clone()]
    );
    app.patch(&user, &format!("/v1/sessions/{second}"), json!({"title": "renamed"})).await.expect(200);
    assert_eq!(
        ids(&app.get(&user, "/v1/sessions").await.expect(200).body),
        [second.clone(), first.clone(), third.clone()]
    );
}

#[tokio::test]
async fn pagination_covers_every_session_once() {
    let app = TestApp::new().await;
    let user = app.user();
    let mut created = Vec::new();
    for i in 0..23 {
        created.push(app.session(&user, &format!("chat {i}")).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/sessions?limit=5&cursor={cursor}"),
            None => "/v1/sessions?limit=5".to_owned(),
        };
        let page = app.get(&user, &path).await.expect(200).body;
        pages += 1;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 5);
        seen.extend(page_ids);
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 5);
    created.reverse();
    assert_eq!(seen, created, "newest first, no duplicates, no gaps");
}

#[tokio::test]
async fn default_limit_is_20_and_limit_is_bounded() {
    let app = TestApp::new().await;
    let user = app.user();
    for i in 0..21 {
        app.session(&user, &format!("s{i}")).await;
    }
    let page = app.get(&user, "/v1/sessions").await.expect(200).body;
    assert_eq!(ids(&page).len(), 20);
    assert_eq!(page["has_more"], true);
    assert_eq!(ids(&app.get(&user, "/v1/sessions?limit=100").await.expect(200).body).len(), 21);
    assert_eq!(
        ids(&app.get(&user, "/v1/sessions?cursor=").await.expect(200).body).len(),
        20,
        "empty cursor = first page"
    );
    for bad in ["limit=0", "limit=101", "limit=-1", "limit=abc", "limit=99999999999"] {
        let response = app.get(&user, &format!("/v1/sessions?{bad}")).await.expect_error(400, "invalid_input");
        assert_eq!(response.body["field"], "limit", "{bad}");
    }
    for bad in ["cursor=%%%", "cursor=bm90LWpzb24", "archived=maybe", "status=paused"] {
        app.get(&user, &format!("/v1/sessions?{bad}")).await.expect_error(400, "invalid_input");
    }
}

#[tokio::test]
async fn filters_by_status_archived_and_title() {
    let app = TestApp::new().await;
    let user = app.user();
    let travel = app.session(&user, "Travel Plans").await;
    let cooking = app.session(&user, "cooking notes").await;
    let old = app.session(&user, "Old TRAVEL diary").await;
    app.patch(&user, &format!("/v1/sessions/{cooking}"), json!({"status": "closed"})).await.expect(200);
    app.post(&user, &format!("/v1/sessions/{old}/archive"), json!({})).await.expect(200);

    let active = ids(&app.get(&user, "/v1/sessions").await.expect(200).body);
    assert_eq!(HashSet::<_>::from_iter(active), HashSet::from([travel.clone(), cooking.clone()]));
    assert_eq!(ids(&app.get(&user, "/v1/sessions?archived=true").await.expect(200).body), [old.as_str()]);
    assert_eq!(ids(&app.get(&user, "/v1/sessions?status=closed").await.expect(200).body), [cooking.as_str()]);
    assert_eq!(ids(&app.get(&user, "/v1/sessions?q=TRAVEL").await.expect(200).body), [travel.as_str()]);
    assert_eq!(ids(&app.get(&user, "/v1/sessions?q=travel&archived=true").await.expect(200).body), [old.as_str()]);
    assert!(ids(&app.get(&user, "/v1/sessions?q=nothing-like-this").await.expect(200).body).is_empty());
}

#[tokio::test]
async fn filtered_pages_fill_up_across_index_pages() {
    let app = TestApp::new().await;
    let user = app.user();
    let mut wanted = Vec::new();
    for i in 0..30 {
        let id = app.session(&user, &format!("{} {i}", if i % 3 == 0 { "match" } else { "other" })).await;
        if i % 3 == 0 {
            wanted.push(id);
        }
    }
    wanted.reverse();
    let first = app.get(&user, "/v1/sessions?q=match&limit=4").await.expect(200).body;
    assert_eq!(ids(&first), wanted[..4]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app.get(&user, &format!("/v1/sessions?q=match&limit=4&cursor={cursor}")).await.expect(200).body;
    assert_eq!(ids(&second), wanted[4..8]);
    let cursor = second["next_cursor"].as_str().unwrap();
    let third = app.get(&user, &format!("/v1/sessions?q=match&limit=4&cursor={cursor}")).await.expect(200).body;
    assert_eq!(ids(&third), wanted[8..]);
    assert_eq!(third["has_more"], false);
}

#[tokio::test]
async fn update_changes_only_what_is_given() {
    let app = TestApp::new().await;
    let user = app.user();
    let created = app
        .post(&user, "/v1/sessions", json!({"title": "before", "metadata": {"a": "1"}, "settings": {"x": 1}}))
        .await
        .expect(201)
        .body;
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/sessions/{id}");
    let renamed = app.patch(&user, &path, json!({"title": "after"})).await.expect(200).body;
    assert_eq!(renamed["title"], "after");
    assert_eq!(renamed["metadata"], json!({"a": "1"}));
    assert_eq!(renamed["settings"], json!({"x": 1}));
    assert!(renamed["updated_at"].as_str() > created["updated_at"].as_str());
    assert_eq!(renamed["created_at"], created["created_at"]);

    let all = app
        .patch(
            &user,
            &path,
            json!({"status": "locked", "metadata": {"b": "2"}, "settings": {"y": true}, "archived": true}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(all["status"], "locked");
    assert_eq!(all["metadata"], json!({"b": "2"}));
    // `settings` merges (JSON Merge Patch); `metadata` is replaced.
    assert_eq!(all["settings"], json!({"x": 1, "y": true}));
    assert_eq!(all["archived"], true);
    assert_eq!(app.get(&user, &path).await.expect(200).body, all);

    app.patch(&user, &path, json!({})).await.expect_error(400, "invalid_input");
    app.patch(&user, &path, json!({"status": "paused"})).await.expect_error(400, "invalid_input");
    app.patch(&user, &path, json!({"message_count": 5})).await.expect_error(400, "invalid_input");
    app.patch(&user, &path, json!({"archived": "yes"})).await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn archive_and_unarchive() {
    let app = TestApp::new().await;
    let user = app.user();
    let id = app.session(&user, "to archive").await;
    let archived = app.post(&user, &format!("/v1/sessions/{id}/archive"), json!({})).await.expect(200).body;
    assert_eq!(archived["archived"], true);
    assert!(ids(&app.get(&user, "/v1/sessions").await.expect(200).body).is_empty());
    // Archiving only hides: the session still accepts messages.
    app.append(&user, &id, "user", "still here").await;
    let restored = app.post(&user, &format!("/v1/sessions/{id}/unarchive"), json!({})).await.expect(200).body;
    assert_eq!(restored["archived"], false);
    assert_eq!(restored["message_count"], 1);
    assert_eq!(ids(&app.get(&user, "/v1/sessions").await.expect(200).body), [id.as_str()]);
}

#[tokio::test]
async fn delete_hides_the_session_and_its_messages_at_once() {
    let app = TestApp::new().await;
    let user = app.user();
    let id = app.session(&user, "doomed").await;
    let keep = app.session(&user, "kept").await;
    app.append(&user, &id, "user", "secret").await;
    let deleted = app.delete(&user, &format!("/v1/sessions/{id}")).await.expect(204);
    assert_eq!(deleted.body, Value::Null);
    app.get(&user, &format!("/v1/sessions/{id}")).await.expect_error(404, "not_found");
    app.get(&user, &format!("/v1/sessions/{id}/messages")).await.expect_error(404, "not_found");
    app.get(&user, &format!("/v1/sessions/{id}/messages/1")).await.expect_error(404, "not_found");
    app.append_raw_404(&user, &id).await;
    app.patch(&user, &format!("/v1/sessions/{id}"), json!({"title": "back"})).await.expect_error(404, "not_found");
    app.delete(&user, &format!("/v1/sessions/{id}")).await.expect_error(404, "not_found");
    assert_eq!(ids(&app.get(&user, "/v1/sessions").await.expect(200).body), [keep.as_str()]);
    assert!(ids(&app.get(&user, "/v1/sessions?archived=true").await.expect(200).body).is_empty());
}

#[tokio::test]
async fn users_never_see_each_other() {
    let app = TestApp::new().await;
    let (alice, bob) = (app.user(), app.user());
    let id = app.session(&alice, "alice's").await;
    app.append(&alice, &id, "user", "hello").await;
    assert!(ids(&app.get(&bob, "/v1/sessions").await.expect(200).body).is_empty());
    let path = format!("/v1/sessions/{id}");
    app.get(&bob, &path).await.expect_error(404, "not_found");
    app.patch(&bob, &path, json!({"title": "mine now"})).await.expect_error(404, "not_found");
    app.post(&bob, &format!("{path}/archive"), json!({})).await.expect_error(404, "not_found");
    app.post(&bob, &format!("{path}/unarchive"), json!({})).await.expect_error(404, "not_found");
    app.delete(&bob, &path).await.expect_error(404, "not_found");
    let untouched = app.get(&alice, &path).await.expect(200).body;
    assert_eq!(untouched["title"], "alice's");
    assert_eq!(untouched["archived"], false);
    assert_eq!(untouched["message_count"], 1);
}

#[tokio::test]
async fn get_with_messages_returns_the_latest_in_order() {
    let app = TestApp::new().await;
    let user = app.user();
    let id = app.session(&user, "chat").await;
    let empty = app.get(&user, &format!("/v1/sessions/{id}?include=messages")).await.expect(200).body;
    assert_eq!(empty["messages"], json!([]));
    for i in 1..=6 {
        app.append(&user, &id, if i % 2 == 1 { "user" } else { "assistant" }, &format!("m{i}")).await;
    }
    app.delete(&user, &format!("/v1/sessions/{id}/messages/6")).await.expect(204);
    let body = app.get(&user, &format!("/v1/sessions/{id}?include=messages&messages_limit=3")).await.expect(200).body;
    let contents: Vec<_> = body["messages"].as_array().unwrap().iter().map(|m| m["content"].clone()).collect();
    assert_eq!(contents, [json!("m3"), json!("m4"), json!("m5")]);
    assert_eq!(body["message_count"], 5);
    assert_eq!(body["title"], "chat");
    app.get(&user, &format!("/v1/sessions/{id}?include=everything")).await.expect_error(400, "invalid_input");
    app.get(&user, &format!("/v1/sessions/{id}?include=messages&messages_limit=0"))
        .await
        .expect_error(400, "invalid_input");
}

impl TestApp {
    async fn append_raw_404(&self, user: &crate::common::User, session: &str) {
        self.post(user, &format!("/v1/sessions/{session}/messages"), json!({"role": "user", "content": "x"}))
            .await
            .expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn a_change_that_changes_nothing_writes_nothing() {
    let app = TestApp::new().await;
    let user = app.user();
    let first = app.session(&user, "first").await;
    let second = app.session(&user, "second").await;
    let before = app.get(&user, &format!("/v1/sessions/{first}")).await.expect(200).body;
    let order = |body: &serde_json::Value| -> Vec<String> {
        body["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    for change in [json!({"title": "first"}), json!({"status": "open"}), json!({"title": "first", "status": "open"})] {
        let after = app.patch(&user, &format!("/v1/sessions/{first}"), change.clone()).await.expect(200).body;
        assert_eq!(after["updated_at"], before["updated_at"], "{change}");
        assert_eq!(after, before, "{change}");
        assert_eq!(order(&app.get(&user, "/v1/sessions").await.expect(200).body), [second.clone(), first.clone()]);
    }
    // Re-archiving an archived session, or unarchiving an active one: no write either.
    app.post(&user, &format!("/v1/sessions/{second}/archive"), json!({})).await.expect(200);
    let archived = app.get(&user, &format!("/v1/sessions/{second}")).await.expect(200).body;
    let again = app.post(&user, &format!("/v1/sessions/{second}/archive"), json!({})).await.expect(200).body;
    assert_eq!(again["updated_at"], archived["updated_at"]);
    let unarchived = app.post(&user, &format!("/v1/sessions/{first}/unarchive"), json!({})).await.expect(200).body;
    assert_eq!(unarchived["updated_at"], before["updated_at"]);
    // A real change still moves the session up; a deleted session is 404 even for a no-op.
    let renamed =
        app.patch(&user, &format!("/v1/sessions/{first}"), json!({"title": "renamed"})).await.expect(200).body;
    assert_ne!(renamed["updated_at"], before["updated_at"]);
    app.delete(&user, &format!("/v1/sessions/{first}")).await.expect(204);
    app.patch(&user, &format!("/v1/sessions/{first}"), json!({"title": "renamed"}))
        .await
        .expect_error(404, "not_found");
    app.patch(&user, &format!("/v1/sessions/{first}"), json!({"status": "open"})).await.expect_error(404, "not_found");
}

/// `settings` in a PATCH is a JSON Merge Patch (RFC 7396) over the stored settings: keys not
/// named stay, `null` removes a key, objects merge.
#[tokio::test]
async fn settings_in_a_patch_merge_into_the_stored_ones() {
    let app = TestApp::new().await;
    let user = app.user();
    let body = json!({"title": "merge", "settings": {"relationship_type": "friend", "mood_preference": "playful", "ui": {"theme": "dark", "font": 14}}});
    let id = app.post(&user, "/v1/sessions", body).await.expect(201).body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/sessions/{id}");
    let patched = app.patch(&user, &path, json!({"settings": {"relationship_type": "partner"}})).await.expect(200).body;
    assert_eq!(
        patched["settings"],
        json!({"relationship_type": "partner", "mood_preference": "playful", "ui": {"theme": "dark", "font": 14}})
    );
    let patch = json!({"settings": {"mood_preference": null, "ui": {"font": null, "dense": true}}});
    let patched = app.patch(&user, &path, patch).await.expect(200).body;
    assert_eq!(patched["settings"], json!({"relationship_type": "partner", "ui": {"theme": "dark", "dense": true}}));
    assert_eq!(app.get(&user, &path).await.expect(200).body["settings"], patched["settings"], "as stored");
    app.patch(&user, &path, json!({"settings": {"relationship_type": "enemy"}}))
        .await
        .expect_error(400, "invalid_input");
}

/// A chat app's first screen — the session list and the latest session's newest messages — is one
/// request: `latest` holds exactly what `GET …/messages?order=desc&limit=N` answers for the page's
/// most recently active session, read in two rounds (the list, then the log).
#[tokio::test]
async fn the_first_screen_is_one_request() {
    let app = TestApp::new().await;
    let user = app.user();
    let empty = app.get(&user, "/v1/sessions?include=latest_messages").await.expect(200).body;
    assert!(empty.get("latest").is_none(), "no session, no latest: {empty}");
    let older = app.session(&user, "older").await;
    app.append(&user, &older, "user", "an older chat").await;
    let newest = app.session(&user, "newest").await;
    for index in 1..=60 {
        app.append(&user, &newest, if index % 2 == 1 { "user" } else { "assistant" }, &format!("line {index}")).await;
    }
    let plain = app.get(&user, "/v1/sessions").await.expect(200).body;
    assert!(plain.get("latest").is_none());
    let before = app.state.store.dynamodb_calls();
    let screen = app.get(&user, "/v1/sessions?include=latest_messages").await.expect(200).body;
    let calls = app.state.store.dynamodb_calls() - before;
    assert!(calls <= 3, "{calls} DynamoDB calls: the list, then the session and its log in parallel");
    assert_eq!(screen["data"][0]["id"], newest);
    assert_eq!(screen["data"].as_array().unwrap().len(), 2);
    let latest = &screen["latest"];
    assert_eq!(latest["session_id"], newest);
    let separate =
        app.get(&user, &format!("/v1/sessions/{newest}/messages?order=desc&limit=50")).await.expect(200).body;
    assert_eq!(latest["messages"], separate["data"]);
    assert_eq!(latest["messages"].as_array().unwrap().len(), 50);
    assert_eq!(latest["messages"][0]["content"], "line 60");
    assert_eq!(latest["has_more"], true);
    let few = app.get(&user, "/v1/sessions?include=latest_messages&messages_limit=3&limit=1").await.expect(200).body;
    let seqs: Vec<_> =
        few["latest"]["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, few["data"].as_array().unwrap().len()), (vec![60, 59, 58], 1));
    for (query, field) in [
        ("messages_limit=5", "messages_limit"),
        ("include=messages", "include"),
        ("include=latest_messages&messages_limit=101", "messages_limit"),
    ] {
        let refused = app.get(&user, &format!("/v1/sessions?{query}")).await.expect_error(400, "invalid_input");
        assert_eq!(refused.body["field"], field, "{query}");
    }
}
