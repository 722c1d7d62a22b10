//! Prints a dev JWT: `cargo run -p local --bin mint-token -- <user-id> [--ttl SECONDS] [--admin]`.
//! Signs with `JWT_SECRET` when set, else the local dev secret; adds `JWT_ISSUER`/`JWT_AUDIENCE`.

use std::process::ExitCode;

use kit::token::{DEV_JWT_SECRET, TokenRequest, mint};

const USAGE: &str = "usage: mint-token <user-id> [--ttl SECONDS] [--admin]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(sub) = args.first().filter(|arg| !arg.starts_with("--")) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut ttl_secs = 24 * 3600;
    let mut admin = false;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.as_slice().first()) {
            ("--ttl", Some(value)) => match value.parse() {
                Ok(seconds) => {
                    ttl_secs = seconds;
                    rest.next();
                }
                Err(_) => {
                    eprintln!("--ttl takes a number of seconds\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            ("--admin", _) => admin = true,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| DEV_JWT_SECRET.to_owned());
    let issuer = std::env::var("JWT_ISSUER").ok();
    let audience = std::env::var("JWT_AUDIENCE").ok();
    let request = TokenRequest { sub, ttl_secs, issuer: issuer.as_deref(), audience: audience.as_deref(), admin };
    match mint(secret.as_bytes(), &request) {
        Ok(token) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("could not sign the token: {error}");
            ExitCode::FAILURE
        }
    }
}
