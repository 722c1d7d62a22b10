//! Idempotent appends: a caller-chosen key plus a fingerprint of what was asked.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{InputError, NewMessage};

/// A caller's `Idempotency-Key` (or `dedupe_key`): 1–128 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupeKey(String);

impl DedupeKey {
    pub const MAX_LEN: usize = 128;

    pub fn parse(field: &str, text: &str) -> Result<Self, InputError> {
        let ok = !text.is_empty() && text.len() <= Self::MAX_LEN && text.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(InputError::invalid(field, "must be 1 to 128 visible ASCII characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An append request that may be retried: its key and the SHA-256 of its canonical body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    pub key: DedupeKey,
    pub fingerprint: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    kind: &'a str,
    messages: Vec<CanonicalMessage<'a>>,
}

#[derive(Serialize)]
struct CanonicalMessage<'a> {
    role: &'a str,
    #[serde(rename = "type")]
    message_type: &'a str,
    content: &'a str,
    payload: Option<&'a serde_json::Map<String, serde_json::Value>>,
    reply_to: Option<u64>,
    usage: Option<&'a super::Usage>,
}

impl Idempotency {
    /// `kind` tells a single append from a batch, so one key cannot replay as the other.
    pub fn new(key: DedupeKey, kind: &str, messages: &[NewMessage]) -> Self {
        let canonical = Canonical {
            kind,
            messages: messages
                .iter()
                .map(|message| CanonicalMessage {
                    role: message.role.as_str(),
                    message_type: message.message_type.as_str(),
                    content: message.content.as_str(),
                    payload: message.payload.as_ref().map(|payload| payload.as_map()),
                    reply_to: message.reply_to.map(|seq| seq.get()),
                    usage: message.usage.as_ref(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let fingerprint = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self { key, fingerprint }
    }
}
