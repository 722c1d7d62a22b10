//! Contention: many writers on one session, and one user's quota raced from several sessions,
//! each through two app instances (two `AppState`s with their own caches and write gates, each
//! behind its own HTTP server) on one DynamoDB Local. Repeated rounds; every round must keep the
//! guarantees (all stored, gapless seqs; exactly the quota accepted) and answer no 503.

use std::time::Duration;

use kit::token::dev_auth;
use serde_json::{Value, json};
use shared::AppState;
use shared::config::{Config, LimitsConfig, TableNames};
use shared::domain::{RateLimits, SystemClock};

use crate::BoxError;
use crate::server::{Answer, Http, http_client, send, token};
use crate::stats::Percentiles;

/// Concurrent appends to one session per round.
pub const SESSION_WRITERS: usize = 32;
/// Concurrent user appends per round of the quota race, over `QUOTA_SESSIONS` sessions.
pub const QUOTA_WRITERS: usize = 100;
pub const QUOTA_SESSIONS: usize = 4;
pub const QUOTA: u64 = 50;

#[derive(Clone, Debug, Default)]
pub struct Scenario {
    pub rounds: usize,
    /// Rounds whose guarantee held (gapless 1..N, or exactly the quota accepted and counted).
    pub rounds_correct: usize,
    pub created: usize,
    pub refused: usize,
    pub unavailable: usize,
    pub other: usize,
    pub latency: Percentiles,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub one_session: Scenario,
    pub quota: Scenario,
}

struct Cluster {
    /// The two instances' base URLs.
    bases: [String; 2],
    http: Http,
}

impl Cluster {
    async fn start(endpoint: &str) -> Result<Self, BoxError> {
        let client = kit::dynamodb_local::client(endpoint);
        let prefix = format!("contention-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let tables = TableNames::with_prefix(&prefix);
        // No streams: nothing here reads them, and DynamoDB Local's emulation of them would slow
        // these writes by what earlier phases wrote (see `kit::tables::Streams::Off`).
        kit::tables::create_tables_with(&client, &tables, kit::tables::Streams::Off).await?;
        let limits = LimitsConfig {
            daily_quota: QUOTA,
            rate: RateLimits { append: 0, read: 0, other: 0, regenerate: 0 },
            ..LimitsConfig::default()
        };
        let config = Config {
            tools: Default::default(),
            tables,
            auth: dev_auth(),
            limits,
            llm: None,
            // Extraction would share the model with the measured replies: it has a phase of its own.
            memory: shared::config::MemoryConfig {
                extraction: shared::config::MemoryExtraction::Manual,
                ..Default::default()
            },
            cors: shared::config::CorsOrigins::None,
            runtime: Default::default(),
        };
        let mut bases = Vec::new();
        for _ in 0..2 {
            let state = AppState::new(client.clone(), &config, std::sync::Arc::new(SystemClock))?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            bases.push(format!("http://{}", listener.local_addr()?));
            let app = dev::app(state, &shared::config::CorsOrigins::None);
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        let bases: [String; 2] = bases.try_into().map_err(|_| "two instances")?;
        Ok(Self { bases, http: http_client() })
    }

    async fn call(
        &self,
        instance: usize,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, BoxError> {
        send(&self.http, &self.bases[instance % 2], token, method, path, body.as_ref(), None).await
    }

    async fn session(&self, token: &str) -> Result<String, BoxError> {
        let created = self.call(0, token, "POST", "/v1/sessions", Some(json!({"title": "race"}))).await?;
        Ok(created.body["id"].as_str().ok_or("session id")?.to_owned())
    }

    /// Fires every `(instance, session)` append at once; returns the answers in task order.
    async fn burst(
        self: &std::sync::Arc<Self>,
        token: &str,
        targets: Vec<(usize, String)>,
    ) -> Result<Vec<Answer>, BoxError> {
        let mut tasks = Vec::new();
        for (i, (instance, session)) in targets.into_iter().enumerate() {
            let (cluster, token) = (self.clone(), token.to_owned());
            tasks.push(tokio::spawn(async move {
                let body = json!({"role": "user", "content": format!("writer {i}")});
                cluster.call(instance, &token, "POST", &format!("/v1/sessions/{session}/messages"), Some(body)).await
            }));
        }
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(task.await??);
        }
        Ok(answers)
    }
}

fn tally(scenario: &mut Scenario, answers: &[Answer], latencies: &mut Vec<Duration>) {
    for answer in answers {
        latencies.push(answer.latency);
        match answer.status {
            201 => scenario.created += 1,
            429 => scenario.refused += 1,
            503 => scenario.unavailable += 1,
            _ => scenario.other += 1,
        }
    }
}

pub async fn run(endpoint: &str, rounds: usize) -> Result<Report, BoxError> {
    let cluster = std::sync::Arc::new(Cluster::start(endpoint).await?);
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut report = Report::default();

    let mut latencies = Vec::new();
    for round in 0..rounds {
        // Under the quota: 32 user messages fit in 50.
        let token = token(&format!("race-{run}-s{round}"))?;
        let session = cluster.session(&token).await?;
        let targets = (0..SESSION_WRITERS).map(|i| (i, session.clone())).collect();
        let answers = cluster.burst(&token, targets).await?;
        tally(&mut report.one_session, &answers, &mut latencies);
        let mut seqs: Vec<u64> = answers.iter().filter_map(|answer| answer.body["seq"].as_u64()).collect();
        seqs.sort_unstable();
        let listed =
            cluster.call(0, &token, "GET", &format!("/v1/sessions/{session}/messages?limit=200"), None).await?;
        let stored: Vec<u64> = listed.body["data"]
            .as_array()
            .map(|data| data.iter().filter_map(|message| message["seq"].as_u64()).collect())
            .unwrap_or_default();
        let expected: Vec<u64> = (1..=SESSION_WRITERS as u64).collect();
        if seqs == expected && stored == expected {
            report.one_session.rounds_correct += 1;
        }
    }
    report.one_session.rounds = rounds;
    report.one_session.latency = Percentiles::new(latencies);

    let mut latencies = Vec::new();
    for round in 0..rounds {
        let token = token(&format!("race-{run}-q{round}"))?;
        let mut sessions = Vec::new();
        for _ in 0..QUOTA_SESSIONS {
            sessions.push(cluster.session(&token).await?);
        }
        let targets = (0..QUOTA_WRITERS).map(|i| (i, sessions[(i / 2) % QUOTA_SESSIONS].clone())).collect();
        let answers = cluster.burst(&token, targets).await?;
        tally(&mut report.quota, &answers, &mut latencies);
        let created = answers.iter().filter(|answer| answer.status == 201).count() as u64;
        let refused = answers.iter().filter(|answer| answer.status == 429).count() as u64;
        let limits = cluster.call(1, &token, "GET", "/v1/limits", None).await?;
        let mut stored = 0;
        for session in &sessions {
            let got = cluster.call(0, &token, "GET", &format!("/v1/sessions/{session}"), None).await?;
            stored += got.body["message_count"].as_u64().unwrap_or(0);
        }
        if created == QUOTA
            && refused == QUOTA_WRITERS as u64 - QUOTA
            && limits.body["messages_limit"]["used"] == QUOTA
            && stored == QUOTA
        {
            report.quota.rounds_correct += 1;
        }
    }
    report.quota.rounds = rounds;
    report.quota.latency = Percentiles::new(latencies);
    Ok(report)
}
