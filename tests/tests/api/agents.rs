//! Several agents in one session (#31): a group of catalog characters, each reply from one of
//! them — named by the request (`direct`) or picked by the backend (`orchestrated`: a routing call
//! to the model, a rule when it fails) — with the agent on the message, the other agents' lines
//! labelled in its context, and refusals that store nothing.

use serde_json::{Value, json};

use shared::config::LlmConfig;

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

/// Against the scripted model (set up by `configure`): the cast answering with `echo`, a user,
/// and a group of Alice, Bob and Cleo; the app, the user, the session and its replies path.
async fn scripted_group(configure: impl FnOnce(&mut LlmConfig)) -> (TestApp, User, String, String) {
    let mut llm = crate::replies::scripted_llm().await;
    configure(&mut llm);
    let app = TestApp::with_llm(llm, quota(20)).await;
    cast(&app, Some("echo")).await;
    let user = app.user();
    let session = group(&app, &user, &["alice", "bob", "cleo"]).await;
    let path = format!("/v1/sessions/{session}/replies");
    (app, user, session, path)
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
    // A round: every agent once, in the session's order, for the one quota unit of the message.
    let before = count(&app, &user, &session).await;
    let turn =
        app.post(&user, &path, json!({"content": "Introduce yourselves.", "mode": "all", "max_tokens": 16})).await;
    let turn = turn.expect(201).body;
    let round = turn["round"].as_array().unwrap();
    let first = turn["user_message"]["seq"].as_u64().unwrap();
    let spoke: Vec<(u64, &str, &str)> = round
        .iter()
        .map(|reply| {
            (
                reply["seq"].as_u64().unwrap(),
                reply["agent"]["id"].as_str().unwrap(),
                reply["routing"]["mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(spoke, [(first + 1, "alice", "all"), (first + 2, "bob", "all")], "{turn}");
    assert_eq!(turn["assistant_message"], round[0]);
    assert_eq!(count(&app, &user, &session).await, (before.0 + 3, before.1 + 1), "three messages, one quota unit");
    // A plain session answers as the assistant; a character chat as its character.
    let plain = app.session(&user, "plain").await;
    let turn =
        app.post(&user, &format!("/v1/sessions/{plain}/replies"), json!({"content": "hi", "max_tokens": 8})).await;
    let reply = turn.expect(201).body["assistant_message"].clone();
    assert!(reply["agent"].is_null() && reply["routing"].is_null(), "{reply}");
    let alone =
        app.post(&user, &format!("/v1/sessions/{plain}/replies"), json!({"content": "hi", "mode": "all"})).await;
    assert_eq!(alone.expect_error(400, "invalid_input").body["field"], "mode", "a round needs agents");
}

/// A round (`mode: "all"`): each agent hears the answers before its own, by name; as events, each
/// reply streams in turn from its own `reply.started`; a cancel ends the round (no later agent
/// starts); naming an agent is refused; a gated agent refuses the whole round, nothing stored.
#[tokio::test]
async fn a_round_hears_each_answer_before_its_own_and_a_cancel_ends_it() {
    // Routing asks `echo` too: an answer that names no agent (the rule decides), 1 + 1 tokens.
    let (app, user, session, path) = scripted_group(|llm| llm.model = "echo".to_owned()).await;
    app.post(&user, &path, json!({"content": "Who wants to start?"})).await.expect(201);
    let usage = app.get(&user, "/v1/usage").await.expect(200).body;
    let routing = usage["by_kind"].as_array().unwrap().iter().find(|kind| kind["kind"] == "routing").cloned();
    let routing = routing.unwrap_or_else(|| panic!("the routing call's tokens: {usage}"));
    assert_eq!((routing["messages"].as_u64(), routing["input_tokens"].as_u64()), (Some(1), Some(1)), "{usage}");
    let turn = app.post(&user, &path, json!({"content": "Hello all", "mode": "all"})).await.expect(201).body;
    let round = turn["round"].as_array().unwrap().clone();
    assert_eq!(round.len(), 3, "{turn}");
    let asked = |reply: &Value| -> Vec<Value> {
        let asked: Value = serde_json::from_str(reply["content"].as_str().unwrap()).unwrap();
        asked["messages"].as_array().unwrap().clone()
    };
    let cleo_heard = asked(&round[2]);
    assert!(cleo_heard[0]["content"].as_str().unwrap().starts_with("You are Cleo."), "{}", cleo_heard[0]);
    for (earlier, name) in [(&round[0], "Alice"), (&round[1], "Bob")] {
        let line = format!("[{name}]: {}", earlier["content"].as_str().unwrap());
        assert!(
            cleo_heard
                .iter()
                .any(|heard| heard["role"] == "user" && heard["content"].as_str().unwrap().contains(&line)),
            "Cleo hears {name} by name"
        );
    }
    assert!(
        !asked(&round[0]).iter().any(|heard| heard["content"].as_str().unwrap().contains("[Bob]")),
        "Alice answered before Bob spoke"
    );

    let (status, events) =
        crate::replies::stream(&app, &user, &path, Some(json!({"content": "Again", "mode": "all"})), &[]).await;
    assert_eq!(status, 201);
    let started: Vec<(u64, String)> = events
        .iter()
        .filter(|event| event.event == "reply.started")
        .map(|event| (event.id, event.data["assistant_message"]["agent"]["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(started, [(1, "alice".to_owned()), (1, "bob".to_owned()), (1, "cleo".to_owned())]);
    assert_eq!(events.iter().filter(|event| event.event == "reply.completed").count(), 3);

    // Bob talks for a long while: cancelling him ends the round before Cleo.
    let admin = app.admin();
    app.patch(&admin, "/v1/admin/characters/bob", json!({"model": {"model": "slow"}})).await.expect(200);
    let before = count(&app, &user, &session).await;
    let waiting = {
        let (app, user, path) = (app.clone(), user.clone(), path.clone());
        tokio::spawn(async move { app.post(&user, &path, json!({"content": "Once more", "mode": "all"})).await })
    };
    let bob = format!("/v1/sessions/{session}/messages/{}", before.0 + 3);
    let started = std::time::Instant::now();
    while app.get(&user, &bob).await.body["content"].as_str().is_none_or(str::is_empty) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "Bob never started");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.post(&user, &format!("{bob}/cancel"), json!({})).await.expect(200).body["status"], "cancelled");
    let turn = waiting.await.unwrap().expect(201).body;
    let statuses: Vec<&str> =
        turn["round"].as_array().unwrap().iter().map(|reply| reply["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["complete", "cancelled"], "{turn}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(count(&app, &user, &session).await, (before.0 + 3, before.1 + 1), "Cleo never started");

    let named = app.post(&user, &path, json!({"content": "hi", "mode": "all", "agent": "alice"})).await;
    assert_eq!(named.expect_error(400, "invalid_input").body["field"], "agent");
    app.patch(&admin, "/v1/admin/characters/cleo", json!({"access_type": "premium"})).await.expect(200);
    let before = count(&app, &user, &session).await;
    app.post(&user, &path, json!({"content": "hi", "mode": "all"})).await.expect_error(403, "premium_required");
    assert_eq!(count(&app, &user, &session).await, before, "a gated agent refuses the round: nothing stored");
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
    // Routing asks the configured model, which fails; the agents answer with `echo`.
    let (app, user, session, path) = scripted_group(|llm| llm.model = "fail-500".to_owned()).await;
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

/// A round shares one time cap (`LLM_REPLY_TIMEOUT_SECS`, from the request): Bob talks for 30 s,
/// is cut at the cap (`incomplete`, his text kept), and Cleo never starts past it.
#[tokio::test]
async fn a_round_shares_one_time_cap() {
    let (app, user, session, path) = scripted_group(|llm| llm.reply_timeout_secs = 3).await;
    let admin = app.admin();
    app.patch(&admin, "/v1/admin/characters/bob", json!({"model": {"model": "slow"}})).await.expect(200);
    let started = std::time::Instant::now();
    let turn = app.post(&user, &path, json!({"content": "Go!", "mode": "all"})).await.expect(201).body;
    let round = turn["round"].as_array().unwrap();
    let ended: Vec<(&str, &str)> =
        round.iter().map(|reply| (reply["agent"]["id"].as_str().unwrap(), reply["status"].as_str().unwrap())).collect();
    assert_eq!(ended, [("alice", "complete"), ("bob", "incomplete")], "{turn}");
    assert!(!round[1]["content"].as_str().unwrap().is_empty(), "Bob's text up to the cap is kept");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the round ended at its cap: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(count(&app, &user, &session).await.0, 3, "the user's message, Alice and Bob; Cleo never started");
}
