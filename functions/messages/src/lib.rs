//! The messages Lambda: each session's ordered, idempotent, gapless log.

mod routes;

pub use routes::{api, routes};
