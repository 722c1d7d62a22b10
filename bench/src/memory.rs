//! Memory extraction: its quality on the committed evaluation set (`bench/eval/memories.json`) —
//! precision, recall and duplicates of the memories the model writes — and its cost: tokens,
//! DynamoDB calls and write units per extraction, the time one takes, and the time from a reply's
//! end to its memories being readable through the stream reader, as the dev server runs it.
//!
//! Against the local model unless `LLM_BASE_URL` and `LLM_MODEL` name another OpenAI-compatible
//! provider (with `LLM_API_KEY` if it wants one): `scripts/bench.sh --memory-only` scores it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use shared::config::LlmConfig;
use shared::domain::{Seq, SessionId, UserId, fingerprint};
use shared::memory::{Extracted, ExtractionQueue};
use shared::realtime::Realtime;

use crate::BoxError;
use crate::meter;
use crate::server::{Api, token};
use crate::stats::Percentiles;

const EVALUATION_SET: &str = "bench/eval/memories.json";
/// What the timed turns say (a fact in each, so extraction has something to read).
const TURN: &str = "By the way, my name is Sam and I live in Lisbon with my two cats.";

#[derive(Deserialize)]
struct Set {
    conversations: Vec<Conversation>,
}

#[derive(Deserialize)]
struct Conversation {
    id: String,
    turns: Vec<(String, String)>,
    /// Each fact: alternatives; each alternative: word stems that must all begin words of one memory.
    facts: Vec<Vec<String>>,
}

/// Precision, recall and duplicates of one group of conversations.
#[derive(Clone, Debug, Default)]
pub struct Score {
    pub conversations: usize,
    pub facts: usize,
    pub found: usize,
    pub memories: usize,
    /// Memories that state an expected fact.
    pub relevant: usize,
    /// Memories stating a fact an earlier memory of the conversation already stated.
    pub duplicates: usize,
}

impl Score {
    fn add(&mut self, other: &Score) {
        self.conversations += other.conversations;
        self.facts += other.facts;
        self.found += other.found;
        self.memories += other.memories;
        self.relevant += other.relevant;
        self.duplicates += other.duplicates;
    }

    fn ratio(part: usize, whole: usize) -> String {
        if whole == 0 { "–".to_owned() } else { format!("{:.2}", part as f64 / whole as f64) }
    }
}

#[derive(Default)]
pub struct Report {
    pub model: String,
    pub english: Score,
    pub russian: Score,
    /// Outcomes that were not stored decisions (an answer not in the shape).
    pub unreadable: usize,
    pub input_tokens: Vec<u64>,
    pub output_tokens: Vec<u64>,
    pub calls: Vec<u64>,
    pub write_units: Vec<f64>,
    pub extraction: Option<Percentiles>,
    pub readable_after: Option<Percentiles>,
    pub turns: usize,
    pub summary: SummaryCost,
}

/// What summarizing a 60-message log (window 8) cost.
#[derive(Default)]
pub struct SummaryCost {
    pub calls: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub dynamodb_calls: u64,
    pub write_units: f64,
    pub time: Duration,
    pub through_seq: u64,
}

/// Whether a memory states a fact: every stem of one alternative begins one of its words.
fn states(memory: &str, fact: &[String]) -> bool {
    let words: Vec<String> = fingerprint(memory).split(' ').map(str::to_owned).collect();
    fact.iter().any(|alternative| {
        fingerprint(alternative).split(' ').all(|stem| words.iter().any(|word| word.starts_with(stem)))
    })
}

/// Scores one conversation's memories against its facts.
fn score(memories: &[String], facts: &[Vec<String>]) -> Score {
    let mut stated = vec![false; facts.len()];
    let (mut relevant, mut duplicates) = (0, 0);
    for memory in memories {
        let hits: Vec<usize> = (0..facts.len()).filter(|&index| states(memory, &facts[index])).collect();
        if hits.is_empty() {
            continue;
        }
        relevant += 1;
        if hits.iter().all(|&index| stated[index]) {
            duplicates += 1;
        }
        for index in hits {
            stated[index] = true;
        }
    }
    Score {
        conversations: 1,
        facts: facts.len(),
        found: stated.iter().filter(|&&found| found).count(),
        memories: memories.len(),
        relevant,
        duplicates,
    }
}

