//! Authentication: every rejection is 401 `unauthorized`, and nothing is read or written first.

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use kit::token::{DEV_JWT_SECRET, dev_auth};
use serde_json::{Value, json};
use shared::auth::Authenticator;
use shared::config::{AuthConfig, JwtKey};

use crate::common::TestApp;

pub(crate) const RS_PRIVATE: &str = include_str!("../../fixtures/rs256-test-private.pem");
pub(crate) const RS_PUBLIC: &str = include_str!("../../fixtures/rs256-test-public.pem");
pub(crate) const RS_OTHER_PRIVATE: &str = include_str!("../../fixtures/rs256-other-private.pem");

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).unwrap()
}

pub(crate) fn rs256(claims: &Value, private_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

pub(crate) fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

fn valid_claims() -> Value {
    json!({"sub": "auth-user", "exp": now() + 600})
}

/// Sends a token to a write route and a read route: each must be 401 and cost no DynamoDB call.
async fn assert_rejected(app: &TestApp, authorization: Option<String>, why: &str) {
    for (method, path, body) in [
        (Method::POST, "/v1/sessions", Some(json!({"title": "x"}))),
        (Method::GET, "/v1/sessions", None),
        (
            Method::POST,
            "/v1/sessions/00000000-0000-4000-8000-000000000001/messages",
            Some(json!({"role": "user", "content": "x"})),
        ),
    ] {
        let calls_before = app.state.store.dynamodb_calls();
        let mut request = axum::http::Request::builder().method(method.clone()).uri(path);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let body = body.map_or(axum::body::Body::empty(), |b| axum::body::Body::from(b.to_string()));
        let response = app.send(request.body(body).unwrap()).await;
        let response = response.expect_error(401, "unauthorized");
        assert!(!response.body.to_string().contains("auth-user"), "{why}");
        let challenge = response.header("www-authenticate").unwrap_or_else(|| panic!("{why}: no WWW-Authenticate"));
        assert!(challenge.starts_with("Bearer realm=\"chat-api\""), "{why}: {challenge}");
        let message = response.body["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("no credentials") || challenge.contains(message),
            "{why}: the challenge says why: {challenge}"
        );
        assert_eq!(app.state.store.dynamodb_calls(), calls_before, "{why}: {method} {path} touched DynamoDB");
    }
}

#[tokio::test]
async fn hs256_rejections_are_401() {
    let app = TestApp::new().await;
    let secret = DEV_JWT_SECRET.as_bytes();
    let good = hs256(&valid_claims(), secret);
    app.call(Method::GET, "/v1/sessions", Some(&good), None).await.expect(200);

    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "no header"),
        (Some("Bearer".into()), "empty bearer"),
        (Some("Bearer garbage".into()), "garbage"),
        (Some(format!("Basic {good}")), "wrong scheme"),
        (Some(format!("Bearer {}", unsigned(&valid_claims()))), "alg none"),
        (Some(format!("Bearer {}", hs256(&valid_claims(), b"another-secret-that-is-32-bytes-long!"))), "wrong key"),
        (Some(format!("Bearer {}x", &good[..good.len() - 1])), "tampered signature"),
        (Some(format!("Bearer {}", hs256(&json!({"sub": "auth-user", "exp": now() - 120}), secret))), "expired"),
        (
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": "auth-user", "exp": now() + 600, "nbf": now() + 300}), secret)
            )),
            "not yet valid",
        ),
        (Some(format!("Bearer {}", hs256(&json!({"sub": "auth-user"}), secret))), "no exp"),
        (Some(format!("Bearer {}", hs256(&json!({"exp": now() + 600}), secret))), "no sub"),
        (Some(format!("Bearer {}", hs256(&json!({"sub": "", "exp": now() + 600}), secret))), "empty sub"),
        (Some(format!("Bearer {}", hs256(&json!({"sub": 42, "exp": now() + 600}), secret))), "numeric sub"),
        (Some(format!("Bearer {}", hs256(&json!({"sub": " ", "exp": now() + 600}), secret))), "blank sub"),
        (Some(format!("Bearer {}", hs256(&json!({"sub": " padded", "exp": now() + 600}), secret))), "padded sub"),
        (Some(format!("Bearer {}", rs256(&valid_claims(), RS_PRIVATE))), "RS256 token to an HS256 server"),
    ];
    for (authorization, why) in cases {
        assert_rejected(&app, authorization, why).await;
    }
}

