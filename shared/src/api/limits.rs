//! Limits API shapes.

use schemars::JsonSchema;
use serde::Deserialize;
use time::macros::format_description;

use crate::domain::{InputError, Subscription, Timestamp, utc_day};

/// `PATCH /v1/limits/profile`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    pub timezone: String,
}

/// `PUT /v1/admin/users/{user_id}/subscription`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSubscription {
    pub plan: String,
    pub start_at: String,
    pub end_at: String,
}

impl PutSubscription {
    pub fn into_subscription(self) -> Result<Subscription, InputError> {
        let start_at = Timestamp::parse_rfc3339("start_at", &self.start_at)?;
        let end_at = Timestamp::parse_rfc3339("end_at", &self.end_at)?;
        Subscription::validate(&self.plan, start_at, end_at)
    }
}

/// `GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC dates, inclusive; default: the last 30 days)
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The longest range one usage request may cover.
pub const MAX_USAGE_DAYS: i64 = 366;

impl UsageQuery {
    pub fn range(&self, now: Timestamp) -> Result<(String, String), InputError> {
        let format = format_description!("[year]-[month]-[day]");
        let parse = |field: &str, text: &str| {
            time::Date::parse(text, format).map_err(|_| InputError::invalid(field, "must be a date like 2026-11-21"))
        };
        let to = match &self.to {
            Some(text) => parse("to", text)?,
            None => parse("to", &utc_day(now))?,
        };
        let from = match &self.from {
            Some(text) => parse("from", text)?,
            None => to - time::Duration::days(29),
        };
        if from > to {
            return Err(InputError::invalid("from", "must not be after to"));
        }
        if (to - from).whole_days() >= MAX_USAGE_DAYS {
            return Err(InputError::invalid("from", "the range may span at most 366 days"));
        }
        let text = |date: time::Date| date.format(format).map_err(|_| InputError::invalid("from", "unusable date"));
        Ok((text(from)?, text(to)?))
    }
}
