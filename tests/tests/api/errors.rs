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
    // Only an object is a body: serde would take a struct as an array of its fields.
    for body in [&br#"["t",null,null]"#[..], b"[]", br#"  ["t"]"#, b"42", b"null", b"true"] {
        let response = app.raw("POST", "/v1/sessions", token, body).await.expect_error(400, "invalid_input");
        assert_eq!(response.body["field"], "body");
        assert_eq!(response.body["message"], "the body must be a JSON object");
    }
    assert_eq!(app.get(&user, "/v1/sessions").await.expect(200).body["data"].as_array().unwrap().len(), 0);
    // Malformed JSON names the body, not "?"; nested type errors name no Rust type.
    let response = app.raw("POST", "/v1/sessions", token, b"{\"title\": ").await.expect_error(400, "invalid_input");
    assert_eq!(response.body["field"], "body");
    let session = app.session(&user, "typed").await;
    let response = app
        .raw_owned(
            "POST",
            &format!("/v1/sessions/{session}/messages"),
            token,
            br#"{"role":"user","content":"x","usage":[1]}"#,
        )
        .await
        .expect_error(400, "invalid_input");
    let message = response.body["message"].as_str().unwrap();
    assert_eq!(response.body["field"], "usage");
    assert!(!message.contains("struct") && !message.contains("Usage") && !message.contains("element"), "{message}");
    assert!(message.contains("an object"), "{message}");
}

#[tokio::test]
async fn unknown_query_parameters_are_400_like_unknown_body_fields() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "q").await;
    for path in [
        "/v1/sessions?limt=5".to_owned(),
        format!("/v1/sessions/{session}?includes=messages"),
        format!("/v1/sessions/{session}/messages?after=3"),
        format!("/v1/sessions/{session}/context?recnt=2"),
        "/v1/memories?sesion_id=x".to_owned(),
        "/v1/usage?form=2026-01-01".to_owned(),
    ] {
        let response = app.get(&user, &path).await.expect_error(400, "invalid_input");
        assert!(response.body["message"].as_str().unwrap().contains("unknown field"), "{path}: {}", response.body);
    }
    app.get(&user, "/v1/sessions?limit=5").await.expect(200);
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
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = TestApp::new().await;
    let user = app.user();
    app.get(&user, "/v1/nothing-here").await.expect_error(404, "not_found");
    app.call(Method::GET, "/", None, None).await.expect_error(404, "not_found");
    let wrong = app.call(Method::PUT, "/v1/sessions", Some(&user.token), Some(json!({}))).await;
    let wrong = wrong.expect_error(405, "method_not_allowed");
    let allow = wrong.header("allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("POST") && !allow.contains("PUT"), "{allow}");
    let path = "/v1/sessions/00000000-0000-4000-8000-000000000001/messages";
    let wrong = app.call(Method::DELETE, path, Some(&user.token), None).await.expect_error(405, "method_not_allowed");
    assert!(wrong.header("allow").unwrap().contains("POST"));
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

/// What a client reads names the field and the rule, never a Rust type or a parser's phrase.
#[tokio::test]
async fn error_messages_name_the_field_and_the_rule_not_rust() {
    let app = TestApp::new().await;
    let user = app.user();
    let session = app.session(&user, "words").await;
    let rust =
        ["u8", "u16", "u32", "u64", "usize", "i32", "i64", "f32", "f64", "struct", "invalid digit", "target type"];
    let assert_plain = |message: &str, what: &str| {
        let words: Vec<&str> = message.split(|c: char| !c.is_alphanumeric()).collect();
        for term in rust {
            let named = if term.contains(' ') { message.contains(term) } else { words.contains(&term) };
            assert!(!named, "{what}: {message:?} names {term:?}");
        }
    };
    let messages = format!("/v1/sessions/{session}/messages");
    let cases = [
        ("GET", format!("{messages}?limit=abc"), None, "limit", "whole number"),
        ("GET", format!("{messages}?limit=-3"), None, "limit", ""),
        ("GET", format!("{messages}?after_seq=99999999999999999999999"), None, "after_seq", "out of range"),
        ("GET", format!("{messages}/99999999999999999999999"), None, "seq", "too large"),
        ("GET", format!("{messages}/0"), None, "seq", "1 or more"),
        ("POST", messages.clone(), Some(json!({"role": "user"})), "content", "required"),
        (
            "POST",
            messages.clone(),
            Some(json!({"role": "user", "content": "x", "reply_to": 1e30})),
            "reply_to",
            "out of range",
        ),
        (
            "POST",
            messages.clone(),
            Some(json!({"role": "user", "content": "x", "reply_to": -2})),
            "reply_to",
            "negative",
        ),
        (
            "POST",
            format!("/v1/sessions/{session}/forget-recent"),
            Some(serde_json::from_str(r#"{"count": 99999999999999999999999}"#).unwrap()),
            "count",
            "out of range",
        ),
        ("POST", format!("/v1/sessions/{session}/replies"), Some(json!({"max_tokens": "many"})), "max_tokens", ""),
        (
            "POST",
            format!("/v1/sessions/{session}/replies"),
            Some(json!({"temperature": "hot"})),
            "temperature",
            "a number",
        ),
    ];
    for (method, path, body, field, says) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.call(method, &path, Some(&user.token), body).await.expect_error(400, "invalid_input");
        let message = response.body["message"].as_str().unwrap();
        assert_eq!(response.body["field"], field, "{path}: {}", response.body);
        assert!(message.contains(says), "{path}: {message:?} should say {says:?}");
        assert_plain(message, &path);
    }
}
