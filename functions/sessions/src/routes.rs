//! One small handler per endpoint: extract, call the service, respond.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::api::sessions::{
    CreateSession, GetSession, ListSessions, SessionListing, SessionWithMessages, UpdateSession,
};
use shared::auth::Caller;
use shared::domain::{NewSession, SessionChanges, SessionId};
use shared::domain::{Page, Session};
use shared::http::{Json, PathParam, Query, no_content};
use shared::openapi::Describe as _;
use shared::{ApiError, AppState};

/// Session bodies are small: settings ≤ 4 KiB, metadata ≤ 16 short pairs.
const BODY_LIMIT: usize = 64 * 1024;

/// The sessions routes, each with its annotation for the OpenAPI document.
pub fn api() -> ApiRouter<AppState> {
    let session = "/v1/sessions/{id}";
    ApiRouter::new()
        .api_route(
            "/v1/sessions",
            post_with(create, |op| {
                op.about("createSession", "Create a session")
                    .body::<CreateSession>()
                    .ok::<Session>(201, "The new session")
                    .errors(&[413])
            })
            .get_with(list, |op| {
                op.about("listSessions", "List sessions, newest activity first")
                    .query::<ListSessions>()
                    .ok::<Page<Session>>(200, "One page of sessions")
            }),
        )
        .api_route(
            session,
            get_with(read, |op| {
                op.about("getSession", "Get a session, optionally with its latest messages")
                    .query::<GetSession>()
                    .ok_any::<Session, SessionWithMessages>(200, "The session (with `messages` when asked)")
            })
            .patch_with(update, |op| {
                op.about("updateSession", "Rename, change status, metadata, settings or archive")
                    .body::<UpdateSession>()
                    .ok::<Session>(200, "The updated session")
                    .errors(&[409, 413])
            })
            .delete_with(remove, |op| op.about("deleteSession", "Soft-delete a session").empty(204, "Deleted")),
        )
        .api_route(
            "/v1/sessions/{id}/archive",
            post_with(archive, |op| {
                op.about("archiveSession", "Archive a session").ok::<Session>(200, "The archived session")
            }),
        )
        .api_route(
            "/v1/sessions/{id}/unarchive",
            post_with(unarchive, |op| {
                op.about("unarchiveSession", "Unarchive a session").ok::<Session>(200, "The session")
            }),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

pub fn routes() -> Router<AppState> {
    api().into()
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateSession>,
) -> Result<Response, ApiError> {
    let new = NewSession::try_from(body)?;
    let session = state.chat.create_session(&caller.user_id, new).await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListSessions>,
) -> Result<Response, ApiError> {
    let listing = SessionListing::try_from(query)?;
    let page = state.chat.sessions(&caller.user_id, &listing.filter, listing.limit, listing.cursor.as_ref()).await?;
    Ok(Json(page).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<GetSession>,
) -> Result<Response, ApiError> {
    match state.chat.session(&caller.user_id, id, query.messages_wanted()?).await? {
        (session, None) => Ok(Json(session).into_response()),
        (session, Some(messages)) => Ok(Json(SessionWithMessages { session, messages }).into_response()),
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
    let session = state.chat.update_session(&caller.user_id, id, changes).await?;
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
    let session = state.chat.update_session(&caller.user_id, id, changes).await?;
    Ok(Json(session).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
) -> Result<Response, ApiError> {
    state.chat.delete_session(&caller.user_id, id).await?;
    Ok(no_content())
}
