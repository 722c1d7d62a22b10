//! How a reply is produced: the turn is appended (the user's message and the reply's `streaming`
//! message, one transaction with the quota), the context assembled, the model streamed, and the
//! reply checkpointed while it streams and ended with its usage.
//!
//! The generation runs in a task of its own, so a caller that goes away does not stop it. Whoever
//! wants to see it — the request that started it, a resumed stream, a retried request — holds a
//! `watch` receiver of its progress: in the generating process from the registry of live replies,
//! elsewhere from a poller that follows the stored checkpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::chat::Chat;
use domain::{
    Character, CharacterId, Content, ContextParts, DedupeKey, Draft, Idempotency, Message, MessageAgent, MessageStatus,
    MessagesLimit, ModelSettings, NewMessage, PageLimit, ReplyError, ReplyMode, ReplyOptions, Seq, SessionId,
    ToolChoice, UserId,
};
use llm::LlmConfig;
use llm::{Model, ModelError};
use store::{Miss, ReplyEnd, StoreError};

mod admission;
mod agents;
mod builtin;
mod client_tools;
mod generator;
mod lease;
mod round;

use self::agents::Speaker;
pub use self::generator::reply_error;
use self::generator::{Generator, prompt_of};
pub use self::lease::LeaseReport;

/// What a message shows of the character that wrote it.
fn agent_of(character: &Character) -> MessageAgent {
    MessageAgent { id: character.id.clone(), name: character.name.clone(), avatar_url: character.avatar_url.clone() }
}

/// A reply's `streaming` message as it is appended: its model, its agent and why it speaks.
fn placeholder(generation: &Generation, speaker: &Speaker) -> NewMessage {
    let mut placeholder = NewMessage::reply_placeholder(&generation.model, None);
    placeholder.agent = speaker.character.as_deref().map(agent_of);
    placeholder.routing = speaker.routing.clone();
    placeholder.routing_usage = speaker.routing_usage.clone();
    placeholder
}

/// The first checkpoint of a streaming reply is written this long after it starts (if its text
/// grew); each later one waits this much longer than the one before: at 1 s, 3 s, 6 s, 10 s,
/// 15 s … A short reply is stored a second in; a long one writes a bounded number of checkpoints
/// (about √(2·seconds)), the text a few seconds behind at most in a minute-long reply.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long after the last write the next checkpoint is due, `written` checkpoints in.
fn checkpoint_due(written: u32) -> Duration {
    CHECKPOINT_INTERVAL * (written + 1)
}

/// A cancel from another instance is seen within this: when no checkpoint has been written for
/// this long, the generator reads the reply's status (half a read unit, eventually consistent).
pub const CANCEL_CHECK: Duration = Duration::from_secs(1);
/// How often a follower in another process reads the stored reply.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why a reply could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReplyFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model failed before any output; the turn is stored with the reply `failed`.
    #[error("{}", .0.message)]
    Failed(ReplyError),
    #[error("no model is configured")]
    NoModel,
    /// Every slot of the model is taken and the line for one is full: nothing was stored.
    #[error("the model is busy with other replies; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The named agent is not a character of the catalog (or not active): nothing was stored.
    #[error("agent {} not found", .0.as_str())]
    AgentNotFound(CharacterId),
    /// The named agent is a character, but not one of the session's agents: nothing was stored.
    #[error("{} is not an agent of this session", .0.as_str())]
    AgentNotInSession(CharacterId),
}

/// Where a reply stands, as its followers see it.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Streaming: the parts so far (for a reply without tools, its text).
    Streaming(Draft),
    /// Paused (`requires_action`): the message as stored, its client calls waiting for results.
    /// It resumes as `Streaming` wherever the client answers.
    Paused(Box<Message>),
    /// Ended (complete, incomplete, failed or cancelled): the message as stored, and the quota
    /// after the turn.
    Ended(Box<Message>, Option<MessagesLimit>),
}

