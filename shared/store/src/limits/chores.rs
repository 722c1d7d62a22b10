//! The hourly job's chores, listed per day in the keys-only index `by_chore`: expire
//! subscriptions, stamp the cost of finished usage days, and close meters whose user went quiet
//! (their finished day moves into a `u#<day>` item, already stamped).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::key;
use super::meter::{COST_USD, FINALIZED_AT, Listing, METER, meter_from_item};
use super::settings::SETTINGS;
use crate::item::{Item, Reader, s};
use crate::retention::SWEEP_PREFIX;
use crate::schema::limits::{BY_CHORE, CHORE_DAY, CHORE_KEY, ITEM, USER_ID};
use crate::tx::{backoff, cancellation_reasons, reason_failed};
use crate::{Store, StoreError};
use domain::{DayUsage, Meter, SessionId, Timestamp, UserId, utc_day, utc_day_start};

/// How many days back the job looks for chores it has not done (a job that was down longer
/// leaves older items as they are).
const LOOKBACK_DAYS: u64 = 14;
/// How often the job tries to finish a day whose character counters another run keeps changing.
const COUNT_ATTEMPTS: u32 = 5;

/// What a run of the hourly job did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChoreReport {
    pub subscriptions_expired: u64,
    /// Finished days whose cost was stamped (closed meters' days included).
    pub usage_days_finalized: u64,
    /// Meters whose finished day the job moved out because no append did.
    pub meters_closed: u64,
    /// Sessions whose invisible items the job stamped for TTL (retention), and how many items.
    pub sessions_swept: u64,
    pub messages_expired: u64,
    pub memories_expired: u64,
    /// False when the run stopped for time; the next run carries on.
    pub finished: bool,
}

impl Store {
    /// The hourly job: does the chores of every day up to `today` that are still in the index,
    /// stopping (to be continued next run) once `budget` has passed.
    pub async fn run_chores(&self, budget: Duration) -> Result<ChoreReport, StoreError> {
        let started = Instant::now();
        let now = self.now();
        let mut report = ChoreReport::default();
        let today = utc_day(now);
        for back in (0..=LOOKBACK_DAYS).rev() {
            let day = utc_day(Timestamp::from_datetime(now.datetime() - Duration::from_secs(back * 24 * 3600)));
            let mut start_key = None;
            loop {
                if started.elapsed() > budget {
                    report.finished = false;
                    return Ok(report);
                }
                let output = self
                    .client
                    .query()
                    .table_name(&self.tables.limits)
                    .index_name(BY_CHORE)
                    .key_condition_expression("#day = :day")
                    .expression_attribute_names("#day", CHORE_DAY)
                    .expression_attribute_values(":day", s(&day))
                    .limit(100)
                    .set_exclusive_start_key(start_key.take())
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                for entry in output.items() {
                    self.do_chore(entry, &day, &today, now, started + budget, &mut report).await?;
                }
                match output.last_evaluated_key {
                    Some(key) => start_key = Some(key),
                    None => break,
                }
            }
            if day == today {
                break;
            }
        }
        report.finished = true;
        Ok(report)
    }

    /// One index entry's chore; the index holds keys only, so the item is read first.
    async fn do_chore(
        &self,
        entry: &Item,
        day: &str,
        today: &str,
        now: Timestamp,
        deadline: Instant,
        report: &mut ChoreReport,
    ) -> Result<(), StoreError> {
        let read = Reader::new(entry, "chore");
        let user = UserId::parse(read.string(USER_ID)?).ok_or_else(|| StoreError::corrupt("chore", USER_ID))?;
        let name = read.string(ITEM)?.to_owned();
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(&user, &name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let Some(item) = output.item() else { return Ok(()) };
        if item.get(CHORE_DAY).and_then(|value| value.as_s().ok()).map(String::as_str) != Some(day) {
            return Ok(()); // done by another run, or due another day
        }
        let item_key = key(&user, &name);
        let result = if name == SETTINGS {
            let Some(update) = self.expire_subscription(&user, item, day, now)? else { return Ok(()) };
            let update = update.build().map_err(StoreError::internal)?;
            self.update_item(update)
                .send()
                .await
                .map(|_| &mut report.subscriptions_expired)
                .map_err(aws_sdk_dynamodb::Error::from)
        } else if name == METER {
            let meter = meter_from_item(item)?;
            if meter.usage_day.as_str() >= today || meter.usage.is_empty() {
                return Ok(());
            }
            if self.close_meter(&user, &meter, now).await? {
                report.meters_closed += 1;
                report.usage_days_finalized += 1;
            }
            return Ok(());
        } else if let Some(session) = name.strip_prefix(SWEEP_PREFIX) {
            let session_id: SessionId = session.parse().map_err(|_| StoreError::corrupt("chore", ITEM))?;
            let swept = self.sweep_session(&user, session_id, now, deadline).await?;
            report.messages_expired += swept.messages;
            report.memories_expired += swept.memories;
            if !swept.complete {
                return Ok(()); // out of time: the next run carries on
            }
            let update = self
                .close_chore(item_key, day, "#swept_at = :now")
                .expression_attribute_names("#swept_at", "swept_at")
                .expression_attribute_values(":now", s(now.to_string()))
                .build()
                .map_err(StoreError::internal)?;
            self.update_item(update)
                .send()
                .await
                .map(|_| &mut report.sessions_swept)
                .map_err(aws_sdk_dynamodb::Error::from)
        } else if let Some(usage_day) = name.strip_prefix("u#") {
            let usage: DayUsage =
                serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("usage", "day"))?;
            let cost = usage.cost(&self.limits.prices);
            let stamp = self
                .close_chore(item_key, day, "#cost = :cost, #finalized_at = :now")
                .expression_attribute_names("#cost", COST_USD)
                .expression_attribute_names("#finalized_at", FINALIZED_AT)
                .expression_attribute_values(":cost", s(cost.to_string()))
                .expression_attribute_values(":now", s(now.to_string()))
                .build()
                .map_err(StoreError::internal)?;
            let stamp = TransactWriteItem::builder().update(stamp).build();
            if self.finish_day(vec![stamp], usage_day, &usage).await? {
                report.usage_days_finalized += 1;
            }
            return Ok(());
        } else {
            return Ok(());
        };
        match result {
            Ok(done) => {
                *done += 1;
                Ok(())
            }
            // Another run did this chore first, or it is no longer due on this day.
            Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => Ok(()),
            Err(error) => Err(StoreError::internal(error)),
        }
    }

