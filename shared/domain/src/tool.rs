//! Tools an agent may call during a reply: their declarations (on a session), the choice a reply
//! makes about them, and the parts a reply stores — its text, each call and each call's result, in
//! order. A call is stored only together with its result: a timeout or an error is a result too.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::InputError;

/// The most tools a session declares.
pub const MAX_TOOLS: usize = 8;
/// A tool's `timeout_ms` unless it says: 10 s.
pub const TOOL_TIMEOUT_DEFAULT_MS: u32 = 10_000;
/// The longest `timeout_ms` a tool may ask for: 30 s.
pub const TOOL_TIMEOUT_MAX_MS: u32 = 30_000;
/// The most model calls one reply makes (each may call tools; the last one must answer).
pub const MAX_TOOL_ROUNDS: usize = 4;
/// A tool's `parameters` schema, and the arguments of a call, as JSON: at most 8 KiB.
pub const MAX_SCHEMA_BYTES: usize = 8 * 1024;
/// A tool's answer kept as its result (and read from an HTTP tool): at most 16 KiB of JSON.
pub const MAX_RESULT_BYTES: usize = 16 * 1024;

/// How a tool is run: the server POSTs the call to the tool's `url` (`http`), the reply pauses
/// until the client answers the call (`client`), or the server runs one of its own tools, chosen
/// by the name (`builtin`: `remember`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    Http,
    Client,
    Builtin,
}

/// The tools the server runs itself (`kind: "builtin"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// Writes a memory about the user through the memories' rules (origin `extracted`, its
    /// source the turn that asked for it).
    Remember,
}

impl Builtin {
    pub const NAMES: &'static str = "remember";

    pub fn named(name: &str) -> Option<Self> {
        match name {
            "remember" => Some(Self::Remember),
            _ => None,
        }
    }

    /// What the model reads about the tool unless the declaration says otherwise.
    pub fn description(self) -> &'static str {
        match self {
            Self::Remember => {
                "Remember a lasting fact about the user (their name, work, family, likes, plans) for later \
                 conversations. Call it when the user tells you something worth keeping; one short sentence \
                 about the user."
            }
        }
    }

    /// The schema of its arguments (fixed: a declaration cannot change it).
    pub fn parameters(self) -> serde_json::Value {
        match self {
            Self::Remember => serde_json::json!({
                "type": "object",
                "properties": {
                    "content": {
                        "type": "string", "minLength": 1, "maxLength": super::MemoryContent::MAX_CHARS,
                        "description": "The fact, as one short sentence about the user"
                    },
                    "memory_type": {"type": "string", "enum": ["fact", "preference", "emotion", "relationship"]},
                    "importance": {"type": "integer", "minimum": 1, "maximum": 10},
                    "scope": {
                        "type": "string", "enum": ["user", "session"],
                        "description": "user: true of the user anywhere (the default); session: only this conversation"
                    }
                },
                "required": ["content"],
                "additionalProperties": false
            }),
        }
    }
}

