//! Memories: long-term facts about the user that a chat app feeds to its model.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{InputError, SessionId, Timestamp};

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
