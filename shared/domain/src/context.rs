//! What a model reads for the next turn: six parts, in this order —
//!
//! 1. the **system prompt**: the character's, else the session's `system_prompt` setting, else a
//!    default;
//! 2. the user's **profile**: name, gender and language, with "answer in the user's language";
//! 3. the long-term **memories**, best first (importance, then newest);
//! 4. the session's **settings**: the relationship and the mood;
//! 5. the session's **summary**: the story before the recent messages, when there is one;
//! 6. the newest **messages**, oldest first —
//!
//! trimmed to a token budget. The first five are the system message, the last the conversation.
//!
//! Tokens are estimated deterministically as `ceil(UTF-8 bytes / 4)` of each part's text as the
//! model receives it (each message's content on its own, a reply's tool calls and results as
//! their JSON). Over budget, the least important memory
//! and the oldest message are dropped in turn (a memory first), then the summary, the settings,
//! the profile. The system prompt and the newest message are never dropped, so a tiny budget can be
//! exceeded.

use schemars::JsonSchema;
use serde::Serialize;

use super::{
    CharacterId, DisplayName, Gender, Language, Memory, Message, Profile, SessionId, Settings, Summary, Title, Tool,
};

/// `ceil(bytes / 4)`: a stable, model-agnostic estimate.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The system prompt when neither a character nor the session's settings give one.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ContextSession {
    pub id: SessionId,
    pub title: Title,
    pub settings: Settings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub character_id: Option<CharacterId>,
}

/// Where the system prompt comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// The session's character (its text is shown to admins only, so not here).
    Character,
    /// The session's `system_prompt` setting.
    Session,
    Default,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemPrompt {
    pub source: PromptSource,
    pub text: String,
}

impl SystemPrompt {
    /// The character's prompt, else the session's setting, else the default.
    pub fn choose(character: Option<&str>, settings: &Settings) -> Self {
        let present = |text: &&str| !text.trim().is_empty();
        match (character.filter(present), settings.text("system_prompt")) {
            (Some(text), _) => Self { source: PromptSource::Character, text: text.to_owned() },
            (None, Some(text)) => Self { source: PromptSource::Session, text: text.to_owned() },
            (None, None) => Self { source: PromptSource::Default, text: DEFAULT_SYSTEM_PROMPT.to_owned() },
        }
    }
}

/// The system prompt as the context endpoint shows it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SystemPromptView {
    pub source: PromptSource,
    /// Absent for a character's prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Who the user is, as the model is told.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct ContextProfile {
    pub display_name: Option<DisplayName>,
    pub gender: Option<Gender>,
    pub language: Option<Language>,
}

impl ContextProfile {
    /// The stored profile; a Telegram account fills a missing name and language.
    pub fn of(profile: &Profile) -> Self {
        let telegram = profile.telegram.as_ref();
        let display_name = profile.display_name.clone().or_else(|| {
            telegram.and_then(|account| account.first_name.as_deref()).and_then(|name| DisplayName::parse(name).ok())
        });
        let language = profile.language.clone().or_else(|| {
            telegram.and_then(|account| account.language_code.as_deref()).and_then(|code| Language::parse(code).ok())
        });
        Self { display_name, gender: profile.gender, language }
    }

    fn text(&self) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(name) = &self.display_name {
            lines.push(format!("- Name: {}", name.as_str()));
        }
        if let Some(gender) = self.gender {
            lines.push(format!("- Gender: {}", gender.as_str().replace('_', "-")));
        }
        if let Some(language) = &self.language {
            lines.push(format!("- Language: {}. Answer in the user's language.", language.as_str()));
        }
        (!lines.is_empty()).then(|| format!("About the user:\n{}", lines.join("\n")))
    }
}

