//! The generator: the task that streams the model's answer into the stored reply — checkpoints
//! while it streams, cancel checks, the time limits, the tool calls between the model's rounds,
//! and the end with its usage and cost.
//!
//! With tools, a reply is up to `MAX_TOOL_ROUNDS` model calls: a call that ends with tool calls
//! has them run (each call and its result stored together, in order, as the reply's parts; an
//! unknown tool, arguments that fail the schema, a timeout or an error answer are results too)
//! and the model is asked again with them; the last round may not call. `tool_choice` binds the
//! first round only (then the model may answer). Cancel and the reply's time cap stop a round
//! or a tool call alike; usage adds up over the rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Notify, watch};

use crate::chat::Chat;
use domain::{
    Content, Context, Draft, MAX_RESULT_BYTES, MAX_TOOL_ROUNDS, Message, MessageStatus, MessageUsage, MessagesLimit,
    Part, ReplyError, Role, Seq, Tool, ToolChoice, ToolError, ToolKind, Usd, UserId, estimate_tokens,
};
use llm::{
    Model, ModelError, ModelEvent, ModelFinished, Prompt, PromptMessage, PromptRole, StopReason, TokenCounts,
    ToolCallSpec, ToolOutcome, ToolRound, ToolSpec, ToolUse,
};
use store::{Checkpoint, Miss, ReplyEnd, StoreError};

use super::{CANCEL_CHECK, Generation, Progress, checkpoint_due};

/// How often a paused reply's follower reads whether its client answered.
const PAUSE_POLL: Duration = Duration::from_millis(300);

/// The code, status and retry advice a model failure is reported with, on the message and in
/// the HTTP error alike.
pub fn reply_error(error: &ModelError) -> ReplyError {
    let code = match error {
        ModelError::Unavailable(_) | ModelError::Malformed(_) | ModelError::Rejected(_) => "llm_error",
        ModelError::Busy { .. } => "llm_busy",
        ModelError::Timeout => "llm_timeout",
        ModelError::ContextTooLong => "context_too_long",
    };
    let retry_after = match error {
        ModelError::Busy { retry_after } => Some(retry_after.map_or(1, |after| after.as_secs().max(1))),
        _ => None,
    };
    ReplyError { code: code.to_owned(), message: error.to_string(), retryable: error.retryable(), retry_after }
}

/// The prompt: the context's first four parts as the system message, then its messages as the
/// conversation.
pub(super) fn prompt_of(context: &Context, generation: &Generation) -> Prompt {
    let mut messages = vec![PromptMessage::new(PromptRole::System, context.instructions().to_owned())];
    for message in &context.messages {
        // Another agent's line is told as what it said, by name — never in this agent's voice.
        let other = message.agent.as_ref().filter(|agent| generation.speaker.as_ref() != Some(&agent.id));
        let role = match (message.role, other) {
            (Role::User, _) => PromptRole::User,
            (Role::Assistant, Some(_)) => PromptRole::User,
            (Role::Assistant, None) => PromptRole::Assistant,
            (Role::System | Role::Tool, _) => PromptRole::System,
        };
        // This agent's own reply that called tools: its rounds, then the text after them.
        let (rounds, text) = match other {
            None if role == PromptRole::Assistant && !message.parts.is_empty() => {
                history_of(message.seq, &message.parts)
            }
            Some(agent) => (Vec::new(), format!("[{}]: {}", agent.name, message.content.as_str())),
            None => (Vec::new(), message.content.as_str().to_owned()),
        };
        if text.trim().is_empty() && rounds.is_empty() {
            continue;
        }
        // Consecutive lines of one role are one turn: servers refuse two assistant turns in a row
        // at the end (llama.cpp), and some any repeated role.
        let joins = messages.len() > 1 && rounds.is_empty();
        match messages.last_mut() {
            Some(last) if joins && last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&text);
            }
            _ => messages.push(PromptMessage { role, content: text, rounds }),
        }
    }
    let mut prompt = Prompt::new(generation.model.clone(), messages, generation.max_tokens);
    prompt.temperature = generation.temperature;
    prompt
}

/// Whether the reply called `name` with `arguments` before.
fn called_before(draft: &Draft, name: &str, arguments: &serde_json::Value) -> bool {
    draft.closed.iter().any(|part| matches!(part, Part::ToolCall { name: called, arguments: with, .. } if called == name && with == arguments))
}

