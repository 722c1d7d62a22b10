//! The caller: the profile (`GET`/`PATCH /v1/me`, `POST /v1/me/confirm-adult`), and their data as
//! a whole: export (`GET /v1/me/export`) and erasure (`DELETE /v1/me`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nullable;

use crate::domain::{
    Cursor, DisplayName, Gender, InputError, Language, LimitsView, Memory, Message, ProfileChanges, Session, TimeZone,
    Timestamp, UsageReport,
};

/// `PATCH /v1/me`: fields present are set, `null` clears one (not `time_zone`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<String>", length(min = 1, max = 64))]
    pub display_name: Option<Option<String>>,
    /// One of female, male, non_binary, other.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Gender>")]
    pub gender: Option<Option<Gender>>,
    /// A BCP 47 tag (`en`, `ru`, `pt-BR`): the language characters answer in.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<String>", length(min = 2, max = 35))]
    pub language: Option<Option<String>>,
    /// An IANA time zone: the daily quota's midnight. Changes once per 24 hours.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
}

impl TryFrom<UpdateMe> for ProfileChanges {
    type Error = InputError;

    fn try_from(body: UpdateMe) -> Result<Self, InputError> {
        let changes = Self {
            display_name: body
                .display_name
                .map(|name| name.as_deref().map(DisplayName::parse).transpose())
                .transpose()?,
            gender: body.gender,
            language: body.language.map(|tag| tag.as_deref().map(Language::parse).transpose()).transpose()?,
            time_zone: body.time_zone.as_deref().map(TimeZone::parse).transpose()?,
            confirm_adult: false,
            language_default: None,
        };
        if changes.is_empty() {
            return Err(InputError::invalid("body", "set at least one of display_name, gender, language, time_zone"));
        }
        Ok(changes)
    }
}

/// `POST /v1/me/confirm-adult`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmAdult {
    /// Must be `true`: the caller confirms being 18 or older.
    pub confirmed: bool,
}

impl TryFrom<ConfirmAdult> for ProfileChanges {
    type Error = InputError;

    fn try_from(body: ConfirmAdult) -> Result<Self, InputError> {
        if !body.confirmed {
            return Err(InputError::invalid("confirmed", "must be true"));
        }
        Ok(Self { confirm_adult: true, ..Self::default() })
    }
}
use crate::store::{Erasure, ExportPage};

/// `GET /v1/me/export?cursor=`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `next_cursor` of the previous page; absent for the first.
    pub cursor: Option<String>,
}

impl ExportQuery {
    pub fn cursor(&self) -> Result<Option<Cursor>, InputError> {
        self.cursor.as_deref().map(Cursor::parse).transpose()
    }
}

/// One page of the caller's data. The first page holds the sessions (active and archived), the
/// memories, the limits and the last year of usage; each later page up to 200 messages of one
/// session, in order. Concatenate the arrays of all pages; stop when `next_cursor` is null.
/// Deleted and hidden items are not part of it: they are no longer the caller's conversation, and
/// expire after the retention period.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Export {
    pub user_id: String,
    pub exported_at: Timestamp,
    pub sessions: Vec<Session>,
    pub messages: Vec<Message>,
    pub memories: Vec<Memory>,
    /// On the first page only.
    pub limits: Option<LimitsView>,
    /// On the first page only.
    pub usage: Option<UsageReport>,
    pub next_cursor: Option<Cursor>,
}

impl Export {
    pub fn new(user_id: String, exported_at: Timestamp, page: ExportPage) -> Self {
        Self {
            user_id,
            exported_at,
            sessions: page.sessions,
            messages: page.messages,
            memories: page.memories,
            limits: page.limits,
            usage: page.usage,
            next_cursor: page.next,
        }
    }
}

/// What one `DELETE /v1/me` erased. `complete: false` (status 202): time ran out first; call
/// again, and the next call goes on where this one stopped.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErasureResult {
    pub complete: bool,
    pub erased: ErasedCounts,
}

/// Items erased by this call, by kind.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErasedCounts {
    /// Sessions, deleted ones included.
    pub sessions: u64,
    /// Messages, hidden and deleted ones and reply variants included.
    pub messages: u64,
    pub idempotency_records: u64,
    /// Memories with their bookkeeping items (dedupe markers, counters).
    pub memories: u64,
    /// Settings, meter, rate counters, usage days and job listings.
    pub limits: u64,
}

impl From<Erasure> for ErasureResult {
    fn from(erasure: Erasure) -> Self {
        Self {
            complete: erasure.complete,
            erased: ErasedCounts {
                sessions: erasure.sessions,
                messages: erasure.messages,
                idempotency_records: erasure.idempotency_records,
                memories: erasure.memories,
                limits: erasure.limits,
            },
        }
    }
}