#[tokio::test]
async fn rs256_accepts_its_key_and_rejects_confusion() {
    let auth =
        AuthConfig { key: JwtKey::PublicKeyPem(RS_PUBLIC.to_owned()), issuer: None, audience: None, telegram: None };
    let app = TestApp::with_auth(auth).await;
    let good = rs256(&valid_claims(), RS_PRIVATE);
    let created = app.call(Method::POST, "/v1/sessions", Some(&good), Some(json!({}))).await.expect(201);
    assert_eq!(created.body["title"], "New chat");

    // Algorithm confusion: an HS256 token "signed" with the server's public key as the secret.
    let confused = hs256(&valid_claims(), RS_PUBLIC.as_bytes());
    assert_rejected(&app, Some(format!("Bearer {confused}")), "HS256 with the public key").await;
    let other = rs256(&valid_claims(), RS_OTHER_PRIVATE);
    assert_rejected(&app, Some(format!("Bearer {other}")), "RS256 with another key").await;
    assert_rejected(&app, Some(format!("Bearer {}", unsigned(&valid_claims()))), "alg none").await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let auth =
        AuthConfig { issuer: Some("https://issuer.example".into()), audience: Some("chat-api".into()), ..dev_auth() };
    let app = TestApp::with_auth(auth).await;
    let secret = DEV_JWT_SECRET.as_bytes();
    let claims = |iss: &str, aud: &str| json!({"sub": "auth-user", "exp": now() + 600, "iss": iss, "aud": aud});
    let good = hs256(&claims("https://issuer.example", "chat-api"), secret);
    app.call(Method::GET, "/v1/sessions", Some(&good), None).await.expect(200);
    for (token, why) in [
        (hs256(&claims("https://evil.example", "chat-api"), secret), "wrong iss"),
        (hs256(&claims("https://issuer.example", "other-api"), secret), "wrong aud"),
        (hs256(&valid_claims(), secret), "no iss/aud"),
    ] {
        assert_rejected(&app, Some(format!("Bearer {token}")), why).await;
    }
}

/// Why a request was refused, as its 401 says it (message and challenge).
async fn refusal(app: &TestApp, authorization: &str) -> (String, String) {
    let request = axum::http::Request::builder().uri("/v1/sessions").header("authorization", authorization);
    let response = app.send(request.body(axum::body::Body::empty()).unwrap()).await.expect_error(401, "unauthorized");
    let challenge = response.header("www-authenticate").unwrap().to_owned();
    (response.body["message"].as_str().unwrap().to_owned(), challenge)
}

#[tokio::test]
async fn a_401_says_why_in_its_message_and_challenge() {
    let app = TestApp::new().await;
    let secret = DEV_JWT_SECRET.as_bytes();
    let (message, challenge) = refusal(&app, "").await;
    assert!(message.contains("no credentials"), "{message}");
    assert_eq!(challenge, "Bearer realm=\"chat-api\"", "no error code without credentials (RFC 6750 §3.1)");
    let expired = hs256(&json!({"sub": "auth-user", "exp": now() - 120}), secret);
    let (message, challenge) = refusal(&app, &format!("Bearer {expired}")).await;
    assert_eq!(message, "the token has expired");
    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains("expired"), "{challenge}");
    let (message, _) = refusal(&app, "Basic dXNlcjpwYXNz").await;
    assert!(message.contains("scheme"), "{message}");
    let wrong_key = hs256(&valid_claims(), b"another-secret-that-is-32-bytes-long!");
    assert!(refusal(&app, &format!("Bearer {wrong_key}")).await.0.contains("signature"));
    let (message, challenge) = refusal(&app, "tma query_id=1&hash=00").await;
    assert!(message.contains("Telegram"), "{message}");
    assert!(challenge.starts_with("tma "), "{challenge}");
}

