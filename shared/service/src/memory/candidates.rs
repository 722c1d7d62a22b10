//! What extraction asks the model, and what it accepts of the answer. The answer's shape is a
//! JSON Schema the provider enforces (llama.cpp's grammar, Bedrock's forced tool); its content is
//! still a model's and is checked here: text trimmed and bounded, a memory that shares no word
//! with what the user wrote is left out (a small model copies the assistant or invents), a
//! repeated one is kept once.

use std::collections::HashSet;

use domain::{Importance, MemoryContent, MemoryType, Message, Role, fingerprint};
use llm::{AnswerShape, PromptMessage, PromptRole};
use serde::Deserialize;
use serde_json::json;

/// The most memories one extraction proposes.
pub const MAX_CANDIDATES: usize = 6;
/// The longest memory extraction writes, in characters.
const MAX_CHARS: usize = 300;
/// A message is shown to the model up to this many characters.
const MESSAGE_CHARS: usize = 1500;
/// Existing memories shown to the model, which it may say a new one replaces.
pub const MAX_KNOWN: usize = 20;

/// A memory the model proposed, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub memory_type: MemoryType,
    pub content: MemoryContent,
    pub importance: Importance,
    /// `true`: about this conversation only (the session's scope); `false`: about the user.
    pub session_only: bool,
    /// The index in the known memories shown to the model of one this candidate corrects.
    pub replaces: Option<usize>,
}

impl Candidate {
    pub fn fingerprint(&self) -> String {
        self.content.fingerprint()
    }
}

const INSTRUCTIONS: &str = "You read a conversation and write down what is worth remembering about the user \
for later conversations: facts about them (name, age, home, work, family, pets), their preferences (likes, \
dislikes, wishes), their feelings, and their relationships. Write each memory as one short sentence about the \
user, in the language the user wrote in. Remember only what the user said about themselves, never what the \
assistant said. Scope \"user\" is for what is true about the user anywhere; scope \"session\" for what matters \
only in this conversation's story. Importance goes from 1 (trivia) to 10 (never forget). If a new memory \
corrects one of the known memories, set \"replaces\" to that memory's number; otherwise 0. If nothing is worth \
remembering, answer with an empty list.

Example. The conversation:
User: I'm Tom, I work as a nurse in Leeds. Coffee, always black!
Assistant: Nice to meet you, Tom!
The answer:
{\"memories\": [{\"type\": \"fact\", \"content\": \"The user's name is Tom.\", \"importance\": 8, \"scope\": \"user\", \"replaces\": 0}, \
{\"type\": \"fact\", \"content\": \"The user works as a nurse in Leeds.\", \"importance\": 6, \"scope\": \"user\", \"replaces\": 0}, \
{\"type\": \"preference\", \"content\": \"The user drinks black coffee.\", \"importance\": 4, \"scope\": \"user\", \"replaces\": 0}]}";

/// The answer's shape: at most `MAX_CANDIDATES` memories of the four types.
pub fn shape(known: usize) -> AnswerShape {
    AnswerShape {
        name: "memories".to_owned(),
        description: "What is worth remembering about the user from this conversation.".to_owned(),
        schema: json!({
            "type": "object",
            "properties": {
                "memories": {
                    "type": "array",
                    "maxItems": MAX_CANDIDATES,
                    "items": {
                        "type": "object",
                        "properties": {
                            "type": {"type": "string", "enum": ["fact", "preference", "emotion", "relationship"]},
                            "content": {"type": "string", "minLength": 3, "maxLength": MAX_CHARS},
                            "importance": {"type": "integer", "minimum": 1, "maximum": 10},
                            "scope": {"type": "string", "enum": ["user", "session"]},
                            "replaces": {"type": "integer", "minimum": 0, "maximum": known},
                        },
                        "required": ["type", "content", "importance", "scope", "replaces"],
                        "additionalProperties": false,
                    },
                },
            },
            "required": ["memories"],
            "additionalProperties": false,
        }),
    }
}

/// The conversation as the model reads it: the instructions, the known memories (numbered from
/// 1), then the new turns as one transcript.
pub fn prompt_messages(known: &[&MemoryContent], turns: &[Message]) -> Vec<PromptMessage> {
    let mut system = INSTRUCTIONS.to_owned();
    if !known.is_empty() {
        system.push_str("\n\nKnown memories:");
        for (index, memory) in known.iter().enumerate() {
            system.push_str(&format!("\n{}. {}", index + 1, memory.as_str()));
        }
    }
    let mut transcript = String::from("The conversation:\n");
    for message in turns {
        let speaker = match message.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::System | Role::Tool => continue,
        };
        let text: String = message.content.as_str().chars().take(MESSAGE_CHARS).collect();
        transcript.push_str(&format!("{speaker}: {}\n", text.trim()));
    }
    vec![PromptMessage::new(PromptRole::System, system), PromptMessage::new(PromptRole::User, transcript)]
}

#[derive(Deserialize)]
struct Answer {
    memories: Vec<Proposed>,
}

#[derive(Deserialize)]
struct Proposed {
    #[serde(rename = "type")]
    memory_type: String,
    content: String,
    importance: u64,
    scope: String,
    #[serde(default)]
    replaces: u64,
}

/// Why an answer was not used at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the model's answer is not the memories' shape")]
pub struct Malformed;

