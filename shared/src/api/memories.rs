//! Memories API shapes, and the context endpoint's query.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{
    Importance, InputError, Memory, MemoryChanges, MemoryContent, MemoryFilter, MemoryId, MemoryScope, MemoryType,
    NewMemory, PageLimit, SessionId,
};

/// `POST /v1/memories`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemory {
    #[schemars(length(min = 1, max = MemoryContent::MAX_CHARS))]
    pub content: String,
    pub memory_type: MemoryType,
    #[schemars(range(min = 1, max = 10))]
    pub importance: Option<u64>,
    pub session_id: Option<SessionId>,
}

impl TryFrom<CreateMemory> for NewMemory {
    type Error = InputError;

    fn try_from(body: CreateMemory) -> Result<Self, InputError> {
        Ok(Self {
            scope: body.session_id.map_or(MemoryScope::Global, MemoryScope::Session),
            memory_type: body.memory_type,
            content: MemoryContent::parse(body.content)?,
            importance: body
                .importance
                .map(|value| Importance::new("importance", value))
                .transpose()?
                .unwrap_or(Importance::DEFAULT),
            source: None,
        })
    }
}

/// `PATCH /v1/memories/{id}`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemory {
    #[schemars(length(min = 1, max = MemoryContent::MAX_CHARS))]
    pub content: Option<String>,
    pub memory_type: Option<MemoryType>,
    #[schemars(range(min = 1, max = 10))]
    pub importance: Option<u64>,
}

impl TryFrom<UpdateMemory> for MemoryChanges {
    type Error = InputError;

    fn try_from(body: UpdateMemory) -> Result<Self, InputError> {
        let changes = Self {
            content: body.content.map(MemoryContent::parse).transpose()?,
            memory_type: body.memory_type,
            importance: body.importance.map(|value| Importance::new("importance", value)).transpose()?,
        };
        if changes == Self::default() {
            return Err(InputError::invalid("body", "set at least one of content, memory_type, importance"));
        }
        Ok(changes)
    }
}

/// `GET /v1/memories?session_id=&include_global=&memory_type=&min_importance=&limit=&cursor=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMemories {
    pub session_id: Option<SessionId>,
    pub include_global: Option<bool>,
    pub memory_type: Option<MemoryType>,
    #[schemars(range(min = 1, max = 10))]
    pub min_importance: Option<u64>,
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub struct MemoryListing {
    pub filter: MemoryFilter,
    pub limit: PageLimit,
    pub cursor: Option<crate::domain::Cursor>,
}

impl TryFrom<ListMemories> for MemoryListing {
    type Error = InputError;

    fn try_from(query: ListMemories) -> Result<Self, InputError> {
        if query.include_global.is_some() && query.session_id.is_none() {
            return Err(InputError::invalid("include_global", "needs session_id"));
        }
        Ok(Self {
            filter: MemoryFilter {
                scope: query.session_id.map_or(MemoryScope::Global, MemoryScope::Session),
                include_global: query.include_global.unwrap_or(false),
                memory_type: query.memory_type,
                min_importance: query
                    .min_importance
                    .map(|value| Importance::new("min_importance", value))
                    .transpose()?
                    .unwrap_or(Importance::MIN),
            },
            limit: PageLimit::new("limit", query.limit, 20, 100)?,
            cursor: query.cursor.as_deref().filter(|c| !c.is_empty()).map(crate::domain::Cursor::parse).transpose()?,
        })
    }
}

/// `DELETE /v1/memories?session_id=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMemories {
    pub session_id: Option<SessionId>,
}

impl DeleteMemories {
    pub fn scope(&self) -> MemoryScope {
        self.session_id.map_or(MemoryScope::Global, MemoryScope::Session)
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoryList {
    pub data: Vec<Memory>,
    pub has_more: bool,
    pub next_cursor: Option<crate::domain::Cursor>,
    pub total: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoryDeleted {
    pub success: bool,
    pub deleted_id: MemoryId,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoriesDeleted {
    pub success: bool,
    pub deleted_count: u64,
}

/// `GET /v1/sessions/{id}/context?recent=8&max_tokens=2000`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextQuery {
    #[schemars(range(min = 1, max = 100))]
    pub recent: Option<u32>,
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_tokens: Option<u64>,
}

impl ContextQuery {
    pub fn recent(&self) -> Result<PageLimit, InputError> {
        PageLimit::new("recent", self.recent, 8, 100)
    }

    pub fn max_tokens(&self) -> Result<u64, InputError> {
        match self.max_tokens.unwrap_or(2000) {
            n @ 1..=1_000_000 => Ok(n),
            _ => Err(InputError::invalid("max_tokens", "must be between 1 and 1000000")),
        }
    }
}
