//! Extraction in a long-lived process (the dev server, the tests): each ended reply starts its
//! session's extraction in a task of its own, one at a time per session — an end that arrives
//! while its session's extraction runs is read by the next run, which starts when this one ends.
//! A retryable fault is tried again a few times, a second apart and growing; then the turns wait
//! for the session's next reply (the mark has not moved, so they are read with it). The session's
//! summary is brought up to date after each run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{Seq, SessionId};

use super::{EndedReply, Extracted, Extractor};

const ATTEMPTS: u32 = 3;

/// Cheap to clone.
#[derive(Clone)]
pub struct ExtractionQueue {
    extractor: Extractor,
    /// Sessions being read, and the latest end that arrived meanwhile.
    running: Arc<Mutex<HashMap<SessionId, Option<Seq>>>>,
}

impl ExtractionQueue {
    pub fn new(extractor: Extractor) -> Self {
        Self { extractor, running: Arc::default() }
    }

    /// Starts (or queues) the extraction of each ended reply's session.
    pub fn notice(&self, ended: Vec<EndedReply>) {
        for reply in ended {
            {
                let Ok(mut running) = self.running.lock() else { return };
                if let Some(waiting) = running.get_mut(&reply.session_id) {
                    *waiting = Some(waiting.map_or(reply.seq, |seq| seq.max(reply.seq)));
                    continue;
                }
                running.insert(reply.session_id, None);
            }
            let queue = self.clone();
            tokio::spawn(async move { queue.run(reply).await });
        }
    }

    async fn run(self, mut reply: EndedReply) {
        loop {
            self.extract(&reply).await;
            let Ok(mut running) = self.running.lock() else { return };
            match running.get_mut(&reply.session_id).and_then(Option::take) {
                Some(next) => reply.seq = next,
                None => {
                    running.remove(&reply.session_id);
                    return;
                }
            }
        }
    }

    async fn extract(&self, reply: &EndedReply) {
        self.read(reply).await;
        match self.extractor.summarize(&reply.user, reply.session_id).await {
            Ok(done) if done.calls > 0 => {
                tracing::info!(session_id = %reply.session_id, calls = done.calls, "summary written")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(session_id = %reply.session_id, %error, "summary failed"),
        }
    }

    async fn read(&self, reply: &EndedReply) {
        for attempt in 1..=ATTEMPTS {
            match self.extractor.extract(&reply.user, reply.session_id, reply.seq).await {
                Ok(Extracted::Stored { added, skipped, .. }) => {
                    tracing::info!(session_id = %reply.session_id, added = added.len(), skipped, "memories extracted");
                    return;
                }
                Ok(outcome) => {
                    tracing::debug!(session_id = %reply.session_id, outcome = outcome.kind(), "memory extraction");
                    return;
                }
                Err(error) if error.retryable() && attempt < ATTEMPTS => {
                    tracing::warn!(session_id = %reply.session_id, %error, attempt, "memory extraction failed; trying again");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
                Err(error) => {
                    tracing::warn!(session_id = %reply.session_id, %error, "memory extraction failed");
                    return;
                }
            }
        }
    }
}