impl Progress {
    /// Waits for the reply's first text or its end: a reply that ended without any text failed
    /// before output, and that is its error.
    pub async fn first_output(progress: &mut watch::Receiver<Progress>) -> Result<(), ReplyFailure> {
        loop {
            match &*progress.borrow_and_update() {
                Progress::Streaming(draft) if draft.has_calls() || !draft.text.is_empty() => return Ok(()),
                Progress::Paused(_) => return Ok(()),
                Progress::Ended(message, _) => {
                    return match &message.error {
                        Some(error)
                            if message.status == MessageStatus::Failed && message.content.as_str().is_empty() =>
                        {
                            Err(ReplyFailure::Failed(error.clone()))
                        }
                        _ => Ok(()),
                    };
                }
                Progress::Streaming(_) => {}
            }
            if progress.changed().await.is_err() {
                return Err(StoreError::internal("the reply's generator stopped without an end").into());
            }
        }
    }

    /// Waits for the reply's end: the message as stored and the quota after the turn.
    pub async fn end(
        progress: &mut watch::Receiver<Progress>,
    ) -> Result<(Message, Option<MessagesLimit>), ReplyFailure> {
        loop {
            match &*progress.borrow_and_update() {
                Progress::Ended(message, quota) => return Ok((message.as_ref().clone(), *quota)),
                // A JSON caller gets the paused reply: it answers the calls, then follows it.
                Progress::Paused(message) => return Ok((message.as_ref().clone(), None)),
                Progress::Streaming(_) => {}
            }
            if progress.changed().await.is_err() {
                return Err(StoreError::internal("the reply's generator stopped without an end").into());
            }
        }
    }
}

/// A turn as it starts (or as a retry finds it).
pub struct Turn {
    pub user_message: Option<Message>,
    /// The reply's message as it started (`streaming`), or as it stands for a replay.
    pub assistant_message: Message,
    /// The daily quota after the turn (`None` for a regenerate, which counts no message).
    pub quota: Option<MessagesLimit>,
    pub replayed: bool,
    pub progress: watch::Receiver<Progress>,
    /// With `mode: "all"`: the round's other replies, each as it starts (the channel closes when
    /// the round ends: every agent answered, or one was cancelled or failed).
    pub round: Option<mpsc::UnboundedReceiver<Turn>>,
}

/// The replies this process is generating, by session and seq.
#[derive(Default)]
pub(super) struct LiveReplies(Mutex<HashMap<(SessionId, Seq), Live>>);

#[derive(Clone)]
struct Live {
    variant: u32,
    progress: watch::Receiver<Progress>,
    cancel: Arc<Notify>,
}

impl LiveReplies {
    fn get(&self, session_id: SessionId, seq: Seq) -> Option<Live> {
        self.0.lock().ok()?.get(&(session_id, seq)).cloned()
    }

    fn insert(&self, session_id: SessionId, seq: Seq, live: Live) {
        if let Ok(mut map) = self.0.lock() {
            map.insert((session_id, seq), live);
        }
    }

    fn remove(&self, session_id: SessionId, seq: Seq, variant: u32) {
        if let Ok(mut map) = self.0.lock()
            && map.get(&(session_id, seq)).is_some_and(|live| live.variant == variant)
        {
            map.remove(&(session_id, seq));
        }
    }
}

/// The model, its settings and the live replies: what `Chat` needs to produce replies.
pub(super) struct Replies {
    pub model: Arc<dyn Model>,
    pub config: LlmConfig,
    pub live: LiveReplies,
    /// With `LLM_CONCURRENCY`: the model's slots.
    pub admission: Option<admission::Admission>,
}

impl Replies {
    pub(super) fn new(model: Arc<dyn Model>, config: LlmConfig) -> Self {
        let admission = config.concurrency.map(admission::Admission::new);
        Self { model, config, live: LiveReplies::default(), admission }
    }
}

/// A reply's generation: its settings, resolved, and its slot of the model (with
/// `LLM_CONCURRENCY`), held until the reply ends.
struct Generation {
    /// The agent that speaks: its own lines are the assistant's, others' are labelled.
    speaker: Option<CharacterId>,
    model: String,
    max_tokens: u32,
    temperature: Option<f32>,
    /// Whether the model may, must or must not call the session's tools in its first round.
    tool_choice: ToolChoice,
    slot: Option<admission::Slot>,
    /// When the request asked for the reply: its time cap counts from here, so a wait for a
    /// slot is inside the cap, not added to it.
    requested_at: tokio::time::Instant,
}

