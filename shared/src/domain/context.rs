//! What a chat app sends its model for the next turn, trimmed to a token budget.
//!
//! Tokens are estimated deterministically as `ceil(UTF-8 bytes / 4)` of each text: the session
//! title and settings (as JSON), each memory's content and each message's content.
//! Over budget, the lowest-ranked memory and the oldest message are dropped in turn (memory
//! first); the newest message is never dropped, so the result can exceed a tiny budget.

use schemars::JsonSchema;
use serde::Serialize;

use super::{Memory, Message, SessionId, Settings, Title};

/// `ceil(bytes / 4)`: a stable, model-agnostic estimate.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ContextSession {
    pub id: SessionId,
    pub title: Title,
    pub settings: Settings,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Context {
    pub session: ContextSession,
    /// Highest-ranked first (importance, then newest).
    pub memories: Vec<Memory>,
    /// Chronological (oldest first).
    pub messages: Vec<Message>,
    pub token_estimate: u64,
    pub truncated: bool,
}

impl Context {
    /// Assembles and trims. `memories` come best-ranked first, `messages` oldest first.
    pub fn fit(
        session: ContextSession,
        mut memories: Vec<Memory>,
        mut messages: Vec<Message>,
        max_tokens: u64,
    ) -> Self {
        let settings = serde_json::to_string(session.settings.as_map()).unwrap_or_default();
        let fixed = estimate_tokens(session.title.as_str()) + estimate_tokens(&settings);
        let memory_tokens = |m: &Memory| estimate_tokens(m.content.as_str());
        let message_tokens = |m: &Message| estimate_tokens(m.content.as_str());
        let mut total =
            fixed + memories.iter().map(memory_tokens).sum::<u64>() + messages.iter().map(message_tokens).sum::<u64>();
        let mut truncated = false;
        let mut memory_turn = true;
        while total > max_tokens {
            let can_drop_memory = !memories.is_empty();
            let can_drop_message = messages.len() > 1;
            let dropped = match (memory_turn, can_drop_memory, can_drop_message) {
                (true, true, _) | (false, true, false) => memories.pop().map(|m| memory_tokens(&m)),
                (false, _, true) | (true, false, true) => Some(message_tokens(&messages.remove(0))),
                _ => None,
            };
            let Some(tokens) = dropped else { break };
            total -= tokens;
            truncated = true;
            memory_turn = !memory_turn;
        }
        Self { session, memories, messages, token_estimate: total, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Content, Importance, MemoryContent, MemoryId, MemoryType, MessageId, MessageStatus, MessageType, Role, Seq,
        Timestamp,
    };

    fn at() -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000).unwrap_or_else(|| unreachable!())
    }

    fn memory(text: &str) -> Memory {
        Memory {
            id: MemoryId::generate(),
            session_id: None,
            memory_type: MemoryType::Fact,
            content: MemoryContent::parse(text.to_owned()).unwrap_or_else(|_| unreachable!()),
            importance: Importance::DEFAULT,
            created_at: at(),
            updated_at: at(),
        }
    }

    fn message(seq: u64, text: &str) -> Message {
        Message {
            id: MessageId::generate(),
            session_id: SessionId::generate(),
            seq: Seq::new(seq).unwrap_or(Seq::FIRST),
            role: Role::User,
            message_type: MessageType::default(),
            content: Content::parse(text.to_owned()).unwrap_or_else(|_| unreachable!()),
            payload: None,
            reply_to: None,
            usage: None,
            created_at: at(),
            edited_at: None,
            status: MessageStatus::Complete,
            stop_reason: None,
            model: None,
            variant: 1,
            variant_count: 1,
            is_regenerated: false,
            error: None,
        }
    }

    fn session() -> ContextSession {
        ContextSession {
            id: SessionId::generate(),
            title: Title::parse("abcd").unwrap_or_default(),
            settings: Settings::default(),
        }
    }

    #[test]
    fn estimates_a_quarter_of_the_bytes_rounded_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("ü"), 1);
    }

    #[test]
    fn keeps_everything_that_fits() {
        // title 1 + settings "{}" 1 + 2 memories of 2 + 2 messages of 2 = 10
        let context = Context::fit(
            session(),
            vec![memory("12345678"), memory("abcdefgh")],
            vec![message(1, "12345678"), message(2, "abcdefgh")],
            10,
        );
        assert_eq!((context.memories.len(), context.messages.len()), (2, 2));
        assert_eq!(context.token_estimate, 10);
        assert!(!context.truncated);
    }

    #[test]
    fn drops_lowest_memory_then_oldest_message_in_turn() {
        let memories = vec![memory("best----"), memory("middle--"), memory("worst---")];
        let messages = vec![message(1, "oldest--"), message(2, "middle--"), message(3, "newest--")];
        // 2 fixed + 6 memory + 6 message = 14; budget 9 drops worst memory, oldest message, middle memory.
        let context = Context::fit(session(), memories, messages, 9);
        let kept: Vec<_> = context.memories.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(kept, ["best----"]);
        let seqs: Vec<_> = context.messages.iter().map(|m| m.seq.get()).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(context.token_estimate, 8);
        assert!(context.truncated);
    }

    #[test]
    fn never_drops_the_newest_message() {
        let context =
            Context::fit(session(), vec![memory("m")], vec![message(1, "a"), message(2, &"x".repeat(400))], 5);
        assert!(context.memories.is_empty());
        assert_eq!(context.messages.len(), 1);
        assert_eq!(context.messages[0].seq.get(), 2);
        assert_eq!(context.token_estimate, 102);
        assert!(context.truncated);
    }
}
