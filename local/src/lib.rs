//! Local development and test support: the whole API as one router, tables created from
//! `template.yaml`, DynamoDB Local started on demand, and dev tokens.

pub mod drift;
pub mod dynamodb_local;
pub mod tables;
pub mod template;
pub mod token;

use axum::Router;
use shared::AppState;

/// Every function's routes on one router: what `scripts/dev.sh` serves and the tests call.
/// The same `routes()` run one per Lambda in AWS, so local and deployed routes are identical.
pub fn app(state: AppState) -> Router {
    let routes = sessions::routes().merge(messages::routes()).merge(memories::routes()).merge(limits::routes());
    shared::http::app(routes, state)
}
