//! The meter's rules: what an append counts against the daily quota, the per-minute append rate
//! and the day's usage, and whether it may go ahead. Pure: the store keeps the meter in one item
//! and writes what `AppendLimits::charge` decides, compare-and-set on `version`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    CharacterId, MessagesLimit, NewMessage, QuotaSettings, RateClass, RateState, Role, Timestamp, Usage, Window,
    utc_day,
};

/// The most characters one user's day counts messages for (a transaction of the job adds them to
/// the characters with the day's other writes, and a transaction holds at most 100 items).
const MAX_DAY_CHARACTERS: usize = 90;

/// Tokens and messages of one model in one UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub messages: u64,
}

/// Adds `tokens` to `model`'s entry of a per-model map.
fn add_tokens(map: &mut BTreeMap<String, ModelTokens>, model: &str, tokens: &ModelTokens) {
    let entry = map.entry(model.to_owned()).or_default();
    entry.input_tokens += tokens.input_tokens;
    entry.output_tokens += tokens.output_tokens;
    entry.messages += tokens.messages;
}

/// One model call's (or reply's) tokens, as a per-model entry.
fn one_call(usage: &Usage) -> ModelTokens {
    ModelTokens { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, messages: 1 }
}

/// What one UTC day used: the metered messages (`user` messages and replies reporting usage),
/// tokens per model, and the `user` messages sent to each character (the job adds them to the
/// characters' counters once the day is over).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
    #[serde(default)]
    pub messages: u64,
    #[serde(default)]
    pub user_messages: u64,
    #[serde(default)]
    pub models: BTreeMap<String, ModelTokens>,
    /// Character id → `user` messages sent in chats with it; at most `MAX_DAY_CHARACTERS`
    /// characters (messages to more in one day are not counted for them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub characters: BTreeMap<String, u64>,
    /// Memory extraction's tokens per model (`messages`: its calls), a kind of their own: they
    /// cost what the model costs but never count as messages or against the quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub memory: BTreeMap<String, ModelTokens>,
    /// A group chat's routing calls' tokens per model (`messages`: its calls): like memory's, a
    /// kind of their own, never messages or quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, ModelTokens>,
}

