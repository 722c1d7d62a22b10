//! What a caller asks of a reply, over HTTP (`POST …/replies`, `…/regenerate`) and over the socket
//! (`send_message`) alike: one type per request and one parse, so both doors refuse the same
//! input with the same words.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CharacterId, Content, InputError, ToolChoice, ToolChoiceInput};

/// How a reply's agent is chosen in a session with agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplyMode {
    /// The agent the request names answers.
    Direct,
    /// The backend picks one of the session's agents (the default with several).
    Orchestrated,
    /// Every agent of the session answers once, in the session's order, each seeing the answers
    /// before its own (a group round).
    All,
}

impl ReplyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Orchestrated => "orchestrated",
            Self::All => "all",
        }
    }
}

impl std::str::FromStr for ReplyMode {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "direct" => Ok(Self::Direct),
            "orchestrated" => Ok(Self::Orchestrated),
            "all" => Ok(Self::All),
            _ => Err(InputError::invalid("mode", "must be direct, orchestrated or all")),
        }
    }
}

/// How a reply's agent was chosen: `mode`, and a few words on why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Routing {
    pub mode: ReplyMode,
    pub reason: String,
}

/// What a caller may choose about a reply; checked against the configuration by the service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplyOptions {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// The agent that answers (one of the session's agents).
    pub agent: Option<CharacterId>,
    pub mode: Option<ReplyMode>,
    /// Whether the model may, must or must not call the session's tools (first round).
    pub tool_choice: Option<ToolChoice>,
}

/// `POST /v1/sessions/{id}/replies`, and the socket's `send_message`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, JsonSchema)]
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
    /// The agent that answers: one of the session's `agents` (404 `agent_not_found` when the
    /// catalog has no such character, 409 `agent_not_in_session` when the session does not).
    pub agent: Option<CharacterId>,
    /// `direct` (needs `agent`), `orchestrated` (the backend picks; the default when the
    /// session has several agents and none is named) or `all` (every agent of the session
    /// answers once, in turn, each seeing the answers before it: one quota unit for the user's
    /// message; a cancel or a failure ends the round).
    pub mode: Option<ReplyMode>,
    /// `auto` (the default: the model decides), `required` (it must call one of the session's
    /// tools first), `none`, or `{"name": "…"}` (it must call that tool first).
    pub tool_choice: Option<ToolChoiceInput>,
}

impl CreateReply {
    /// The user's message (not blank) and the reply's options.
    pub fn parse(self) -> Result<(Option<Content>, ReplyOptions), InputError> {
        let content = self.content.map(Content::written).transpose()?;
        if self.mode == Some(ReplyMode::Direct) && self.agent.is_none() {
            return Err(InputError::invalid("agent", "is required with mode direct"));
        }
        if self.mode == Some(ReplyMode::All) && self.agent.is_some() {
            return Err(InputError::invalid("agent", "is not taken with mode all: every agent answers"));
        }
        let options = ReplyOptions {
            model: self.model,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            agent: self.agent,
            mode: self.mode,
            tool_choice: self.tool_choice.map(ToolChoiceInput::parse).transpose()?,
        };
        Ok((content, options))
    }
}

/// `POST /v1/sessions/{id}/messages/{seq}/regenerate`
#[derive(Clone, Debug, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    pub model: Option<String>,
    #[schemars(range(min = 1, max = 4096))]
    pub max_tokens: Option<u32>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    /// Another of the session's agents answers instead (default: the one that answered).
    pub agent: Option<CharacterId>,
}

impl From<Regenerate> for ReplyOptions {
    fn from(body: Regenerate) -> Self {
        let agent_mode = body.agent.as_ref().map(|_| ReplyMode::Direct);
        Self {
            model: body.model,
            max_tokens: body.max_tokens,
            temperature: body.temperature,
            agent: body.agent,
            mode: agent_mode,
            tool_choice: None,
        }
    }
}
