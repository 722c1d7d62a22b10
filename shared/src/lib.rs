//! `shared`: the HTTP edge every function is built from — credentials into a `Caller` (`auth`),
//! the access layer routes are registered under (authentication and rate limits, `access`),
//! request bodies and paths into domain values (`http`, `api`), the one error type and its one
//! mapping to a status and JSON (`error`), the OpenAPI vocabulary (`openapi`), typed
//! configuration read once at start (`config`), the state handlers share (`state`), the chat
//! socket's transport-independent half (`realtime`) and the Lambda entry points (`lambda`).
//!
//! Architecture invariant: this is the only crate that knows HTTP, axum, API Gateway and JSON
//! bodies; it decides no product rule (those are `service`'s and `domain`'s) and names no
//! DynamoDB attribute (those are `store`'s). The layers below are re-exported (`shared::domain`,
//! `shared::store`, …) so a function depends on this one crate.

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
pub use service::{catalog, chat, memory};
pub use state::AppState;
pub use store;
