//! Several agents in one session (#31): a group of catalog characters, each reply from one of
//! them — named by the request (`direct`) or picked by the backend (`orchestrated`: a routing call
//! to the model, a rule when it fails) — with the agent on the message, the other agents' lines
//! labelled in its context, and refusals that store nothing.

use serde_json::{Value, json};

use crate::common::{TestApp, User, local_llm, quota};

/// Three characters (one premium) and one that is not active.
async fn cast(app: &TestApp, model: Option<&str>) {
    let admin = app.admin();
    let with_model = |mut body: Value| {
        if let Some(model) = model {
            body["model"] = json!({"model": model});
        }
        body
    };
    for body in [
        json!({"id": "alice", "name": "Alice", "description": "A cheerful baker", "system_prompt": "You are Alice, a baker."}),
        json!({"id": "bob", "name": "Bob", "description": "A grumpy sailor", "system_prompt": "You are Bob, a sailor."}),
        json!({"id": "cleo", "name": "Cleo", "description": "A quiet librarian", "system_prompt": "You are Cleo."}),
        json!({"id": "dora", "name": "Dora", "description": "A premium seer", "access_type": "premium"}),
    ] {
        app.post(&admin, "/v1/admin/characters", with_model(body)).await.expect(201);
    }
}

async fn group(app: &TestApp, user: &User, agents: &[&str]) -> String {
    let session = app.post(user, "/v1/sessions", json!({"title": "group", "agents": agents})).await.expect(201).body;
    assert_eq!(session["agents"], json!(agents));
    session["id"].as_str().unwrap().to_owned()
}

async fn count(app: &TestApp, user: &User, session: &str) -> (u64, u64) {
    let summary = app.get(user, &format!("/v1/sessions/{session}")).await.expect(200).body;
    let limits = app.get(user, "/v1/limits").await.expect(200).body;
    (summary["message_count"].as_u64().unwrap(), limits["messages_limit"]["used"].as_u64().unwrap())
}

/// Direct replies come from the agent named; an unknown agent is 404 `agent_not_found`, a
/// character not in the session 409 `agent_not_in_session`, `direct` without an agent and blank
/// content 400 — each storing nothing and spending no quota. Orchestrated replies always come from
/// an agent of the session, with the routing's mode and reason.
#[tokio::test]
async fn direct_and_orchestrated_replies_come_from_the_sessions_agents() {
    let app = TestApp::with_llm(local_llm(), quota(20)).await;
    cast(&app, None).await;
    let user = app.user();
    let session = group(&app, &user, &["alice", "bob"]).await;
    let path = format!("/v1/sessions/{session}/replies");
    for agent in ["alice", "bob"] {
        let body = json!({"content": "Hello there!", "mode": "direct", "agent": agent, "max_tokens": 16});
        let turn = app.post(&user, &path, body).await.expect(201).body;
        let reply = &turn["assistant_message"];
        assert_eq!(reply["agent"]["id"], agent, "{reply}");
        assert_eq!(reply["agent"]["name"], if agent == "alice" { "Alice" } else { "Bob" });
        assert_eq!(reply["routing"]["mode"], "direct");
        assert!(turn["user_message"]["agent"].is_null(), "the user's message has no agent");
    }
    let before = count(&app, &user, &session).await;
    let refused = [
        (json!({"content": "hi", "mode": "direct", "agent": "nobody"}), 404, "agent_not_found"),
        (json!({"content": "hi", "agent": "cleo"}), 409, "agent_not_in_session"),
        (json!({"content": "hi", "mode": "direct"}), 400, "invalid_input"),
        (json!({"content": "  ", "agent": "alice"}), 400, "invalid_input"),
        (json!({"content": "hi", "mode": "everyone"}), 400, "invalid_input"),
    ];
    for (body, status, code) in refused {
        app.post(&user, &path, body.clone()).await.expect_error(status, code);
    }
    assert_eq!(count(&app, &user, &session).await, before, "nothing stored, no quota spent");
    for _ in 0..3 {
        let turn = app.post(&user, &path, json!({"content": "What do you all think?", "max_tokens": 16})).await;
        let reply = turn.expect(201).body["assistant_message"].clone();
        assert!(["alice", "bob"].contains(&reply["agent"]["id"].as_str().unwrap()), "{reply}");
        assert_eq!(reply["routing"]["mode"], "orchestrated");
        assert!(!reply["routing"]["reason"].as_str().unwrap().is_empty());
    }
    // A plain session answers as the assistant; a character chat as its character.
    let plain = app.session(&user, "plain").await;
    let turn =
        app.post(&user, &format!("/v1/sessions/{plain}/replies"), json!({"content": "hi", "max_tokens": 8})).await;
    let reply = turn.expect(201).body["assistant_message"].clone();
    assert!(reply["agent"].is_null() && reply["routing"].is_null(), "{reply}");
}

