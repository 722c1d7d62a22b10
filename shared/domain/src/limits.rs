//! Limits: daily quotas of `user` messages, subscriptions, per-minute rate limits, usage and cost.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::Serialize;

use super::{InputError, Timestamp};

/// An IANA time zone (`Europe/Lisbon`); the quota window follows its local midnight.
#[derive(Clone, Debug)]
pub struct TimeZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl TimeZone {
    pub fn utc() -> Self {
        Self { name: "UTC".to_owned(), zone: jiff::tz::TimeZone::UTC }
    }

    pub fn parse(name: &str) -> Result<Self, InputError> {
        let invalid = || InputError::invalid("timezone", "must be an IANA time zone such as Europe/Lisbon");
        if name.is_empty() || name.len() > 64 {
            return Err(invalid());
        }
        let zone = jiff::tz::TimeZone::get(name).map_err(|_| invalid())?;
        Ok(Self { name: name.to_owned(), zone })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PartialEq for TimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// One quota window: a local calendar day in the user's time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The local date, `YYYY-MM-DD`.
    pub day: String,
    pub resets_at: Timestamp,
}

impl Window {
    pub fn containing(now: Timestamp, zone: &TimeZone) -> Self {
        let micros = now.datetime().unix_timestamp_nanos() / 1_000;
        let instant = jiff::Timestamp::from_microsecond(micros as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let date = instant.to_zoned(zone.zone.clone()).date();
        let next_midnight = date
            .tomorrow()
            .ok()
            .and_then(|tomorrow| tomorrow.to_zoned(zone.zone.clone()).ok())
            .map(|zoned| zoned.timestamp().as_second());
        let resets_at = next_midnight.and_then(Timestamp::from_unix_seconds).unwrap_or(now);
        Self { day: date.to_string(), resets_at }
    }

    /// Whole seconds until the window resets (at least 1).
    pub fn retry_after_secs(&self, now: Timestamp) -> u64 {
        (self.resets_at.unix_seconds() - now.unix_seconds()).max(1) as u64
    }
}

/// The UTC calendar date of an instant, `YYYY-MM-DD`: the key of usage roll-ups.
pub fn utc_day(at: Timestamp) -> String {
    Window::containing(at, &TimeZone::utc()).day
}

/// The instant a UTC day (`YYYY-MM-DD`) starts; `None` for anything else.
pub fn utc_day_start(day: &str) -> Option<Timestamp> {
    format!("{day}T00:00:00.000000Z").parse().ok().filter(|start| utc_day(*start) == day)
}

/// A paid plan granted by an admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub plan: String,
    pub start_at: Timestamp,
    pub end_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    Scheduled,
    Active,
    Expired,
}

impl Subscription {
    pub fn status(&self, now: Timestamp) -> SubscriptionStatus {
        if now < self.start_at {
            SubscriptionStatus::Scheduled
        } else if now < self.end_at {
            SubscriptionStatus::Active
        } else {
            SubscriptionStatus::Expired
        }
    }

    pub fn validate(plan: &str, start_at: Timestamp, end_at: Timestamp) -> Result<Self, InputError> {
        let chars = plan.chars().count();
        if chars == 0 || chars > 64 || plan.chars().any(char::is_control) {
            return Err(InputError::invalid("plan", "must be 1 to 64 characters"));
        }
        if end_at <= start_at {
            return Err(InputError::invalid("end_at", "must be after start_at"));
        }
        Ok(Self { plan: plan.to_owned(), start_at, end_at })
    }
}

/// A user's quota settings (the `settings` item): time zone and subscription. Not the user's
/// profile (display name, language), which is about people, not limits.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaSettings {
    pub timezone: TimeZone,
    pub timezone_changed_at: Option<Timestamp>,
    pub subscription: Option<Subscription>,
    /// When the user confirmed being an adult (`POST /v1/me/confirm-adult`); it opens `nsfw`
    /// characters. Kept here because every append's gate reads it with the subscription.
    pub adult_confirmed_at: Option<Timestamp>,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self { timezone: TimeZone::utc(), timezone_changed_at: None, subscription: None, adult_confirmed_at: None }
    }
}