/// The arguments of a `remember` call (already checked against its schema).
#[derive(Clone, Debug, Deserialize)]
pub struct RememberArguments {
    pub content: String,
    #[serde(default)]
    pub memory_type: Option<super::MemoryType>,
    #[serde(default)]
    pub importance: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl RememberArguments {
    /// The memory these arguments ask for, read from `source` (the turn that asked for it).
    pub fn new_memory(self, source: super::MemorySource) -> Result<super::NewMemory, InputError> {
        let scope = match self.scope.as_deref() {
            None | Some("user") => super::MemoryScope::Global,
            Some("session") => super::MemoryScope::Session(source.session_id),
            Some(_) => return Err(InputError::invalid("scope", "must be user or session")),
        };
        Ok(super::NewMemory {
            scope,
            memory_type: self.memory_type.unwrap_or(super::MemoryType::Fact),
            content: super::MemoryContent::parse(self.content.trim().to_owned())?,
            importance: self
                .importance
                .map(|value| super::Importance::new("importance", value))
                .transpose()?
                .unwrap_or(super::Importance::DEFAULT),
            source: Some(source),
        })
    }
}

/// A tool's name: 1–64 of `a-z A-Z 0-9 _ -` (what every provider accepts).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ToolName(String);

impl ToolName {
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let ok = (1..=64).contains(&text.len())
            && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        if !ok {
            return Err(InputError::invalid("tools.name", "must be 1 to 64 of the characters a-z, A-Z, 0-9, _ and -"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ToolName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|error| serde::de::Error::custom(error.to_string()))
    }
}

/// A tool as a session declares it, checked: a valid JSON Schema for its arguments, a URL for an
/// HTTP tool (whether the deployment allows it is the service's to say), a timeout within bounds,
/// and a Standard Webhooks secret (`whsec_` + base64 of 24–64 bytes) that is never shown again.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: ToolName,
    pub description: String,
    pub parameters: serde_json::Value,
    pub kind: ToolKind,
    pub url: Option<String>,
    pub timeout_ms: u32,
    pub secret: Option<ToolSecret>,
}

/// A tool's signing secret: kept, used to sign, never returned or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ToolSecret(String);

impl ToolSecret {
    pub fn parse(text: &str) -> Result<Self, InputError> {
        use base64::Engine;
        let bytes =
            text.strip_prefix("whsec_").and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok());
        match bytes {
            Some(bytes) if (24..=64).contains(&bytes.len()) => Ok(Self(text.to_owned())),
            _ => Err(InputError::invalid("tools.secret", "must be whsec_ followed by the base64 of 24 to 64 bytes")),
        }
    }

    /// The secret as Standard Webhooks libraries take it (`whsec_…`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ToolSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolSecret(..)")
    }
}

/// A tool as a caller writes it (`tools` on `POST`/`PATCH /v1/sessions`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolInput {
    /// 1–64 of `a-z A-Z 0-9 _ -`, unique in the session.
    pub name: String,
    /// What the tool does, for the model (1–1024 characters); required but for a `builtin`
    /// tool, whose own description it replaces.
    pub description: Option<String>,
    /// A JSON Schema (an object schema) the call's arguments must meet; at most 8 KiB. Not for a
    /// `builtin` tool: its arguments are fixed.
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub kind: ToolKind,
    /// `http` only: where the server POSTs each call (`https`, or `http` on a host the
    /// deployment allows; never loopback or private addresses unless `TOOLS_ALLOW_PRIVATE_URLS`).
    pub url: Option<String>,
    /// `http` only: how long the server waits for the answer, 100–30000 ms (10000 by default).
    #[schemars(range(min = 100, max = 30000))]
    pub timeout_ms: Option<u32>,
    /// `http` only: the Standard Webhooks secret each call is signed with (`whsec_` + base64 of
    /// 24–64 bytes). Write-only: responses say `has_secret`.
    pub secret: Option<String>,
}

/// A tool as the API shows it: everything but the secret.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ToolView {
    pub name: ToolName,
    pub description: String,
    pub parameters: serde_json::Value,
    pub kind: ToolKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    pub has_secret: bool,
}

impl From<&Tool> for ToolView {
    fn from(tool: &Tool) -> Self {
        Self {
            name: tool.name.clone(),
            description: tool.description.clone(),
            parameters: tool.parameters.clone(),
            kind: tool.kind,
            url: tool.url.clone(),
            timeout_ms: (tool.kind == ToolKind::Http).then_some(tool.timeout_ms),
            has_secret: tool.secret.is_some(),
        }
    }
}

/// The schema of a tool without `parameters`: no arguments.
fn no_arguments() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false})
}

