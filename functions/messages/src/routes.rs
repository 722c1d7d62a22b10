//! One small handler per endpoint: extract, call the store, respond.

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
use shared::domain::{Content, Context, ContextSession, SessionId};
use shared::http::{Json, PathParam, Query, SeqParam, no_content};
use shared::store::{Appended, MessageQuery, QuotaState, StoreError};
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
/// daily quota in `X-RateLimit-*`.
fn appended<T: Serialize>(appended: &Appended, body: T) -> Response {
    let status = if appended.replayed { StatusCode::OK } else { StatusCode::CREATED };
    let mut response = (status, axum::Json(body)).into_response();
    if appended.replayed {
        response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    }
    quota_headers(&mut response, appended.quota);
    response
}

fn quota_headers(response: &mut Response, quota: QuotaState) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(quota.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(quota.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(quota.resets_at.unix_seconds()));
}

/// An append refused for its quota still tells the caller where it stands.
fn with_quota_headers(error: StoreError) -> Response {
    let quota = match &error {
        StoreError::DailyLimitExceeded { quota, .. } => Some(*quota),
        _ => None,
    };
    let mut response = ApiError::from(error).into_response();
    if let Some(quota) = quota {
        quota_headers(&mut response, quota);
    }
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
    let result = match append_request(&state, &caller, id, request).await {
        Ok(result) => result,
        Err(response) => return Ok(response),
    };
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
    let result = match append_request(&state, &caller, id, request).await {
        Ok(result) => result,
        Err(response) => return Ok(response),
    };
    Ok(appended(&result, MessageBatch { data: result.messages.clone() }))
}

async fn append_request(
    state: &AppState,
    caller: &Caller,
    id: SessionId,
    request: AppendRequest,
) -> Result<Appended, Response> {
    let result = state
        .store
        .append_messages(&caller.user_id, id, request.messages, request.idempotency.as_ref())
        .await
        .map_err(with_quota_headers)?;
    tracing::info!(count = result.messages.len(), replayed = result.replayed, "appended");
    Ok(result)
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<ListMessages>,
) -> Result<Response, ApiError> {
    let query = MessageQuery::try_from(query)?;
    let slice = state.store.list_messages(&caller.user_id, id, query).await?;
    Ok(axum::Json(MessageList { data: slice.data, has_more: slice.has_more, last_seq: slice.last_seq }).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
) -> Result<Response, ApiError> {
    Ok(axum::Json(state.store.get_message(&caller.user_id, id, seq).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
    Json(body): Json<EditMessage>,
) -> Result<Response, ApiError> {
    let content = Content::parse(body.content)?;
    Ok(axum::Json(state.store.edit_message(&caller.user_id, id, seq, content).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
) -> Result<Response, ApiError> {
    state.store.delete_message(&caller.user_id, id, seq).await?;
    Ok(no_content())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn forget_recent(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(body): Json<ForgetRecent>,
) -> Result<Response, ApiError> {
    let deleted_count = state.store.forget_recent(&caller.user_id, id, body.count()?).await?;
    Ok(axum::Json(ForgetRecentResult { deleted_count }).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn new_scene(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(body): Json<NewScene>,
) -> Result<Response, ApiError> {
    let deleted_messages_count = state.store.new_scene(&caller.user_id, id, body.keep()?).await?;
    Ok(axum::Json(NewSceneResult { deleted_messages_count, memories_preserved: true }).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Json(Reset {}): Json<Reset>,
) -> Result<Response, ApiError> {
    let (deleted_messages_count, deleted_memories_count) = state.store.reset_session(&caller.user_id, id).await?;
    Ok(axum::Json(ResetResult { deleted_messages_count, deleted_memories_count }).into_response())
}

/// What the chat app sends its model next: settings, top memories, recent messages, trimmed.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn context(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<ContextQuery>,
) -> Result<Response, ApiError> {
    let (recent, max_tokens) = (query.recent()?, query.max_tokens()?);
    let (session, memories, messages) = state.store.context_parts(&caller.user_id, id, recent).await?;
    let session = ContextSession { id: session.id, title: session.title, settings: session.settings };
    Ok(axum::Json(Context::fit(session, memories, messages, max_tokens)).into_response())
}
