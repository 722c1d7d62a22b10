//! The dev server's stream reader: follows the messages, sessions and memories tables' streams in DynamoDB
//! Local (through `aws-sdk-dynamodbstreams`, the same API AWS serves) and hands each batch of
//! records to the realtime fan-out — the code the `fanout` function runs on AWS — and the ended
//! replies among them to memory extraction — the code the `memory` function runs on AWS.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{Record as StreamRecord, ShardIteratorType};
use shared::config::TableNames;
use shared::memory::{ExtractionQueue, ended_replies};
use shared::realtime::{Realtime, Record, Source};
use shared::store::stream::Image;
use tokio::task::JoinHandle;

/// How long a reader waits after a round that found nothing.
pub const IDLE_POLL: Duration = Duration::from_millis(20);
/// Records a resumed read goes back over: DynamoDB Local can make a record readable after later
/// ones (concurrent transactions) and its next iterator can pass over a record committed during
/// the read, so each read starts this many records back and skips what it delivered already.
const OVERLAP: usize = 64;
/// Sequence numbers remembered per shard (more than the overlap, so every re-read is known).
const REMEMBERED: usize = 4 * OVERLAP;

/// The latest sequence numbers read from a shard, oldest first.
#[derive(Default)]
struct Window {
    order: VecDeque<String>,
    known: HashSet<String>,
}

impl Window {
    /// Notes a record; `false` when it was read before.
    fn note(&mut self, sequence: &str) -> bool {
        if !self.known.insert(sequence.to_owned()) {
            return false;
        }
        self.order.push_back(sequence.to_owned());
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.known.remove(&old);
        }
        true
    }

    /// Where the next read starts: after the record `OVERLAP` back (the shard's start when fewer
    /// were read).
    fn resume_after(&self) -> Option<&str> {
        let len = self.order.len();
        (len > OVERLAP).then(|| self.order[len - OVERLAP - 1].as_str())
    }
}

/// How often the shards are listed again (a shard closes and children open every few hours).
const RESHARD_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("following the {table} stream: {reason}")]
pub struct StreamError {
    table: String,
    reason: String,
}

/// The running readers; dropping it stops them.
pub struct Followers(Vec<JoinHandle<()>>);

impl Drop for Followers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts reading both streams from now on; returns once both readers stand at the streams'
/// ends, so every change after this call is delivered. `endpoint`: where the Streams API is when
/// `sdk_config` does not say (DynamoDB Local serves it on DynamoDB's own port).
pub async fn follow(
    sdk_config: &aws_config::SdkConfig,
    endpoint: Option<&str>,
    tables: &TableNames,
    realtime: Realtime,
    extraction: Option<ExtractionQueue>,
) -> Result<Followers, StreamError> {
    let dynamo = shared::store::client(sdk_config);
    let mut config = aws_sdk_dynamodbstreams::config::Builder::from(sdk_config);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    let streams = Client::from_conf(config.build());
    let mut tasks = Vec::new();
    for (table, source) in [
        (&tables.messages, Source::Messages),
        (&tables.sessions, Source::Sessions),
        (&tables.memories, Source::Memories),
    ] {
        let fail = |reason: String| StreamError { table: table.clone(), reason };
        let described = dynamo.describe_table().table_name(table).send().await.map_err(|e| fail(e.to_string()))?;
        let arn = described
            .table
            .and_then(|table| table.latest_stream_arn)
            .ok_or_else(|| fail("the table has no stream (created before streams: restart to upgrade it)".into()))?;
        let mut reader = Reader {
            client: streams.clone(),
            arn,
            source,
            table: table.clone(),
            shards: HashMap::new(),
            seen: HashSet::new(),
            delivered: HashMap::new(),
        };
        reader.discover(true).await.map_err(fail)?;
        reader.skip_to_end().await.map_err(fail)?;
        let realtime = realtime.clone();
        let extraction = extraction.clone().filter(|_| source == Source::Messages);
        tasks.push(tokio::spawn(async move { reader.run(realtime, extraction).await }));
    }
    Ok(Followers(tasks))
}

struct Reader {
    client: Client,
    arn: String,
    source: Source,
    table: String,
    /// Open shards and where to read them next.
    shards: HashMap<String, String>,
    /// Every shard met so far, read or not.
    seen: HashSet<String>,
    /// The latest records read from each shard: where reading resumes, and what not to deliver
    /// twice.
    delivered: HashMap<String, Window>,
}