impl DayUsage {
    /// Adds `other` to this day's usage.
    pub fn add(&mut self, other: &DayUsage) {
        self.messages += other.messages;
        self.user_messages += other.user_messages;
        let kinds =
            [(&mut self.models, &other.models), (&mut self.memory, &other.memory), (&mut self.routing, &other.routing)];
        for (mine, theirs) in kinds {
            for (model, tokens) in theirs {
                add_tokens(mine, model, tokens);
            }
        }
        for (character, messages) in &other.characters {
            if self.characters.len() < MAX_DAY_CHARACTERS || self.characters.contains_key(character) {
                *self.characters.entry(character.clone()).or_default() += messages;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.memory.is_empty() && self.routing.is_empty()
    }

    /// Memory extraction calls counted in this day.
    pub fn extraction_calls(&self) -> u64 {
        self.memory.values().map(|tokens| tokens.messages).sum()
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

    /// The meter once its finished day has moved out: the next version, holding no usage.
    pub fn without_usage(&self) -> Self {
        Self { version: self.version + 1, usage_day: String::new(), usage: DayUsage::default(), ..self.clone() }
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
    /// Whether it counts against the append rate: it carries a `user` message or starts a reply.
    pub rated: bool,
    pub now: Timestamp,
}

impl AppendLimits {
    pub fn new(
        settings: &QuotaSettings,
        now: Timestamp,
        daily_quota: u64,
        rate_limit: Option<u32>,
        messages: &[NewMessage],
        character: Option<&CharacterId>,
    ) -> Self {
        let mut usage = DayUsage::default();
        for message in messages {
            let user = message.role == Role::User;
            if user {
                usage.user_messages += 1;
            }
            if let Some(tokens) = &message.usage {
                add_tokens(&mut usage.models, &tokens.model, &one_call(tokens));
            }
            if user || message.usage.is_some() {
                usage.messages += 1;
            }
            if let Some(tokens) = &message.routing_usage {
                add_tokens(&mut usage.routing, &tokens.model, &one_call(tokens));
            }
        }
        if let Some(character) = character.filter(|_| usage.user_messages > 0) {
            usage.characters.insert(character.to_string(), usage.user_messages);
        }
        Self {
            window: Window::containing(now, &settings.timezone),
            allowance: settings.allowance(now, daily_quota),
            rate_limit,
            usage,
            rated: messages.iter().any(|message| message.role == Role::User || message.reply.is_some()),
            now,
        }
    }

    /// Whether this append's `user` messages count against a daily allowance.
    pub fn counts_quota(&self) -> bool {
        self.allowance.is_some() && self.usage.user_messages > 0
    }

    /// The quota as the `X-RateLimit-*` headers give it, after `used` units are consumed.
    pub fn quota_state(&self, used: u64) -> MessagesLimit {
        MessagesLimit::new(self.allowance, used, &self.window)
    }

    /// Where the caller stands in the append rate after this append wrote `written` (`None`: the
    /// append is not rated, or the rate is unlimited).
    pub fn rate_state(&self, written: Option<&Meter>) -> Option<RateState> {
        let limit = self.rate_limit.filter(|_| self.rated)?;
        let count = written.map_or(0, |meter| meter.rate_count);
        let reset_secs = self.now.seconds_to_next_minute();
        Some(RateState { class: RateClass::Append, limit, remaining: limit.saturating_sub(count), reset_secs })
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
        let rated = self.rated && self.rate_limit.is_some();
        let count = if meter.rate_minute == minute { meter.rate_count } else { 0 };
        if let Some(limit) = self.rate_limit.filter(|_| rated)
            && count >= limit
        {
            return Charge::RateLimited;
        }
        if self.usage.is_empty() && !rated {
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
        Charge::Write(Box::new(MeterWrite::adding(meter, next, self.now, &self.usage, &self.window.day)))
    }
}

impl MeterWrite {
    /// `next` (already counting what it counts) with `usage` added to the UTC day of `now`,
    /// closing the day the meter held if that day is over.
    fn adding(meter: &Meter, mut next: Meter, now: Timestamp, usage: &DayUsage, quota_day: &str) -> Self {
        let today = utc_day(now);
        let mut closed = None;
        if meter.usage_day != today {
            if !meter.usage.is_empty() {
                closed = Some((meter.usage_day.clone(), meter.usage.clone()));
            }
            next.usage_day = today;
            next.usage = DayUsage::default();
        }
        next.usage.add(usage);
        let used_after = next.used(quota_day);
        Self { before: meter.version, new_day: meter.usage_day != next.usage_day, next, closed, used_after }
    }

    /// What finishing a generated reply does to the meter: its `usage` lands in today's usage,
    /// and a reply that failed before any output gives back the quota unit its `user` message
    /// took in the quota window `refund` (not once that window is over: it counts a past day).
    pub fn settle(meter: &Meter, now: Timestamp, usage: &DayUsage, refund: Option<&str>) -> Option<Self> {
        let refunds = refund.is_some_and(|day| meter.quota_day == day && meter.quota_used > 0);
        if usage.is_empty() && !refunds {
            return None;
        }
        let mut next = meter.clone();
        next.version = meter.version + 1;
        if refunds {
            next.quota_used -= 1;
        }
        let quota_day = refund.unwrap_or(&meter.quota_day).to_owned();
        Some(Self::adding(meter, next, now, usage, &quota_day))
    }
}

impl DayUsage {
    /// One memory extraction call's tokens.
    pub fn of_extraction(model: &str, input_tokens: u64, output_tokens: u64) -> Self {
        let mut usage = Self::default();
        usage.memory.insert(model.to_owned(), ModelTokens { input_tokens, output_tokens, messages: 1 });
        usage
    }

    /// One generated reply's tokens.
    pub fn of_reply(model: &str, input_tokens: u64, output_tokens: u64) -> Self {
        let mut usage = Self { messages: 1, ..Self::default() };
        usage.models.insert(model.to_owned(), ModelTokens { input_tokens, output_tokens, messages: 1 });
        usage
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Content, MessageType, Usage};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|_| unreachable!())
    }

    fn message(role: Role, usage: Option<Usage>) -> NewMessage {
        NewMessage {
            role,
            message_type: MessageType::default(),
            content: Content::parse("hi".to_owned()).unwrap_or_else(|_| unreachable!()),
            payload: None,
            reply_to: None,
            usage,
            reply: None,
            agent: None,
            routing: None,
            routing_usage: None,
        }
    }

    fn limits(now: &str, quota: u64, rate: Option<u32>, messages: &[NewMessage]) -> AppendLimits {
        AppendLimits::new(&QuotaSettings::default(), at(now), quota, rate, messages, None)
    }

    fn written(charge: Charge) -> MeterWrite {
        match charge {
            Charge::Write(write) => *write,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn user_messages_count_against_the_quota_and_the_rate_until_refused() {
        let user = [message(Role::User, None)];
        let mut meter = Meter::default();
        for used in 0..3 {
            let write = written(limits("2426-11-21T10:00:00.000000Z", 3, Some(10), &user).charge(&meter));
            assert_eq!((write.before, write.next.version, write.used_after), (used, used + 1, used + 1));
            meter = write.next;
        }
        assert!(matches!(
            limits("2426-11-21T10:00:30.000000Z", 3, Some(10), &user).charge(&meter),
            Charge::OverQuota { allowance: 3, used: 3 }
        ));
        // The next local day starts fresh without anyone resetting the meter.
        let next_day = written(limits("2426-11-22T00:00:01.000000Z", 3, Some(10), &user).charge(&meter));
        assert_eq!(next_day.used_after, 1);
        // Two appends a minute: the third in the same minute is refused, the next minute is fresh.
        let mut meter = Meter::default();
        for _ in 0..2 {
            meter = written(limits("2426-11-21T10:00:05.000000Z", 100, Some(2), &user).charge(&meter)).next;
        }
        assert!(matches!(
            limits("2426-11-21T10:00:59.000000Z", 100, Some(2), &user).charge(&meter),
            Charge::RateLimited
        ));
        assert!(matches!(limits("2426-11-21T10:01:00.000000Z", 100, Some(2), &user).charge(&meter), Charge::Write(_)));
    }

    #[test]
    fn replies_are_free_unless_they_report_usage_and_never_rate_limited() {
        let meter = Meter {
            rate_minute: at("2426-11-21T10:00:00.000000Z").unix_seconds() / 60,
            rate_count: 2,
            ..Meter::default()
        };
        let plain = [message(Role::Assistant, None)];
        assert!(matches!(
            limits("2426-11-21T10:00:10.000000Z", 1, Some(2), &plain).charge(&meter),
            Charge::Free { used: 0 }
        ));
        let usage = Usage { input_tokens: 10, output_tokens: 5, model: "m".to_owned() };
        let reply = [message(Role::Assistant, Some(usage))];
        let write = written(limits("2426-11-21T10:00:10.000000Z", 1, Some(2), &reply).charge(&meter));
        assert_eq!(write.next.rate_count, 2, "a reply does not count against the rate");
        assert_eq!(write.next.usage.messages, 1);
        assert_eq!(write.next.usage.models["m"], ModelTokens { input_tokens: 10, output_tokens: 5, messages: 1 });
    }

    #[test]
    fn the_first_metered_append_of_a_utc_day_closes_the_previous_one() {
        let user = [message(Role::User, None)];
        let first = written(limits("2426-11-21T23:59:00.000000Z", 10, None, &user).charge(&Meter::default()));
        assert!(first.closed.is_none() && first.new_day);
        let same_day = written(limits("2426-11-21T23:59:30.000000Z", 10, None, &user).charge(&first.next));
        assert!(same_day.closed.is_none() && !same_day.new_day);
        assert_eq!(same_day.next.usage.messages, 2);
        let next = written(limits("2426-11-22T00:00:10.000000Z", 10, None, &user).charge(&same_day.next));
        let (day, usage) = next.closed.clone().unwrap_or_else(|| unreachable!());
        assert_eq!((day.as_str(), usage.messages), ("2426-11-21", 2));
        assert!(next.new_day);
        assert_eq!((next.next.usage_day.as_str(), next.next.usage.messages), ("2426-11-22", 1));
    }

    /// A finished reply adds its tokens; a reply that failed before output gives back its user
    /// message's quota unit, but only within the window that counted it.
    #[test]
    fn settling_a_reply_adds_usage_and_refunds_within_the_window() {
        let now: Timestamp = "2426-11-21T10:00:00.000000Z".parse().unwrap_or_else(|_| unreachable!());
        let meter = Meter { version: 4, quota_day: "2426-11-21".into(), quota_used: 3, ..Meter::default() };
        let usage = DayUsage::of_reply("m", 100, 20);
        let write = MeterWrite::settle(&meter, now, &usage, None).unwrap_or_else(|| unreachable!());
        assert_eq!((write.before, write.next.version, write.next.quota_used), (4, 5, 3));
        assert_eq!(write.next.usage.models["m"], ModelTokens { input_tokens: 100, output_tokens: 20, messages: 1 });
        let refund = MeterWrite::settle(&meter, now, &DayUsage::default(), Some("2426-11-21"));
        assert_eq!(refund.map(|write| (write.next.quota_used, write.used_after)), Some((2, 2)));
        assert!(MeterWrite::settle(&meter, now, &DayUsage::default(), Some("2426-11-20")).is_none(), "a past window");
        assert!(MeterWrite::settle(&meter, now, &DayUsage::default(), None).is_none(), "nothing to write");
    }
}