impl Chat {
    fn replies(&self) -> Result<&Replies, ReplyFailure> {
        self.replies.as_deref().ok_or(ReplyFailure::NoModel)
    }

    /// Without a model a reply is 503 — but another user's (or no) session is still 404 first.
    async fn require_model(&self, user: &UserId, session_id: SessionId) -> Result<(), ReplyFailure> {
        if self.replies.is_none() {
            self.store.get_session(user, session_id).await?;
            return Err(ReplyFailure::NoModel);
        }
        Ok(())
    }

    /// The request's choices, else the character's model settings (a model this deployment
    /// serves; `max_tokens` capped at `LLM_MAX_TOKENS`), else the configuration's.
    fn generation(
        &self,
        options: &ReplyOptions,
        preferred: Option<&ModelSettings>,
    ) -> Result<Generation, ReplyFailure> {
        let config = &self.replies()?.config;
        let preferred = preferred.cloned().unwrap_or_default();
        let model = match &options.model {
            None => preferred.model.filter(|name| config.models.contains(name)).unwrap_or_else(|| config.model.clone()),
            Some(name) if config.models.contains(name) => name.clone(),
            Some(_) => {
                return Err(ReplyFailure::Invalid {
                    field: "model",
                    message: format!("must be one of: {}", config.models.join(", ")),
                });
            }
        };
        let limit = config.max_tokens;
        let max_tokens = match options.max_tokens {
            None => preferred.max_tokens.map_or(config.max_tokens, |tokens| tokens.clamp(1, limit)),
            Some(tokens) if (1..=limit).contains(&tokens) => tokens,
            Some(_) => {
                return Err(ReplyFailure::Invalid { field: "max_tokens", message: format!("must be 1 to {limit}") });
            }
        };
        if let Some(temperature) = options.temperature
            && !(0.0..=2.0).contains(&temperature)
        {
            return Err(ReplyFailure::Invalid { field: "temperature", message: "must be 0 to 2".to_owned() });
        }
        let temperature = options.temperature.or(preferred.temperature);
        Ok(Generation {
            speaker: None,
            model,
            max_tokens,
            temperature,
            tool_choice: options.tool_choice.clone().unwrap_or_default(),
            slot: None,
            requested_at: tokio::time::Instant::now(),
        })
    }

    /// A slot of the model for a reply about to be stored (see `Admission`); refused with
    /// `Busy` before anything is written.
    async fn admitted(&self, mut generation: Generation) -> Result<Generation, ReplyFailure> {
        if let Some(admission) = &self.replies()?.admission {
            generation.slot = Some(admission.enter().await?);
        }
        Ok(generation)
    }

    /// Appends the user's `content` (if any) and a reply to it, and starts generating the reply.
    /// With a key, a retry never generates twice: it finds the turn as it stands. With
    /// `mode: "all"` the turn is the round's first reply, and `round` brings the others.
    pub async fn reply(
        &self,
        user: &UserId,
        session_id: SessionId,
        content: Option<Content>,
        options: ReplyOptions,
        key: Option<DedupeKey>,
    ) -> Result<Turn, ReplyFailure> {
        self.require_model(user, session_id).await?;
        let (speaker, rest) = if options.mode == Some(ReplyMode::All) {
            let mut round = self.round_speakers(user, session_id).await?.into_iter();
            let first = round.next().ok_or(StoreError::internal("a round has at least one agent"))?;
            (first, round.collect())
        } else {
            (self.speaker(user, session_id, &options, content.as_ref()).await?, Vec::new())
        };
        let generation = self.admitted(self.generation_for(&options, &speaker)?).await?;
        let requested_at = generation.requested_at;
        let mut messages: Vec<NewMessage> = content.map(NewMessage::user).into_iter().collect();
        messages.push(placeholder(&generation, &speaker));
        let kind = format!("reply:{}:{}:{:?}", generation.model, generation.max_tokens, generation.temperature);
        let idempotency = key.map(|key| Idempotency::new(key, &kind, &messages));
        let mut turn = self.start(user, session_id, messages, generation, speaker, idempotency.as_ref()).await?;
        if !rest.is_empty() && !turn.replayed {
            let first = turn.progress.clone();
            turn.round = Some(self.continue_round(user, session_id, options, rest, first, requested_at));
        }
        Ok(turn)
    }