impl Reader {
    /// Lists the shards and starts reading those not met yet: the open ones at their end on the
    /// first call (`now`), later ones (children of a closed shard) from their beginning.
    async fn discover(&mut self, now: bool) -> Result<(), String> {
        let mut from = None;
        loop {
            let described = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(from.take())
                .send()
                .await
                .map_err(|error| aws_sdk_dynamodbstreams::error::DisplayErrorContext(error).to_string())?;
            let Some(description) = described.stream_description else { return Ok(()) };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                let closed =
                    shard.sequence_number_range().is_some_and(|range| range.ending_sequence_number().is_some());
                if !self.seen.insert(id.to_owned()) || (closed && now) {
                    continue;
                }
                // DynamoDB Local answers a `LATEST` iterator of a quiet shard with
                // TrimmedDataAccessException: read from the start, and skip to the end below.
                let start = ShardIteratorType::TrimHorizon;
                let iterator = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.arn)
                    .shard_id(id)
                    .shard_iterator_type(start)
                    .send()
                    .await
                    .map_err(|error| aws_sdk_dynamodbstreams::error::DisplayErrorContext(error).to_string())?;
                if let Some(iterator) = iterator.shard_iterator {
                    self.shards.insert(id.to_owned(), iterator);
                }
            }
            match description.last_evaluated_shard_id {
                Some(last) => from = Some(last),
                None => return Ok(()),
            }
        }
    }

    /// Reads past every record already in the open shards, delivering none.
    async fn skip_to_end(&mut self) -> Result<(), String> {
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            while let Some(iterator) = self.shards.get(&id).cloned() {
                let output = self
                    .client
                    .get_records()
                    .shard_iterator(iterator)
                    .send()
                    .await
                    .map_err(|error| aws_sdk_dynamodbstreams::error::DisplayErrorContext(error).to_string())?;
                if output.next_shard_iterator.is_none() {
                    self.shards.remove(&id);
                    break;
                }
                // At the end: this iterator stays where it is (see `run`).
                if self.fresh(&id, output.records()).is_empty() {
                    break;
                }
                self.resume(&id).await?;
            }
        }
        Ok(())
    }

    async fn run(mut self, realtime: Realtime, extraction: Option<ExtractionQueue>) {
        let mut listed = tokio::time::Instant::now();
        loop {
            let mut found = 0;
            let ids: Vec<String> = self.shards.keys().cloned().collect();
            for id in ids {
                let Some(iterator) = self.shards.get(&id).cloned() else { continue };
                match self.client.get_records().shard_iterator(iterator).send().await {
                    Ok(output) => {
                        let fresh = self.fresh(&id, output.records());
                        let records: Vec<Record> = fresh.iter().map(|record| self.record(record)).collect();
                        let read = records.len();
                        found += read;
                        tracing::debug!(table = %self.table, shard = %id, records = records.len(), "stream records");
                        if let Some(extraction) = &extraction {
                            extraction.notice(ended_replies(&records));
                        }
                        if !records.is_empty() {
                            realtime.fan_out(records).await;
                        }
                        match output.next_shard_iterator {
                            // The shard closed: its children take over.
                            None => {
                                self.shards.remove(&id);
                            }
                            // The reader places its own iterator (`OVERLAP` back), and reads a
                            // quiet shard again where it stood.
                            Some(_) if read > 0 => {
                                if let Err(error) = self.resume(&id).await {
                                    tracing::warn!(table = %self.table, %error, "stream iterator not renewed");
                                }
                            }
                            Some(_) => {}
                        }
                    }
                    // DynamoDB Local loses the iterator of a shard that was empty when it was taken
                    // once records arrive: take a new one after the last record read.
                    Err(error) if error.as_service_error().is_some_and(|e| e.is_trimmed_data_access_exception()) => {
                        if let Err(error) = self.resume(&id).await {
                            tracing::warn!(table = %self.table, %error, "stream iterator not renewed");
                            tokio::time::sleep(IDLE_POLL).await;
                        }
                    }
                    Err(error) => {
                        // The iterator stays: the next round tries it again.
                        let error = aws_sdk_dynamodbstreams::error::DisplayErrorContext(error).to_string();
                        tracing::warn!(table = %self.table, %error, "stream read failed");
                        tokio::time::sleep(IDLE_POLL).await;
                    }
                }
            }
            if self.shards.is_empty() || listed.elapsed() > RESHARD_EVERY {
                listed = tokio::time::Instant::now();
                if let Err(error) = self.discover(false).await {
                    tracing::warn!(table = %self.table, %error, "listing the stream's shards failed");
                }
            }
            if found == 0 {
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }

    /// The records of a read not read before, noted as read.
    fn fresh(&mut self, shard: &str, records: &[StreamRecord]) -> Vec<StreamRecord> {
        let window = self.delivered.entry(shard.to_owned()).or_default();
        records
            .iter()
            .filter(|record| {
                let sequence = record.dynamodb().and_then(|change| change.sequence_number());
                sequence.is_none_or(|sequence| window.note(sequence))
            })
            .cloned()
            .collect()
    }

    /// A new iterator for `shard`, `OVERLAP` records back from the last one read (its start if
    /// fewer were read).
    async fn resume(&mut self, shard: &str) -> Result<(), String> {
        let request = self.client.get_shard_iterator().stream_arn(&self.arn).shard_id(shard);
        let request = match self.delivered.get(shard).and_then(Window::resume_after) {
            Some(after) => request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(after),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let output = request
            .send()
            .await
            .map_err(|error| aws_sdk_dynamodbstreams::error::DisplayErrorContext(error).to_string())?;
        if let Some(iterator) = output.shard_iterator {
            self.shards.insert(shard.to_owned(), iterator);
        }
        Ok(())
    }

    fn record(&self, record: &StreamRecord) -> Record {
        let image = |image: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
            image.map(|image| Image::from(serde_dynamo::Item::from(image.clone())))
        };
        let change = record.dynamodb();
        Record {
            source: self.source,
            old: image(change.and_then(|change| change.old_image.as_ref())),
            new: image(change.and_then(|change| change.new_image.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_delivers_each_record_once_and_resumes_behind_the_last() {
        let mut window = Window::default();
        assert!(window.note("100") && window.note("101"));
        assert!(!window.note("100"), "read again: not delivered twice");
        assert_eq!(window.resume_after(), None, "few records: from the shard's start");
        for sequence in 102..400 {
            window.note(&sequence.to_string());
        }
        assert_eq!(window.order.len(), REMEMBERED);
        assert_eq!(window.resume_after(), Some((399 - OVERLAP).to_string().as_str()));
        assert!(!window.note(&(399 - OVERLAP + 1).to_string()), "the overlap is remembered");
    }
}
