//! The limits Lambda. Its API lands with its own issue; until then every route answers
//! 501 `not_implemented` (after authentication), so clients can see the route exists.

use axum::Router;
use axum::routing::any;
use shared::auth::Caller;
use shared::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/limits", any(not_implemented))
        .route("/v1/limits/profile", any(not_implemented))
        .route("/v1/usage", any(not_implemented))
        .route("/v1/admin/users/{user_id}/subscription", any(not_implemented))
        .route("/v1/admin/users/{user_id}/limits", any(not_implemented))
}

async fn not_implemented(_caller: Caller) -> ApiError {
    ApiError::NotImplemented("the limits API")
}