    /// The generation's settings for `speaker`: the request's, else the agent's own.
    fn generation_for(&self, options: &ReplyOptions, speaker: &Speaker) -> Result<Generation, ReplyFailure> {
        let character = speaker.character.as_deref();
        let mut generation = self.generation(options, character.map(|character| &character.model))?;
        generation.speaker = character.map(|character| character.id.clone());
        Ok(generation)
    }

    /// Appends `messages` (a reply's placeholder last, the user's message before it, if any) and
    /// starts generating the reply, or — a retry of a stored turn — follows it as it stands.
    async fn start(
        &self,
        user: &UserId,
        session_id: SessionId,
        messages: Vec<NewMessage>,
        generation: Generation,
        speaker: Speaker,
        idempotency: Option<&Idempotency>,
    ) -> Result<Turn, ReplyFailure> {
        let character = speaker.character;
        // The log and the memories are read while the turn is appended: the prompt is then built
        // from both without another round trip.
        let recent = PageLimit::fixed(self.replies()?.config.context_messages);
        let (appended, log) = tokio::join!(
            self.append_admitted(
                user,
                session_id,
                messages,
                idempotency,
                character.as_ref().map(|character| &character.id)
            ),
            self.context_parts_for(user, session_id, recent, character.clone())
        );
        let appended = appended?;
        let (assistant, user_message) = match appended.messages.as_slice() {
            [user_message, assistant] => (assistant.clone(), Some(user_message.clone())),
            [assistant] => (assistant.clone(), None),
            _ => return Err(StoreError::internal("a reply turn holds one or two messages").into()),
        };
        if appended.replayed {
            let progress = self.follow_message(user, &assistant).await?;
            return Ok(Turn {
                user_message,
                assistant_message: assistant,
                quota: Some(appended.quota),
                replayed: true,
                progress,
                round: None,
            });
        }
        let mut context = match log {
            Ok(parts) => parts,
            Err(error) => {
                let failure = ModelError::Unavailable("the conversation could not be read".to_owned());
                self.fail_before_output(user, &assistant, appended.counted_in, &failure).await;
                return Err(error.into());
            }
        };
        // The log was read beside the append: it may not hold the user's message yet.
        if let Some(user_message) = &user_message
            && !context.messages.iter().any(|message| message.seq == user_message.seq)
        {
            context.messages.push(user_message.clone());
        }
        let progress =
            self.generate(user, assistant.clone(), generation, context, appended.counted_in, Some(appended.quota))?;
        Ok(Turn {
            user_message,
            assistant_message: assistant,
            quota: Some(appended.quota),
            replayed: false,
            progress,
            round: None,
        })
    }

    /// A new variant of the latest message, an assistant reply, generated from the log before it.
    pub async fn regenerate(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
        options: ReplyOptions,
    ) -> Result<Turn, ReplyFailure> {
        self.require_model(user, session_id).await?;
        // The agent of the reply it replaces, unless the request names another.
        let (character, switch) = match &options.agent {
            Some(_) => {
                let speaker = self.speaker(user, session_id, &options, None).await?;
                let switch =
                    speaker.character.as_deref().map(|character| (agent_of(character), speaker.routing.clone()));
                (speaker.character, switch)
            }
            None => match self.store.get_message(user, session_id, seq).await?.agent {
                Some(agent) => (Some(self.admitted_character(user, &agent.id).await?), None),
                None => (self.admit(user, session_id).await?, None),
            },
        };
        let mut generation = self.generation(&options, character.as_deref().map(|character| &character.model))?;
        generation.speaker = character.as_ref().map(|character| character.id.clone());
        let generation = self.admitted(generation).await?;
        let recent = PageLimit::fixed(self.replies()?.config.context_messages);
        let assistant =
            match self.store.regenerate_reply(user, session_id, seq, &generation.model, switch.clone()).await {
                // A reply whose generator is gone is ended first, then regenerated.
                Err(StoreError::Miss(Miss::StillStreaming)) => {
                    let stuck = self.store.get_message(user, session_id, seq).await?;
                    if !stuck.lease_expired(self.clock.now(), self.lease()) {
                        return Err(super::worded(StoreError::Miss(Miss::StillStreaming)).into());
                    }
                    self.unstuck(user, stuck).await?;
                    self.store.regenerate_reply(user, session_id, seq, &generation.model, switch).await
                }
                regenerated => regenerated,
            }
            .map_err(super::worded)?;
        let context = self.context_parts_for(user, session_id, recent, character).await?;
        let progress = self.generate(user, assistant.clone(), generation, context, None, None)?;
        Ok(Turn {
            user_message: None,
            assistant_message: assistant,
            quota: None,
            replayed: false,
            progress,
            round: None,
        })
    }

