//! The limits Lambda: quotas, subscriptions, usage — and the hourly EventBridge job.

mod routes;
mod schedule;

pub use routes::routes;
pub use schedule::{handle_event, is_scheduled_event};
