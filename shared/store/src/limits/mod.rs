//! Limits table: every item of a user in one partition (`user_id`), sorted by `item`:
//!
//! - `settings` — quota settings: time zone and subscription;
//! - `meter` — the counters an append writes: quota window, append rate window, the day's usage
//!   (see `meter`);
//! - `r#<class>#<minute>` — read and other requests in that minute (TTL removes it);
//! - `u#<utc day>` — a finished day's usage, moved out of the meter when the next day began.
//!
//! The sparse, keys-only GSI `by_chore` (`chore_day`, `chore_key`) lists what the hourly job must
//! look at on a day: meters holding a finished day, usage days to finalise, subscriptions to
//! expire. The job takes an item out of the index when it has done its chore, so a second run
//! finds nothing to do.

mod chores;
mod meter;
mod profile;
mod usage;

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{ReturnValue, Update};
use serde::Deserialize;

pub use self::chores::ChoreReport;
pub(crate) use self::chores::list_chore;
pub(crate) use self::meter::meter_from_item;
use super::hints::Hints;
use super::item::{Item, n, s};
use super::schema::limits::{CHORE_DAY, CHORE_KEY, EXPIRES_AT, ITEM, USER_ID};
use super::{Store, StoreError, update_failed};
use domain::{
    AppendLimits, CharacterId, Entitlements, LimitsView, Meter, NewMessage, ProfileChanges, QuotaSettings, RateClass,
    RateState, Refusal, Subscription, TimeZone, Timestamp, UserId, Window, utc_day,
};

const SETTINGS: &str = "settings";
const TIMEZONE: &str = "timezone";
const TIMEZONE_CHANGED_AT: &str = "timezone_changed_at";
const PLAN: &str = "plan";
const START_AT: &str = "start_at";
const END_AT: &str = "end_at";
const EXPIRED: &str = "expired";
pub(super) const ADULT_CONFIRMED_AT: &str = "adult_confirmed_at";
const COUNT: &str = "n";

/// How long a function instance trusts cached quota settings (time zone, subscription).
const SETTINGS_TTL: Duration = Duration::from_secs(30);

fn key(user: &UserId, item: &str) -> Item {
    Item::from([(USER_ID.to_owned(), s(user.as_str())), (ITEM.to_owned(), s(item))])
}

/// Per-instance caches: quota settings (briefly) and the last meter state seen per user.
#[derive(Default)]
pub(crate) struct LimitCaches {
    settings: Hints<UserId, (QuotaSettings, Instant)>,
    meters: Hints<UserId, Meter>,
}

impl LimitCaches {
    /// The cached settings and whether they are older than `SETTINGS_TTL`.
    fn settings(&self, user: &UserId) -> Option<(QuotaSettings, bool)> {
        self.settings.get(user).map(|(settings, at)| (settings, at.elapsed() >= SETTINGS_TTL))
    }

    fn remember_settings(&self, user: &UserId, settings: &QuotaSettings) {
        self.settings.insert(user.clone(), (settings.clone(), Instant::now()));
    }

    fn forget_settings(&self, user: &UserId) {
        self.settings.remove(user);
    }

    fn meter(&self, user: &UserId) -> Option<Meter> {
        self.meters.get(user)
    }

    /// The meter's version only grows, so an older answer arriving late cannot replace a newer one.
    pub(crate) fn remember_meter(&self, user: &UserId, meter: &Meter) {
        self.meters.update(user.clone(), |known| match known {
            Some(known) if known.version > meter.version => known.clone(),
            _ => meter.clone(),
        });
    }
}

/// The `settings` item as stored (the attributes quota decisions read), mapped by serde_dynamo.
#[derive(Deserialize)]
struct SettingsItem {
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    timezone_changed_at: Option<String>,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    start_at: Option<String>,
    #[serde(default)]
    end_at: Option<String>,
    #[serde(default)]
    adult_confirmed_at: Option<String>,
}

fn settings_from(item: Option<&Item>) -> Result<QuotaSettings, StoreError> {
    let Some(item) = item else { return Ok(QuotaSettings::default()) };
    let stored: SettingsItem =
        serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("settings", "attributes"))?;
    let corrupt = |name| StoreError::corrupt("settings", name);
    let at = |text: Option<String>, name| text.ok_or_else(|| corrupt(name))?.parse().map_err(|_| corrupt(name));
    let timezone = match stored.timezone {
        Some(name) => TimeZone::parse(&name).map_err(|_| corrupt(TIMEZONE))?,
        None => TimeZone::utc(),
    };
    let subscription = match stored.plan {
        Some(plan) => {
            Some(Subscription { plan, start_at: at(stored.start_at, START_AT)?, end_at: at(stored.end_at, END_AT)? })
        }
        None => None,
    };
    let timezone_changed_at =
        stored.timezone_changed_at.map(|text| text.parse()).transpose().map_err(|_| corrupt(TIMEZONE_CHANGED_AT))?;
    let adult_confirmed_at =
        stored.adult_confirmed_at.map(|text| text.parse()).transpose().map_err(|_| corrupt(ADULT_CONFIRMED_AT))?;
    Ok(QuotaSettings { timezone, timezone_changed_at, subscription, adult_confirmed_at })
}

