//! Prints Telegram Mini App init data the local server accepts:
//! `cargo run -q -p kit --bin mint-init-data -- <telegram-user-id> [--name NAME] [--username NAME] [--lang CODE]`.
//! Signs with `TELEGRAM_BOT_TOKEN` when set, else the dev bot token `scripts/dev.sh` enables.
//! Send it as `Authorization: tma <init data>`; the user is `tg:<telegram-user-id>`.

use std::process::ExitCode;

use kit::telegram::{DEV_TELEGRAM_BOT_TOKEN, TelegramUser, init_data};

const USAGE: &str = "usage: mint-init-data <telegram-user-id> [--name NAME] [--username NAME] [--lang CODE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(id) = args.first().and_then(|arg| arg.parse::<i64>().ok()).filter(|id| *id > 0) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (mut name, mut username, mut language) = ("Dev".to_owned(), None, None);
    let mut rest = args[1..].chunks(2);
    for pair in rest.by_ref() {
        match pair {
            [flag, value] if flag == "--name" => name = value.clone(),
            [flag, value] if flag == "--username" => username = Some(value.clone()),
            [flag, value] if flag == "--lang" => language = Some(value.clone()),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let bot_token = std::env::var("TELEGRAM_BOT_TOKEN").unwrap_or_else(|_| DEV_TELEGRAM_BOT_TOKEN.to_owned());
    let user =
        TelegramUser { id, first_name: &name, username: username.as_deref(), language_code: language.as_deref() };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", init_data(&user, &bot_token));
    }
    ExitCode::SUCCESS
}
