//! The same append workload through LangChain's `DynamoDBChatMessageHistory` (Python), run by
//! `bench/langchain_replay.py` against the same DynamoDB Local.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::BoxError;
use crate::stats::Percentiles;

#[derive(Deserialize)]
struct Replay {
    library: String,
    points: Vec<RawPoint>,
    curve: Vec<(u64, f64, f64)>,
    stopped_at: Option<u64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct RawPoint {
    history: u64,
    latencies_ms: Vec<f64>,
    read_units: Vec<f64>,
    write_units: Vec<f64>,
    calls: Vec<u32>,
}

pub struct LangChain {
    pub library: String,
    pub points: Vec<Point>,
    /// Every append: (history before it, latency ms, write units).
    pub curve: Vec<(u64, f64, f64)>,
    /// The history length at which an append failed (or the replay stopped), and why.
    pub stopped: Option<(u64, String)>,
}

pub struct Point {
    pub history: u64,
    /// `None` when the replay never got this far.
    pub measured: Option<Measured>,
}

pub struct Measured {
    pub latency: Percentiles,
    pub calls: f64,
    pub read_units: f64,
    pub write_units: f64,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

pub fn run(
    python: &Path,
    endpoint: &str,
    histories: &[u64],
    samples: usize,
    budget_secs: u64,
) -> Result<LangChain, BoxError> {
    let script = kit::dynamodb_local::workspace_root().join("bench/langchain_replay.py");
    let checkpoints: Vec<String> = histories.iter().map(u64::to_string).collect();
    let output = std::process::Command::new(python)
        .arg(script)
        .args(["--endpoint", endpoint, "--checkpoints", &checkpoints.join(",")])
        .args(["--samples", &samples.to_string(), "--budget-secs", &budget_secs.to_string()])
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()?;
    if !output.status.success() {
        return Err(format!("LangChain replay failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let replay: Replay = serde_json::from_slice(&output.stdout)?;
    let points = replay
        .points
        .into_iter()
        .map(|point| Point {
            history: point.history,
            measured: (!point.latencies_ms.is_empty()).then(|| Measured {
                latency: Percentiles::new(point.latencies_ms.iter().map(|ms| Duration::from_secs_f64(ms / 1000.0))),
                calls: mean(&point.calls.iter().map(|&calls| f64::from(calls)).collect::<Vec<_>>()),
                read_units: mean(&point.read_units),
                write_units: mean(&point.write_units),
            }),
        })
        .collect();
    Ok(LangChain {
        library: replay.library,
        points,
        curve: replay.curve,
        stopped: replay.stopped_at.zip(replay.reason),
    })
}
