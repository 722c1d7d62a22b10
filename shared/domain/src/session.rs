//! Sessions: a user's conversations.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CharacterId, Content, InputError, Role, Seq, Timestamp, Tool, ToolView};

/// The authenticated user a request acts for (a JWT `sub`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.trim().is_empty()
            && text.trim() == text
            && text.len() <= Self::MAX_LEN
            && !text.chars().any(char::is_control);
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's id: a UUID the server generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct SessionId(Uuid);

impl SessionId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for SessionId {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(text).map(Self).map_err(|_| InputError::invalid("session_id", "must be a UUID"))
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| serde::de::Error::custom("must be a UUID"))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// A session title: 1–255 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(text: &str) -> Result<Self, InputError> {
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(InputError::invalid("title", "must be 1 to 255 characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InputError::invalid("title", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form that title search matches against.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

impl Default for Title {
    fn default() -> Self {
        Self("New chat".to_owned())
    }
}

/// Whether a session accepts new messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Open,
    Locked,
    Closed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Locked => "locked",
            Self::Closed => "closed",
        }
    }

    pub fn accepts_messages(self) -> bool {
        self == Self::Open
    }
}

impl FromStr for SessionStatus {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "open" => Ok(Self::Open),
            "locked" => Ok(Self::Locked),
            "closed" => Ok(Self::Closed),
            _ => Err(InputError::invalid("status", "must be one of open, locked, closed")),
        }
    }
}

/// Caller-defined labels: at most 16 pairs, keys 1–64 characters, values up to 256.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub const MAX_PAIRS: usize = 16;
    pub const MAX_KEY_CHARS: usize = 64;
    pub const MAX_VALUE_CHARS: usize = 256;

    pub fn parse(pairs: BTreeMap<String, String>) -> Result<Self, InputError> {
        if pairs.len() > Self::MAX_PAIRS {
            return Err(InputError::invalid("metadata", "must have at most 16 pairs"));
        }
        for (key, value) in &pairs {
            let key_chars = key.chars().count();
            if key_chars == 0 || key_chars > Self::MAX_KEY_CHARS {
                return Err(InputError::invalid("metadata", "keys must be 1 to 64 characters"));
            }
            if value.chars().count() > Self::MAX_VALUE_CHARS {
                return Err(InputError::invalid(format!("metadata.{key}"), "values must be at most 256 characters"));
            }
        }
        Ok(Self(pairs))
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// Free-form session settings for the chat app (e.g. relationship_type): a JSON object of at most 4 KB.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Settings(serde_json::Map<String, serde_json::Value>);

impl Settings {
    pub const MAX_BYTES: usize = 4 * 1024;

    /// Settings the product reads have fixed values: `relationship_type` is one of
    /// `RELATIONSHIP_TYPES`, `mood_preference` one of `MOOD_PREFERENCES`, `memory` one of
    /// `MEMORY_MODES`; other keys are free.
    pub fn parse(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, InputError> {
        for (key, allowed) in
            [("relationship_type", RELATIONSHIP_TYPES), ("mood_preference", MOOD_PREFERENCES), ("memory", MEMORY_MODES)]
        {
            match object.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(value)) if allowed.contains(&value.as_str()) => {}
                Some(_) => {
                    return Err(InputError::invalid(
                        format!("settings.{key}"),
                        format!("must be one of {}", allowed.join(", ")),
                    ));
                }
            }
        }
        super::json_object_within("settings", object, Self::MAX_BYTES).map(Self)
    }

    /// A setting's text, if it is a non-blank string.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.as_str()).filter(|text| !text.trim().is_empty())
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }

    /// These settings with `patch` applied as a JSON Merge Patch (RFC 7396): a key set to `null`
    /// is removed, an object merges into the object it meets, anything else replaces. The result
    /// is checked as any settings are.
    pub fn merged(&self, patch: &Settings) -> Result<Settings, InputError> {
        fn merge(
            target: &mut serde_json::Map<String, serde_json::Value>,
            patch: &serde_json::Map<String, serde_json::Value>,
        ) {
            for (key, value) in patch {
                match (value, target.get_mut(key)) {
                    (serde_json::Value::Null, _) => {
                        target.remove(key);
                    }
                    (serde_json::Value::Object(inner), Some(serde_json::Value::Object(existing))) => {
                        merge(existing, inner)
                    }
                    (serde_json::Value::Object(inner), _) => {
                        let mut fresh = serde_json::Map::new();
                        merge(&mut fresh, inner);
                        target.insert(key.clone(), serde_json::Value::Object(fresh));
                    }
                    (value, _) => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let mut merged = self.0.clone();
        merge(&mut merged, &patch.0);
        Settings::parse(merged)
    }
}

/// How the character relates to the user (`settings.relationship_type`).
pub const RELATIONSHIP_TYPES: &[&str] = &["neutral", "friend", "partner", "colleague", "mentor"];
/// The tone the user prefers (`settings.mood_preference`).
pub const MOOD_PREFERENCES: &[&str] = &["neutral", "sweet", "sarcastic", "formal", "playful"];

/// Whether the model reads the session's ended replies for memories (`settings.memory`):
/// `auto`, or `manual` (memories only through the API). Unset: `auto` in a character chat, else
/// the deployment's `MEMORY_EXTRACTION`.
pub const MEMORY_MODES: &[&str] = &["auto", "manual"];

/// The newest live message, as the session list shows it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct LastMessage {
    pub seq: Seq,
    pub role: Role,
    pub preview: String,
    pub created_at: Timestamp,
}

/// A session as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Session {
    pub id: SessionId,
    /// The character the chat is with, if any.
    pub character_id: Option<CharacterId>,
    /// The catalog characters that answer in this session (at most `MAX_AGENTS`): a character
    /// chat's one character, or the ones a session names; empty for the plain assistant.
    pub agents: Vec<CharacterId>,
    /// The tools the model may call in this session's replies (secrets never shown).
    #[serde(serialize_with = "tool_views")]
    #[schemars(with = "Vec<ToolView>")]
    pub tools: Vec<Tool>,
    pub title: Title,
    pub status: SessionStatus,
    pub archived: bool,
    pub metadata: Metadata,
    pub settings: Settings,
    pub message_count: u64,
    pub last_seq: u64,
    pub last_message: Option<LastMessage>,
    /// The session's revision: raised by every change to its log (an append, an edit, a delete,
    /// a reply's end, new-scene, reset). `GET …/changes?after_rev=` and the socket's `sync` return
    /// what changed after a revision a client holds.
    pub rev: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn tool_views<S: serde::Serializer>(tools: &[Tool], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(tools.iter().map(ToolView::from))
}

/// What a caller may set when creating a session.
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    /// `None`: the character's name for a character chat, else "New chat".
    pub title: Option<Title>,
    pub metadata: Metadata,
    pub settings: Settings,
    pub character_id: Option<CharacterId>,
    /// The characters that answer (a group chat); see `Session::agents`.
    pub agents: Vec<CharacterId>,
    pub tools: Vec<Tool>,
    /// The character's first message, stored as seq 1 with the session.
    pub greeting: Option<Content>,
}

