//! The user: who the caller is to the characters they talk to — display name, gender, language,
//! time zone, 18+ confirmation, and the Telegram account they signed in with.

use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{InputError, Timestamp};

/// A display name: 1–64 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let name = text.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > 64 || name.chars().any(char::is_control) {
            return Err(InputError::invalid("display_name", "must be 1 to 64 characters, no control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the user wants to be addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
    NonBinary,
    Other,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Female => "female",
            Self::Male => "male",
            Self::NonBinary => "non_binary",
            Self::Other => "other",
        }
    }
}

impl FromStr for Gender {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "female" => Ok(Self::Female),
            "male" => Ok(Self::Male),
            "non_binary" => Ok(Self::NonBinary),
            "other" => Ok(Self::Other),
            _ => Err(InputError::invalid("gender", "must be one of female, male, non_binary, other")),
        }
    }
}

/// A BCP 47 language tag (`en`, `pt-BR`, `zh-Hant-TW`), well-formed per RFC 5646 and kept in its
/// canonical case (language lowercase, script title case, region uppercase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Language(String);

impl Language {
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let invalid = || InputError::invalid("language", "must be a BCP 47 language tag such as en, ru or pt-BR");
        if text.is_empty() || text.len() > 35 {
            return Err(invalid());
        }
        let tag = language_tags::LanguageTag::parse(text).map_err(|_| invalid())?;
        tag.validate().map_err(|_| invalid())?;
        // An ISO 639 language (2 or 3 letters): not a private-use, grandfathered or reserved tag.
        if !(2..=3).contains(&tag.primary_language().len()) {
            return Err(invalid());
        }
        Ok(Self(canonical_case(tag.as_str())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 5646 §2.1.1 case conventions: 4-letter subtags title case, 2-letter subtags after the
/// first uppercase, everything else lowercase (extensions and private use stay lowercase).
fn canonical_case(tag: &str) -> String {
    let mut parts = Vec::new();
    let mut singleton = false;
    for (index, part) in tag.split('-').enumerate() {
        let lower = part.to_ascii_lowercase();
        singleton |= index > 0 && part.len() == 1;
        let cased = if index == 0 || singleton {
            lower
        } else if part.len() == 2 {
            lower.to_ascii_uppercase()
        } else if part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic()) {
            let mut chars = lower.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        } else {
            lower
        };
        parts.push(cased);
    }
    parts.join("-")
}

/// The Telegram account the user signed in with, from the verified init data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TelegramAccount {
    pub id: i64,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub language_code: Option<String>,
}

/// The user's profile as `GET /v1/me` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Profile {
    pub id: String,
    pub display_name: Option<DisplayName>,
    pub gender: Option<Gender>,
    pub language: Option<Language>,
    /// The IANA time zone the daily quota follows.
    pub time_zone: String,
    /// Filled on first use when signed in through Telegram.
    pub telegram: Option<TelegramAccount>,
    pub is_adult_confirmed: bool,
    pub adult_confirmed_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A profile change: `Some(None)` clears a field, `None` leaves it.
#[derive(Clone, Debug, Default)]
pub struct ProfileChanges {
    pub display_name: Option<Option<DisplayName>>,
    pub gender: Option<Option<Gender>>,
    pub language: Option<Option<Language>>,
    pub time_zone: Option<super::TimeZone>,
    /// `POST /v1/me/confirm-adult`.
    pub confirm_adult: bool,
    /// The language to keep when the user has none yet (never replaces one they chose).
    pub language_default: Option<Language>,
}

impl ProfileChanges {
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.gender.is_none()
            && self.language.is_none()
            && self.time_zone.is_none()
            && !self.confirm_adult
    }

    /// The changes with what a sign-in through `telegram` fills: the account's language, when
    /// the user has not chosen one and does not choose one now.
    pub fn signed_in_with(mut self, telegram: Option<&TelegramAccount>) -> Self {
        if self.language.is_none() {
            self.language_default = telegram
                .and_then(|account| account.language_code.as_deref())
                .and_then(|code| Language::parse(code).ok());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_bcp47_in_canonical_case() {
        assert_eq!(Language::parse("en").unwrap_or_else(|_| unreachable!()).as_str(), "en");
        assert_eq!(Language::parse("PT-br").unwrap_or_else(|_| unreachable!()).as_str(), "pt-BR");
        assert_eq!(Language::parse("zh-hant-tw").unwrap_or_else(|_| unreachable!()).as_str(), "zh-Hant-TW");
        for bad in ["", "english", "en_US", "x-private", "12", "en--US"] {
            assert!(Language::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_telegram_sign_in_fills_the_language_only_when_none_is_chosen() {
        let account = |code: &str| TelegramAccount {
            id: 1,
            username: None,
            first_name: None,
            language_code: Some(code.to_owned()),
        };
        let filled = ProfileChanges::default().signed_in_with(Some(&account("pt-br")));
        assert_eq!(filled.language_default.map(|language| language.as_str().to_owned()).as_deref(), Some("pt-BR"));
        let chosen = ProfileChanges { language: Some(None), ..ProfileChanges::default() };
        assert!(chosen.signed_in_with(Some(&account("de"))).language_default.is_none());
        assert!(ProfileChanges::default().signed_in_with(Some(&account("not a tag"))).language_default.is_none());
        assert!(ProfileChanges::default().signed_in_with(None).language_default.is_none());
    }
}
