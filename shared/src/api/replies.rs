//! Replies API shapes: the request bodies, the JSON answer, and the Server-Sent Events' data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Message, MessagesLimit, ReplyError, Seq, ToolError};

pub use crate::domain::{CreateReply, Regenerate};

/// A turn: the user's message (absent for a reply to the log as it stands, and for a
/// regenerate), the assistant's reply, and the quota after it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyTurn {
    pub user_message: Option<Message>,
    pub assistant_message: Message,
    pub limits: Option<MessagesLimit>,
    /// With `mode: "all"`: every reply of the round as it ended, in order (`assistant_message`
    /// first); shorter than the session's agents when one was cancelled or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<Vec<Message>>,
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

/// `reply.tool_call`: the model called one of the session's tools (sent with its result: a call
/// is stored only together with its result).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyToolCall {
    pub seq: Seq,
    /// Unique in the reply; `reply.tool_result` names it.
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// `reply.tool_result`: what the call gave the model — the tool's JSON answer, or the error it
/// read instead (`timeout`, `http_error`, `too_large`, `invalid_json`, `unknown_tool`,
/// `invalid_arguments`, …).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyToolResult {
    pub seq: Seq,
    pub tool_call_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
}

/// `reply.completed`: the reply as stored (`complete`, `incomplete` or `cancelled`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplyCompleted {
    pub assistant_message: Message,
    pub limits: Option<MessagesLimit>,
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
    ToolCall(ReplyToolCall),
    ToolResult(ReplyToolResult),
    Completed(Box<ReplyCompleted>),
    Failed(Box<ReplyFailed>),
}

/// `POST /v1/sessions/{id}/messages/{seq}/tool-results`: a client tool's answer to one call of a
/// paused reply.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolResultInput {
    /// The call's `id` (from `reply.tool_call` or the reply's `parts`).
    #[schemars(length(min = 1, max = 64))]
    pub tool_call_id: String,
    /// The tool's answer: any JSON, at most 16 KiB; the model reads it as the call's result.
    pub output: serde_json::Value,
}
