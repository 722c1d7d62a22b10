//! The security matrix: every deployed route × every kind of bad credential, every route that
//! takes an id × another user's id, and hostile input. Routes come from `template.yaml`, so a
//! new route is covered the day it is added.

use axum::body::Body;
use axum::http::{Method, Request};
use kit::template::{self, RouteDefinition};
use kit::token::DEV_JWT_SECRET;
use serde_json::{Value, json};
use shared::config::{AuthConfig, JwtKey};

use crate::auth::{RS_PRIVATE, RS_PUBLIC, hs256, now, rs256, unsigned};
use crate::common::{TestApp, User};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "chat-api";
const SOME_ID: &str = "00000000-0000-4000-8000-000000000001";

fn claims(changes: Value) -> Value {
    let mut claims = json!({"sub": "matrix-user", "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE});
    claims.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
    claims
}

/// A body that passes validation for the route, so only the credential (or the id) decides.
fn valid_body(route: &RouteDefinition) -> Option<Value> {
    let path = route.path.as_str();
    match (route.method.as_str(), path) {
        ("POST", "/v1/sessions") => Some(json!({"title": "x"})),
        ("PATCH", "/v1/sessions/{id}") => Some(json!({"title": "taken over"})),
        ("POST", "/v1/sessions/{id}/messages") => Some(json!({"role": "user", "content": "x"})),
        ("POST", "/v1/sessions/{id}/messages/batch") => Some(json!({"messages": [{"role": "user", "content": "x"}]})),
        ("PATCH", "/v1/sessions/{id}/messages/{seq}") => Some(json!({"content": "rewritten"})),
        ("POST", "/v1/sessions/{id}/forget-recent") => Some(json!({"count": 1})),
        ("POST", "/v1/sessions/{id}/new-scene") => Some(json!({"messages_to_keep": 0})),
        ("POST", "/v1/memories") => Some(json!({"content": "x", "memory_type": "fact"})),
        ("POST", "/v1/sessions/{id}/messages/{seq}/tool-results") => {
            Some(json!({"tool_call_id": "call_1", "output": 1}))
        }
        ("PATCH", "/v1/memories/{id}") => Some(json!({"content": "rewritten"})),
        ("PATCH", "/v1/limits/profile") => Some(json!({"timezone": "Europe/Lisbon"})),
        ("PUT", _) => {
            Some(json!({"plan": "pro", "start_at": "2026-01-01T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"}))
        }
        ("POST", _) => Some(json!({})),
        _ => None,
    }
}

async fn send(app: &TestApp, route: &RouteDefinition, path: &str, authorization: Option<&str>) -> crate::common::Resp {
    let mut request = Request::builder().method(Method::from_bytes(route.method.as_bytes()).unwrap()).uri(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let body = valid_body(route).map_or(Body::empty(), |body| Body::from(body.to_string()));
    app.send(request.body(body).unwrap()).await
}

/// Every template route with `authorization` → 401 `unauthorized`, and not one DynamoDB call.
async fn assert_every_route_rejects(app: &TestApp, authorization: Option<&str>, why: &str) -> usize {
    let routes = template::routes().unwrap();
    for route in &routes {
        let path = route.path.replace("{id}", SOME_ID).replace("{seq}", "1").replace("{user_id}", "someone");
        let calls_before = app.state.store.dynamodb_calls();
        let response = send(app, route, &path, authorization).await;
        assert_eq!(response.status, 401, "{why}: {} {} answered {}", route.method, route.path, response.body);
        assert_eq!(response.body["error"], "unauthorized", "{why}");
        assert!(!response.body.to_string().contains("matrix-user"), "{why}: the body names the token's subject");
        let calls = app.state.store.dynamodb_calls() - calls_before;
        assert_eq!(calls, 0, "{why}: {} {} made {calls} DynamoDB calls", route.method, route.path);
    }
    routes.len()
}

#[tokio::test]
async fn every_route_rejects_every_bad_credential_before_touching_dynamodb() {
    let secret = DEV_JWT_SECRET.as_bytes();
    let auth = AuthConfig {
        key: JwtKey::hs256(secret),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        telegram: None,
    };
    let app = TestApp::with_auth(auth).await;
    let good = hs256(&claims(json!({})), secret);
    app.call(Method::GET, "/v1/sessions", Some(&good), None).await.expect(200);

    let bearer = |token: String| Some(format!("Bearer {token}"));
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "no token"),
        (Some("Bearer not.a.jwt".into()), "garbage"),
        (Some(format!("Basic {good}")), "wrong scheme"),
        (bearer(unsigned(&claims(json!({})))), "alg none"),
        (bearer(rs256(&claims(json!({})), RS_PRIVATE)), "RS256 token to an HS256 server"),
        (bearer(hs256(&claims(json!({})), b"another-secret-that-is-32-bytes-long!")), "wrong key"),
        (bearer(hs256(&claims(json!({"exp": now() - 120})), secret)), "expired"),
        (bearer(hs256(&claims(json!({"nbf": now() + 300})), secret)), "nbf in the future"),
        (bearer(hs256(&claims(json!({"iss": "https://evil.example"})), secret)), "wrong iss"),
        (bearer(hs256(&claims(json!({"aud": "other-api"})), secret)), "wrong aud"),
        (Some("tma user=%7B%22id%22%3A1%7D&auth_date=1&hash=00".into()), "Telegram init data with no bot configured"),
    ];
    let mut requests = 0;
    for (authorization, why) in &cases {
        requests += assert_every_route_rejects(&app, authorization.as_deref(), why).await;
    }
    assert!(requests >= 11 * 29, "{requests} requests");

    // Algorithm confusion against an RS256 server: HS256 "signed" with its public key.
    let auth = AuthConfig { key: JwtKey::PublicKeyPem(RS_PUBLIC.into()), issuer: None, audience: None, telegram: None };
    let app = TestApp::with_auth(auth).await;
    let confused = hs256(&claims(json!({})), RS_PUBLIC.as_bytes());
    assert_every_route_rejects(&app, Some(&format!("Bearer {confused}")), "HS256 signed with the RS256 public key")
        .await;
}

/// What the owner can see; must be the same after a stranger tried everything.
async fn snapshot(app: &TestApp, owner: &User, session: &str, memory: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/v1/sessions/{session}?include=messages"),
        format!("/v1/sessions/{session}/messages"),
        format!("/v1/memories/{memory}"),
        format!("/v1/memories?session_id={session}&include_global=true"),
        format!("/v1/sessions/{session}/context"),
        "/v1/limits".to_owned(),
    ] {
        seen.push(app.get(owner, &path).await.expect(200).body);
    }
    seen
}

fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("request_id");
    body
}

#[tokio::test]
async fn another_users_ids_are_404_on_every_route_and_change_nothing() {
    let app = TestApp::new().await;
    let (owner, stranger) = (app.user(), app.user());
    let session = app.session(&owner, "owner's secret plans").await;
    app.append(&owner, &session, "user", "owner's first message").await;
    app.append(&owner, &session, "assistant", "a reply").await;
    let memory = app
        .post(
            &owner,
            "/v1/memories",
            json!({"content": "owner's secret", "memory_type": "fact", "session_id": session}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = snapshot(&app, &owner, &session, &memory).await;

    let mut checked = 0;
    // Characters are one catalog for everyone (their ids are not a user's); a caller's chat with
    // one is their own (tested in `characters`).
    let per_user =
        |route: &&template::RouteDefinition| route.path.contains("{id}") && !route.path.contains("/characters/");
    for route in template::routes().unwrap().iter().filter(per_user) {
        let id = if route.path.starts_with("/v1/memories") { &memory } else { &session };
        let unknown = "00000000-0000-4000-8000-00000000dead";
        let foreign =
            send(&app, route, &route.path.replace("{id}", id).replace("{seq}", "1"), Some(&bearer(&stranger))).await;
        let missing =
            send(&app, route, &route.path.replace("{id}", unknown).replace("{seq}", "1"), Some(&bearer(&stranger)))
                .await;
        assert_eq!(foreign.status, 404, "{} {}: {}", route.method, route.path, foreign.body);
        // Indistinguishable from an id that does not exist: nothing is revealed.
        assert_eq!(
            without_request_id(foreign.body),
            without_request_id(missing.body),
            "{} {}",
            route.method,
            route.path
        );
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} id routes");
    // Ids passed elsewhere than the path: a session id in the query or the body.
    for (method, path, body) in [
        (Method::GET, format!("/v1/memories?session_id={session}"), None),
        (Method::DELETE, format!("/v1/memories?session_id={session}"), None),
        (
            Method::POST,
            "/v1/memories".to_owned(),
            Some(json!({"content": "x", "memory_type": "fact", "session_id": session})),
        ),
    ] {
        app.call(method, &path, Some(&stranger.token), body).await.expect_error(404, "not_found");
    }
    // The caller-wide routes: a stranger's export holds nothing of the owner, their erasure
    // erases nothing of the owner.
    let export = app.get(&stranger, "/v1/me/export").await.expect(200).body;
    assert!(!export.to_string().contains("owner's"), "{export}");
    assert!(export["next_cursor"].is_null());
    let erased = app.delete(&stranger, "/v1/me").await.expect(200).body;
    assert_eq!(erased["erased"]["sessions"], 0);
    assert_eq!(snapshot(&app, &owner, &session, &memory).await, before, "a stranger changed the owner's data");
}

fn bearer(user: &User) -> String {
    format!("Bearer {}", user.token)
}

#[tokio::test]
async fn emoji_rtl_and_nul_text_round_trips_intact() {
    let app = TestApp::new().await;
    let user = app.user();
    let text = "Привет 👋🏽 مرحبا بالعالم שלום 👨‍👩‍👧 e\u{301} \u{202e}rtl\u{202c} tab\tnul\u{0}end";
    let session = app.post(&user, "/v1/sessions", json!({"title": "🌍 عنوان", "metadata": {"ключ": "值 🔑"}})).await;
    let session = session.expect(201).body;
    assert_eq!(session["title"], "🌍 عنوان");
    assert_eq!(session["metadata"]["ключ"], "值 🔑");
    let id = session["id"].as_str().unwrap();
    let message = app.append(&user, id, "user", text).await;
    assert_eq!(message["content"], text);
    let listed = app.get(&user, &format!("/v1/sessions/{id}/messages")).await.expect(200).body;
    assert_eq!(listed["data"][0]["content"], text);
    let memory = app.post(&user, "/v1/memories", json!({"content": text, "memory_type": "emotion"})).await.expect(201);
    let memory_id = memory.body["id"].as_str().unwrap();
    assert_eq!(app.get(&user, &format!("/v1/memories/{memory_id}")).await.expect(200).body["content"], text);
}

#[tokio::test]
async fn hostile_input_gets_the_documented_4xx() {
    let app = TestApp::new().await;
    let user = app.user();
    let token = Some(user.token.as_str());
    let session = app.session(&user, "target").await;

    // Invalid UTF-8 inside a JSON string, deep nesting inside an object field, a huge number.
    for body in [
        &b"{\"title\": \"\xc3\x28\"}"[..],
        b"{\"settings\": {\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
        b"{\"title\": 1e999999}",
        b"{\"title\": \"a\", \"title\": \"b\"}",
    ] {
        let response = app.raw("POST", "/v1/sessions", token, body).await;
        assert!(
            response.status == 400 || response.status == 413,
            "{} for {:?}: {}",
            response.status,
            String::from_utf8_lossy(body),
            response.body
        );
        assert!(response.body["error"] == "invalid_input" || response.body["error"] == "payload_too_large");
    }

    // Ids that are not UUIDs, seqs that are not positive integers.
    for path in [
        "/v1/sessions/not-a-uuid".to_owned(),
        "/v1/sessions/%00".to_owned(),
        format!("/v1/sessions/{session}x"),
        "/v1/memories/12345".to_owned(),
        format!("/v1/sessions/{session}/messages/0"),
        format!("/v1/sessions/{session}/messages/-1"),
        format!("/v1/sessions/{session}/messages/abc"),
        format!("/v1/sessions/{session}/messages/99999999999999999999999"),
    ] {
        app.get(&user, &path).await.expect_error(400, "invalid_input");
    }

    // Paging parameters: negative, zero, huge, non-numeric, on every listing.
    for listing in ["/v1/sessions?", &format!("/v1/sessions/{session}/messages?"), "/v1/memories?"] {
        for bad in ["limit=-1", "limit=0", "limit=100000", "limit=abc", "limit=1e3", "limit=99999999999999999999"] {
            let response = app.get(&user, &format!("{listing}{bad}")).await.expect_error(400, "invalid_input");
            assert_eq!(response.body["field"], "limit", "{listing}{bad}");
        }
    }
    for listing in ["/v1/sessions", "/v1/memories"] {
        let response = app.get(&user, &format!("{listing}?cursor=%E2%9C%93not-a-cursor")).await;
        assert_eq!(response.expect_error(400, "invalid_input").body["field"], "cursor");
    }
    for bad in ["after_seq=-1", "after_seq=abc", "before_seq=1.5", "order=sideways"] {
        app.get(&user, &format!("/v1/sessions/{session}/messages?{bad}")).await.expect_error(400, "invalid_input");
    }
    // Nothing above was stored.
    assert_eq!(app.get(&user, "/v1/sessions").await.expect(200).body["data"].as_array().unwrap().len(), 1);
}
