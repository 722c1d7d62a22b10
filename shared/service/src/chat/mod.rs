//! The service layer: the chat's rules between the routes and the store. A route extracts and
//! parses, calls one method here, and responds; this layer decides who may do what to a log
//! (only `user` messages are edited), composes the store's operations (a reset clears the log and
//! counts the memories it left behind; a context joins log and memories) and produces replies
//! through the model port (`llm::Model`). Who hears of a change is not its business: every
//! change lands in the tables' streams, and the realtime fan-out reads them there.
//!
//! Sessions go through here too (a character chat's gates and greeting). Plain
//! CRUD with no rule beyond its types and nothing to tell anyone (memories, limits) goes from the
//! routes to the store directly: a pass-through layer would only repeat the store's signatures.

mod reply;

use std::sync::Arc;

use self::reply::Replies;
pub use self::reply::{LeaseReport, Progress, ReplyFailure, Turn};
use crate::catalog::Catalog;
pub use domain::ReplyOptions;
use domain::{
    Changes, Character, CharacterId, Clock, Content, Context, ContextParts, ContextProfile, ContextSession, Cursor,
    Gate, Idempotency, InputError, Message, NewMessage, NewSession, Page, PageLimit, Refusal, Role, Seq, Session,
    SessionChanges, SessionFilter, SessionId, SystemPrompt, Title, Tool, ToolKind, UserId,
};
use llm::LlmConfig;
use llm::Model;
use store::hints::Hints;
use store::{Appended, ChatClaim, ContextLog, MessageQuery, MessageSlice, Miss, RankedMemory, Store, StoreError};

/// The chat service; cheap to clone.
#[derive(Clone)]
pub struct Chat {
    store: Store,
    catalog: Catalog,
    /// The character of each session seen (a session's character never changes).
    session_characters: Arc<Hints<SessionId, Option<CharacterId>>>,
    /// The agents of each session seen without a character, as last read or set here (another
    /// instance's PATCH is read again when a reply names an agent this list lacks).
    session_agents: Arc<Hints<SessionId, Vec<CharacterId>>>,
    /// Each session's memory epoch as last read here (a reset moves it): the context reads the
    /// session's own memories at it beside the session item, and again only when the item shows
    /// another.
    memory_epochs: Arc<Hints<SessionId, u64>>,
    /// The model replies come from; `None` when none is configured.
    replies: Option<Arc<Replies>>,
    /// HTTP tools' caller and the deployment's URL policy; `None`: HTTP tools are refused.
    webhooks: Option<Arc<webhooks::Webhooks>>,
    clock: Arc<dyn Clock>,
}

/// Only the user's own words can be rewritten: an assistant's, system's or tool's message stays
/// as it was produced.
pub const EDITABLE_ROLE: Role = Role::User;

/// The product's words for a precondition the store found unmet; every other error passes.
pub(crate) fn worded(error: StoreError) -> StoreError {
    let StoreError::Miss(miss) = error else { return error };
    StoreError::Refused(match miss {
        Miss::NotEditable => Refusal::Forbidden("only user messages can be edited".to_owned()),
        Miss::NotLatestReply => {
            Refusal::Conflict("only the latest message, an assistant reply, can be regenerated".to_owned())
        }
        Miss::StillStreaming => Refusal::Conflict("the reply is still streaming: cancel it first".to_owned()),
        Miss::NotGenerated => Refusal::Conflict("only a generated reply can be cancelled".to_owned()),
        Miss::Replaced => Refusal::Conflict("the reply was replaced".to_owned()),
    })
}

/// The tools a reply may call: the session's, and the speaking character's whose names the
/// session does not use.
fn tools_for(session: Vec<Tool>, character: Option<&Character>) -> Vec<Tool> {
    let mut tools = session;
    if let Some(character) = character {
        let own: Vec<Tool> = character
            .tools
            .iter()
            .filter(|tool| !tools.iter().any(|declared| declared.name == tool.name))
            .cloned()
            .collect();
        tools.extend(own);
    }
    tools
}

