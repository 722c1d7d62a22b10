//! A group chat's routing, against the real local model: what an orchestrated reply adds before
//! its provider call (the routing call and the read of the newest messages) compared with a direct
//! reply to a named agent, the routing call's tokens (as `/v1/usage` meters them), and how often
//! the model's pick stood (the rest fell to the rule: it failed, was slow or named no agent).
//!
//! The recording proxy of `replies` notes when each completion request reaches the model.

use std::time::Instant;

use serde_json::json;
use shared::config::LlmConfig;

use crate::BoxError;
use crate::replies::start_proxy;
use crate::server::{Api, admin_token, token};
use crate::stats::Percentiles;

const AGENTS: [(&str, &str, &str); 3] = [
    ("ada", "Ada", "A patient maths tutor who explains step by step"),
    ("bruno", "Bruno", "A chef who talks about food and recipes"),
    ("cyra", "Cyra", "A travel guide who knows cities and trains"),
];
const QUESTIONS: [&str; 4] = [
    "How do I solve 3x + 5 = 20?",
    "What should I cook with tomatoes and rice?",
    "Is the night train from Vienna to Venice worth it?",
    "Can someone help me plan a weekend?",
];

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub turns: usize,
    /// Request sent → the reply's own provider call, for a named agent.
    pub direct: Percentiles,
    /// The same for an orchestrated reply: the routing call and its read come first.
    pub orchestrated: Percentiles,
    /// Routing calls metered, and their tokens in and out.
    pub routing_calls: u64,
    pub routing_input_tokens: u64,
    pub routing_output_tokens: u64,
    /// Orchestrated replies whose agent the model picked (the rest: the rule).
    pub picked_by_model: usize,
}

pub async fn run(endpoint: &str, turns: usize) -> Result<Report, BoxError> {
    let model = kit::local_model::start(1)?;
    let (proxied, proxy) = start_proxy(&model.base_url).await?;
    let mut llm = LlmConfig::openai(&proxied, kit::local_model::MODEL_ALIAS);
    llm.context_tokens = 2048;
    let api = Api::start_with(endpoint, Some(llm)).await?;
    let admin = admin_token("agents-admin")?;
    for (id, name, description) in AGENTS {
        let body = json!({"id": id, "name": name, "description": description, "system_prompt": format!("You are {name}. {description}.")});
        api.call(&admin, "POST", "/v1/admin/characters", Some(&body)).await?;
    }
    let user = token(&format!("agents-{}", uuid::Uuid::new_v4().simple()))?;
    let ids: Vec<&str> = AGENTS.iter().map(|(id, _, _)| *id).collect();
    let session = api.call(&user, "POST", "/v1/sessions", Some(&json!({"title": "group", "agents": ids}))).await?.body;
    let path = format!("/v1/sessions/{}/replies", session["id"].as_str().ok_or("session id")?);
    let mut report = Report { turns, ..Report::default() };
    let (mut direct, mut orchestrated) = (Vec::new(), Vec::new());
    // The first pair warms the connections, the caches and the model's prompt cache.
    for index in 0..=turns {
        let question = QUESTIONS[index % QUESTIONS.len()];
        for routed in [false, true] {
            let mut body = json!({"content": question, "max_tokens": 16});
            if !routed {
                body["agent"] = json!(ids[index % ids.len()]);
            }
            let calls = proxy.count();
            let sent = Instant::now();
            let answer = api.call(&user, "POST", &path, Some(&body)).await?.body;
            let reply_call = proxy.last().ok_or("the model was not called")?;
            if index == 0 {
                continue;
            }
            let waited = reply_call.received.saturating_duration_since(sent);
            if routed {
                orchestrated.push(waited);
                let reason = answer["assistant_message"]["routing"]["reason"].as_str().unwrap_or_default();
                // The rule's reasons name it; the model's are its own words (two calls were made).
                let by_rule = reason.contains("heard from least recently") || reason.starts_with("the message names");
                if !by_rule && proxy.count() == calls + 2 {
                    report.picked_by_model += 1;
                }
            } else {
                direct.push(waited);
            }
        }
    }
    report.direct = Percentiles::new(direct);
    report.orchestrated = Percentiles::new(orchestrated);
    let usage = api.call(&user, "GET", "/v1/usage", None).await?.body;
    if let Some(kind) = usage["by_kind"].as_array().into_iter().flatten().find(|kind| kind["kind"] == "routing") {
        report.routing_calls = kind["messages"].as_u64().unwrap_or(0);
        report.routing_input_tokens = kind["input_tokens"].as_u64().unwrap_or(0);
        report.routing_output_tokens = kind["output_tokens"].as_u64().unwrap_or(0);
    }
    drop(model);
    Ok(report)
}

/// The section of BENCHMARKS.md.
pub fn markdown(report: &Report, out: &mut String) {
    let per_call =
        |tokens: u64| if report.routing_calls == 0 { 0.0 } else { tokens as f64 / report.routing_calls as f64 };
    let added = |p: f64| report.orchestrated.at(p) - report.direct.at(p);
    out.push_str(&format!(
        "## Group chats: routing\n\n\
         A session with three agents, {turns} direct replies (the agent named) and {turns} orchestrated ones \
         (the backend picks), one at a time, against the local model; the time from the request to the reply's own \
         provider call. The orchestrated reply first reads the newest messages and asks the model which agent answers \
         (a JSON Schema answer, at most 4 s, then the rule).\n\n\
         | | p50 | p99 |\n|---|---:|---:|\n\
         | direct: request → the reply's provider call | {d50:.1} ms | {d99:.1} ms |\n\
         | orchestrated: request → the reply's provider call | {o50:.1} ms | {o99:.1} ms |\n\
         | **added by routing** | **{a50:.1} ms** | **{a99:.1} ms** |\n\n\
         Routing calls metered in `/v1/usage` (`by_kind` `routing`): {calls}, {input:.0} tokens in and {output:.1} out \
         per call. The model's pick stood in {picked} of {turns} orchestrated replies; the rule chose the rest. \
         The answer's tokens are most of the call's time on a CPU-only 135M model (the reason is kept to 48 \
         characters, the answer to 40 tokens; the model pretty-prints its JSON, and the whitespace counts). A direct \
         reply (`agent` named, the web app's \"Ask …\") and a round (`mode: \"all\"`) make no routing call.\n\n\
         The first screen (`GET /v1/sessions?include=latest_messages&messages_limit=50`, in the operations table) \
         makes 4 DynamoDB calls: the per-minute rate counter every request writes, the sessions page (one query of \
         the activity index, which projects the whole item), then the latest session's item and its newest 50 \
         messages in parallel — 2 round trips in the handler after the counter.\n\n",
        turns = report.turns,
        d50 = report.direct.at(50.0),
        d99 = report.direct.at(99.0),
        o50 = report.orchestrated.at(50.0),
        o99 = report.orchestrated.at(99.0),
        a50 = added(50.0),
        a99 = added(99.0),
        calls = report.routing_calls,
        input = per_call(report.routing_input_tokens),
        output = per_call(report.routing_output_tokens),
        picked = report.picked_by_model,
    ));
}
