//! How the model behind replies is reached and bounded; read from the environment by the edge.

use secrecy::SecretString;

/// Which model provider answers replies.
#[derive(Clone, Debug)]
pub enum LlmProvider {
    /// Any OpenAI-compatible Chat Completions endpoint (`LLM_BASE_URL`, e.g.
    /// `https://api.openai.com/v1`; `LLM_API_KEY` if it wants one).
    OpenAi { base_url: String, api_key: Option<SecretString> },
    /// Amazon Bedrock ConverseStream, with the function's IAM role (and
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` when set, as the AWS SDKs read it).
    Bedrock,
}

/// The model behind `POST …/replies`. Absent (no `LLM_PROVIDER`, no `LLM_BASE_URL`): replies
/// answer 503 and every other route works.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    pub provider: LlmProvider,
    /// The model a reply uses unless the request names another (`LLM_MODEL`, required).
    pub model: String,
    /// The `model` values a request may name (`LLM_MODELS`, comma-separated; `LLM_MODEL` always).
    pub models: Vec<String>,
    /// How long the provider may take to start answering, and between two pieces of the answer
    /// (`LLM_TIMEOUT_SECS`, default 25: under the HTTP API's 30 s integration limit).
    pub timeout_secs: u64,
    /// The model's context window in tokens (`LLM_CONTEXT_TOKENS`, default 8192).
    pub context_tokens: u64,
    /// A reply's `max_tokens`, and the most a request may ask for (`LLM_MAX_TOKENS`, default 1024).
    pub max_tokens: u32,
    /// The newest messages a reply's context starts from, before trimming to the window
    /// (`LLM_CONTEXT_MESSAGES`, 1 to 100, default 8).
    pub context_messages: u32,
    /// The most a reply may take from its start to its end (`LLM_REPLY_TIMEOUT_SECS`, default
    /// 120). A reply that reaches it ends `incomplete` with `finish_reason: "timeout"` and the
    /// text it has; on AWS each function sets it below its own timeout.
    pub reply_timeout_secs: u64,
    /// A streaming reply's lease (`REPLY_LEASE_SECS`, 3 to 60, default 30): its generator renews
    /// it at least every third of it; a reply whose lease passed is ended by whoever meets it.
    pub lease_secs: u64,
    /// Replies one process generates at once (`LLM_CONCURRENCY`; unset: no limit — on Lambda an
    /// instance serves one request at a time). Sized to the model's slots, it keeps a busy model
    /// from slowing every reply down: as many again may wait up to `ADMISSION_WAIT` for a turn,
    /// and the rest are refused up front (503 `llm_busy` with `Retry-After`, nothing stored).
    pub concurrency: Option<u32>,
    /// How tool calls reach an OpenAI-compatible server (`LLM_TOOL_CALLS`): `native` (its
    /// `tools` and `tool_choice`, the default) or `structured` (a JSON Schema answer that is a
    /// call or an answer, for servers whose template or parser cannot call tools — llama.cpp with
    /// SmolLM2, the local model). Bedrock always uses Converse's own tool use.
    pub structured_tools: bool,
}

impl LlmConfig {
    /// An OpenAI-compatible endpoint serving `model`, with the documented defaults.
    pub fn openai(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        let model = model.into();
        Self {
            provider: LlmProvider::OpenAi { base_url: base_url.into(), api_key: None },
            models: vec![model.clone()],
            model,
            timeout_secs: 25,
            context_tokens: 8192,
            max_tokens: 1024,
            context_messages: 8,
            reply_timeout_secs: 120,
            lease_secs: 30,
            concurrency: None,
            structured_tools: false,
        }
    }
}