    /// Follows a reply: its progress from the generating task when it runs here, else from the
    /// stored checkpoints; an ended reply's progress is just its end.
    pub async fn follow(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
    ) -> Result<(Message, watch::Receiver<Progress>), ReplyFailure> {
        let message = self.store.get_message(user, session_id, seq).await?;
        let message = self.unstuck(user, message).await?;
        let progress = self.follow_message(user, &message).await?;
        Ok((message, progress))
    }

    /// A follower elsewhere than the generator polls the stored reply; a reply whose lease
    /// passes meanwhile is ended by it.
    async fn follow_message(
        &self,
        user: &UserId,
        message: &Message,
    ) -> Result<watch::Receiver<Progress>, ReplyFailure> {
        if message.status.is_final() {
            return Ok(watch::channel(Progress::Ended(Box::new(message.clone()), None)).1);
        }
        if let Some(live) =
            self.replies.as_deref().and_then(|replies| replies.live.get(message.session_id, message.seq))
            && live.variant == message.variant
        {
            return Ok(live.progress);
        }
        let (sender, receiver) =
            watch::channel(Progress::Streaming(Draft::of_parts(&message.parts, message.content.as_str())));
        let chat = self.clone();
        let user = user.clone();
        let (session_id, seq) = (message.session_id, message.seq);
        tokio::spawn(async move {
            let mut seen = (String::new(), 0);
            while !sender.is_closed() {
                tokio::time::sleep(POLL_INTERVAL).await;
                let Ok(Some(message)) = chat.store.reply_state(session_id, seq).await else { continue };
                let Ok(message) = chat.unstuck(&user, message).await else { continue };
                if message.status.is_final() {
                    let _ = sender.send(Progress::Ended(Box::new(message), None));
                    return;
                }
                if message.content.as_str() != seen.0 || message.parts.len() != seen.1 {
                    seen = (message.content.as_str().to_owned(), message.parts.len());
                    let _ = sender.send(Progress::Streaming(Draft::of_parts(&message.parts, message.content.as_str())));
                }
            }
        });
        Ok(receiver)
    }