#[tokio::test]
async fn schemes_are_case_insensitive() {
    let app = TestApp::new().await;
    let good = hs256(&valid_claims(), DEV_JWT_SECRET.as_bytes());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let request =
            axum::http::Request::builder().uri("/v1/sessions").header("authorization", format!("{scheme} {good}"));
        app.send(request.body(axum::body::Body::empty()).unwrap()).await.expect(200);
    }
}

#[tokio::test]
async fn array_and_unknown_claims_are_ignored_but_admin_shapes_count() {
    let app = TestApp::new().await;
    let secret = DEV_JWT_SECRET.as_bytes();
    let token = |extra: Value| {
        let mut claims = json!({"sub": "claims-user", "exp": now() + 600});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        hs256(&claims, secret)
    };
    let admin_route = "/v1/admin/users/claims-user/limits";
    for extra in [
        json!({"scope": ["read", "write"]}),
        json!({"role": ["user"]}),
        json!({"roles": {"nested": true}, "groups": [1, 2], "amr": ["pwd"], "email_verified": true}),
        json!({"scope": 42}),
    ] {
        let token = token(extra.clone());
        app.call(Method::GET, "/v1/sessions", Some(&token), None).await.expect(200);
        app.call(Method::GET, admin_route, Some(&token), None).await.expect_error(403, "forbidden");
    }
    for extra in [
        json!({"role": "admin"}),
        json!({"role": ["user", "admin"]}),
        json!({"roles": ["admin"]}),
        json!({"scope": "read admin"}),
        json!({"scope": ["admin"]}),
        json!({"scp": "admin"}),
    ] {
        let token = token(extra.clone());
        app.call(Method::GET, admin_route, Some(&token), None).await.expect(200);
    }
    // Not admin: a substring, or a scope-style list in a role.
    for extra in [json!({"role": "administrator"}), json!({"role": "user admin"}), json!({"scope": "superadmin"})] {
        let token = token(extra.clone());
        app.call(Method::GET, admin_route, Some(&token), None).await.expect_error(403, "forbidden");
    }
}

#[tokio::test]
async fn ec_and_ed25519_public_keys_verify_their_algorithms() {
    let es_private = include_str!("../../fixtures/es256-test-private.pem");
    let es_public = include_str!("../../fixtures/es256-test-public.pem");
    let auth = AuthConfig { key: JwtKey::PublicKeyPem(es_public.into()), issuer: None, audience: None, telegram: None };
    let app = TestApp::with_auth(auth).await;
    let key = EncodingKey::from_ec_pem(es_private.as_bytes()).unwrap();
    let good = encode(&Header::new(Algorithm::ES256), &valid_claims(), &key).unwrap();
    app.call(Method::GET, "/v1/sessions", Some(&good), None).await.expect(200);
    assert_rejected(&app, Some(format!("Bearer {}", rs256(&valid_claims(), RS_PRIVATE))), "RS256 to an EC key").await;
}

#[test]
fn a_private_key_in_jwt_public_key_is_an_init_error() {
    for private in [RS_PRIVATE, include_str!("../../fixtures/es256-test-private.pem")] {
        let auth =
            AuthConfig { key: JwtKey::PublicKeyPem(private.into()), issuer: None, audience: None, telegram: None };
        let error = Authenticator::new(&auth).err().expect("a private key is refused at start");
        assert!(error.to_string().contains("private key"), "{error}");
    }
}

#[test]
fn weak_or_malformed_keys_are_init_errors() {
    let short = AuthConfig { key: JwtKey::hs256(b"short".as_slice()), issuer: None, audience: None, telegram: None };
    assert!(Authenticator::new(&short).is_err());
    let not_pem =
        AuthConfig { key: JwtKey::PublicKeyPem("not a key".into()), issuer: None, audience: None, telegram: None };
    assert!(Authenticator::new(&not_pem).is_err());
    let bad_pem = AuthConfig {
        key: JwtKey::PublicKeyPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into()),
        issuer: None,
        audience: None,
        telegram: None,
    };
    assert!(Authenticator::new(&bad_pem).is_err());
    let debug = format!("{:?}", JwtKey::hs256(DEV_JWT_SECRET.as_bytes()));
    assert!(!debug.contains(DEV_JWT_SECRET), "secrets never reach Debug output");
}
