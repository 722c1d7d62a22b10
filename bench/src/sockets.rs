//! The chat socket at scale: the dev server in its own process (so its memory is its own)
//! holding N open connections, and `typing` relayed from one device of a chat to the other with
//! 8 chats × 2 devices talking at once.

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

pub struct Report {
    pub connections: usize,
    /// The server's resident memory before the connections and with them all open.
    pub rss_idle_kib: u64,
    pub rss_kib: u64,
    /// From a device sending `typing` to the other device receiving `message.typing`.
    pub relay: Percentiles,
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
        .stdout(Stdio::null())
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
    let pairs = sessions[..PAIRS].iter().map(|session| {
        let url = url(session);
        async move {
            let mut phone = tokio_tungstenite::connect_async(&url).await?.0;
            let mut laptop = tokio_tungstenite::connect_async(&url).await?.0;
            let mut samples = Vec::with_capacity(per_pair);
            for index in 0..per_pair {
                let frame = json!({"event": "typing", "data": {"is_typing": index % 2 == 0}});
                let sent = Instant::now();
                phone.send(Message::Text(frame.to_string().into())).await?;
                wait_for_typing(&mut laptop).await?;
                samples.push(sent.elapsed());
            }
            Ok::<_, BoxError>(samples)
        }
    });
    let samples: Vec<Duration> = futures::future::try_join_all(pairs).await?.into_iter().flatten().collect();
    drop(crowd);
    child.kill().await?;
    Ok(Report { connections, rss_idle_kib, rss_kib, relay: Percentiles::new(samples) })
}

async fn wait_for_typing(socket: &mut Socket) -> Result<(), BoxError> {
    loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await?.ok_or("the socket closed")??;
        if let Message::Text(text) = frame {
            let event: Value = serde_json::from_str(text.as_str())?;
            if event["event"] == "message.typing" {
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
        "\nCommit → event at another device waits for the change feed and the stream fan-out (issue #17).\n"
    );
}
