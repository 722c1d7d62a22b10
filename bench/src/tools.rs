//! Tool calls against the real local model (llama.cpp with SmolLM2-135M, which has no native tool
//! calls: the backend's structured-output path, `LLM_TOOL_CALLS=structured`), through the local
//! HTTP server, with an HTTP tool served here on loopback (signed, answering at once).
//!
//! Two measures. **A tool round's cost**: turns with `tool_choice: "required"`, one at a time,
//! each in a new session; the recording proxy notes when the model's first answer ended and when
//! the second request arrived, the tool when the call arrived and when it answered — the backend's
//! time around the call is the two gaps between, and the DynamoDB calls and write units in that
//! window are the round's own. **The structured path's quality** on the evaluation set
//! (`bench/eval/tools.json`) with `tool_choice: "auto"`: requests that need the tool (is it called,
//! with the right city?) and requests that need none (is a needless call made?).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use kit::tables::Streams;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::config::{LlmConfig, UrlPolicy};

use crate::BoxError;
use crate::meter;
use crate::replies::start_proxy;
use crate::server::{Api, token};
use crate::stats::Percentiles;

const EVALUATION_SET: &str = "bench/eval/tools.json";
const PROMPT: &str = "What is the weather in Paris right now?";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Deserialize)]
struct Set {
    needs_tool: Vec<Needed>,
    no_tool: Vec<String>,
}

#[derive(Deserialize)]
struct Needed {
    prompt: String,
    /// Stems of the city the call should name; any one matching is right.
    city: Vec<String>,
}

/// When the tool received each call and when it answered.
type Served = Arc<Mutex<Vec<(Instant, Instant)>>>;

/// A weather tool on loopback that answers at once.
async fn start_tool() -> Result<(String, Served), BoxError> {
    let served: Served = Arc::default();
    let log = served.clone();
    let weather = move |body: Bytes| {
        let log = log.clone();
        async move {
            let received = Instant::now();
            let call: Value = serde_json::from_slice(&body).unwrap_or_default();
            let answer = json!({"city": call["data"]["arguments"]["city"], "temperature_c": 21, "sky": "clear"});
            log.lock().unwrap_or_else(PoisonError::into_inner).push((received, Instant::now()));
            axum::Json(answer)
        }
    };
    let app = Router::new().route("/weather", post(weather));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, served))
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub turns: usize,
    /// Turns whose first model call made a call the tool answered.
    pub rounds: usize,
    /// The other turns: the call failed its checks (an error result), or no call was made (cut
    /// off by the token limit, or a call of the same tool and arguments as before).
    pub refused_calls: usize,
    pub no_call: usize,
    /// Turns whose call reached the tool but whose timestamps the proxy missed (not measured).
    pub unmeasured: usize,
    /// The model's first answer ended → the tool received the call.
    pub before_call: Percentiles,
    /// The tool answered → the model received the second request.
    pub after_call: Percentiles,
    /// Both: what the backend adds around one call.
    pub around_call: Percentiles,
    /// DynamoDB calls in that window: one after another (most, fewest), and all (most).
    pub round_trips: (u64, u64),
    pub calls: u64,
    /// Write units billed in that window (the round's checkpoint of the calls and results).
    pub round_write_units: Vec<f64>,
    /// Write units of a whole turn with one tool round.
    pub turn_write_units: Vec<f64>,
    pub eval: Eval,
}

