//! Client tools: a reply that called one is paused (`requires_action`) until the client answers
//! each pending call with `POST …/messages/{seq}/tool-results`. Each answer is one conditional write
//! (on the parts as read, so two answers at once both land, one after the other), idempotent by
//! `tool_call_id`; the last one turns the reply `streaming` again in the same write, and the
//! process that made it generates the rest — the same message, its parts and ids continuing. A
//! cancel ends a paused reply at once; an unanswered one ends after `CLIENT_TOOL_TIMEOUT`.

use std::sync::Arc;

use domain::{
    Character, Draft, MAX_RESULT_BYTES, Message, MessageStatus, PageLimit, Part, ReplyOptions, Seq, SessionId,
    ToolError, UserId, answer_pending, pending_calls,
};
use store::{Answered, Miss, ReplyEnd, StoreError};

use tokio::sync::watch;

use super::generator::{Spent, rounds_of};
use super::{Generation, Progress, ReplyFailure};
use crate::chat::Chat;

/// How many times an answer is tried again when another answer landed first.
const ATTEMPTS: usize = 8;

impl Chat {
    /// Stores the client's `output` for the call `tool_call_id` of a paused reply; when it was the
    /// last one pending, the reply resumes here, and its progress comes back to follow it to its
    /// end (on Lambda nothing outlives the request that resumed it). Returns the reply as it
    /// stands. Answering a call again changes nothing (the first answer stays).
    pub async fn answer_tool_call(
        &self,
        user: &UserId,
        session_id: SessionId,
        seq: Seq,
        tool_call_id: &str,
        output: serde_json::Value,
    ) -> Result<(Message, Option<watch::Receiver<Progress>>), ReplyFailure> {
        let size = serde_json::to_vec(&output).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_RESULT_BYTES {
            return Err(ReplyFailure::Invalid {
                field: "output",
                message: format!("must be at most {MAX_RESULT_BYTES} bytes as JSON"),
            });
        }
        for _ in 0..ATTEMPTS {
            let message = self.store.get_message(user, session_id, seq).await?;
            let message = self.unstuck(user, message).await?;
            let call = message.parts.iter().find_map(|part| match part {
                Part::ToolCall { id, name, .. } if id == tool_call_id => Some(name.clone()),
                _ => None,
            });
            let Some(name) = call else {
                return Err(StoreError::NotFound("tool call").into());
            };
            let answered = message.parts.iter().find_map(|part| match part {
                Part::ToolResult { tool_call_id: id, error, .. } if id == tool_call_id => Some(error.clone()),
                _ => None,
            });
            match answered {
                // The reply stopped waiting (timeout, cancel): this answer comes too late.
                Some(Some(error)) => {
                    let words = format!("the reply no longer waits for this call: {}", error.message);
                    return Err(StoreError::Refused(domain::Refusal::Conflict(words)).into());
                }
                Some(None) => return Ok((message, None)),
                None => {}
            }
            if message.status != MessageStatus::RequiresAction {
                return Err(StoreError::Refused(domain::Refusal::Conflict(
                    "the reply is not waiting for this call".to_owned(),
                ))
                .into());
            }
            let mut parts = message.parts.clone();
            parts.push(Part::ToolResult {
                tool_call_id: tool_call_id.to_owned(),
                name,
                output: Some(output.clone()),
                error: None,
            });
            let resume = pending_calls(&parts).is_empty();
            // The last answer resumes the reply: its model slot is taken first, so a busy model
            // refuses the answer (503) before anything is stored, and the client tries again.
            let generation = match resume {
                true => Some(self.resumed_generation(user, &message).await?),
                false => None,
            };
            match self.store.answer_tool_call(&message, &message.parts, &parts, resume).await? {
                Answered::Moved => continue,
                Answered::Stored => return Ok((Message { parts, ..message }, None)),
                Answered::Resumed => {
                    let resumed = Message { parts, status: MessageStatus::Streaming, ..message };
                    let (generation, character) =
                        generation.ok_or_else(|| StoreError::internal("a resumed reply has its generation"))?;
                    let progress = self.resume(user, resumed.clone(), generation, character).await?;
                    return Ok((resumed, Some(progress)));
                }
            }
        }
        Err(StoreError::Unavailable("the tool result could not be stored: too many answers at once".into()).into())
    }

    /// The settings a paused reply resumes with (its agent's, its model) and its slot of the model.
    async fn resumed_generation(
        &self,
        user: &UserId,
        reply: &Message,
    ) -> Result<(Generation, Option<Arc<Character>>), ReplyFailure> {
        let character = match &reply.agent {
            Some(agent) => Some(self.admitted_character(user, &agent.id).await?),
            None => self.admit(user, reply.session_id).await?,
        };
        let options = ReplyOptions { model: reply.model.clone(), ..ReplyOptions::default() };
        let mut generation = self.generation(&options, character.as_deref().map(|character| &character.model))?;
        generation.speaker = character.as_ref().map(|character| character.id.clone());
        Ok((self.admitted(generation).await?, character))
    }

    /// Generates the rest of a reply whose client answered its calls: its context read again, its
    /// tool rounds told to the model, its parts and usage so far carried on.
    async fn resume(
        &self,
        user: &UserId,
        reply: Message,
        generation: Generation,
        character: Option<Arc<Character>>,
    ) -> Result<watch::Receiver<Progress>, ReplyFailure> {
        let recent = PageLimit::fixed(self.replies()?.config.context_messages);
        let context = self.context_parts_for(user, reply.session_id, recent, character).await?;
        let draft = Draft::of_parts(&reply.parts, reply.content.as_str());
        let resumed = (draft, Spent::of(reply.usage.as_ref()), rounds_of(&reply.parts));
        self.generate_resumed(user, reply, generation, context, resumed)
    }

    /// Ends a paused reply the caller cancelled: `cancelled`, each pending call's result a
    /// `cancelled` error. A reply answered or ended meanwhile comes back as it stands.
    pub(super) async fn cancel_paused(&self, user: &UserId, paused: Message) -> Result<Message, ReplyFailure> {
        let error = ToolError::new("cancelled", "the reply was cancelled before the client answered");
        let parts = answer_pending(&paused.parts, &error);
        let end = ReplyEnd {
            content: paused.content.clone(),
            parts,
            status: MessageStatus::Cancelled,
            stop_reason: Some("cancelled".to_owned()),
            usage: paused.usage.clone(),
            error: None,
            refund: None,
            written_before: None,
        };
        match self.store.finish_reply(user, &paused, end).await {
            Ok(ended) => Ok(ended),
            Err(StoreError::Miss(Miss::Replaced)) => {
                Ok(self.store.reply_state(paused.session_id, paused.seq).await?.unwrap_or(paused))
            }
            Err(error) => Err(error.into()),
        }
    }
}
