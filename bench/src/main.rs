//! The benchmark program: writes BENCHMARKS.md and its scaling plot. Run it with
//! `scripts/bench.sh` (builds the release binaries and the LangChain environment first), or
//! `scripts/bench.sh --smoke` for the seconds-long run the test command makes.
//!
//! Against DynamoDB Local (started in memory unless `AWS_ENDPOINT_URL_DYNAMODB` is set) it measures
//! every listed operation through the local HTTP server, append and "latest 50" at growing history
//! lengths, LangChain's `DynamoDBChatMessageHistory` on the same workload, and the cold start, size
//! and memory of each function binary.

mod agents;
mod billing;
mod catalog;
mod cold_start;
mod contention;
mod crowd;
mod langchain;
mod lifecycle;
mod memory;
mod meter;
mod ops;
mod plot;
mod replies;
mod report;
mod scaling;
mod server;
mod sockets;
mod stats;
mod tools;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use shared::domain::UserId;

use crate::report::{Artifact, Provenance, Results};
use crate::server::Api;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: bench [--smoke] [--out FILE] [--plot FILE] [--clients N] [--requests N] \
    [--history N,N,..] [--ops N] [--binaries DIR] [--cold-runs N] [--invocations N] [--python FILE] \
    [--langchain-samples N] [--langchain-budget-secs N] [--contention-rounds N] [--replies N] [--crowd N] \
    [--characters N] [--catalog-requests N] [--sockets N] [--socket-relays N] [--memory N] [--memory-turns N] \
    [--agents N] [--tools N] [--tools-eval N] [--command TEXT]\n       bench --memory-only [--memory N] [--memory-turns N]\n       bench --agents-only [--agents N]\n       bench --replies-only [--replies N]\n       bench --tools-only [--tools N] [--tools-eval N]\n       bench --catalog-only [--characters N] [--catalog-requests N]\n       bench --ops-only [--clients N] [--requests N]\n       bench --cold-only [--binaries DIR] [--cold-runs N] [--invocations N]";

struct Args {
    out: PathBuf,
    plot: PathBuf,
    clients: usize,
    requests: usize,
    histories: Vec<u64>,
    ops: usize,
    binaries: PathBuf,
    cold_runs: usize,
    invocations: usize,
    python: PathBuf,
    langchain_samples: usize,
    langchain_budget_secs: u64,
    contention_rounds: usize,
    replies: usize,
    /// The crowd phase: streamed replies sent at once.
    crowd: usize,
    /// The lifecycle phase: sessions × messages of one user, and tokens verified per algorithm.
    lifecycle: (usize, usize, usize),
    /// The catalog phase: characters, and requests per kind of read.
    characters: usize,
    catalog_requests: usize,
    /// The socket phase: connections held, and typing relays timed.
    sockets: usize,
    socket_relays: usize,
    /// The memory phase: conversations of the evaluation set read (all: `usize::MAX`), and
    /// replies timed from their end to their memories.
    memory: (usize, usize),
    /// The group chat phase: direct and orchestrated replies timed (each).
    agents: usize,
    /// The tool phase: turns with one tool round timed, and requests of each half of the
    /// evaluation set (all: `usize::MAX`).
    tools: (usize, usize),
    /// One phase alone, its numbers printed instead of BENCHMARKS.md written.
    only: Option<Only>,
    command: String,
}

/// The phases that run alone (`--<phase>-only`), each printing its numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Memory extraction scored on the evaluation set (another provider's with `LLM_BASE_URL`).
    Memory,
    /// A group chat's routing.
    Agents,
    /// A reply's path before the provider: round trips, time, write units.
    Replies,
    /// A tool round's cost and the structured path's evaluation set.
    Tools,
    /// The character catalog's listing and search.
    Catalog,
    /// Each operation's calls, units and handler overhead.
    Ops,
    /// The function binaries' cold starts (release binaries in `--binaries`).
    Cold,
}

impl Only {
    fn from_flag(flag: &str) -> Option<Self> {
        Some(match flag {
            "--memory-only" => Self::Memory,
            "--agents-only" => Self::Agents,
            "--replies-only" => Self::Replies,
            "--tools-only" => Self::Tools,
            "--catalog-only" => Self::Catalog,
            "--ops-only" => Self::Ops,
            "--cold-only" => Self::Cold,
            _ => return None,
        })
    }
}

