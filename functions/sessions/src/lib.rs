//! The sessions Lambda: a user's conversations.

mod routes;

pub use routes::{api, routes};
