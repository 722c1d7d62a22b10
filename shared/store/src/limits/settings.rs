//! The `settings` item (`u#settings`… item `settings` in the limits table): this module alone maps
//! and writes it. It holds what quota decisions read (time zone, subscription, the adult
//! confirmation) and the profile (`GET /v1/me`). One struct maps it; appends read the quota part
//! through a per-instance cache (`SETTINGS_TTL`), the profile and the gates read it fresh.

use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use serde::Deserialize;

use super::{key, meter};
use crate::bulk::Wanted;
use crate::item::{Item, b, s};
use crate::schema::limits::{CHORE_DAY, CHORE_KEY};
use crate::{Store, StoreError, update_failed};
use domain::{
    DisplayName, Entitlements, Language, LimitsView, Profile, ProfileChanges, QuotaSettings, Refusal, Subscription,
    TIMEZONE_CHANGE_INTERVAL, TelegramAccount, TimeZone, Timestamp, UserId, utc_day,
};

/// The item's sort key in the user's partition.
pub(super) const SETTINGS: &str = "settings";
const TIMEZONE: &str = "timezone";
const TIMEZONE_CHANGED_AT: &str = "timezone_changed_at";
const PLAN: &str = "plan";
const START_AT: &str = "start_at";
const END_AT: &str = "end_at";
const EXPIRED: &str = "expired";
const ADULT_CONFIRMED_AT: &str = "adult_confirmed_at";
const DISPLAY_NAME: &str = "display_name";
const GENDER: &str = "gender";
const LANGUAGE: &str = "language";
const TELEGRAM: &str = "telegram";
const PROFILE_CREATED_AT: &str = "profile_created_at";

/// The `settings` item as stored, mapped by serde_dynamo. Every attribute is optional: the item
/// is created by whichever write comes first (a profile read, a subscription, a time zone).
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
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    gender: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    telegram: Option<TelegramAccount>,
    #[serde(default)]
    profile_created_at: Option<String>,
}

/// The item's two readings: the quota settings (defaults when there is no item) and the profile
/// (`None` until it was first created).
struct Settings {
    quota: QuotaSettings,
    profile: Option<Profile>,
}

fn corrupt(name: &'static str) -> StoreError {
    StoreError::corrupt("settings", name)
}

fn parsed<T: std::str::FromStr>(text: Option<String>, name: &'static str) -> Result<Option<T>, StoreError> {
    text.map(|text| text.parse()).transpose().map_err(|_| corrupt(name))
}

fn settings_from(user: &UserId, item: Option<&Item>) -> Result<Settings, StoreError> {
    let Some(item) = item else { return Ok(Settings { quota: QuotaSettings::default(), profile: None }) };
    let stored: SettingsItem = serde_dynamo::from_item(item.clone()).map_err(|_| corrupt("attributes"))?;
    let timezone = match stored.timezone {
        Some(name) => TimeZone::parse(&name).map_err(|_| corrupt(TIMEZONE))?,
        None => TimeZone::utc(),
    };
    let subscription = match stored.plan {
        Some(plan) => Some(Subscription {
            plan,
            start_at: parsed(stored.start_at, START_AT)?.ok_or_else(|| corrupt(START_AT))?,
            end_at: parsed(stored.end_at, END_AT)?.ok_or_else(|| corrupt(END_AT))?,
        }),
        None => None,
    };
    let quota = QuotaSettings {
        timezone,
        timezone_changed_at: parsed(stored.timezone_changed_at, TIMEZONE_CHANGED_AT)?,
        subscription,
        adult_confirmed_at: parsed(stored.adult_confirmed_at, ADULT_CONFIRMED_AT)?,
    };
    let profile = match parsed::<Timestamp>(stored.profile_created_at, PROFILE_CREATED_AT)? {
        None => None,
        Some(created_at) => Some(Profile {
            id: user.to_string(),
            display_name: stored
                .display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()
                .map_err(|_| corrupt(DISPLAY_NAME))?,
            gender: parsed(stored.gender, GENDER)?,
            language: stored.language.as_deref().map(Language::parse).transpose().map_err(|_| corrupt(LANGUAGE))?,
            time_zone: quota.timezone.name().to_owned(),
            telegram: stored.telegram,
            is_adult_confirmed: quota.adult_confirmed_at.is_some(),
            adult_confirmed_at: quota.adult_confirmed_at,
            created_at,
        }),
    };
    Ok(Settings { quota, profile })
}

