//! The stream fan-out's input: the DynamoDB Streams records Lambda delivers, as the realtime
//! service reads them. Which table a record comes from is in its event source ARN.

use aws_lambda_events::event::dynamodb::EventRecord;
use shared::config::TableNames;
use shared::realtime::{Record, Source};
use shared::store::stream::Image;

/// The records of the messages and sessions tables, in order; any other source is skipped.
pub fn records(tables: &TableNames, records: Vec<EventRecord>) -> Vec<Record> {
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
    } else {
        return None;
    };
    let image = |item: serde_dynamo::Item| (!item.is_empty()).then(|| Image::from(item));
    Some(Record { source, old: image(record.change.old_image), new: image(record.change.new_image) })
}
