//! The error contract shared by every group: malformed input is a documented 4xx, never a 500.

use axum::http::Method;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn malformed_bodies_are_400_with_a_request_id() {
    let app = TestApp::new().await;
    let user = app.user();
    let token = Some(user.token.as_str());
    for body in [&b"{"[..], b"not json", b"[1,2]", b"\"text\"", b"{\"title\": \"a\"} trailing", b"\xff\xfe"] {
        let response = app.raw("POST", "/v1/sessions", token, body).await.expect_error(400, "invalid_input");
        assert!(response.body["field"].is_string());
    }
    let nested = Box::leak(format!("{}{}", "[".repeat(1000), "]".repeat(1000)).into_bytes().into_boxed_slice());
    app.raw("POST", "/v1/sessions", token, nested).await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let app = TestApp::new().await;
    let user = app.user();
    let id = app.session(&user, "typed").await;
    let response = app
        .post(&user, &format!("/v1/sessions/{id}/messages"), json!({"role": "user", "content": 12}))
        .await
        .expect_error(400, "invalid_input");
    assert_eq!(response.body["field"], "content");
    let response = app
        .post(
            &user,
            &format!("/v1/sessions/{id}/messages"),
            json!({"role": "user", "content": "x", "usage": {"input_tokens": -1, "output_tokens": 0, "model": "m"}}),
        )
        .await
        .expect_error(400, "invalid_input");
    assert_eq!(response.body["field"], "usage.input_tokens");
}

#[tokio::test]
async fn oversize_body_is_413() {
    let app = TestApp::new().await;
    let user = app.user();
    let huge = Box::leak(format!("{{\"title\": \"{}\"}}", "x".repeat(200_000)).into_bytes().into_boxed_slice());
    app.raw("POST", "/v1/sessions", Some(&user.token), huge).await.expect_error(413, "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_404() {
    let app = TestApp::new().await;
    let user = app.user();
    app.get(&user, "/v1/nothing-here").await.expect_error(404, "not_found");
    app.call(Method::PUT, "/v1/sessions", Some(&user.token), Some(json!({}))).await.expect_error(404, "not_found");
    app.call(Method::GET, "/", None, None).await.expect_error(404, "not_found");
}

#[tokio::test]
async fn every_response_carries_a_request_id_header() {
    let app = TestApp::new().await;
    let user = app.user();
    let ok = app.get(&user, "/v1/sessions").await.expect(200);
    let error = app.get(&user, "/v1/sessions/not-a-uuid").await.expect(400);
    assert!(ok.header("x-request-id").is_some());
    assert_eq!(error.header("x-request-id"), error.body["request_id"].as_str());
}

#[tokio::test]
async fn an_unreachable_database_is_503() {
    // A store pointed at a closed port: the request fails fast and says so.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let app = TestApp::new().await;
    let user = app.user();
    let request = axum::http::Request::builder()
        .uri("/v1/sessions")
        .header("authorization", format!("Bearer {}", user.token))
        .body(axum::body::Body::empty())
        .unwrap();
    let offline = app.through(&format!("http://127.0.0.1:{port}"));
    let response = offline.send(request).await.expect_error(503, "service_unavailable");
    assert!(response.header("retry-after").is_some());
    assert!(!response.body["message"].as_str().unwrap().contains("127.0.0.1"), "503 bodies stay opaque");
}