/// The provider extraction is scored against: `LLM_BASE_URL` + `LLM_MODEL`, else the local model.
fn provider() -> Result<(LlmConfig, Option<kit::local_model::LocalModel>), BoxError> {
    match (std::env::var("LLM_BASE_URL"), std::env::var("LLM_MODEL")) {
        (Ok(base), Ok(model)) if !base.is_empty() && !model.is_empty() => {
            let mut llm = LlmConfig::openai(base, model);
            if let Ok(key) = std::env::var("LLM_API_KEY") {
                llm.provider = shared::config::LlmProvider::OpenAi {
                    base_url: std::env::var("LLM_BASE_URL")?,
                    api_key: Some(key.into()),
                };
            }
            Ok((llm, None))
        }
        _ => {
            let model = kit::local_model::start(2)?;
            let mut llm = LlmConfig::openai(&model.base_url, kit::local_model::MODEL_ALIAS);
            llm.context_tokens = 2048;
            llm.max_tokens = 64;
            Ok((llm, Some(model)))
        }
    }
}

pub async fn run(endpoint: &str, conversations: usize, turns: usize) -> Result<Report, BoxError> {
    let (llm, _model) = provider()?;
    let model = llm.model.clone();
    let api = Api::start_with(endpoint, Some(llm)).await?;
    let extractor = api.state.extractor.clone().ok_or("no extractor: a model is configured")?;
    let set: Set = serde_json::from_str(&std::fs::read_to_string(EVALUATION_SET)?)?;
    let mut report = Report { model, turns, ..Report::default() };
    let mut times = Vec::new();
    for conversation in set.conversations.iter().take(conversations) {
        let user = format!("memory-{}", uuid::Uuid::new_v4().simple());
        let token = token(&user)?;
        let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"settings": {"memory": "auto"}}))).await?;
        let session = session.body["id"].as_str().ok_or("session id")?.to_owned();
        let messages: Vec<Value> =
            conversation.turns.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
        let path = format!("/v1/sessions/{session}/messages/batch");
        api.call(&token, "POST", &path, Some(&json!({"messages": messages}))).await?;
        let (user_id, session_id) = (UserId::parse(&user).ok_or("user")?, session.parse::<SessionId>()?);
        let through = Seq::new(conversation.turns.len() as u64).ok_or("seq")?;
        let before = meter::totals();
        let started = Instant::now();
        let outcome = extractor.extract(&user_id, session_id, through).await?;
        times.push(started.elapsed());
        let after = meter::totals();
        report.calls.push(after.calls - before.calls);
        report.write_units.push(api.billed_between(&before, &after).await?);
        match &outcome {
            Extracted::Stored { usage: Some(usage), .. } => {
                report.input_tokens.push(usage.input_tokens);
                report.output_tokens.push(usage.output_tokens);
            }
            Extracted::Unreadable => report.unreadable += 1,
            _ => {}
        }
        let listed = api
            .call(&token, "GET", &format!("/v1/memories?session_id={session}&include_global=true&limit=100"), None)
            .await?;
        let memories: Vec<String> = listed.body["data"]
            .as_array()
            .ok_or("memories")?
            .iter()
            .filter_map(|memory| memory["content"].as_str().map(str::to_owned))
            .collect();
        let scored = score(&memories, &conversation.facts);
        let group = if conversation.id.starts_with("ru-") { &mut report.russian } else { &mut report.english };
        group.add(&scored);
        eprintln!("  {}: {} memories, {}/{} facts", conversation.id, scored.memories, scored.found, scored.facts);
    }
    report.extraction = Some(Percentiles::new(times));
    report.summary = summary(&api).await?;
    report.readable_after = Some(readable_after(&api, turns).await?);
    Ok(report)
}

