//! The composition root every function's `main` shares: telemetry, config, SDK client (warmed
//! during init), then the Lambda runtime serving the function's routes (or, for the job, its
//! event handler).

use aws_lambda_events::event::dynamodb::EventRecord;
use axum::Router;

use crate::config::{self, Config, TableNames};
use crate::realtime::{Record, Source};
use crate::state::AppState;
use crate::store::stream::Image;
use crate::{http, telemetry};

/// Telemetry, config and the state, with the DynamoDB connection warmed unless switched off.
pub async fn init() -> Result<AppState, lambda_http::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::from_env(&config).await?;
    if config::warm_up_from_env()? {
        state.store.warm_up().await;
    }
    Ok(state)
}

pub async fn run(routes: Router<AppState>) -> Result<(), lambda_http::Error> {
    let state = init().await?;
    lambda_http::run(http::app(routes, state)).await
}

/// The same routes in a function URL's response-streaming mode (`InvokeMode: RESPONSE_STREAM`):
/// bodies — replies' Server-Sent Events — reach the caller as they are written.
pub async fn run_streaming(routes: Router<AppState>) -> Result<(), lambda_http::Error> {
    let state = init().await?;
    lambda_http::run_with_streaming_response(http::app(routes, state)).await
}

/// The DynamoDB Streams records Lambda delivers (to the fan-out and to memory extraction), as the
/// services read them: the records of the messages and sessions tables, in order; any other
/// source is skipped (the memories table's records are the fan-out's too). Which table a record comes from is in its event source ARN.
pub fn stream_records(tables: &TableNames, records: Vec<EventRecord>) -> Vec<Record> {
    records.into_iter().filter_map(|record| record_of(tables, record)).collect()
}

fn record_of(tables: &TableNames, record: EventRecord) -> Option<Record> {
    // arn:aws:dynamodb:{region}:{account}:table/{name}/stream/{label}
    let arn = record.event_source_arn.as_deref()?;
    let table = arn.split("table/").nth(1)?.split('/').next()?;
    let source = if table == tables.messages {
        Source::Messages
    } else if table == tables.sessions {
        Source::Sessions
    } else if table == tables.memories {
        Source::Memories
    } else {
        return None;
    };
    let image = |item: serde_dynamo::Item| (!item.is_empty()).then(|| Image::from(item));
    Some(Record { source, old: image(record.change.old_image), new: image(record.change.new_image) })
}