/// A new chat with `character`: titled with its name unless titled, starting with its greeting.
fn dress(new: &mut NewSession, character: &Character) {
    if new.title.is_none() {
        new.title = Title::parse(&character.name).ok();
    }
    new.greeting = greeting_of(character);
}

/// The character's greeting, when it has one.
fn greeting_of(character: &Character) -> Option<Content> {
    Content::parse(character.greeting.clone()).ok().filter(|greeting| !greeting.as_str().trim().is_empty())
}

impl Chat {
    pub fn new(store: Store, catalog: Catalog, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            catalog,
            session_characters: Arc::default(),
            session_agents: Arc::default(),
            memory_epochs: Arc::default(),
            replies: None,
            webhooks: None,
            clock,
        }
    }

    /// This service with HTTP tools called through `webhooks` (and their URLs checked by its
    /// policy when a session declares them).
    pub fn with_webhooks(mut self, webhooks: webhooks::Webhooks) -> Self {
        self.webhooks = Some(Arc::new(webhooks));
        self
    }

    /// Whether this deployment runs the tools a session declares: an HTTP tool's URL must pass
    /// the URL policy (client tools are the client's to run, built-in ones the server's own).
    pub fn admit_tools(&self, tools: &[Tool]) -> Result<(), StoreError> {
        for tool in tools {
            let refuse = |message: String| StoreError::Refused(Refusal::Invalid(InputError::invalid("tools", message)));
            match (tool.kind, tool.url.as_deref()) {
                (ToolKind::Client | ToolKind::Builtin, _) => {}
                (ToolKind::Http, Some(url)) => {
                    let webhooks = self
                        .webhooks
                        .as_deref()
                        .ok_or_else(|| refuse("HTTP tools are not enabled on this deployment".to_owned()))?;
                    webhooks
                        .policy()
                        .check(url)
                        .map_err(|reason| refuse(format!("{}: the url {reason}", tool.name.as_str())))?;
                }
                (ToolKind::Http, None) => {
                    return Err(refuse(format!("{}: an http tool needs a url", tool.name.as_str())));
                }
            }
        }
        Ok(())
    }

    /// This service with replies from `model`, configured by `config`.
    pub fn with_model(mut self, model: Arc<dyn Model>, config: LlmConfig) -> Self {
        self.replies = Some(Arc::new(Replies::new(model, config)));
        self
    }

    /// Creates a session; with a character, behind its gates, starting with its greeting, and
    /// recorded as the caller's chat with it when there is none yet.
    pub async fn create_session(&self, user: &UserId, mut new: NewSession) -> Result<Session, StoreError> {
        self.admit_tools(&new.tools)?;
        self.admit_agents(user, new.character_id.as_ref(), &new.agents).await?;
        let Some(character_id) = new.character_id.clone() else {
            let session = self.store.create_session(user, new, None).await?;
            self.session_characters.insert(session.id, None);
            self.session_agents.insert(session.id, session.agents.clone());
            return Ok(session);
        };
        let character = self.admitted_character(user, &character_id).await?;
        dress(&mut new, &character);
        let session = self.store.create_session(user, new, None).await?;
        self.session_characters.insert(session.id, session.character_id.clone());
        let claim = ChatClaim { character_id, replaces: None };
        self.store.claim_character_chat(user, &claim, session.id).await?;
        Ok(session)
    }

    /// The caller's chat with a character: the one recorded, or a new one (behind the gates,
    /// starting with the greeting) when there is none or it was deleted. Two first calls at once
    /// open one chat. A chat with a character deactivated since stays readable.
    pub async fn character_chat(&self, user: &UserId, character_id: &CharacterId) -> Result<Session, StoreError> {
        for _ in 0..3 {
            let recorded = self.store.character_chat(user, character_id).await?;
            if let Some(session_id) = recorded {
                match self.store.get_session(user, session_id).await {
                    Err(StoreError::NotFound(_)) => {}
                    result => return result,
                }
            }
            let character = self.admitted_character(user, character_id).await?;
            let mut new = NewSession { character_id: Some(character_id.clone()), ..NewSession::default() };
            dress(&mut new, &character);
            let claim = ChatClaim { character_id: character_id.clone(), replaces: recorded };
            match self.store.create_session(user, new, Some(&claim)).await {
                Err(StoreError::Refused(Refusal::Conflict(_))) => continue, // another request opened it
                Ok(session) => {
                    self.session_characters.insert(session.id, session.character_id.clone());
                    return Ok(session);
                }
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Unavailable("the chat kept changing while it was opened; retry".into()))
    }

    /// The character if the caller may chat with it now (see `Character::admits`). A refusal is
    /// checked against fresh entitlements first, so a subscription or confirmation made a moment
    /// ago counts.
    async fn admitted_character(&self, user: &UserId, id: &CharacterId) -> Result<Arc<Character>, StoreError> {
        let character = self.catalog.character(id).await?.ok_or(Refusal::Gate(Gate::NotFound))?;
        if character.admits(self.store.entitlements(user, false).await?).is_err() {
            character.admits(self.store.entitlements(user, true).await?).map_err(Refusal::Gate)?;
        }
        Ok(character)
    }

    /// A session's agents: not in a character chat (it has its one character), and each behind
    /// its gates for the caller (an unknown one is 404 `character_not_found`).
    async fn admit_agents(
        &self,
        user: &UserId,
        character: Option<&CharacterId>,
        agents: &[CharacterId],
    ) -> Result<(), StoreError> {
        if agents.is_empty() {
            return Ok(());
        }
        if character.is_some() {
            return Err(StoreError::Refused(Refusal::Invalid(domain::InputError::invalid(
                "agents",
                "a character chat has its one character; open a session without character_id for a group",
            ))));
        }
        for agent in agents {
            self.admitted_character(user, agent).await?;
        }
        Ok(())
    }

    /// The agents of a session: a character chat's character, else the ones it names (from this
    /// instance's hints unless `fresh`).
    pub(crate) async fn session_agents(
        &self,
        user: &UserId,
        session_id: SessionId,
        fresh: bool,
    ) -> Result<Vec<CharacterId>, StoreError> {
        if let Some(Some(character)) = self.session_characters.get(&session_id) {
            return Ok(vec![character]);
        }
        if !fresh && let Some(agents) = self.session_agents.get(&session_id) {
            return Ok(agents);
        }
        let session = self.store.get_session(user, session_id).await?;
        self.session_characters.insert(session_id, session.character_id.clone());
        Ok(match session.character_id {
            Some(character) => vec![character],
            None => {
                self.session_agents.insert(session_id, session.agents.clone());
                session.agents
            }
        })
    }

    /// The session's character, if any (remembered: it never changes).
    async fn session_character(&self, user: &UserId, session_id: SessionId) -> Result<Option<CharacterId>, StoreError> {
        if let Some(known) = self.session_characters.get(&session_id) {
            return Ok(known);
        }
        let character = self.store.get_session(user, session_id).await?.character_id;
        self.session_characters.insert(session_id, character.clone());
        Ok(character)
    }

    /// The gates of a message to a session: its character, if it has one, must still admit the
    /// caller.
    async fn admit(&self, user: &UserId, session_id: SessionId) -> Result<Option<Arc<Character>>, StoreError> {
        match self.session_character(user, session_id).await? {
            Some(character) => Ok(Some(self.admitted_character(user, &character).await?)),
            None => Ok(None),
        }
    }

    pub async fn sessions(
        &self,
        user: &UserId,
        filter: &SessionFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Session>, StoreError> {
        self.store.list_sessions(user, filter, limit, cursor).await
    }

    /// The session, and its newest `latest` messages when asked (a chat screen's first load).
    pub async fn session(
        &self,
        user: &UserId,
        session_id: SessionId,
        latest: Option<PageLimit>,
    ) -> Result<(Session, Option<Vec<Message>>), StoreError> {
        match latest {
            None => Ok((self.store.get_session(user, session_id).await?, None)),
            Some(count) => {
                let (session, messages) = self.store.session_with_latest(user, session_id, count).await?;
                Ok((session, Some(messages)))
            }
        }
    }

    pub async fn update_session(
        &self,
        user: &UserId,
        session_id: SessionId,
        changes: SessionChanges,
    ) -> Result<Session, StoreError> {
        if let Some(tools) = &changes.tools {
            self.admit_tools(tools)?;
        }
        if let Some(agents) = &changes.agents {
            let character = self.session_character(user, session_id).await?;
            self.admit_agents(user, character.as_ref(), agents).await?;
        }
        let updated = self.update_session_settings(user, session_id, changes).await?;
        if updated.character_id.is_none() {
            self.session_agents.insert(session_id, updated.agents.clone());
        }
        Ok(updated)
    }

    async fn update_session_settings(
        &self,
        user: &UserId,
        session_id: SessionId,
        changes: SessionChanges,
    ) -> Result<Session, StoreError> {
        let Some(patch) = changes.settings.clone() else {
            return self.store.update_session(user, session_id, changes, None).await;
        };
        // `settings` is a merge patch over the stored settings: applied to what was read and
        // written only if they are still that (a concurrent change makes it read again).
        for _ in 0..5 {
            let current = self.store.get_session(user, session_id).await?;
            let merged = current.settings.merged(&patch)?;
            let changes = SessionChanges { settings: Some(merged), ..changes.clone() };
            match self.store.update_session(user, session_id, changes, Some(&current.settings)).await {
                Err(StoreError::Miss(Miss::Replaced)) => continue,
                updated => return updated,
            }
        }
        Err(StoreError::Unavailable("the session's settings keep changing: retry".into()))
    }

    pub async fn delete_session(&self, user: &UserId, session_id: SessionId) -> Result<(), StoreError> {
        self.store.delete_session(user, session_id).await?;
        Ok(())
    }

    /// Appends messages (the quota, rate and reply rules are applied inside the append's
    /// transaction, where the state they depend on is exact).
    pub async fn append(
        &self,
        user: &UserId,
        session_id: SessionId,
        messages: Vec<NewMessage>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Appended, StoreError> {
        let character = self.admit(user, session_id).await?;
        self.append_admitted(user, session_id, messages, idempotency, character.as_ref().map(|character| &character.id))
            .await
    }

    /// Appends to a session whose gates were checked (its character, if any, is `character`).
    async fn append_admitted(
        &self,
        user: &UserId,
        session_id: SessionId,
        messages: Vec<NewMessage>,
        idempotency: Option<&Idempotency>,
        character: Option<&CharacterId>,
    ) -> Result<Appended, StoreError> {
        let appended = self.store.append_messages(user, session_id, messages, idempotency, character).await?;
        tracing::info!(count = appended.messages.len(), replayed = appended.replayed, "appended");
        Ok(appended)
    }

    pub async fn list(
        &self,
        user: &UserId,
        session_id: SessionId,
        query: MessageQuery,
    ) -> Result<MessageSlice, StoreError> {
        self.store.list_messages(user, session_id, query).await
    }

    /// What changed in the session's log after `after_rev`: the change feed.
    pub async fn changes(
        &self,
        user: &UserId,
        session_id: SessionId,
        after_rev: u64,
        limit: PageLimit,
    ) -> Result<Changes, StoreError> {
        self.store.changes(user, session_id, after_rev, limit).await
    }

    /// One message; a reply whose lease passed is ended first (see `reply::lease`).
    pub async fn message(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<Message, StoreError> {
        let message = self.store.get_message(user, session_id, seq).await?;
        self.unstuck(user, message).await
    }

    pub async fn edit(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
        content: Content,
    ) -> Result<Message, StoreError> {
        self.store.edit_message(user, session_id, seq, content, EDITABLE_ROLE).await.map_err(worded)
    }

    pub async fn delete(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<(), StoreError> {
        self.store.delete_message(user, session_id, seq).await
    }

    /// Soft-deletes the newest `count` live messages; returns how many there were.
    pub async fn forget_recent(&self, user: &UserId, session_id: SessionId, count: usize) -> Result<u64, StoreError> {
        self.store.forget_recent(user, session_id, count).await
    }

    /// Hides every live message but the newest `keep`; memories stay.
    pub async fn new_scene(&self, user: &UserId, session_id: SessionId, keep: usize) -> Result<u64, StoreError> {
        self.store.new_scene(user, session_id, keep).await
    }

    /// Clears the log and the session's own memories (one write moves both out of sight); a
    /// character chat starts again with the character's greeting, in the same write. Returns how
    /// many messages and memories were removed.
    pub async fn reset(&self, user: &UserId, session_id: SessionId) -> Result<(u64, u64), StoreError> {
        let greeting = match self.session_character(user, session_id).await? {
            Some(id) => self.catalog.character(&id).await?.and_then(|character| greeting_of(&character)),
            None => None,
        };
        let (messages, old_epoch) = self.store.reset_session(user, session_id, greeting).await?;
        let memories = self.store.session_memory_count(user, session_id, old_epoch).await?;
        Ok((messages, memories))
    }

    /// The context a model answers from — the system prompt, the profile, the best memories
    /// (global and the session's own), the settings and the newest messages — fitted to
    /// `max_tokens`.
    pub async fn context(
        &self,
        user: &UserId,
        session_id: SessionId,
        recent: PageLimit,
        max_tokens: u64,
    ) -> Result<Context, StoreError> {
        Ok(self.context_parts(user, session_id, recent).await?.fit(max_tokens))
    }

    /// The context's parts, untrimmed. Two parallel rounds: the log (and the summary), the global
    /// memories and the profile; then the session's memories at the epoch the log read returned, and its character
    /// (from the catalog's cache when warm).
    async fn context_parts(
        &self,
        user: &UserId,
        session_id: SessionId,
        recent: PageLimit,
    ) -> Result<ContextParts, StoreError> {
        self.context_parts_for(user, session_id, recent, None).await
    }

    /// The same, for `speaker` (one of the session's agents): its prompt and settings rather
    /// than the session's character's.
    async fn context_parts_for(
        &self,
        user: &UserId,
        session_id: SessionId,
        recent: PageLimit,
        speaker: Option<Arc<Character>>,
    ) -> Result<ContextParts, StoreError> {
        // The session's own memories are read at the epoch last seen, beside the session item
        // that tells the epoch: one round trip, and a second only after a reset elsewhere.
        let guessed = self.memory_epochs.get(&session_id);
        let own_at_guess = async {
            match guessed {
                Some(epoch) => self.store.context_memories(user, Some((session_id, epoch))).await.map(Some),
                None => Ok(None),
            }
        };
        let (log, global, guessed_own) = tokio::try_join!(
            self.store.context_log(user, session_id, recent),
            self.store.context_memories(user, None),
            own_at_guess,
        )?;
        let ContextLog { session, epoch, messages, summary, profile } = log;
        self.memory_epochs.insert(session_id, epoch);
        let character = async {
            match (&speaker, &session.character_id) {
                (Some(speaker), _) => Ok(Some(speaker.clone())),
                (None, Some(id)) => self.catalog.character(id).await,
                (None, None) => Ok(None),
            }
        };
        let own = async {
            match guessed_own.filter(|_| guessed == Some(epoch)) {
                Some(own) => Ok(own),
                None => self.store.context_memories(user, Some((session_id, epoch))).await,
            }
        };
        let (own, character) = tokio::try_join!(own, character)?;
        let mut memories: Vec<RankedMemory> = global.into_iter().chain(own).collect();
        memories.sort_by(|a, b| a.rank.cmp(&b.rank));
        let system_prompt = SystemPrompt::choose(
            character.as_deref().map(|character| character.system_prompt.as_str()),
            &session.settings,
        );
        Ok(ContextParts {
            session: ContextSession {
                id: session.id,
                title: session.title,
                settings: session.settings,
                character_id: session.character_id,
            },
            system_prompt,
            profile: profile.as_ref().map(ContextProfile::of),
            memories: memories.into_iter().map(|ranked| ranked.memory).collect(),
            summary,
            messages,
            tools: tools_for(session.tools, character.as_deref()),
        })
    }
}
