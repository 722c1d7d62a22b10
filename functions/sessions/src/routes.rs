//! One small handler per endpoint: extract, call the store, respond.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared::api::sessions::{
    CreateSession, GetSession, ListSessions, SessionListing, SessionWithMessages, UpdateSession,
};
use shared::auth::Caller;
use shared::domain::{NewSession, SessionChanges, SessionId};
use shared::http::{Json, PathParam, Query, no_content};
use shared::{ApiError, AppState};

/// Session bodies are small: settings ≤ 4 KiB, metadata ≤ 16 short pairs.
const BODY_LIMIT: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(create).get(list))
        .route("/v1/sessions/{id}", get(read).patch(update).delete(remove))
        .route("/v1/sessions/{id}/archive", post(archive))
        .route("/v1/sessions/{id}/unarchive", post(unarchive))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateSession>,
) -> Result<Response, ApiError> {
    let new = NewSession::try_from(body)?;
    let session = state.store.create_session(&caller.user_id, new).await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListSessions>,
) -> Result<Response, ApiError> {
    let listing = SessionListing::try_from(query)?;
    let page =
        state.store.list_sessions(&caller.user_id, &listing.filter, listing.limit, listing.cursor.as_ref()).await?;
    Ok(Json(page).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<GetSession>,
) -> Result<Response, ApiError> {
    match query.messages_wanted()? {
        None => Ok(Json(state.store.get_session(&caller.user_id, id).await?).into_response()),
        Some(count) => {
            let (session, messages) = state.store.session_with_latest(&caller.user_id, id, count).await?;
            Ok(Json(SessionWithMessages { session, messages }).into_response())
        }
    }
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(body): Json<UpdateSession>,
) -> Result<Response, ApiError> {
    let changes = SessionChanges::try_from(body)?;
    let session = state.store.update_session(&caller.user_id, id, changes).await?;
    Ok(Json(session).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn archive(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
) -> Result<Response, ApiError> {
    set_archived(&state, &caller, id, true).await
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn unarchive(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
) -> Result<Response, ApiError> {
    set_archived(&state, &caller, id, false).await
}

async fn set_archived(state: &AppState, caller: &Caller, id: SessionId, archived: bool) -> Result<Response, ApiError> {
    let changes = SessionChanges { archived: Some(archived), ..SessionChanges::default() };
    let session = state.store.update_session(&caller.user_id, id, changes).await?;
    Ok(Json(session).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
) -> Result<Response, ApiError> {
    state.store.delete_session(&caller.user_id, id).await?;
    Ok(no_content())
}
