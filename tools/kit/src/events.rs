//! The sample API Gateway events in `events/` (written by `scripts/gen-events.py`). They name a
//! demo session and memory by placeholder ids; whoever replays them swaps in ids that exist.

use std::path::Path;

/// The placeholder session id in the events.
pub const DEMO_SESSION: &str = "00000000-0000-4000-8000-000000000001";
/// The placeholder memory id in the events.
pub const DEMO_MEMORY: &str = "00000000-0000-4000-8000-00000000000a";

/// The event in `file` with the demo session and memory ids replaced by `session` and `memory`.
pub fn read(file: &Path, session: &str, memory: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(file)?.replace(DEMO_SESSION, session).replace(DEMO_MEMORY, memory))
}
