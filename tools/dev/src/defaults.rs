//! What the dev server turns on that a deployment configures: Telegram sign-in with the dev bot
//! token, and prices for the local model — each only when its variable is not set.

use secrecy::SecretString;
use shared::config::{Config, TelegramConfig};

/// How old dev init data may be: a day, as deployed by default.
const DEV_INIT_DATA_MAX_AGE_SECS: u64 = 86_400;

/// Fills in, over what the environment configured, Telegram sign-in (`TELEGRAM_BOT_TOKEN`:
/// [`kit::telegram::DEV_TELEGRAM_BOT_TOKEN`]) and the local model's prices (`MODEL_PRICES`:
/// [`kit::local_model::DEV_PRICES`]). Returns what it turned on, for the log.
pub fn apply(config: &mut Config) -> Vec<&'static str> {
    let mut applied = Vec::new();
    if config.auth.telegram.is_none() {
        config.auth.telegram = Some(TelegramConfig {
            bot_token: SecretString::from(kit::telegram::DEV_TELEGRAM_BOT_TOKEN),
            max_age_secs: DEV_INIT_DATA_MAX_AGE_SECS,
        });
        applied.push(
            "Telegram sign-in with the dev bot token (init data: cargo run -q -p kit --bin mint-init-data -- 42)",
        );
    }
    if std::env::var_os("MODEL_PRICES").is_none()
        && let Ok(prices) = kit::local_model::DEV_PRICES.parse()
    {
        config.limits.prices = prices;
        applied.push("dev prices for the local model (kit::local_model::DEV_PRICES)");
    }
    applied
}
