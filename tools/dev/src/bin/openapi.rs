//! Prints the OpenAPI document: `cargo run -p local --bin openapi > openapi.json`.

use std::io::Write as _;

fn main() -> std::io::Result<()> {
    let document = dev::openapi::document();
    let text = serde_json::to_string_pretty(&document).map_err(std::io::Error::other)?;
    writeln!(std::io::stdout(), "{text}")
}