impl Tool {
    /// Checks one declared tool.
    pub fn parse(input: ToolInput) -> Result<Self, InputError> {
        let name = ToolName::parse(&input.name)?;
        let description = match (input.description.as_deref().map(str::trim), input.kind) {
            (Some(text), _) if !text.is_empty() && text.chars().count() <= 1024 => text.to_owned(),
            (None, ToolKind::Builtin) => String::new(),
            _ => return Err(InputError::invalid("tools.description", "must be 1 to 1024 characters")),
        };
        if input.kind == ToolKind::Builtin {
            return Self::builtin(name, description, input);
        }
        let parameters = match input.parameters {
            Some(object) => {
                serde_json::Value::Object(super::json_object_within("tools.parameters", object, MAX_SCHEMA_BYTES)?)
            }
            None => no_arguments(),
        };
        if parameters.get("type").and_then(serde_json::Value::as_str) != Some("object") {
            return Err(InputError::invalid("tools.parameters", "must be a JSON Schema with \"type\": \"object\""));
        }
        if let Err(error) = jsonschema::meta::validate(&parameters) {
            return Err(InputError::invalid("tools.parameters", format!("is not a valid JSON Schema: {error}")));
        }
        let (url, timeout_ms, secret) = match input.kind {
            ToolKind::Http => {
                let url = input.url.ok_or_else(|| InputError::invalid("tools.url", "is required for an http tool"))?;
                if url.len() > 2048 || !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(InputError::invalid("tools.url", "must be an http(s) URL of at most 2048 characters"));
                }
                let timeout_ms = input.timeout_ms.unwrap_or(TOOL_TIMEOUT_DEFAULT_MS);
                if !(100..=TOOL_TIMEOUT_MAX_MS).contains(&timeout_ms) {
                    return Err(InputError::invalid(
                        "tools.timeout_ms",
                        format!("must be 100 to {TOOL_TIMEOUT_MAX_MS} milliseconds"),
                    ));
                }
                (Some(url), timeout_ms, input.secret.as_deref().map(ToolSecret::parse).transpose()?)
            }
            // (A builtin tool returned above.)
            ToolKind::Client | ToolKind::Builtin => {
                if input.url.is_some() || input.secret.is_some() || input.timeout_ms.is_some() {
                    return Err(InputError::invalid("tools.kind", "a client tool takes no url, secret or timeout_ms"));
                }
                (None, TOOL_TIMEOUT_DEFAULT_MS, None)
            }
        };
        Ok(Self { name, description, parameters, kind: input.kind, url, timeout_ms, secret })
    }

    /// A built-in tool: its name says which, its arguments are its own; the declaration may only
    /// give the model another description (empty: the tool's own).
    fn builtin(name: ToolName, description: String, input: ToolInput) -> Result<Self, InputError> {
        let Some(builtin) = Builtin::named(name.as_str()) else {
            return Err(InputError::invalid(
                "tools.name",
                format!("names no built-in tool (built in: {})", Builtin::NAMES),
            ));
        };
        if input.parameters.is_some() || input.url.is_some() || input.secret.is_some() || input.timeout_ms.is_some() {
            return Err(InputError::invalid(
                "tools.kind",
                "a builtin tool takes no parameters, url, secret or timeout_ms",
            ));
        }
        Ok(Self::of_builtin(builtin, name, description))
    }

    /// A built-in tool as declared (`description` empty: its own), with its current schema.
    pub fn of_builtin(builtin: Builtin, name: ToolName, description: String) -> Self {
        let description = if description.is_empty() { builtin.description().to_owned() } else { description };
        let parameters = builtin.parameters();
        Self { name, description, parameters, kind: ToolKind::Builtin, url: None, timeout_ms: 0, secret: None }
    }

    /// Which built-in tool this is, for a `builtin` one.
    pub fn builtin_kind(&self) -> Option<Builtin> {
        if self.kind == ToolKind::Builtin { Builtin::named(self.name.as_str()) } else { None }
    }

    /// Whether `arguments` meet the tool's schema; the first problem when not.
    pub fn check_arguments(&self, arguments: &serde_json::Value) -> Result<(), String> {
        let validator = jsonschema::validator_for(&self.parameters).map_err(|error| error.to_string())?;
        match validator.iter_errors(arguments).next() {
            None => Ok(()),
            Some(error) => Err(format!("{} (at {})", error, error.instance_path())),
        }
    }
}

/// A session's tools: at most `MAX_TOOLS`, no name twice.
pub fn tools_of(inputs: Vec<ToolInput>) -> Result<Vec<Tool>, InputError> {
    if inputs.len() > MAX_TOOLS {
        return Err(InputError::invalid("tools", format!("must be at most {MAX_TOOLS} tools")));
    }
    let tools = inputs.into_iter().map(Tool::parse).collect::<Result<Vec<_>, _>>()?;
    let mut names = std::collections::BTreeSet::new();
    if !tools.iter().all(|tool| names.insert(tool.name.as_str())) {
        return Err(InputError::invalid("tools", "must not declare a name twice"));
    }
    Ok(tools)
}

