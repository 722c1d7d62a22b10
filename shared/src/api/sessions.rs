//! Sessions API shapes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{
    CharacterId, Cursor, InputError, Message, Metadata, NewSession, Page, PageLimit, Session, SessionChanges,
    SessionFilter, SessionId, SessionStatus, Settings, Title, ToolInput, agents_of, tools_of,
};

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// `POST /v1/sessions`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[schemars(length(min = 1, max = Title::MAX_CHARS))]
    pub title: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// `relationship_type` (neutral, friend, partner, colleague, mentor) and `mood_preference`
    /// (neutral, sweet, sarcastic, formal, playful) shape a character chat's prompt; other keys
    /// are free.
    pub settings: Option<JsonObject>,
    /// A chat with this character: it starts with the character's greeting as seq 1, and is titled
    /// with the character's name unless a title is given.
    pub character_id: Option<CharacterId>,
    /// A group chat: the catalog characters that answer (at most 4; each behind its gates).
    pub agents: Option<Vec<CharacterId>>,
    /// Tools the model may call in this session's replies (at most 8).
    pub tools: Option<Vec<ToolInput>>,
}

impl TryFrom<CreateSession> for NewSession {
    type Error = InputError;

    fn try_from(body: CreateSession) -> Result<Self, InputError> {
        Ok(Self {
            title: body.title.as_deref().map(Title::parse).transpose()?,
            metadata: body.metadata.map(Metadata::parse).transpose()?.unwrap_or_default(),
            settings: body.settings.map(Settings::parse).transpose()?.unwrap_or_default(),
            character_id: body.character_id,
            agents: body.agents.map(agents_of).transpose()?.unwrap_or_default(),
            tools: body.tools.map(tools_of).transpose()?.unwrap_or_default(),
            greeting: None,
        })
    }
}

/// `PATCH /v1/sessions/{id}`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    #[schemars(length(min = 1, max = Title::MAX_CHARS))]
    pub title: Option<String>,
    pub status: Option<SessionStatus>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub settings: Option<JsonObject>,
    pub archived: Option<bool>,
    /// The characters that answer, replacing the list (not in a character chat).
    pub agents: Option<Vec<CharacterId>>,
    /// The tools, replacing the list (`[]` removes them all).
    pub tools: Option<Vec<ToolInput>>,
}

impl TryFrom<UpdateSession> for SessionChanges {
    type Error = InputError;

    fn try_from(body: UpdateSession) -> Result<Self, InputError> {
        let changes = Self {
            title: body.title.as_deref().map(Title::parse).transpose()?,
            status: body.status,
            metadata: body.metadata.map(Metadata::parse).transpose()?,
            settings: body.settings.map(Settings::parse).transpose()?,
            archived: body.archived,
            agents: body.agents.map(agents_of).transpose()?,
            tools: body.tools.map(tools_of).transpose()?,
        };
        if changes.is_empty() {
            return Err(InputError::invalid(
                "body",
                "set at least one of title, status, metadata, settings, archived, agents, tools",
            ));
        }
        Ok(changes)
    }
}

/// `GET /v1/sessions?limit=&cursor=&status=&archived=&q=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSessions {
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub status: Option<SessionStatus>,
    pub archived: Option<bool>,
    #[schemars(length(max = Title::MAX_CHARS))]
    pub q: Option<String>,
    /// Only chats with this character.
    pub character_id: Option<CharacterId>,
    /// `latest_messages`: the page also carries the newest messages of its most recently active
    /// session (`latest`) — a chat app's first screen in one request.
    pub include: Option<String>,
    /// With `include=latest_messages`: how many (1–100, default 50).
    #[schemars(range(min = 1, max = 100))]
    pub messages_limit: Option<u32>,
}

/// A validated session listing request.
pub struct SessionListing {
    pub filter: SessionFilter,
    pub limit: PageLimit,
    pub cursor: Option<Cursor>,
    /// How many of the first session's newest messages to include, if asked.
    pub latest: Option<PageLimit>,
}

impl TryFrom<ListSessions> for SessionListing {
    type Error = InputError;

    fn try_from(query: ListSessions) -> Result<Self, InputError> {
        let title_contains = match query.q.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.chars().count() > Title::MAX_CHARS => {
                return Err(InputError::invalid("q", "must be at most 255 characters"));
            }
            Some(text) => Some(text.to_lowercase()),
        };
        Ok(Self {
            filter: SessionFilter {
                archived: query.archived.unwrap_or(false),
                status: query.status,
                title_contains,
                character_id: query.character_id,
            },
            limit: PageLimit::new("limit", query.limit, 20, 100)?,
            cursor: query.cursor.as_deref().filter(|cursor| !cursor.is_empty()).map(Cursor::parse).transpose()?,
            latest: match query.include.as_deref() {
                None | Some("") => match query.messages_limit {
                    Some(_) => return Err(InputError::invalid("messages_limit", "needs include=latest_messages")),
                    None => None,
                },
                Some("latest_messages") => Some(PageLimit::new("messages_limit", query.messages_limit, 50, 100)?),
                Some(_) => return Err(InputError::invalid("include", "the only value is `latest_messages`")),
            },
        })
    }
}

/// `GET /v1/sessions`: a page of sessions and, with `include=latest_messages`, the newest
/// messages of the page's first (most recently active) session.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionList {
    #[serde(flatten)]
    pub page: Page<Session>,
    /// Absent unless asked for, or when the page is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<LatestMessages>,
}

/// The newest messages of one session, newest first: what `GET …/messages?order=desc&limit=N`
/// answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LatestMessages {
    pub session_id: SessionId,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// `GET /v1/sessions/{id}?include=messages&messages_limit=N`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSession {
    pub include: Option<String>,
    #[schemars(range(min = 1, max = 200))]
    pub messages_limit: Option<u32>,
}

impl GetSession {
    /// How many of the latest messages to include, if any.
    pub fn messages_wanted(&self) -> Result<Option<PageLimit>, InputError> {
        match self.include.as_deref() {
            None | Some("") => match self.messages_limit {
                Some(_) => Err(InputError::invalid("messages_limit", "needs include=messages")),
                None => Ok(None),
            },
            Some("messages") => PageLimit::new("messages_limit", self.messages_limit, 20, 200).map(Some),
            Some(_) => Err(InputError::invalid("include", "the only value is `messages`")),
        }
    }
}

/// A session with its latest messages, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionWithMessages {
    #[serde(flatten)]
    pub session: Session,
    pub messages: Vec<Message>,
}
