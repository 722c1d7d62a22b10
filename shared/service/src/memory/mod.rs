//! Memories the model writes itself. After a reply ends with text, the session's new turns are
//! read by the model with a shaped answer (`candidates`), each candidate is decided against the
//! user's memories and tombstones (`consolidate`), and the decisions are stored in one
//! transaction with the session's mark — so a turn delivered twice is read once, and a batch is
//! stored whole or not at all.
//!
//! It runs off the reply's path: on AWS from the messages table's stream (the `memory` function),
//! locally from the dev server's stream reader — both call [`Extractor::extract`]. A malformed
//! answer moves the mark (nothing is stored; the next turns are read next time); a model or
//! database fault leaves it, so the redelivered record tries again.

mod candidates;
mod consolidate;
mod queue;
mod summary;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use domain::{
    DayUsage, Importance, Memory, MemoryFilter, MemoryScope, MemorySource, NewMemory, PageLimit, Role, Seq, SessionId,
    UserId,
};
use llm::{Model, ModelError, Prompt, TokenCounts};
use store::{ExtractionBatch, ExtractionWrite, MessageOrder, MessageQuery, Store, StoreError};

pub use self::candidates::{Candidate, Malformed, candidates as parse_candidates};
pub use self::consolidate::{Decision, Skip, consolidate};
pub use self::queue::ExtractionQueue;
pub use self::summary::Summarized;
pub use store::stream::EndedReply;

/// How extraction uses the model.
#[derive(Clone, Debug)]
pub struct ExtractionConfig {
    /// The model that reads the turns (`MEMORY_MODEL`; the replies' model by default).
    pub model: String,
    /// The longest answer (the memories' JSON).
    pub max_tokens: u32,
    /// The most one extraction may wait for the model, start to end.
    pub timeout: Duration,
    /// The newest messages one extraction reads at most.
    pub window: u32,
    /// Extraction calls per user per UTC day (`MEMORY_DAILY_CALLS`, default 200); past it,
    /// ended replies are not read until the next day.
    pub daily_calls: u64,
    /// Whether a session that says nothing (`settings.memory` unset, no character) is read
    /// (`MEMORY_EXTRACTION=auto`, the default).
    pub auto_by_default: bool,
    /// The replies' recent window (`LLM_CONTEXT_MESSAGES`): summaries cover what is before it.
    pub summary_window: u32,
    /// How far (estimated tokens) the log before the window may run past the summary before a
    /// new one is written (`SUMMARY_STEP_TOKENS`, default 1000).
    pub summary_step_tokens: u64,
    /// The most one summary call reads (previous summary and chunk), within the model's context.
    pub summary_chunk_tokens: u64,
    /// The longest summary the model may write.
    pub summary_max_tokens: u32,
}

impl ExtractionConfig {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            max_tokens: 512,
            timeout: Duration::from_secs(60),
            window: 12,
            daily_calls: 200,
            auto_by_default: true,
            summary_window: 8,
            summary_step_tokens: 1000,
            summary_chunk_tokens: 3000,
            summary_max_tokens: 400,
        }
    }
}

/// What one extraction did.
#[derive(Clone, Debug, PartialEq)]
pub enum Extracted {
    /// The turns were read and the decisions stored (any of them may be empty).
    Stored { added: Vec<Memory>, superseded: usize, skipped: usize, usage: Option<TokenCounts> },
    /// The model's answer was not the memories' shape: nothing stored, the mark moved on.
    Unreadable,
    /// The user's extraction calls for today are used up: the turns were not read, the mark moved on.
    Capped,
    /// The session's memory is `manual`: the turns were not read, the mark moved on.
    Manual,
    /// The mark is at or past these turns already (a redelivery).
    AlreadyDone,
    /// The session is gone, reset, locked or closed: nothing to do.
    SessionGone,
}

impl Extracted {
    /// A word for logs (never the memories themselves).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stored { .. } => "stored",
            Self::Unreadable => "unreadable",
            Self::Capped => "capped",
            Self::Manual => "manual",
            Self::AlreadyDone => "already_done",
            Self::SessionGone => "session_gone",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl ExtractionError {
    /// Whether trying the same turns again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Store(error) => matches!(error, StoreError::Unavailable(_)),
            Self::Model(error) => error.retryable(),
        }
    }
}

/// Extraction: cheap to clone.
#[derive(Clone)]
pub struct Extractor {
    store: Store,
    model: Arc<dyn Model>,
    config: Arc<ExtractionConfig>,
}

impl Extractor {
    pub fn new(store: Store, model: Arc<dyn Model>, config: ExtractionConfig) -> Self {
        Self { store, model, config: Arc::new(config) }
    }

