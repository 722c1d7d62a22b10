//! Telegram Mini App sign-in: `Authorization: tma <initData>`, checked as Telegram documents it.
//!
//! The data-check string is every field but `hash`, as `key=value` (URL-decoded), sorted by key
//! and joined by `\n`; the key is `HMAC_SHA256("WebAppData", bot_token)`; the `hash` must equal
//! `hex(HMAC_SHA256(key, data_check_string))`. The Telegram user becomes the user id `tg:<id>`,
//! a namespace no JWT `sub` may use.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;

use crate::config::TelegramConfig;
use crate::domain::{TelegramAccount, Timestamp, UserId};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of user ids that come from Telegram.
pub const NAMESPACE: &str = "tg:";
/// `auth_date` may be this far in the future (clock skew).
const FUTURE_LEEWAY_SECS: i64 = 30;

#[derive(Deserialize)]
struct TelegramUser {
    id: i64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    language_code: Option<String>,
}

/// The user the init data signs in, with their account, or `None` when it does not verify.
pub fn verify(init_data: &str, config: &TelegramConfig, now: Timestamp) -> Option<(UserId, TelegramAccount)> {
    let mut fields: Vec<(String, String)> = form_urlencoded::parse(init_data.as_bytes()).into_owned().collect();
    let hash_at = fields.iter().position(|(key, _)| key == "hash")?;
    let hash = hex_decode(&fields.remove(hash_at).1)?;
    fields.sort();
    if fields.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return None; // a repeated field makes the signed meaning ambiguous
    }
    let check = fields.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join("\n");
    let mut secret = HmacSha256::new_from_slice(b"WebAppData").ok()?;
    secret.update(config.bot_token.expose_secret().as_bytes());
    let key = secret.finalize().into_bytes();
    let mut mac = HmacSha256::new_from_slice(&key).ok()?;
    mac.update(check.as_bytes());
    mac.verify_slice(&hash).ok()?;

    let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let auth_date: i64 = field("auth_date")?.parse().ok()?;
    let age = now.unix_seconds() - auth_date;
    if age > config.max_age_secs as i64 || age < -FUTURE_LEEWAY_SECS {
        return None;
    }
    let user: TelegramUser = serde_json::from_str(field("user")?).ok()?;
    let id = UserId::parse(&format!("{NAMESPACE}{}", user.id))?;
    let short = |text: Option<String>| text.filter(|text| text.chars().count() <= 256);
    let account = TelegramAccount {
        id: user.id,
        username: short(user.username),
        first_name: short(user.first_name),
        language_code: short(user.language_code),
    };
    Some((id, account))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}
