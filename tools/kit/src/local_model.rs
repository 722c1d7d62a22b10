//! Starts the local model — llama.cpp's server (PyPI `xllamacpp`) with SmolLM2-135M-Instruct —
//! for the dev server, tests and benchmarks that were given no `LLM_BASE_URL`. The venv and the
//! GGUF live in `.local/`, installed by `scripts/lib.sh` (`ensure_local_model`) when missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::dynamodb_local::{install, workspace_root};

/// The name the local server answers to (its `model_alias`), and so the `LLM_MODEL` locally.
pub const MODEL_ALIAS: &str = "smollm2-135m-instruct";

/// The dev server's prices for the local model (USD per million input / output tokens) when
/// `MODEL_PRICES` is not set: made up, so `cost_usd` locally is a real sum of real token counts.
pub const DEV_PRICES: &str = "smollm2-135m-instruct=0.10/0.40";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not install the local model: {0}")]
    Install(String),
    #[error("could not start the local model: {0}")]
    Start(#[from] std::io::Error),
    #[error("the local model server exited before it listened")]
    Exited,
}

/// A running local model server. It stops when this value is dropped, or when the process that
/// started it exits (it watches its stdin, which is this process's pipe).
#[derive(Debug)]
pub struct LocalModel {
    /// The OpenAI-compatible base URL, e.g. `http://127.0.0.1:41234/v1`.
    pub base_url: String,
    child: Child,
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on a free loopback port; `slots` replies can be generated at once (the
/// context window is shared between them: 2048 tokens per slot).
pub fn start(slots: u32) -> Result<LocalModel, LaunchError> {
    let root = workspace_root();
    let python = root.join(".local/llm/bin/python");
    let model = root.join(".local/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !python.exists() || !model.exists() {
        install("ensure_local_model").map_err(LaunchError::Install)?;
    }
    let ctx = (2048 * slots).to_string();
    let mut child = Command::new(python)
        .arg(root.join("scripts/llm-server.py"))
        .arg(model)
        .args(["--port", "0", "--alias", MODEL_ALIAS, "--watch-stdin", "--ctx", &ctx, "--parallel", &slots.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or(LaunchError::Exited)?;
    for line in BufReader::new(stdout).lines() {
        if let Some(url) = line?.strip_prefix("listening ") {
            return Ok(LocalModel { base_url: format!("{}/v1", url.trim()), child });
        }
    }
    Err(LaunchError::Exited)
}