    /// Reads the session's turns after its mark, through `through`, and stores what they say.
    pub async fn extract(
        &self,
        user: &UserId,
        session_id: SessionId,
        through: Seq,
    ) -> Result<Extracted, ExtractionError> {
        let mark = match self.store.extraction_mark(user, session_id).await {
            Ok(mark) => mark,
            Err(StoreError::NotFound(_)) => return Ok(Extracted::SessionGone),
            Err(error) => return Err(error.into()),
        };
        if mark.is_some_and(|mark| mark >= through) {
            return Ok(Extracted::AlreadyDone);
        }
        let window = u64::from(self.config.window);
        let after = mark.map_or(0, Seq::get).max(through.get().saturating_sub(window));
        let query = MessageQuery {
            after_seq: Some(after),
            before_seq: Some(through.get() + 1),
            limit: PageLimit::fixed(self.config.window),
            order: MessageOrder::Asc,
        };
        let filter = MemoryFilter {
            scope: MemoryScope::Session(session_id),
            include_global: true,
            memory_type: None,
            min_importance: Importance::MIN,
        };
        let read = tokio::try_join!(
            self.store.get_session(user, session_id),
            self.store.list_messages(user, session_id, query),
            self.store.list_memories(user, &filter, PageLimit::fixed(100), None),
        );
        let (session, slice, existing) = match read {
            Ok(read) => read,
            Err(StoreError::NotFound(_)) => return Ok(Extracted::SessionGone),
            Err(error) => return Err(error.into()),
        };
        let turns: Vec<_> = slice.data.into_iter().filter(|message| message.status.is_final()).collect();
        let user_text: String = turns
            .iter()
            .filter(|message| message.role == Role::User)
            .map(|message| message.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let from = turns.first().map_or(through, |message| message.seq);
        let source = MemorySource { session_id, from_seq: from, to_seq: through };
        let existing = existing.data;
        let known: Vec<&Memory> = existing.iter().take(candidates::MAX_KNOWN).collect();
        let mut batch = ExtractionBatch { through, adds: Vec::new(), supersedes: Vec::new() };
        let auto = match session.settings.text("memory") {
            Some(mode) => mode == "auto",
            None => session.character_id.is_some() || self.config.auto_by_default,
        };
        if !auto {
            return Ok(match self.store_batch(user, session_id, batch, 0, 0, None).await? {
                Extracted::Stored { .. } => Extracted::Manual,
                other => other,
            });
        }
        if user_text.trim().is_empty() {
            return self.store_batch(user, session_id, batch, 0, 0, None).await;
        }
        if self.store.extraction_calls_today(user).await? >= self.config.daily_calls {
            return Ok(match self.store_batch(user, session_id, batch, 0, 0, None).await? {
                Extracted::Stored { .. } => Extracted::Capped,
                other => other,
            });
        }
        let known_contents: Vec<_> = known.iter().map(|memory| &memory.content).collect();
        let prompt = Prompt {
            tools: Vec::new(),
            tool_choice: llm::ToolUse::Auto,
            rounds: Vec::new(),
            model: self.config.model.clone(),
            messages: candidates::prompt_messages(&known_contents, &turns),
            max_tokens: self.config.max_tokens,
            temperature: Some(0.0),
            shape: Some(candidates::shape(known.len())),
        };
        let (answer, usage) = self.ask(prompt).await?;
        let Ok(found) = candidates::candidates(&answer, known.len(), &user_text) else {
            tracing::warn!(%session_id, "the model's memories answer was not its shape");
            return Ok(match self.store_batch(user, session_id, batch, 0, 0, usage).await? {
                Extracted::Stored { .. } => Extracted::Unreadable,
                other => other,
            });
        };
        let prints: Vec<String> = found.iter().map(Candidate::fingerprint).collect();
        let tombstones: HashSet<String> = self.store.tombstoned(user, &prints).await?;
        let mut skipped = 0;
        for decision in consolidate(found, &known, &existing, &tombstones) {
            let (candidate, supersedes) = match decision {
                Decision::Add(candidate) => (candidate, None),
                Decision::Update { candidate, supersedes } => (candidate, Some(supersedes)),
                Decision::Skip { .. } => {
                    skipped += 1;
                    continue;
                }
            };
            let scope = if candidate.session_only { MemoryScope::Session(session_id) } else { MemoryScope::Global };
            if let Some(old) = supersedes.and_then(|id| existing.iter().find(|memory| memory.id == id)) {
                let old_scope = old.session_id.map_or(MemoryScope::Global, MemoryScope::Session);
                batch.supersedes.push((old.id, old_scope, batch.adds.len()));
            }
            batch.adds.push(NewMemory {
                scope,
                memory_type: candidate.memory_type,
                content: candidate.content,
                importance: candidate.importance,
                source: Some(source),
            });
        }
        let superseded = batch.supersedes.len();
        self.store_batch(user, session_id, batch, superseded, skipped, usage).await
    }

    async fn store_batch(
        &self,
        user: &UserId,
        session_id: SessionId,
        batch: ExtractionBatch,
        superseded: usize,
        skipped: usize,
        usage: Option<TokenCounts>,
    ) -> Result<Extracted, ExtractionError> {
        let spent = usage.map_or_else(DayUsage::default, |tokens| {
            DayUsage::of_extraction(&self.config.model, tokens.input_tokens, tokens.output_tokens)
        });
        Ok(match self.store.store_extraction(user, session_id, batch, &spent).await? {
            ExtractionWrite::Stored(added) => Extracted::Stored { added, superseded, skipped, usage },
            ExtractionWrite::AlreadyDone => Extracted::AlreadyDone,
            ExtractionWrite::SessionGone => Extracted::SessionGone,
        })
    }

    /// The model's whole answer, within the configured time.
    async fn ask(&self, prompt: Prompt) -> Result<(String, Option<TokenCounts>), ModelError> {
        crate::answer::whole_answer(self.model.as_ref(), prompt, self.config.timeout).await
    }
}

/// The ended replies among change records of the messages table.
pub fn ended_replies(records: &[crate::realtime::Record]) -> Vec<EndedReply> {
    records
        .iter()
        .filter(|record| record.source == crate::realtime::Source::Messages)
        .filter_map(|record| store::stream::ended_reply(record.old.as_ref(), record.new.as_ref()))
        .collect()
}