/// Each agent passes the catalog's gates for the caller; a character chat keeps its one
/// character; a session holds at most four agents, none twice; PATCH replaces the list.
#[tokio::test]
async fn agents_are_gated_bounded_and_replaced_by_patch() {
    let app = TestApp::new().await;
    cast(&app, None).await;
    let user = app.user();
    let create = |agents: Value| json!({"agents": agents});
    app.post(&user, "/v1/sessions", create(json!(["alice", "dora"]))).await.expect_error(403, "premium_required");
    app.post(&user, "/v1/sessions", create(json!(["alice", "ghost"]))).await.expect_error(404, "character_not_found");
    let refused = app.post(&user, "/v1/sessions", create(json!(["alice", "alice"]))).await;
    assert_eq!(refused.expect_error(400, "invalid_input").body["field"], "agents");
    let five = json!(["alice", "bob", "cleo", "dora", "eve"]);
    app.post(&user, "/v1/sessions", create(five)).await.expect_error(400, "invalid_input");
    let chat = app.get(&user, "/v1/characters/alice/session").await.expect(200).body;
    let id = chat["id"].as_str().unwrap();
    let patched = app.patch(&user, &format!("/v1/sessions/{id}"), json!({"agents": ["bob"]})).await;
    assert_eq!(patched.expect_error(400, "invalid_input").body["field"], "agents");
    let session = group(&app, &user, &["alice"]).await;
    let patched = app.patch(&user, &format!("/v1/sessions/{session}"), json!({"agents": ["bob", "cleo"]})).await;
    assert_eq!(patched.expect(200).body["agents"], json!(["bob", "cleo"]));
    assert_eq!(
        app.get(&user, &format!("/v1/sessions/{session}")).await.expect(200).body["agents"],
        json!(["bob", "cleo"])
    );
}

/// An agent's context is its own: its system prompt, and the other agents' lines as what they
/// said, by name — never in its own voice. (The `echo` script answers with the prompt it got.)
/// With the routing model down, orchestration falls back to the rule: the agent the message
/// names, else the one heard from least recently — never a 5xx. Regenerate keeps the agent, or
/// switches to the one named.
#[tokio::test]
async fn each_agent_hears_the_others_by_name_and_routing_falls_back_without_the_model() {
    let mut llm = crate::replies::scripted_llm().await;
    // Routing asks the configured model, which fails; the agents answer with `echo`.
    llm.model = "fail-500".to_owned();
    let app = TestApp::with_llm(llm, quota(20)).await;
    cast(&app, Some("echo")).await;
    let user = app.user();
    let session = group(&app, &user, &["alice", "bob", "cleo"]).await;
    let path = format!("/v1/sessions/{session}/replies");
    let first = app.post(&user, &path, json!({"content": "Alice, say hi", "agent": "alice", "mode": "direct"})).await;
    let alice = first.expect(201).body["assistant_message"].clone();
    let second = app.post(&user, &path, json!({"content": "And you?", "agent": "bob", "mode": "direct"})).await;
    let bob = second.expect(201).body["assistant_message"].clone();
    let asked: Value = serde_json::from_str(bob["content"].as_str().unwrap()).unwrap();
    let lines = asked["messages"].as_array().unwrap();
    assert!(lines[0]["content"].as_str().unwrap().starts_with("You are Bob, a sailor."), "{}", lines[0]);
    let alice_line = format!("[Alice]: {}", alice["content"].as_str().unwrap());
    assert!(
        lines.iter().any(|line| line["role"] == "user" && line["content"].as_str().unwrap().contains(&alice_line)),
        "Alice's line, by name, as what she said: {asked}"
    );
    assert!(lines.iter().all(|line| line["role"] != "assistant"), "nothing in Bob's own voice yet: {asked}");

    // The router fails (HTTP 500): the message names Cleo, so Cleo answers.
    let named = app.post(&user, &path, json!({"content": "What does cleo think?"})).await.expect(201).body;
    let reply = &named["assistant_message"];
    assert_eq!(
        (reply["agent"]["id"].as_str(), reply["routing"]["mode"].as_str()),
        (Some("cleo"), Some("orchestrated"))
    );
    assert!(reply["routing"]["reason"].as_str().unwrap().contains("Cleo"), "{reply}");
    // Nobody named: the one heard from least recently (Alice).
    let quiet = app.post(&user, &path, json!({"content": "Anyone?"})).await.expect(201).body;
    assert_eq!(quiet["assistant_message"]["agent"]["id"], "alice", "{quiet}");
    let seq = quiet["assistant_message"]["seq"].as_u64().unwrap();
    let regenerated = app.post(&user, &format!("/v1/sessions/{session}/messages/{seq}/regenerate"), json!({})).await;
    assert_eq!(regenerated.expect(201).body["assistant_message"]["agent"]["id"], "alice", "regenerate keeps the agent");
    let switched =
        app.post(&user, &format!("/v1/sessions/{session}/messages/{seq}/regenerate"), json!({"agent": "bob"})).await;
    let switched = switched.expect(201).body["assistant_message"].clone();
    assert_eq!((switched["agent"]["id"].as_str(), switched["routing"]["mode"].as_str()), (Some("bob"), Some("direct")));
}
