//! The meter's rules: what an append counts against the daily quota, the per-minute append rate
//! and the day's usage, and whether it may go ahead. Pure: the store keeps the meter in one item
//! and writes what `AppendLimits::charge` decides, compare-and-set on `version`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{NewMessage, QuotaSettings, Role, Timestamp, Window, utc_day};

/// Tokens and messages of one model in one UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub messages: u64,
}

/// What one UTC day used: the metered messages (`user` messages and replies reporting usage)
/// and tokens per model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
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

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// The meter item's counters (its key and chore attributes are written alongside).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
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
    /// `user` messages counted in `day`'s quota window.
    pub fn used(&self, day: &str) -> u64 {
        if self.quota_day == day { self.quota_used } else { 0 }
    }

    /// The usage of `day`, if the meter still holds it (it holds one day: the latest).
    pub fn usage_of(&self, day: &str) -> Option<&DayUsage> {
        (self.usage_day == day && !self.usage.is_empty()).then_some(&self.usage)
    }
}

/// What an append is limited and billed by, worked out before its transaction.
#[derive(Clone, Debug)]
pub struct AppendLimits {
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
    pub fn new(
        settings: &QuotaSettings,
        now: Timestamp,
        daily_quota: u64,
        rate_limit: Option<u32>,
        messages: &[NewMessage],
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
    pub fn quota_state(&self, used: u64) -> QuotaState {
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
    pub fn charge(&self, meter: &Meter) -> Charge {
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
pub enum Charge {
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
pub struct MeterWrite {
    pub before: u64,
    pub new_day: bool,
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
