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

/// Every binary built on this crate (the functions, the dev server, the benchmark, the tests)
/// allocates with mimalloc: a request maps and serializes many small values, and glibc's
/// allocator spent its time consolidating free lists (`malloc_consolidate` was the top symbol of a
/// profile of the handlers; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use domain;
pub use error::ApiError;
pub use llm;
pub use service::{catalog, chat, memory};
pub use state::AppState;
pub use store;