impl Store {
    /// The settings from this instance's cache, or the table when it has none younger than
    /// `SETTINGS_TTL`: a time zone or subscription change reaches a warm instance within about
    /// `SETTINGS_TTL`; expiry by `end_at` is exact, as it is computed at every append. (The read
    /// happens inside the request: on Lambda nothing may outlive the invocation.)
    pub(crate) async fn quota_settings(&self, user: &UserId) -> Result<QuotaSettings, StoreError> {
        match self.limit_caches.settings(user, self.now()) {
            Some((settings, false)) => Ok(settings),
            _ => self.fresh_settings(user).await,
        }
    }

    /// What the character gates ask of the caller. `fresh`: read from the table (a gate about to
    /// refuse asks again, so a subscription or confirmation made a moment ago on another instance
    /// counts at once).
    pub async fn entitlements(&self, user: &UserId, fresh: bool) -> Result<Entitlements, StoreError> {
        let settings = if fresh { self.fresh_settings(user).await? } else { self.quota_settings(user).await? };
        Ok(settings.entitlements(self.now()))
    }

    pub(super) async fn fresh_settings(&self, user: &UserId) -> Result<QuotaSettings, StoreError> {
        Ok(self.settings_read(user, self.settings_item(user).await?.as_ref())?.quota)
    }

