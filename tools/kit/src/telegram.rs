//! Telegram Mini App init data for local sign-in: what Telegram hands a Mini App, signed with a
//! bot token the way Telegram signs it (HMAC-SHA256 keyed by HMAC("WebAppData", bot token)).
//! Written apart from `shared::telegram`'s check on purpose: the tests hold that check against
//! this independent signer, not against itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The bot token `scripts/dev.sh` enables Telegram sign-in with when `TELEGRAM_BOT_TOKEN` is not
/// set. It belongs to no bot; never deploy it.
pub const DEV_TELEGRAM_BOT_TOKEN: &str = "1000000001:local-dev-bot-token-not-for-production";

/// Init data's fields, `hash` aside, as a Mini App receives them; `fields` keep their order.
pub fn sign(fields: &[(&str, String)], bot_token: &str) -> String {
    let hash = signature(fields, bot_token).unwrap_or_default();
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        encoded.append_pair(key, value);
    }
    encoded.append_pair("hash", &hash);
    encoded.finish()
}

/// A Telegram user as init data describes them.
pub struct TelegramUser<'a> {
    pub id: i64,
    pub first_name: &'a str,
    pub username: Option<&'a str>,
    pub language_code: Option<&'a str>,
}

/// Init data for `user`, signed now by `bot_token`: what `Authorization: tma <init data>` carries.
pub fn init_data(user: &TelegramUser<'_>, bot_token: &str) -> String {
    let mut described = serde_json::json!({"id": user.id, "first_name": user.first_name});
    if let Some(username) = user.username {
        described["username"] = username.into();
    }
    if let Some(language) = user.language_code {
        described["language_code"] = language.into();
    }
    let auth_date = time::OffsetDateTime::now_utc().unix_timestamp();
    sign(&[("user", described.to_string()), ("auth_date", auth_date.to_string())], bot_token)
}

/// The `hash` of `fields`: HMAC-SHA256 of the sorted `key=value` lines, keyed by
/// HMAC-SHA256("WebAppData", bot token), in hex.
fn signature(fields: &[(&str, String)], bot_token: &str) -> Option<String> {
    let mut sorted = fields.to_vec();
    sorted.sort();
    let check = sorted.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join("\n");
    let secret = hmac(b"WebAppData", bot_token.as_bytes())?;
    Some(hmac(&secret, check.as_bytes())?.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// HMAC takes a key of any length: `None` never happens.
fn hmac(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().to_vec())
}
