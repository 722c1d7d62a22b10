//! Everything the four Lambda functions share: domain types, storage, auth, config, errors and
//! the HTTP edge. See `STYLE` notes in the README for where each concern lives.

pub mod access;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod lambda;
pub mod openapi;
pub mod realtime;
pub mod state;
pub mod telegram;
pub mod telemetry;

pub use domain;
pub use error::ApiError;
pub use llm;
pub use service::{catalog, chat};
pub use state::AppState;
pub use store;
