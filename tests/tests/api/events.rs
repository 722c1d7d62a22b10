//! The sample API Gateway events in events/ are fixtures: each one, run through the same
//! conversion Lambda uses, gets the status its file name promises.

use std::path::PathBuf;

use axum::body::Body;
use serde_json::json;

use crate::common::{TestApp, User, local_llm, unlimited};

fn event_files() -> Vec<PathBuf> {
    let root = kit::dynamodb_local::workspace_root().join("events");
    let mut files = Vec::new();
    for group in ["sessions", "messages", "memories", "limits"] {
        // The job's scheduled event (events/job/) is not an HTTP request; limits.rs runs it.
        for entry in std::fs::read_dir(root.join(group)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files
}

fn expected_status(path: &std::path::Path) -> u16 {
    let stem = path.file_stem().unwrap().to_str().unwrap();
    stem.rsplit('-').next().unwrap().parse().unwrap_or_else(|_| panic!("{stem}: name must end in -<status>"))
}

/// Seeds the demo user's session (user, assistant, user, assistant), a global memory and the
/// character `luna`.
async fn seed(app: &TestApp) -> (String, String) {
    let token = kit::token::mint(
        kit::token::DEV_JWT_SECRET.as_bytes(),
        &kit::token::TokenRequest { sub: "demo-user", ttl_secs: 600, issuer: None, audience: None, admin: false },
    )
    .unwrap();
    let demo = User { id: "demo-user".into(), token };
    let session = app.session(&demo, "Demo").await;
    let batch = json!({"messages": [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"}, {"role": "assistant", "content": "four"},
    ]});
    app.post(&demo, &format!("/v1/sessions/{session}/messages/batch"), batch).await.expect(201);
    let admin = app.admin();
    let luna = json!({"id": "luna", "name": "Luna", "description": "A moon witch", "greeting": "Hello, traveller.",
                      "genre": "fantasy", "tags": [{"category": "theme", "name": "magic"}]});
    app.post(&admin, "/v1/admin/characters", luna).await.expect(201);
    let memory = json!({"content": "Has a cat named Miso", "memory_type": "fact"});
    let memory = app.post(&demo, "/v1/memories", memory).await.expect(201).body;
    (session, memory["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn every_sample_event_gets_the_status_in_its_name() {
    let files = event_files();
    assert!(files.len() >= 54, "one event per route and outcome");
    for file in files {
        // Replies come from the local model, as in the dev server.
        let app = TestApp::with_llm(local_llm(), unlimited()).await;
        let (session, memory) = seed(&app).await;
        let text = kit::events::read(&file, &session, &memory).unwrap();
        let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (parts, body) = request.into_parts();
        let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
        let response = app.send(request).await;
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(response.status.as_u16(), expected_status(&file), "{name}: {}", response.body);
        if !response.status.is_success() {
            let request_id = format!("event-{}", name.trim_end_matches(".json"));
            assert_eq!(response.body["request_id"], request_id.as_str(), "{name}: API Gateway's request id");
        }
    }
}