/// The session's settings the model is told: the relationship and the mood.
fn settings_text(settings: &Settings) -> Option<String> {
    let mut lines = Vec::new();
    if let Some(relationship) = settings.text("relationship_type") {
        lines.push(format!("Your relationship with the user: {relationship}."));
    }
    if let Some(mood) = settings.text("mood_preference") {
        lines.push(format!("The mood the user prefers: {mood}."));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn memories_text(memories: &[Memory]) -> Option<String> {
    (!memories.is_empty()).then(|| {
        let mut text = "What you know about the user:".to_owned();
        for memory in memories {
            text.push_str("\n- ");
            text.push_str(memory.content.as_str());
        }
        text
    })
}

fn summary_text(summary: &Summary) -> String {
    format!("The story so far:\n{}", summary.text)
}

fn message_tokens(messages: &[Message]) -> u64 {
    messages.iter().map(tokens_of).sum()
}

/// A message's tokens: its text, and a reply's tool calls and results as the model is sent them
/// (their JSON).
fn tokens_of(message: &Message) -> u64 {
    let calls = message
        .parts
        .iter()
        .filter(|part| !matches!(part, super::Part::Text { .. }))
        .map(|part| serde_json::to_string(part).map_or(0, |json| estimate_tokens(&json)))
        .sum::<u64>();
    estimate_tokens(message.content.as_str()) + calls
}

/// The five parts, untrimmed.
#[derive(Clone, Debug)]
pub struct ContextParts {
    pub session: ContextSession,
    pub system_prompt: SystemPrompt,
    pub profile: Option<ContextProfile>,
    /// Best first.
    pub memories: Vec<Memory>,
    /// The story before the messages, when the session has one.
    pub summary: Option<Summary>,
    /// Oldest first.
    pub messages: Vec<Message>,
    /// The tools the model may call (the session's).
    pub tools: Vec<Tool>,
}

/// A part of the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartName {
    SystemPrompt,
    Profile,
    Memories,
    Settings,
    Summary,
    Messages,
}

/// What a part holds in the fitted context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ContextPart {
    pub part: PartName,
    /// Whether any of it reaches the model.
    pub included: bool,
    /// Its estimated tokens as included (0 when left out).
    pub tokens: u64,
    /// Memories and messages: how many are included; the other parts: 1 or 0.
    pub items: usize,
    /// How many the budget left out (memories and messages; 1 for a dropped profile or settings).
    pub dropped: usize,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Context {
    pub session: ContextSession,
    /// The six parts in the order the model reads them.
    pub parts: Vec<ContextPart>,
    pub system_prompt: SystemPromptView,
    /// Absent when the user has none, or the budget left it out.
    pub profile: Option<ContextProfile>,
    /// Highest-ranked first (importance, then newest).
    pub memories: Vec<Memory>,
    /// The session's summary (`GET …/summary`), absent when it has none or the budget left it out.
    pub summary: Option<Summary>,
    /// Chronological (oldest first).
    pub messages: Vec<Message>,
    pub token_estimate: u64,
    pub truncated: bool,
    /// The system message: the first five parts' texts as included, one paragraph each.
    #[serde(skip)]
    instructions: String,
}

impl Context {
    /// The system message the model receives before the messages.
    pub fn instructions(&self) -> &str {
        &self.instructions
    }
}

impl ContextParts {
    /// Trims the parts to `max_tokens`, as the module says.
    pub fn fit(self, max_tokens: u64) -> Context {
        let Self { session, system_prompt, profile, mut memories, summary, mut messages, tools: _ } = self;
        let (memories_total, messages_total) = (memories.len(), messages.len());
        let mut profile_text = profile.as_ref().and_then(ContextProfile::text);
        let mut settings = settings_text(&session.settings);
        let mut story = summary.as_ref().map(summary_text);
        let (had_profile, had_settings, had_story) = (profile_text.is_some(), settings.is_some(), story.is_some());
        let system_tokens = estimate_tokens(&system_prompt.text);
        let optional = |text: &Option<String>| text.as_deref().map_or(0, estimate_tokens);
        let mut memory_tokens = optional(&memories_text(&memories));
        let mut total = system_tokens
            + optional(&profile_text)
            + memory_tokens
            + optional(&settings)
            + optional(&story)
            + message_tokens(&messages);
        let mut memory_turn = true;
        while total > max_tokens {
            let can_drop_message = messages.len() > 1;
            if !memories.is_empty() && (memory_turn || !can_drop_message) {
                memories.pop();
                let tokens = optional(&memories_text(&memories));
                total -= memory_tokens - tokens;
                memory_tokens = tokens;
            } else if can_drop_message {
                total -= tokens_of(&messages.remove(0));
            } else if story.is_some() {
                total -= optional(&story.take());
            } else if settings.is_some() {
                total -= optional(&settings.take());
            } else if profile_text.is_some() {
                total -= optional(&profile_text.take());
            } else {
                break;
            }
            memory_turn = !memory_turn;
        }
        let instructions = [
            Some(system_prompt.text.clone()),
            profile_text.clone(),
            memories_text(&memories),
            settings.clone(),
            story.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n\n");
        let part = |part, text: &Option<String>, had: bool| ContextPart {
            part,
            included: text.is_some(),
            tokens: optional(text),
            items: usize::from(text.is_some()),
            dropped: usize::from(had && text.is_none()),
        };
        let parts = vec![
            ContextPart { part: PartName::SystemPrompt, included: true, tokens: system_tokens, items: 1, dropped: 0 },
            part(PartName::Profile, &profile_text, had_profile),
            ContextPart {
                part: PartName::Memories,
                included: !memories.is_empty(),
                tokens: memory_tokens,
                items: memories.len(),
                dropped: memories_total - memories.len(),
            },
            part(PartName::Settings, &settings, had_settings),
            part(PartName::Summary, &story, had_story),
            ContextPart {
                part: PartName::Messages,
                included: !messages.is_empty(),
                tokens: message_tokens(&messages),
                items: messages.len(),
                dropped: messages_total - messages.len(),
            },
        ];
        let truncated = parts.iter().any(|part| part.dropped > 0);
        let shown = (system_prompt.source != PromptSource::Character).then_some(system_prompt.text);
        Context {
            session,
            parts,
            system_prompt: SystemPromptView { source: system_prompt.source, text: shown },
            profile: profile.filter(|_| profile_text.is_some()),
            memories,
            summary: summary.filter(|_| story.is_some()),
            messages,
            token_estimate: total,
            truncated,
            instructions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Content, Importance, MemoryContent, MemoryId, MemoryOrigin, MemoryType, MessageId, MessageStatus, MessageType,
        Role, Seq, Timestamp,
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
            origin: MemoryOrigin::User,
            source: None,
            superseded_by: None,
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
            parts: Vec::new(),
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
            agent: None,
            routing: None,
            rev: seq,
            lease: None,
        }
    }

    fn session(settings: serde_json::Value) -> ContextSession {
        let settings = match settings {
            serde_json::Value::Object(map) => Settings::parse(map).unwrap_or_default(),
            _ => Settings::default(),
        };
        ContextSession {
            id: SessionId::generate(),
            title: Title::parse("t").unwrap_or_default(),
            settings,
            character_id: None,
        }
    }

    fn parts(memories: Vec<Memory>, messages: Vec<Message>) -> ContextParts {
        ContextParts {
            session: session(serde_json::json!({})),
            system_prompt: SystemPrompt { source: PromptSource::Session, text: "abcd".to_owned() },
            profile: None,
            memories,
            summary: None,
            messages,
            tools: Vec::new(),
        }
    }

    fn anna() -> ContextProfile {
        ContextProfile {
            display_name: DisplayName::parse("Anna").ok(),
            gender: Some(Gender::NonBinary),
            language: Language::parse("ru").ok(),
        }
    }

    fn tokens(context: &Context) -> Vec<(PartName, bool, u64, usize, usize)> {
        context.parts.iter().map(|part| (part.part, part.included, part.tokens, part.items, part.dropped)).collect()
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
        // prompt 1 + "What you know about the user:\n- 12345678\n- abcdefgh" (51 bytes) 13 + messages 2 + 2
        let context =
            parts(vec![memory("12345678"), memory("abcdefgh")], vec![message(1, "12345678"), message(2, "abcdefgh")])
                .fit(18);
        assert_eq!((context.memories.len(), context.messages.len()), (2, 2));
        assert_eq!(context.token_estimate, 18);
        assert!(!context.truncated);
        assert_eq!(
            tokens(&context),
            [
                (PartName::SystemPrompt, true, 1, 1, 0),
                (PartName::Profile, false, 0, 0, 0),
                (PartName::Memories, true, 13, 2, 0),
                (PartName::Settings, false, 0, 0, 0),
                (PartName::Summary, false, 0, 0, 0),
                (PartName::Messages, true, 4, 2, 0),
            ]
        );
        assert_eq!(context.instructions(), "abcd\n\nWhat you know about the user:\n- 12345678\n- abcdefgh");
    }

    #[test]
    fn drops_lowest_memory_then_oldest_message_in_turn() {
        let memories = vec![memory("best----"), memory("middle--"), memory("worst---")];
        let messages = vec![message(1, "oldest--"), message(2, "middle--"), message(3, "newest--")];
        // 1 + 16 (62 bytes) + 6 = 23; budget 15 drops worst (→ 13), oldest message, middle (→ 10).
        let context = parts(memories, messages).fit(15);
        let kept: Vec<_> = context.memories.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(kept, ["best----"]);
        let seqs: Vec<_> = context.messages.iter().map(|m| m.seq.get()).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(context.token_estimate, 15);
        assert!(context.truncated);
        assert_eq!(context.parts[2].dropped, 2);
        assert_eq!(context.parts[5].dropped, 1);
    }

    #[test]
    fn the_six_parts_in_order() {
        let mut parts = parts(vec![memory("likes tea")], vec![message(1, "hi")]);
        parts.session = session(serde_json::json!({"relationship_type": "friend", "mood_preference": "playful"}));
        parts.profile = Some(anna());
        parts.summary = Some(Summary {
            text: "They met at the harbour.".to_owned(),
            through_seq: Seq::new(40).unwrap_or_else(|| unreachable!()),
            tokens: 6,
            updated_at: at(),
        });
        let context = parts.fit(u64::MAX);
        assert_eq!(
            context.instructions(),
            "abcd\n\nAbout the user:\n- Name: Anna\n- Gender: non-binary\n- Language: ru. Answer in the user's language.\n\n\
             What you know about the user:\n- likes tea\n\n\
             Your relationship with the user: friend.\nThe mood the user prefers: playful.\n\n\
             The story so far:\nThey met at the harbour."
        );
        let names: Vec<_> = context.parts.iter().filter(|part| part.included).map(|part| part.part).collect();
        assert_eq!(
            names,
            [
                PartName::SystemPrompt,
                PartName::Profile,
                PartName::Memories,
                PartName::Settings,
                PartName::Summary,
                PartName::Messages
            ]
        );
        assert_eq!(context.summary.as_ref().map(|summary| summary.through_seq.get()), Some(40));
        assert_eq!(context.token_estimate, context.parts.iter().map(|part| part.tokens).sum::<u64>());
    }

    #[test]
    fn never_drops_the_system_prompt_or_the_newest_message() {
        let mut parts = parts(vec![memory("m")], vec![message(1, "a"), message(2, &"x".repeat(400))]);
        parts.session = session(serde_json::json!({"relationship_type": "friend"}));
        parts.profile = Some(anna());
        parts.summary = Some(Summary {
            text: "A long story.".to_owned(),
            through_seq: Seq::new(1).unwrap_or_else(|| unreachable!()),
            tokens: 4,
            updated_at: at(),
        });
        let context = parts.fit(5);
        assert!(context.summary.is_none(), "the summary goes before the settings and the profile");
        assert!(context.memories.is_empty());
        assert_eq!(context.messages.len(), 1);
        assert_eq!(context.messages[0].seq.get(), 2);
        assert!(context.profile.is_none());
        assert_eq!(context.token_estimate, 1 + 100);
        assert_eq!(context.instructions(), "abcd");
        let dropped: Vec<_> = context.parts.iter().map(|part| part.dropped).collect();
        assert_eq!(dropped, [0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_character_prompt_wins_and_stays_hidden() {
        let settings = session(serde_json::json!({"system_prompt": "be terse"})).settings;
        let own = SystemPrompt::choose(None, &settings);
        assert_eq!((own.source, own.text.as_str()), (PromptSource::Session, "be terse"));
        let plain = SystemPrompt::choose(Some("  "), &Settings::default());
        assert_eq!((plain.source, plain.text.as_str()), (PromptSource::Default, DEFAULT_SYSTEM_PROMPT));
        let mut parts = parts(Vec::new(), vec![message(1, "hi")]);
        parts.system_prompt = SystemPrompt::choose(Some("You are Luna."), &settings);
        let context = parts.fit(100);
        assert_eq!(context.system_prompt.source, PromptSource::Character);
        assert_eq!(context.system_prompt.text, None);
        assert_eq!(context.instructions(), "You are Luna.");
    }
}