    /// Moves a quiet meter's finished day into its `u#<day>` item, stamped with its cost, and
    /// empties the meter's usage: one transaction, if no append changed the meter meanwhile.
    async fn close_meter(&self, user: &UserId, meter: &Meter, now: Timestamp) -> Result<bool, StoreError> {
        let cost = meter.usage.cost(&self.limits.prices);
        let closed = self.closed_day(user, &meter.usage_day, &meter.usage, Some((cost, now)))?;
        let emptied = self.meter_update(user, meter.version, &meter.without_usage(), Listing::Off)?;
        let writes = vec![
            TransactWriteItem::builder().put(closed).build(),
            TransactWriteItem::builder().update(emptied).build(),
        ];
        self.finish_day(writes, &meter.usage_day, &meter.usage).await
    }

    /// Commits the writes that finish a user's `day` together with what the day adds to its
    /// characters' counters (`Store::count_items`): one transaction, so a day is counted exactly
    /// once. `false`: the writes' own conditions failed (another run, or an append, came first).
    /// A counter that changed since it was read (another run counting another day) is read again.
    async fn finish_day(
        &self,
        writes: Vec<TransactWriteItem>,
        day: &str,
        usage: &DayUsage,
    ) -> Result<bool, StoreError> {
        let day_start = utc_day_start(day).ok_or_else(|| StoreError::corrupt("usage", "day"))?;
        for attempt in 0..COUNT_ATTEMPTS {
            let mut items = writes.clone();
            items.extend(self.count_items(day_start, &usage.characters).await?);
            let Err(error) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
                return Ok(true);
            };
            let reasons = cancellation_reasons(error)?;
            if reasons.iter().take(writes.len()).any(|reason| reason_failed(Some(reason))) {
                return Ok(false);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("finishing a usage day kept conflicting; the next run retries".into()))
    }

    /// Applies `set` to an item and takes it out of the day's chores, if it is still due that day.
    pub(super) fn close_chore(&self, item_key: Item, day: &str, set: &str) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.tables.limits)
            .set_key(Some(item_key))
            .update_expression(format!("SET {set} REMOVE #chore_day, #chore_key"))
            .condition_expression("#chore_day = :day")
            .expression_attribute_names("#chore_day", CHORE_DAY)
            .expression_attribute_names("#chore_key", CHORE_KEY)
            .expression_attribute_values(":day", s(day))
    }
}

/// Lists `item` (created if need be) among the chores of `now`'s day: the next run does it.
/// `expires_at`: when TTL may remove the item itself.
pub(crate) async fn list_chore(
    store: &Store,
    user: &UserId,
    item: &str,
    now: Timestamp,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    let mut update = store
        .client
        .update_item()
        .table_name(&store.tables.limits)
        .set_key(Some(key(user, item)))
        .expression_attribute_names("#chore_day", CHORE_DAY)
        .expression_attribute_names("#chore_key", CHORE_KEY)
        .expression_attribute_values(":day", s(utc_day(now)))
        .expression_attribute_values(":chore_key", s(super::meter::chore_key(user, item)));
    update = match expires_at {
        Some(at) => update
            .update_expression("SET #chore_day = :day, #chore_key = :chore_key, #expires_at = :expires_at")
            .expression_attribute_names("#expires_at", crate::schema::limits::EXPIRES_AT)
            .expression_attribute_values(":expires_at", crate::item::n(at)),
        None => update.update_expression("SET #chore_day = :day, #chore_key = :chore_key"),
    };
    update.send().await.map(|_| ()).map_err(StoreError::from_sdk)
}
