//! The chat socket at scale: the dev server in its own process (so its memory is its own)
//! holding N open connections; `typing` relayed from one device of a chat to the other, and a
//! committed message reaching the other device as `message.new` through DynamoDB Local's stream
//! and the fan-out, with 8 chats × 2 devices talking at once.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::BoxError;
use crate::server::{Api, local_env, token};
use crate::stats::Percentiles;

/// Chats whose two devices relay `typing` to each other.
pub const PAIRS: usize = 8;
/// The targets: connections held, and the server's memory with them.
pub const TARGET_CONNECTIONS: usize = 1_000;
pub const TARGET_RSS_MB: f64 = 100.0;
/// Commit → event at another device, p99.
pub const TARGET_EVENT_P99_MS: f64 = 250.0;

pub struct Report {
    pub connections: usize,
    /// The server's resident memory before the connections and with them all open.
    pub rss_idle_kib: u64,
    pub rss_kib: u64,
    /// From a device sending `typing` to the other device receiving `message.typing`.
    pub relay: Percentiles,
    /// From an append's request to the other device receiving its `message.new`.
    pub commit_to_event: Percentiles,
    /// The appends alone (request to committed answer).
    pub append: Percentiles,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn run(
    binaries: &Path,
    endpoint: &str,
    api: &Api,
    connections: usize,
    relays: usize,
) -> Result<Report, BoxError> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let tables = api.state.store.tables();
    let mut child = tokio::process::Command::new(binaries.join("dev-server"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(local_env(endpoint, tables))
        .envs([("LLM_PROVIDER", "none"), ("PORT", port.to_string().as_str()), ("RUST_LOG", "warn")])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("target/bench-dev-server.log").map(Stdio::from).unwrap_or(Stdio::null()))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("the dev server exited")?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the dev server did not listen within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let user = format!("sockets-{}", uuid::Uuid::new_v4().simple());
    let bearer = token(&user)?;
    let mut sessions = Vec::with_capacity(PAIRS + 1);
    for index in 0..=PAIRS {
        let created =
            api.call(&bearer, "POST", "/v1/sessions", Some(&json!({"title": format!("socket {index}")}))).await?;
        sessions.push(created.body["id"].as_str().ok_or("session id")?.to_owned());
    }
    let url = |session: &str| format!("ws://127.0.0.1:{port}/v1/ws?session_id={session}&token={bearer}");
    let rss_idle_kib = rss_kib(pid)?;

    // The crowd: a chat of its own that nobody speaks in.
    let mut crowd = Vec::with_capacity(connections);
    for _ in 0..connections {
        crowd.push(tokio_tungstenite::connect_async(url(&sessions[PAIRS])).await?.0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_kib = rss_kib(pid)?;

    let per_pair = relays.div_ceil(PAIRS);
    let bearer = &bearer;
    let pairs = sessions[..PAIRS].iter().map(|session| {
        let url = url(session);
        async move {
            let mut phone = tokio_tungstenite::connect_async(&url).await?.0;
            let mut laptop = tokio_tungstenite::connect_async(&url).await?.0;
            let mut relays = Vec::with_capacity(per_pair);
            for index in 0..per_pair {
                let frame = json!({"event": "typing", "data": {"is_typing": index % 2 == 0}});
                let sent = Instant::now();
                phone.send(Message::Text(frame.to_string().into())).await?;
                wait_for(&mut laptop, |event| event["event"] == "message.typing").await?;
                relays.push(sent.elapsed());
            }
            // The phone's message is committed through the API; the laptop hears of it from the
            // stream (the phone too: it is drained, so its outbox never fills).
            let (mut events, mut appends) = (Vec::with_capacity(per_pair), Vec::with_capacity(per_pair));
            let path = format!("/v1/sessions/{session}/messages");
            for index in 0..per_pair {
                let body = json!({"role": "user", "content": format!("message {index}")});
                let sent = Instant::now();
                let appended = api.call(bearer, "POST", &path, Some(&body)).await?;
                appends.push(sent.elapsed());
                let seq = appended.body["seq"].as_u64().ok_or("appended seq")?;
                let is_it = |event: &Value| event["event"] == "message.new" && event["data"]["seq"] == seq;
                wait_for(&mut laptop, is_it).await?;
                events.push(sent.elapsed());
                wait_for(&mut phone, is_it).await?;
            }
            Ok::<_, BoxError>((relays, events, appends))
        }
    });
    let (mut relays, mut events, mut appends) = (Vec::new(), Vec::new(), Vec::new());
    for (relay, event, append) in futures::future::try_join_all(pairs).await? {
        relays.extend(relay);
        events.extend(event);
        appends.extend(append);
    }
    drop(crowd);
    child.kill().await?;
    Ok(Report {
        connections,
        rss_idle_kib,
        rss_kib,
        relay: Percentiles::new(relays),
        commit_to_event: Percentiles::new(events),
        append: Percentiles::new(appends),
    })
}

async fn wait_for(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Result<(), BoxError> {
    loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await?.ok_or("the socket closed")??;
        if let Message::Text(text) = frame {
            let event: Value = serde_json::from_str(text.as_str())?;
            if wanted(&event) {
                return Ok(());
            }
        }
    }
}

/// `VmRSS` from `/proc/<pid>/status`: the process's resident memory now.
fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("VmRSS value")?.parse()?)
}

impl Report {
    pub fn rss_mb(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn meets_target(&self) -> bool {
        self.connections >= TARGET_CONNECTIONS && self.rss_mb() < TARGET_RSS_MB
    }
}

pub fn markdown(report: &Report, out: &mut String) {
    let _ = writeln!(out, "## Realtime: the chat socket (local)\n");
    let per_connection = (report.rss_kib.saturating_sub(report.rss_idle_kib)) as f64 / report.connections.max(1) as f64;
    let _ = writeln!(
        out,
        "The dev server (`dev-server`, its own process) on DynamoDB Local; every connect is checked (token and session \
         read) before the upgrade. Resident memory from `/proc/<pid>/status`.\n"
    );
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(out, "| connections held open | {} |", report.connections);
    let _ = writeln!(
        out,
        "| server RSS: idle → with them | {:.1} MiB → {:.1} MiB ({per_connection:.1} KiB a connection) |",
        report.rss_idle_kib as f64 / 1024.0,
        report.rss_mb()
    );
    let _ = writeln!(
        out,
        "| `typing` → `message.typing` at the other device, {PAIRS} chats × 2 devices at once ({} relays) | p50 {:.2} ms, p99 {:.2} ms |",
        report.relay.len(),
        report.relay.at(50.0),
        report.relay.at(99.0)
    );
    let _ = writeln!(
        out,
        "| an append → its `message.new` at the other device (DynamoDB Local's stream, the fan-out), {PAIRS} chats × 2 \
         devices ({} messages) | p50 {:.2} ms, p99 {:.2} ms (the append alone: p50 {:.2} ms) |",
        report.commit_to_event.len(),
        report.commit_to_event.at(50.0),
        report.commit_to_event.at(99.0),
        report.append.at(50.0)
    );
    let _ = writeln!(
        out,
        "\nThe stream reader polls each table's shard every {} ms when it is quiet, the way a Lambda event source \
         mapping polls on AWS (where it adds its own batching delay; see the README's realtime costs).\n",
        dev::streams::IDLE_POLL.as_millis()
    );
}