/// A stored reply's tool rounds as the model is told them again: each round's text, its calls and
/// their results (a resumed reply's history).
pub(super) fn rounds_of(parts: &[Part]) -> Vec<ToolRound> {
    let mut rounds: Vec<ToolRound> = Vec::new();
    let mut current = ToolRound::default();
    for part in parts {
        let done = !current.results.is_empty();
        match part {
            Part::Text { text } => {
                if done {
                    rounds.push(std::mem::take(&mut current));
                }
                current.text.push_str(text);
            }
            Part::ToolCall { id, name, arguments } => {
                if done {
                    rounds.push(std::mem::take(&mut current));
                }
                current.calls.push(ToolCallSpec { id: id.clone(), name: name.clone(), arguments: arguments.clone() });
            }
            Part::ToolResult { tool_call_id, name, output, error } => current.results.push(ToolOutcome {
                id: tool_call_id.clone(),
                name: name.clone(),
                output: match (output, error) {
                    (Some(output), _) => Ok(output.clone()),
                    (None, Some(error)) => Err(error.message.clone()),
                    (None, None) => Ok(serde_json::Value::Null),
                },
            }),
        }
    }
    if !current.calls.is_empty() {
        rounds.push(current);
    }
    rounds
}

/// An earlier reply's parts as the model is told them: its rounds — each call with its result,
/// the ids made unique in the conversation by the reply's seq (every reply counts `call_1`, …) —
/// and the text after the last one. A call without a result (a pause that never ended) is left
/// out: providers refuse a call that has none.
pub(super) fn history_of(seq: Seq, parts: &[Part]) -> (Vec<ToolRound>, String) {
    let text_of = |parts: &[Part]| -> String {
        parts
            .iter()
            .filter_map(|part| if let Part::Text { text } = part { Some(text.as_str()) } else { None })
            .collect()
    };
    let Some(last) = parts.iter().rposition(|part| matches!(part, Part::ToolResult { .. })) else {
        return (Vec::new(), text_of(parts));
    };
    let (rounds, after) = parts.split_at(last + 1);
    let unique = |id: &str| format!("m{}_{id}", seq.get());
    let mut told = rounds_of(rounds);
    for round in &mut told {
        let answered: Vec<String> = round.results.iter().map(|result| result.id.clone()).collect();
        round.calls.retain(|call| answered.contains(&call.id));
        round.calls.iter_mut().for_each(|call| call.id = unique(&call.id));
        round.results.iter_mut().for_each(|result| result.id = unique(&result.id));
    }
    told.retain(|round| !round.calls.is_empty());
    (told, text_of(after))
}

/// The model's view of a session's tools, and the reply's `tool_choice` for its first round.
pub(super) fn offer_tools(prompt: &mut Prompt, tools: &[Tool], choice: &ToolChoice) {
    if tools.is_empty() {
        return;
    }
    prompt.tools = tools
        .iter()
        .map(|tool| ToolSpec {
            name: tool.name.as_str().to_owned(),
            description: tool.description.clone(),
            parameters: tool.parameters.clone(),
        })
        .collect();
    prompt.tool_choice = match choice {
        ToolChoice::Auto => ToolUse::Auto,
        ToolChoice::Required => ToolUse::Required,
        ToolChoice::None => ToolUse::None,
        ToolChoice::Named(name) => ToolUse::Named(name.as_str().to_owned()),
    };
}

/// One reply's generation.
pub(super) struct Generator {
    pub(super) chat: Chat,
    pub(super) user: UserId,
    pub(super) assistant: Message,
    /// How long the model may be silent (its start, or between two pieces).
    pub(super) timeout: Duration,
    /// When the reply must have ended, whatever the model does (`LLM_REPLY_TIMEOUT_SECS`).
    pub(super) deadline: tokio::time::Instant,
    /// The generator writes at least this often, renewing the reply's lease.
    pub(super) renew_every: Duration,
    /// Replies of the session whose lease passed, met in the context: ended beside this one.
    pub(super) stale: Vec<Message>,
    pub(super) counted_in: Option<String>,
    pub(super) quota: Option<MessagesLimit>,
    pub(super) prompt_tokens: u64,
    pub(super) sender: watch::Sender<Progress>,
    pub(super) cancel: Arc<Notify>,
    /// The tools the model may call.
    pub(super) tools: Vec<Tool>,
    /// Where the reply starts: empty, or — resumed after its client's results — its parts so far,
    /// with the tokens its earlier rounds spent.
    pub(super) resumed: Option<(Draft, Spent)>,
    /// The reply's slot of the model: freed when the generator ends.
    pub(super) _slot: Option<super::admission::Slot>,
}