impl Args {
    fn full() -> Self {
        Self {
            out: "BENCHMARKS.md".into(),
            plot: "bench/scaling.svg".into(),
            clients: 8,
            requests: 200,
            histories: vec![10, 1_000, 10_000, 100_000],
            ops: 200,
            binaries: "target/release".into(),
            cold_runs: 10,
            invocations: 200,
            python: ".local/langchain-community-0.4.2/bin/python".into(),
            langchain_samples: 50,
            langchain_budget_secs: 900,
            contention_rounds: 20,
            replies: 20,
            crowd: 32,
            lifecycle: (20, 100, 2000),
            characters: 10_000,
            catalog_requests: 500,
            sockets: 1_000,
            socket_relays: 1_000,
            memory: (usize::MAX, 10),
            agents: 20,
            tools: (20, usize::MAX),
            only: None,
            command: "scripts/bench.sh".into(),
        }
    }

    /// Every phase at toy sizes, into `target/bench-smoke/`: proves the program works, measures nothing.
    fn smoke() -> Self {
        Self {
            out: "target/bench-smoke/BENCHMARKS.md".into(),
            plot: "target/bench-smoke/scaling.svg".into(),
            clients: 2,
            requests: 5,
            histories: vec![10, 100],
            ops: 10,
            binaries: "target/debug".into(),
            cold_runs: 1,
            invocations: 3,
            langchain_samples: 5,
            langchain_budget_secs: 120,
            contention_rounds: 1,
            replies: 1,
            crowd: 10,
            lifecycle: (2, 5, 20),
            characters: 60,
            catalog_requests: 5,
            sockets: 20,
            socket_relays: 16,
            memory: (1, 1),
            agents: 1,
            tools: (1, 1),
            command: "scripts/bench.sh --smoke".into(),
            ..Self::full()
        }
    }

