//! The real dev server binary (what `scripts/dev.sh` runs), started on its own tables against
//! DynamoDB Local and the local model; and what it turns on by itself for a local user.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::token::{DEV_JWT_SECRET, TokenRequest, mint};
use serde_json::{Value, json};
use shared::config::TableNames;

use crate::common::{endpoint, local_model_url};

/// The lease the servers run with: short, so the crash test waits little.
const LEASE_SECS: u64 = 3;

/// The dev server binary, built if it is missing or stale (a no-op when `cargo test` built it).
pub fn dev_server_binary() -> PathBuf {
    let root = kit::dynamodb_local::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let built = Command::new(cargo)
        .args(["build", "-q", "-p", "dev", "--bin", "dev-server"])
        .current_dir(&root)
        .status()
        .expect("run cargo build");
    assert!(built.success(), "cargo build -p dev --bin dev-server failed");
    // The test binary is `<target>/debug/deps/api-…`; the server sits in `<target>/debug`.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/debug").join("dev-server")
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts the dev server on `tables`, waiting until it answers.
    pub async fn start(binary: &PathBuf, tables: &TableNames) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a port").port();
        let mut command = Command::new(binary);
        command
            .envs(tables.env())
            .env("PORT", port.to_string())
            .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint())
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("JWT_SECRET", DEV_JWT_SECRET)
            .env("LLM_BASE_URL", local_model_url())
            .env("LLM_MODEL", kit::local_model::MODEL_ALIAS)
            .env("LLM_CONTEXT_TOKENS", "2048")
            .env("LLM_MAX_TOKENS", "400")
            .env("REPLY_LEASE_SECS", LEASE_SECS.to_string())
            .env("RUST_LOG", "warn")
            // What the dev server turns on by itself when these are not set (`dev::defaults`).
            .env_remove("TELEGRAM_BOT_TOKEN")
            .env_remove("MODEL_PRICES")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("start the dev server");
        let server = Self { child, base: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(format!("{}/openapi.json", server.base)).await
                && response.status() == 200
            {
                return server;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the dev server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: nothing of the process runs after it.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9 the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn call(
    client: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Telegram sign-in works on the server `dev.sh` starts, with init data from the documented
/// command; a reply from the local model costs what its dev prices say.
#[tokio::test]
async fn the_dev_server_signs_telegram_users_in_and_prices_the_local_model() {
    let binary = dev_server_binary();
    let tables = TableNames::with_prefix(&format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let server = Server::start(&binary, &tables).await;
    let client = reqwest::Client::new();

    let telegram_id = 1_000 + u64::from(uuid::Uuid::new_v4().as_u128() as u32);
    let root = kit::dynamodb_local::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let minted = Command::new(cargo)
        .args([
            "run",
            "-q",
            "-p",
            "kit",
            "--bin",
            "mint-init-data",
            "--",
            &telegram_id.to_string(),
            "--username",
            "dev",
        ])
        .env_remove("TELEGRAM_BOT_TOKEN")
        .current_dir(&root)
        .output()
        .expect("run mint-init-data");
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let init_data = String::from_utf8(minted.stdout).expect("text").trim().to_owned();
    let me = client
        .get(format!("{}/v1/me", server.base))
        .header("authorization", format!("tma {init_data}"))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["id"], format!("tg:{telegram_id}"));
    assert_eq!(me["telegram"]["username"], "dev");

    let user = format!("user-{}", uuid::Uuid::new_v4().simple());
    let request = TokenRequest { sub: &user, ttl_secs: 3600, issuer: None, audience: None, admin: false };
    let token = mint(DEV_JWT_SECRET.as_bytes(), &request).expect("sign");
    let (_, session) =
        call(&client, &token, reqwest::Method::POST, format!("{}/v1/sessions", server.base), Some(json!({}))).await;
    let replies = format!("{}/v1/sessions/{}/replies", server.base, session["id"].as_str().expect("an id"));
    let (status, turn) =
        call(&client, &token, reqwest::Method::POST, replies, Some(json!({"content": "Hi!", "max_tokens": 16}))).await;
    assert_eq!(status, 201, "{turn}");
    let usage = &turn["assistant_message"]["usage"];
    let (input, output) = (usage["input_tokens"].as_u64().unwrap(), usage["output_tokens"].as_u64().unwrap());
    assert!(input > 0 && output > 0, "{usage}");
    let (_, spent) = call(&client, &token, reqwest::Method::GET, format!("{}/v1/usage", server.base), None).await;
    let cost: f64 = spent["totals"]["cost_usd"].as_str().expect("a decimal string").parse().expect("a number");
    // kit::local_model::DEV_PRICES: 0.10 / 0.40 USD per million input / output tokens.
    let expected = (input as f64 * 0.10 + output as f64 * 0.40) / 1e6;
    assert!((cost - expected).abs() < 1e-9 && cost > 0.0, "cost {cost} for {input} in, {output} out: {spent}");
}
