//! Logging: JSON lines in Lambda, compact text locally; `RUST_LOG` filters (default `info`).
//! Colour only on a terminal: a log file or a pipe gets plain text (and `NO_COLOR` turns it off).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    let installed = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder.json().flatten_event(true).without_time().with_ansi(false).try_init()
    } else {
        builder.compact().try_init()
    };
    // A second init (tests build many apps in one process) keeps the first subscriber.
    drop(installed);
}

/// Whether log lines carry ANSI colour codes (<https://no-color.org>).
fn colour(stdout_is_terminal: bool, no_color: bool) -> bool {
    stdout_is_terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, false));
        assert!(!colour(false, false), "a file or a pipe gets no escape codes");
        assert!(!colour(true, true));
    }
}