    fn parse() -> Result<Self, BoxError> {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        let smoke = raw.first().is_some_and(|first| first == "--smoke");
        let mut args = if smoke { Self::smoke() } else { Self::full() };
        args.only = raw.first().and_then(|first| Only::from_flag(first));
        for pair in raw[usize::from(smoke || args.only.is_some())..].chunks(2) {
            let [flag, value] = pair else { return Err(USAGE.into()) };
            match flag.as_str() {
                "--out" => args.out = value.into(),
                "--plot" => args.plot = value.into(),
                "--clients" => args.clients = value.parse()?,
                "--requests" => args.requests = value.parse()?,
                "--history" => {
                    args.histories = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
                }
                "--ops" => args.ops = value.parse()?,
                "--binaries" => args.binaries = value.into(),
                "--cold-runs" => args.cold_runs = value.parse()?,
                "--invocations" => args.invocations = value.parse()?,
                "--python" => args.python = value.into(),
                "--langchain-samples" => args.langchain_samples = value.parse()?,
                "--langchain-budget-secs" => args.langchain_budget_secs = value.parse()?,
                "--contention-rounds" => args.contention_rounds = value.parse()?,
                "--crowd" => args.crowd = value.parse()?,
                "--replies" => args.replies = value.parse()?,
                "--characters" => args.characters = value.parse()?,
                "--catalog-requests" => args.catalog_requests = value.parse()?,
                "--sockets" => args.sockets = value.parse()?,
                "--socket-relays" => args.socket_relays = value.parse()?,
                "--command" => args.command = value.clone(),
                "--memory" => args.memory.0 = value.parse()?,
                "--memory-turns" => args.memory.1 = value.parse()?,
                "--agents" => args.agents = value.parse()?,
                "--tools" => args.tools.0 = value.parse()?,
                "--tools-eval" => args.tools.1 = value.parse()?,
                _ => return Err(USAGE.into()),
            }
        }
        if args.histories.is_empty() || args.clients == 0 || args.requests == 0 || args.ops == 0 || args.cold_runs == 0
        {
            return Err(USAGE.into());
        }
        Ok(args)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse()?;
    let root = kit::dynamodb_local::workspace_root();
    std::env::set_current_dir(&root)?;
    let endpoint = kit::dynamodb_local::endpoint_from_env_or_start()?;
    if let Some(only) = args.only {
        let out = run_alone(only, &args, &endpoint).await?;
        std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
        return Ok(());
    }
    let api = Arc::new(Api::start(&endpoint).await?);

    eprintln!("operations: {} clients × {} requests", args.clients, args.requests);
    let operations = ops::run(&api, args.clients, args.requests).await?;
    eprintln!("contention: {} rounds per scenario", args.contention_rounds);
    let contention = contention::run(&endpoint, args.contention_rounds).await?;
    // Replies on a DynamoDB Local of their own: on the shared one, the earlier phases' writes have
    // filled its stream emulation, which slows every write (see `scaling` below); the same turns
    // on the shared one are measured too, to show that effect.
    let fresh = kit::dynamodb_local::start_in_memory()?;
    eprintln!("replies: {} turns against the local model", args.replies);
    let replies = replies::run(&fresh.endpoint, args.replies.max(1), kit::tables::Streams::Off).await?;
    eprintln!("replies on the shared DynamoDB Local: {} turns", args.replies.clamp(1, 5));
    let replies_shared = replies::run(&endpoint, args.replies.clamp(1, 5), kit::tables::Streams::AsTemplate).await?;
    eprintln!("crowd: {} streamed replies at once", args.crowd);
    let crowd = crowd::run(&fresh.endpoint, args.crowd.max(1)).await?;
    eprintln!("memory: the evaluation set, then {} replies timed to their memories", args.memory.1);
    let memory = memory::run(&fresh.endpoint, args.memory.0, args.memory.1.max(1)).await?;
    eprintln!("agents: {} direct and {} orchestrated replies", args.agents, args.agents);
    let agents = agents::run(&fresh.endpoint, args.agents.max(1)).await?;
    eprintln!("tools: {} turns with a tool round, then the evaluation set", args.tools.0);
    let tools = tools::run(&fresh.endpoint, args.tools.0.max(1), args.tools.1).await?;
    let (sessions, messages, tokens) = args.lifecycle;
    eprintln!("lifecycle: {sessions} sessions × {messages} messages; {tokens} tokens per algorithm");
    let lifecycle = lifecycle::run(&api, sessions, messages, tokens).await?;
    eprintln!("catalog: {} characters, {} requests per read", args.characters, args.catalog_requests);
    let catalog = catalog::run(&api, args.characters, args.catalog_requests.max(1)).await?;
    eprintln!("sockets: {} connections, {} typing relays", args.sockets, args.socket_relays);
    let sockets = sockets::run(&args.binaries, &endpoint, &api, args.sockets, args.socket_relays.max(1)).await?;
    // The largest histories last: DynamoDB Local's stream emulation makes every write to a table
    // with a stream slower as the stream records it keeps grow (a transaction on a streamed table
    // takes 2–5 ms with few, 20–50 ms with ~40,000; AWS has no such effect), and this phase writes
    // 111,000 messages. Run before the others, it turned the contention phase into 503s.
    eprintln!("scaling: history {:?}, {} appends and reads each", args.histories, args.ops);
    let scaling = scaling::run(&api, &args.histories, args.ops).await?;

    let cold_starts = cold_starts(&args, &endpoint, &api).await?;

    eprintln!("LangChain replay (up to {} s)", args.langchain_budget_secs);
    let langchain =
        langchain::run(&args.python, &endpoint, &args.histories, args.langchain_samples, args.langchain_budget_secs)?;

    let artifacts = cold_start::FUNCTIONS
        .iter()
        .map(|function| {
            let size = |file: &str| std::fs::metadata(root.join("target/lambda").join(function.name).join(file)).ok();
            Artifact {
                function: function.name,
                bootstrap_bytes: size("bootstrap").map(|meta| meta.len()),
                zip_bytes: size("bootstrap.zip").map(|meta| meta.len()),
            }
        })
        .collect();
    let results = Results {
        provenance: provenance(&args.command)?,
        clients: args.clients,
        requests: args.requests,
        operations,
        scaling,
        langchain,
        cold_starts,
        artifacts,
        contention,
        replies,
        replies_shared,
        crowd,
        memory,
        agents,
        tools,
        lifecycle,
        catalog,
        sockets,
    };
    write(&args, &results)
}

fn write(args: &Args, results: &Results) -> Result<(), BoxError> {
    for file in [&args.out, &args.plot] {
        if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
    }
    let out_dir = args.out.parent().unwrap_or(std::path::Path::new(""));
    let plot_link = args.plot.strip_prefix(out_dir).unwrap_or(&args.plot).display().to_string();
    std::fs::write(&args.out, results.markdown(&plot_link))?;
    std::fs::write(&args.plot, results.plot())?;
    eprintln!("wrote {} and {}", args.out.display(), args.plot.display());
    Ok(())
}

fn provenance(command: &str) -> Result<Provenance, BoxError> {
    let date = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let machine = format!(
        "{cores} vCPU {cpu} ({}), {memory_gib:.1} GiB RAM, Linux {}",
        std::env::consts::ARCH,
        run("uname", &["-r"])
    );
    Ok(Provenance {
        date,
        machine,
        command: command.to_owned(),
        dynamodb_local: kit::dynamodb_local::version()?,
        commit: run("git", &["rev-parse", "--short", "HEAD"]),
        build: if cfg!(debug_assertions) { "debug (smoke: not a measurement)" } else { "release" },
    })
}

/// One phase alone: its numbers as text, for the terminal.
async fn run_alone(only: Only, args: &Args, endpoint: &str) -> Result<String, BoxError> {
    let mut out = String::new();
    match only {
        Only::Memory => memory::markdown(&memory::run(endpoint, args.memory.0, args.memory.1).await?, &mut out),
        Only::Agents => agents::markdown(&agents::run(endpoint, args.agents.max(1)).await?, &mut out),
        Only::Tools => tools::markdown(&tools::run(endpoint, args.tools.0.max(1), args.tools.1).await?, &mut out),
        Only::Replies => {
            let report = replies::run(endpoint, args.replies.max(1), kit::tables::Streams::Off).await?;
            let _ = writeln!(
                out,
                "replies: {} turns; before the provider p50 {:.2} ms, p99 {:.2} ms (DynamoDB in flight p50 {:.2}, \
                 p99 {:.2}; the rest p50 {:.2}, p99 {:.2}); DynamoDB round trips before it: {} at most, {} at least \
                 ({} calls at most); {:.2} WRU per turn ({:.2} the append)",
                report.turns,
                report.before_provider.at(50.0),
                report.before_provider.at(99.0),
                report.dynamodb_before.at(50.0),
                report.dynamodb_before.at(99.0),
                report.own_before.at(50.0),
                report.own_before.at(99.0),
                report.round_trips_before.0,
                report.round_trips_before.1,
                report.calls_before,
                report.mean_write_units(),
                report.request_write_units.iter().sum::<f64>() / report.request_write_units.len().max(1) as f64,
            );
        }
        Only::Ops => {
            let api = Arc::new(Api::start(endpoint).await?);
            out.push_str(
                "| operation | calls | RRU | WRU billed | handler overhead p50 / p95 / p99 ms, one client | under load |\n\
                 |---|---|---|---|---|---|\n",
            );
            for report in &ops::run(&api, args.clients, args.requests).await? {
                let (alone, loaded) = (&report.alone.overhead, &report.server.overhead);
                let _ = writeln!(
                    out,
                    "| {} | {:.3} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} |",
                    report.operation.name(),
                    report.server.calls,
                    report.server.read_units,
                    report.server.write_units,
                    alone.at(50.0),
                    alone.at(95.0),
                    alone.at(99.0),
                    loaded.at(50.0),
                    loaded.at(95.0),
                    loaded.at(99.0),
                );
            }
        }
        Only::Catalog => {
            let api = Api::start(endpoint).await?;
            let report = catalog::run(&api, args.characters, args.catalog_requests.max(1)).await?;
            catalog::markdown(&report, &mut out);
        }
        Only::Cold => {
            let api = Api::start(endpoint).await?;
            out.push_str("| function | warm-up | init p50 / max ms | first answer p50 / max ms | peak RSS MiB |\n|---|---|---|---|---|\n");
            for start in cold_starts(args, endpoint, &api).await? {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} |",
                    start.function,
                    if start.warm_up { "on" } else { "off" },
                    start.init.at(50.0),
                    start.init.at(100.0),
                    start.first_answer.at(50.0),
                    start.first_answer.at(100.0),
                    start.peak_rss_kib as f64 / 1024.0,
                );
            }
        }
    }
    Ok(out)
}

/// The function binaries' cold starts, each answering a read of the demo user's new session.
async fn cold_starts(args: &Args, endpoint: &str, api: &Api) -> Result<Vec<cold_start::ColdStart>, BoxError> {
    eprintln!("cold starts: {} runs per function and setting", args.cold_runs);
    let demo = UserId::parse("demo-user").ok_or("user id")?;
    let session = api.state.store.create_session(&demo, Default::default(), None).await?.id.to_string();
    cold_start::run(&cold_start::Settings {
        binaries: &args.binaries,
        endpoint,
        tables: api.state.store.tables(),
        session: &session,
        runs: args.cold_runs,
        invocations: args.invocations,
    })
    .await
}
