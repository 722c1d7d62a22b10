//! Characters: the catalog (list, filters, sorts, search, tags, admin writes, the snapshot) and
//! chats with a character (the one chat, its greeting, the gates).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shared::config::LimitsConfig;
use shared::domain::{Clock, ManualClock, Popularity, Timestamp, utc_day_start};

use crate::common::{TestApp, User};

fn clock_at(text: &str) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(text.parse::<Timestamp>().unwrap()))
}

async fn create(app: &TestApp, admin: &User, body: Value) -> Value {
    app.post(admin, "/v1/admin/characters", body).await.expect(201).body
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

/// Six characters over genres, ratings, access types and tags.
async fn seed(app: &TestApp, admin: &User) {
    let tag = |category: &str, name: &str| json!({"category": category, "name": name});
    let characters = [
        json!({"id": "luna", "name": "Luna", "genre": "fantasy", "description": "A moon witch",
               "tags": [tag("theme", "magic"), tag("personality", "shy")], "greeting": "Hello, traveller."}),
        json!({"id": "ada", "name": "Ada", "genre": "scifi", "description": "A ship's computer",
               "tags": [tag("theme", "space")], "access_type": "premium"}),
        json!({"id": "vex", "name": "Vex", "genre": "fantasy", "content_rating": "nsfw",
               "tags": [tag("theme", "magic")], "description": "Café owner, très charmant"}),
        json!({"id": "masha", "name": "Маша", "genre": "slice-of-life", "description": "Ёлка и чай",
               "tags": [tag("personality", "shy")]}),
        json!({"id": "yuki", "name": "雪女", "genre": "fantasy", "description": "冬の精霊",
               "tags": [tag("theme", "magic"), tag("theme", "winter")]}),
        json!({"id": "ops", "name": "Ops bot", "description": "Pages the on-call", "is_active": false}),
    ];
    for body in characters {
        create(app, admin, body).await;
    }
}

#[tokio::test]
async fn the_catalog_lists_filters_and_pages_active_characters() {
    let app = TestApp::new().await;
    let (admin, user) = (app.admin(), app.user());
    seed(&app, &admin).await;

    let all = app.get(&user, "/v1/characters?sort=new").await.expect(200).body;
    assert_eq!(all["total"], 5, "the inactive one is not listed: {all}");
    assert_eq!((all["limit"].as_u64(), all["offset"].as_u64()), (Some(20), Some(0)));
    let first = &all["data"][0];
    for field in [
        "id",
        "name",
        "description",
        "description_long",
        "avatar_url",
        "greeting",
        "access_type",
        "genre",
        "content_rating",
        "tags",
        "popularity_score",
        "messages_count",
        "is_active",
        "created_at",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert!(first.get("system_prompt").is_none() && first.get("model").is_none(), "admin fields leak: {first}");

    let fantasy = app.get(&user, "/v1/characters?genre=fantasy&sort=new").await.expect(200).body;
    assert_eq!(ids(&fantasy), ["yuki", "vex", "luna"]);
    let sfw_magic = app.get(&user, "/v1/characters?genre=fantasy&rating=sfw&tags=magic").await.expect(200).body;
    assert_eq!(sfw_magic["total"], 2);
    let two_tags = app.get(&user, "/v1/characters?tags=magic,winter").await.expect(200).body;
    assert_eq!(ids(&two_tags), ["yuki"]);
    let premium = app.get(&user, "/v1/characters?access_type=premium").await.expect(200).body;
    assert_eq!(ids(&premium), ["ada"]);

    let page = app.get(&user, "/v1/characters?sort=new&limit=2&offset=2").await.expect(200).body;
    assert_eq!(ids(&page), ["vex", "ada"]);
    assert_eq!(page["total"], 5);

    for bad in ["rating=pg", "access_type=vip", "sort=best", "limit=0", "limit=101", "offset=-1", "colour=red"] {
        app.get(&user, &format!("/v1/characters?{bad}")).await.expect_error(400, "invalid_input");
    }

    // By id: inactive ones too (their chats still show them); admins see the prompt.
    let ops = app.get(&user, "/v1/characters/ops").await.expect(200).body;
    assert_eq!(ops["is_active"], false);
    app.get(&user, "/v1/characters/nobody").await.expect_error(404, "character_not_found");
    app.get(&user, "/v1/characters/Not%20A%20Slug").await.expect_error(400, "invalid_input");
    let seen_by_admin = app.get(&admin, "/v1/characters/luna").await.expect(200).body;
    assert_eq!(seen_by_admin["system_prompt"], "");
}

#[tokio::test]
async fn search_ignores_case_and_accents_in_any_script() {
    let app = TestApp::new().await;
    let (admin, user) = (app.admin(), app.user());
    seed(&app, &admin).await;
    let search = |q: &str| {
        let (app, user) = (app.clone(), user.clone());
        let path = format!("/v1/characters/search?q={}", urlencoding(q));
        async move { ids(&app.get(&user, &path).await.expect(200).body) }
    };
    assert_eq!(search("LUNA").await, ["luna"]);
    assert_eq!(search("CAFE owner").await, ["vex"], "accents and case fold");
    assert_eq!(search("TRÈS").await, ["vex"]);
    assert_eq!(search("маш").await, ["masha"], "Cyrillic, lowercased");
    assert_eq!(search("елка").await, ["masha"], "ё folds to е");
    assert_eq!(search("精霊").await, ["yuki"], "CJK inside a description");
    assert_eq!(search("magic").await.len(), 3, "tags are searched");
    assert!(search("Pages the on-call").await.is_empty(), "inactive characters are not found");
    app.get(&user, "/v1/characters/search?q=%20").await.expect_error(400, "invalid_input");
    app.get(&user, "/v1/characters/search").await.expect_error(400, "invalid_input");
}

fn urlencoding(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn tags_count_active_characters_per_category() {
    let app = TestApp::new().await;
    let (admin, user) = (app.admin(), app.user());
    seed(&app, &admin).await;
    let tags = app.get(&user, "/v1/tags").await.expect(200).body;
    assert_eq!(tags["data"][0], json!({"category": "theme", "name": "magic", "usage_count": 3}));
    assert_eq!(tags["data"].as_array().unwrap().len(), 4);
    let personality = app.get(&user, "/v1/tags/personality").await.expect(200).body;
    assert_eq!(personality["data"], json!([{"category": "personality", "name": "shy", "usage_count": 2}]));
    let none = app.get(&user, "/v1/tags/mood").await.expect(200).body;
    assert_eq!(none["data"], json!([]));
}

#[tokio::test]
async fn admins_write_characters_and_everyone_else_is_refused() {
    let app = TestApp::new().await;
    let (admin, user) = (app.admin(), app.user());
    let body = json!({"id": "kai", "name": "Kai", "system_prompt": "You are Kai.",
                      "model": {"temperature": 0.7, "max_tokens": 300}, "genre": "Adventure"});
    app.post(&user, "/v1/admin/characters", body.clone()).await.expect_error(403, "forbidden");
    let created = create(&app, &admin, body.clone()).await;
    assert_eq!(created["genre"], "adventure", "labels are lowercased");
    assert_eq!(created["system_prompt"], "You are Kai.");
    assert_eq!(created["model"]["max_tokens"], 300);
    app.post(&admin, "/v1/admin/characters", body).await.expect_error(409, "conflict");
    let generated = create(&app, &admin, json!({"name": "Nameless"})).await;
    assert_eq!(generated["id"].as_str().unwrap().len(), 36, "a UUID when no id is given");

    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "content_rating": "pg13"}),
        json!({"name": "x", "avatar_url": "javascript:alert(1)"}),
        json!({"name": "x", "tags": (0..21).map(|i| json!({"category": "t", "name": format!("t{i}")})).collect::<Vec<_>>()}),
        json!({"name": "x", "model": {"temperature": 3}}),
        json!({"name": "x", "id": "Has Spaces"}),
        json!({"name": "x", "colour": "red"}),
    ] {
        app.post(&admin, "/v1/admin/characters", bad.clone()).await.expect_error(400, "invalid_input");
    }

    let changed = app
        .patch(
            &admin,
            "/v1/admin/characters/kai",
            json!({"genre": null, "description": "Explorer", "access_type": "premium"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!((changed["genre"].clone(), changed["description"].clone()), (Value::Null, json!("Explorer")));
    assert_eq!(changed["access_type"], "premium");
    assert_ne!(changed["updated_at"], created["updated_at"]);
    app.patch(&user, "/v1/admin/characters/kai", json!({"name": "Mine"})).await.expect_error(403, "forbidden");
    app.patch(&admin, "/v1/admin/characters/ghost", json!({"name": "G"}))
        .await
        .expect_error(404, "character_not_found");

    let gone = app.delete(&admin, "/v1/admin/characters/kai").await.expect(200).body;
    assert_eq!(gone["is_active"], false);
    let listed = app.get(&user, "/v1/characters").await.expect(200).body;
    assert_eq!(ids(&listed), [generated["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn reads_come_from_the_snapshot_and_see_other_instances_writes_within_five_minutes() {
    let clock = clock_at("2426-12-01T10:00:00.000000Z");
    let app = TestApp::with_limits(LimitsConfig::default(), clock.clone()).await;
    let other_instance = app.sibling_with_clock(clock.clone());
    let (admin, user) = (app.admin(), app.user());
    create(&app, &admin, json!({"id": "first", "name": "First"})).await;
    app.get(&user, "/v1/characters").await.expect(200);

    let before = app.state.store.dynamodb_calls();
    for path in ["/v1/characters?sort=popular", "/v1/characters/search?q=fir", "/v1/characters/first", "/v1/tags"] {
        app.get(&user, path).await.expect(200);
    }
    assert_eq!(app.state.store.dynamodb_calls() - before, 0, "warm catalog reads cost no database call");

    // Written on another instance: this one's snapshot does not know yet...
    create(&other_instance, &admin, json!({"id": "second", "name": "Second"})).await;
    assert_eq!(app.get(&user, "/v1/characters").await.expect(200).body["total"], 1);
    // ...until five minutes have passed: the stale snapshot is served while it is checked.
    clock.advance(Duration::from_secs(301));
    app.get(&user, "/v1/characters").await.expect(200);
    let mut total = 0;
    for _ in 0..100 {
        total = app.get(&user, "/v1/characters").await.expect(200).body["total"].as_u64().unwrap();
        if total == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(total, 2, "the check found the new version and read the catalog again");

    // An admin write in this instance is seen here at once.
    app.delete(&admin, "/v1/admin/characters/second").await.expect(200);
    assert_eq!(app.get(&user, "/v1/characters").await.expect(200).body["total"], 1);
}

#[tokio::test]
async fn on_lambda_the_request_that_finds_the_snapshot_stale_checks_it_first() {
    let clock = clock_at("2426-12-01T10:00:00.000000Z");
    let app = TestApp::with_limits(LimitsConfig::default(), clock.clone()).await;
    let lambda = app.sibling_on_lambda(clock.clone());
    let (admin, user) = (app.admin(), app.user());
    create(&app, &admin, json!({"id": "first", "name": "First"})).await;
    assert_eq!(lambda.get(&user, "/v1/characters").await.expect(200).body["total"], 1);

    create(&app, &admin, json!({"id": "second", "name": "Second"})).await;
    assert_eq!(lambda.get(&user, "/v1/characters").await.expect(200).body["total"], 1, "the snapshot is fresh");
    clock.advance(Duration::from_secs(301));
    // No background task: this very request checks the version, reads again, and answers with it.
    let before = lambda.state.store.dynamodb_calls();
    assert_eq!(lambda.get(&user, "/v1/characters").await.expect(200).body["total"], 2);
    assert!(lambda.state.store.dynamodb_calls() - before >= 2, "the version read and the catalog read");
    let before = lambda.state.store.dynamodb_calls();
    lambda.get(&user, "/v1/characters").await.expect(200);
    assert_eq!(lambda.state.store.dynamodb_calls() - before, 0, "checked, the snapshot is fresh again");
}

#[tokio::test]
async fn a_character_chat_is_opened_once_with_the_greeting_as_seq_1() {
    let app = TestApp::new().await;
    let (admin, user) = (app.admin(), app.user());
    seed(&app, &admin).await;

    // Five first calls at once open one chat.
    let calls = (0..5).map(|_| {
        let (app, user) = (app.clone(), user.clone());
        tokio::spawn(async move { app.get(&user, "/v1/characters/luna/session").await.expect(200).body })
    });
    let sessions: Vec<Value> = futures::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    assert!(sessions.iter().all(|session| session["id"] == id.as_str()), "one chat: {sessions:?}");
    let session = &sessions[0];
    assert_eq!((session["character_id"].clone(), session["title"].clone()), (json!("luna"), json!("Luna")));
    assert_eq!((session["last_seq"].clone(), session["message_count"].clone()), (json!(1), json!(1)));
    let messages = app.get(&user, &format!("/v1/sessions/{id}/messages")).await.expect(200).body;
    assert_eq!(messages["data"][0]["seq"], 1);
    assert_eq!(messages["data"][0]["role"], "assistant");
    assert_eq!(messages["data"][0]["content"], "Hello, traveller.");
    let listed = app.get(&user, "/v1/sessions?character_id=luna").await.expect(200).body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // Another user has their own chat; the first user's is not theirs to see.
    let stranger = app.user();
    let theirs = app.get(&stranger, "/v1/characters/luna/session").await.expect(200).body;
    assert_ne!(theirs["id"], id.as_str());
    app.get(&stranger, &format!("/v1/sessions/{id}")).await.expect_error(404, "not_found");

    // Deleted, the chat is opened afresh; POST opens further chats with the character.
    app.delete(&user, &format!("/v1/sessions/{id}")).await.expect(204);
    let fresh = app.get(&user, "/v1/characters/luna/session").await.expect(200).body;
    assert_ne!(fresh["id"], id.as_str());
    let extra =
        app.post(&user, "/v1/sessions", json!({"character_id": "masha", "title": "Tea"})).await.expect(201).body;
    assert_eq!((extra["title"].clone(), extra["last_seq"].clone()), (json!("Tea"), json!(0)), "masha has no greeting");
    let with_masha = app.get(&user, "/v1/characters/masha/session").await.expect(200).body;
    assert_eq!(with_masha["id"], extra["id"], "the first chat with a character becomes the chat");
    let listed = app.get(&user, "/v1/sessions?character_id=masha").await.expect(200).body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    app.get(&user, "/v1/characters/nobody/session").await.expect_error(404, "character_not_found");
    app.post(&user, "/v1/sessions", json!({"character_id": "nobody"})).await.expect_error(404, "character_not_found");
    app.get(&user, "/v1/characters/ops/session").await.expect_error(404, "character_not_found");
}

#[tokio::test]
async fn a_reset_character_chat_starts_again_with_its_greeting() {
    let app = TestApp::new().await;
    let (admin, user) = (app.admin(), app.user());
    seed(&app, &admin).await;
    let id = app.get(&user, "/v1/characters/luna/session").await.expect(200).body["id"].as_str().unwrap().to_owned();
    let base = format!("/v1/sessions/{id}");
    app.append(&user, &id, "user", "hello luna").await;
    app.append(&user, &id, "assistant", "hi there").await;

    let reset = app.post(&user, &format!("{base}/reset"), json!({})).await.expect(200).body;
    assert_eq!(reset["deleted_messages_count"], 3, "{reset}");
    let session = app.get(&user, &base).await.expect(200).body;
    assert_eq!((session["message_count"].clone(), session["last_seq"].clone()), (json!(1), json!(4)), "{session}");
    assert_eq!(session["last_message"]["seq"], 4);
    assert_eq!(session["last_message"]["role"], "assistant");
    let messages = app.get(&user, &format!("{base}/messages")).await.expect(200).body;
    let data = messages["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "only the greeting: {messages}");
    assert_eq!((data[0]["seq"].clone(), data[0]["content"].clone()), (json!(4), json!("Hello, traveller.")));
    // A client syncing from before the reset sees the clear, then the greeting.
    let changes = app.get(&user, &format!("{base}/changes?after_rev=3")).await.expect(200).body;
    let kinds: Vec<&str> = changes["data"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["cleared", "message"], "{changes}");

    // The chat goes on after the greeting; a chat without a greeting resets to empty.
    app.append(&user, &id, "user", "again").await;
    let plain = app.post(&user, "/v1/sessions", json!({"title": "plain"})).await.expect(201).body;
    let plain_id = plain["id"].as_str().unwrap();
    app.append(&user, plain_id, "user", "x").await;
    app.post(&user, &format!("/v1/sessions/{plain_id}/reset"), json!({})).await.expect(200);
    let plain = app.get(&user, &format!("/v1/sessions/{plain_id}")).await.expect(200).body;
    assert_eq!(plain["message_count"], 0);
}

#[tokio::test]
async fn chat_settings_take_only_the_documented_relationships_and_moods() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "s").await;
    let path = format!("/v1/sessions/{session}");
    let ok =
        app.patch(&user, &path, json!({"settings": {"relationship_type": "mentor", "mood_preference": "playful"}}));
    assert_eq!(ok.await.expect(200).body["settings"]["relationship_type"], "mentor");
    for bad in
        [json!({"relationship_type": "enemy"}), json!({"mood_preference": "angry"}), json!({"mood_preference": 3})]
    {
        let refused = app.patch(&user, &path, json!({"settings": bad})).await.expect_error(400, "invalid_input");
        assert!(refused.body["field"].as_str().unwrap().starts_with("settings."), "{}", refused.body);
    }
}

#[tokio::test]
async fn gates_hold_on_create_append_and_reply_and_close_when_a_subscription_ends() {
    let clock = clock_at("2426-12-01T10:00:00.000000Z");
    let app = TestApp::with_limits(LimitsConfig::default(), clock.clone()).await;
    let (admin, user) = (app.admin(), app.user());
    seed(&app, &admin).await;

    // Premium: refused without a subscription, on every way in.
    app.get(&user, "/v1/characters/ada/session").await.expect_error(403, "premium_required");
    app.post(&user, "/v1/sessions", json!({"character_id": "ada"})).await.expect_error(403, "premium_required");
    let grant = json!({"plan": "pro", "start_at": "2426-12-01T09:00:00Z", "end_at": "2426-12-01T11:00:00Z"});
    crate::limits::subscribe(&app, &admin, &user, grant).await.expect(200);
    let chat = app.get(&user, "/v1/characters/ada/session").await.expect(200).body;
    let messages = format!("/v1/sessions/{}/messages", chat["id"].as_str().unwrap());
    app.post(&user, &messages, json!({"role": "user", "content": "hello"})).await.expect(201);
    // The minute the subscription ends, the gate closes again.
    clock.advance(Duration::from_secs(3600 + 60));
    app.post(&user, &messages, json!({"role": "user", "content": "still there?"}))
        .await
        .expect_error(403, "premium_required");
    app.post(&user, &format!("{messages}/batch"), json!({"messages": [{"role": "user", "content": "x"}]}))
        .await
        .expect_error(403, "premium_required");
    app.get(&user, &messages).await.expect(200);

    // Adults only: refused until the caller confirms.
    app.get(&user, "/v1/characters/vex/session").await.expect_error(403, "adult_confirmation_required");
    app.post(&user, "/v1/me/confirm-adult", json!({"confirmed": false})).await.expect_error(400, "invalid_input");
    let me = app.post(&user, "/v1/me/confirm-adult", json!({"confirmed": true})).await.expect(200).body;
    assert_eq!(me["is_adult_confirmed"], true);
    app.get(&user, "/v1/characters/vex/session").await.expect(200);

    // Deactivated: the chat stays readable, new messages are refused.
    let luna = app.get(&user, "/v1/characters/luna/session").await.expect(200).body;
    let luna_messages = format!("/v1/sessions/{}/messages", luna["id"].as_str().unwrap());
    app.delete(&admin, "/v1/admin/characters/luna").await.expect(200);
    let other_instance = app.sibling_with_clock(clock.clone());
    for instance in [&app, &other_instance] {
        instance
            .post(&user, &luna_messages, json!({"role": "user", "content": "hi"}))
            .await
            .expect_error(404, "character_not_found");
        assert_eq!(instance.get(&user, &luna_messages).await.expect(200).body["data"].as_array().unwrap().len(), 1);
        instance.get(&user, "/v1/characters/luna/session").await.expect(200);
    }
}

/// `messages_count` and `popularity_score` grow off the append path: an append counts the
/// `user` messages it carries per character on the user's meter (no character item is written),
/// and the hourly job adds each finished day to the characters, once, in the transaction that
/// finishes the day. Admin edits keep the counters.
#[tokio::test]
async fn the_job_counts_each_finished_days_messages_into_the_characters_once() {
    let clock = clock_at("2426-12-01T10:00:00.000000Z");
    let app = TestApp::with_limits(LimitsConfig::default(), clock.clone()).await;
    let (admin, anna, boris) = (app.admin(), app.user(), app.user());
    create(&app, &admin, json!({"id": "luna", "name": "Luna", "greeting": "Hello, traveller."})).await;
    create(&app, &admin, json!({"id": "kai", "name": "Kai"})).await;
    let chat = |user: User, id: &'static str| {
        let app = app.clone();
        async move {
            let session = app.get(&user, &format!("/v1/characters/{id}/session")).await.expect(200).body;
            session["id"].as_str().unwrap().to_owned()
        }
    };
    let (anna_luna, boris_luna, boris_kai) =
        (chat(anna.clone(), "luna").await, chat(boris.clone(), "luna").await, chat(boris.clone(), "kai").await);
    app.append(&anna, &anna_luna, "user", "hi Luna").await;
    app.append(&anna, &anna_luna, "assistant", "not a user message: not counted").await;
    let batch = json!({"messages": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]});
    app.post(&anna, &format!("/v1/sessions/{anna_luna}/messages/batch"), batch).await.expect(201);
    app.append(&boris, &boris_luna, "user", "hello").await;
    app.append(&boris, &boris_kai, "user", "hey Kai").await;
    let plain = app.session(&anna, "no character").await;
    app.append(&anna, &plain, "user", "counted for no character").await;

    let counters = |id: &'static str| {
        // A fresh instance: its catalog snapshot is read now.
        let instance = app.sibling_with_clock(clock.clone());
        let user = anna.clone();
        async move {
            let character = instance.get(&user, &format!("/v1/characters/{id}")).await.expect(200).body;
            (character["messages_count"].as_u64().unwrap(), character["popularity_score"].as_f64().unwrap())
        }
    };
    let report = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    assert_eq!(report.usage_days_finalized, 0, "the day is not over: {report:?}");
    assert_eq!(counters("luna").await, (0, 0.0));

    // The next day: Anna's first append moves the 1st out of her meter; Boris stays quiet, so the
    // job closes his meter itself. Both days count, each in its own transaction.
    clock.advance(Duration::from_secs(24 * 3600));
    app.append(&anna, &anna_luna, "user", "good morning").await;
    let report = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    assert_eq!((report.usage_days_finalized, report.meters_closed), (2, 1), "{report:?}");
    let day_start = utc_day_start("2426-12-01").unwrap();
    let score = |messages| Popularity::default().adding(messages, day_start).score_at(clock.now());
    let (luna_count, luna_score) = counters("luna").await;
    assert_eq!(luna_count, 4, "Anna's three and Boris's one");
    assert!((luna_score - score(4)).abs() < 0.011 && luna_score > 3.0, "{luna_score} vs {}", score(4));
    assert_eq!(counters("kai").await.0, 1);
    let popular = app.sibling_with_clock(clock.clone()).get(&anna, "/v1/characters?sort=popular").await.expect(200);
    assert_eq!(ids(&popular.body), ["luna", "kai"]);

    // A second run counts nothing twice; an admin edit keeps the counters.
    let again = app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.usage_days_finalized, 0, "{again:?}");
    app.patch(&admin, "/v1/admin/characters/luna", json!({"name": "Luna II"})).await.expect(200);
    assert_eq!(counters("luna").await.0, 4);

    // The 2nd is counted once it is over.
    clock.advance(Duration::from_secs(24 * 3600));
    app.state.store.run_chores(Duration::from_secs(30)).await.unwrap();
    let (luna_count, luna_score) = counters("luna").await;
    let second = utc_day_start("2426-12-02").unwrap();
    let expected = Popularity::default().adding(4, day_start).adding(1, second).score_at(clock.now());
    assert_eq!(luna_count, 5);
    assert!((luna_score - expected).abs() < 0.011, "{luna_score} vs {expected}");
    assert_eq!(counters("kai").await.0, 1);
}

/// The context and the reply read six parts in order — the character's system prompt, the
/// profile, the memories, the chat's settings, the summary (none yet here), the newest messages — and trim the least
/// important memory and the oldest message first, the system prompt never. The reply uses the
/// character's model settings. (The `echo` script answers with the prompt it was sent.)
#[tokio::test]
async fn the_context_and_the_reply_read_six_parts_in_order() {
    let app = TestApp::with_llm(crate::replies::scripted_llm().await, crate::common::unlimited()).await;
    let (admin, user) = (app.admin(), app.user());
    let character = json!({
        "id": "nyx", "name": "Nyx", "greeting": "Good evening.", "system_prompt": "You are Nyx, a night owl.",
        "model": {"model": "echo", "temperature": 0.25, "max_tokens": 77},
    });
    create(&app, &admin, character).await;
    app.patch(&user, "/v1/me", json!({"display_name": "Anna", "gender": "female", "language": "ru"})).await.expect(200);
    for (content, importance) in [("owns a cat", 2), ("likes tea", 9)] {
        let memory = json!({"content": content, "memory_type": "fact", "importance": importance});
        app.post(&user, "/v1/memories", memory).await.expect(201);
    }
    let chat = app.get(&user, "/v1/characters/nyx/session").await.expect(200).body;
    let id = chat["id"].as_str().unwrap().to_owned();
    let settings = json!({"settings": {"relationship_type": "friend", "mood_preference": "playful"}});
    app.patch(&user, &format!("/v1/sessions/{id}"), settings).await.expect(200);

    let context = app.get(&user, &format!("/v1/sessions/{id}/context")).await.expect(200).body;
    let names: Vec<_> = context["parts"].as_array().unwrap().iter().map(|part| part["part"].clone()).collect();
    assert_eq!(
        names,
        [
            json!("system_prompt"),
            json!("profile"),
            json!("memories"),
            json!("settings"),
            json!("summary"),
            json!("messages")
        ]
    );
    // Every part but the summary (a short chat has none yet).
    let included: Vec<_> =
        context["parts"].as_array().unwrap().iter().map(|part| part["included"].as_bool().unwrap()).collect();
    assert_eq!(included, [true, true, true, true, false, true], "{context}");
    let sum: u64 = context["parts"].as_array().unwrap().iter().map(|part| part["tokens"].as_u64().unwrap()).sum();
    assert_eq!(context["token_estimate"].as_u64(), Some(sum));
    // "You are Nyx, a night owl." is 25 bytes: 7 tokens; its text is for admins only.
    assert_eq!(context["parts"][0]["tokens"], 7);
    assert_eq!(context["system_prompt"], json!({"source": "character"}));
    assert_eq!(context["profile"], json!({"display_name": "Anna", "gender": "female", "language": "ru"}));
    assert_eq!(context["session"]["character_id"], "nyx");

    let turn = app.post(&user, &format!("/v1/sessions/{id}/replies"), json!({"content": "hello"})).await.expect(201);
    let reply = &turn.body["assistant_message"];
    assert_eq!(reply["model"], "echo", "the character's model");
    let asked: Value = serde_json::from_str(reply["content"].as_str().unwrap()).unwrap();
    assert_eq!((asked["max_tokens"].clone(), asked["temperature"].clone()), (json!(77), json!(0.25)));
    let system = "You are Nyx, a night owl.\n\n\
                  About the user:\n- Name: Anna\n- Gender: female\n- Language: ru. Answer in the user's language.\n\n\
                  What you know about the user:\n- likes tea\n- owns a cat\n\n\
                  Your relationship with the user: friend.\nThe mood the user prefers: playful.";
    assert_eq!(
        asked["messages"],
        json!([
            {"role": "system", "content": system},
            {"role": "assistant", "content": "Good evening."},
            {"role": "user", "content": "hello"},
        ])
    );
    // A request's own settings win over the character's.
    let own = json!({"content": "again", "max_tokens": 5, "temperature": 1.5});
    let turn = app.post(&user, &format!("/v1/sessions/{id}/replies"), own).await.expect(201);
    let asked: Value = serde_json::from_str(turn.body["assistant_message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!((asked["max_tokens"].clone(), asked["temperature"].clone()), (json!(5), json!(1.5)));

    // One token under the whole: the least important memory goes first.
    let whole = app.get(&user, &format!("/v1/sessions/{id}/context?recent=2")).await.expect(200).body;
    let budget = whole["token_estimate"].as_u64().unwrap() - 1;
    let tight = app.get(&user, &format!("/v1/sessions/{id}/context?recent=2&max_tokens={budget}")).await;
    let tight = tight.expect(200).body;
    assert_eq!(tight["memories"].as_array().unwrap().len(), 1);
    assert_eq!(tight["memories"][0]["content"], "likes tea");
    assert_eq!((tight["parts"][2]["items"].clone(), tight["parts"][2]["dropped"].clone()), (json!(1), json!(1)));
    assert_eq!(tight["truncated"], true);
    // A budget of 1: everything but the system prompt and the newest message goes.
    let tiny = app.get(&user, &format!("/v1/sessions/{id}/context?max_tokens=1")).await.expect(200).body;
    let included: Vec<_> = tiny["parts"].as_array().unwrap().iter().map(|part| part["included"].clone()).collect();
    assert_eq!(included, [json!(true), json!(false), json!(false), json!(false), json!(false), json!(true)]);
    assert_eq!(tiny["messages"].as_array().unwrap().len(), 1);
    assert_eq!(tiny["profile"], Value::Null);
}
