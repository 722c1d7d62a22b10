//! Memories: long-term facts about the user that a chat app feeds to its model.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{InputError, Seq, SessionId, Timestamp};

/// A memory's id: a UUID the server generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct MemoryId(Uuid);

impl MemoryId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
}

impl FromStr for MemoryId {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(text).map(Self).map_err(|_| InputError::invalid("memory_id", "must be a UUID"))
    }
}

impl fmt::Display for MemoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// What kind of thing a memory records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryType {
    Fact,
    Preference,
    Emotion,
    Relationship,
}

impl MemoryType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fact => "fact",
            Self::Preference => "preference",
            Self::Emotion => "emotion",
            Self::Relationship => "relationship",
        }
    }
}

impl FromStr for MemoryType {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "fact" => Ok(Self::Fact),
            "preference" => Ok(Self::Preference),
            "emotion" => Ok(Self::Emotion),
            "relationship" => Ok(Self::Relationship),
            _ => Err(InputError::invalid("memory_type", "must be one of fact, preference, emotion, relationship")),
        }
    }
}

/// How much a memory matters: 1 (trivia) to 10 (never forget). Default 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Importance(u8);

impl Importance {
    pub const MIN: Importance = Importance(1);
    pub const DEFAULT: Importance = Importance(5);

    pub fn new(field: &str, value: u64) -> Result<Self, InputError> {
        match value {
            1..=10 => Ok(Self(value as u8)),
            _ => Err(InputError::invalid(field, "must be between 1 and 10")),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Memory text: 1–2000 characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct MemoryContent(String);

impl MemoryContent {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(text: String) -> Result<Self, InputError> {
        let chars = text.chars().count();
        if text.trim().is_empty() || chars > Self::MAX_CHARS {
            return Err(InputError::invalid("content", "must be 1 to 2000 characters, not blank"));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The words of the memory, lowercased, without punctuation or case or spacing differences:
    /// "The user's name is Anna." and "the users name is anna" are one fact.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

/// The words of a text, lowercased and joined by single spaces (letters and digits of any script).
pub fn fingerprint(text: &str) -> String {
    let lowered: String = text
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .flat_map(char::to_lowercase)
        .collect();
    lowered.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Who wrote a memory: the user (through the API) or the model reading the conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryOrigin {
    #[default]
    User,
    Extracted,
}

impl MemoryOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Extracted => "extracted",
        }
    }
}

/// The messages an extracted memory was read from: `from_seq` to `to_seq` of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
pub struct MemorySource {
    pub session_id: SessionId,
    pub from_seq: Seq,
    pub to_seq: Seq,
}

/// Whose memory: the user's own (global) or one session's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryScope {
    Global,
    Session(SessionId),
}

impl MemoryScope {
    pub fn session_id(self) -> Option<SessionId> {
        match self {
            Self::Global => None,
            Self::Session(id) => Some(id),
        }
    }
}

/// A stored memory as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Memory {
    pub id: MemoryId,
    pub session_id: Option<SessionId>,
    pub memory_type: MemoryType,
    pub content: MemoryContent,
    pub importance: Importance,
    /// `user` when added through the API, `extracted` when the model read it from a conversation.
    pub origin: MemoryOrigin,
    /// For an extracted memory, the messages it was read from.
    pub source: Option<MemorySource>,
    /// The memory that replaced this one (a later correction of the same fact). A superseded
    /// memory is kept, readable by its id, but is no longer listed or in any context.
    pub superseded_by: Option<MemoryId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A memory to add, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMemory {
    pub scope: MemoryScope,
    pub memory_type: MemoryType,
    pub content: MemoryContent,
    pub importance: Importance,
    /// Where the model read it; `None` for a memory the user adds.
    pub source: Option<MemorySource>,
}

impl NewMemory {
    pub fn origin(&self) -> MemoryOrigin {
        if self.source.is_some() { MemoryOrigin::Extracted } else { MemoryOrigin::User }
    }
}

/// A partial update; `None` leaves the field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryChanges {
    pub content: Option<MemoryContent>,
    pub memory_type: Option<MemoryType>,
    pub importance: Option<Importance>,
}

/// Which memories a listing returns.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryFilter {
    /// `Global`, or a session's own memories (plus the global ones when `include_global`).
    pub scope: MemoryScope,
    pub include_global: bool,
    pub memory_type: Option<MemoryType>,
    pub min_importance: Importance,
}

/// The story of a session before its recent window, written by the model in steps: what
/// `GET /v1/sessions/{id}/summary` returns and the context's `summary` part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Summary {
    pub text: String,
    /// The last message it covers; the messages after it are the context's own.
    pub through_seq: Seq,
    /// Its estimated tokens.
    pub tokens: u64,
    pub updated_at: Timestamp,
}