/// How the model's stream ended, as far as the generator saw it.
#[derive(Debug)]
enum Outcome {
    /// It called client tools: the reply waits for their results.
    Paused,
    Finished(ModelFinished),
    Failed(ModelError),
    Cancelled,
    /// The reply reached the content limit.
    Full,
    /// The reply reached its time cap.
    TimedOut,
}

/// Tokens of the rounds that called tools (the last round's are its `Finished`'s).
#[derive(Clone, Debug, Default)]
pub(super) struct Spent {
    input: u64,
    output: u64,
    estimated: bool,
}

impl Spent {
    /// What a paused reply had spent, as it stored it.
    pub(super) fn of(usage: Option<&MessageUsage>) -> Self {
        usage.map_or_else(Self::default, |usage| Self {
            input: usage.input_tokens,
            output: usage.output_tokens,
            estimated: usage.estimated,
        })
    }

    fn usage(&self, model: &str, prices: &domain::ModelPrices) -> MessageUsage {
        MessageUsage {
            input_tokens: self.input,
            output_tokens: self.output,
            model: model.to_owned(),
            cost_usd: Usd(prices.cost(model, self.input, self.output)),
            estimated: self.estimated,
        }
    }

    fn add(&mut self, counted: Option<TokenCounts>, prompt: &Prompt, calls: &[(String, serde_json::Value)]) {
        match counted {
            Some(counts) => {
                self.input += counts.input_tokens;
                self.output += counts.output_tokens;
            }
            None => {
                let said: usize = prompt.messages.iter().map(|message| message.content.len()).sum();
                self.input += (said as u64).div_ceil(4);
                self.output +=
                    calls.iter().map(|(_, arguments)| estimate_tokens(&arguments.to_string()) + 4).sum::<u64>();
                self.estimated = true;
            }
        }
    }
}

/// The generator's writes so far.
struct Writes {
    /// Bytes of the text stored.
    written: usize,
    checkpoints: u32,
    last_write: Instant,
    /// The last write or read of the reply's item.
    last_contact: Instant,
}

impl Generator {
    pub(super) async fn run(mut self, model: Arc<dyn Model>, prompt: Prompt, too_long: bool) {
        let (mut draft, mut spent) = self.resumed.take().unwrap_or_default();
        let stale = std::mem::take(&mut self.stale);
        let outcome = if too_long {
            Outcome::Failed(ModelError::ContextTooLong)
        } else {
            // Replies the context met whose generator is gone end while this one starts.
            let (outcome, ()) = tokio::join!(
                self.rounds(model.as_ref(), prompt, &mut draft, &mut spent),
                self.chat.unstick_all(&self.user, stale)
            );
            outcome
        };
        if matches!(outcome, Outcome::Paused) {
            return self.pause(draft, spent).await;
        }
        self.end(draft, spent, outcome).await;
    }

