//! The data lifecycle and identity: what a token's verification costs per algorithm, and how fast
//! a user's data is exported, swept for retention and erased, through the local HTTP server
//! against DynamoDB Local.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use shared::auth::Authenticator;
use shared::config::{AuthConfig, JwtKey};
use shared::domain::Timestamp;

use crate::BoxError;
use crate::server::{Api, token};
use crate::stats::Percentiles;

const RS_PRIVATE: &str = include_str!("../../tests/fixtures/rs256-test-private.pem");
const RS_PUBLIC: &str = include_str!("../../tests/fixtures/rs256-test-public.pem");
const ES_PRIVATE: &str = include_str!("../../tests/fixtures/es256-test-private.pem");
const ES_PUBLIC: &str = include_str!("../../tests/fixtures/es256-test-public.pem");

pub struct Report {
    /// (algorithm, verification time per token).
    pub verify: Vec<(&'static str, Percentiles)>,
    pub sessions: usize,
    pub messages_per_session: usize,
    pub export: Timed,
    pub sweep: Timed,
    pub erase: Timed,
}

/// A whole operation over one user's data: how long, how many calls or passes, how many items.
pub struct Timed {
    pub elapsed: Duration,
    pub calls: usize,
    pub items: u64,
}

impl Timed {
    fn items_per_second(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(api: &Api, sessions: usize, messages_per_session: usize, tokens: usize) -> Result<Report, BoxError> {
    let verify = verification(tokens).await?;
    let user = format!("lifecycle-{}", uuid::Uuid::new_v4().simple());
    let bearer = token(&user)?;
    let mut ids = Vec::with_capacity(sessions);
    for index in 0..sessions {
        let created = api.call(&bearer, "POST", "/v1/sessions", Some(&json!({"title": format!("s{index}")}))).await?;
        let id = created.body["id"].as_str().ok_or("session id")?.to_owned();
        for batch in 0..messages_per_session.div_ceil(20) {
            let count = 20.min(messages_per_session - batch * 20);
            let messages: Vec<_> = (0..count)
                .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("message {batch}-{i} with some text in it")}))
                .collect();
            let path = format!("/v1/sessions/{id}/messages/batch");
            api.call_keyed(&bearer, "POST", &path, Some(&json!({"messages": messages})), Some(&format!("b{batch}")))
                .await?;
        }
        let memory = json!({"content": format!("fact {index}"), "memory_type": "fact", "session_id": id});
        api.call(&bearer, "POST", "/v1/memories", Some(&memory)).await?;
        ids.push(id);
    }

    let started = Instant::now();
    let (mut pages, mut exported) = (0, 0_u64);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/me/export?cursor={cursor}"),
            None => "/v1/me/export".to_owned(),
        };
        let page = api.call(&bearer, "GET", &path, None).await?.body;
        pages += 1;
        for part in ["sessions", "messages", "memories"] {
            exported += page[part].as_array().map_or(0, Vec::len) as u64;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let export = Timed { elapsed: started.elapsed(), calls: pages, items: exported };

    for id in &ids {
        api.call(&bearer, "POST", &format!("/v1/sessions/{id}/reset"), Some(&json!({}))).await?;
    }
    let started = Instant::now();
    let chores = api.state.store.run_chores(Duration::from_secs(600)).await?;
    let sweep = Timed {
        elapsed: started.elapsed(),
        calls: chores.sessions_swept as usize,
        items: chores.messages_expired + chores.memories_expired,
    };

    let started = Instant::now();
    let (mut passes, mut erased) = (0, 0_u64);
    loop {
        let answer = api.call(&bearer, "DELETE", "/v1/me", None).await?.body;
        passes += 1;
        let counts = &answer["erased"];
        erased += ["sessions", "messages", "idempotency_records", "memories", "limits"]
            .iter()
            .map(|kind| counts[kind].as_u64().unwrap_or(0))
            .sum::<u64>();
        if answer["complete"] == true {
            break;
        }
    }
    let erase = Timed { elapsed: started.elapsed(), calls: passes, items: erased };
    api.discard_served();
    Ok(Report { verify, sessions, messages_per_session, export, sweep, erase })
}

/// Verification of one token, per algorithm, by the authenticator the functions use.
async fn verification(tokens: usize) -> Result<Vec<(&'static str, Percentiles)>, BoxError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let now = Timestamp::from_unix_seconds(time::OffsetDateTime::now_utc().unix_timestamp()).ok_or("clock")?;
    let claims = json!({"sub": "bench-user", "exp": now.unix_seconds() + 3600});
    let cases: Vec<(&'static str, JwtKey, Algorithm, EncodingKey)> = vec![
        (
            "HS256",
            JwtKey::hs256(kit::token::DEV_JWT_SECRET.as_bytes()),
            Algorithm::HS256,
            EncodingKey::from_secret(kit::token::DEV_JWT_SECRET.as_bytes()),
        ),
        (
            "RS256",
            JwtKey::PublicKeyPem(RS_PUBLIC.into()),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes())?,
        ),
        (
            "PS256",
            JwtKey::PublicKeyPem(RS_PUBLIC.into()),
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes())?,
        ),
        (
            "ES256",
            JwtKey::PublicKeyPem(ES_PUBLIC.into()),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes())?,
        ),
    ];
    let mut results = Vec::new();
    for (name, key, algorithm, signing) in cases {
        let authenticator = Authenticator::new(&AuthConfig { key, issuer: None, audience: None, telegram: None })?;
        let header = format!("Bearer {}", encode(&Header::new(algorithm), &claims, &signing)?);
        let mut samples = Vec::with_capacity(tokens);
        for _ in 0..tokens {
            let started = Instant::now();
            authenticator.authenticate(Some(&header), now).await?;
            samples.push(started.elapsed());
        }
        results.push((name, Percentiles::new(samples)));
    }
    Ok(results)
}

pub fn markdown(report: &Report, out: &mut String) {
    let _ = writeln!(out, "## Identity and the data lifecycle\n");
    let _ = writeln!(
        out,
        "Verifying one bearer token (`Authenticator::authenticate`: header, key by `kid` and algorithm, signature, claims), per algorithm:\n"
    );
    let _ = writeln!(out, "| algorithm | p50 (µs) | p99 (µs) |\n|---|---|---|");
    for (name, samples) in &report.verify {
        let _ = writeln!(out, "| {name} | {:.0} | {:.0} |", samples.at(50.0) * 1000.0, samples.at(99.0) * 1000.0);
    }
    let _ = writeln!(
        out,
        "\nOne user with {} sessions × {} messages (appended in keyed batches of 20) and a memory per session, through the local server:\n",
        report.sessions, report.messages_per_session
    );
    let _ = writeln!(out, "| operation | time (ms) | calls | items | items/s |\n|---|---|---|---|---|");
    for (name, timed) in [
        ("`GET /v1/me/export`, every page", &report.export),
        ("the job's retention sweep after a reset of every session", &report.sweep),
        ("`DELETE /v1/me` until complete", &report.erase),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {} | {} | {:.0} |",
            timed.elapsed.as_secs_f64() * 1000.0,
            timed.calls,
            timed.items,
            timed.items_per_second()
        );
    }
    let _ = writeln!(out);
}
