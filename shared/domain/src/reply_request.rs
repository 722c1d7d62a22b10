//! What a caller asks of a reply, over HTTP (`POST …/replies`, `…/regenerate`) and over the socket
//! (`send_message`) alike: one type per request and one parse, so both doors refuse the same
//! input with the same words.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Content, InputError};

/// What a caller may choose about a reply; checked against the configuration by the service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplyOptions {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
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
}

impl CreateReply {
    /// The user's message (not blank) and the reply's options.
    pub fn parse(self) -> Result<(Option<Content>, ReplyOptions), InputError> {
        let content = self.content.map(Content::written).transpose()?;
        Ok((content, ReplyOptions { model: self.model, max_tokens: self.max_tokens, temperature: self.temperature }))
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
}

impl From<Regenerate> for ReplyOptions {
    fn from(body: Regenerate) -> Self {
        Self { model: body.model, max_tokens: body.max_tokens, temperature: body.temperature }
    }
}