    /// Stores the pause (the pending calls, the text and the tokens so far), frees the model's
    /// slot, and follows the reply for whoever watches: resumed wherever its client answers, or
    /// ended when the wait passes `CLIENT_TOOL_TIMEOUT`.
    async fn pause(mut self, draft: Draft, spent: Spent) {
        let content = match Content::parse(draft.content()) {
            Ok(content) => content,
            Err(_) => return self.end(draft, spent, Outcome::Full).await,
        };
        let model = self.assistant.model.clone().unwrap_or_default();
        let usage = spent.usage(&model, &self.chat.store.limits_config().prices);
        match self.chat.store.pause_reply(&self.assistant, &content, &draft.parts(), &usage).await {
            Ok(Checkpoint::Saved) => {}
            Ok(Checkpoint::Stopped) => return self.end(draft, spent, Outcome::Cancelled).await,
            Err(error) => {
                tracing::warn!(error = %error, "a reply's pause could not be stored");
                let failure = ModelError::Unavailable("the reply's pause could not be stored".to_owned());
                return self.end(draft, spent, Outcome::Failed(failure)).await;
            }
        }
        drop(self._slot.take());
        let (session_id, seq, variant) = (self.assistant.session_id, self.assistant.seq, self.assistant.variant);
        if let Some(replies) = self.chat.replies.as_deref() {
            replies.live.remove(session_id, seq, variant);
        }
        let mut paused = self.assistant.clone();
        paused.status = MessageStatus::RequiresAction;
        paused.content = content;
        paused.parts = draft.parts();
        paused.usage = Some(usage);
        tracing::info!(pending = draft.pending().len(), "reply paused for client tools");
        self.sender.send_replace(Progress::Paused(Box::new(paused)));
        while !self.sender.is_closed() {
            tokio::time::sleep(PAUSE_POLL).await;
            let Ok(Some(message)) = self.chat.store.reply_state(session_id, seq).await else { continue };
            if message.variant != variant {
                return;
            }
            let message = match self.chat.unstuck(&self.user, message).await {
                Ok(message) => message,
                Err(_) => continue,
            };
            if message.status == MessageStatus::RequiresAction {
                continue;
            }
            let Ok(mut progress) = self.chat.follow_message(&self.user, &message).await else { return };
            loop {
                let current = progress.borrow_and_update().clone();
                let ended = matches!(current, Progress::Ended(..));
                self.sender.send_replace(current);
                if ended || progress.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    /// The model's rounds: each that ends with tool calls has them run and asks again.
    async fn rounds(&self, model: &dyn Model, mut prompt: Prompt, draft: &mut Draft, spent: &mut Spent) -> Outcome {
        let now = Instant::now();
        let mut writes = Writes { written: 0, checkpoints: 0, last_write: now, last_contact: now };
        for round in prompt.rounds.len()..MAX_TOOL_ROUNDS {
            if round + 1 == MAX_TOOL_ROUNDS && !prompt.tools.is_empty() {
                prompt.tool_choice = ToolUse::None;
            }
            let mut calls = Vec::new();
            let outcome = self.stream(model, prompt.clone(), draft, &mut calls, &mut writes).await;
            // Calls in the last round (a provider without a "none", e.g. Converse) are not run.
            let finished = match outcome {
                Outcome::Finished(finished) if !calls.is_empty() && round + 1 < MAX_TOOL_ROUNDS => finished,
                other => return other,
            };
            spent.add(finished.usage, &prompt, &calls);
            let mut told = ToolRound { text: std::mem::take(&mut draft.text), ..ToolRound::default() };
            if !told.text.is_empty() {
                draft.closed.push(Part::Text { text: told.text.clone() });
            }
            let mut pending = false;
            let mut repeated = false;
            for (name, arguments) in calls {
                // A call this reply made already (a small model loops) is not made again: the
                // model has its result, and the next round must answer.
                if called_before(draft, &name, &arguments) {
                    repeated = true;
                    continue;
                }
                let id = format!("call_{}", draft.calls() + 1);
                // A client tool's call waits for the client; its checks fail as any call's do.
                let client = self.tools.iter().find(|tool| tool.name.as_str() == name && tool.kind == ToolKind::Client);
                if let Some(tool) = client
                    && tool.check_arguments(&arguments).is_ok()
                {
                    // Shown only once the pause is stored (`pause`): a client that answers the
                    // call at once must find it waiting.
                    draft.closed.push(Part::ToolCall { id, name, arguments });
                    pending = true;
                    continue;
                }
                let result = tokio::select! {
                    result = self.call_tool(&id, &name, &arguments) => result,
                    () = self.cancel.notified() => return Outcome::Cancelled,
                    () = tokio::time::sleep_until(self.deadline) => return Outcome::TimedOut,
                };
                draft.closed.push(Part::ToolCall { id: id.clone(), name: name.clone(), arguments: arguments.clone() });
                draft.closed.push(Part::ToolResult {
                    tool_call_id: id.clone(),
                    name: name.clone(),
                    output: result.as_ref().ok().cloned(),
                    error: result.as_ref().err().cloned(),
                });
                told.calls.push(ToolCallSpec { id: id.clone(), name: name.clone(), arguments });
                told.results.push(ToolOutcome { id, name, output: result.map_err(|error| error.message) });
                if !pending {
                    self.sender.send_replace(Progress::Streaming(draft.clone()));
                }
            }
            if pending {
                return Outcome::Paused;
            }
            // The calls and their results are stored before the model is asked again.
            if let Err(outcome) = self.write(draft, &mut writes).await {
                return outcome;
            }
            if !told.calls.is_empty() {
                prompt.rounds.push(told);
            }
            prompt.tool_choice = if repeated { ToolUse::None } else { ToolUse::Auto };
        }
        Outcome::Failed(ModelError::Malformed("the model kept calling tools".to_owned()))
    }

    /// Runs one call: the tool's answer, or the error the model reads instead.
    async fn call_tool(
        &self,
        id: &str,
        name: &str,
        arguments: &serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let Some(tool) = self.tools.iter().find(|tool| tool.name.as_str() == name) else {
            return Err(ToolError::new("unknown_tool", format!("there is no tool named {name:?}")));
        };
        // Reached for a client tool only when its arguments failed their schema.
        tool.check_arguments(arguments).map_err(|problem| ToolError::new("invalid_arguments", problem))?;
        if let Some(builtin) = tool.builtin_kind() {
            let run = super::builtin::run(&self.chat.store, &self.user, &self.assistant, builtin, arguments);
            let result = run.await;
            tracing::info!(tool = name, ok = result.is_ok(), "built-in tool called");
            return result;
        }
        let (ToolKind::Http, Some(url)) = (tool.kind, tool.url.as_deref()) else {
            return Err(ToolError::new("unavailable", "this tool cannot be run by the server"));
        };
        let Some(webhooks) = self.chat.webhooks.as_deref() else {
            return Err(ToolError::new("unavailable", "HTTP tools are not enabled on this deployment"));
        };
        let assistant = &self.assistant;
        let timeout = Duration::from_millis(u64::from(tool.timeout_ms));
        let body = serde_json::json!({
            "type": "tool.call",
            "timestamp": self.chat.clock.now().to_string(),
            "data": {
                "tool": name,
                "call_id": id,
                "arguments": arguments,
                "session_id": assistant.session_id.to_string(),
                "seq": assistant.seq.get(),
            },
        });
        let call = webhooks::Call {
            url,
            secret: tool.secret.as_ref().map(domain::ToolSecret::expose),
            id: &format!("{}-{}-{id}", assistant.id, assistant.variant),
            body,
            timeout,
            max_bytes: MAX_RESULT_BYTES,
            timestamp: self.chat.clock.now().unix_seconds(),
        };
        let started = Instant::now();
        let result = webhooks.call(call).await;
        tracing::info!(tool = name, ok = result.is_ok(), millis = started.elapsed().as_millis() as u64, "tool called");
        result.map_err(|error| ToolError::new(error.code(), error.message(timeout, MAX_RESULT_BYTES)))
    }

    /// Between two pieces of the answer: renews the lease when the last write is old enough
    /// (storing the text so far), else a second after the last contact reads the reply's status
    /// to see a cancel from another instance. `Some` when the generation must stop.
    async fn keep(&self, draft: &Draft, writes: &mut Writes) -> Option<Outcome> {
        let (session_id, seq, variant) = (self.assistant.session_id, self.assistant.seq, self.assistant.variant);
        if writes.last_write.elapsed() >= self.renew_every {
            return self.write(draft, writes).await.err();
        }
        if writes.last_contact.elapsed() >= CANCEL_CHECK {
            writes.last_contact = Instant::now();
            if let Ok(false) = self.chat.store.reply_generating(session_id, seq, variant).await {
                return Some(Outcome::Cancelled);
            }
        }
        None
    }

    /// Stores the text so far, which renews the lease: `Ok(true)` stored, `Ok(false)` the write
    /// failed (a checkpoint is an optimisation of what followers see: the end stores all), `Err`
    /// the generation must stop (the reply is no longer this generation's, or the text is full).
    async fn write(&self, draft: &Draft, writes: &mut Writes) -> Result<bool, Outcome> {
        let (session_id, seq, variant) = (self.assistant.session_id, self.assistant.seq, self.assistant.variant);
        let text = draft.content();
        let content = Content::parse(text).map_err(|_| Outcome::Full)?;
        let parts = if draft.has_calls() { draft.parts() } else { Vec::new() };
        match self.chat.store.checkpoint_reply(session_id, seq, variant, &content, &parts).await {
            Ok(Checkpoint::Saved) => {
                writes.written = content.as_str().len() + parts.len();
                writes.last_write = Instant::now();
                writes.last_contact = Instant::now();
                Ok(true)
            }
            Ok(Checkpoint::Stopped) => Err(Outcome::Cancelled),
            Err(error) => {
                tracing::warn!(error = %error, "checkpoint failed");
                Ok(false)
            }
        }
    }

    /// One model call: its text into `draft`, its tool calls into `calls`.
    async fn stream(
        &self,
        model: &dyn Model,
        prompt: Prompt,
        draft: &mut Draft,
        calls: &mut Vec<(String, serde_json::Value)>,
        writes: &mut Writes,
    ) -> Outcome {
        let mut cancel_check = tokio::time::interval(CANCEL_CHECK);
        cancel_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = tokio::time::timeout(self.timeout, model.stream(prompt));
        tokio::pin!(start);
        let mut stream = loop {
            tokio::select! {
                started = &mut start => match started {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(error)) => return Outcome::Failed(error),
                    Err(_) => return Outcome::Failed(ModelError::Timeout),
                },
                () = self.cancel.notified() => return Outcome::Cancelled,
                () = tokio::time::sleep_until(self.deadline) => return Outcome::TimedOut,
                _ = cancel_check.tick() => {
                    if let Some(outcome) = self.keep(draft, writes).await {
                        return outcome;
                    }
                }
            }
        };
        let before = draft.content().len();
        let mut silence = tokio::time::Instant::now() + self.timeout;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(silence, stream.next()) => next,
                () = self.cancel.notified() => return Outcome::Cancelled,
                () = tokio::time::sleep_until(self.deadline) => return Outcome::TimedOut,
                _ = cancel_check.tick() => {
                    if let Some(outcome) = self.keep(draft, writes).await {
                        return outcome;
                    }
                    continue;
                }
            };
            silence = tokio::time::Instant::now() + self.timeout;
            let piece = match next {
                Err(_) => return Outcome::Failed(ModelError::Timeout),
                Ok(None) => return Outcome::Failed(ModelError::Unavailable("the stream ended early".into())),
                Ok(Some(Err(error))) => return Outcome::Failed(error),
                Ok(Some(Ok(ModelEvent::Finished(finished)))) => return Outcome::Finished(finished),
                Ok(Some(Ok(ModelEvent::ToolCall { name, arguments }))) => {
                    calls.push((name, arguments));
                    continue;
                }
                Ok(Some(Ok(ModelEvent::Text(piece)))) => piece,
            };
            let length = before + draft.text.len();
            if length + piece.len() > Content::MAX_BYTES {
                let room = Content::MAX_BYTES - length;
                let cut = (0..=room).rev().find(|&index| piece.is_char_boundary(index)).unwrap_or(0);
                draft.text.push_str(&piece[..cut]);
                return Outcome::Full;
            }
            draft.text.push_str(&piece);
            self.sender.send_replace(Progress::Streaming(draft.clone()));
            let due = checkpoint_due(writes.checkpoints).min(self.renew_every);
            if writes.last_write.elapsed() >= due && before + draft.text.len() + draft.closed.len() > writes.written {
                match self.write(draft, writes).await {
                    Ok(true) => writes.checkpoints += 1,
                    Ok(false) => {}
                    Err(outcome) => return outcome,
                }
            }
        }
    }