/// A 60-message log (10 estimated tokens a line … 27) summarized from nothing: its calls, tokens,
/// DynamoDB calls and write units.
async fn summary(api: &Api) -> Result<SummaryCost, BoxError> {
    let user = format!("memory-summary-{}", uuid::Uuid::new_v4().simple());
    let token = token(&user)?;
    let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"title": "a long trip"}))).await?;
    let session = session.body["id"].as_str().ok_or("session id")?.to_owned();
    for chunk in 0..3 {
        let messages: Vec<Value> = (1..=20)
            .map(|index| {
                let n = chunk * 20 + index;
                let role = if n % 2 == 1 { "user" } else { "assistant" };
                json!({"role": role, "content": format!(
                    "Message {n}: we sailed further along the coast, past the lighthouse and the old harbour, talking about the map."
                )})
            })
            .collect();
        let path = format!("/v1/sessions/{session}/messages/batch");
        api.call(&token, "POST", &path, Some(&json!({"messages": messages}))).await?;
    }
    let extractor = api.state.extractor.clone().ok_or("no extractor")?;
    let (user_id, session_id) = (UserId::parse(&user).ok_or("user")?, session.parse::<SessionId>()?);
    let before = meter::totals();
    let started = Instant::now();
    let done = extractor.summarize(&user_id, session_id).await?;
    let time = started.elapsed();
    let after = meter::totals();
    let summary = api.state.store.session_summary(&user_id, session_id).await?;
    Ok(SummaryCost {
        calls: done.calls,
        input_tokens: done.usage.iter().map(|usage| usage.input_tokens).sum(),
        output_tokens: done.usage.iter().map(|usage| usage.output_tokens).sum(),
        dynamodb_calls: after.calls - before.calls,
        write_units: api.billed_between(&before, &after).await?,
        time,
        through_seq: summary.map_or(0, |summary| summary.through_seq.get()),
    })
}

