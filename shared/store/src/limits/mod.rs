//! Limits table: every item of a user in one partition (`user_id`), sorted by `item`:
//!
//! - `settings` — quota settings (time zone, subscription, adult confirmation) and the profile
//!   (see `settings`);
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
mod settings;
mod usage;

use std::time::Duration;

use aws_sdk_dynamodb::types::{ReturnValue, Update};

pub use self::chores::ChoreReport;
pub(crate) use self::chores::list_chore;
pub(crate) use self::meter::meter_from_item;
use super::hints::Hints;
use super::item::{Item, n, s};
use super::schema::limits::{EXPIRES_AT, ITEM, USER_ID};
use super::{Store, StoreError, update_failed};
use domain::{
    AppendLimits, CharacterId, LimitsView, Meter, NewMessage, QuotaSettings, RateClass, RateState, Refusal, Role,
    Timestamp, UserId, Window,
};

const COUNT: &str = "n";

/// How long a function instance trusts cached quota settings (time zone, subscription).
const SETTINGS_TTL: Duration = Duration::from_secs(30);

fn key(user: &UserId, item: &str) -> Item {
    Item::from([(USER_ID.to_owned(), s(user.as_str())), (ITEM.to_owned(), s(item))])
}

/// Per-instance caches: quota settings (briefly) and the last meter state seen per user.
#[derive(Default)]
pub(crate) struct LimitCaches {
    /// With when they were read, on the store's clock.
    settings: Hints<UserId, (QuotaSettings, Timestamp)>,
    meters: Hints<UserId, Meter>,
}

impl LimitCaches {
    /// The cached settings and whether they are older than `SETTINGS_TTL` at `now`.
    fn settings(&self, user: &UserId, now: Timestamp) -> Option<(QuotaSettings, bool)> {
        self.settings.get(user).map(|(settings, at)| (settings, now >= at.plus(SETTINGS_TTL)))
    }

    fn remember_settings(&self, user: &UserId, settings: &QuotaSettings, now: Timestamp) {
        self.settings.insert(user.clone(), (settings.clone(), now));
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

impl Store {
    /// Works out what limits and bills an append (to a chat with `character`, if any); reads the
    /// settings only when this instance has none younger than `SETTINGS_TTL` — or, for an append
    /// that spends no quota unit (no `user` message: an assistant's), none at all, since only its
    /// quota headers depend on them: the next append that spends one reads them again.
    pub(crate) async fn append_limits(
        &self,
        user: &UserId,
        messages: &[NewMessage],
        character: Option<&CharacterId>,
    ) -> Result<AppendLimits, StoreError> {
        let spends = messages.iter().any(|message| message.role == Role::User);
        let settings = match self.limit_caches.settings(user, self.now()) {
            Some((settings, stale)) if !stale || !spends => settings,
            _ => self.fresh_settings(user).await?,
        };
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
}
