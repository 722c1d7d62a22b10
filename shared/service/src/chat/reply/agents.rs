//! Several agents in one session: which catalog character answers a reply. A session's agents are
//! its character (a character chat) or the characters it names (`agents`); a reply may name one
//! (`mode: "direct"`), or let the backend pick (`mode: "orchestrated"`, the default when there are
//! several): a routing call to the model with a shaped answer over the session's agents, and —
//! when the model fails, is slow or answers outside them — a rule: an agent the user's message
//! names, else the one least recently heard from. `mode: "all"` is a round: every agent in turn.

use std::sync::Arc;
use std::time::Duration;

use llm::{AnswerShape, Prompt, PromptMessage, PromptRole};
use serde::Deserialize;
use serde_json::json;

use super::ReplyFailure;
use crate::answer::whole_answer;
use crate::chat::Chat;
use domain::{
    Character, CharacterId, Content, Message, PageLimit, ReplyMode, ReplyOptions, Role, Routing, SessionId, Usage,
    UserId,
};

/// The most a routing call may take before the rule decides.
pub const ROUTING_TIMEOUT: Duration = Duration::from_secs(4);
/// Messages the routing call sees.
const ROUTING_CONTEXT: u32 = 6;
/// The routing answer's longest reason, and the answer's token limit (its time is mostly these).
const REASON_MAX_CHARS: usize = 48;
const ROUTING_MAX_TOKENS: u32 = 40;

/// Who answers, and why (`None`: the session has no agent and the reply is the plain assistant).
pub(super) struct Speaker {
    pub character: Option<Arc<Character>>,
    pub routing: Option<Routing>,
    /// The routing call's tokens, when the model answered it (metered with the turn's append).
    pub routing_usage: Option<Usage>,
}

#[derive(Deserialize)]
struct RoutingAnswer {
    agent: String,
    #[serde(default)]
    reason: String,
}

impl Chat {
    /// The agent a reply comes from: named, picked, or the session's only one; each behind its
    /// gates for the caller. `content` is the user's new message, if any.
    pub(super) async fn speaker(
        &self,
        user: &UserId,
        session_id: SessionId,
        options: &ReplyOptions,
        content: Option<&Content>,
    ) -> Result<Speaker, ReplyFailure> {
        let mut agents = self.session_agents(user, session_id, false).await?;
        if let Some(named) = &options.agent {
            // Unknown to the catalog (or inactive) is 404; known but not in the session is 409.
            if self.catalog.character(named).await?.is_none_or(|character| !character.is_active) {
                return Err(ReplyFailure::AgentNotFound(named.clone()));
            }
            if !agents.contains(named) {
                // Perhaps added by another instance since this one read the session.
                agents = self.session_agents(user, session_id, true).await?;
            }
            if !agents.contains(named) {
                return Err(ReplyFailure::AgentNotInSession(named.clone()));
            }
            let character = self.admitted_character(user, named).await?;
            let routing = (agents.len() > 1 || options.mode.is_some())
                .then(|| Routing { mode: ReplyMode::Direct, reason: "named by the request".to_owned() });
            return Ok(Speaker { character: Some(character), routing, routing_usage: None });
        }
        match agents.as_slice() {
            [] => Ok(Speaker { character: None, routing: None, routing_usage: None }),
            [only] => {
                let character = self.admitted_character(user, only).await?;
                let routing = (options.mode == Some(ReplyMode::Orchestrated))
                    .then(|| Routing { mode: ReplyMode::Orchestrated, reason: "the session's only agent".to_owned() });
                Ok(Speaker { character: Some(character), routing, routing_usage: None })
            }
            several => self.route(user, session_id, several, content).await,
        }
    }

    /// `mode: "all"`: every agent of the session, in the session's order, each behind its gates
    /// for the caller (one refused refuses the round before anything is stored).
    pub(super) async fn round_speakers(
        &self,
        user: &UserId,
        session_id: SessionId,
    ) -> Result<Vec<Speaker>, ReplyFailure> {
        let agents = self.session_agents(user, session_id, false).await?;
        if agents.is_empty() {
            return Err(ReplyFailure::Invalid {
                field: "mode",
                message: "all needs a session with agents (set `agents` on the session)".to_owned(),
            });
        }
        let mut speakers = Vec::with_capacity(agents.len());
        for (index, id) in agents.iter().enumerate() {
            let character = self.admitted_character(user, id).await?;
            let reason = format!("{} of {} in the round", index + 1, agents.len());
            let routing = Some(Routing { mode: ReplyMode::All, reason });
            speakers.push(Speaker { character: Some(character), routing, routing_usage: None });
        }
        Ok(speakers)
    }

