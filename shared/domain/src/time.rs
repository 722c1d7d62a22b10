//! Time as the API and the store see it: UTC, microsecond precision, one fixed-width format.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// RFC 3339 in UTC with exactly six fractional digits, so the text sorts like the instant.
const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// An instant in UTC, truncated to whole microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let utc = at.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        Self(utc.replace_nanosecond(micros * 1_000).unwrap_or(utc))
    }

    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Any RFC 3339 instant (`2026-12-01T00:00:00Z`, `2026-12-01T01:00:00+01:00`), as UTC micros.
    pub fn parse_rfc3339(field: &str, text: &str) -> Result<Self, super::InputError> {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map(Self::from_datetime).map_err(
            |_| super::InputError::invalid(field, "must be an RFC 3339 date-time such as 2026-12-01T00:00:00Z"),
        )
    }

    pub fn plus(self, duration: Duration) -> Self {
        Self::from_datetime(self.0 + duration)
    }

    /// Seconds until the next minute starts (at least 1): when a per-minute window resets.
    pub fn seconds_to_next_minute(self) -> u64 {
        (60 - self.unix_seconds().rem_euclid(60)).max(1) as u64
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a timestamp of the form 2026-01-31T12:00:00.000000Z")]
pub struct TimestampParseError;

impl FromStr for Timestamp {
    type Err = TimestampParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PrimitiveDateTime::parse(text, FORMAT).map(|at| Self(at.assume_utc())).map_err(|_| TimestampParseError)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "UTC, RFC 3339 with microseconds: 2026-11-21T09:30:00.000000Z"
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where "now" comes from; injected so tests can drive time instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_sorts_as_text() {
        let early = Timestamp::from_unix_seconds(1_700_000_000).map(|t| t.plus(Duration::from_micros(5)));
        let late = Timestamp::from_unix_seconds(1_700_000_001);
        let (Some(early), Some(late)) = (early, late) else {
            panic!("valid unix seconds");
        };
        assert_eq!(early.to_string(), "2023-11-14T22:13:20.000005Z");
        assert_eq!(early.to_string().parse::<Timestamp>().ok(), Some(early));
        assert!(early.to_string() < late.to_string());
        assert!("2023-11-14T22:13:20Z".parse::<Timestamp>().is_err());
    }

    #[test]
    fn truncates_to_microseconds() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).ok();
        let Some(at) = at else { panic!("valid nanos") };
        assert_eq!(Timestamp::from_datetime(at).to_string(), "2023-11-14T22:13:20.123456Z");
    }
}
