//! Characters: the catalog of AI personas (an ops bot's "agents" are the same resource) a chat is
//! opened with, and the rules of the catalog's listing and search. A listing is a pure function of
//! a snapshot of the catalog (`CatalogIndex`), so it costs no database call.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{InputError, Timestamp};

/// A character's id: a slug (`support-bot`, `luna`) chosen by the admin, or a generated UUID.
/// Lowercase ASCII letters, digits, `-` and `_`, 1–64 characters, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct CharacterId(String);

impl CharacterId {
    pub const MAX_LEN: usize = 64;

    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn parse(text: &str) -> Result<Self, InputError> {
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let ok = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text.chars().all(valid_char)
            && text.starts_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(InputError::invalid(
                "character_id",
                "must be 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CharacterId {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for CharacterId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|error| serde::de::Error::custom(error.to_string()))
    }
}

impl fmt::Display for CharacterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may chat with a character: everyone, or subscribers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessType {
    #[default]
    Free,
    Premium,
}

impl AccessType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Premium => "premium",
        }
    }
}

impl FromStr for AccessType {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "free" => Ok(Self::Free),
            "premium" => Ok(Self::Premium),
            _ => Err(InputError::invalid("access_type", "must be free or premium")),
        }
    }
}

/// Whether a character is for everyone (`sfw`) or for adults who confirmed their age (`nsfw`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContentRating {
    #[default]
    Sfw,
    Nsfw,
}

impl ContentRating {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sfw => "sfw",
            Self::Nsfw => "nsfw",
        }
    }
}

impl FromStr for ContentRating {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "sfw" => Ok(Self::Sfw),
            "nsfw" => Ok(Self::Nsfw),
            _ => Err(InputError::invalid("rating", "must be sfw or nsfw")),
        }
    }
}

/// A short lowercase label — a genre, a tag's name or category: 1–32 characters in any script,
/// trimmed and lowercased, no control characters and no `,` (lists of them are comma-separated).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(field: &str, text: &str) -> Result<Self, InputError> {
        let label = text.trim().to_lowercase();
        let chars = label.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || label.chars().any(|c| c.is_control() || c == ',') {
            return Err(InputError::invalid(field, "must be 1 to 32 characters, without ',' or control characters"));
        }
        Ok(Self(label))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag on a character, in a category (`personality`/`shy`, `theme`/`fantasy`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct Tag {
    pub category: Label,
    pub name: Label,
}

/// The model settings a character replies with; absent ones fall back to the deployment's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelSettings {
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// A character as stored and as admins see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Character {
    pub id: CharacterId,
    pub name: String,
    pub description: String,
    pub description_long: String,
    pub avatar_url: Option<String>,
    /// The first assistant message of a new chat with the character.
    pub greeting: String,
    pub access_type: AccessType,
    pub genre: Option<Label>,
    pub content_rating: ContentRating,
    pub tags: Vec<Tag>,
    pub system_prompt: String,
    pub model: ModelSettings,
    /// Tools the character's replies may call (beside the session's; a session's tool of the same
    /// name wins).
    pub tools: Vec<super::Tool>,
    pub is_active: bool,
    /// Messages users sent in chats with the character (aggregated daily by the job).
    pub messages_count: u64,
    /// Recent activity, decayed: see `popularity_at`.
    pub popularity: Popularity,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Why a caller may not open or continue a chat with a character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Unknown or deactivated.
    NotFound,
    PremiumRequired,
    AdultConfirmationRequired,
}

/// What a caller is entitled to, as the gates ask it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entitlements {
    pub active_subscription: bool,
    pub adult_confirmed: bool,
}

impl Character {
    /// Whether `entitlements` open a chat with this character (on create, append and reply alike).
    pub fn admits(&self, entitlements: Entitlements) -> Result<(), Gate> {
        if !self.is_active {
            return Err(Gate::NotFound);
        }
        if self.access_type == AccessType::Premium && !entitlements.active_subscription {
            return Err(Gate::PremiumRequired);
        }
        if self.content_rating == ContentRating::Nsfw && !entitlements.adult_confirmed {
            return Err(Gate::AdultConfirmationRequired);
        }
        Ok(())
    }
}

/// A character's popularity: its `user` messages, each day's weighing half as much every week.
/// Stored as the score at the start of the latest day counted (`day`); shown decayed to `now`.
/// (A sum that only grows, scaled by `2^(days / 7)`, would need no read before a write, but it
/// outgrows a DynamoDB number, at most 10^125, within eight years.)
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Popularity {
    pub score: f64,
    /// The start of the latest day counted; `None` before the first.
    pub day: Option<Timestamp>,
}