    /// Picks one of `agents` for the next reply (see the module).
    async fn route(
        &self,
        user: &UserId,
        session_id: SessionId,
        agents: &[CharacterId],
        content: Option<&Content>,
    ) -> Result<Speaker, ReplyFailure> {
        let mut characters = Vec::with_capacity(agents.len());
        for id in agents {
            if let Some(character) = self.catalog.character(id).await?.filter(|character| character.is_active) {
                characters.push(character);
            }
        }
        let (_, recent) = self.store.session_with_latest(user, session_id, PageLimit::fixed(ROUTING_CONTEXT)).await?;
        let (asked, routing_usage) = self.ask_router(&characters, &recent, content).await;
        let (chosen, reason) = match asked {
            Some((id, reason)) => (characters.iter().find(|character| character.id == id).cloned(), reason),
            None => (None, String::new()),
        };
        let (character, reason) = match chosen {
            Some(character) => {
                (character, if reason.trim().is_empty() { "picked by the model".to_owned() } else { reason })
            }
            None => fallback(&characters, &recent, content).ok_or(ReplyFailure::Invalid {
                field: "agents",
                message: "none of the session's agents is in the catalog".to_owned(),
            })?,
        };
        let character = self.admitted_character(user, &character.id).await?;
        Ok(Speaker {
            character: Some(character),
            routing: Some(Routing { mode: ReplyMode::Orchestrated, reason: reason.chars().take(200).collect() }),
            routing_usage,
        })
    }

    /// The routing call: which agent, and why (`None` when the model fails, is slow, or names
    /// none of them), and the tokens it took when the model answered at all.
    async fn ask_router(
        &self,
        characters: &[Arc<Character>],
        recent: &[Message],
        content: Option<&Content>,
    ) -> (Option<(CharacterId, String)>, Option<Usage>) {
        let Ok(replies) = self.replies() else { return (None, None) };
        let ids: Vec<&str> = characters.iter().map(|character| character.id.as_str()).collect();
        let mut system = "You run a group chat. Pick the character who should answer the user's latest message, \
            and say why in at most six words. The characters:"
            .to_owned();
        for character in characters {
            system.push_str(&format!("\n- {} ({}): {}", character.id.as_str(), character.name, character.description));
        }
        let mut conversation = String::new();
        for message in recent {
            let speaker = match (message.role, &message.agent) {
                (Role::User, _) => "User".to_owned(),
                (Role::Assistant, Some(agent)) => agent.name.clone(),
                (Role::Assistant, None) => "Assistant".to_owned(),
                _ => continue,
            };
            conversation
                .push_str(&format!("{speaker}: {}\n", message.content.as_str().chars().take(500).collect::<String>()));
        }
        if let Some(content) = content {
            conversation.push_str(&format!("User: {}\n", content.as_str().chars().take(1000).collect::<String>()));
        }
        let prompt = Prompt {
            tools: Vec::new(),
            tool_choice: llm::ToolUse::Auto,
            rounds: Vec::new(),
            model: replies.config.model.clone(),
            messages: vec![
                PromptMessage::new(PromptRole::System, system),
                PromptMessage::new(PromptRole::User, conversation),
            ],
            // The answer's tokens are most of the call's time: the reason is kept to a few words.
            max_tokens: ROUTING_MAX_TOKENS,
            temperature: Some(0.0),
            shape: Some(AnswerShape {
                name: "route".to_owned(),
                description: "Who answers next".to_owned(),
                schema: json!({
                    "type": "object",
                    "properties": {
                        "agent": {"type": "string", "enum": ids},
                        "reason": {"type": "string", "maxLength": REASON_MAX_CHARS},
                    },
                    "required": ["agent", "reason"],
                    "additionalProperties": false,
                }),
            }),
        };
        let model = prompt.model.clone();
        let Ok((text, counts)) = whole_answer(replies.model.as_ref(), prompt, ROUTING_TIMEOUT).await else {
            return (None, None);
        };
        let usage = counts.map(|counts| Usage {
            input_tokens: counts.input_tokens,
            output_tokens: counts.output_tokens,
            model,
        });
        let picked = serde_json::from_str::<RoutingAnswer>(text.trim())
            .ok()
            .and_then(|answer| Some((CharacterId::parse(&answer.agent).ok()?, answer.reason)))
            .filter(|(id, _)| ids.contains(&id.as_str()));
        (picked, usage)
    }
}

/// The rule when the model cannot decide: an agent the user's message names (by name or id), else
/// the one heard from least recently (never, first), else the first.
fn fallback(
    characters: &[Arc<Character>],
    recent: &[Message],
    content: Option<&Content>,
) -> Option<(Arc<Character>, String)> {
    let text = content.map(|content| content.as_str().to_lowercase()).unwrap_or_default();
    let named = characters.iter().find(|character| {
        let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric() && c != '-').collect();
        let name = character.name.to_lowercase();
        words.contains(&character.id.as_str())
            || name.split_whitespace().next().is_some_and(|first| words.contains(&first))
    });
    if let Some(character) = named {
        return Some((character.clone(), format!("the message names {}", character.name)));
    }
    // Newest first: the position of each agent's latest line; never heard = past the end.
    let last_heard = |character: &Arc<Character>| {
        recent
            .iter()
            .rev()
            .position(|message| message.agent.as_ref().is_some_and(|agent| agent.id == character.id))
            .unwrap_or(usize::MAX)
    };
    let longest = characters.iter().map(last_heard).max()?;
    let quietest = characters.iter().find(|character| last_heard(character) == longest)?;
    Some((quietest.clone(), format!("{} was heard from least recently", quietest.name)))
}
