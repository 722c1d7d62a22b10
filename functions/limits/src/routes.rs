//! One small handler per endpoint: extract, call the store, respond.

use aide::axum::ApiRouter;
use std::time::Duration;

use aide::axum::routing::{get_with, patch_with, post_with, put_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::access;
use shared::api::limits::{PutSubscription, UpdateProfile, UsageQuery};
use shared::api::me::{ConfirmAdult, ErasureResult, Export, ExportQuery, UpdateMe};
use shared::auth::{Admin, Caller};
use shared::domain::RateClass;
use shared::domain::{LimitsView, UsageReport};
use shared::domain::{Profile, ProfileChanges, TimeZone};
use shared::http::{Json, Query, UserIdParam};
use shared::openapi::Describe as _;
use shared::{ApiError, AppState};

const BODY_LIMIT: usize = 16 * 1024;

/// The limits routes, each with its annotation for the OpenAPI document.
pub fn api() -> ApiRouter<AppState> {
    let admin = "/v1/admin/users/{user_id}";
    ApiRouter::new()
        .api_route(
            "/v1/limits",
            get_with(read, |op| {
                op.about("getLimits", "The caller's quota, subscription and time zone")
                    .ok::<LimitsView>(200, "Current limits")
            }),
        )
        .api_route(
            "/v1/limits/profile",
            patch_with(update_profile, |op| {
                op.about("updateProfile", "Set the time zone the daily quota follows")
                    .body::<UpdateProfile>()
                    .ok::<LimitsView>(200, "Limits under the new time zone")
                    .errors(&[409, 413])
                    .deprecated("PATCH /v1/me {time_zone}")
            }),
        )
        .api_route(
            "/v1/usage",
            get_with(usage, |op| {
                op.about("getUsage", "Token and cost usage per day and model")
                    .query::<UsageQuery>()
                    .ok::<UsageReport>(200, "Usage in the range")
            }),
        )
        .api_route(
            &format!("{admin}/subscription"),
            put_with(put_subscription, |op| {
                op.about("putSubscription", "Grant a subscription (admin)")
                    .body::<PutSubscription>()
                    .ok::<LimitsView>(200, "The user's limits")
                    .errors(&[403, 413])
            })
            .delete_with(delete_subscription, |op| {
                op.about("deleteSubscription", "End a subscription (admin)")
                    .ok::<LimitsView>(200, "The user's limits")
                    .errors(&[403])
            }),
        )
        .api_route(
            &format!("{admin}/limits"),
            get_with(admin_read, |op| {
                op.about("getUserLimits", "A user's limits (admin)")
                    .ok::<LimitsView>(200, "The user's limits")
                    .errors(&[403])
            }),
        )
        .api_route(
            "/v1/me",
            get_with(me, |op| {
                op.about("getMe", "The caller's profile (created on first use)").ok::<Profile>(200, "The profile")
            })
            .patch_with(update_me, |op| {
                op.about("updateMe", "Set display name, gender, language or time zone")
                    .body::<UpdateMe>()
                    .ok::<Profile>(200, "The profile")
                    .errors(&[409, 413])
            })
            .delete_with(erase, |op| {
                op.about("eraseMe", "Erase every item of the caller, in every table")
                    .ok::<ErasureResult>(200, "Everything of the caller is erased")
                    .ok::<ErasureResult>(202, "Part erased, time ran out: call again to go on")
            }),
        )
        .api_route(
            "/v1/me/confirm-adult",
            post_with(confirm_adult, |op| {
                op.about("confirmAdult", "Confirm being 18 or older: opens nsfw characters")
                    .body::<ConfirmAdult>()
                    .ok::<Profile>(200, "The profile")
                    .errors(&[413])
            }),
        )
        .api_route(
            "/v1/me/export",
            get_with(export, |op| {
                op.about("exportMe", "The caller's data as JSON, page by page")
                    .query::<ExportQuery>()
                    .ok::<Export>(200, "One page of the export")
            }),
        )
        .route_layer(access::metered(RateClass::Other))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// How long one erasure call works before it answers 202 (the function has 15 s).
const ERASURE_BUDGET: Duration = Duration::from_secs(8);

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn erase(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let erasure = state.store.erase_user(&caller.user_id, ERASURE_BUDGET).await?;
    tracing::info!(complete = erasure.complete, messages = erasure.messages, "erasure pass done");
    let status = if erasure.complete { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(ErasureResult::from(erasure))).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let page = state.store.export_page(&caller.user_id, query.cursor()?.as_ref()).await?;
    let export = Export::new(caller.user_id.to_string(), state.clock.now(), page);
    Ok(Json(export).into_response())
}

pub fn routes() -> Router<AppState> {
    api().into()
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
    let mut response = Json(state.store.set_timezone(&caller.user_id, timezone).await?).into_response();
    let headers = response.headers_mut();
    headers.insert("deprecation", HeaderValue::from_static("true"));
    headers.insert(header::LINK, HeaderValue::from_static("</v1/me>; rel=\"successor-version\""));
    Ok(response)
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(Json(state.store.profile(&caller.user_id, caller.telegram.as_ref()).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UpdateMe>,
) -> Result<Response, ApiError> {
    let changes = ProfileChanges::try_from(body)?.signed_in_with(caller.telegram.as_ref());
    Ok(Json(state.store.change_profile(&caller.user_id, &changes, caller.telegram.as_ref()).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn confirm_adult(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ConfirmAdult>,
) -> Result<Response, ApiError> {
    let changes = ProfileChanges::try_from(body)?.signed_in_with(caller.telegram.as_ref());
    Ok(Json(state.store.change_profile(&caller.user_id, &changes, caller.telegram.as_ref()).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let (from, to) = query.range(state.clock.now())?;
    let days = state.store.usage_days(&caller.user_id, &from, &to).await?;
    Ok(Json(UsageReport::tally(&days, &state.store.limits_config().prices)).into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn put_subscription(
    State(state): State<AppState>,
    Admin(admin): Admin,
    UserIdParam(user): UserIdParam,
    Json(body): Json<PutSubscription>,
) -> Result<Response, ApiError> {
    let subscription = body.into_subscription()?;
    Ok(Json(state.store.put_subscription(&user, subscription).await?).into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn delete_subscription(
    State(state): State<AppState>,
    Admin(admin): Admin,
    UserIdParam(user): UserIdParam,
) -> Result<Response, ApiError> {
    Ok(Json(state.store.delete_subscription(&user).await?).into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn admin_read(
    State(state): State<AppState>,
    Admin(admin): Admin,
    UserIdParam(user): UserIdParam,
) -> Result<Response, ApiError> {
    Ok(Json(state.store.limits_view(&user).await?).into_response())
}