/// Whether and which tools the model may call in a reply (`tool_choice`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// The model must call a tool first.
    Required,
    /// The model must not call any.
    None,
    /// The model must call this tool first.
    Named(ToolName),
}

/// `tool_choice` as a caller writes it: `"auto"`, `"required"`, `"none"`, or `{"name": "…"}`.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ToolChoiceInput {
    Mode(ToolChoiceMode),
    Named { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    Auto,
    Required,
    None,
}

impl ToolChoiceInput {
    pub fn parse(self) -> Result<ToolChoice, InputError> {
        Ok(match self {
            Self::Mode(ToolChoiceMode::Auto) => ToolChoice::Auto,
            Self::Mode(ToolChoiceMode::Required) => ToolChoice::Required,
            Self::Mode(ToolChoiceMode::None) => ToolChoice::None,
            Self::Named { name } => ToolChoice::Named(
                ToolName::parse(&name).map_err(|_| InputError::invalid("tool_choice", "names no valid tool"))?,
            ),
        })
    }
}

/// Why a call has no output: its result is this error, which the model reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolError {
    /// `timeout`, `http_error`, `too_large`, `invalid_json`, `unreachable`, `url_not_allowed`,
    /// `unknown_tool`, `invalid_arguments`, `interrupted`, `cancelled`; from `remember`:
    /// `forgotten` (the user deleted that memory), `refused` (the scope is full, the session
    /// takes no memories), `unavailable`.
    pub code: String,
    pub message: String,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into() }
    }
}

/// One part of a reply, in order: its text, a call of a tool, a call's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    ToolCall {
        /// Unique in the reply; the result names it.
        id: String,
        name: String,
        arguments: serde_json::Value,
    },
    ToolResult {
        tool_call_id: String,
        name: String,
        /// The tool's answer (JSON); absent when `error` says why there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ToolError>,
    },
}

/// The calls among `parts` that have no result yet, as `(id, name)`, in order.
pub fn pending_calls(parts: &[Part]) -> Vec<(String, String)> {
    let answered: std::collections::BTreeSet<&str> = parts
        .iter()
        .filter_map(|part| match part {
            Part::ToolResult { tool_call_id, .. } => Some(tool_call_id.as_str()),
            _ => None,
        })
        .collect();
    parts
        .iter()
        .filter_map(|part| match part {
            Part::ToolCall { id, name, .. } if !answered.contains(id.as_str()) => Some((id.clone(), name.clone())),
            _ => None,
        })
        .collect()
}

/// `parts` with every call that has no result answered by `error`: how a pause that ends without
/// its client's results (cancel, timeout) leaves no call without its result.
pub fn answer_pending(parts: &[Part], error: &ToolError) -> Vec<Part> {
    let mut answered = parts.to_vec();
    for (id, name) in pending_calls(parts) {
        answered.push(Part::ToolResult { tool_call_id: id, name, output: None, error: Some(error.clone()) });
    }
    answered
}

/// A reply's parts as the generator builds them: the parts closed so far and the text being
/// streamed after them. Only ever grows: closed parts never change, and the open text only gains.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draft {
    pub closed: Vec<Part>,
    pub text: String,
}

impl Draft {
    pub fn text(text: String) -> Self {
        Self { closed: Vec::new(), text }
    }

    /// The reply's whole text: every text part, in order.
    pub fn content(&self) -> String {
        let mut content = String::new();
        for part in &self.closed {
            if let Part::Text { text } = part {
                content.push_str(text);
            }
        }
        content.push_str(&self.text);
        content
    }

    /// Whether the reply called a tool (only then are its parts stored beside its text).
    pub fn has_calls(&self) -> bool {
        !self.closed.is_empty()
    }

    /// The parts as stored: the closed ones and the open text, when there is any.
    pub fn parts(&self) -> Vec<Part> {
        let mut parts = self.closed.clone();
        if !self.text.is_empty() && !parts.is_empty() {
            parts.push(Part::Text { text: self.text.clone() });
        }
        parts
    }

    /// The draft a stored reply's parts continue (the last text part is the open one).
    pub fn of_parts(parts: &[Part], content: &str) -> Self {
        if parts.is_empty() {
            return Self::text(content.to_owned());
        }
        let mut closed = parts.to_vec();
        let text = match closed.last() {
            Some(Part::Text { text }) => {
                let text = text.clone();
                closed.pop();
                text
            }
            _ => String::new(),
        };
        Self { closed, text }
    }

