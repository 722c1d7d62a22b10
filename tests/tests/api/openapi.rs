//! The OpenAPI document: generated from the handlers' types, committed, served, and covering
//! exactly the routes API Gateway sends.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request};
use dev::openapi;
use http_body_util::BodyExt as _;
use kit::template;
use tower::ServiceExt as _;

use crate::common::TestApp;

#[test]
fn the_committed_openapi_json_is_the_generated_document() {
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../../openapi.json")).expect("openapi.json is JSON");
    assert!(
        committed == openapi::document(),
        "openapi.json is stale: run `cargo run -p local --bin openapi > openapi.json`"
    );
}

#[test]
fn the_document_describes_exactly_the_template_routes() {
    let document = openapi::document();
    let documented: BTreeSet<String> = openapi::routes(&document).into_iter().collect();
    let deployed: BTreeSet<String> =
        template::routes().unwrap().into_iter().map(|route| format!("{} {}", route.method, route.path)).collect();
    assert_eq!(documented, deployed);
    assert_eq!(document["openapi"], "3.1.0");
}

#[test]
fn every_operation_documents_its_errors_and_every_reference_resolves() {
    let document = openapi::document();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["400", "401", "404", "429", "500", "503"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
            }
            assert!(responses.keys().any(|status| status.starts_with('2')), "{method} {path} has no success");
        }
    }
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling reference to {name}");
    }
    // Field names come from the types: a message has `seq`, a session `last_seq`.
    assert!(schemas["Message"]["required"].as_array().unwrap().contains(&"seq".into()));
    assert!(schemas["Session"]["required"].as_array().unwrap().contains(&"last_seq".into()));
    assert_eq!(schemas["AppendMessage"]["additionalProperties"], false, "unknown fields are rejected");
}

#[tokio::test]
async fn the_local_server_serves_the_document_and_a_docs_page_without_a_token() {
    let app = TestApp::new().await;
    let served = app.call(Method::GET, "/openapi.json", None, None).await.expect(200);
    assert_eq!(served.body, openapi::document());
    let request = Request::builder().uri("/docs").body(Body::empty()).unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for route in openapi::routes(&openapi::document()) {
        let path = route.split_once(' ').unwrap().1;
        assert!(page.contains(&format!("<code>{path}</code>")), "the docs page lacks {route}");
    }
}

/// The variant of `schema` (a `oneOf` of `{event: const, data}` objects) that `frame` names, after
/// checking that `frame` has what that variant requires and nothing it does not list.
fn check_frame(schemas: &serde_json::Map<String, serde_json::Value>, schema: &str, frame: &serde_json::Value) {
    let event = frame["event"].as_str().unwrap();
    let variant = schemas[schema]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|variant| variant["properties"]["event"]["const"] == event)
        .unwrap_or_else(|| panic!("{schema} has no variant {event:?}"));
    let Some(data) = frame.get("data").and_then(|data| data.as_object()) else {
        assert!(variant["required"].as_array().unwrap().iter().all(|name| name != "data"), "{event}: data required");
        return;
    };
    let mut described = &variant["properties"]["data"];
    if let Some(name) = described["$ref"].as_str().and_then(|reference| reference.rsplit('/').next()) {
        described = &schemas[name];
    }
    let properties = described["properties"].as_object().cloned().unwrap_or_default();
    for name in data.keys() {
        assert!(properties.contains_key(name), "{schema} {event}: {name:?} is sent but not described");
    }
    for name in described["required"].as_array().into_iter().flatten() {
        assert!(data.contains_key(name.as_str().unwrap()), "{schema} {event}: {name} is described as required");
    }
}

#[test]
fn the_socket_frames_are_what_the_document_describes() {
    use shared::domain::{CharacterId, ClientEvent, Hidden, MemoryId, Seq, ServerEvent, SessionId};

    let document = openapi::document();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let session_id = SessionId::generate();
    let seq = Seq::after(2);
    let sent = [
        ServerEvent::MessageDeleted { session_id, rev: 4, hidden: Hidden::Seqs { seqs: vec![seq] } },
        ServerEvent::MessageDeleted { session_id, rev: 5, hidden: Hidden::Through { through_seq: 9 } },
        ServerEvent::MessageNew { session_id, seq, rev: 6, message: None },
        ServerEvent::MessageTyping { session_id, is_typing: true, agent: None },
        ServerEvent::MessageDelta { session_id, seq, text: "Hi".into(), agent: None },
        ServerEvent::MessageComplete { session_id, seq, message_id: "m".into(), tokens_used: 3, agent: None },
        ServerEvent::MessageTyping { session_id, is_typing: false, agent: CharacterId::parse("bob").ok() },
        ServerEvent::MemoryDeleted { session_id, memory_id: MemoryId::generate() },
        ServerEvent::Error {
            code: "rate_limit".into(),
            message: "slow down".into(),
            request_id: Some("r-1".into()),
            field: Some("content".into()),
            limits: None,
        },
        ServerEvent::Pong {},
    ];
    for event in sent {
        check_frame(schemas, "ServerEvent", &serde_json::from_str(&event.frame()).unwrap());
    }
    let received = [
        r#"{"event":"send_message","data":{"content":"Hello","idempotency_key":"k-1"}}"#,
        r#"{"event":"send_message","data":{"content":"Hello"}}"#,
        r#"{"event":"typing","data":{"is_typing":false}}"#,
        r#"{"event":"sync","data":{"after_rev":3}}"#,
        r#"{"event":"ping"}"#,
    ];
    for frame in received {
        assert!(ClientEvent::parse(frame).is_ok(), "{frame}");
        check_frame(schemas, "ClientEvent", &serde_json::from_str(frame).unwrap());
    }
}