/// A time zone can change at most once per this long, so switching zones cannot open windows.
pub const TIMEZONE_CHANGE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl QuotaSettings {
    pub fn has_active_subscription(&self, now: Timestamp) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.status(now) == SubscriptionStatus::Active)
    }

    /// What the character gates ask, at `now`.
    pub fn entitlements(&self, now: Timestamp) -> super::Entitlements {
        super::Entitlements {
            active_subscription: self.has_active_subscription(now),
            adult_confirmed: self.adult_confirmed_at.is_some(),
        }
    }

    /// The daily allowance of `user` messages: `None` is unlimited.
    pub fn allowance(&self, now: Timestamp, daily_quota: u64) -> Option<u64> {
        (!self.has_active_subscription(now)).then_some(daily_quota)
    }
}

/// The daily message quota, one shape wherever it is reported — `GET /v1/limits`, a reply's
/// answer, a `429 daily_limit_exceeded`, the socket's refusals — and as `X-RateLimit-Limit`,
/// `-Remaining`, `-Reset`; -1 means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MessagesLimit {
    pub total: i64,
    pub used: u64,
    pub remaining: i64,
    pub resets_at: Timestamp,
}

impl MessagesLimit {
    pub fn new(allowance: Option<u64>, used: u64, window: &Window) -> Self {
        match allowance {
            None => Self { total: -1, used, remaining: -1, resets_at: window.resets_at },
            Some(total) => Self {
                total: total as i64,
                used,
                remaining: total.saturating_sub(used) as i64,
                resets_at: window.resets_at,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SubscriptionView {
    pub status: SubscriptionStatus,
    pub plan: String,
    pub start_at: Timestamp,
    pub end_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LimitsView {
    pub has_subscription: bool,
    pub timezone: String,
    pub messages_limit: MessagesLimit,
    pub subscription: Option<SubscriptionView>,
}

impl LimitsView {
    pub fn new(profile: &QuotaSettings, used: u64, now: Timestamp, daily_quota: u64) -> Self {
        let window = Window::containing(now, &profile.timezone);
        Self {
            has_subscription: profile.has_active_subscription(now),
            timezone: profile.timezone.name().to_owned(),
            messages_limit: MessagesLimit::new(profile.allowance(now, daily_quota), used, &window),
            subscription: profile.subscription.as_ref().map(|s| SubscriptionView {
                status: s.status(now),
                plan: s.plan.clone(),
                start_at: s.start_at,
                end_at: s.end_at,
            }),
        }
    }
}

/// Which per-minute rate limit a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Appends and reply turns, counted inside their own transaction (the meter).
    Append,
    Read,
    /// Regenerating a reply: a model call with no message of the user's to count.
    Regenerate,
    Other,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Read => "read",
            Self::Regenerate => "regenerate",
            Self::Other => "other",
        }
    }
}

/// Where a caller stands in a per-minute rate limit after a request (the `RateLimit` and
/// `RateLimit-Policy` headers say it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateState {
    pub class: RateClass,
    /// Requests allowed per minute.
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

/// Requests per user per minute; 0 disables a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub append: u32,
    pub read: u32,
    pub other: u32,
    pub regenerate: u32,
}

impl RateLimits {
    pub fn limit(self, class: RateClass) -> Option<u32> {
        let limit = match class {
            RateClass::Append => self.append,
            RateClass::Read => self.read,
            RateClass::Regenerate => self.regenerate,
            RateClass::Other => self.other,
        };
        (limit > 0).then_some(limit)
    }
}

/// USD per million input and output tokens, per model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelPrices(BTreeMap<String, (Decimal, Decimal)>);

#[derive(Debug, thiserror::Error)]
#[error("MODEL_PRICES must look like `gpt-4o-mini=0.15/0.60,claude-3-5-haiku=0.80/4` ({0})")]
pub struct PricesParseError(String);

impl FromStr for ModelPrices {
    type Err = PricesParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut prices = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (model, pair) = entry.split_once('=').ok_or_else(|| PricesParseError(entry.to_owned()))?;
            let (input, output) = pair.split_once('/').ok_or_else(|| PricesParseError(entry.to_owned()))?;
            let parse = |v: &str| Decimal::from_str(v.trim()).map_err(|_| PricesParseError(entry.to_owned()));
            prices.insert(model.trim().to_owned(), (parse(input)?, parse(output)?));
        }
        Ok(Self(prices))
    }
}

