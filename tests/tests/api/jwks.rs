//! Tokens verified against an identity provider's JWKS, served here by the test itself:
//! every algorithm the keys allow, rotation, the once-a-minute refetch, and an unreachable set.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use shared::config::{AuthConfig, JwtKey};
use shared::domain::{ManualClock, Timestamp};

use crate::auth::{RS_OTHER_PRIVATE, RS_PRIVATE, now};
use crate::common::TestApp;

const ES_PRIVATE: &str = include_str!("../../fixtures/es256-test-private.pem");
const ED_PRIVATE: &str = include_str!("../../fixtures/ed25519-test-private.pem");

/// A signing key of the "identity provider".
struct Signer {
    kid: &'static str,
    key: EncodingKey,
    /// The algorithm the JWK names; `None` publishes the key without `alg`.
    alg: Option<Algorithm>,
    family: Algorithm,
}

impl Signer {
    fn rsa(kid: &'static str, pem: &str, alg: Option<Algorithm>) -> Self {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        Self { kid, key, alg, family: Algorithm::RS256 }
    }

    fn ec(kid: &'static str) -> Self {
        let key = EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap();
        Self { kid, key, alg: Some(Algorithm::ES256), family: Algorithm::ES256 }
    }

    fn ed(kid: &'static str) -> Self {
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        Self { kid, key, alg: None, family: Algorithm::EdDSA }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg.unwrap_or(self.family)).unwrap();
        jwk.common.key_algorithm = self.alg.map(Into::into);
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }

    fn token(&self, alg: Algorithm, sub: &str) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.to_owned());
        encode(&header, &json!({"sub": sub, "exp": now() + 600}), &self.key).unwrap()
    }
}

/// The provider's JWKS endpoint: the set it serves can change; it counts its fetches.
#[derive(Clone)]
struct Provider {
    url: String,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(signers: &[&Signer]) -> Self {
        let set = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let routes = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get({
                let (set, fetches) = (set.clone(), fetches.clone());
                move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let set = set.lock().unwrap().clone();
                    // Null: the provider is down.
                    let status = if set.is_null() { 503 } else { 200 };
                    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(set))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let provider = Self { url, set, fetches };
        provider.publish(signers);
        provider
    }

    fn publish(&self, signers: &[&Signer]) {
        let set = JwkSet { keys: signers.iter().map(|signer| signer.jwk()).collect() };
        *self.set.lock().unwrap() = serde_json::to_value(set).unwrap();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn jwks_auth(url: &str) -> AuthConfig {
    AuthConfig { key: JwtKey::JwksUrl(url.to_owned()), issuer: None, audience: None, telegram: None }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_seconds(now()).unwrap()))
}

async fn sessions(app: &TestApp, token: &str) -> crate::common::Resp {
    app.call(Method::GET, "/v1/sessions", Some(token), None).await
}

#[tokio::test]
async fn every_signing_algorithm_verifies_as_its_key_allows() {
    let rsa_any = Signer::rsa("rsa-any", RS_PRIVATE, None);
    let ps = Signer::rsa("rsa-ps256", RS_OTHER_PRIVATE, Some(Algorithm::PS256));
    let (ec, ed) = (Signer::ec("ec"), Signer::ed("ed"));
    let provider = Provider::start(&[&rsa_any, &ps, &ec, &ed]).await;
    let app = TestApp::with_auth(jwks_auth(&provider.url)).await;

    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS512] {
        sessions(&app, &rsa_any.token(alg, "jwks-user")).await.expect(200);
    }
    sessions(&app, &ps.token(Algorithm::PS256, "jwks-user")).await.expect(200);
    sessions(&app, &ec.token(Algorithm::ES256, "jwks-user")).await.expect(200);
    sessions(&app, &ed.token(Algorithm::EdDSA, "jwks-user")).await.expect(200);
    assert_eq!(provider.fetches(), 1, "the set is fetched once and cached");

