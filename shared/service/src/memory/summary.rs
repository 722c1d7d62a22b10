//! Summaries: when a session's visible log grows past the replies' recent window by more than a
//! step (in estimated tokens), the model writes the story of the messages before the window — the
//! previous summary plus the next chunk, each call within the model's context with headroom — and
//! the store keeps it under the guard it was read with (see `store`'s summary). Its calls count in
//! `/v1/usage` and in the daily cap as memory work (`MEMORY_DAILY_CALLS`). Run after each
//! reply's extraction, the same way; the gap between `through_seq` and the window's first message
//! is at most one step once it has run.

use domain::{DayUsage, Message, PageLimit, Role, SessionId, UserId, estimate_tokens};
use llm::{Prompt, PromptMessage, PromptRole, TokenCounts};
use store::{MessageOrder, MessageQuery, StoreError};

use super::{ExtractionError, Extractor};

/// Calls one run makes at most (a session far behind catches up over several replies).
const MAX_CALLS: usize = 4;
/// The longest summary kept, in characters.
const MAX_CHARS: usize = 4000;

const INSTRUCTIONS: &str = "You keep the story of a long conversation between a user and an assistant. \
Given the summary so far and the next part of the conversation, write the new summary: who the user is, \
what happened, what was decided or promised, and what is still open — short, factual, in the language of \
the conversation, without inventing anything. Answer with the summary only.";

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summarized {
    /// Model calls made (each a summary stored, unless `raced`).
    pub calls: usize,
    pub usage: Vec<TokenCounts>,
    /// A change of the log (an edit, a delete, a new scene, a reset) won over a summary being written.
    pub raced: bool,
}

impl Extractor {
    /// Brings the session's summary up to one step before its recent window.
    pub async fn summarize(&self, user: &UserId, session_id: SessionId) -> Result<Summarized, ExtractionError> {
        let mut done = Summarized::default();
        let window = self.config.summary_window;
        while done.calls < MAX_CALLS {
            let (current, guard) = match self.store.summary_state(user, session_id).await {
                Ok(state) => state,
                Err(StoreError::NotFound(_)) => return Ok(done),
                Err(error) => return Err(error.into()),
            };
            let newest = MessageQuery {
                after_seq: None,
                before_seq: None,
                limit: PageLimit::fixed(window),
                order: MessageOrder::Desc,
            };
            let newest = self.store.list_messages(user, session_id, newest).await?.data;
            let boundary = match newest.iter().map(|message| message.seq).min() {
                Some(first) if newest.len() >= window as usize => first,
                _ => return Ok(done),
            };
            let older = MessageQuery {
                after_seq: Some(guard.after_seq()),
                before_seq: Some(boundary.get()),
                limit: PageLimit::fixed(100),
                order: MessageOrder::Asc,
            };
            let older = self.store.list_messages(user, session_id, older).await?.data;
            let older: Vec<Message> = older.into_iter().filter(|message| message.status.is_final()).collect();
            let behind: u64 = older.iter().map(|message| estimate_tokens(message.content.as_str())).sum();
            if behind <= self.config.summary_step_tokens {
                return Ok(done);
            }
            let previous = current.as_ref().map_or("", |summary| summary.text.as_str());
            let budget = self.config.summary_chunk_tokens.saturating_sub(estimate_tokens(previous)).max(1);
            let mut chunk = Vec::new();
            let mut tokens = 0;
            for message in &older {
                let cost = estimate_tokens(message.content.as_str());
                if !chunk.is_empty() && tokens + cost > budget {
                    break;
                }
                tokens += cost;
                chunk.push(message);
            }
            let Some(last) = chunk.last().map(|message| message.seq) else { return Ok(done) };
            let prompt = Prompt {
                tools: Vec::new(),
                tool_choice: llm::ToolUse::Auto,
                rounds: Vec::new(),
                model: self.config.model.clone(),
                messages: prompt_messages(previous, &chunk),
                max_tokens: self.config.summary_max_tokens,
                temperature: Some(0.2),
                shape: None,
            };
            if self.store.extraction_calls_today(user).await? >= self.config.daily_calls {
                return Ok(done);
            }
            let (text, usage) = self.ask(prompt).await?;
            done.calls += 1;
            done.usage.extend(usage);
            let text: String = text.trim().chars().take(MAX_CHARS).collect();
            if text.is_empty() {
                return Ok(done);
            }
            let spent = usage.map_or_else(DayUsage::default, |tokens| {
                DayUsage::of_extraction(&self.config.model, tokens.input_tokens, tokens.output_tokens)
            });
            if !self.store.store_summary(user, session_id, &guard, &text, last, &spent).await? {
                done.raced = true;
                return Ok(done);
            }
        }
        Ok(done)
    }
}

/// The summary so far and the next part of the conversation, labelled.
fn prompt_messages(previous: &str, chunk: &[&Message]) -> Vec<PromptMessage> {
    let mut part = String::new();
    if !previous.is_empty() {
        part.push_str(&format!("The summary so far:\n{previous}\n\n"));
    }
    part.push_str("The next part of the conversation:\n");
    for message in chunk {
        let speaker = match message.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::System | Role::Tool => continue,
        };
        part.push_str(&format!("{speaker}: {}\n", message.content.as_str().trim()));
    }
    vec![PromptMessage::new(PromptRole::System, INSTRUCTIONS.to_owned()), PromptMessage::new(PromptRole::User, part)]
}