    /// Stops a streaming reply (a no-op for one that has ended). When this process generates it,
    /// the answer waits for the generator's end, so it holds all the text there was.
    pub async fn cancel(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<Message, ReplyFailure> {
        let message = self.store.cancel_reply(user, session_id, seq).await.map_err(super::worded)?;
        if message.status == MessageStatus::RequiresAction {
            return self.cancel_paused(user, message).await;
        }
        let live = self.replies.as_deref().and_then(|replies| replies.live.get(session_id, seq));
        if let Some(live) = live.filter(|live| live.variant == message.variant) {
            live.cancel.notify_one();
            let mut progress = live.progress;
            if let Ok(Ok((ended, _))) = tokio::time::timeout(Duration::from_secs(2), Progress::end(&mut progress)).await
            {
                return Ok(ended);
            }
        }
        Ok(message)
    }

    pub async fn variants(&self, user: &UserId, session_id: SessionId, seq: Seq) -> Result<Vec<Message>, ReplyFailure> {
        Ok(self.store.reply_variants(user, session_id, seq).await?)
    }

    fn context_budget(&self, generation: &Generation) -> Result<u64, ReplyFailure> {
        let config = &self.replies()?.config;
        Ok(config.context_tokens.saturating_sub(u64::from(generation.max_tokens)))
    }

    /// Starts the generator task on `context` (untrimmed: the log before the reply is fitted to
    /// the budget here); the receiver sees its progress.
    fn generate(
        &self,
        user: &UserId,
        assistant: Message,
        generation: Generation,
        context: ContextParts,
        counted_in: Option<String>,
        quota: Option<MessagesLimit>,
    ) -> Result<watch::Receiver<Progress>, ReplyFailure> {
        self.start_generator(user, assistant, generation, context, (counted_in, quota), None)
    }

    /// Starts the generator of a reply resumed after its client tools' results: it carries on
    /// from `draft`, with the tokens `spent` so far, the model told the `rounds` before.
    fn generate_resumed(
        &self,
        user: &UserId,
        assistant: Message,
        generation: Generation,
        context: ContextParts,
        (draft, spent, rounds): (Draft, generator::Spent, Vec<llm::ToolRound>),
    ) -> Result<watch::Receiver<Progress>, ReplyFailure> {
        self.start_generator(user, assistant, generation, context, (None, None), Some((draft, spent, rounds)))
    }

    fn start_generator(
        &self,
        user: &UserId,
        assistant: Message,
        mut generation: Generation,
        context: ContextParts,
        (counted_in, quota): (Option<String>, Option<MessagesLimit>),
        resumed: Option<(Draft, generator::Spent, Vec<llm::ToolRound>)>,
    ) -> Result<watch::Receiver<Progress>, ReplyFailure> {
        let replies = self.replies.clone().ok_or(ReplyFailure::NoModel)?;
        let slot = generation.slot.take();
        let (sender, receiver) = watch::channel(Progress::Streaming(Draft::default()));
        let cancel = Arc::new(Notify::new());
        let live = Live { variant: assistant.variant, progress: receiver.clone(), cancel: cancel.clone() };
        replies.live.insert(assistant.session_id, assistant.seq, live);
        let budget = self.context_budget(&generation)?;
        let mut context = context;
        let tools = std::mem::take(&mut context.tools);
        context.messages.retain(|message| message.seq < assistant.seq);
        let (now, lease) = (self.clock.now(), self.lease());
        let stale = context.messages.iter().filter(|message| message.lease_expired(now, lease)).cloned().collect();
        let context = context.fit(budget);
        let too_long = context.token_estimate > budget;
        let mut prompt = prompt_of(&context, &generation);
        generator::offer_tools(&mut prompt, &tools, &generation.tool_choice);
        let resumed = resumed.map(|(draft, spent, rounds)| {
            prompt.rounds = rounds;
            (draft, spent)
        });
        let prompt_tokens = context.token_estimate;
        let generator = Generator {
            chat: self.clone(),
            user: user.clone(),
            assistant,
            timeout: Duration::from_secs(replies.config.timeout_secs),
            deadline: generation.requested_at + Duration::from_secs(replies.config.reply_timeout_secs),
            renew_every: lease / 3,
            stale,
            counted_in,
            quota,
            prompt_tokens,
            sender,
            cancel,
            tools,
            resumed,
            _slot: slot,
        };
        tokio::spawn(generator.run(replies.model.clone(), prompt, too_long));
        Ok(receiver)
    }

    /// A reply that could not start (the context could not be read): stored `failed`, quota back.
    async fn fail_before_output(
        &self,
        user: &UserId,
        assistant: &Message,
        counted_in: Option<String>,
        error: &ModelError,
    ) {
        let end = ReplyEnd {
            content: assistant.content.clone(),
            parts: Vec::new(),
            status: MessageStatus::Failed,
            stop_reason: Some("error".to_owned()),
            usage: None,
            error: Some(reply_error(error)),
            refund: counted_in,
            written_before: None,
        };
        if let Err(error) = self.store.finish_reply(user, assistant, end).await {
            tracing::error!(error = %error, "a failed reply could not be stored as failed");
        }
    }
}
