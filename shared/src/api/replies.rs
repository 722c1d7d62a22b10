//! Replies API shapes: the request bodies, the JSON answer, and the Server-Sent Events' data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::chat::ReplyOptions;
use crate::domain::{Content, InputError, Message, QuotaState, ReplyError, Seq, Timestamp};

/// `POST /v1/sessions/{id}/replies`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReply {
    /// The user's message, appended first; without it the model answers the log as it stands.
    pub content: Option<String>,
    /// One of `LLM_MODELS`; `LLM_MODEL` by default.
    pub model: Option<String>,
    /// At most `LLM_MAX_TOKENS` (the default).
    #[schemars(range(min = 1, max = 4096))]
    pub max_tokens: Option<u32>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
}

impl CreateReply {
    pub fn parse(self) -> Result<(Option<Content>, ReplyOptions), InputError> {
        let content = self.content.map(Content::written).transpose()?;
        Ok((content, ReplyOptions { model: self.model, max_tokens: self.max_tokens, temperature: self.temperature }))
    }
}

/// `POST /v1/sessions/{id}/messages/{seq}/regenerate`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    pub model: Option<String>,
    #[schemars(range(min = 1, max = 4096))]
    pub max_tokens: Option<u32>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
}

impl From<Regenerate> for ReplyOptions {
    fn from(body: Regenerate) -> Self {
        Self { model: body.model, max_tokens: body.max_tokens, temperature: body.temperature }
    }
}

/// The daily quota after a turn (-1: unlimited), as `X-RateLimit-*` give it.
#[derive(Clone, Copy, Debug, Serialize, JsonSchema)]
pub struct TurnLimits {
    pub limit: i64,
    pub remaining: i64,
    pub resets_at: Timestamp,
}

impl From<QuotaState> for TurnLimits {
    fn from(quota: QuotaState) -> Self {
        Self { limit: quota.limit, remaining: quota.remaining, resets_at: quota.resets_at }
    }
}

/// A turn: the user's message (absent for a reply to the log as it stands, and for a
/// regenerate), the assistant's reply, and the quota after it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyTurn {
    pub user_message: Option<Message>,
    pub assistant_message: Message,
    pub limits: Option<TurnLimits>,
}

/// `GET /v1/sessions/{id}/messages/{seq}/variants`: every generation, the first first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VariantList {
    pub data: Vec<Message>,
}

/// `reply.started`: the turn's messages, the reply `streaming`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyStarted {
    pub user_message: Option<Message>,
    pub assistant_message: Message,
}

/// `reply.delta`: the next piece of the reply's text. The pieces join to the stored content.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyDelta {
    pub seq: Seq,
    pub text: String,
}

/// `reply.completed`: the reply as stored (`complete`, `incomplete` or `cancelled`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyCompleted {
    pub assistant_message: Message,
    pub limits: Option<TurnLimits>,
}

/// `reply.failed`: the reply as stored (`failed`, with the text it had) and why.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyFailed {
    pub assistant_message: Message,
    pub error: ReplyError,
}

/// The data of a reply stream's events, by `event:` name (for the OpenAPI document).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ReplyEvent {
    Started(Box<ReplyStarted>),
    Delta(ReplyDelta),
    Completed(Box<ReplyCompleted>),
    Failed(Box<ReplyFailed>),
}
