//! Request bodies and query strings as callers send them, and their conversion into domain types.
//! Every write body rejects unknown fields.

pub mod characters;
pub mod limits;
pub mod me;
pub mod memories;
pub mod messages;
pub mod replies;
pub mod sessions;