    // A key published for PS256 verifies nothing else; HS256 "signed" with a public key, nothing.
    let refused = sessions(&app, &ps.token(Algorithm::RS256, "jwks-user")).await.expect_error(401, "unauthorized");
    assert!(refused.body["message"].as_str().unwrap().contains("algorithm"), "{}", refused.body);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-any".into());
    let secret = EncodingKey::from_secret(serde_json::to_string(&rsa_any.jwk()).unwrap().as_bytes());
    let confused = encode(&header, &json!({"sub": "jwks-user", "exp": now() + 600}), &secret).unwrap();
    sessions(&app, &confused).await.expect_error(401, "unauthorized");
    assert_eq!(provider.fetches(), 1, "a known kid with a wrong alg does not refetch");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_at_most_once_a_minute() {
    let (old, new) = (Signer::rsa("2026-11", RS_PRIVATE, Some(Algorithm::RS256)), Signer::ec("2026-12"));
    let provider = Provider::start(&[&old]).await;
    let clock = clock();
    let app = TestApp::with_auth_and_clock(jwks_auth(&provider.url), clock.clone()).await;
    sessions(&app, &old.token(Algorithm::RS256, "rotating-user")).await.expect(200);
    assert_eq!(provider.fetches(), 1);

    // The provider rotates: the first token with the new kid fetches the set again.
    provider.publish(&[&old, &new]);
    clock.advance(Duration::from_secs(61));
    sessions(&app, &new.token(Algorithm::ES256, "rotating-user")).await.expect(200);
    assert_eq!(provider.fetches(), 2);

    // Unknown kids within the minute after: 401 with no further fetch, however many arrive.
    let stranger = Signer::rsa("forged", RS_OTHER_PRIVATE, None);
    for _ in 0..5 {
        let refused = sessions(&app, &stranger.token(Algorithm::RS256, "rotating-user")).await;
        let refused = refused.expect_error(401, "unauthorized");
        assert!(refused.header("www-authenticate").unwrap().contains("invalid_token"));
    }
    assert_eq!(provider.fetches(), 2, "an unknown kid refetches at most once a minute");
    clock.advance(Duration::from_secs(61));
    sessions(&app, &stranger.token(Algorithm::RS256, "rotating-user")).await.expect_error(401, "unauthorized");
    assert_eq!(provider.fetches(), 3, "a minute later it may fetch again");

    // The old key withdrawn: still cached for the hour, then the set is renewed and it stops.
    provider.publish(&[&new]);
    sessions(&app, &old.token(Algorithm::RS256, "rotating-user")).await.expect(200);
    clock.advance(Duration::from_secs(3601));
    sessions(&app, &new.token(Algorithm::ES256, "rotating-user")).await.expect(200);
    assert_eq!(provider.fetches(), 4, "an hour-old set is renewed by the next request");
    sessions(&app, &old.token(Algorithm::RS256, "rotating-user")).await.expect_error(401, "unauthorized");
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_for_the_request_and_recovers() {
    let signer = Signer::rsa("k1", RS_PRIVATE, None);
    let token = signer.token(Algorithm::RS256, "outage-user");

    // Nothing listening at start: init logs it and goes on; requests are 503, not a crash.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap())
    };
    let app = TestApp::with_auth(jwks_auth(&dead)).await;
    app.state.auth.prefetch(app.state.clock.now()).await;
    let response = sessions(&app, &token).await.expect_error(503, "service_unavailable");
    assert_eq!(response.header("retry-after"), Some("5"));
    assert!(response.body["message"].as_str().unwrap().contains("identity provider"), "{}", response.body);

    // A provider that is down (503), then back: requests in the back-off are 503 without a
    // fetch each; the first after it fetches and passes.
    let provider = Provider::start(&[&signer]).await;
    *provider.set.lock().unwrap() = Value::Null;
    let clock = clock();
    let app = TestApp::with_auth_and_clock(jwks_auth(&provider.url), clock.clone()).await;
    for _ in 0..3 {
        sessions(&app, &token).await.expect_error(503, "service_unavailable");
    }
    assert_eq!(provider.fetches(), 1, "failed fetches back off");
    provider.publish(&[&signer]);
    clock.advance(Duration::from_secs(6));
    sessions(&app, &token).await.expect(200);
    assert_eq!(provider.fetches(), 2);

    // A provider answering something that is not a key set is as good as down.
    *provider.set.lock().unwrap() = json!({"not": "a key set"});
    let garbled = TestApp::with_auth(jwks_auth(&provider.url)).await;
    sessions(&garbled, &token).await.expect_error(503, "service_unavailable");
}