/// The structured path on the evaluation set, `tool_choice: "auto"`.
#[derive(Clone, Debug, Default)]
pub struct Eval {
    pub needed: usize,
    /// Of `needed`: the tool was called; with the right city.
    pub called: usize,
    pub right_city: usize,
    /// Calls whose result was an error (arguments that fail the schema, an unknown tool).
    pub failed_calls: usize,
    pub no_tool: usize,
    /// Of `no_tool`: a call was made.
    pub needless: usize,
    /// Replies that ended with text after all (any of both sets).
    pub answered: usize,
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

fn calls_of(reply: &Value) -> Vec<&Value> {
    reply["parts"]
        .as_array()
        .map(|parts| parts.iter().filter(|part| part["type"] == "tool_call").collect())
        .unwrap_or_default()
}

fn failed_results(reply: &Value) -> usize {
    reply["parts"].as_array().map_or(0, |parts| {
        parts.iter().filter(|part| part["type"] == "tool_result" && part["error"].is_object()).count()
    })
}

pub async fn run(endpoint: &str, turns: usize, per_set: usize) -> Result<Report, BoxError> {
    let set: Set = serde_json::from_str(&std::fs::read_to_string(EVALUATION_SET)?)?;
    let model = kit::local_model::start(1)?;
    let (proxied, proxy) = start_proxy(&model.base_url).await?;
    let (tool_base, served) = start_tool().await?;
    let mut llm = LlmConfig::openai(&proxied, kit::local_model::MODEL_ALIAS);
    llm.context_tokens = 2048;
    llm.max_tokens = 64;
    llm.structured_tools = true;
    let policy = UrlPolicy { allowed_prefixes: Vec::new(), allow_private: true };
    let api = Api::start_configured(endpoint, Some(llm), Streams::Off, policy).await?;
    let user = format!("tools-{}", uuid::Uuid::new_v4().simple());
    let token = token(&user)?;
    let tool = json!({
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]},
        "kind": "http",
        "url": format!("{tool_base}/weather"),
        "secret": SECRET,
    });
    let reply = |content: &str, choice: &str| json!({"content": content, "tool_choice": choice, "temperature": 0.0});
    let new_session = || async {
        let body = json!({"title": "tools", "tools": [tool.clone()]});
        let session = api.call(&token, "POST", "/v1/sessions", Some(&body)).await?.body;
        Ok::<_, BoxError>(format!("/v1/sessions/{}/replies", session["id"].as_str().ok_or("session id")?))
    };

    let mut report = Report { turns, ..Report::default() };
    let (mut before_call, mut after_call, mut around, mut trips) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The first turn warms up (connections, the model's prompt cache), as in a warm Lambda.
    for index in 0..=turns {
        let path = new_session().await?;
        let (asked_before, served_before) =
            (proxy.count(), served.lock().unwrap_or_else(PoisonError::into_inner).len());
        let before = meter::totals();
        let answer = api.call(&token, "POST", &path, Some(&reply(PROMPT, "required"))).await?.body;
        let after = meter::totals();
        let calls = proxy.calls_since(asked_before);
        let tool_calls: Vec<(Instant, Instant)> =
            served.lock().unwrap_or_else(PoisonError::into_inner)[served_before..].to_vec();
        if index == 0 {
            continue;
        }
        let (Some(first), Some(second), Some(&(received, answered))) =
            (calls.first(), calls.get(1), tool_calls.first())
        else {
            // The model's call did not reach the tool.
            match failed_results(&answer["assistant_message"]) {
                0 => report.no_call += 1,
                _ => report.refused_calls += 1,
            }
            continue;
        };
        let (Some(ended), Some(ended_totals)) = (first.ended, first.totals_at_end.as_ref()) else {
            report.unmeasured += 1;
            continue;
        };
        report.rounds += 1;
        before_call.push(received.saturating_duration_since(ended));
        after_call.push(second.received.saturating_duration_since(answered));
        around.push(received.saturating_duration_since(ended) + second.received.saturating_duration_since(answered));
        let spans: Vec<_> = meter::spans_between(&before, &after)
            .into_iter()
            .filter(|&(start, _)| start >= ended && start < second.received)
            .collect();
        trips.push(meter::sequential_round_trips(&spans));
        report.calls = report.calls.max(spans.len() as u64);
        report.round_write_units.push(api.billed_between(ended_totals, &second.totals_at_received).await?);
        report.turn_write_units.push(api.billed_between(&before, &after).await?);
    }
    report.before_call = Percentiles::new(before_call);
    report.after_call = Percentiles::new(after_call);
    report.around_call = Percentiles::new(around);
    report.round_trips = (trips.iter().copied().max().unwrap_or(0), trips.iter().copied().min().unwrap_or(0));

    let eval = &mut report.eval;
    for needed in set.needs_tool.iter().take(per_set) {
        let path = new_session().await?;
        let answer = api.call(&token, "POST", &path, Some(&reply(&needed.prompt, "auto"))).await?.body;
        let message = &answer["assistant_message"];
        eval.needed += 1;
        let calls = calls_of(message);
        if !calls.is_empty() {
            eval.called += 1;
        }
        let named = |call: &&Value| {
            let city = call["arguments"]["city"].as_str().unwrap_or_default().to_lowercase();
            needed.city.iter().any(|stem| city.contains(stem.as_str()))
        };
        if calls.iter().any(named) {
            eval.right_city += 1;
        }
        eval.failed_calls += failed_results(message);
        eval.answered += usize::from(!message["content"].as_str().unwrap_or_default().trim().is_empty());
    }
    for prompt in set.no_tool.iter().take(per_set) {
        let path = new_session().await?;
        let answer = api.call(&token, "POST", &path, Some(&reply(prompt, "auto"))).await?.body;
        let message = &answer["assistant_message"];
        eval.no_tool += 1;
        eval.needless += usize::from(!calls_of(message).is_empty());
        eval.failed_calls += failed_results(message);
        eval.answered += usize::from(!message["content"].as_str().unwrap_or_default().trim().is_empty());
    }
    drop(model);
    Ok(report)
}

