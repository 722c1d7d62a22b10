//! Does history length change what an append or a "latest page" read costs?
//!
//! `cargo run --release -p local --bin bench-history -- [--history 20000] [--ops 300]`
//!
//! Seeds one session with `--history` messages and leaves another empty, then interleaves
//! `--ops` appends (~300-byte messages, alternating user/assistant) and `--ops` reads of the
//! latest 50 messages on each, through the full router (auth, validation, store) against
//! DynamoDB Local (started in memory unless AWS_ENDPOINT_URL_DYNAMODB is set). Prints latency
//! percentiles and DynamoDB round trips per operation as a Markdown table.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use local::token::{DEV_JWT_SECRET, TokenRequest, mint};
use shared::AppState;
use shared::config::{AuthConfig, Config, JwtKey, LimitsConfig, TableNames};
use shared::domain::{Content, MessageType, NewMessage, RateLimits, Role, SessionId, SystemClock, UserId};
use tower::ServiceExt;

struct Args {
    history: u64,
    ops: usize,
}

fn args() -> Result<Args, Box<dyn Error>> {
    let mut parsed = Args { history: 20_000, ops: 300 };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--history", Some(value)) => parsed.history = value.parse()?,
            ("--ops", Some(value)) => parsed.ops = value.parse()?,
            _ => return Err("usage: bench-history [--history N] [--ops N]".into()),
        }
    }
    Ok(parsed)
}

fn text(i: u64) -> String {
    format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(11)).chars().take(300).collect()
}

struct Sample {
    latencies: Vec<Duration>,
    calls: u64,
}

impl Sample {
    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    fn row(&mut self, operation: &str, history: &str) -> String {
        let per_op = self.calls as f64 / self.latencies.len() as f64;
        format!(
            "| {operation} | {history} | {:.2} | {:.2} | {:.2} | {per_op:.2} |",
            self.percentile(0.5),
            self.percentile(0.95),
            self.percentile(0.99)
        )
    }
}

async fn timed(
    router: &Router,
    state: &AppState,
    request: Request<Body>,
    sample: &mut Sample,
) -> Result<(), Box<dyn Error>> {
    let calls = state.store.dynamodb_calls();
    let started = Instant::now();
    let response = router.clone().oneshot(request).await?;
    sample.latencies.push(started.elapsed());
    sample.calls += state.store.dynamodb_calls() - calls;
    if !response.status().is_success() {
        return Err(format!("request failed with {}", response.status()).into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let client = local::dynamodb_local::client(&local::dynamodb_local::endpoint_from_env_or_start()?);
    let tables = TableNames::with_prefix(&format!("bench{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    local::tables::create_tables(&client, &tables).await?;
    let auth = AuthConfig {
        key: JwtKey::Hs256Secret(DEV_JWT_SECRET.as_bytes().to_vec()),
        issuer: None,
        audience: None,
        telegram: None,
    };
    // Quota and rate limits off: this measures the log, not the limits.
    let limits = LimitsConfig {
        daily_quota: u64::MAX / 2,
        rate: RateLimits { append: 0, read: 0, other: 0 },
        ..LimitsConfig::default()
    };
    let state = AppState::new(client, &Config { tables, auth, limits }, Arc::new(SystemClock))?;
    let router = local::app(state.clone());
    let user = UserId::parse("bench-user").ok_or("user id")?;
    let token = mint(
        DEV_JWT_SECRET.as_bytes(),
        &TokenRequest { sub: "bench-user", ttl_secs: 3600, issuer: None, audience: None, admin: false },
    )?;

    let fresh = state.store.create_session(&user, Default::default()).await?.id;
    let long = state.store.create_session(&user, Default::default()).await?.id;
    let seeding = Instant::now();
    let mut seeded = 0;
    while seeded < args.history {
        let batch: Vec<NewMessage> = (seeded..(seeded + 20).min(args.history))
            .map(|i| NewMessage {
                role: if i % 2 == 0 { Role::User } else { Role::Assistant },
                message_type: MessageType::default(),
                content: Content::parse(text(i)).unwrap_or_else(|_| unreachable!("300 bytes fit")),
                payload: None,
                reply_to: None,
                usage: None,
            })
            .collect();
        seeded += batch.len() as u64;
        state.store.append_messages(&user, long, batch, None).await?;
    }
    eprintln!("seeded {seeded} messages in {:.1} s", seeding.elapsed().as_secs_f64());

    let request = |method: &str, session: SessionId, path: &str, body: Option<String>| {
        Request::builder()
            .method(method)
            .uri(format!("/v1/sessions/{session}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, Body::from))
    };
    let new_sample = || Sample { latencies: Vec::with_capacity(args.ops), calls: 0 };
    let (mut append_fresh, mut append_long, mut read_fresh, mut read_long) =
        (new_sample(), new_sample(), new_sample(), new_sample());
    for i in 0..args.ops as u64 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let body = serde_json::json!({"role": role, "content": text(i)}).to_string();
        timed(&router, &state, request("POST", fresh, "/messages", Some(body.clone()))?, &mut append_fresh).await?;
        timed(&router, &state, request("POST", long, "/messages", Some(body))?, &mut append_long).await?;
        timed(&router, &state, request("GET", fresh, "/messages?order=desc&limit=50", None)?, &mut read_fresh).await?;
        timed(&router, &state, request("GET", long, "/messages?order=desc&limit=50", None)?, &mut read_long).await?;
    }
    let (grown, total) =
        (format!("0 to {}", args.ops), format!("{} to {}", args.history, args.history + args.ops as u64));
    #[allow(clippy::print_stdout)]
    {
        println!("| operation | history | p50 ms | p95 ms | p99 ms | DynamoDB calls/op |");
        println!("|---|---|---|---|---|---|");
        println!("{}", append_fresh.row("append", &grown));
        println!("{}", append_long.row("append", &total));
        println!("{}", read_fresh.row("latest 50", &grown));
        println!("{}", read_long.row("latest 50", &total));
    }
    Ok(())
}