/// Replies through the API with the stream reader and extraction running as in the dev server:
/// the time from each reply's answer to the session's mark reaching it.
async fn readable_after(api: &Api, turns: usize) -> Result<Percentiles, BoxError> {
    let hub = Arc::new(dev::hub::LocalHub::default());
    let extraction = api.state.extractor.clone().map(ExtractionQueue::new);
    let sdk = kit::dynamodb_local::sdk_config(&api.endpoint);
    let realtime = Realtime::new(api.state.clone(), hub);
    let _followers = dev::streams::follow(&sdk, None, api.state.store.tables(), realtime, extraction).await?;
    let user = format!("memory-turns-{}", uuid::Uuid::new_v4().simple());
    let token = token(&user)?;
    let user_id = UserId::parse(&user).ok_or("user")?;
    let mut samples = Vec::new();
    for _ in 0..turns {
        let session = api.call(&token, "POST", "/v1/sessions", Some(&json!({"settings": {"memory": "auto"}}))).await?;
        let session = session.body["id"].as_str().ok_or("session id")?.to_owned();
        let path = format!("/v1/sessions/{session}/replies");
        let answer = api.call(&token, "POST", &path, Some(&json!({"content": TURN, "max_tokens": 48}))).await?;
        let answered = Instant::now();
        let seq = Seq::new(answer.body["assistant_message"]["seq"].as_u64().ok_or("seq")?).ok_or("seq")?;
        let session_id: SessionId = session.parse()?;
        loop {
            if api.state.store.extraction_mark(&user_id, session_id).await?.is_some_and(|mark| mark >= seq) {
                samples.push(answered.elapsed());
                break;
            }
            if answered.elapsed() > Duration::from_secs(180) {
                return Err("extraction did not read a turn within 180 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Percentiles::new(samples))
}

fn mean<T: Copy + Into<f64>>(values: &[T]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().map(|&v| v.into()).sum::<f64>() / values.len() as f64 }
}

pub fn markdown(report: &Report, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "## Memory extraction ({})\n\n\
         The evaluation set (`{EVALUATION_SET}`: {} conversations, English and Russian, with the facts a reader \
         would expect, and small talk with none) through the real pipeline — the prompt with its JSON Schema, the \
         checks, consolidation, the batch's transaction — each conversation appended to a fresh session and read \
         once. A memory is relevant when it states an expected fact (word stems, see the set); precision is relevant \
         memories over memories, recall facts stated over facts, duplicates memories that state only facts an \
         earlier memory stated. Score another OpenAI-compatible provider with \
         `LLM_BASE_URL=… LLM_MODEL=… [LLM_API_KEY=…] scripts/bench.sh --memory-only`.\n",
        report.model,
        report.english.conversations + report.russian.conversations
    );
    out.push_str("| conversations | facts | memories | precision | recall | duplicates |\n|---|---|---|---|---|---|\n");
    let mut all = report.english.clone();
    all.add(&report.russian);
    for (name, score) in [("English", &report.english), ("Russian", &report.russian), ("all", &all)] {
        let _ = writeln!(
            out,
            "| {name} ({}) | {} | {} | {} | {} | {} |",
            score.conversations,
            score.facts,
            score.memories,
            Score::ratio(score.relevant, score.memories),
            Score::ratio(score.found, score.facts),
            Score::ratio(score.duplicates, score.memories)
        );
    }
    let ms = |p: &Option<Percentiles>, at: f64| p.as_ref().map_or(0.0, |p| p.at(at));
    let _ = writeln!(
        out,
        "\n| cost per extraction | value |\n|---|---|\n\
         | model calls | 1 (answers not in the shape: {} of {}) |\n\
         | input / output tokens (mean) | {:.0} / {:.0} |\n\
         | DynamoDB calls (mean) | {:.1} |\n\
         | write units, billed as AWS bills (mean) | {:.2} |\n\
         | time of one extraction p50 / p99 (ms) | {:.0} / {:.0} |\n\
         | a reply's end → its memories readable, through the stream reader, p50 / p99 (ms, {} turns) | {:.0} / {:.0} |\n",
        report.unreadable,
        report.calls.len(),
        mean(&report.input_tokens.iter().map(|&t| t as f64).collect::<Vec<_>>()),
        mean(&report.output_tokens.iter().map(|&t| t as f64).collect::<Vec<_>>()),
        mean(&report.calls.iter().map(|&c| c as f64).collect::<Vec<_>>()),
        mean(&report.write_units),
        ms(&report.extraction, 50.0),
        ms(&report.extraction, 99.0),
        report.turns,
        ms(&report.readable_after, 50.0),
        ms(&report.readable_after, 99.0),
    );
    let summary = &report.summary;
    let _ = writeln!(
        out,
        "Summaries: a 60-message log (27 estimated tokens a message, recent window 8, step 1000 tokens, the \
         model's context 2048) summarized from nothing — {} model call(s), {} input / {} output tokens, {} DynamoDB \
         calls, {:.2} write units billed, {:.0} ms; the summary covers seqs 1–{}.\n",
        summary.calls,
        summary.input_tokens,
        summary.output_tokens,
        summary.dynamodb_calls,
        summary.write_units,
        summary.time.as_secs_f64() * 1000.0,
        summary.through_seq
    );
    out.push_str(
        "Extraction runs after the reply, off its path: the reply's own write units and latency are the rows \
         above, unchanged. Its tokens are in `/v1/usage` as the `memory` kind, never messages or quota.\n\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(alternatives: &[&str]) -> Vec<String> {
        alternatives.iter().map(|alternative| (*alternative).to_owned()).collect()
    }

    #[test]
    fn a_memory_states_a_fact_when_every_stem_of_an_alternative_begins_one_of_its_words() {
        assert!(states("Пользователь живёт в Москве.", &fact(&["москв"])));
        assert!(states("The user works night shifts", &fact(&["night shift", "nights"])));
        assert!(!states("The user works at night", &fact(&["night shift"])));
        let memories =
            ["The user is Anna".to_owned(), "Anna is the user's name".to_owned(), "The sky is blue".to_owned()];
        let scored = score(&memories, &[fact(&["anna"]), fact(&["berlin"])]);
        assert_eq!((scored.memories, scored.relevant, scored.duplicates, scored.found, scored.facts), (3, 2, 1, 1, 2));
    }
}