impl Popularity {
    const HALF_LIFE_DAYS: f64 = 7.0;

    /// How much a weight at `from` has left at `to` (1 when `to` is not later).
    fn decay(from: Timestamp, to: Timestamp) -> f64 {
        let days = (to.unix_seconds() - from.unix_seconds()).max(0) as f64 / 86_400.0;
        (-days / Self::HALF_LIFE_DAYS).exp2()
    }

    /// This popularity with `messages` sent on the day starting at `day_start` added (days may
    /// come in any order: the score stays at the latest).
    pub fn adding(self, messages: u64, day_start: Timestamp) -> Self {
        let messages = messages as f64;
        match self.day {
            Some(day) if day >= day_start => {
                Self { score: self.score + messages * Self::decay(day_start, day), day: Some(day) }
            }
            Some(day) => Self { score: self.score * Self::decay(day, day_start) + messages, day: Some(day_start) },
            None => Self { score: messages, day: Some(day_start) },
        }
    }

    /// The decayed score at `now`, rounded to two decimals.
    pub fn score_at(self, now: Timestamp) -> f64 {
        match self.day {
            Some(day) => (self.score * Self::decay(day, now) * 100.0).round() / 100.0,
            None => 0.0,
        }
    }
}

/// Text folded for search: compatibility-decomposed, combining marks removed, lowercased, so that
/// `Café`, `CAFE` and `café` match alike, as do `Ёж` and `еж`; scripts without case (CJK) match
/// as written.
pub fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// How a listing is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatalogSort {
    /// Highest popularity first.
    #[default]
    Popular,
    /// Newest first.
    New,
    /// Popularity damped by age (`score / (1 + age in days / 30)`): good new characters rise.
    Recommended,
}

/// Which characters a listing returns. Every given filter must hold; `tags` must all be on the
/// character (matched by name, in any category).
#[derive(Clone, Debug, Default)]
pub struct CatalogFilter {
    pub genre: Option<Label>,
    pub rating: Option<ContentRating>,
    pub access_type: Option<AccessType>,
    pub tags: Vec<Label>,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct CatalogPage<T> {
    pub data: Vec<T>,
    pub total: usize,
}

/// A character prepared for listing.
struct Entry {
    character: Arc<Character>,
    popularity: f64,
}

/// The active characters' search text, folded once when the snapshot is built, in one buffer in
/// popularity order: each character's folded name, descriptions and tag names (separated by
/// newlines), then a NUL. A search is one SIMD substring scan over contiguous memory — not a scan
/// per character — that jumps to the next character at each hit.
#[derive(Default)]
struct SearchText {
    text: String,
    /// Where each popularity rank's text starts, and how long its name is.
    starts: Vec<usize>,
    name_lengths: Vec<usize>,
}

impl SearchText {
    fn push(&mut self, character: &Character) {
        let mut own = fold(&character.name);
        let name_length = own.len();
        for text in [&character.description, &character.description_long] {
            own.push('\n');
            own.push_str(&fold(text));
        }
        for tag in &character.tags {
            own.push('\n');
            own.push_str(&fold(tag.name.as_str()));
        }
        self.starts.push(self.text.len());
        self.name_lengths.push(name_length);
        // A NUL ends each character's text, so none may be in it (one in a name is a space here;
        // a search for one finds nothing).
        self.text.push_str(&own.replace('\0', " "));
        self.text.push('\0');
    }

    /// `(tier, rank)` of every character whose text contains `needle`: tier 0 when its name starts
    /// with it, 1 when its name holds it, 2 when only the rest does.
    fn hits(&self, needle: &str) -> Vec<(u8, usize)> {
        if needle.contains('\0') {
            return Vec::new();
        }
        if needle.is_empty() {
            return (0..self.starts.len()).map(|rank| (0, rank)).collect();
        }
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let text = self.text.as_bytes();
        let mut hits = Vec::new();
        let mut from = 0;
        while let Some(found) = finder.find(&text[from..]) {
            let at = from + found;
            // The rank whose text holds `at`; its first hit is its best tier (the name comes first).
            let rank = self.starts.partition_point(|&start| start <= at) - 1;
            let start = self.starts[rank];
            let in_name = at + needle.len() <= start + self.name_lengths[rank];
            let tier = match (in_name, at == start) {
                (true, true) => 0,
                (true, false) => 1,
                (false, _) => 2,
            };
            hits.push((tier, rank));
            from = self.starts.get(rank + 1).copied().unwrap_or(text.len());
        }
        hits
    }
}

/// A tag with the number of active characters carrying it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct TagCount {
    pub category: Label,
    pub name: Label,
    pub usage_count: u64,
}