/// The most agents a session has.
pub const MAX_AGENTS: usize = 4;

/// A session's agents as a caller names them: at most `MAX_AGENTS`, none twice.
pub fn agents_of(ids: Vec<CharacterId>) -> Result<Vec<CharacterId>, InputError> {
    if ids.len() > MAX_AGENTS {
        return Err(InputError::invalid("agents", format!("must be at most {MAX_AGENTS} characters")));
    }
    let mut seen = std::collections::BTreeSet::new();
    if !ids.iter().all(|id| seen.insert(id.as_str().to_owned())) {
        return Err(InputError::invalid("agents", "must not name a character twice"));
    }
    Ok(ids)
}

/// A partial update; `None` leaves the field as it is.
#[derive(Clone, Debug, Default)]
pub struct SessionChanges {
    pub title: Option<Title>,
    pub status: Option<SessionStatus>,
    pub metadata: Option<Metadata>,
    pub settings: Option<Settings>,
    pub archived: Option<bool>,
    pub agents: Option<Vec<CharacterId>>,
    /// Replaces the session's tools.
    pub tools: Option<Vec<Tool>>,
}

impl SessionChanges {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.status.is_none()
            && self.metadata.is_none()
            && self.settings.is_none()
            && self.archived.is_none()
            && self.agents.is_none()
            && self.tools.is_none()
    }
}

/// Which of a user's sessions a listing returns.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub archived: bool,
    pub status: Option<SessionStatus>,
    /// Case-folded text the title must contain.
    pub title_contains: Option<String>,
    pub character_id: Option<CharacterId>,
}
