//! Local development and test support: the whole API as one router, tables created from
//! `template.yaml`, DynamoDB Local started on demand, and dev tokens.

pub mod dynamodb_local;
pub mod events;
pub mod hub;
pub mod local_model;
pub mod openapi;
pub mod streams;
pub mod tables;
pub mod template;
pub mod token;
pub mod web;
pub mod ws;

use std::sync::Arc;

use crate::hub::LocalHub;
use aide::axum::ApiRouter;
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use shared::AppState;
use shared::config::CorsOrigins;

/// Every function's routes, merged in this one place: the dev server and the tests serve them,
/// and the OpenAPI document is derived from them. In AWS each function serves its own group.
pub fn all_routes() -> ApiRouter<AppState> {
    sessions::api().merge(messages::api()).merge(memories::api()).merge(limits::api())
}

/// Every function's routes on one router: what `scripts/dev.sh` serves and the tests call.
/// The same `routes()` run one per Lambda in AWS, so local and deployed routes are identical.
/// Locally the API also serves its own description: `/openapi.json` and a `/docs` page.
pub fn app(state: AppState, cors: &CorsOrigins) -> Router {
    app_with_hub(state, cors, Arc::default())
}

/// The same, with the chat socket's connections in `hub` (`/v1/ws`, see `ws`).
pub fn app_with_hub(state: AppState, cors: &CorsOrigins, hub: Arc<LocalHub>) -> Router {
    dev_app(state, cors, hub, Router::new())
}

/// What the dev server serves: the API and the socket, and `extra` routes beside them (the web
/// app and the dev sign-in, see `web::router`) under the same request ids, CORS and JSON 404.
pub fn dev_app(state: AppState, cors: &CorsOrigins, hub: Arc<LocalHub>, extra: Router<AppState>) -> Router {
    let routes = Router::from(all_routes())
        .route("/openapi.json", get(|| async { axum::Json(openapi::document()) }))
        .route("/docs", get(|| async { Html(openapi::docs_page(&openapi::document())) }))
        .merge(extra);
    let socket = ws::router(state.clone(), hub);
    shared::http::cors(shared::http::app(routes, state).merge(socket), cors)
}
