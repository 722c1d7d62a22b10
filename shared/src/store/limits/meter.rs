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

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, Update};
use serde::{Deserialize, Serialize};

use super::key;
use crate::domain::{QuotaSettings, Role, Timestamp, UserId, Window, utc_day};
use crate::store::item::{Item, n, s};
use crate::store::schema::limits::{CHORE_DAY, CHORE_KEY, ITEM};
use crate::store::{Store, StoreError};

pub(super) const METER: &str = "meter";
const VERSION: &str = "version";

/// Tokens and messages of one model in one UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModelTokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub messages: u64,
}

/// What one UTC day used: the metered messages (`user` messages and replies reporting usage)
/// and tokens per model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DayUsage {
    #[serde(default)]
    pub messages: u64,
    #[serde(default)]
    pub user_messages: u64,
    #[serde(default)]
    pub models: BTreeMap<String, ModelTokens>,
}

impl DayUsage {
    fn add(&mut self, other: &DayUsage) {
        self.messages += other.messages;
        self.user_messages += other.user_messages;
        for (model, tokens) in &other.models {
            let entry = self.models.entry(model.clone()).or_default();
            entry.input_tokens += tokens.input_tokens;
            entry.output_tokens += tokens.output_tokens;
            entry.messages += tokens.messages;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// The meter item's counters (its key and chore attributes are written alongside).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meter {
    /// Bumped by every write; 0 while the item does not exist.
    #[serde(default)]
    pub version: u64,
    /// The quota window (`Window::day`) `quota_used` counts; empty before the first.
    #[serde(default)]
    pub quota_day: String,
    #[serde(default)]
    pub quota_used: u64,
    /// Unix minute `rate_count` counts.
    #[serde(default)]
    pub rate_minute: i64,
    #[serde(default)]
    pub rate_count: u32,
    /// The UTC day `usage` counts; empty before the first.
    #[serde(default)]
    pub usage_day: String,
    #[serde(default)]
    pub usage: DayUsage,
}

impl Meter {
    pub(crate) fn from_item(item: &Item) -> Result<Self, StoreError> {
        serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("meter", "counters"))
    }

    /// `user` messages counted in `day`'s quota window.
    pub(crate) fn used(&self, day: &str) -> u64 {
        if self.quota_day == day { self.quota_used } else { 0 }
    }

    /// The usage of `day`, if the meter still holds it (it holds one day: the latest).
    pub(crate) fn usage_of(&self, day: &str) -> Option<&DayUsage> {
        (self.usage_day == day && !self.usage.is_empty()).then_some(&self.usage)
    }
}

/// What an append is limited and billed by, worked out before its transaction.
#[derive(Clone, Debug)]
pub(crate) struct AppendLimits {
    pub window: Window,
    /// `None`: unlimited (an active subscription).
    pub allowance: Option<u64>,
    /// Appends with `user` messages per minute; `None`: no limit.
    pub rate_limit: Option<u32>,
    /// What this append adds to the day's usage.
    pub usage: DayUsage,
    pub now: Timestamp,
}

impl AppendLimits {
    pub(crate) fn new(
        settings: &QuotaSettings,
        now: Timestamp,
        daily_quota: u64,
        rate_limit: Option<u32>,
        messages: &[crate::domain::NewMessage],
    ) -> Self {
        let mut usage = DayUsage::default();
        for message in messages {
            let user = message.role == Role::User;
            if user {
                usage.user_messages += 1;
            }
            if let Some(tokens) = &message.usage {
                let entry = usage.models.entry(tokens.model.clone()).or_default();
                entry.input_tokens += tokens.input_tokens;
                entry.output_tokens += tokens.output_tokens;
                entry.messages += 1;
            }
            if user || message.usage.is_some() {
                usage.messages += 1;
            }
        }
        Self {
            window: Window::containing(now, &settings.timezone),
            allowance: settings.allowance(now, daily_quota),
            rate_limit,
            usage,
            now,
        }
    }

    fn counts_quota(&self) -> bool {
        self.allowance.is_some() && self.usage.user_messages > 0
    }

    /// The quota as the `X-RateLimit-*` headers give it, after `used` units are consumed.
    pub(crate) fn quota_state(&self, used: u64) -> QuotaState {
        match self.allowance {
            None => QuotaState { limit: -1, remaining: -1, resets_at: self.window.resets_at },
            Some(total) => QuotaState {
                limit: total as i64,
                remaining: total.saturating_sub(used) as i64,
                resets_at: self.window.resets_at,
            },
        }
    }

