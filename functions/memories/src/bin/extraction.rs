//! Lambda entry point for memory extraction: the messages table's stream, filtered by the event
//! source mapping to replies that ended with text. Each session's latest end in a batch is read
//! by the model (`shared::memory`, the code the dev server runs), then its summary brought up to
//! date; sessions of a batch are read a few at a time. A retryable fault fails the batch, which Lambda delivers again (split in two):
//! extraction is idempotent by the session's mark, so what was stored is not stored twice.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::Event;
use futures::stream::{self, StreamExt};
use lambda_runtime::{LambdaEvent, service_fn};
use shared::config::Config;
use shared::memory::{EndedReply, ended_replies};

/// Sessions read at once (each a model call of up to its timeout).
const AT_ONCE: usize = 4;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let state = shared::lambda::init().await?;
    let tables = Config::from_env()?.tables;
    let extractor = state.extractor.clone();
    if extractor.is_none() {
        tracing::warn!("no model (LLM_PROVIDER) or MEMORY_EXTRACTION=off: ended replies are acknowledged unread");
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let (extractor, tables) = (extractor.clone(), tables.clone());
        async move {
            let Some(extractor) = extractor else { return Ok::<_, lambda_runtime::Error>(()) };
            let records = shared::lambda::stream_records(&tables, event.payload.records);
            let mut latest: BTreeMap<_, EndedReply> = BTreeMap::new();
            for reply in ended_replies(&records) {
                let key = (reply.user.as_str().to_owned(), reply.session_id.to_string());
                if latest.get(&key).is_none_or(|seen| seen.seq < reply.seq) {
                    latest.insert(key, reply);
                }
            }
            let outcomes: Vec<_> = stream::iter(latest.into_values())
                .map(|reply| {
                    let extractor = extractor.clone();
                    async move {
                        let extracted = extractor.extract(&reply.user, reply.session_id, reply.seq).await;
                        // The summary after the memories; its failure waits for the next reply.
                        if let Err(error) = extractor.summarize(&reply.user, reply.session_id).await {
                            tracing::warn!(session_id = %reply.session_id, %error, "summary failed");
                        }
                        (extracted, reply)
                    }
                })
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
            let mut retry = None;
            for (outcome, reply) in outcomes {
                match outcome {
                    Ok(outcome) => tracing::info!(session_id = %reply.session_id, outcome = outcome.kind(), "memory extraction"),
                    Err(error) if error.retryable() => {
                        tracing::warn!(session_id = %reply.session_id, %error, "memory extraction failed; the batch is retried");
                        retry = Some(error);
                    }
                    Err(error) => tracing::warn!(session_id = %reply.session_id, %error, "memory extraction failed"),
                }
            }
            match retry {
                Some(error) => Err(lambda_runtime::Error::from(error.to_string())),
                None => Ok(()),
            }
        }
    }))
    .await
}