/// The section of BENCHMARKS.md.
pub fn markdown(report: &Report, out: &mut String) {
    use std::fmt::Write as _;
    let ms = |value: f64| format!("{value:.2}");
    let _ = writeln!(
        out,
        "## Tool calls (local model)\n\n\
         Replies that call an HTTP tool (`get_weather`, served on loopback, signed, answering at once), against \
         llama.cpp serving SmolLM2-135M-Instruct through the backend's structured-output path \
         (`LLM_TOOL_CALLS=structured`: the model has no native tool calls), through the local HTTP server, one \
         turn at a time, each in a new session, on tables without streams. {} turns with `tool_choice: \
         \"required\"` after a warm-up; in {} the model's call reached the tool ({} calls failed their checks — an \
         error result the model read —, {} turns made no call: cut off by the token limit; {} reached it unmeasured). \
         A recording proxy timestamps the model's requests and the end of its answers; the tool timestamps the \
         call's arrival and its answer.\n",
        report.turns, report.rounds, report.refused_calls, report.no_call, report.unmeasured
    );
    out.push_str("| the backend's time around one tool call (ms) | p50 | p99 |\n|---|---|---|\n");
    for (label, values) in [
        ("the model's answer ended → the tool received the signed call", &report.before_call),
        ("the tool answered → the model received the next request (the round stored first)", &report.after_call),
        ("both: the backend's share of a tool round", &report.around_call),
    ] {
        let _ = writeln!(out, "| {label} | {} | {} |", ms(values.at(50.0)), ms(values.at(99.0)));
    }
    let _ = writeln!(
        out,
        "\n- DynamoDB round trips a tool round adds (from the model's answer to the next request): {} at most, {} at \
         least, one after another; {} calls at most. Write units it adds: {:.2} on average — the checkpoint that \
         stores the calls and results before the model is asked again. A whole turn with one tool round: {:.2} \
         write units on average (the turn without tools: see \"AI replies\").",
        report.round_trips.0,
        report.round_trips.1,
        report.calls,
        mean(&report.round_write_units),
        mean(&report.turn_write_units),
    );
    let eval = &report.eval;
    let _ = writeln!(
        out,
        "- The structured path on the evaluation set (`{EVALUATION_SET}`, English and Russian, `tool_choice: \
         \"auto\"`, temperature 0): of {} requests that need the tool, {} called it, {} with the right city; of {} \
         that need none, {} made a needless call; {} calls failed their checks (an error result the model read); \
         {} of {} replies ended with text.\n",
        eval.needed,
        eval.called,
        eval.right_city,
        eval.no_tool,
        eval.needless,
        eval.failed_calls,
        eval.answered,
        eval.needed + eval.no_tool,
    );
}