    /// What this append does to the meter, given the meter as it stands.
    pub(crate) fn charge(&self, meter: &Meter) -> Charge {
        let used = meter.used(&self.window.day);
        if let Some(allowance) = self.allowance.filter(|_| self.counts_quota())
            && used + self.usage.user_messages > allowance
        {
            return Charge::OverQuota { allowance, used };
        }
        let minute = self.now.unix_seconds().div_euclid(60);
        let rated = self.usage.user_messages > 0 && self.rate_limit.is_some();
        let count = if meter.rate_minute == minute { meter.rate_count } else { 0 };
        if let Some(limit) = self.rate_limit.filter(|_| rated)
            && count >= limit
        {
            return Charge::RateLimited;
        }
        if self.usage.is_empty() {
            return Charge::Free { used };
        }
        let mut next = meter.clone();
        next.version = meter.version + 1;
        if self.counts_quota() {
            next.quota_day = self.window.day.clone();
            next.quota_used = used + self.usage.user_messages;
        }
        if rated {
            next.rate_minute = minute;
            next.rate_count = count + 1;
        }
        let today = utc_day(self.now);
        let mut closed = None;
        if meter.usage_day != today {
            if !meter.usage.is_empty() {
                closed = Some((meter.usage_day.clone(), meter.usage.clone()));
            }
            next.usage_day = today;
            next.usage = DayUsage::default();
        }
        next.usage.add(&self.usage);
        let used_after = next.used(&self.window.day);
        Charge::Write(Box::new(MeterWrite {
            before: meter.version,
            new_day: meter.usage_day != next.usage_day,
            next,
            closed,
            used_after,
        }))
    }
}

/// The outcome of charging an append against the meter.
#[derive(Clone, Debug)]
pub(crate) enum Charge {
    /// Nothing to count (no `user` message, no usage): the meter is not written.
    Free {
        used: u64,
    },
    Write(Box<MeterWrite>),
    OverQuota {
        allowance: u64,
        used: u64,
    },
    RateLimited,
}

/// A compare-and-set of the meter, and the finished day it closes, if the UTC day changed.
#[derive(Clone, Debug)]
pub(crate) struct MeterWrite {
    before: u64,
    new_day: bool,
    pub next: Meter,
    pub closed: Option<(String, DayUsage)>,
    pub used_after: u64,
}

/// The daily quota after a request: `X-RateLimit-Limit`, `-Remaining`, `-Reset`; -1 = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    pub limit: i64,
    pub remaining: i64,
    pub resets_at: Timestamp,
}

pub(super) fn chore_key(user: &UserId, item: &str) -> String {
    format!("{user}#{item}")
}

/// The day after a UTC day: when the job may finish what belongs to it.
pub(super) fn day_after(day: &str) -> String {
    match format!("{day}T00:00:00Z").parse::<Timestamp>() {
        Ok(start) => utc_day(start.plus(std::time::Duration::from_secs(24 * 3600))),
        Err(_) => day.to_owned(),
    }
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
        let meter = output.item().map(Meter::from_item).transpose()?.unwrap_or_default();
        self.limit_caches.remember_meter(user, &meter);
        Ok(meter)
    }

    /// The transaction items of a meter write: the compare-and-set update, then the closed day.
    pub(crate) fn meter_items(&self, user: &UserId, write: &MeterWrite) -> Result<(Update, Option<Put>), StoreError> {
        let counters = serde_dynamo::to_item::<_, Item>(&write.next).map_err(StoreError::internal)?;
        let mut update = Update::builder()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, METER)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut sets = Vec::with_capacity(counters.len() + 2);
        for (index, (name, value)) in counters.into_iter().enumerate() {
            sets.push(format!("#c{index} = :c{index}"));
            update = update
                .expression_attribute_names(format!("#c{index}"), name)
                .expression_attribute_values(format!(":c{index}"), value);
        }
        if write.new_day {
            // Listed for the job on the day after, so a day is closed even if the user goes quiet.
            // Only the day's first write changes these keys: later ones leave the index alone.
            sets.push("#chore_day = :chore_day, #chore_key = :chore_key".to_owned());
            update = update
                .expression_attribute_names("#chore_day", CHORE_DAY)
                .expression_attribute_names("#chore_key", CHORE_KEY)
                .expression_attribute_values(":chore_day", s(day_after(&write.next.usage_day)))
                .expression_attribute_values(":chore_key", s(chore_key(user, METER)));
        }
        update = if write.before == 0 {
            update.condition_expression("attribute_not_exists(#version)")
        } else {
            update.condition_expression("#version = :before").expression_attribute_values(":before", n(write.before))
        };
        let update = update
            .expression_attribute_names("#version", VERSION)
            .update_expression(format!("SET {}", sets.join(", ")))
            .build()
            .map_err(StoreError::internal)?;
        let closed = write.closed.as_ref().map(|(day, usage)| self.closed_day(user, day, usage)).transpose()?;
        Ok((update, closed))
    }

    /// A finished UTC day as its own item, listed for the job to stamp its cost the day after.
    pub(super) fn closed_day(&self, user: &UserId, day: &str, usage: &DayUsage) -> Result<Put, StoreError> {
        let name = format!("u#{day}");
        let mut item = serde_dynamo::to_item::<_, Item>(usage).map_err(StoreError::internal)?;
        item.extend(key(user, &name));
        item.insert(CHORE_DAY.to_owned(), s(day_after(day)));
        item.insert(CHORE_KEY.to_owned(), s(chore_key(user, &name)));
        Put::builder()
            .table_name(&self.tables.limits)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#item)")
            .expression_attribute_names("#item", ITEM)
            .build()
            .map_err(StoreError::internal)
    }
}