impl Store {
    /// The settings from this instance's cache, or the table on a miss. Cached settings older
    /// than `SETTINGS_TTL` are still used while a background read refreshes them, so a warm append
    /// never waits for them: a time zone or subscription change reaches a warm instance within
    /// about `SETTINGS_TTL`; expiry by `end_at` is exact, as it is computed at every append.
    pub(crate) async fn quota_settings(&self, user: &UserId) -> Result<QuotaSettings, StoreError> {
        match self.limit_caches.settings(user) {
            Some((settings, false)) => Ok(settings),
            Some((settings, true)) => {
                self.limit_caches.remember_settings(user, &settings);
                let (store, user) = (self.clone(), user.clone());
                tokio::spawn(async move {
                    if let Err(error) = store.fresh_settings(&user).await {
                        tracing::warn!(error = %error, "quota settings refresh failed; keeping the cached ones");
                    }
                });
                Ok(settings)
            }
            None => self.fresh_settings(user).await,
        }
    }

    /// What the character gates ask of the caller. `fresh`: read from the table (a gate about to
    /// refuse asks again, so a subscription or confirmation made a moment ago on another instance
    /// counts at once).
    pub async fn entitlements(&self, user: &UserId, fresh: bool) -> Result<Entitlements, StoreError> {
        let settings = if fresh { self.fresh_settings(user).await? } else { self.quota_settings(user).await? };
        Ok(settings.entitlements(self.now()))
    }

    async fn fresh_settings(&self, user: &UserId) -> Result<QuotaSettings, StoreError> {
        let settings = settings_from(self.settings_item(user).await?.as_ref())?;
        self.limit_caches.remember_settings(user, &settings);
        Ok(settings)
    }

    /// The `settings` item (quota settings and profile), read strongly consistent.
    async fn settings_item(&self, user: &UserId) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, SETTINGS)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(output.item)
    }

    /// Works out what limits and bills an append (to a chat with `character`, if any); reads the
    /// settings only when this instance has none.
    pub(crate) async fn append_limits(
        &self,
        user: &UserId,
        messages: &[NewMessage],
        character: Option<&CharacterId>,
    ) -> Result<AppendLimits, StoreError> {
        let settings = self.quota_settings(user).await?;
        Ok(AppendLimits::new(
            &settings,
            self.now(),
            self.limits.daily_quota,
            self.limits.rate.limit(RateClass::Append),
            messages,
            character,
        ))
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

    /// Counts a read or other request against its per-minute limit: one conditional write, or 429.
    /// Returns where the caller stands after it (`None`: the class is unlimited). (Appends are
    /// counted on the meter, inside their own transaction.)
    pub async fn hit_rate_limit(&self, user: &UserId, class: RateClass) -> Result<Option<RateState>, StoreError> {
        let Some(limit) = self.limits.rate.limit(class) else { return Ok(None) };
        let now = self.now();
        let update = self.rate_update(user, class, limit, now)?;
        let result = self.update_item(update).return_values(ReturnValue::UpdatedNew).send().await;
        let reset_secs = now.seconds_to_next_minute();
        let output = result.map_err(|error| {
            update_failed(error, || {
                StoreError::Refused(Refusal::RateLimited { retry_after_secs: reset_secs, class, limit })
            })
        })?;
        let count: u32 = output
            .attributes()
            .and_then(|attributes| attributes.get(COUNT))
            .and_then(|count| count.as_n().ok())
            .and_then(|count| count.parse().ok())
            .unwrap_or(limit);
        Ok(Some(RateState { class, limit, remaining: limit.saturating_sub(count), reset_secs }))
    }

    /// `GET /v1/limits`: the caller's quota window, use and subscription, read fresh.
    pub async fn limits_view(&self, user: &UserId) -> Result<LimitsView, StoreError> {
        let now = self.now();
        let (settings, meter) = tokio::try_join!(self.fresh_settings(user), self.fresh_meter(user))?;
        let window = Window::containing(now, &settings.timezone);
        Ok(LimitsView::new(&settings, meter.used(&window.day), now, self.limits.daily_quota))
    }

    /// Sets the caller's time zone: at most one change per 24 hours (the profile's rule: see
    /// `change_profile`).
    pub async fn set_timezone(&self, user: &UserId, timezone: TimeZone) -> Result<LimitsView, StoreError> {
        let changes = ProfileChanges { time_zone: Some(timezone), ..ProfileChanges::default() };
        self.change_profile(user, &changes, None).await?;
        self.limits_view(user).await
    }

    /// Grants (or replaces) a user's subscription.
    pub async fn put_subscription(&self, user: &UserId, subscription: Subscription) -> Result<LimitsView, StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, SETTINGS)))
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
            .expression_attribute_values(":chore_key", s(meter::chore_key(user, SETTINGS)))
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
            .set_key(Some(key(user, SETTINGS)))
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
}
