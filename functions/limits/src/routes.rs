//! One small handler per endpoint: extract, call the store, respond.

use axum::Router;
use axum::extract::{DefaultBodyLimit, RawPathParams, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use shared::api::limits::{PutSubscription, UpdateProfile, UsageQuery};
use shared::auth::{Admin, Caller};
use shared::domain::{TimeZone, UserId};
use shared::http::{Json, Query};
use shared::{ApiError, AppState};

const BODY_LIMIT: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/limits", get(read))
        .route("/v1/limits/profile", patch(update_profile))
        .route("/v1/usage", get(usage))
        .route("/v1/admin/users/{user_id}/subscription", put(put_subscription).delete(delete_subscription))
        .route("/v1/admin/users/{user_id}/limits", get(admin_read))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn read(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(Json(state.store.limits_view(&caller.user_id).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn update_profile(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UpdateProfile>,
) -> Result<Response, ApiError> {
    let timezone = TimeZone::parse(&body.timezone)?;
    Ok(Json(state.store.set_timezone(&caller.user_id, timezone).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let (from, to) = query.range(state.store.now())?;
    Ok(Json(state.store.usage(&caller.user_id, &from, &to).await?).into_response())
}

/// The `{user_id}` an admin route acts on.
fn target_user(params: &RawPathParams) -> Result<UserId, ApiError> {
    let raw = params.iter().find(|(key, _)| *key == "user_id").map(|(_, value)| value).unwrap_or_default();
    UserId::parse(raw).ok_or_else(|| ApiError::invalid("user_id", "must be 1 to 128 characters"))
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn put_subscription(
    State(state): State<AppState>,
    Admin(admin): Admin,
    params: RawPathParams,
    Json(body): Json<PutSubscription>,
) -> Result<Response, ApiError> {
    let user = target_user(&params)?;
    let subscription = body.into_subscription()?;
    Ok(Json(state.store.put_subscription(&user, subscription).await?).into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn delete_subscription(
    State(state): State<AppState>,
    Admin(admin): Admin,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let user = target_user(&params)?;
    Ok(Json(state.store.delete_subscription(&user).await?).into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn admin_read(
    State(state): State<AppState>,
    Admin(admin): Admin,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let user = target_user(&params)?;
    Ok(Json(state.store.limits_view(&user).await?).into_response())
}
