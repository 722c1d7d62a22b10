//! `service`: the product's rules over the store, the model port and the catalog — who may do
//! what to a log, how a character chat opens behind its gates, how a reply is produced,
//! checkpointed and ended. The edge (`shared`) parses a request into domain values, calls one
//! function here, and turns the answer into a response.
//!
//! Architecture invariant: this crate knows no HTTP, axum, Lambda event or JSON body shape, and
//! never reads the environment; it depends on `domain`, `store` and `llm` only. What it cannot
//! decide alone (the model, the clock, a socket's connections) arrives as a port it is handed.

mod answer;
pub mod catalog;
pub mod chat;
pub mod memory;
pub mod realtime;

/// Where the process runs, which decides whether work may go on after a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    /// AWS Lambda: an instance may be frozen the moment its handler returns, so a request
    /// finishes the work it starts (or hands it to an invocation of its own).
    Lambda,
    /// A long-lived process (the dev server, the tests): work may go on in a task of its own.
    #[default]
    Server,
}
