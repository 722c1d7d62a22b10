//! What the dev server adds for the web app: its files at `/`, the dev sign-in, the demo catalog.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use shared::config::CorsOrigins;

use crate::common::{TestApp, User};

/// A built app's shape in a directory of the test's own.
fn web_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("web-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><title>Chat</title>").unwrap();
    std::fs::write(dir.join("config.js"), "window.CHAT_CONFIG = {};").unwrap();
    std::fs::write(dir.join("assets/app.js"), "export {};").unwrap();
    dir
}

async fn dev_server(sign_in: bool) -> (TestApp, PathBuf) {
    let app = TestApp::new().await;
    let dir = web_dir();
    let sign_in = sign_in.then(|| dev::web::DevSignIn {
        secret: kit::token::DEV_JWT_SECRET.as_bytes().to_vec(),
        issuer: None,
        audience: None,
    });
    let router = dev::dev_app(app.state.clone(), &CorsOrigins::None, Arc::default(), dev::web::router(&dir, sign_in));
    (TestApp { router, ..app }, dir)
}

#[tokio::test]
async fn the_app_is_served_beside_the_api() {
    let (app, dir) = dev_server(false).await;
    let get = |path: &'static str| Request::builder().uri(path).body(Body::empty()).unwrap();
    let (status, headers, body) = app.send_raw(get("/")).await;
    assert_eq!(status, 200);
    assert_eq!(body, "<!doctype html><title>Chat</title>");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let (status, headers, body) = app.send_raw(get("/assets/app.js")).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "export {};"));
    assert!(headers["content-type"].to_str().unwrap().contains("javascript"));
    let (status, _, _) = app.send_raw(get("/assets/missing.js")).await;
    assert_eq!(status, 404);
    // The API is untouched, and without a dev secret there is no dev sign-in.
    app.call(Method::GET, "/v1/sessions", None, None).await.expect_error(401, "unauthorized");
    app.call(Method::POST, "/dev/token", None, Some(json!({"user_id": "alice"}))).await.expect_error(404, "not_found");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dev_sign_in_signs_a_token_the_api_accepts() {
    let (app, dir) = dev_server(true).await;
    let answer = app.call(Method::POST, "/dev/token", None, Some(json!({"user_id": "alice_1"}))).await.expect(200);
    assert_eq!(answer.body["expires_in"], 86_400);
    let alice = User { id: "alice_1".into(), token: answer.body["token"].as_str().unwrap().to_owned() };
    assert_eq!(app.get(&alice, "/v1/me").await.expect(200).body["id"], "alice_1");

    // Never a Telegram user, an empty or odd id, or a body that is not the one field.
    for body in [
        json!({"user_id": "tg:42"}),
        json!({"user_id": ""}),
        json!({"user_id": "a b"}),
        json!({"user_id": "x".repeat(65)}),
    ] {
        let refused = app.call(Method::POST, "/dev/token", None, Some(body)).await.expect_error(400, "invalid_input");
        assert_eq!(refused.body["field"], "user_id");
    }
    let odd = app.call(Method::POST, "/dev/token", None, Some(json!({"user_id": "bob", "admin": true}))).await;
    assert_eq!(odd.expect_error(400, "invalid_input").body["field"], "admin");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_demo_catalog_is_added_once() {
    let app = TestApp::new().await;
    assert_eq!(dev::web::seed_characters(&app.state.catalog).await.unwrap(), 5);
    assert_eq!(dev::web::seed_characters(&app.state.catalog).await.unwrap(), 0);
    let user = app.user();
    let page = app.get(&user, "/v1/characters?sort=new&limit=50").await.expect(200).body;
    assert_eq!(page["total"], 5);
    let gated = |id: &str| {
        let character = page["data"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
        (character["access_type"].clone(), character["content_rating"].clone())
    };
    assert_eq!(gated("luna"), (json!("free"), json!("sfw")));
    assert_eq!(gated("sage"), (json!("premium"), json!("sfw")));
    assert_eq!(gated("noir"), (json!("free"), json!("nsfw")));
    // A chat with a demo character opens with its greeting.
    let chat = app.get(&user, "/v1/characters/luna/session").await.expect(200).body;
    let id = chat["id"].as_str().unwrap();
    let messages = app.get(&user, &format!("/v1/sessions/{id}/messages")).await.expect(200).body;
    assert!(messages["data"][0]["content"].as_str().unwrap().starts_with("Hi, I'm Luna!"));
}
