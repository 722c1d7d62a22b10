//! BENCHMARKS.md and its scaling plot from one run's results.

use std::fmt::Write;

use crate::cold_start::ColdStart;
use crate::contention;
use crate::langchain::LangChain;
use crate::ops::{Operation, OperationReport};
use crate::plot::{Chart, Series};
use crate::scaling::Point;
use crate::stats::{Percentiles, USD_PER_MILLION_READ_UNITS, USD_PER_MILLION_WRITE_UNITS, usd_per_million};

/// Where, when and how the numbers were taken; printed under every table and on the plot.
pub struct Provenance {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub dynamodb_local: String,
    pub commit: String,
    pub build: &'static str,
}

impl Provenance {
    fn stamp(&self) -> String {
        format!(
            "_{} · {} · `{}` · {} build, DynamoDB Local {}, commit {}_",
            self.date, self.machine, self.command, self.build, self.dynamodb_local, self.commit
        )
    }
}

/// The arm64 Lambda artifact of a function, as `cargo lambda build --release --arm64` left it.
pub struct Artifact {
    pub function: &'static str,
    pub bootstrap_bytes: Option<u64>,
    pub zip_bytes: Option<u64>,
}

pub struct Results {
    pub provenance: Provenance,
    pub clients: usize,
    pub requests: usize,
    pub operations: Vec<OperationReport>,
    pub scaling: Vec<Point>,
    pub langchain: LangChain,
    pub cold_starts: Vec<ColdStart>,
    pub artifacts: Vec<Artifact>,
    pub contention: contention::Report,
    pub replies: crate::replies::Report,
    /// The same turns on the benchmark's shared DynamoDB Local, after the earlier phases.
    pub replies_shared: crate::replies::Report,
    pub memory: crate::memory::Report,
    pub agents: crate::agents::Report,
    pub tools: crate::tools::Report,
    pub crowd: crate::crowd::Report,
    pub lifecycle: crate::lifecycle::Report,
    pub catalog: crate::catalog::Report,
    pub sockets: crate::sockets::Report,
}

fn ms(value: f64) -> String {
    format!("{value:.2}")
}

