//! The generator: the task that streams the model's answer into the stored reply — checkpoints
//! while it streams, cancel checks, the time limits, and the end with its usage and cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Notify, watch};

use crate::chat::Chat;
use domain::{
    Content, Context, Message, MessageStatus, MessageUsage, QuotaState, ReplyError, Role, Usd, UserId, estimate_tokens,
};
use llm::{Model, ModelError, ModelEvent, ModelFinished, Prompt, PromptMessage, PromptRole, StopReason};
use store::{Checkpoint, ReplyEnd};

use super::{CANCEL_CHECK, Generation, Progress, checkpoint_due};

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
    let mut messages = vec![PromptMessage { role: PromptRole::System, content: context.instructions().to_owned() }];
    for message in &context.messages {
        let role = match message.role {
            Role::User => PromptRole::User,
            Role::Assistant => PromptRole::Assistant,
            Role::System | Role::Tool => PromptRole::System,
        };
        if message.content.as_str().trim().is_empty() {
            continue;
        }
        // Consecutive lines of one role are one turn: servers refuse two assistant turns in a row
        // at the end (llama.cpp), and some any repeated role.
        let joins = messages.len() > 1;
        match messages.last_mut() {
            Some(last) if joins && last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(message.content.as_str());
            }
            _ => messages.push(PromptMessage { role, content: message.content.as_str().to_owned() }),
        }
    }
    Prompt {
        model: generation.model.clone(),
        messages,
        max_tokens: generation.max_tokens,
        temperature: generation.temperature,
    }
}

/// One reply's generation.
pub(super) struct Generator {
    pub(super) chat: Chat,
    pub(super) user: UserId,
    pub(super) assistant: Message,
    pub(super) timeout: Duration,
    pub(super) counted_in: Option<String>,
    pub(super) quota: Option<QuotaState>,
    pub(super) prompt_tokens: u64,
    pub(super) sender: watch::Sender<Progress>,
    pub(super) cancel: Arc<Notify>,
}

/// How the model's stream ended, as far as the generator saw it.
enum Outcome {
    Finished(ModelFinished),
    Failed(ModelError),
    Cancelled,
    /// The reply reached the content limit.
    Full,
}

impl Generator {
    pub(super) async fn run(self, model: Arc<dyn Model>, prompt: Prompt, too_long: bool) {
        let mut text = String::new();
        let outcome = if too_long {
            Outcome::Failed(ModelError::ContextTooLong)
        } else {
            self.stream(model.as_ref(), prompt, &mut text).await
        };
        self.end(text, outcome).await;
    }

    async fn stream(&self, model: &dyn Model, prompt: Prompt, text: &mut String) -> Outcome {
        let mut stream = tokio::select! {
            started = tokio::time::timeout(self.timeout, model.stream(prompt)) => match started {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Outcome::Failed(error),
                Err(_) => return Outcome::Failed(ModelError::Timeout),
            },
            () = self.cancel.notified() => return Outcome::Cancelled,
        };
        let (session_id, seq, variant) = (self.assistant.session_id, self.assistant.seq, self.assistant.variant);
        let mut written = 0;
        let mut checkpoints = 0;
        let mut last_write = Instant::now();
        let mut last_contact = Instant::now();
        let mut deadline = tokio::time::Instant::now() + self.timeout;
        let mut cancel_check = tokio::time::interval(CANCEL_CHECK);
        cancel_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, stream.next()) => next,
                () = self.cancel.notified() => return Outcome::Cancelled,
                _ = cancel_check.tick() => {
                    if last_contact.elapsed() >= CANCEL_CHECK {
                        last_contact = Instant::now();
                        if let Ok(false) = self.chat.store.reply_generating(session_id, seq, variant).await {
                            return Outcome::Cancelled;
                        }
                    }
                    continue;
                }
            };
            deadline = tokio::time::Instant::now() + self.timeout;
            let piece = match next {
                Err(_) => return Outcome::Failed(ModelError::Timeout),
                Ok(None) => return Outcome::Failed(ModelError::Unavailable("the stream ended early".into())),
                Ok(Some(Err(error))) => return Outcome::Failed(error),
                Ok(Some(Ok(ModelEvent::Finished(finished)))) => return Outcome::Finished(finished),
                Ok(Some(Ok(ModelEvent::Text(piece)))) => piece,
            };
            if text.len() + piece.len() > Content::MAX_BYTES {
                let room = Content::MAX_BYTES - text.len();
                let cut = (0..=room).rev().find(|&index| piece.is_char_boundary(index)).unwrap_or(0);
                text.push_str(&piece[..cut]);
                return Outcome::Full;
            }
            text.push_str(&piece);
            self.sender.send_replace(Progress::Streaming(text.clone()));
            if last_write.elapsed() >= checkpoint_due(checkpoints) && text.len() > written {
                let Ok(content) = Content::parse(text.clone()) else { return Outcome::Full };
                match self.chat.store.checkpoint_reply(session_id, seq, variant, &content).await {
                    Ok(Checkpoint::Saved) => {
                        written = text.len();
                        checkpoints += 1;
                        last_contact = Instant::now();
                        last_write = Instant::now();
                    }
                    Ok(Checkpoint::Stopped) => return Outcome::Cancelled,
                    // A checkpoint is an optimisation of what followers see: the end stores all.
                    Err(error) => tracing::warn!(error = %error, "checkpoint failed"),
                }
            }
        }
    }

    async fn end(self, text: String, outcome: Outcome) {
        let assistant = &self.assistant;
        let model = assistant.model.clone().unwrap_or_default();
        let output_tokens = estimate_tokens(&text);
        let estimate = |estimated: bool, input_tokens: u64, output_tokens: u64| {
            let prices = &self.chat.store.limits_config().prices;
            Some(MessageUsage {
                input_tokens,
                output_tokens,
                model: model.clone(),
                cost_usd: Usd(prices.cost(&model, input_tokens, output_tokens)),
                estimated,
            })
        };
        let (status, stop_reason, usage, error) = match &outcome {
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
            Outcome::Cancelled => (
                MessageStatus::Cancelled,
                Some("cancelled".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                None,
            ),
            Outcome::Failed(failure) if text.is_empty() => {
                (MessageStatus::Failed, Some("error".to_owned()), None, Some(reply_error(failure)))
            }
            Outcome::Failed(failure) => (
                MessageStatus::Failed,
                Some("error".to_owned()),
                estimate(true, self.prompt_tokens, output_tokens),
                Some(reply_error(failure)),
            ),
        };
        let refund =
            if matches!(outcome, Outcome::Failed(_)) && text.is_empty() { self.counted_in.clone() } else { None };
        let mut quota = self.quota;
        if let Some(quota) = quota.as_mut().filter(|quota| refund.is_some() && quota.limit >= 0) {
            quota.remaining = (quota.remaining + 1).min(quota.limit);
        }
        let content = Content::parse(text).unwrap_or_else(|_| assistant.content.clone());
        let end = ReplyEnd { content, status, stop_reason, usage, error, refund };
        let ended = match self.chat.store.finish_reply(&self.user, assistant, end.clone()).await {
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
