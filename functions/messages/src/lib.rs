//! The messages Lambda: each session's ordered, idempotent, gapless log.

mod routes;
mod stream;

pub use routes::{api, routes};
