//! What one request costs in DynamoDB: round trips, consumed capacity and time spent waiting.
//!
//! [`CapacityMeter`] is an SDK interceptor added to the benchmark's client. It asks every request
//! for `ReturnConsumedCapacity: TOTAL` (the store itself never does: it has no use for the
//! numbers), reads the units from each response, and times each call from transmit to the end
//! of its attempt. The figures go to the [`Usage`] of the request being served: [`measure`] runs a
//! future with its own `Usage` in a task-local, so concurrent requests never mix their counts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_json::Value;

use crate::billing::{self, Written};

/// DynamoDB's share of one request.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub calls: u32,
    /// Units as DynamoDB Local reported them.
    pub read_units: f64,
    pub write_units: f64,
    /// The part of `write_units` reported for transactions, and the items those wrote (see
    /// [`crate::billing`]: DynamoDB Local's transaction figures are not what AWS bills).
    pub transaction_write_units: f64,
    pub transaction_items: Vec<Written>,
    /// Wall time with at least one DynamoDB call in flight (parallel calls count once).
    pub waiting: Duration,
    /// The benchmark's own work on each call's request (asking for the consumed capacity): not
    /// the handler's. (Reading the answer's figures counts as waiting: it ends the call's span.)
    pub instrumentation: Duration,
    in_flight: u32,
    busy_since: Option<Instant>,
}

impl Usage {
    fn call_started(&mut self, now: Instant) {
        self.calls += 1;
        if self.in_flight == 0 {
            self.busy_since = Some(now);
        }
        self.in_flight += 1;
    }

    fn call_finished(&mut self, now: Instant, units: Units, transaction: Option<Vec<Written>>) {
        self.read_units += units.read;
        self.write_units += units.write;
        if let Some(items) = transaction {
            self.transaction_write_units += units.write;
            self.transaction_items.extend(items);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0
            && let Some(since) = self.busy_since.take()
        {
            self.waiting += now - since;
        }
    }
}

tokio::task_local! {
    static CURRENT: Arc<Mutex<Usage>>;
}

/// Every call of the process so far, whichever task made it: what a generated reply writes from
/// its own task (checkpoints, its end) is outside any request's `measure`. A mark, cheap to copy:
/// the spans and transaction items it counts stay in the process's record (`spans_between`,
/// `items_between`). (Copies of the whole record per provider call filled 23 GB in a full run.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub calls: u64,
    pub write_units: f64,
    pub transaction_write_units: f64,
    /// `UpdateItem` calls on the messages table (a streaming reply's checkpoints).
    pub message_updates: u64,
    /// How many calls had ended, and transaction items been committed, by the mark.
    spans: usize,
    transaction_items: usize,
}

/// What every call of the process left: its counters (`totals` counts the spans and items
/// below when a mark is taken), when it was in flight, and what its transaction wrote.
struct Record {
    totals: Totals,
    spans: Vec<(Instant, Instant)>,
    transaction_items: Vec<Written>,
}

/// Round trips one after another: the most calls among `spans` that did not overlap (calls in
/// parallel count once), i.e. the longest chain of calls each waiting for the one before.
pub fn sequential_round_trips(spans: &[(Instant, Instant)]) -> u64 {
    let mut by_end = spans.to_vec();
    by_end.sort_by_key(|&(_, end)| end);
    let mut count = 0;
    let mut free_at: Option<Instant> = None;
    for (start, end) in by_end {
        if free_at.is_none_or(|at| start >= at) {
            count += 1;
            free_at = Some(end);
        }
    }
    count
}

