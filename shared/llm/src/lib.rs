//! `llm`: the model port: what the chat service asks of a language model, and the two real providers
//! behind it — any OpenAI-compatible Chat Completions endpoint (`openai`) and Amazon Bedrock's
//! ConverseStream (`bedrock`). A provider turns a prompt into a stream of text pieces ending in
//! one `Finished`; everything it can go wrong with is a `ModelError` the API maps to a status.
//! Timeouts, checkpoints and cancellation belong to the caller (`service`'s replies), not to a
//! provider.
//!
//! Architecture invariant: this crate knows neither DynamoDB nor HTTP routing nor the product's
//! domain types — a prompt is plain roles and strings — so a new provider is one module here and
//! nothing else changes. It never logs a prompt or an answer.

mod bedrock;
mod config;
mod openai;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use self::bedrock::Bedrock;
pub use self::config::{LlmConfig, LlmProvider};
pub use self::openai::OpenAi;

/// Who said a prompt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptRole {
    System,
    User,
    Assistant,
}

impl PromptRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One turn of the conversation. An assistant's turn that called tools carries its rounds — the
/// calls and results before its `content` — which each provider sends in its own format.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptMessage {
    pub role: PromptRole,
    pub content: String,
    pub rounds: Vec<ToolRound>,
}

impl PromptMessage {
    pub fn new(role: PromptRole, content: String) -> Self {
        Self { role, content, rounds: Vec::new() }
    }
}

/// One request to a model: the model's name as the provider knows it, the conversation, limits,
/// and the shape of the answer when it must be data rather than prose.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub model: String,
    pub messages: Vec<PromptMessage>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub shape: Option<AnswerShape>,
    /// Tools the model may call; empty: none.
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolUse,
    /// This answer's earlier rounds: what the model called and what came back, after `messages`.
    pub rounds: Vec<ToolRound>,
}

impl Prompt {
    /// A prompt without tools.
    pub fn new(model: String, messages: Vec<PromptMessage>, max_tokens: u32) -> Self {
        Self {
            model,
            messages,
            max_tokens,
            temperature: None,
            shape: None,
            tools: Vec::new(),
            tool_choice: ToolUse::Auto,
            rounds: Vec::new(),
        }
    }
}

/// A tool as the model is told of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema object for the arguments.
    pub parameters: serde_json::Value,
}

/// Whether the model may, must or must not call a tool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolUse {
    #[default]
    Auto,
    Required,
    None,
    /// It must call this one.
    Named(String),
}

/// A call the model made. The id is the caller's (the same in the call and in its result when
/// they are sent back); providers' own ids are not kept.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCallSpec {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// A call's result as the model reads it: the tool's JSON answer, or an error's words.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutcome {
    pub id: String,
    pub name: String,
    pub output: Result<serde_json::Value, String>,
}

impl ToolCallSpec {
    /// The call as a model told rounds as text reads it (as the structured path has it write one).
    fn as_text(&self) -> String {
        serde_json::json!({"call": self.name, "arguments": self.arguments}).to_string()
    }
}

impl ToolOutcome {
    /// The result as text: the tool's JSON, or `{"error": …}`.
    fn output_text(&self) -> String {
        match &self.output {
            Ok(value) => value.to_string(),
            Err(error) => serde_json::json!({"error": error}).to_string(),
        }
    }

    /// The result told as text, in the user's turn.
    fn as_text(&self) -> String {
        format!("Result of {}: {}", self.name, self.output_text())
    }
}

/// One earlier round of this answer: the text the model said first, its calls, their results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolRound {
    pub text: String,
    pub calls: Vec<ToolCallSpec>,
    pub results: Vec<ToolOutcome>,
}

/// An answer that is one JSON value valid against `schema` (a JSON Schema object). Each provider
/// asks for it its own way — OpenAI-compatible servers (llama.cpp among them) by `response_format:
/// json_schema`, which constrains the sampling; Bedrock's Converse by one tool the model must
/// call, whose input is the answer — and streams the JSON as `Text`.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerShape {
    /// A name for the shape (letters, digits, `_`, `-`): the schema's or the tool's name.
    pub name: String,
    pub description: String,
    pub schema: serde_json::Value,
}

/// Why the model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It finished its answer (`stop`, `end_turn`, `stop_sequence`).
    EndTurn,
    /// It hit `max_tokens` (`length`, `max_tokens`).
    MaxTokens,
    /// The provider filtered it (`content_filter`, `guardrail_intervened`).
    ContentFilter,
    /// Anything else a server sends; kept as it was said in `ModelFinished::stop_detail`.
    Other,
}

/// Tokens as the provider counted them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCounts {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFinished {
    pub stop: StopReason,
    /// The provider's own word for the stop (`"stop"`, `"end_turn"`, `""` …).
    pub stop_detail: String,
    /// `None` when the stream ended before the provider reported usage.
    pub usage: Option<TokenCounts>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelEvent {
    Text(String),
    /// A call of one of the prompt's tools (its id is empty: the caller names calls).
    ToolCall {
        name: String,
        arguments: serde_json::Value,
    },
    Finished(ModelFinished),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Unreachable, a 5xx, a stream broken off or an error event mid-stream: worth retrying.
    #[error("the model provider failed: {0}")]
    Unavailable(String),
    /// The provider is rate limiting us (429, Bedrock's ThrottlingException).
    #[error("the model provider is busy")]
    Busy { retry_after: Option<Duration> },
    /// No answer (or no next piece) within the configured time.
    #[error("the model provider did not answer in time")]
    Timeout,
    /// The prompt is longer than the model's context window.
    #[error("the conversation is too long for the model's context window")]
    ContextTooLong,
    /// The provider refused the request as invalid (4xx): not worth retrying.
    #[error("the model provider refused the request: {0}")]
    Rejected(String),
    /// The provider sent something that is not its protocol.
    #[error("the model provider sent a malformed answer: {0}")]
    Malformed(String),
}

impl ModelError {
    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::ContextTooLong | Self::Rejected(_))
    }
}

pub type ModelStream = BoxStream<'static, Result<ModelEvent, ModelError>>;

/// A language model. One real implementation per provider; tests inject faults at the wire
/// (an endpoint that misbehaves), never with a second implementation of this trait.
pub trait Model: Send + Sync {
    /// Starts a streamed answer: resolves once the provider has accepted the request.
    fn stream(&self, prompt: Prompt) -> BoxFuture<'_, Result<ModelStream, ModelError>>;
}
