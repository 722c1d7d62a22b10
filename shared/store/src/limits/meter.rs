//! The meter: one item per user (`meter` in the limits table) that counts everything an append
//! is limited and billed by — the daily quota window, the per-minute append rate window, and the
//! current UTC day's usage (messages, tokens per model). An append writes this one item in its
//! transaction instead of a quota counter, a rate counter and usage roll-ups.
//!
//! Every write is a compare-and-set on `version`, and sets the counters to values computed from
//! the state it was based on: a cancelled append learns the current state from the cancellation
//! (`ALL_OLD`) and retries at once. When the UTC day changes, the first metered append (or the
//! hourly job, for a user gone quiet) moves the finished day into its own `u#<day>` item in the
//! same transaction, where the job later stamps its cost.

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, Update};
use rust_decimal::Decimal;

use super::key;
use crate::item::{Item, n, s, set_all};
use crate::schema::limits::{CHORE_DAY, CHORE_KEY, ITEM};
use crate::{Store, StoreError};
use domain::{DayUsage, Meter, MeterWrite, Timestamp, UserId, utc_day, utc_day_start};

pub(super) const METER: &str = "meter";
const VERSION: &str = "version";
pub(super) const COST_USD: &str = "cost_usd";
pub(super) const FINALIZED_AT: &str = "finalized_at";

/// What a meter write does to the meter's entry in the job's `by_chore` index.
pub(super) enum Listing {
    /// Leaves it (and the index) alone.
    Keep,
    /// Lists the meter for the job on this day.
    On(String),
    /// Takes it out: the meter holds no finished day.
    Off,
}

pub(super) fn chore_key(user: &UserId, item: &str) -> String {
    format!("{user}#{item}")
}

/// The day after a UTC day: when the job may finish what belongs to it.
pub(super) fn day_after(day: &str) -> String {
    match utc_day_start(day) {
        Some(start) => utc_day(start.plus(std::time::Duration::from_secs(24 * 3600))),
        None => day.to_owned(),
    }
}

/// Reads a stored meter item.
pub(crate) fn meter_from_item(item: &Item) -> Result<Meter, StoreError> {
    serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("meter", "counters"))
}

impl Store {
    /// The meter as this instance last saw it, or as stored (then `true`: verified).
    pub(crate) async fn meter(&self, user: &UserId) -> Result<(Meter, bool), StoreError> {
        match self.limit_caches.meter(user) {
            Some(meter) => Ok((meter, false)),
            None => Ok((self.fresh_meter(user).await?, true)),
        }
    }

    pub(crate) async fn fresh_meter(&self, user: &UserId) -> Result<Meter, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, METER)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let meter = output.item().map(meter_from_item).transpose()?.unwrap_or_default();
        self.limit_caches.remember_meter(user, &meter);
        Ok(meter)
    }

    /// The transaction items of an append's meter write: the compare-and-set update (listing the
    /// meter for the job on the day's first write), then the finished day it closes.
    pub(crate) fn meter_items(&self, user: &UserId, write: &MeterWrite) -> Result<(Update, Option<Put>), StoreError> {
        // Listed for the job on the day after, so a day is closed even if the user goes quiet.
        // Only the day's first write changes these keys: later ones leave the index alone.
        let listing = if write.new_day { Listing::On(day_after(&write.next.usage_day)) } else { Listing::Keep };
        let update = self.meter_update(user, write.before, &write.next, listing)?;
        let closed = write.closed.as_ref().map(|(day, usage)| self.closed_day(user, day, usage, None)).transpose()?;
        Ok((update, closed))
    }

    /// Sets the meter to `next` if it is still at version `before` (0: it does not exist yet);
    /// a failed condition returns the meter as it is.
    pub(super) fn meter_update(
        &self,
        user: &UserId,
        before: u64,
        next: &Meter,
        listing: Listing,
    ) -> Result<Update, StoreError> {
        let counters = serde_dynamo::to_item::<_, Item>(next).map_err(StoreError::internal)?;
        let update = Update::builder()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, METER)))
            .expression_attribute_names("#version", VERSION)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let (mut update, sets) = set_all(update, counters);
        let mut expression = format!("SET {}", sets.join(", "));
        if !matches!(listing, Listing::Keep) {
            update = update
                .expression_attribute_names("#chore_day", CHORE_DAY)
                .expression_attribute_names("#chore_key", CHORE_KEY);
        }
        match listing {
            Listing::Keep => {}
            Listing::On(day) => {
                expression.push_str(", #chore_day = :chore_day, #chore_key = :chore_key");
                update = update
                    .expression_attribute_values(":chore_day", s(day))
                    .expression_attribute_values(":chore_key", s(chore_key(user, METER)));
            }
            Listing::Off => expression.push_str(" REMOVE #chore_day, #chore_key"),
        }
        update = if before == 0 {
            update.condition_expression("attribute_not_exists(#version)")
        } else {
            update.condition_expression("#version = :before").expression_attribute_values(":before", n(before))
        };
        update.update_expression(expression).build().map_err(StoreError::internal)
    }

    /// A finished UTC day as its own item. Unstamped (an append closed it) it is listed for the
    /// job to stamp its cost the day after; `stamped` with its cost it is final (the job closed it).
    pub(super) fn closed_day(
        &self,
        user: &UserId,
        day: &str,
        usage: &DayUsage,
        stamped: Option<(Decimal, Timestamp)>,
    ) -> Result<Put, StoreError> {
        let name = format!("u#{day}");
        let mut item = serde_dynamo::to_item::<_, Item>(usage).map_err(StoreError::internal)?;
        item.extend(key(user, &name));
        match stamped {
            Some((cost, at)) => {
                item.insert(COST_USD.to_owned(), s(cost.to_string()));
                item.insert(FINALIZED_AT.to_owned(), s(at.to_string()));
            }
            None => {
                item.insert(CHORE_DAY.to_owned(), s(day_after(day)));
                item.insert(CHORE_KEY.to_owned(), s(chore_key(user, &name)));
            }
        }
        Put::builder()
            .table_name(&self.tables.limits)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#item)")
            .expression_attribute_names("#item", ITEM)
            .build()
            .map_err(StoreError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::day_after;

    #[test]
    fn the_day_after_crosses_months_and_years() {
        assert_eq!(day_after("2026-11-30"), "2026-12-01");
        assert_eq!(day_after("2026-12-31"), "2027-01-01");
        assert_eq!(day_after("2028-02-28"), "2028-02-29");
    }
}
