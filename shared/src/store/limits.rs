//! Limits table: every item of a user in one partition (`user_id`), sorted by `item`:
//!
//! - `profile` — time zone and subscription;
//! - `q#<local day>` — `user` messages counted in that quota window;
//! - `r#<class>#<minute>` — requests in that minute (TTL removes it);
//! - `u#<utc day>` — messages that day; `u#<utc day>#m#<model>` — tokens per model.
//!
//! The sparse GSI `by_chore` (`chore_day`, `chore_key`) lists what the hourly job must look at on
//! a day: quota counters to remove, usage days to finalise, subscriptions to expire. The job takes
//! an item out of the index when it has done its chore, so a second run finds nothing to do.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use rust_decimal::Decimal;

use super::hints::Hints;
use super::item::{Item, Reader, b, n, s};
use super::schema::limits::{BY_CHORE, CHORE_DAY, CHORE_KEY, EXPIRES_AT, ITEM, USER_ID};
use super::{Store, StoreError, update_failed};
use crate::domain::{
    DailyUsage, LimitsView, ModelUsage, NewMessage, Profile, RateClass, Role, Subscription, TIMEZONE_CHANGE_INTERVAL,
    TimeZone, Timestamp, UsageReport, UsageTotals, Usd, UserId, Window, utc_day,
};

const PROFILE: &str = "profile";
const TIMEZONE: &str = "timezone";
const TIMEZONE_CHANGED_AT: &str = "timezone_changed_at";
const PLAN: &str = "plan";
const START_AT: &str = "start_at";
const END_AT: &str = "end_at";
const EXPIRED: &str = "expired";
const USED: &str = "used";
pub(crate) const QUOTA_USED: &str = USED;
const COUNT: &str = "n";
const MESSAGES: &str = "messages";
const USER_MESSAGES: &str = "user_messages";
const INPUT_TOKENS: &str = "input_tokens";
const OUTPUT_TOKENS: &str = "output_tokens";
const COST_USD: &str = "cost_usd";
const FINALIZED_AT: &str = "finalized_at";

/// How long a function instance trusts a cached profile (time zone, subscription).
const PROFILE_TTL: Duration = Duration::from_secs(30);
/// Quota counters outlive their window this long before TTL may remove them.
const COUNTER_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);

fn key(user: &UserId, item: &str) -> Item {
    Item::from([(USER_ID.to_owned(), s(user.as_str())), (ITEM.to_owned(), s(item))])
}

fn quota_item(day: &str) -> String {
    format!("q#{day}")
}

fn chore_key(user: &UserId, item: &str) -> String {
    format!("{user}#{item}")
}

/// The day after an instant's UTC day: when the job may finish what belongs to that instant.
fn day_after(at: Timestamp) -> String {
    utc_day(at.plus(Duration::from_secs(24 * 3600)))
}

/// Per-instance caches: profiles (briefly) and the last known quota use per window.
#[derive(Default)]
pub(crate) struct LimitCaches {
    profiles: Hints<UserId, (Profile, Instant)>,
    used: Hints<(UserId, String), u64>,
}

impl LimitCaches {
    /// The cached profile and whether it is older than `PROFILE_TTL`.
    fn profile(&self, user: &UserId) -> Option<(Profile, bool)> {
        self.profiles.get(user).map(|(profile, at)| (profile, at.elapsed() >= PROFILE_TTL))
    }

    fn remember_profile(&self, user: &UserId, profile: &Profile) {
        self.profiles.insert(user.clone(), (profile.clone(), Instant::now()));
    }

    fn used(&self, user: &UserId, day: &str) -> Option<u64> {
        self.used.get(&(user.clone(), day.to_owned()))
    }

    pub(crate) fn remember_used(&self, user: &UserId, day: &str, used: u64) {
        self.used.insert((user.clone(), day.to_owned()), used);
    }
}

fn profile_from(item: Option<&Item>) -> Result<Profile, StoreError> {
    let Some(item) = item else { return Ok(Profile::default()) };
    let read = Reader::new(item, "profile");
    let timezone = match read.opt_string(TIMEZONE)? {
        Some(name) => TimeZone::parse(name).map_err(|_| StoreError::corrupt("profile", TIMEZONE))?,
        None => TimeZone::utc(),
    };
    let subscription = match read.opt_string(PLAN)? {
        Some(plan) => {
            Some(Subscription { plan: plan.to_owned(), start_at: read.parse(START_AT)?, end_at: read.parse(END_AT)? })
        }
        None => None,
    };
    Ok(Profile { timezone, timezone_changed_at: read.opt_parse(TIMEZONE_CHANGED_AT)?, subscription })
}