/// The active catalog, indexed for listing and search: built once per snapshot, read by every
/// request without a database call. Inactive characters are kept for lookups by id only.
pub struct CatalogIndex {
    entries: Vec<Entry>,
    by_id: BTreeMap<CharacterId, usize>,
    /// Active entries in each order.
    popular: Vec<usize>,
    /// The active entries' search text, by rank in `popular`.
    search_text: SearchText,
    new: Vec<usize>,
    recommended: Vec<usize>,
    /// Tags of active characters, most used first.
    tags: Vec<TagCount>,
}

impl CatalogIndex {
    pub fn build(characters: Vec<Arc<Character>>, now: Timestamp) -> Self {
        let entries: Vec<Entry> = characters
            .into_iter()
            .map(|character| Entry { popularity: character.popularity.score_at(now), character })
            .collect();
        let by_id = entries.iter().enumerate().map(|(at, entry)| (entry.character.id.clone(), at)).collect();
        let active: Vec<usize> = (0..entries.len()).filter(|&at| entries[at].character.is_active).collect();
        let by = |key: &dyn Fn(&Entry) -> f64| {
            let mut order = active.clone();
            order.sort_by(|&a, &b| {
                let (a, b) = (&entries[a], &entries[b]);
                key(b).partial_cmp(&key(a)).unwrap_or(Ordering::Equal).then_with(|| a.character.id.cmp(&b.character.id))
            });
            order
        };
        let popular = by(&|entry| entry.popularity);
        let new = by(&|entry| entry.character.created_at.datetime().unix_timestamp_nanos() as f64);
        let recommended = by(&|entry| {
            let age_days = (now.unix_seconds() - entry.character.created_at.unix_seconds()).max(0) as f64 / 86_400.0;
            (entry.popularity + 1.0) / (1.0 + age_days / 30.0)
        });
        let mut counts: BTreeMap<&Tag, u64> = BTreeMap::new();
        for &at in &active {
            for tag in &entries[at].character.tags {
                *counts.entry(tag).or_default() += 1;
            }
        }
        let mut tags: Vec<TagCount> = counts
            .into_iter()
            .map(|(tag, usage_count)| TagCount { category: tag.category.clone(), name: tag.name.clone(), usage_count })
            .collect();
        tags.sort_by(|a, b| {
            b.usage_count.cmp(&a.usage_count).then_with(|| (&a.category, &a.name).cmp(&(&b.category, &b.name)))
        });
        let mut search_text = SearchText::default();
        for &at in &popular {
            search_text.push(&entries[at].character);
        }
        Self { entries, by_id, popular, search_text, new, recommended, tags }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The character with this id, active or not.
    pub fn get(&self, id: &CharacterId) -> Option<&Arc<Character>> {
        self.by_id.get(id).map(|&at| &self.entries[at].character)
    }

    /// Every character, active or not.
    pub fn characters(&self) -> impl Iterator<Item = &Arc<Character>> {
        self.entries.iter().map(|entry| &entry.character)
    }

    /// The active characters the filter admits, in `sort` order, `limit` from `offset`.
    pub fn list(
        &self,
        filter: &CatalogFilter,
        sort: CatalogSort,
        offset: usize,
        limit: usize,
    ) -> CatalogPage<&Character> {
        let order = match sort {
            CatalogSort::Popular => &self.popular,
            CatalogSort::New => &self.new,
            CatalogSort::Recommended => &self.recommended,
        };
        let matching =
            order.iter().map(|&at| self.entries[at].character.as_ref()).filter(|character| admitted(character, filter));
        page(matching, offset, limit)
    }

    /// Active characters whose name, descriptions or tags contain `query` (folded): names that
    /// start with it first, then other name matches, then the rest; popularity within each.
    pub fn search(&self, query: &str, offset: usize, limit: usize) -> CatalogPage<&Character> {
        let mut hits = self.search_text.hits(&fold(query.trim()));
        hits.sort_unstable();
        let matching = hits.into_iter().map(|(_, rank)| self.entries[self.popular[rank]].character.as_ref());
        page(matching, offset, limit)
    }

    /// Tags of active characters, most used first; only `category`'s when given.
    pub fn tags(&self, category: Option<&Label>) -> Vec<TagCount> {
        self.tags.iter().filter(|tag| category.is_none_or(|category| &tag.category == category)).cloned().collect()
    }
}

fn admitted(character: &Character, filter: &CatalogFilter) -> bool {
    filter.genre.as_ref().is_none_or(|genre| character.genre.as_ref() == Some(genre))
        && filter.rating.is_none_or(|rating| character.content_rating == rating)
        && filter.access_type.is_none_or(|access| character.access_type == access)
        && filter.tags.iter().all(|wanted| character.tags.iter().any(|tag| &tag.name == wanted))
}

fn page<'a>(matching: impl Iterator<Item = &'a Character>, offset: usize, limit: usize) -> CatalogPage<&'a Character> {
    let mut total = 0;
    let mut data = Vec::with_capacity(limit);
    for character in matching {
        if total >= offset && data.len() < limit {
            data.push(character);
        }
        total += 1;
    }
    CatalogPage { data, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_ranks_name_starts_then_names_then_the_rest_by_popularity() {
        let now = Timestamp::from_unix_seconds(1_767_225_600).unwrap_or_else(|| unreachable!());
        let character = |id: &str, name: &str, description: &str, score: f64| {
            Arc::new(Character {
                id: CharacterId::parse(id).unwrap_or_else(|_| unreachable!()),
                name: name.to_owned(),
                description: description.to_owned(),
                description_long: String::new(),
                avatar_url: None,
                greeting: String::new(),
                access_type: AccessType::Free,
                genre: None,
                content_rating: ContentRating::Sfw,
                tags: Vec::new(),
                system_prompt: String::new(),
                model: ModelSettings::default(),
                tools: Vec::new(),
                is_active: true,
                messages_count: 0,
                popularity: Popularity { score, day: Some(now) },
                created_at: now,
                updated_at: now,
            })
        };
        let index = CatalogIndex::build(
            vec![
                character("a", "Ёлка", "a tree", 1.0),
                character("b", "Old Ёлка", "", 5.0),
                character("c", "Tree", "a ёлка of glass\0", 9.0),
                character("d", "Елка Prime", "", 0.5),
                character("e", "Nothing", "", 7.0),
            ],
            now,
        );
        let ids = |query: &str| -> Vec<String> {
            index.search(query, 0, 10).data.iter().map(|character| character.id.to_string()).collect()
        };
        assert_eq!(ids("елка"), ["a", "d", "b", "c"], "name starts, name holds, then the rest; popular first");
        assert_eq!(ids("ЕЛКА OF"), ["c"]);
        assert_eq!(ids("zzzz"), Vec::<String>::new());
        assert_eq!(ids("glass\0"), Vec::<String>::new(), "a NUL matches nothing");
        assert_eq!(index.search("", 0, 2).total, 5);
    }

    #[test]
    fn folds_case_accents_and_scripts() {
        assert_eq!(fold("Café CRÈME"), "cafe creme");
        assert_eq!(fold("Ёжик"), "ежик");
        assert_eq!(fold("Ｌｕｎａ"), "luna");
        assert_eq!(fold("月の魔女"), "月の魔女");
    }

    #[test]
    fn ids_are_slugs() {
        assert!(CharacterId::parse("support-bot_2").is_ok());
        for bad in ["", "-x", "Luna", "a b", "é", &"x".repeat(65)] {
            assert!(CharacterId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn popularity_halves_each_week() {
        let day =
            |days: i64| Timestamp::from_unix_seconds(1_767_225_600 + days * 86_400).unwrap_or_else(|| unreachable!());
        let first = Popularity::default().adding(100, day(100));
        assert_eq!(Popularity::default().score_at(day(100)), 0.0);
        assert_eq!(first.score_at(day(100)), 100.0);
        assert_eq!(first.score_at(day(107)), 50.0);
        assert_eq!(first.score_at(day(121)), 12.5);
        // A later day decays what came before; an earlier one arriving late adds its decayed weight.
        let later = first.adding(50, day(107));
        assert_eq!((later.score_at(day(107)), later.day), (100.0, Some(day(107))));
        let late = later.adding(100, day(100));
        assert_eq!((late.score_at(day(107)), late.day), (150.0, Some(day(107))));
        // Centuries on, it stays a number.
        let far = Popularity::default().adding(1, day(0)).adding(1, day(365 * 400));
        assert_eq!(far.score_at(day(365 * 400)), 1.0);
    }
}
