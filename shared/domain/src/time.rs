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
        if let Some(written) = write_fixed(self.0, f) {
            return written;
        }
        let text = self.0.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// `at` in `FORMAT`, written digit by digit (the `time` crate's formatter walks the format's items
/// and allocates: a page of messages formats a few hundred of these). Years outside 0–9999 are
/// left to `time`.
fn write_fixed(at: OffsetDateTime, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
    let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for slot in text[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(at.month())));
    put(8, 2, u32::from(at.day()));
    put(11, 2, u32::from(at.hour()));
    put(14, 2, u32::from(at.minute()));
    put(17, 2, u32::from(at.second()));
    put(20, 6, at.microsecond());
    Some(std::str::from_utf8(&text).map_or(Err(fmt::Error), |text| f.write_str(text)))
}

/// `text` in `FORMAT`, read by position; `None` for anything else (which `time`'s parser then
/// judges, so what is accepted does not change).
fn parse_fixed(text: &str) -> Option<Timestamp> {
    let bytes: &[u8; 27] = text.as_bytes().try_into().ok()?;
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')];
    if separators.iter().any(|(at, separator)| bytes[*at] != *separator) {
        return None;
    }
    let number = |at: usize, width: usize| {
        bytes[at..at + width]
            .iter()
            .try_fold(0u32, |value, digit| digit.is_ascii_digit().then(|| value * 10 + u32::from(digit - b'0')))
    };
    let month = time::Month::try_from(u8::try_from(number(5, 2)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(number(0, 4)?).ok()?, month, u8::try_from(number(8, 2)?).ok()?)
            .ok()?;
    let clock = time::Time::from_hms_micro(
        u8::try_from(number(11, 2)?).ok()?,
        u8::try_from(number(14, 2)?).ok()?,
        u8::try_from(number(17, 2)?).ok()?,
        number(20, 6)?,
    )
    .ok()?;
    Some(Timestamp(PrimitiveDateTime::new(date, clock).assume_utc()))
}

#[derive(Debug, thiserror::Error)]
#[error("not a timestamp of the form 2026-01-31T12:00:00.000000Z")]
pub struct TimestampParseError;

impl FromStr for Timestamp {
    type Err = TimestampParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(at) = parse_fixed(text) {
            return Ok(at);
        }
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

    /// The fixed-width writer and reader agree with `time`'s formatter and parser on every kind
    /// of instant (years, months, leap days, the day's ends, microseconds), and what they refuse
    /// `time` refuses too.
    #[test]
    fn the_fixed_width_path_agrees_with_the_time_crate() {
        let mut seconds: i64 = -62_135_596_800; // 0001-01-01
        let mut step: i64 = 1;
        while seconds < 253_402_300_799 {
            // ..9999-12-31T23:59:59
            let micros = (seconds.rem_euclid(1_000_003)) as u32 % 1_000_000;
            let at = OffsetDateTime::from_unix_timestamp(seconds)
                .ok()
                .and_then(|at| at.replace_microsecond(micros).ok())
                .unwrap_or_else(|| panic!("{seconds} is in range"));
            let timestamp = Timestamp::from_datetime(at);
            let by_time = at.format(FORMAT).unwrap_or_default();
            assert_eq!(timestamp.to_string(), by_time);
            assert_eq!(parse_fixed(&by_time), Some(timestamp));
            step = step.saturating_mul(3).min(86_400 * 97 + 3_607);
            seconds += step;
        }
        let leap = "2028-02-29T23:59:59.999999Z";
        assert_eq!(parse_fixed(leap).map(|at| at.to_string()), Some(leap.to_owned()));
        for wrong in [
            "2027-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-12-01T24:00:00.000000Z",
            "2026-12-01T00:60:00.000000Z",
            "2026-12-01T00:00:60.000000Z",
            "2026-12-01 00:00:00.000000Z",
            "2026-12-01T00:00:00.00000aZ",
            "2026-12-01T00:00:00.000000+",
            "+026-12-01T00:00:00.000000Z",
            "2026-12-01T00:00:00.000000",
        ] {
            assert_eq!(parse_fixed(wrong), None, "{wrong}");
            assert!(wrong.parse::<Timestamp>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn truncates_to_microseconds() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).ok();
        let Some(at) = at else { panic!("valid nanos") };
        assert_eq!(Timestamp::from_datetime(at).to_string(), "2023-11-14T22:13:20.123456Z");
    }
}