    /// The calls that have no result yet (a paused reply's client calls).
    pub fn pending(&self) -> Vec<(String, String)> {
        pending_calls(&self.closed)
    }

    /// The number of calls so far (the next call's id is `call_<this + 1>`).
    pub fn calls(&self) -> usize {
        self.closed.iter().filter(|part| matches!(part, Part::ToolCall { .. })).count()
    }

    /// Closes the open text (if any) before a call.
    pub fn close_text(&mut self) {
        if !self.text.is_empty() {
            self.closed.push(Part::Text { text: std::mem::take(&mut self.text) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_tool(parameters: serde_json::Value) -> ToolInput {
        ToolInput {
            name: "get_weather".into(),
            description: Some("The weather in a city".into()),
            parameters: parameters.as_object().cloned(),
            kind: ToolKind::Http,
            url: Some("https://tools.example.com/weather".into()),
            timeout_ms: None,
            secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        }
    }

    #[test]
    fn a_tool_is_checked_and_its_arguments_against_its_schema() {
        let schema =
            serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        let tool = Tool::parse(http_tool(schema)).unwrap_or_else(|_| unreachable!());
        assert_eq!(tool.timeout_ms, TOOL_TIMEOUT_DEFAULT_MS);
        assert!(tool.check_arguments(&serde_json::json!({"city": "Paris"})).is_ok());
        let problem = tool.check_arguments(&serde_json::json!({"town": 3})).err().unwrap_or_else(|| unreachable!());
        assert!(problem.contains("city"), "{problem}");
        let view = ToolView::from(&tool);
        assert!(view.has_secret);
        assert!(!serde_json::to_string(&view).unwrap_or_else(|_| unreachable!()).contains("whsec_"));
        assert_eq!(format!("{:?}", tool.secret), "Some(ToolSecret(..))");
    }

    #[test]
    fn bad_declarations_name_their_field() {
        let not_object =
            Tool::parse(http_tool(serde_json::json!({"type": "string"}))).err().unwrap_or_else(|| unreachable!());
        assert!(matches!(not_object, InputError::Invalid { ref field, .. } if field == "tools.parameters"));
        let bad_schema = Tool::parse(http_tool(serde_json::json!({"type": "object", "properties": 3})))
            .err()
            .unwrap_or_else(|| unreachable!());
        assert!(matches!(bad_schema, InputError::Invalid { ref field, .. } if field == "tools.parameters"));
        let mut weak = http_tool(serde_json::json!({"type": "object"}));
        weak.secret = Some("whsec_c2hvcnQ=".into());
        assert!(
            matches!(Tool::parse(weak).err().unwrap_or_else(|| unreachable!()), InputError::Invalid { ref field, .. } if field == "tools.secret")
        );
        let mut no_url = http_tool(serde_json::json!({"type": "object"}));
        no_url.url = None;
        assert!(
            matches!(Tool::parse(no_url).err().unwrap_or_else(|| unreachable!()), InputError::Invalid { ref field, .. } if field == "tools.url")
        );
        let twice =
            vec![http_tool(serde_json::json!({"type": "object"})), http_tool(serde_json::json!({"type": "object"}))];
        assert!(
            matches!(tools_of(twice).err().unwrap_or_else(|| unreachable!()), InputError::Invalid { ref field, .. } if field == "tools")
        );
    }

    #[test]
    fn a_draft_keeps_its_parts_in_order() {
        let mut draft = Draft::text("Let me look. ".into());
        draft.close_text();
        draft.closed.push(Part::ToolCall { id: "c1".into(), name: "t".into(), arguments: serde_json::json!({}) });
        draft.closed.push(Part::ToolResult {
            tool_call_id: "c1".into(),
            name: "t".into(),
            output: Some(serde_json::json!(1)),
            error: None,
        });
        draft.text.push_str("It is 1.");
        assert_eq!(draft.content(), "Let me look. It is 1.");
        let parts = draft.parts();
        assert_eq!(parts.len(), 4);
        assert_eq!(Draft::of_parts(&parts, &draft.content()), draft);
        assert_eq!(Draft::of_parts(&[], "plain"), Draft::text("plain".into()));
    }
}
