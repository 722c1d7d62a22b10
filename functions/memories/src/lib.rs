//! The memories Lambda. Its API lands with its own issue; until then every route answers
//! 501 `not_implemented` (after authentication), so clients can see the route exists.

use axum::Router;
use axum::routing::any;
use shared::auth::Caller;
use shared::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/memories", any(not_implemented))
        .route("/v1/memories/{id}", any(not_implemented))
        .route("/v1/sessions/{id}/context", any(not_implemented))
}

async fn not_implemented(_caller: Caller) -> ApiError {
    ApiError::NotImplemented("the memories API")
}