/// The candidates of an answer: each checked, the ungrounded and repeated left out. `known`:
/// how many memories the prompt listed; `user_text`: everything the user wrote in the turns.
pub fn candidates(answer: &str, known: usize, user_text: &str) -> Result<Vec<Candidate>, Malformed> {
    let answer: Answer = serde_json::from_str(answer.trim()).map_err(|_| Malformed)?;
    let grounding = words(user_text);
    let mut seen = HashSet::new();
    let mut accepted = Vec::new();
    for proposed in answer.memories {
        let Some(candidate) = checked(proposed, known) else { continue };
        let print = candidate.fingerprint();
        if !grounded(&print, &grounding) || !seen.insert(print) {
            continue;
        }
        accepted.push(candidate);
        if accepted.len() == MAX_CANDIDATES {
            break;
        }
    }
    Ok(accepted)
}

fn checked(proposed: Proposed, known: usize) -> Option<Candidate> {
    let memory_type: MemoryType = proposed.memory_type.parse().ok()?;
    let text = proposed.content.split_whitespace().collect::<Vec<_>>().join(" ");
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 3 || text.chars().count() > MAX_CHARS {
        return None;
    }
    let content = MemoryContent::parse(text).ok()?;
    let importance = Importance::new("importance", proposed.importance.clamp(1, 10)).ok()?;
    let session_only = match proposed.scope.as_str() {
        "session" => true,
        "user" => false,
        _ => return None,
    };
    let replaces = usize::try_from(proposed.replaces).ok().filter(|&n| n >= 1 && n <= known).map(|n| n - 1);
    Some(Candidate { memory_type, content, importance, session_only, replaces })
}

/// The words of a text worth matching on: four letters or more.
pub(super) fn words(text: &str) -> HashSet<String> {
    fingerprint(text).split(' ').filter(|word| word.chars().count() >= 4).map(str::to_owned).collect()
}

/// Whether a memory says something of what the user wrote: one of its longer words is the user's.
fn grounded(print: &str, user_words: &HashSet<String>) -> bool {
    print.split(' ').filter(|word| word.chars().count() >= 4).any(|word| user_words.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "Hi! My name is Anna and I live in Berlin. Меня зовут Анна, я люблю зелёный чай.";

    fn answer(items: serde_json::Value) -> String {
        json!({"memories": items}).to_string()
    }

    #[test]
    fn a_valid_answer_becomes_candidates_of_its_types_scopes_and_importance() {
        let text = answer(json!([
            {"type": "fact", "content": " The user's  name is Anna. ", "importance": 9, "scope": "user", "replaces": 0},
            {"type": "preference", "content": "Пользователь любит зелёный чай", "importance": 6, "scope": "session", "replaces": 2},
        ]));
        let Ok(found) = candidates(&text, 2, USER) else { panic!("not parsed") };
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].content.as_str(), "The user's name is Anna.");
        assert_eq!(
            (found[0].memory_type, found[0].importance.get(), found[0].session_only),
            (MemoryType::Fact, 9, false)
        );
        assert_eq!(found[0].replaces, None);
        assert_eq!(
            (found[1].memory_type, found[1].session_only, found[1].replaces),
            (MemoryType::Preference, true, Some(1))
        );
    }

    #[test]
    fn fragments_inventions_repeats_and_unknown_types_are_left_out() {
        let text = answer(json!([
            {"type": "fact", "content": "1}, {\"", "importance": 5, "scope": "user", "replaces": 0},
            {"type": "fact", "content": "The user owns a spaceship", "importance": 5, "scope": "user", "replaces": 0},
            {"type": "fact", "content": "The user lives in Berlin", "importance": 5, "scope": "user", "replaces": 0},
            {"type": "fact", "content": "the user LIVES in berlin!", "importance": 5, "scope": "user", "replaces": 0},
            {"type": "secret", "content": "Anna lives in Berlin", "importance": 5, "scope": "user", "replaces": 0},
            {"type": "fact", "content": "Anna is in Berlin", "importance": 50, "scope": "user", "replaces": 7},
        ]));
        let Ok(found) = candidates(&text, 3, USER) else { panic!("not parsed") };
        let texts: Vec<_> = found.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(texts, ["The user lives in Berlin", "Anna is in Berlin"]);
        assert_eq!(found[1].importance.get(), 10, "clamped");
        assert_eq!(found[1].replaces, None, "a number past the known list is no reference");
    }

    #[test]
    fn an_answer_that_is_not_the_shape_is_malformed() {
        assert_eq!(candidates("I think the user is Anna", 0, USER), Err(Malformed));
        assert_eq!(candidates("{\"memories\": [{\"type\": \"fact\"}]}", 0, USER), Err(Malformed));
        assert_eq!(candidates("{\"memories\": []}", 0, USER), Ok(Vec::new()));
    }

    #[test]
    fn the_prompt_numbers_the_known_memories_and_labels_the_speakers() {
        let Ok(known) = MemoryContent::parse("The user's name is Anna.".to_owned()) else { panic!() };
        let messages = prompt_messages(&[&known], &[]);
        assert!(messages[0].content.ends_with("\n1. The user's name is Anna."));
        assert_eq!(messages[1].role, PromptRole::User);
    }
}
