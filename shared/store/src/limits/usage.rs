//! The usage days a report tallies: finished days from their `u#<day>` items, the current day
//! from the meter.

use serde::Deserialize;

use crate::item::{Item, s};
use crate::schema::limits::{ITEM, USER_ID};
use crate::{Store, StoreError};
use domain::{DayUsage, UsageDay, UserId};

/// A finished day's item: its usage, and the cost the job stamped on it.
#[derive(Deserialize)]
struct ClosedDay {
    item: String,
    #[serde(flatten)]
    usage: DayUsage,
    #[serde(default)]
    cost_usd: Option<String>,
}

impl Store {
    /// The usage days between two UTC dates (inclusive): the finished ones from their items,
    /// today's from the meter, read fresh. `UsageReport::tally` prices and sums them.
    pub async fn usage_days(&self, user: &UserId, from: &str, to: &str) -> Result<Vec<UsageDay>, StoreError> {
        let (closed, meter) = tokio::try_join!(self.closed_days(user, from, to), self.fresh_meter(user))?;
        let mut days = closed
            .into_iter()
            .map(|day| {
                let closed_cost = day
                    .cost_usd
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|_| StoreError::corrupt("usage", "cost_usd"))?;
                Ok(UsageDay { date: day.item[2..].to_owned(), usage: day.usage, closed_cost })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if (from..=to).contains(&meter.usage_day.as_str())
            && let Some(usage) = meter.usage_of(&meter.usage_day)
        {
            days.push(UsageDay { date: meter.usage_day.clone(), usage: usage.clone(), closed_cost: None });
        }
        Ok(days)
    }

    async fn closed_days(&self, user: &UserId, from: &str, to: &str) -> Result<Vec<ClosedDay>, StoreError> {
        let mut days = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.limits)
                .key_condition_expression("#user = :user AND #item BETWEEN :from AND :to")
                .expression_attribute_names("#user", USER_ID)
                .expression_attribute_names("#item", ITEM)
                .expression_attribute_values(":user", s(user.as_str()))
                .expression_attribute_values(":from", s(format!("u#{from}")))
                .expression_attribute_values(":to", s(format!("u#{to}")))
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                days.push(
                    serde_dynamo::from_item::<Item, ClosedDay>(item.clone())
                        .map_err(|_| StoreError::corrupt("usage", "day"))?,
                );
            }
            match output.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => break,
            }
        }
        Ok(days)
    }
}
