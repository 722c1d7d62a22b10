//! The dev server: the whole API as one router (`all_routes()`, which the tests and the OpenAPI
//! document use too), the socket with an in-memory hub, the web app and its dev sign-in, and the
//! DynamoDB Streams reader that feeds the fan-out. What it starts (DynamoDB Local, the model, the
//! tables) is `kit`'s.

pub mod defaults;
pub mod hub;
pub mod openapi;
pub mod streams;
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
