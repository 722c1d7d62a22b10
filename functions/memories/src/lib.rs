//! The memories Lambda: long-term facts about the user, global or per session.

mod routes;

pub use routes::{api, routes};