impl ModelPrices {
    /// A caller's reported usage as it is stored: priced now, at these prices.
    pub fn price(&self, usage: &super::Usage) -> super::MessageUsage {
        super::MessageUsage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            model: usage.model.clone(),
            cost_usd: Usd(self.cost(&usage.model, usage.input_tokens, usage.output_tokens)),
            estimated: false,
        }
    }

    /// Exact cost in USD; a model without a price costs 0.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Decimal {
        let million = Decimal::from(1_000_000);
        self.0.get(model).map_or(Decimal::ZERO, |(input, output)| {
            (Decimal::from(input_tokens) * input + Decimal::from(output_tokens) * output) / million
        })
    }
}

/// Money as exact decimal text (`"0.000450"`), never a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(pub Decimal);

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.normalize())
    }
}

impl JsonSchema for Usd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Usd".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
            "description": "US dollars as exact decimal text, e.g. \"0.00168\"."
        })
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.normalize().fmt(f)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UsageTotals {
    pub messages: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Usd,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DailyUsage {
    pub date: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ModelUsage {
    pub model: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// What the tokens were spent on: `replies` (generated replies; `messages` counts them) or
/// `memory` (memory extraction; `messages` counts its calls).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct KindUsage {
    pub kind: UsageKind,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UsageKind {
    Replies,
    Memory,
    /// A group chat's routing calls (orchestrated replies).
    Routing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UsageReport {
    /// Every kind together; `messages` counts the messages (replies and appended ones).
    pub totals: UsageTotals,
    pub daily: Vec<DailyUsage>,
    pub by_model: Vec<ModelUsage>,
    pub by_kind: Vec<KindUsage>,
}

/// One day of usage as the report reads it: a finished day carries the cost the job stamped on
/// it when it closed the day; the open day (still on the meter) has none yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDay {
    pub date: String,
    pub usage: super::DayUsage,
    pub closed_cost: Option<Decimal>,
}

impl super::DayUsage {
    /// What the day's tokens cost at `prices` (what the job stamps on a finished day).
    pub fn cost(&self, prices: &ModelPrices) -> Decimal {
        self.tokens().map(|(_, model, tokens)| prices.cost(model, tokens.input_tokens, tokens.output_tokens)).sum()
    }

    /// Every model's tokens of the day, by kind.
    fn tokens(&self) -> impl Iterator<Item = (UsageKind, &String, &super::ModelTokens)> {
        let replies = self.models.iter().map(|(model, tokens)| (UsageKind::Replies, model, tokens));
        let memory = self.memory.iter().map(|(model, tokens)| (UsageKind::Memory, model, tokens));
        let routing = self.routing.iter().map(|(model, tokens)| (UsageKind::Routing, model, tokens));
        replies.chain(memory).chain(routing)
    }
}

impl UsageReport {
    /// Totals, per day and per model, priced at `prices`. A finished day keeps the cost it was
    /// closed with, whatever the prices say today; the per-model view prices at today's.
    pub fn tally<'a>(days: impl IntoIterator<Item = &'a UsageDay>, prices: &ModelPrices) -> Self {
        let mut by_day: BTreeMap<String, UsageTotals> = BTreeMap::new();
        let mut by_model: BTreeMap<String, UsageTotals> = BTreeMap::new();
        let mut by_kind: BTreeMap<UsageKind, UsageTotals> = BTreeMap::new();
        for UsageDay { date, usage, closed_cost } in days {
            let day = by_day.entry(date.clone()).or_default();
            day.messages += usage.messages;
            let mut cost = Decimal::ZERO;
            for (kind, model, tokens) in usage.tokens() {
                let model_cost = prices.cost(model, tokens.input_tokens, tokens.output_tokens);
                cost += model_cost;
                day.input_tokens += tokens.input_tokens;
                day.output_tokens += tokens.output_tokens;
                // A model's `messages` are its replies; a kind's, its replies or its calls.
                let model_messages = if kind == UsageKind::Replies { tokens.messages } else { 0 };
                for (entry, messages) in [
                    (by_model.entry(model.clone()).or_default(), model_messages),
                    (by_kind.entry(kind).or_default(), tokens.messages),
                ] {
                    entry.messages += messages;
                    entry.input_tokens += tokens.input_tokens;
                    entry.output_tokens += tokens.output_tokens;
                    entry.cost_usd = Usd(entry.cost_usd.0 + model_cost);
                }
            }
            day.cost_usd = Usd(day.cost_usd.0 + closed_cost.unwrap_or(cost));
        }
        let mut totals = UsageTotals::default();
        let daily = by_day
            .into_iter()
            .map(|(date, day)| {
                totals.messages += day.messages;
                totals.input_tokens += day.input_tokens;
                totals.output_tokens += day.output_tokens;
                totals.cost_usd = Usd(totals.cost_usd.0 + day.cost_usd.0);
                DailyUsage { date, totals: day }
            })
            .collect();
        let by_model = by_model.into_iter().map(|(model, totals)| ModelUsage { model, totals }).collect();
        let by_kind = by_kind.into_iter().map(|(kind, totals)| KindUsage { kind, totals }).collect();
        Self { totals, daily, by_model, by_kind }
    }
}

/// A clock the tests move by hand.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: Timestamp) {
        if let Ok(mut now) = self.0.lock() {
            *now = at;
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now = now.plus(by);
        }
    }
}

