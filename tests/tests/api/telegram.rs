//! Telegram Mini App sign-in: init data signed with the bot token, checked like Telegram does.

use axum::http::Method;
use kit::token::{DEV_JWT_SECRET, dev_auth};
use serde_json::json;
use shared::config::{AuthConfig, TelegramConfig};

use crate::common::TestApp;

const BOT_TOKEN: &str = "123456:TEST-bot-token";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Raw init data as a Mini App sends it: URL-encoded fields plus `hash`.
fn init_data(fields: &[(&str, String)], bot_token: &str) -> String {
    kit::telegram::sign(fields, bot_token)
}

fn user_fields(id: i64, auth_date: i64) -> Vec<(&'static str, String)> {
    vec![
        ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc".to_owned()),
        ("user", json!({"id": id, "first_name": "Ana", "username": "ana", "language_code": "pt"}).to_string()),
        ("auth_date", auth_date.to_string()),
    ]
}

async fn telegram_app() -> TestApp {
    TestApp::with_auth(AuthConfig {
        telegram: Some(TelegramConfig { bot_token: BOT_TOKEN.into(), max_age_secs: 3600 }),
        ..dev_auth()
    })
    .await
}

async fn call_tma(app: &TestApp, method: Method, path: &str, init: &str) -> crate::common::Resp {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("tma {init}"))
        .body(axum::body::Body::from(if path == "/v1/sessions" { "{}" } else { "" }))
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn valid_init_data_signs_in_a_tg_namespaced_user() {
    let app = telegram_app().await;
    let init = init_data(&user_fields(42, now() - 60), BOT_TOKEN);
    let created = call_tma(&app, Method::POST, "/v1/sessions", &init).await.expect(201).body;
    let listed = call_tma(&app, Method::GET, "/v1/sessions", &init).await.expect(200).body;
    assert_eq!(listed["data"][0]["id"], created["id"]);
    // A JWT can never claim the Telegram namespace, and a JWT "42" is somebody else.
    let forged = kit::token::mint(
        DEV_JWT_SECRET.as_bytes(),
        &kit::token::TokenRequest { sub: "tg:42", ttl_secs: 600, issuer: None, audience: None, admin: false },
    )
    .unwrap();
    app.call(Method::GET, "/v1/sessions", Some(&forged), None).await.expect_error(401, "unauthorized");
    let plain = kit::token::mint(
        DEV_JWT_SECRET.as_bytes(),
        &kit::token::TokenRequest { sub: "42", ttl_secs: 600, issuer: None, audience: None, admin: false },
    )
    .unwrap();
    let theirs = app.call(Method::GET, "/v1/sessions", Some(&plain), None).await.expect(200).body;
    assert_eq!(theirs["data"], json!([]));
}

#[tokio::test]
async fn bad_init_data_is_401_and_touches_nothing() {
    let app = telegram_app().await;
    let good = init_data(&user_fields(42, now() - 60), BOT_TOKEN);
    let tampered = good.replace("%22id%22%3A42", "%22id%22%3A43");
    assert_ne!(tampered, good, "the tamper must change the user id");
    let no_user: Vec<_> = user_fields(42, now() - 60).into_iter().filter(|(k, _)| *k != "user").collect();
    let cases = [
        (tampered, "tampered field"),
        (init_data(&user_fields(42, now() - 60), "999:another-bot"), "signed by another bot"),
        (init_data(&user_fields(42, now() - 7200), BOT_TOKEN), "older than the max age"),
        (init_data(&user_fields(42, now() + 3600), BOT_TOKEN), "from the future"),
        (init_data(&no_user, BOT_TOKEN), "missing user"),
        (good.split("&hash=").next().unwrap().to_owned(), "no hash"),
        (format!("{good}&auth_date=1"), "a repeated field"),
        ("garbage".to_owned(), "garbage"),
    ];
    for (init, why) in cases {
        let before = app.state.store.dynamodb_calls();
        let response = call_tma(&app, Method::GET, "/v1/sessions", &init).await;
        assert_eq!(response.status.as_u16(), 401, "{why}: {}", response.body);
        assert_eq!(app.state.store.dynamodb_calls(), before, "{why}");
    }
    call_tma(&app, Method::GET, "/v1/sessions", &good).await.expect(200);
}

#[tokio::test]
async fn without_a_bot_token_tma_is_refused() {
    let app = TestApp::new().await;
    let init = init_data(&user_fields(42, now() - 60), BOT_TOKEN);
    call_tma(&app, Method::GET, "/v1/sessions", &init).await.expect_error(401, "unauthorized");
}

#[tokio::test]
async fn a_telegram_sign_in_fills_the_profile_on_first_use() {
    let app = telegram_app().await;
    let init = init_data(&user_fields(77, now() - 60), BOT_TOKEN);
    let me = call_tma(&app, Method::GET, "/v1/me", &init).await.expect(200).body;
    assert_eq!(me["id"], "tg:77");
    assert_eq!(me["telegram"], json!({"id": 77, "username": "ana", "first_name": "Ana", "language_code": "pt"}));
    assert_eq!(me["language"], "pt", "the sign-in's language until the user picks one");
    assert_eq!(me["is_adult_confirmed"], false);
    let again = call_tma(&app, Method::GET, "/v1/me", &init).await.expect(200).body;
    assert_eq!(again["created_at"], me["created_at"], "created once");
}
