//! An OpenAI-compatible Chat Completions client (OpenAI, Azure OpenAI, OpenRouter, Groq, vLLM,
//! llama.cpp, Ollama): `POST {base_url}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`, read as Server-Sent Events.
//!
//! Thin on purpose (reqwest + eventsource-stream rather than a full SDK): compatible servers vary
//! in what they send, and this reads only what it needs and tolerates the rest — a last chunk with
//! `choices: []` carrying usage, `finish_reason` strings nobody documented (`""`, `"eos"`), a
//! `model` alias in the answer, chunks with unknown fields.

use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Model, ModelError, ModelEvent, ModelFinished, ModelStream, Prompt, StopReason, TokenCounts};

pub struct OpenAi {
    http: reqwest::Client,
    completions_url: String,
    api_key: Option<SecretString>,
}

impl OpenAi {
    /// `base_url` as providers document it, e.g. `https://api.openai.com/v1`.
    pub fn new(base_url: &str, api_key: Option<SecretString>, connect_timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let completions_url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        Ok(Self { http, completions_url, api_key })
    }

    async fn start(&self, prompt: Prompt) -> Result<ModelStream, ModelError> {
        let messages: Vec<_> = prompt
            .messages
            .iter()
            .map(|message| serde_json::json!({"role": message.role.as_str(), "content": message.content}))
            .collect();
        let mut body = serde_json::json!({
            "model": prompt.model,
            "messages": messages,
            "max_tokens": prompt.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(temperature) = prompt.temperature {
            body["temperature"] = serde_json::json!(temperature);
        }
        if let Some(shape) = &prompt.shape {
            body["response_format"] = serde_json::json!({
                "type": "json_schema",
                "json_schema": {"name": shape.name, "description": shape.description, "schema": shape.schema, "strict": true},
            });
        }
        let mut request = self.http.post(&self.completions_url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|error| ModelError::Unavailable(describe(&error)))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            return Err(refusal(status, retry_after, &text));
        }
        Ok(chunks(response.bytes_stream().eventsource().boxed()))
    }
}

impl Model for OpenAi {
    fn stream(&self, prompt: Prompt) -> BoxFuture<'_, Result<ModelStream, ModelError>> {
        Box::pin(self.start(prompt))
    }
}

/// A transport error, without the URL (some gateways carry a key in the query).
fn describe(error: &reqwest::Error) -> String {
    if error.is_connect() {
        return "cannot connect".to_owned();
    }
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let text = error.to_string();
    match error.url() {
        Some(url) => text.replace(url.as_str(), "<provider>"),
        None => text,
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What a non-2xx answer means. The context-length refusal is recognised by the codes servers
/// use for it (OpenAI `context_length_exceeded`, llama.cpp `exceed_context_size_error`, vLLM's
/// and others' messages about the maximum context length).
fn refusal(status: StatusCode, retry_after: Option<Duration>, body: &str) -> ModelError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return ModelError::Busy { retry_after };
    }
    if status.is_server_error() {
        return ModelError::Unavailable(format!("HTTP {}", status.as_u16()));
    }
    let lower = body.to_ascii_lowercase();
    let context = ["context_length_exceeded", "exceed_context_size", "maximum context length", "context window"];
    if context.iter().any(|marker| lower.contains(marker)) {
        return ModelError::ContextTooLong;
    }
    let message = serde_json::from_str::<ErrorEnvelope>(body)
        .ok()
        .and_then(|envelope| envelope.error)
        .and_then(|error| error.message)
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    ModelError::Rejected(message.chars().take(300).collect())
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ChunkUsage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn stop_reason(detail: &str) -> StopReason {
    match detail {
        "stop" | "end_turn" | "stop_sequence" | "eos" => StopReason::EndTurn,
        "length" | "max_tokens" => StopReason::MaxTokens,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::Other,
    }
}

/// Reading state: what the stream said so far about how it ends.
struct Reader {
    events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
    finish: Option<String>,
    usage: Option<TokenCounts>,
    pending: Vec<ModelEvent>,
    ended: bool,
}

impl Reader {
    fn finished(&mut self) -> ModelEvent {
        self.ended = true;
        let detail = self.finish.take().unwrap_or_default();
        ModelEvent::Finished(ModelFinished { stop: stop_reason(&detail), stop_detail: detail, usage: self.usage })
    }

    /// Takes one `data:` payload in; text pieces go to `pending`.
    fn read(&mut self, data: &str) -> Result<(), ModelError> {
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|_| ModelError::Malformed("a chunk is not JSON".into()))?;
        if let Some(error) = chunk.error {
            let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("error event").to_owned();
            return Err(ModelError::Unavailable(message.chars().take(300).collect()));
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.and_then(|delta| delta.content).filter(|text| !text.is_empty()) {
                self.pending.push(ModelEvent::Text(text));
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(reason);
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage =
                Some(TokenCounts { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens });
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<ModelEvent, ModelError>> {
        loop {
            if !self.pending.is_empty() {
                return Some(Ok(self.pending.remove(0)));
            }
            if self.ended {
                return None;
            }
            match self.events.next().await {
                Some(Ok(event)) if event.data.trim() == "[DONE]" => return Some(Ok(self.finished())),
                Some(Ok(event)) if event.data.trim().is_empty() => {}
                Some(Ok(event)) => {
                    if let Err(error) = self.read(&event.data) {
                        self.ended = true;
                        return Some(Err(error));
                    }
                }
                Some(Err(error)) => {
                    self.ended = true;
                    let error = match error {
                        EventStreamError::Transport(error) => ModelError::Unavailable(describe(&error)),
                        other => ModelError::Malformed(other.to_string()),
                    };
                    return Some(Err(error));
                }
                // Without `[DONE]`: complete if the model had said why it stopped (usage may be
                // missing: the caller estimates it), broken off otherwise.
                None if self.finish.is_some() => return Some(Ok(self.finished())),
                None => {
                    self.ended = true;
                    return Some(Err(ModelError::Unavailable("the stream ended before the answer did".into())));
                }
            }
        }
    }
}

fn chunks(events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>) -> ModelStream {
    let reader = Reader { events, finish: None, usage: None, pending: Vec::new(), ended: false };
    stream::unfold(reader, |mut reader| async move { reader.next().await.map(|item| (item, reader)) }).boxed()
}
