//! The limits Lambda: quotas, subscriptions, usage.

mod routes;

pub use routes::{api, routes};
