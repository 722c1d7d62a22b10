//! One small handler per endpoint: extract, call the service, respond.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use shared::api::memories::ContextQuery;
use shared::api::messages::{
    AppendBatch, AppendMessage, AppendRequest, EditMessage, ForgetRecent, ForgetRecentResult, ListMessages,
    MessageBatch, MessageList, NewScene, NewSceneResult, Reset, ResetResult,
};
use shared::auth::Caller;
use shared::domain::{Content, Context, Message, SessionId};
use shared::error::quota_headers;
use shared::http::{Json, PathParam, Query, SeqParam, no_content};
use shared::store::{Appended, MessageQuery};
use shared::{ApiError, AppState};

/// A batch of 20 messages at the content and payload limits, JSON-escaped, fits in this.
const BODY_LIMIT: usize = 5 * 1024 * 1024;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{id}/messages", post(append).get(list))
        .route("/v1/sessions/{id}/messages/batch", post(append_batch))
        .route("/v1/sessions/{id}/messages/{seq}", get(read).patch(edit).delete(remove))
        .route("/v1/sessions/{id}/forget-recent", post(forget_recent))
        .route("/v1/sessions/{id}/new-scene", post(new_scene))
        .route("/v1/sessions/{id}/reset", post(reset))
        .route("/v1/sessions/{id}/context", get(context))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| value.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII")))
        .transpose()
}

/// 201 for a new append, 200 with `Idempotent-Replayed: true` for a retry; both with the
/// daily quota in `X-RateLimit-*` (a refusal carries them on the error).
fn appended<T: Serialize>(appended: &Appended, body: T) -> Response {
    let status = if appended.replayed { StatusCode::OK } else { StatusCode::CREATED };
    let mut response = (status, Json(body)).into_response();
    if appended.replayed {
        response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    }
    quota_headers(response.headers_mut(), appended.quota);
    response
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn append(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    headers: HeaderMap,
    Json(body): Json<AppendMessage>,
) -> Result<Response, ApiError> {
    let request = AppendRequest::single(body, idempotency_key(&headers)?)?;
    let result = state.chat.append(&caller.user_id, id, request.messages, request.idempotency.as_ref()).await?;
    let message = result.messages.first().ok_or_else(|| ApiError::internal("append returned no message"))?;
    Ok(appended(&result, message))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn append_batch(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    headers: HeaderMap,
    Json(body): Json<AppendBatch>,
) -> Result<Response, ApiError> {
    let request = AppendRequest::batch(body, idempotency_key(&headers)?)?;
    let result = state.chat.append(&caller.user_id, id, request.messages, request.idempotency.as_ref()).await?;
    Ok(appended(&result, MessageBatch { data: result.messages.clone() }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<ListMessages>,
) -> Result<Json<MessageList>, ApiError> {
    let slice = state.chat.list(&caller.user_id, id, MessageQuery::try_from(query)?).await?;
    Ok(Json(MessageList { data: slice.data, has_more: slice.has_more, last_seq: slice.last_seq }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.chat.message(&caller.user_id, id, seq).await?))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
    Json(body): Json<EditMessage>,
) -> Result<Json<Message>, ApiError> {
    let content = Content::parse(body.content)?;
    Ok(Json(state.chat.edit(&caller.user_id, id, seq, content).await?))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
) -> Result<Response, ApiError> {
    state.chat.delete(&caller.user_id, id, seq).await?;
    Ok(no_content())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn forget_recent(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(body): Json<ForgetRecent>,
) -> Result<Json<ForgetRecentResult>, ApiError> {
    let deleted_count = state.chat.forget_recent(&caller.user_id, id, body.count()?).await?;
    Ok(Json(ForgetRecentResult { deleted_count }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn new_scene(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(body): Json<NewScene>,
) -> Result<Json<NewSceneResult>, ApiError> {
    let deleted_messages_count = state.chat.new_scene(&caller.user_id, id, body.keep()?).await?;
    Ok(Json(NewSceneResult { deleted_messages_count, memories_preserved: true }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(Reset {}): Json<Reset>,
) -> Result<Json<ResetResult>, ApiError> {
    let (deleted_messages_count, deleted_memories_count) = state.chat.reset(&caller.user_id, id).await?;
    Ok(Json(ResetResult { deleted_messages_count, deleted_memories_count }))
}

/// What the chat app sends its model next: settings, top memories, recent messages, trimmed.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn context(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<ContextQuery>,
) -> Result<Json<Context>, ApiError> {
    let (recent, max_tokens) = (query.recent()?, query.max_tokens()?);
    Ok(Json(state.chat.context(&caller.user_id, id, recent, max_tokens).await?))
}