/// How long at least one of `spans` was in flight (their union's length).
pub fn busy_time(spans: &[(Instant, Instant)]) -> Duration {
    let mut by_start = spans.to_vec();
    by_start.sort_by_key(|&(start, _)| start);
    let mut busy = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in by_start {
        current = match current {
            Some((from, to)) if start <= to => Some((from, to.max(end))),
            Some((from, to)) => {
                busy += to - from;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    busy + current.map_or(Duration::ZERO, |(from, to)| to - from)
}

static RECORD: Mutex<Record> = Mutex::new(Record {
    totals: Totals {
        calls: 0,
        write_units: 0.0,
        transaction_write_units: 0.0,
        message_updates: 0,
        spans: 0,
        transaction_items: 0,
    },
    spans: Vec::new(),
    transaction_items: Vec::new(),
});

pub fn totals() -> Totals {
    let record = RECORD.lock().unwrap_or_else(PoisonError::into_inner);
    Totals { spans: record.spans.len(), transaction_items: record.transaction_items.len(), ..record.totals }
}

/// When each call that ended between two marks was in flight.
pub fn spans_between(before: &Totals, after: &Totals) -> Vec<(Instant, Instant)> {
    RECORD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .spans
        .get(before.spans..after.spans)
        .unwrap_or_default()
        .to_vec()
}

/// The items transactions committed between two marks.
pub fn items_between(before: &Totals, after: &Totals) -> Vec<Written> {
    let record = RECORD.lock().unwrap_or_else(PoisonError::into_inner);
    record.transaction_items.get(before.transaction_items..after.transaction_items).unwrap_or_default().to_vec()
}

fn with_record(update: impl FnOnce(&mut Record)) {
    update(&mut RECORD.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Runs `future`, returning its output and the DynamoDB usage of the calls it made.
pub async fn measure<F: Future>(future: F) -> (F::Output, Usage) {
    let usage = Arc::new(Mutex::new(Usage::default()));
    let output = CURRENT.scope(usage.clone(), future).await;
    let usage = usage.lock().unwrap_or_else(PoisonError::into_inner).clone();
    (output, usage)
}

fn with_current(update: impl FnOnce(&mut Usage)) {
    // Calls outside `measure` (seeding, table setup) are not counted anywhere.
    let _ = CURRENT.try_with(|usage| update(&mut usage.lock().unwrap_or_else(PoisonError::into_inner)));
}

#[derive(Clone, Copy, Debug, Default)]
struct Units {
    read: f64,
    write: f64,
}

/// Carried in the operation's config bag from transmit to the parsed response.
#[derive(Clone, Debug)]
struct InFlight {
    writes: bool,
    started: Instant,
}

/// The items of a `TransactWriteItems` call, carried from its request to its response.
#[derive(Clone, Debug)]
struct Transaction(Vec<Written>);

impl Storable for Transaction {
    type Storer = StoreReplace<Self>;
}

impl Storable for InFlight {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
pub struct CapacityMeter;

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let started = Instant::now();
        let request = context.request_mut();
        let Some(Value::Object(mut body)) = request.body().bytes().and_then(|bytes| serde_json::from_slice(bytes).ok())
        else {
            return Ok(());
        };
        if body.contains_key("TransactItems") {
            cfg.interceptor_state().store_put(Transaction(billing::transaction_items(&body)));
        }
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let table = body.get("TableName").and_then(Value::as_str).unwrap_or_default();
        if target.ends_with(".UpdateItem") && table.ends_with("messages") {
            with_record(|record| record.totals.message_updates += 1);
        }
        body.insert("ReturnConsumedCapacity".into(), Value::from("TOTAL"));
        let bytes = serde_json::to_vec(&body)?;
        if request.headers().contains_key("content-length") {
            request.headers_mut().insert("content-length", bytes.len().to_string());
        }
        *request.body_mut() = SdkBody::from(bytes);
        with_current(|usage| usage.instrumentation += started.elapsed());
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or_default();
        let writes =
            matches!(operation, "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem");
        cfg.interceptor_state().store_put(InFlight { writes, started: Instant::now() });
        with_current(|usage| usage.call_started(Instant::now()));
        with_record(|record| record.totals.calls += 1);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let writes = cfg.load::<InFlight>().is_some_and(|call| call.writes);
        let committed = context.response().is_some_and(|response| response.status().is_success());
        let transaction = cfg.load::<Transaction>().filter(|_| committed).map(|items| items.0.clone());
        let consumed = context.response().and_then(|response| response.body().bytes()).map_or(0.0, capacity_units);
        // The call's span ends after reading its figures: the benchmark's parse is not the handler's.
        let now = Instant::now();
        let started = cfg.load::<InFlight>().map_or(now, |call| call.started);
        let units = if writes { Units { read: 0.0, write: consumed } } else { Units { read: consumed, write: 0.0 } };
        let totals_items = transaction.clone();
        with_current(|usage| usage.call_finished(now, units, transaction));
        // After the request's own accounting: this bookkeeping is the benchmark's, not the handler's.
        with_record(|record| {
            record.spans.push((started, now));
            record.totals.write_units += units.write;
            if let Some(items) = totals_items {
                record.totals.transaction_write_units += units.write;
                record.transaction_items.extend(items);
            }
        });
        Ok(())
    }
}

/// The units an answer's body reports. `ConsumedCapacity` is one object for single-table calls and
/// a list (one per table) for transactions and batches; failed calls carry it under
/// `CancellationReasons` or not at all. Only that field is read: the rest of the answer (50
/// messages, say) is skipped, not built.
fn capacity_units(body: &[u8]) -> f64 {
    #[derive(serde::Deserialize)]
    struct Figures {
        #[serde(rename = "ConsumedCapacity")]
        consumed: Option<Value>,
    }
    match serde_json::from_slice::<Figures>(body).ok().and_then(|figures| figures.consumed) {
        Some(Value::Array(tables)) => tables.iter().map(units_of).sum(),
        Some(table) => units_of(&table),
        None => 0.0,
    }
}

fn units_of(table: &Value) -> f64 {
    table.get("CapacityUnits").and_then(Value::as_f64).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_summed_over_the_tables_of_a_transaction() {
        let single = serde_json::json!({"ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5}});
        let transaction = serde_json::json!({"ConsumedCapacity": [
            {"TableName": "a", "CapacityUnits": 2.0}, {"TableName": "b", "CapacityUnits": 4.0}
        ]});
        assert!((capacity_units(single.to_string().as_bytes()) - 0.5).abs() < f64::EPSILON);
        assert!((capacity_units(transaction.to_string().as_bytes()) - 6.0).abs() < f64::EPSILON);
        assert!(capacity_units(b"{}").abs() < f64::EPSILON);
    }

    /// Two calls in parallel, then one after them: two round trips one after another.
    #[test]
    fn parallel_calls_are_one_round_trip() {
        let at = Instant::now();
        let ms = |n| at + Duration::from_millis(n);
        assert_eq!(sequential_round_trips(&[(ms(0), ms(3)), (ms(1), ms(4)), (ms(5), ms(6))]), 2);
        assert_eq!(sequential_round_trips(&[(ms(0), ms(1)), (ms(2), ms(3)), (ms(4), ms(5))]), 3);
        assert_eq!(sequential_round_trips(&[]), 0);
    }

    #[test]
    fn parallel_calls_count_their_overlap_once() {
        let start = Instant::now();
        let mut usage = Usage::default();
        usage.call_started(start);
        usage.call_started(start + Duration::from_millis(1));
        usage.call_finished(start + Duration::from_millis(3), Units::default(), None);
        usage.call_finished(start + Duration::from_millis(4), Units { read: 1.0, write: 0.0 }, None);
        assert_eq!(usage.calls, 2);
        assert_eq!(usage.waiting, Duration::from_millis(4));
        assert!((usage.read_units - 1.0).abs() < f64::EPSILON);
    }
}
