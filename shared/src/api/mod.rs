//! Request bodies and query strings as callers send them, and their conversion into domain types.
//! Every write body rejects unknown fields.

pub mod characters;
pub mod limits;
pub mod me;
pub mod memories;
pub mod messages;
pub mod replies;
pub mod sessions;

/// A field that may be sent as `null` (`Some(None)`: clear it) or left out (`None`, with
/// `#[serde(default)]`: leave it): `#[serde(default, deserialize_with = "nullable")]`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}