/// What an append must do about limits, worked out before its transaction.
#[derive(Clone, Debug)]
pub(crate) struct AppendLimits {
    pub window: Window,
    /// `None`: unlimited (an active subscription).
    pub allowance: Option<u64>,
    /// `user` messages in the append.
    pub user_messages: u64,
    /// The quota use this instance believes; `None` when it has no idea.
    pub used_guess: Option<u64>,
    /// Whether `used_guess` was just read (or told by DynamoDB) rather than remembered.
    pub used_verified: bool,
    pub now: Timestamp,
}

impl AppendLimits {
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

    pub fn counts_quota(&self) -> bool {
        self.allowance.is_some() && self.user_messages > 0
    }
}

/// The daily quota after a request: `X-RateLimit-Limit`, `-Remaining`, `-Reset`; -1 = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    pub limit: i64,
    pub remaining: i64,
    pub resets_at: Timestamp,
}

/// Which limit a transaction item stands for, to read its cancellation reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitSlot {
    Quota,
    Rate,
    Usage,
}

impl Store {
    /// The profile from this instance's cache, or the table on a miss. A cached profile older
    /// than `PROFILE_TTL` is still used while a background read refreshes it, so a warm append
    /// never waits for it: a time zone or subscription change reaches a warm instance within
    /// about `PROFILE_TTL`; expiry by `end_at` is exact, as it is computed at every append.
    pub(crate) async fn profile(&self, user: &UserId) -> Result<Profile, StoreError> {
        match self.limit_caches.profile(user) {
            Some((profile, false)) => Ok(profile),
            Some((profile, true)) => {
                self.limit_caches.remember_profile(user, &profile);
                let (store, user) = (self.clone(), user.clone());
                tokio::spawn(async move {
                    if let Err(error) = store.fresh_profile(&user).await {
                        tracing::warn!(error = %error, "profile refresh failed; keeping the cached one");
                    }
                });
                Ok(profile)
            }
            None => self.fresh_profile(user).await,
        }
    }