fn triple(latency: &Percentiles) -> String {
    format!("{} / {} / {}", ms(latency.at(50.0)), ms(latency.at(95.0)), ms(latency.at(99.0)))
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1_000_000.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

impl Results {
    fn append(&self) -> Option<&OperationReport> {
        self.operations.iter().find(|report| matches!(report.operation, crate::ops::Operation::Append))
    }

    /// Append p50 at the longest history relative to the shortest, in percent.
    fn append_change_percent(&self) -> Option<f64> {
        let (first, last) = (self.scaling.first()?, self.scaling.last()?);
        let (from, to) = (first.append.client.at(50.0), last.append.client.at(50.0));
        Some((to - from) / from * 100.0)
    }

    fn targets(&self, out: &mut String) {
        let p = &self.provenance;
        let _ = writeln!(out, "## Targets\n\n{}\n", p.stamp());
        out.push_str("| target | measured | |\n|---|---|---|\n");
        if let Some(append) = self.append() {
            let calls = append.server.calls;
            let _ = writeln!(
                out,
                "| append = 1 DynamoDB round trip | {calls:.2} round trips per append | {} |",
                met(calls <= 1.0)
            );
        }
        if let (Some(change), Some(first), Some(last)) =
            (self.append_change_percent(), self.scaling.first(), self.scaling.last())
        {
            let _ = writeln!(
                out,
                "| append latency changes < 10 % from 10 to 100,000 messages | p50 {} ms at {} → {} ms at {} messages: {change:+.1} % | {} |",
                ms(first.append.client.at(50.0)),
                first.history,
                ms(last.append.client.at(50.0)),
                last.history,
                met(change.abs() < 10.0)
            );
        }
        let worst = |side: fn(&OperationReport) -> &crate::stats::ServerSide| {
            self.operations
                .iter()
                .map(|report| (side(report).overhead.at(99.0), report.operation.name()))
                .max_by(|a, b| a.0.total_cmp(&b.0))
        };
        if let (Some((alone, operation)), Some((loaded, loaded_operation))) =
            (worst(|report| &report.alone), worst(|report| &report.server))
        {
            let _ = writeln!(
                out,
                "| handler overhead p99 < 1 ms | one client: worst p99 {} ms ({operation}); {} concurrent clients: worst p99 {} ms ({loaded_operation}) | {} alone, {} under load |",
                ms(alone),
                self.clients,
                ms(loaded),
                met(alone < 1.0),
                met(loaded < 1.0)
            );
        }
        for (name, scenario) in self.contention_scenarios() {
            let p99 = scenario.latency.at(99.0);
            let _ = writeln!(
                out,
                "| {name}: every round exact, 0 × 503, p99 < 2 s | {}/{} rounds exact, {} × 503, p99 {} ms | {} |",
                scenario.rounds_correct,
                scenario.rounds,
                scenario.unavailable,
                ms(p99),
                met(scenario.rounds_correct == scenario.rounds && scenario.unavailable == 0 && p99 < 2000.0)
            );
        }
        let find = |wanted: fn(&Operation) -> bool| self.operations.iter().find(|r| wanted(&r.operation));
        for (name, found, limit) in [
            ("user message append ≤ 8 WRU, 1 round trip", find(|o| matches!(o, Operation::AppendUser)), 8.0),
            ("assistant message append ≤ 6 WRU, 1 round trip", find(|o| matches!(o, Operation::AppendAssistant)), 6.0),
        ] {
            if let Some(report) = found {
                let server = &report.server;
                let _ = writeln!(
                    out,
                    "| {name} | {:.2} WRU, {:.2} round trips (earlier rule {:.2} WRU) | {} |",
                    server.write_units,
                    server.calls,
                    server.earlier_rule_write_units,
                    met(server.write_units <= limit && server.calls <= 1.0)
                );
            }
        }
        if let Some(report) = find(|o| matches!(o, Operation::ListMessages)) {
            let server = &report.server;
            let _ = writeln!(
                out,
                "| latest 50 messages ≤ 5 RRU and ≤ 1 WRU | {:.2} RRU, {:.2} WRU | {} |",
                server.read_units,
                server.write_units,
                met(server.read_units <= 5.0 && server.write_units <= 1.0)
            );
        }
        let replies = &self.replies;
        let before = replies.before_provider.at(99.0);
        let (most_trips, _) = replies.round_trips_before;
        let _ = writeln!(
            out,
            "| a reply: backend time before the provider p99 ≤ 15 ms, ≤ 2 DynamoDB round trips | p99 {} ms, {most_trips} round trips at most | {} |",
            ms(before),
            met(before <= 15.0 && most_trips <= 2)
        );
        let turn = replies.mean_write_units();
        let _ = writeln!(
            out,
            "| a whole turn (user message + ~300-token reply) ≤ 20 WRU | {turn:.2} WRU | {} |",
            met(turn <= 20.0)
        );
        let crowd = &self.crowd;
        let _ = writeln!(
            out,
            "| {} streamed replies at once: each completes or is refused up front with `Retry-After`, none stuck | {} completed, {} refused, {} other, {} stuck; first delta p50 {} / p99 {} ms | {} |",
            crowd.replies,
            crowd.completed,
            crowd.refused,
            crowd.other.len() + crowd.ended_otherwise + crowd.refused_but_stored,
            crowd.stuck,
            ms(crowd.first_delta.at(50.0)),
            ms(crowd.first_delta.at(99.0)),
            met(crowd.completed + crowd.refused == crowd.replies && crowd.stuck == 0 && crowd.refused_but_stored == 0)
        );
        if let Some((worst, p99)) = self.catalog.worst_p99() {
            let calls = self.catalog.calls();
            let _ = writeln!(
                out,
                "| {} characters: list and search p99 < {} ms warm, 0 DynamoDB calls | worst handler p99 {} ms ({worst}), {calls} calls | {} |",
                self.catalog.characters,
                crate::catalog::TARGET_P99_MS,
                ms(p99),
                met(p99 < crate::catalog::TARGET_P99_MS && calls == 0)
            );
        }
        let _ = writeln!(
            out,
            "| the local chat socket holds ≥ {} connections under {} MB | {} connections, server RSS {:.1} MiB | {} |",
            crate::sockets::TARGET_CONNECTIONS,
            crate::sockets::TARGET_RSS_MB,
            self.sockets.connections,
            self.sockets.rss_mb(),
            met(self.sockets.meets_target())
        );
        let event_p99 = self.sockets.commit_to_event.at(99.0);
        let _ = writeln!(
            out,
            "| commit → event at another device p99 < {} ms locally ({} chats × 2 devices) | p99 {} ms | {} |",
            crate::sockets::TARGET_EVENT_P99_MS,
            crate::sockets::PAIRS,
            ms(event_p99),
            met(event_p99 < crate::sockets::TARGET_EVENT_P99_MS)
        );
        let warm = self.cold_starts.iter().filter(|start| start.warm_up);
        if let Some(slowest) = warm.clone().max_by(|a, b| a.first_answer.at(50.0).total_cmp(&b.first_answer.at(50.0))) {
            let value = slowest.first_answer.at(50.0);
            let _ = writeln!(
                out,
                "| cold start to first answer < 50 ms | slowest p50 {} ms ({}) | {} |",
                ms(value),
                slowest.function,
                met(value < 50.0)
            );
        }
        if let Some(largest) = self.cold_starts.iter().max_by_key(|start| start.peak_rss_kib) {
            let value = largest.peak_rss_kib as f64 / 1024.0;
            let _ = writeln!(
                out,
                "| peak RSS < 40 MB | largest {value:.1} MiB ({}) | {} |",
                largest.function,
                met(value < 40.0)
            );
        }
        out.push('\n');
    }

    fn operations(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Per operation: round trips, capacity, cost, latency\n\n{}\n\n\
             {} concurrent clients, each its own user with a session of 60+ messages and 10 memories, \
             {} requests each, back to back over keep-alive HTTP/1.1 to the local server. Capacity is what \
             DynamoDB Local reported (`ReturnConsumedCapacity: TOTAL`) averaged per request; cost at on-demand \
             prices of ${USD_PER_MILLION_READ_UNITS} per million read and ${USD_PER_MILLION_WRITE_UNITS} per million \
             write request units (us-east-1, Standard table class). Latency is the client's; overhead is the handler's \
             time minus the time any DynamoDB call was in flight. Under load that includes waiting for a CPU \
             which DynamoDB Local (Java), the server and the clients share, so the last column repeats each \
             operation from one client ({} requests).\n\n\
             Write units of transactions are recounted: DynamoDB Local reports a flat 4 units per table for a \
             `TransactWriteItems` call whether it writes one small item or ten, where AWS bills 2 units per started \
             KB of every item the transaction writes, and 1 per started KB of every index entry it writes (the \
             projected attributes; an index key change deletes one entry and writes another; a keys-only index is \
             not written when its keys stay). The benchmark sizes each item a committed transaction put by the item \
             as sent (a reply's placeholder, not the reply it became; until 2026-12-06 it read puts back too), \
             each updated item by reading it back, and applies that rule. In brackets: the earlier rule of this benchmark (until 2026-12 it charged every \
             index entry 2 per KB of the whole item, whatever the projection), then DynamoDB Local's own figure. \
             Single-item writes, queries and reads are as reported.\n",
            self.provenance.stamp(),
            self.clients,
            self.requests,
            self.requests
        );
        out.push_str(
            "| operation | route | round trips | RRU | WRU billed (earlier rule; Local reports) | USD per million calls | latency p50 / p95 / p99 ms | handler overhead p50 / p95 / p99 ms | overhead, one client |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for report in &self.operations {
            let server = &report.server;
            let _ = writeln!(
                out,
                "| {} | `{}` | {:.2} | {:.2} | {:.2} ({:.2}; {:.2}) | {:.3} | {} | {} | {} |",
                report.operation.name(),
                report.operation.route(),
                server.calls,
                server.read_units,
                server.write_units,
                server.earlier_rule_write_units,
                server.reported_write_units,
                usd_per_million(server.read_units, server.write_units),
                triple(&report.client),
                triple(&server.overhead),
                triple(&report.alone.overhead)
            );
        }
        out.push('\n');
    }

    fn scaling(&self, out: &mut String, plot: &str) {
        let _ = writeln!(
            out,
            "## Scaling with history length\n\n{}\n\n\
             One client; at each history length the session(s) are seeded through the store, then appends and \
             \"latest 50\" reads (`GET …/messages?order=desc&limit=50`) alternate over HTTP. A point's appends stay \
             within its history length and twice it (at 10 messages, several sessions of 10 take 10 appends each).\n\n\
             ![append and latest-50 latency and write units against history length]({plot})\n",
            self.provenance.stamp()
        );
        out.push_str(
            "| history | sessions × appends | seeding s | append p50 / p95 / p99 ms | append round trips | append WRU | latest 50 p50 / p95 / p99 ms | latest 50 RRU |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for point in &self.scaling {
            let _ = writeln!(
                out,
                "| {} | {} × {} | {:.1} | {} | {:.2} | {:.2} | {} | {:.2} |",
                point.history,
                point.sessions,
                point.per_session,
                point.seed_secs,
                triple(&point.append.client),
                point.append.server.calls,
                point.append.server.write_units,
                triple(&point.latest.client),
                point.latest.server.read_units
            );
        }
        out.push('\n');
    }

    fn versus_langchain(&self, out: &mut String) {
        let langchain = &self.langchain;
        let _ = writeln!(
            out,
            "## Versus LangChain `DynamoDBChatMessageHistory`\n\n{}\n\n\
             The same workload (alternating user/assistant messages of ~300 bytes, appended one at a time) \
             through {} (`add_message`, default settings) on the same DynamoDB Local. LangChain keeps a session's \
             whole history in one item: every append reads it (`GetItem`) and writes it back whole (`UpdateItem`), \
             so both grow with the history until DynamoDB's 400 KB item limit refuses the write.\n",
            self.provenance.stamp(),
            langchain.library
        );
        if let Some((at, reason)) = &langchain.stopped {
            let _ = writeln!(
                out,
                "**LangChain broke at {at} messages:** the append of message {} failed with `{reason}`; nothing after it can be stored in that session.\n",
                at + 1
            );
        }
        out.push_str(
            "| history | this API: append p50 / p99 ms | round trips | RRU + WRU | LangChain: append p50 / p99 ms | round trips | RRU + WRU |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for ours in &self.scaling {
            let theirs = langchain.points.iter().find(|point| point.history == ours.history);
            let their_cells = match theirs.and_then(|point| point.measured.as_ref()) {
                Some(m) => format!(
                    "{} / {} | {:.2} | {:.2} + {:.2}",
                    ms(m.latency.at(50.0)),
                    ms(m.latency.at(99.0)),
                    m.calls,
                    m.read_units,
                    m.write_units
                ),
                None => "broken: cannot hold this history | – | –".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} / {} | {:.2} | {:.2} + {:.2} | {their_cells} |",
                ours.history,
                ms(ours.append.client.at(50.0)),
                ms(ours.append.client.at(99.0)),
                ours.append.server.calls,
                ours.append.server.read_units,
                ours.append.server.write_units
            );
        }
        if let Some(&(history, latency, units)) = langchain.curve.last() {
            let _ = writeln!(
                out,
                "\nLangChain's last successful append (history {history}): {latency:.1} ms, {units:.0} write units \
                 (${:.0} per million appends at that size, against ${:.2} here).",
                usd_per_million(0.0, units),
                self.append()
                    .map_or(0.0, |append| usd_per_million(append.server.read_units, append.server.write_units))
            );
        }
        out.push('\n');
    }

    fn cold_starts(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Cold start, size, memory\n\n{}\n\n\
             Each function's release binary (built for this machine with the Lambda release profile) is started \
             as Lambda starts it, against a minimal Lambda Runtime API served by the benchmark, and given its sample \
             event from `events/` (a read that reaches DynamoDB). *Init* is process start → first request for an \
             event (with the warm-up, that includes one DynamoDB `GetItem` on a fresh connection); *first answer* is \
             process start → the response posted back. Peak RSS (`VmHWM`) is read after the last answered event. \
             `DYNAMODB_WARM_UP=false` turns the warm-up off. Sizes of the arm64 Lambda artifacts are those of \
             `cargo lambda build --release --arm64 --output-format zip`.\n",
            self.provenance.stamp()
        );
        out.push_str(
            "| function | warm-up | init p50 / max ms | first answer p50 / max ms | peak RSS | binary (this machine) | arm64 bootstrap | arm64 zip |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for start in &self.cold_starts {
            let artifact = self.artifacts.iter().find(|artifact| artifact.function == start.function);
            let size = |bytes: Option<u64>| bytes.map_or_else(|| "not built".to_owned(), mb);
            let _ = writeln!(
                out,
                "| {} | {} | {} / {} | {} / {} | {:.1} MiB | {} | {} | {} |",
                start.function,
                if start.warm_up { "on" } else { "off" },
                ms(start.init.at(50.0)),
                ms(start.init.at(100.0)),
                ms(start.first_answer.at(50.0)),
                ms(start.first_answer.at(100.0)),
                start.peak_rss_kib as f64 / 1024.0,
                mb(start.binary_bytes),
                size(artifact.and_then(|artifact| artifact.bootstrap_bytes)),
                size(artifact.and_then(|artifact| artifact.zip_bytes))
            );
        }
        let runs = self.cold_starts.first().map_or(0, |start| start.first_answer.len());
        let _ = writeln!(out, "\n{runs} cold starts per function and setting.\n");
    }

    pub fn markdown(&self, plot: &str) -> String {
        let p = &self.provenance;
        let mut out = format!(
            "# Benchmarks\n\n\
             What each operation costs in DynamoDB round trips, capacity and dollars, how fast it is, how it \
             scales with a session's history, how it compares with LangChain's `DynamoDBChatMessageHistory`, and \
             how the Lambda binaries start. Generated by the benchmark program (`bench/`); reproduce with \
             `scripts/bench.sh` (see the README). Numbers come from DynamoDB Local on one small VM: latencies are \
             relative, not what AWS will show; capacity units are what DynamoDB would bill.\n\n\
             - date: {}\n- machine: {}\n- command: `{}`\n- build: {}\n- DynamoDB Local: {}\n- commit: {}\n\n",
            p.date, p.machine, p.command, p.build, p.dynamodb_local, p.commit
        );
        self.targets(&mut out);
        self.operations(&mut out);
        self.scaling(&mut out, plot);
        self.versus_langchain(&mut out);
        self.contention(&mut out);
        crate::replies::markdown(&self.replies, &self.replies_shared, &mut out);
        crate::crowd::markdown(&self.crowd, &mut out);
        crate::memory::markdown(&self.memory, &mut out);
        crate::agents::markdown(&self.agents, &mut out);
        crate::tools::markdown(&self.tools, &mut out);
        crate::lifecycle::markdown(&self.lifecycle, &mut out);
        crate::catalog::markdown(&self.catalog, &mut out);
        crate::sockets::markdown(&self.sockets, &mut out);
        self.cold_starts(&mut out);
        out
    }

    fn contention_scenarios(&self) -> [(String, &contention::Scenario); 2] {
        [
            (
                format!("{} concurrent appends to one session, 2 instances", contention::SESSION_WRITERS),
                &self.contention.one_session,
            ),
            (
                format!(
                    "{} concurrent user appends, {} sessions, 2 instances, quota {}",
                    contention::QUOTA_WRITERS,
                    contention::QUOTA_SESSIONS,
                    contention::QUOTA
                ),
                &self.contention.quota,
            ),
        ]
    }

    fn contention(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Contention\n\n{}\n\n\
             Two app instances (two `AppState`s, each with its own caches and write gates, each behind its own \
             HTTP server) on one DynamoDB Local; every round fires all its appends at once, split between the \
             instances, with a fresh user. A round is exact when every append was stored once with seqs \
             1..N (one session), or when exactly the quota was accepted, the rest refused with 429, and both \
             the counter and the stored logs say the quota (quota race). Latency is each append's, from the \
             client.\n",
            self.provenance.stamp()
        );
        out.push_str("| scenario | rounds exact | 201 | 429 | 503 | other | latency p50 / p95 / p99 / max ms |\n|---|---|---|---|---|---|---|\n");
        for (name, scenario) in self.contention_scenarios() {
            let _ = writeln!(
                out,
                "| {name} | {}/{} | {} | {} | {} | {} | {} / {} |",
                scenario.rounds_correct,
                scenario.rounds,
                scenario.created,
                scenario.refused,
                scenario.unavailable,
                scenario.other,
                triple(&scenario.latency),
                ms(scenario.latency.at(100.0))
            );
        }
        out.push('\n');
    }

    pub fn plot(&self) -> String {
        let ours = |value: fn(&Point) -> f64| -> Vec<(f64, f64)> {
            self.scaling.iter().map(|point| (point.history as f64, value(point))).collect()
        };
        let theirs = |value: fn(&(u64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
            self.langchain
                .curve
                .iter()
                .filter(|(history, _, _)| *history >= 1)
                .map(|entry| (entry.0 as f64, value(entry)))
                .collect()
        };
        let broke = self.langchain.stopped.is_some();
        let latency = Chart {
            title: "Append latency (p50, ms)".into(),
            y_label: "ms (log)".into(),
            series: vec![
                Series {
                    name: "this API: append".into(),
                    color: "#1f77b4",
                    points: ours(|point| point.append.client.at(50.0)),
                    ends_in_failure: false,
                },
                Series {
                    name: "this API: latest 50 messages".into(),
                    color: "#2ca02c",
                    points: ours(|point| point.latest.client.at(50.0)),
                    ends_in_failure: false,
                },
                Series {
                    name: "LangChain DynamoDBChatMessageHistory: append (median of 9)".into(),
                    color: "#d62728",
                    points: rolling_median(&theirs(|entry| entry.1), 9),
                    ends_in_failure: broke,
                },
            ],
        };
        let units = Chart {
            title: "Write units per append".into(),
            y_label: "WRU (log)".into(),
            series: vec![
                Series {
                    name: "this API".into(),
                    color: "#1f77b4",
                    points: ours(|point| point.append.server.write_units),
                    ends_in_failure: false,
                },
                Series {
                    name: "LangChain (red cross: 400 KB item limit)".into(),
                    color: "#d62728",
                    points: theirs(|entry| entry.2),
                    ends_in_failure: broke,
                },
            ],
        };
        let p = &self.provenance;
        let caption = vec![
            format!("{} · {}", p.date, p.machine),
            format!("{} · {} build · DynamoDB Local {} · commit {}", p.command, p.build, p.dynamodb_local, p.commit),
        ];
        crate::plot::svg(&[latency, units], &caption)
    }
}

/// Each point's y replaced by the median of the `window` points around it (damps GC and JIT spikes).
fn rolling_median(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let half = window / 2;
    (0..points.len())
        .map(|i| {
            let around = &points[i.saturating_sub(half)..(i + half + 1).min(points.len())];
            let mut ys: Vec<f64> = around.iter().map(|point| point.1).collect();
            ys.sort_by(f64::total_cmp);
            (points[i].0, ys[ys.len() / 2])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_median_drops_a_single_spike() {
        let points = [(1.0, 5.0), (2.0, 5.0), (3.0, 90.0), (4.0, 6.0), (5.0, 6.0)];
        let smoothed = rolling_median(&points, 3);
        assert_eq!(smoothed.len(), 5);
        assert!((smoothed[2].1 - 6.0).abs() < 1e-9);
        assert!((smoothed[0].0 - 1.0).abs() < 1e-9);
    }
}