    async fn end(self, draft: Draft, spent: Spent, outcome: Outcome) {
        let assistant = &self.assistant;
        let model = assistant.model.clone().unwrap_or_default();
        let text = draft.content();
        let output_tokens = estimate_tokens(&draft.text);
        // The rounds before the last one count too.
        let estimate = |estimated: bool, input_tokens: u64, output_tokens: u64| {
            let prices = &self.chat.store.limits_config().prices;
            let (input_tokens, output_tokens) = (input_tokens + spent.input, output_tokens + spent.output);
            Some(MessageUsage {
                input_tokens,
                output_tokens,
                model: model.clone(),
                cost_usd: Usd(prices.cost(&model, input_tokens, output_tokens)),
                estimated: estimated || spent.estimated,
            })
        };
        let output = !text.is_empty() || draft.has_calls();
        let (status, stop_reason, usage, error) = match &outcome {
            // A pause is stored by `pause`, not here; met only if it could not be (as cancelled).
            Outcome::Paused => (
                MessageStatus::Cancelled,
                Some("cancelled".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                None,
            ),
            Outcome::Finished(finished) => {
                let status = if finished.stop == StopReason::MaxTokens {
                    MessageStatus::Incomplete
                } else {
                    MessageStatus::Complete
                };
                let usage = match finished.usage {
                    Some(counts) => estimate(false, counts.input_tokens, counts.output_tokens),
                    None => estimate(true, self.prompt_tokens, output_tokens),
                };
                let reason =
                    if finished.stop_detail.is_empty() { "stop".to_owned() } else { finished.stop_detail.clone() };
                (status, Some(reason), usage, None)
            }
            Outcome::Full => (
                MessageStatus::Incomplete,
                Some("content_limit".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                None,
            ),
            Outcome::TimedOut if !output => (
                MessageStatus::Failed,
                Some("timeout".to_owned()),
                None,
                Some(ReplyError {
                    code: "llm_timeout".to_owned(),
                    message: "the reply reached its time limit before any text".to_owned(),
                    retryable: true,
                    retry_after: None,
                }),
            ),
            Outcome::TimedOut => (
                MessageStatus::Incomplete,
                Some("timeout".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                None,
            ),
            Outcome::Cancelled => (
                MessageStatus::Cancelled,
                Some("cancelled".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                None,
            ),
            Outcome::Failed(failure) if !output => {
                (MessageStatus::Failed, Some("error".to_owned()), None, Some(reply_error(failure)))
            }
            Outcome::Failed(failure) => (
                MessageStatus::Failed,
                Some("error".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                Some(reply_error(failure)),
            ),
        };
        let refund = if matches!(outcome, Outcome::Failed(_) | Outcome::TimedOut) && !output {
            self.counted_in.clone()
        } else {
            None
        };
        let mut quota = self.quota;
        if let Some(quota) = quota.as_mut().filter(|_| refund.is_some()) {
            quota.used = quota.used.saturating_sub(1);
            if quota.total >= 0 {
                quota.remaining = (quota.remaining + 1).min(quota.total);
            }
        }
        let content = Content::parse(text).unwrap_or_else(|_| assistant.content.clone());
        let parts = if draft.has_calls() { draft.parts() } else { Vec::new() };
        let end = ReplyEnd { content, parts, status, stop_reason, usage, error, refund, written_before: None };
        let stored = match self.chat.store.finish_reply(&self.user, assistant, end.clone()).await {
            // Ended by someone else meanwhile (its lease was taken for passed): as it is stored.
            Err(StoreError::Miss(Miss::Replaced)) => {
                match self.chat.store.reply_state(assistant.session_id, assistant.seq).await {
                    Ok(Some(message)) => Ok(message),
                    _ => Err(StoreError::Miss(Miss::Replaced)),
                }
            }
            stored => stored,
        };
        let ended = match stored {
            Ok(message) => message,
            Err(failure) => {
                tracing::error!(error = %failure, "the reply's end could not be stored");
                let mut message = assistant.clone();
                message.content = end.content;
                message.status = MessageStatus::Failed;
                message.error = Some(ReplyError {
                    code: "internal".to_owned(),
                    message: "the reply could not be stored".to_owned(),
                    retryable: true,
                    retry_after: None,
                });
                message
            }
        };
        let (session_id, seq) = (assistant.session_id, assistant.seq);
        tracing::info!(
            status = ended.status.as_str(),
            output_tokens = ended.usage.as_ref().map_or(0, |u| u.output_tokens),
            "reply ended"
        );
        self.sender.send_replace(Progress::Ended(Box::new(ended), quota));
        if let Some(replies) = self.chat.replies.as_deref() {
            replies.live.remove(session_id, seq, assistant.variant);
        }
    }
}
