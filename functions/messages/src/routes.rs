//! One small handler per endpoint: extract, call the service, respond.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
use shared::openapi::Describe as _;
use shared::store::{Appended, MessageQuery};
use shared::{ApiError, AppState};

/// A batch of 20 messages at the content and payload limits, JSON-escaped, fits in this.
const BODY_LIMIT: usize = 5 * 1024 * 1024;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

/// The messages routes, each with its annotation for the OpenAPI document.
pub fn api() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/sessions/{id}/messages",
            post_with(append, |op| {
                op.about("appendMessage", "Append a message (idempotent with a key)")
                    .idempotency_key()
                    .body::<AppendMessage>()
                    .appended::<Message>()
                    .errors(&[409, 413])
            })
            .get_with(list, |op| {
                op.about("listMessages", "Read the log: incremental sync with after_seq, paging")
                    .query::<ListMessages>()
                    .ok::<MessageList>(200, "Messages in seq order")
            }),
        )
        .api_route(
            "/v1/sessions/{id}/messages/batch",
            post_with(append_batch, |op| {
                op.about("appendMessages", "Append up to 20 messages atomically")
                    .idempotency_key()
                    .body::<AppendBatch>()
                    .appended::<MessageBatch>()
                    .errors(&[409, 413])
            }),
        )
        .api_route(
            "/v1/sessions/{id}/messages/{seq}",
            get_with(read, |op| op.about("getMessage", "Get one message").ok::<Message>(200, "The message"))
                .patch_with(edit, |op| {
                    op.about("editMessage", "Edit a message's content")
                        .body::<EditMessage>()
                        .ok::<Message>(200, "The edited message")
                        .errors(&[403, 409, 413])
                })
                .delete_with(remove, |op| {
                    op.about("deleteMessage", "Delete a message").empty(204, "Deleted").errors(&[409])
                }),
        )
        .api_route(
            "/v1/sessions/{id}/forget-recent",
            post_with(forget_recent, |op| {
                op.about("forgetRecent", "Delete the latest N messages")
                    .body::<ForgetRecent>()
                    .ok::<ForgetRecentResult>(200, "How many were deleted")
                    .errors(&[409, 413])
            }),
        )
        .api_route(
            "/v1/sessions/{id}/new-scene",
            post_with(new_scene, |op| {
                op.about("newScene", "Hide all but the latest N messages")
                    .body::<NewScene>()
                    .ok::<NewSceneResult>(200, "How many were hidden")
                    .errors(&[409, 413])
            }),
        )
        .api_route(
            "/v1/sessions/{id}/reset",
            post_with(reset, |op| {
                op.about("resetSession", "Clear the session's messages and memories")
                    .body::<Reset>()
                    .ok::<ResetResult>(200, "How much was cleared")
                    .errors(&[409, 413])
            }),
        )
        .api_route(
            "/v1/sessions/{id}/context",
            get_with(context, |op| {
                op.about("getContext", "The assembled LLM context")
                    .query::<ContextQuery>()
                    .ok::<Context>(200, "Settings, ranked memories and recent messages within the token budget")
            }),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

pub fn routes() -> Router<AppState> {
    api().into()
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
