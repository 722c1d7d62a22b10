//! CORS: a browser app on an allowed origin can preflight and call every route; any other
//! origin gets no allow header. The lists are the ones the HTTP API and the function URL use.

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use shared::config::CorsOrigins;
use shared::http::{CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS, CORS_EXPOSE_HEADERS, CORS_MAX_AGE_SECS};

use crate::common::{Resp, TestApp};

const APP: &str = "https://app.example.com";

async fn preflight(app: &TestApp, origin: &str, method: &str, path: &str) -> Resp {
    let request = Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization, content-type, idempotency-key")
        .body(Body::empty())
        .unwrap();
    app.send(request).await
}

fn list(resp: &Resp, name: &str) -> Vec<String> {
    resp.header(name).unwrap_or_default().split(',').map(|item| item.trim().to_ascii_lowercase()).collect()
}

#[tokio::test]
async fn an_allowed_origin_preflights_and_reads_what_the_api_sets() {
    let app = TestApp::with_cors(CorsOrigins::parse(&format!("{APP}, https://t.me")).unwrap()).await;
    let calls = app.state.store.dynamodb_calls();
    for (method, path) in
        [("POST", "/v1/sessions"), ("PATCH", "/v1/sessions/00000000-0000-4000-8000-000000000001"), ("DELETE", "/v1/me")]
    {
        let answer = preflight(&app, APP, method, path).await.expect(204);
        assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
        assert!(list(&answer, "access-control-allow-methods").contains(&method.to_ascii_lowercase()), "{method}");
        let headers = list(&answer, "access-control-allow-headers");
        for wanted in ["authorization", "content-type", "idempotency-key"] {
            assert!(headers.contains(&wanted.to_owned()), "{headers:?}");
        }
        assert_eq!(answer.header("access-control-max-age"), Some(CORS_MAX_AGE_SECS.to_string().as_str()));
        assert!(answer.header("vary").unwrap_or_default().to_ascii_lowercase().contains("origin"));
        assert_eq!(answer.header("access-control-allow-credentials"), None, "no cookies: no credentials mode");
    }
    assert_eq!(app.state.store.dynamodb_calls(), calls, "a preflight touches nothing");

    // The request itself, with its bearer token: allowed, and the API's headers readable.
    let user = app.user();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/sessions")
        .header("origin", APP)
        .header("authorization", format!("Bearer {}", user.token))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"title":"from the browser"}"#))
        .unwrap();
    let created = app.send(request).await.expect(201);
    assert_eq!(created.header("access-control-allow-origin"), Some(APP));
    let exposed = list(&created, "access-control-expose-headers");
    for wanted in ["x-request-id", "x-quota-remaining", "ratelimit", "idempotent-replayed", "retry-after"] {
        assert!(exposed.contains(&wanted.to_owned()), "{exposed:?}");
    }
    // Errors are readable too (a browser would otherwise see an opaque network failure).
    let request = Request::builder().uri("/v1/sessions").header("origin", "https://t.me").body(Body::empty()).unwrap();
    let refused = app.send(request).await.expect_error(401, "unauthorized");
    assert_eq!(refused.header("access-control-allow-origin"), Some("https://t.me"));
}

#[tokio::test]
async fn another_origin_gets_no_allow_header() {
    let app = TestApp::with_cors(CorsOrigins::List(vec![APP.to_owned()])).await;
    for origin in ["https://evil.example.com", "https://app.example.com.evil.io", "http://app.example.com"] {
        let answer = preflight(&app, origin, "POST", "/v1/sessions").await;
        assert_eq!(answer.header("access-control-allow-origin"), None, "{origin}");
        let user = app.user();
        let request = Request::builder()
            .uri("/v1/sessions")
            .header("origin", origin)
            .header("authorization", format!("Bearer {}", user.token))
            .body(Body::empty())
            .unwrap();
        let listed = app.send(request).await.expect(200);
        assert_eq!(listed.header("access-control-allow-origin"), None, "{origin}");
    }
    // Without CORS configured nothing is allowed, and OPTIONS is the 405 of any other method.
    let none = TestApp::new().await;
    let answer = preflight(&none, APP, "POST", "/v1/sessions").await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn any_origin_is_a_wildcard_for_development() {
    let app = TestApp::with_cors(CorsOrigins::parse("*").unwrap()).await;
    let answer = preflight(&app, "http://localhost:5173", "GET", "/v1/sessions").await.expect(204);
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn origins_are_checked_at_start() {
    assert_eq!(CorsOrigins::parse("").unwrap(), CorsOrigins::None);
    assert_eq!(
        CorsOrigins::parse("https://A.example.com,http://localhost:5173").unwrap(),
        CorsOrigins::List(vec!["https://a.example.com".into(), "http://localhost:5173".into()])
    );
    for bad in ["https://app.example.com/", "app.example.com", "ftp://x.example", "https://*.example.com", "https://"] {
        assert!(CorsOrigins::parse(bad).is_err(), "{bad}");
    }
}

/// The HTTP API and the function URL in `template.yaml` answer CORS with these same lists (the
/// CDK app deploys that template itself: `scripts/check-infra.sh`).
#[test]
fn the_template_answers_cors_with_the_same_lists() {
    let template = kit::template::document(kit::template::TEMPLATE).unwrap();
    let sorted = |items: &[&str]| {
        let mut items: Vec<String> = items.iter().map(|item| item.to_ascii_lowercase()).collect();
        items.sort();
        items
    };
    let listed = |value: &Value| {
        let mut items: Vec<String> =
            value.as_array().unwrap().iter().map(|item| item.as_str().unwrap().to_ascii_lowercase()).collect();
        items.sort();
        items
    };
    let api = &template["Resources"]["ChatApi"]["Properties"]["CorsConfiguration"];
    let url = &template["Resources"]["ReplyStreamFunction"]["Properties"]["FunctionUrlConfig"]["Cors"];
    for cors in [api, url] {
        assert_eq!(listed(&cors["AllowHeaders"]), sorted(CORS_ALLOW_HEADERS));
        assert_eq!(listed(&cors["ExposeHeaders"]), sorted(CORS_EXPOSE_HEADERS));
        assert_eq!(listed(&cors["AllowMethods"]), sorted(CORS_ALLOW_METHODS));
        assert_eq!(cors["MaxAge"], CORS_MAX_AGE_SECS);
        assert_eq!(cors["AllowOrigins"], serde_json::json!({"Ref": "CorsAllowedOrigins"}));
        assert_eq!(cors["AllowCredentials"], false);
    }
}
