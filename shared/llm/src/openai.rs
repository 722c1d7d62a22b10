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

use super::{
    Model, ModelError, ModelEvent, ModelFinished, ModelStream, Prompt, PromptRole, StopReason, TokenCounts, ToolRound,
    ToolUse,
};

pub struct OpenAi {
    http: reqwest::Client,
    completions_url: String,
    api_key: Option<SecretString>,
    /// Tools through the backend's own structured-output path rather than the server's `tools`.
    structured_tools: bool,
}

/// How a prompt's tools reach the server.
enum ToolPath {
    /// None to offer (no tools, or `tool_choice: none`).
    Off,
    /// The server's `tools` and `tool_choice`; calls come back as `tool_calls`.
    Native,
    /// A JSON Schema answer that is a call of one of the tools (or, when the model may choose, an
    /// answer): for servers whose template or parser does not do tool calls (llama.cpp with a
    /// small model's template).
    Structured,
}

impl OpenAi {
    /// `base_url` as providers document it, e.g. `https://api.openai.com/v1`.
    pub fn new(base_url: &str, api_key: Option<SecretString>, connect_timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let completions_url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        Ok(Self { http, completions_url, api_key, structured_tools: false })
    }

    /// Tools through a JSON Schema answer rather than the server's tool calling
    /// (`LLM_TOOL_CALLS=structured`).
    pub fn with_structured_tools(mut self, structured: bool) -> Self {
        self.structured_tools = structured;
        self
    }

