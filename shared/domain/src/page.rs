//! Paging: bounded limits and opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::InputError;

/// A page size checked against an inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub fn new(field: &str, value: Option<u32>, default: u32, max: u32) -> Result<Self, InputError> {
        match value.unwrap_or(default) {
            n if (1..=max).contains(&n) => Ok(Self(n)),
            _ => Err(InputError::invalid(field, format!("must be between 1 and {max}"))),
        }
    }

    /// A limit fixed by the code itself (clamped to at least 1).
    pub const fn fixed(value: u32) -> Self {
        Self(if value == 0 { 1 } else { value })
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// An opaque position in a listing: base64url of a small JSON value only the store reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub fn encode<T: Serialize>(position: &T) -> Self {
        let json = serde_json::to_vec(position).unwrap_or_default();
        Self(URL_SAFE_NO_PAD.encode(json))
    }

    pub fn parse(text: &str) -> Result<Self, InputError> {
        let invalid = || InputError::invalid("cursor", "is not a cursor this API returned");
        if text.is_empty() || text.len() > 1024 {
            return Err(invalid());
        }
        URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        Ok(Self(text.to_owned()))
    }

    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, InputError> {
        URL_SAFE_NO_PAD
            .decode(&self.0)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| InputError::invalid("cursor", "is not a cursor this API returned"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl JsonSchema for Cursor {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cursor".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Opaque: pass it back as `cursor` to get the next page."
        })
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<Cursor>,
}