    /// The settings item as just read (strongly consistent) from the table: its quota settings
    /// become this instance's cached ones, whichever read brought them — so a user who keeps
    /// talking keeps them fresh through the context's read, and a turn's append reads them
    /// itself (a round trip before its transaction) only after `SETTINGS_TTL` of silence.
    fn settings_read(&self, user: &UserId, item: Option<&Item>) -> Result<Settings, StoreError> {
        let settings = settings_from(user, item)?;
        self.limit_caches.remember_settings(user, &settings.quota, self.now());
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

    /// The caller's profile, created on first use: `created_at` is set once, and a Telegram
    /// sign-in stores `telegram` (and what `ProfileChanges::signed_in_with` fills) when unset.
    pub async fn profile(&self, user: &UserId, telegram: Option<&TelegramAccount>) -> Result<Profile, StoreError> {
        let item = self.settings_item(user).await?;
        let settings = self.settings_read(user, item.as_ref())?;
        let signed_in = telegram.is_none() || item.as_ref().is_some_and(|item| item.contains_key(TELEGRAM));
        match settings.profile {
            Some(profile) if signed_in => Ok(profile),
            _ => self.change_profile(user, &ProfileChanges::default().signed_in_with(telegram), telegram).await,
        }
    }

    /// The settings item, for a read together with others (`get_together`): a model's context
    /// reads the profile beside the session.
    pub(crate) fn settings_wanted(&self, user: &UserId) -> Wanted {
        Wanted { table: self.tables.limits.clone(), key: key(user, SETTINGS) }
    }

    /// The profile in a settings item read with `settings_wanted`, if it was ever created (its
    /// quota settings refresh the cache, see `settings_read`).
    pub(crate) fn profile_read(&self, user: &UserId, item: Option<&Item>) -> Result<Option<Profile>, StoreError> {
        Ok(self.settings_read(user, item)?.profile)
    }

    /// Applies `changes` (and fills what a first use fills) in one conditional write. A time zone
    /// change is refused with 409 within 24 hours of the last one, and then nothing is written.
    /// An adult confirmation keeps the time of the first.
    pub async fn change_profile(
        &self,
        user: &UserId,
        changes: &ProfileChanges,
        telegram: Option<&TelegramAccount>,
    ) -> Result<Profile, StoreError> {
        let now = self.now();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.limits)
            .set_key(Some(key(user, SETTINGS)))
            .return_values(ReturnValue::AllNew)
            .expression_attribute_names("#created", PROFILE_CREATED_AT)
            .expression_attribute_values(":now", s(now.to_string()));
        let mut sets = vec!["#created = if_not_exists(#created, :now)".to_owned()];
        let mut removes = Vec::new();
        let fields = [
            (DISPLAY_NAME, changes.display_name.as_ref().map(|name| name.as_ref().map(|name| s(name.as_str())))),
            (GENDER, changes.gender.map(|gender| gender.map(|gender| s(gender.as_str())))),
            (
                LANGUAGE,
                changes.language.as_ref().map(|language| language.as_ref().map(|language| s(language.as_str()))),
            ),
        ];
        for (name, value) in fields {
            match value {
                None => continue,
                Some(Some(value)) => {
                    sets.push(format!("#{name} = :{name}"));
                    update = update.expression_attribute_values(format!(":{name}"), value);
                }
                Some(None) => removes.push(format!("#{name}")),
            }
            update = update.expression_attribute_names(format!("#{name}"), name);
        }
        if let Some(account) = telegram {
            let value = serde_dynamo::to_attribute_value(account).map_err(StoreError::internal)?;
            update = update
                .expression_attribute_names("#telegram", TELEGRAM)
                .expression_attribute_values(":telegram", value);
            sets.push("#telegram = :telegram".to_owned());
        }
        if let Some(language) = &changes.language_default
            && changes.language.is_none()
        {
            update = update
                .expression_attribute_names("#language", LANGUAGE)
                .expression_attribute_values(":language_default", s(language.as_str()));
            sets.push("#language = if_not_exists(#language, :language_default)".to_owned());
        }
        if changes.confirm_adult {
            update = update.expression_attribute_names("#adult", ADULT_CONFIRMED_AT);
            sets.push("#adult = if_not_exists(#adult, :now)".to_owned());
        }
        if let Some(zone) = &changes.time_zone {
            update = update
                .expression_attribute_names("#timezone", TIMEZONE)
                .expression_attribute_names("#changed_at", TIMEZONE_CHANGED_AT)
                .expression_attribute_values(":timezone", s(zone.name()))
                .expression_attribute_values(
                    ":cutoff",
                    s(Timestamp::from_datetime(now.datetime() - TIMEZONE_CHANGE_INTERVAL).to_string()),
                )
                .condition_expression(
                    "attribute_not_exists(#changed_at) OR #changed_at <= :cutoff OR #timezone = :timezone",
                );
            sets.push("#timezone = :timezone".to_owned());
            sets.push("#changed_at = :now".to_owned());
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let output = update.update_expression(expression).send().await.map_err(|error| {
            update_failed(error, || {
                StoreError::Refused(Refusal::Conflict(
                    "the time zone can change once per 24 hours, so that changing it cannot open extra quota windows"
                        .to_owned(),
                ))
            })
        })?;
        let item = output.attributes().ok_or_else(|| corrupt("attributes"))?;
        self.settings_read(user, Some(item))?.profile.ok_or_else(|| corrupt(PROFILE_CREATED_AT))
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

    /// The hourly job's chore on this item: marks an ended subscription `expired` and takes the
    /// item out of `day`'s chores. `None` when it is not due (extended, or due later today).
    pub(super) fn expire_subscription(
        &self,
        user: &UserId,
        item: &Item,
        day: &str,
        now: Timestamp,
    ) -> Result<Option<UpdateBuilder>, StoreError> {
        match settings_from(user, Some(item))?.quota.subscription {
            Some(subscription) if subscription.end_at <= now => Ok(Some(
                self.close_chore(key(user, SETTINGS), day, "#expired = :yes")
                    .expression_attribute_names("#expired", EXPIRED)
                    .expression_attribute_values(":yes", b(true)),
            )),
            _ => Ok(None),
        }
    }
}