impl super::Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0.lock().map(|now| *now).unwrap_or_else(|poisoned| *poisoned.into_inner())
    }
}

/// Quotas, rate limits and prices. Unlike table names these have documented defaults.
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// `user` messages per day without a subscription (`DAILY_MESSAGE_QUOTA`, default 50).
    pub daily_quota: u64,
    /// Requests per user per minute (`RATE_LIMIT_*_PER_MIN`, defaults 10 / 30 / 60; 0 disables).
    pub rate: RateLimits,
    /// USD per million tokens per model (`MODEL_PRICES`, default none).
    pub prices: ModelPrices,
    /// Days a deleted or hidden item (message, session, a left memory epoch) stays stored before
    /// DynamoDB's TTL removes it (`RETENTION_DAYS`, default 30).
    pub retention_days: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            daily_quota: 50,
            rate: RateLimits { append: 10, read: 30, other: 60, regenerate: 5 },
            prices: ModelPrices::default(),
            retention_days: 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|_| unreachable!("test timestamps are valid"))
    }

    #[test]
    fn a_finished_day_keeps_the_cost_it_was_closed_with() {
        let prices: ModelPrices = "m=1/2".parse().unwrap_or_default();
        let usage = |input, output| crate::DayUsage {
            messages: 2,
            models: [("m".to_owned(), crate::ModelTokens { input_tokens: input, output_tokens: output, messages: 1 })]
                .into(),
            ..crate::DayUsage::default()
        };
        let closed =
            UsageDay { date: "2026-01-01".into(), usage: usage(1_000_000, 0), closed_cost: Some(Decimal::from(7)) };
        let open = UsageDay { date: "2026-01-02".into(), usage: usage(0, 1_000_000), closed_cost: None };
        let report = UsageReport::tally([&closed, &open], &prices);
        assert_eq!(report.daily.iter().map(|day| day.totals.cost_usd.to_string()).collect::<Vec<_>>(), ["7", "2"]);
        assert_eq!(report.totals.cost_usd.to_string(), "9");
        assert_eq!(
            (report.totals.messages, report.totals.input_tokens, report.totals.output_tokens),
            (4, 1_000_000, 1_000_000)
        );
        // Per model, at today's prices: 1 for the input, 2 for the output.
        assert_eq!(report.by_model[0].totals.cost_usd.to_string(), "3");
        assert_eq!(usage(1_000_000, 1_000_000).cost(&prices), Decimal::from(3));
    }

    #[test]
    fn extraction_tokens_are_a_kind_of_their_own_priced_but_never_messages() {
        let prices: ModelPrices = "m=1/2".parse().unwrap_or_default();
        let mut usage = crate::DayUsage::of_reply("m", 1_000_000, 0);
        usage.add(&crate::DayUsage::of_extraction("m", 0, 1_000_000));
        usage.add(&crate::DayUsage::of_extraction("m", 0, 0));
        assert_eq!((usage.messages, usage.extraction_calls()), (1, 2));
        assert_eq!(usage.cost(&prices), Decimal::from(3), "the day's stamped cost includes extraction");
        let report = UsageReport::tally([&UsageDay { date: "2026-01-01".into(), usage, closed_cost: None }], &prices);
        assert_eq!((report.totals.messages, report.totals.cost_usd.to_string()), (1, "3".to_owned()));
        assert_eq!(report.by_model[0].totals.messages, 1, "a model's messages are its replies");
        let kinds: Vec<_> = report
            .by_kind
            .iter()
            .map(|kind| (kind.kind, kind.totals.messages, kind.totals.output_tokens, kind.totals.cost_usd.to_string()))
            .collect();
        assert_eq!(
            kinds,
            [(UsageKind::Replies, 1, 0, "1".to_owned()), (UsageKind::Memory, 2, 1_000_000, "2".to_owned())]
        );
    }

    #[test]
    fn windows_follow_local_midnight() {
        let now = at("2026-11-21T23:30:00.000000Z");
        let utc = Window::containing(now, &TimeZone::utc());
        assert_eq!((utc.day.as_str(), utc.resets_at.to_string()), ("2026-11-21", "2026-11-22T00:00:00.000000Z".into()));
        let tokyo = Window::containing(now, &TimeZone::parse("Asia/Tokyo").unwrap_or_else(|_| unreachable!()));
        assert_eq!(
            (tokyo.day.as_str(), tokyo.resets_at.to_string()),
            ("2026-11-22", "2026-11-22T15:00:00.000000Z".into())
        );
        let la = Window::containing(now, &TimeZone::parse("America/Los_Angeles").unwrap_or_else(|_| unreachable!()));
        assert_eq!((la.day.as_str(), la.resets_at.to_string()), ("2026-11-21", "2026-11-22T08:00:00.000000Z".into()));
        assert!(TimeZone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn a_utc_day_starts_at_midnight() {
        let start = utc_day_start("2026-11-21").map(|at| at.to_string());
        assert_eq!(start.as_deref(), Some("2026-11-21T00:00:00.000000Z"));
        for bad in ["2026-11-31", "2026-1-21", "2026-11-21T00:00:00Z", ""] {
            assert_eq!(utc_day_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_dst_day_is_23_hours_long() {
        // Europe/Lisbon springs forward on 2026-03-29: that local day has 23 hours.
        let lisbon = TimeZone::parse("Europe/Lisbon").unwrap_or_else(|_| unreachable!());
        let window = Window::containing(at("2026-03-29T00:30:00.000000Z"), &lisbon);
        assert_eq!(window.day, "2026-03-29");
        assert_eq!(window.resets_at.to_string(), "2026-03-29T23:00:00.000000Z");
    }

    #[test]
    fn costs_are_exact() {
        let prices: ModelPrices = "gpt-4o-mini=0.15/0.60, big=3/15".parse().unwrap_or_default();
        assert_eq!(Usd(prices.cost("gpt-4o-mini", 1_000, 500)).to_string(), "0.00045");
        assert_eq!(Usd(prices.cost("big", 1, 1)).to_string(), "0.000018");
        assert_eq!(prices.cost("unknown", 1_000_000, 0), Decimal::ZERO);
        assert!("nonsense".parse::<ModelPrices>().is_err());
    }
}
