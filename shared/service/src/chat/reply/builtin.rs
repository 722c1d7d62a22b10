//! The tools the server runs itself. `remember` writes a memory through the memories' own rules
//! (content, type and importance checked, one per type and content in a scope, the scope's cap,
//! a live session) with origin `extracted` and the turn that asked for it as its source — so the
//! user's delete leaves a tombstone the tool respects, and an edit, delete or reset of that turn
//! removes the memory, as they do an extracted one's.

use serde_json::json;

use domain::{Builtin, MemorySource, Message, RememberArguments, Seq, ToolError, UserId};
use store::{Store, StoreError};

/// Runs a built-in tool's call for the reply `assistant` of `user`.
pub(super) async fn run(
    store: &Store,
    user: &UserId,
    assistant: &Message,
    builtin: Builtin,
    arguments: &serde_json::Value,
) -> Result<serde_json::Value, ToolError> {
    match builtin {
        Builtin::Remember => remember(store, user, assistant, arguments).await,
    }
}

async fn remember(
    store: &Store,
    user: &UserId,
    assistant: &Message,
    arguments: &serde_json::Value,
) -> Result<serde_json::Value, ToolError> {
    let invalid = |message: String| ToolError::new("invalid_arguments", message);
    let arguments: RememberArguments =
        serde_json::from_value(arguments.clone()).map_err(|error| invalid(error.to_string()))?;
    // From the message the reply follows (a turn's user message) to the reply itself.
    let source = MemorySource {
        session_id: assistant.session_id,
        from_seq: Seq::new(assistant.seq.get().saturating_sub(1)).unwrap_or(assistant.seq),
        to_seq: assistant.seq,
    };
    let new = arguments.new_memory(source).map_err(|error| invalid(error.to_string()))?;
    let forgotten = store.tombstoned(user, &[new.content.fingerprint()]).await.map_err(unavailable)?;
    if !forgotten.is_empty() {
        return Err(ToolError::new("forgotten", "the user deleted this memory; it is not remembered again"));
    }
    match store.add_memory(user, new).await {
        Ok((memory, created)) => Ok(json!({"remembered": true, "memory_id": memory.id, "new": created})),
        Err(StoreError::Refused(refusal)) => Err(ToolError::new("refused", refusal.to_string())),
        Err(StoreError::NotFound(_)) => Err(ToolError::new("refused", "the session takes no memories now")),
        Err(error) => Err(unavailable(error)),
    }
}

fn unavailable(error: StoreError) -> ToolError {
    tracing::warn!(%error, "a remember call could not be stored");
    ToolError::new("unavailable", "the memory could not be stored; it was not remembered")
}