    async fn start(&self, prompt: Prompt) -> Result<ModelStream, ModelError> {
        let path = match (prompt.tools.is_empty() || prompt.tool_choice == ToolUse::None, self.structured_tools) {
            (true, _) => ToolPath::Off,
            (false, false) => ToolPath::Native,
            (false, true) => ToolPath::Structured,
        };
        // Tool rounds go in the provider's format where tools are offered, else as text.
        let round = |round: &ToolRound| match path {
            ToolPath::Native => native_round(round),
            ToolPath::Structured | ToolPath::Off => text_round(round),
        };
        let mut messages = Vec::new();
        for message in &prompt.messages {
            messages.extend(message.rounds.iter().flat_map(round));
            if message.rounds.is_empty() || !message.content.is_empty() {
                messages.push(serde_json::json!({"role": message.role.as_str(), "content": message.content}));
            }
        }
        if matches!(path, ToolPath::Structured) {
            let guide = structured_guide(&prompt);
            match messages.first_mut() {
                Some(first) if prompt.messages.first().is_some_and(|m| m.role == PromptRole::System) => {
                    first["content"] = serde_json::json!(format!("{}\n\n{guide}", prompt.messages[0].content));
                }
                _ => messages.insert(0, serde_json::json!({"role": "system", "content": guide})),
            }
        }
        messages.extend(prompt.rounds.iter().flat_map(round));
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
        match path {
            ToolPath::Off => {}
            ToolPath::Native => {
                let tools: Vec<_> = prompt
                    .tools
                    .iter()
                    .map(|tool| {
                        serde_json::json!({"type": "function", "function": {
                            "name": tool.name, "description": tool.description, "parameters": tool.parameters,
                        }})
                    })
                    .collect();
                body["tools"] = serde_json::json!(tools);
                body["tool_choice"] = match &prompt.tool_choice {
                    ToolUse::Auto => serde_json::json!("auto"),
                    ToolUse::Required => serde_json::json!("required"),
                    ToolUse::None => serde_json::json!("none"),
                    ToolUse::Named(name) => serde_json::json!({"type": "function", "function": {"name": name}}),
                };
            }
            ToolPath::Structured => {
                // The call's JSON is not the answer: a round that may call gets room for it.
                body["max_tokens"] = serde_json::json!(prompt.max_tokens.max(STRUCTURED_MIN_TOKENS));
                body["response_format"] = serde_json::json!({
                    "type": "json_schema",
                    "json_schema": {"name": "call_or_answer", "schema": structured_schema(&prompt), "strict": true},
                });
            }
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
        Ok(chunks(response.bytes_stream().eventsource().boxed(), matches!(path, ToolPath::Structured)))
    }
}

/// The fewest tokens a round on the structured path may use: a small model pretty-prints its JSON,
/// and the call's text is not the reply's answer.
const STRUCTURED_MIN_TOKENS: u32 = 256;

/// The words that tell a model on the structured path what it may call and how.
fn structured_guide(prompt: &Prompt) -> String {
    let mut guide = String::from("You can call these tools:\n");
    for tool in &prompt.tools {
        guide.push_str(&format!("- {}: {} Arguments: {}\n", tool.name, tool.description, tool.parameters));
    }
    guide.push_str(match prompt.tool_choice {
        ToolUse::Auto => {
            "Answer with JSON only: {\"call\": <tool name>, \"arguments\": {...}} to call a tool, or \
             {\"answer\": <your reply>} when you can answer."
        }
        _ => "Answer with JSON only: {\"call\": <tool name>, \"arguments\": {...}} to call a tool.",
    });
    guide
}

/// The answer's schema on the structured path: a call of one of the tools (only the named one
/// when one is named), or — when the model may choose — an answer.
fn structured_schema(prompt: &Prompt) -> serde_json::Value {
    let mut branches: Vec<serde_json::Value> = prompt
        .tools
        .iter()
        .filter(|tool| match &prompt.tool_choice {
            ToolUse::Named(name) => &tool.name == name,
            _ => true,
        })
        .map(|tool| {
            serde_json::json!({
                "type": "object",
                "properties": {"call": {"type": "string", "enum": [tool.name]}, "arguments": tool.parameters},
                "required": ["call", "arguments"],
            })
        })
        .collect();
    if prompt.tool_choice == ToolUse::Auto {
        branches.push(serde_json::json!({
            "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
        }));
    }
    serde_json::json!({"anyOf": branches})
}

/// A round as Chat Completions carries tool calls: the assistant's `tool_calls`, then one `tool`
/// message per result.
fn native_round(round: &ToolRound) -> Vec<serde_json::Value> {
    let calls: Vec<_> = round
        .calls
        .iter()
        .map(|call| {
            serde_json::json!({"id": call.id, "type": "function", "function": {
                "name": call.name, "arguments": call.arguments.to_string(),
            }})
        })
        .collect();
    let content = if round.text.is_empty() { serde_json::Value::Null } else { serde_json::json!(round.text) };
    let mut messages = vec![serde_json::json!({"role": "assistant", "content": content, "tool_calls": calls})];
    for result in &round.results {
        messages.push(serde_json::json!({"role": "tool", "tool_call_id": result.id, "content": result.output_text()}));
    }
    messages
}

/// A round told as text (the structured path): the call as the model wrote it, then the results
/// as the user's turn.
fn text_round(round: &ToolRound) -> Vec<serde_json::Value> {
    let mut messages = Vec::new();
    for call in &round.calls {
        messages.push(serde_json::json!({"role": "assistant", "content": call.as_text()}));
    }
    let results: Vec<String> = round.results.iter().map(super::ToolOutcome::as_text).collect();
    if !results.is_empty() {
        messages.push(serde_json::json!({"role": "user", "content": results.join("\n")}));
    }
    messages
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
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

/// A piece of a streamed tool call: the first names it, the rest add to its arguments.
#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: usize,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// A call being streamed: its name and its arguments' JSON text so far.
#[derive(Default)]
struct PartialCall {
    name: String,
    arguments: String,
}

/// A call's arguments: their JSON, or the text as the model wrote it when it is not JSON (the
/// caller's schema check then refuses it).
fn arguments_of(text: &str) -> serde_json::Value {
    if text.trim().is_empty() {
        return serde_json::json!({});
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
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
    calls: Vec<PartialCall>,
    /// The structured path: the answer is JSON, a call or `{"answer": …}`, read at the end.
    structured: Option<String>,
    /// Characters of a structured answer's text already sent as `Text`.
    answered: usize,
}

impl Reader {
    /// The end: the calls the model made (or the structured answer's call or text), then
    /// `Finished`; the first of them returned, the rest pending.
    fn finished(&mut self) -> ModelEvent {
        self.ended = true;
        let detail = self.finish.take().unwrap_or_default();
        let mut events: Vec<ModelEvent> = self
            .calls
            .drain(..)
            .filter(|call| !call.name.is_empty())
            .map(|call| ModelEvent::ToolCall { name: call.name, arguments: arguments_of(&call.arguments) })
            .collect();
        if let Some(answer) = self.structured.take() {
            // The answer's text not streamed yet.
            events.extend(structured_answer(&answer).into_iter().filter_map(|event| match event {
                ModelEvent::Text(text) => {
                    let rest: String = text.chars().skip(self.answered).collect();
                    (!rest.is_empty()).then_some(ModelEvent::Text(rest))
                }
                other => Some(other),
            }));
        }
        events.push(ModelEvent::Finished(ModelFinished {
            stop: stop_reason(&detail),
            stop_detail: detail,
            usage: self.usage,
        }));
        let first = events.remove(0);
        self.pending.splice(0..0, events);
        first
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
            let Some(delta) = choice.delta else {
                if let Some(reason) = choice.finish_reason {
                    self.finish = Some(reason);
                }
                continue;
            };
            for call in delta.tool_calls {
                if self.calls.len() <= call.index {
                    self.calls.resize_with(call.index + 1, PartialCall::default);
                }
                if let (Some(function), Some(partial)) = (call.function, self.calls.get_mut(call.index)) {
                    partial.name.push_str(function.name.as_deref().unwrap_or_default());
                    partial.arguments.push_str(function.arguments.as_deref().unwrap_or_default());
                }
            }
            if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                match self.structured.as_mut() {
                    Some(answer) => {
                        answer.push_str(&text);
                        // An answer streams as it grows; a call is read at the end.
                        if let Some(sofar) = cut_answer(answer) {
                            let new: String = sofar.chars().skip(self.answered).collect();
                            if !new.is_empty() {
                                self.answered += new.chars().count();
                                self.pending.push(ModelEvent::Text(new));
                            }
                        }
                    }
                    None => self.pending.push(ModelEvent::Text(text)),
                }
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

/// What a structured answer holds: a call, or the answer's text. An answer cut off by
/// `max_tokens` keeps the text it had; a call cut off is no call (its arguments are unknown), and
/// the JSON itself is never shown as the reply.
fn structured_answer(answer: &str) -> Vec<ModelEvent> {
    let parsed: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(answer).ok();
    match parsed {
        Some(mut object) => match (object.remove("call"), object.remove("answer")) {
            (Some(serde_json::Value::String(name)), _) => {
                let arguments = object.remove("arguments").unwrap_or_else(|| serde_json::json!({}));
                vec![ModelEvent::ToolCall { name, arguments }]
            }
            (_, Some(serde_json::Value::String(text))) if !text.is_empty() => vec![ModelEvent::Text(text)],
            _ => Vec::new(),
        },
        None => cut_answer(answer).map(ModelEvent::Text).into_iter().collect(),
    }
}

/// The text of an `{"answer": "…` so far (the structured path streams it as it grows, and reads
/// what a cut-off answer had): the string's characters up to its end or to the last one complete
/// (an escape cut in half waits for the rest). `None` for anything else — a call, or not yet known.
fn cut_answer(answer: &str) -> Option<String> {
    let rest = answer.trim_start().strip_prefix('{')?.trim_start().strip_prefix("\"answer\"")?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let mut text = String::new();
    let mut chars = rest.chars().peekable();
    let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<u32> {
        let code: String = chars.by_ref().take(4).collect();
        if code.len() < 4 { None } else { u32::from_str_radix(&code, 16).ok() }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                Some('r') => text.push('\r'),
                Some('b') => text.push('\u{8}'),
                Some('f') => text.push('\u{c}'),
                Some('u') => {
                    let Some(high) = hex(&mut chars) else { break };
                    let code = if (0xD800..0xDC00).contains(&high) {
                        // A surrogate pair: the low half follows as another escape.
                        let (Some('\\'), Some('u')) = (chars.next(), chars.next()) else { break };
                        let Some(low) = hex(&mut chars) else { break };
                        0x10000 + ((high - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF)
                    } else {
                        high
                    };
                    if let Some(c) = char::from_u32(code) {
                        text.push(c);
                    }
                }
                Some(other) => text.push(other),
                None => break,
            },
            c => text.push(c),
        }
    }
    (!text.is_empty()).then_some(text)
}

fn chunks(
    events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
    structured: bool,
) -> ModelStream {
    let reader = Reader {
        events,
        finish: None,
        usage: None,
        pending: Vec::new(),
        ended: false,
        calls: Vec::new(),
        structured: structured.then(String::new),
        answered: 0,
    };
    stream::unfold(reader, |mut reader| async move { reader.next().await.map(|item| (item, reader)) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_structured_answer_is_a_call_an_answer_or_the_answer_so_far() {
        let call = structured_answer("{\n  \"call\": \"get_weather\",\n  \"arguments\": {\"city\": \"Paris\"}\n}");
        assert_eq!(
            call,
            vec![ModelEvent::ToolCall { name: "get_weather".into(), arguments: serde_json::json!({"city": "Paris"}) }]
        );
        assert_eq!(
            structured_answer("{\"answer\": \"It is 21 \\u00b0C.\"}"),
            vec![ModelEvent::Text("It is 21 °C.".into())]
        );
        assert_eq!(
            structured_answer("{\"answer\": \"It is sunny\\nand"),
            vec![ModelEvent::Text("It is sunny\nand".into())]
        );
        assert_eq!(structured_answer("{\n\"arguments\": {\n\"q\": \"x.x.x.x"), Vec::new(), "a cut-off call is nothing");
        assert_eq!(cut_answer("{\"call\": \"x\", \"arguments\": {\"answer\": \"no"), None, "only an answer's own text");
        assert_eq!(cut_answer("{ \"answer\" : \"caf\\u00e9 \\ud83d\\ude00 ok\"}").as_deref(), Some("café 😀 ok"));
        assert_eq!(cut_answer("{\"answer\": \"half \\u00"), Some("half ".to_owned()), "an escape cut in half waits");
    }
}
