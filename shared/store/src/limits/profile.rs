//! The user's profile, kept on the `settings` item beside the quota settings it shares a reader
//! with (the time zone, and the adult confirmation every gated append reads with the subscription).

use aws_sdk_dynamodb::types::ReturnValue;
use serde::Deserialize;

use super::{ADULT_CONFIRMED_AT, SETTINGS, TIMEZONE, TIMEZONE_CHANGED_AT, key, settings_from};
use crate::item::{Item, s};
use crate::{Store, StoreError, update_failed};
use domain::{
    DisplayName, Gender, Language, Profile, ProfileChanges, Refusal, TIMEZONE_CHANGE_INTERVAL, TelegramAccount,
    Timestamp, UserId,
};

const DISPLAY_NAME: &str = "display_name";
const GENDER: &str = "gender";
const LANGUAGE: &str = "language";
const TELEGRAM: &str = "telegram";
const PROFILE_CREATED_AT: &str = "profile_created_at";

#[derive(Deserialize)]
struct ProfileItem {
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

fn profile_from(user: &UserId, item: &Item) -> Result<Profile, StoreError> {
    let stored: ProfileItem =
        serde_dynamo::from_item(item.clone()).map_err(|_| StoreError::corrupt("profile", "attributes"))?;
    let corrupt = |name| StoreError::corrupt("profile", name);
    let settings = settings_from(Some(item))?;
    Ok(Profile {
        id: user.to_string(),
        display_name: stored
            .display_name
            .as_deref()
            .map(DisplayName::parse)
            .transpose()
            .map_err(|_| corrupt(DISPLAY_NAME))?,
        gender: stored.gender.as_deref().map(str::parse::<Gender>).transpose().map_err(|_| corrupt(GENDER))?,
        language: stored.language.as_deref().map(Language::parse).transpose().map_err(|_| corrupt(LANGUAGE))?,
        time_zone: settings.timezone.name().to_owned(),
        telegram: stored.telegram,
        is_adult_confirmed: settings.adult_confirmed_at.is_some(),
        adult_confirmed_at: settings.adult_confirmed_at,
        created_at: stored
            .profile_created_at
            .ok_or_else(|| corrupt(PROFILE_CREATED_AT))?
            .parse()
            .map_err(|_| corrupt(PROFILE_CREATED_AT))?,
    })
}

impl Store {
    /// The caller's profile, created on first use: `created_at` is set once, and a Telegram
    /// sign-in fills `telegram` (and `language` from its `language_code`) when they are unset.
    pub async fn profile(&self, user: &UserId, telegram: Option<&TelegramAccount>) -> Result<Profile, StoreError> {
        let item = self.settings_item(user).await?;
        let complete = item.as_ref().is_some_and(|item| {
            item.contains_key(PROFILE_CREATED_AT) && (telegram.is_none() || item.contains_key(TELEGRAM))
        });
        match item {
            Some(item) if complete => profile_from(user, &item),
            _ => self.change_profile(user, &ProfileChanges::default(), telegram).await,
        }
    }

    /// The caller's profile if it exists, without creating it (what a model's context reads).
    pub async fn stored_profile(&self, user: &UserId) -> Result<Option<Profile>, StoreError> {
        match self.settings_item(user).await? {
            Some(item) if item.contains_key(PROFILE_CREATED_AT) => profile_from(user, &item).map(Some),
            _ => Ok(None),
        }
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
            if changes.language.is_none()
                && let Some(language) = account.language_code.as_deref().and_then(|code| Language::parse(code).ok())
            {
                update = update
                    .expression_attribute_names("#language", LANGUAGE)
                    .expression_attribute_values(":signin_language", s(language.as_str()));
                sets.push("#language = if_not_exists(#language, :signin_language)".to_owned());
            }
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
        self.limit_caches.forget_settings(user);
        let item = output.attributes().ok_or_else(|| StoreError::corrupt("profile", "attributes"))?;
        profile_from(user, item)
    }
}