    async fn fresh_profile(&self, user: &UserId) -> Result<Profile, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, PROFILE)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let profile = profile_from(output.item())?;
        self.limit_caches.remember_profile(user, &profile);
        Ok(profile)
    }

    /// Units of the quota used in a window (0 when the window has no counter yet).
    pub(crate) async fn quota_used(&self, user: &UserId, day: &str) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, &quota_item(day))))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let used = output.item().map_or(Ok(0), |item| Reader::new(item, "quota").number(USED))?;
        self.limit_caches.remember_used(user, day, used);
        Ok(used)
    }

    /// Works out the limits of an append; reads the profile only when this instance has none.
    pub(crate) async fn append_limits(
        &self,
        user: &UserId,
        messages: &[NewMessage],
    ) -> Result<AppendLimits, StoreError> {
        let now = self.now();
        let profile = self.profile(user).await?;
        let window = Window::containing(now, &profile.timezone);
        let user_messages = messages.iter().filter(|m| m.role == Role::User).count() as u64;
        let used_guess = self.limit_caches.used(user, &window.day);
        Ok(AppendLimits {
            allowance: profile.allowance(now, self.limits.daily_quota),
            used_guess,
            used_verified: false,
            window,
            user_messages,
            now,
        })
    }

    /// The limit items an append adds to its transaction, each with the slot that reads its failure.
    pub(crate) fn append_limit_items(
        &self,
        user: &UserId,
        limits: &AppendLimits,
        messages: &[NewMessage],
        used: u64,
    ) -> Result<Vec<(TransactWriteItem, LimitSlot)>, StoreError> {
        let mut items = Vec::new();
        if limits.counts_quota() {
            let item = quota_item(&limits.window.day);
            let condition = if used == 0 { "attribute_not_exists(#used)" } else { "#used = :used" };
            let mut update = Update::builder()
                .table_name(&self.tables.limits)
                .set_key(Some(key(user, &item)))
                .update_expression("SET #used = :new_used, #expires_at = :expires_at, #chore_day = :chore_day, #chore_key = :chore_key")
                .condition_expression(condition)
                .expression_attribute_names("#used", USED)
                .expression_attribute_names("#expires_at", EXPIRES_AT)
                .expression_attribute_names("#chore_day", CHORE_DAY)
                .expression_attribute_names("#chore_key", CHORE_KEY)
                .expression_attribute_values(":new_used", n(used + limits.user_messages))
                .expression_attribute_values(
                    ":expires_at",
                    n(limits.window.resets_at.plus(COUNTER_RETENTION).unix_seconds()),
                )
                .expression_attribute_values(":chore_day", s(day_after(limits.window.resets_at)))
                .expression_attribute_values(":chore_key", s(chore_key(user, &item)))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            if used != 0 {
                update = update.expression_attribute_values(":used", n(used));
            }
            let update = update.build().map_err(StoreError::internal)?;
            items.push((TransactWriteItem::builder().update(update).build(), LimitSlot::Quota));
        }
        if let Some(limit) = self.limits.rate.limit(RateClass::Append) {
            items.push((
                TransactWriteItem::builder()
                    .update(self.rate_update(user, RateClass::Append, limit, limits.now)?)
                    .build(),
                LimitSlot::Rate,
            ));
        }
        let day = utc_day(limits.now);
        let usage_item = format!("u#{day}");
        let usage = Update::builder()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, &usage_item)))
            .update_expression(
                "ADD #messages :k, #user_messages :ku SET #chore_day = :chore_day, #chore_key = :chore_key",
            )
            .expression_attribute_names("#messages", MESSAGES)
            .expression_attribute_names("#user_messages", USER_MESSAGES)
            .expression_attribute_names("#chore_day", CHORE_DAY)
            .expression_attribute_names("#chore_key", CHORE_KEY)
            .expression_attribute_values(":k", n(messages.len()))
            .expression_attribute_values(":ku", n(limits.user_messages))
            .expression_attribute_values(":chore_day", s(day_after(limits.now)))
            .expression_attribute_values(":chore_key", s(chore_key(user, &usage_item)))
            .build()
            .map_err(StoreError::internal)?;
        items.push((TransactWriteItem::builder().update(usage).build(), LimitSlot::Usage));
        let mut by_model: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        for usage in messages.iter().filter_map(|m| m.usage.as_ref()) {
            let entry = by_model.entry(usage.model.as_str()).or_default();
            *entry = (entry.0 + usage.input_tokens, entry.1 + usage.output_tokens, entry.2 + 1);
        }
        for (model, (input, output, count)) in by_model {
            let update = Update::builder()
                .table_name(&self.tables.limits)
                .set_key(Some(key(user, &format!("u#{day}#m#{model}"))))
                .update_expression("ADD #input :input, #output :output, #messages :count")
                .expression_attribute_names("#input", INPUT_TOKENS)
                .expression_attribute_names("#output", OUTPUT_TOKENS)
                .expression_attribute_names("#messages", MESSAGES)
                .expression_attribute_values(":input", n(input))
                .expression_attribute_values(":output", n(output))
                .expression_attribute_values(":count", n(count))
                .build()
                .map_err(StoreError::internal)?;
            items.push((TransactWriteItem::builder().update(update).build(), LimitSlot::Usage));
        }
        Ok(items)
    }

    fn rate_update(&self, user: &UserId, class: RateClass, limit: u32, now: Timestamp) -> Result<Update, StoreError> {
        let minute = now.unix_seconds() / 60;
        Update::builder()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, &format!("r#{}#{minute}", class.as_str()))))
            .update_expression("ADD #n :one SET #expires_at = :expires_at")
            .condition_expression("attribute_not_exists(#n) OR #n < :limit")
            .expression_attribute_names("#n", COUNT)
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":expires_at", n((minute + 2) * 60))
            .build()
            .map_err(StoreError::internal)
    }

    /// Counts a request against its per-minute limit: one conditional write, or 429.
    pub async fn hit_rate_limit(&self, user: &UserId, class: RateClass) -> Result<(), StoreError> {
        let Some(limit) = self.limits.rate.limit(class) else { return Ok(()) };
        let now = self.now();
        let update = self.rate_update(user, class, limit, now)?;
        let result = self
            .client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .send()
            .await;
        result.map(|_| ()).map_err(|error| {
            update_failed(error, || StoreError::RateLimited { retry_after_secs: retry_after_minute(now) })
        })
    }

    /// `GET /v1/limits`: the caller's quota window, use and subscription, read fresh.
    pub async fn limits_view(&self, user: &UserId) -> Result<LimitsView, StoreError> {
        let now = self.now();
        let profile = self.fresh_profile(user).await?;
        let window = Window::containing(now, &profile.timezone);
        let used = self.quota_used(user, &window.day).await?;
        Ok(LimitsView::new(&profile, used, now, self.limits.daily_quota))
    }

    /// Sets the caller's time zone: at most one change per 24 hours.
    pub async fn set_timezone(&self, user: &UserId, timezone: TimeZone) -> Result<LimitsView, StoreError> {
        let now = self.now();
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, PROFILE)))
            .update_expression("SET #timezone = :timezone, #changed_at = :now")
            .condition_expression(
                "attribute_not_exists(#changed_at) OR #changed_at <= :cutoff OR #timezone = :timezone",
            )
            .expression_attribute_names("#timezone", TIMEZONE)
            .expression_attribute_names("#changed_at", TIMEZONE_CHANGED_AT)
            .expression_attribute_values(":timezone", s(timezone.name()))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(
                ":cutoff",
                s(Timestamp::from_datetime(now.datetime() - TIMEZONE_CHANGE_INTERVAL).to_string()),
            )
            .send()
            .await;
        result.map_err(|error| {
            update_failed(error, || {
                StoreError::Conflict(
                    "the time zone can change once per 24 hours, so that changing it cannot open extra quota windows"
                        .to_owned(),
                )
            })
        })?;
        self.limits_view(user).await
    }

    /// Grants (or replaces) a user's subscription.
    pub async fn put_subscription(&self, user: &UserId, subscription: Subscription) -> Result<LimitsView, StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, PROFILE)))
            .update_expression(
                "SET #plan = :plan, #start_at = :start_at, #end_at = :end_at, #chore_day = :chore_day, \
                 #chore_key = :chore_key REMOVE #expired",
            )
            .expression_attribute_names("#plan", PLAN)
            .expression_attribute_names("#start_at", START_AT)
            .expression_attribute_names("#end_at", END_AT)
            .expression_attribute_names("#chore_day", CHORE_DAY)
            .expression_attribute_names("#chore_key", CHORE_KEY)
            .expression_attribute_names("#expired", EXPIRED)
            .expression_attribute_values(":plan", s(&subscription.plan))
            .expression_attribute_values(":start_at", s(subscription.start_at.to_string()))
            .expression_attribute_values(":end_at", s(subscription.end_at.to_string()))
            .expression_attribute_values(":chore_day", s(utc_day(subscription.end_at)))
            .expression_attribute_values(":chore_key", s(chore_key(user, PROFILE)))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        self.limits_view(user).await
    }

    /// Ends a user's subscription now; 404 when there is none.
    pub async fn delete_subscription(&self, user: &UserId) -> Result<LimitsView, StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, PROFILE)))
            .update_expression("REMOVE #plan, #start_at, #end_at, #chore_day, #chore_key, #expired")
            .condition_expression("attribute_exists(#plan)")
            .expression_attribute_names("#plan", PLAN)
            .expression_attribute_names("#start_at", START_AT)
            .expression_attribute_names("#end_at", END_AT)
            .expression_attribute_names("#chore_day", CHORE_DAY)
            .expression_attribute_names("#chore_key", CHORE_KEY)
            .expression_attribute_names("#expired", EXPIRED)
            .send()
            .await
            .map_err(|error| update_failed(error, || StoreError::NotFound("subscription")))?;
        self.limits_view(user).await
    }

    /// Usage between two UTC dates (inclusive): totals, per day, per model, with exact costs.
    pub async fn usage(&self, user: &UserId, from: &str, to: &str) -> Result<UsageReport, StoreError> {
        let mut days: BTreeMap<String, (UsageTotals, Option<Decimal>)> = BTreeMap::new();
        let mut models: BTreeMap<String, UsageTotals> = BTreeMap::new();
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
                .expression_attribute_values(":to", s(format!("u#{to}~")))
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in output.items() {
                let read = Reader::new(item, "usage");
                let name = read.string(ITEM)?;
                let rest = &name[2..];
                match rest.split_once("#m#") {
                    None => {
                        let entry = days.entry(rest.to_owned()).or_default();
                        entry.0.messages = read.opt_number(MESSAGES)?.unwrap_or(0);
                        entry.1 = read.opt_string(COST_USD)?.and_then(|cost| cost.parse().ok());
                    }
                    Some((day, model)) => {
                        let (input, output): (u64, u64) =
                            (read.opt_number(INPUT_TOKENS)?.unwrap_or(0), read.opt_number(OUTPUT_TOKENS)?.unwrap_or(0));
                        let cost = self.limits.prices.cost(model, input, output);
                        let day_entry = days.entry(day.to_owned()).or_default();
                        day_entry.0.input_tokens += input;
                        day_entry.0.output_tokens += output;
                        day_entry.0.cost_usd = Usd(day_entry.0.cost_usd.0 + cost);
                        let model_entry = models.entry(model.to_owned()).or_default();
                        model_entry.messages += read.opt_number::<u64>(MESSAGES)?.unwrap_or(0);
                        model_entry.input_tokens += input;
                        model_entry.output_tokens += output;
                        model_entry.cost_usd = Usd(model_entry.cost_usd.0 + cost);
                    }
                }
            }
            match output.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => break,
            }
        }
        let mut totals = UsageTotals::default();
        let daily = days
            .into_iter()
            .map(|(date, (mut day, finalized_cost))| {
                // A finalised day keeps the cost it was closed with, whatever prices say today.
                if let Some(cost) = finalized_cost {
                    day.cost_usd = Usd(cost);
                }
                totals.messages += day.messages;
                totals.input_tokens += day.input_tokens;
                totals.output_tokens += day.output_tokens;
                totals.cost_usd = Usd(totals.cost_usd.0 + day.cost_usd.0);
                DailyUsage { date, totals: day }
            })
            .collect();
        let by_model = models.into_iter().map(|(model, totals)| ModelUsage { model, totals }).collect();
        Ok(UsageReport { totals, daily, by_model })
    }

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
                for item in output.items() {
                    self.do_chore(item, &day, now, &mut report).await?;
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

    async fn do_chore(
        &self,
        item: &Item,
        day: &str,
        now: Timestamp,
        report: &mut ChoreReport,
    ) -> Result<(), StoreError> {
        let read = Reader::new(item, "chore");
        let user = UserId::parse(read.string(USER_ID)?).ok_or_else(|| StoreError::corrupt("chore", USER_ID))?;
        let name = read.string(ITEM)?.to_owned();
        let item_key = key(&user, &name);
        let (result, done) = if name == PROFILE {
            match profile_from(Some(item))?.subscription {
                Some(subscription) if subscription.end_at <= now => {
                    let update = self
                        .close_chore(item_key, day, "#expired = :yes")
                        .expression_attribute_names("#expired", EXPIRED)
                        .expression_attribute_values(":yes", b(true));
                    (
                        update.send().await.map(|_| ()).map_err(aws_sdk_dynamodb::Error::from),
                        &mut report.subscriptions_expired,
                    )
                }
                // Extended, or due later today: a later run finds it again.
                _ => return Ok(()),
            }
        } else if name.starts_with("q#") {
            let delete = self
                .client
                .delete_item()
                .table_name(&self.tables.limits)
                .set_key(Some(item_key))
                .condition_expression("#chore_day = :day")
                .expression_attribute_names("#chore_day", CHORE_DAY)
                .expression_attribute_values(":day", s(day));
            (delete.send().await.map(|_| ()).map_err(aws_sdk_dynamodb::Error::from), &mut report.counters_removed)
        } else if let Some(usage_day) = name.strip_prefix("u#") {
            let cost = self.usage(&user, usage_day, usage_day).await?.totals.cost_usd;
            let update = self
                .close_chore(item_key, day, "#cost = :cost, #finalized_at = :now")
                .expression_attribute_names("#cost", COST_USD)
                .expression_attribute_names("#finalized_at", FINALIZED_AT)
                .expression_attribute_values(":cost", s(cost.to_string()))
                .expression_attribute_values(":now", s(now.to_string()));
            (update.send().await.map(|_| ()).map_err(aws_sdk_dynamodb::Error::from), &mut report.usage_days_finalized)
        } else {
            return Ok(());
        };
        match result {
            Ok(()) => {
                *done += 1;
                Ok(())
            }
            // Another run did this chore first, or it is no longer due on this day.
            Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => Ok(()),
            Err(error) => Err(StoreError::internal(error)),
        }
    }

    /// Applies `set` to an item and takes it out of the day's chores, if it is still due that day.
    fn close_chore(
        &self,
        item_key: Item,
        day: &str,
        set: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.tables.limits)
            .set_key(Some(item_key))
            .update_expression(format!("SET {set} REMOVE #chore_day, #chore_key"))
            .condition_expression("#chore_day = :day")
            .expression_attribute_names("#chore_day", CHORE_DAY)
            .expression_attribute_names("#chore_key", CHORE_KEY)
            .expression_attribute_values(":day", s(day))
    }
}

/// How many days back the job looks for chores it has not done (a job that was down longer
/// leaves older items to TTL).
const LOOKBACK_DAYS: u64 = 14;

/// What a run of the hourly job did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChoreReport {
    pub subscriptions_expired: u64,
    pub usage_days_finalized: u64,
    pub counters_removed: u64,
    /// False when the run stopped for time; the next run carries on.
    pub finished: bool,
}

/// Seconds until the next minute starts.
pub(crate) fn retry_after_minute(now: Timestamp) -> u64 {
    (60 - now.unix_seconds().rem_euclid(60)).max(1) as u64
}
