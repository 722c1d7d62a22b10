//! The usage report: finished days from their `u#<day>` items, the current day from the meter.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::item::{Item, s};
use crate::schema::limits::{ITEM, USER_ID};
use crate::{Store, StoreError};
use domain::{DailyUsage, DayUsage, ModelPrices, ModelUsage, UsageReport, UsageTotals, Usd, UserId};

/// A finished day's item: its usage, and the cost the job stamped on it.
#[derive(Deserialize)]
struct ClosedDay {
    item: String,
    #[serde(flatten)]
    usage: DayUsage,
    #[serde(default)]
    cost_usd: Option<String>,
}

#[derive(Default)]
struct Tally {
    days: BTreeMap<String, UsageTotals>,
    models: BTreeMap<String, UsageTotals>,
}

impl Tally {
    /// Adds one day; a finalised day keeps the cost it was closed with, whatever prices say today.
    fn add(&mut self, date: &str, usage: &DayUsage, finalized_cost: Option<Decimal>, prices: &ModelPrices) {
        let day = self.days.entry(date.to_owned()).or_default();
        day.messages += usage.messages;
        let mut cost = Decimal::ZERO;
        for (model, tokens) in &usage.models {
            let model_cost = prices.cost(model, tokens.input_tokens, tokens.output_tokens);
            cost += model_cost;
            day.input_tokens += tokens.input_tokens;
            day.output_tokens += tokens.output_tokens;
            let entry = self.models.entry(model.clone()).or_default();
            entry.messages += tokens.messages;
            entry.input_tokens += tokens.input_tokens;
            entry.output_tokens += tokens.output_tokens;
            entry.cost_usd = Usd(entry.cost_usd.0 + model_cost);
        }
        day.cost_usd = Usd(day.cost_usd.0 + finalized_cost.unwrap_or(cost));
    }

    fn report(self) -> UsageReport {
        let mut totals = UsageTotals::default();
        let daily = self
            .days
            .into_iter()
            .map(|(date, day)| {
                totals.messages += day.messages;
                totals.input_tokens += day.input_tokens;
                totals.output_tokens += day.output_tokens;
                totals.cost_usd = Usd(totals.cost_usd.0 + day.cost_usd.0);
                DailyUsage { date, totals: day }
            })
            .collect();
        let by_model = self.models.into_iter().map(|(model, totals)| ModelUsage { model, totals }).collect();
        UsageReport { totals, daily, by_model }
    }
}

impl Store {
    /// Usage between two UTC dates (inclusive): totals, per day, per model, with exact costs.
    pub async fn usage(&self, user: &UserId, from: &str, to: &str) -> Result<UsageReport, StoreError> {
        let (closed, meter) = tokio::try_join!(self.closed_days(user, from, to), self.fresh_meter(user))?;
        let mut tally = Tally::default();
        for day in &closed {
            let cost = day
                .cost_usd
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| StoreError::corrupt("usage", "cost_usd"))?;
            tally.add(&day.item[2..], &day.usage, cost, &self.limits.prices);
        }
        if (from..=to).contains(&meter.usage_day.as_str())
            && let Some(usage) = meter.usage_of(&meter.usage_day)
        {
            tally.add(&meter.usage_day, usage, None, &self.limits.prices);
        }
        Ok(tally.report())
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

/// A day's cost at the given prices (what the job stamps on a finished day).
pub(super) fn day_cost(usage: &DayUsage, prices: &ModelPrices) -> Decimal {
    usage.models.iter().map(|(model, tokens)| prices.cost(model, tokens.input_tokens, tokens.output_tokens)).sum()
}
