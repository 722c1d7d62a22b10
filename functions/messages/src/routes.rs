//! One small handler per endpoint: extract, call the service, respond.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, patch_with, post_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::access;
use shared::api::memories::ContextQuery;
use shared::api::messages::{
    AppendBatch, AppendMessage, AppendRequest, EditMessage, ForgetRecent, ForgetRecentResult, ListChanges,
    ListMessages, MessageBatch, MessageList, NewScene, NewSceneResult, Reset, ResetResult,
};
use shared::api::replies::{CreateReply, Regenerate, ReplyEvent, ReplyTurn, ToolResultInput, VariantList};
use shared::auth::Caller;
use shared::chat::{Progress, Turn};
use shared::domain::{Changes, Content, Context, DedupeKey, Message, RateClass, SessionId, Summary};
use shared::error::{quota_headers, rate_headers};
use shared::http::{Json, PathParam, Query, SeqParam, no_content};
use shared::openapi::Describe as _;
use shared::store::{Appended, MessageQuery};
use shared::{ApiError, AppState};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::stream::{Start, reply_events};

/// A batch of 20 messages at the content and payload limits, JSON-escaped, fits in this.
const BODY_LIMIT: usize = 5 * 1024 * 1024;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
const LAST_EVENT_ID: &str = "last-event-id";

/// The messages routes, each with its annotation for the OpenAPI document.
pub fn api() -> ApiRouter<AppState> {
    ApiRouter::new()
        .merge(appends().route_layer(access::counted_in_write()))
        .merge(log_reads().route_layer(access::metered(RateClass::Read)))
        .merge(regenerates().route_layer(access::metered(RateClass::Regenerate)))
        .merge(others().route_layer(access::metered(RateClass::Other)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Appends: counted with the daily quota inside their own transaction.
fn appends() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/sessions/{id}/messages",
            post_with(append, |op| {
                op.about("appendMessage", "Append a message (idempotent with a key)")
                    .idempotency_key()
                    .body::<AppendMessage>()
                    .appended::<Message>()
                    .errors(&[409, 413])
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
            "/v1/sessions/{id}/replies",
            post_with(create_reply, |op| {
                op.about("createReply", "Send a message and get the model's reply, as JSON or streamed (SSE)")
                    .idempotency_key()
                    .body::<CreateReply>()
                    .appended::<ReplyTurn>()
                    .event_stream::<ReplyEvent>(201, "With `Accept: text/event-stream`: the reply as it streams")
                    .errors(&[409, 413, 422, 502, 504])
            }),
        )
}

/// Reads of the log and its replies.
fn log_reads() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/sessions/{id}/messages",
            get_with(list, |op| {
                op.about("listMessages", "Read the log: incremental sync with after_seq, paging")
                    .query::<ListMessages>()
                    .ok::<MessageList>(200, "Messages in seq order")
            }),
        )
        .api_route(
            "/v1/sessions/{id}/messages/{seq}",
            get_with(read, |op| op.about("getMessage", "Get one message").ok::<Message>(200, "The message")),
        )
        .api_route(
            "/v1/sessions/{id}/messages/{seq}/stream",
            get_with(resume, |op| {
                op.about(
                    "streamReply",
                    "Follow a reply (SSE): what is stored so far, then the rest; honours Last-Event-ID",
                )
                .event_stream::<ReplyEvent>(200, "The reply's events after `Last-Event-ID`")
            }),
        )
        .api_route(
            "/v1/sessions/{id}/messages/{seq}/variants",
            get_with(variants, |op| {
                op.about("listVariants", "Every generation of a message, the first first")
                    .ok::<VariantList>(200, "The variants; the last is the message as it stands")
            }),
        )
}

/// A new variant of a reply: its own, tighter limit.
fn regenerates() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/v1/sessions/{id}/messages/{seq}/regenerate",
        post_with(regenerate, |op| {
            op.about("regenerateReply", "A new variant of the latest assistant message, at the same seq")
                .body::<Regenerate>()
                .ok::<ReplyTurn>(201, "The new variant, ended")
                .event_stream::<ReplyEvent>(201, "With `Accept: text/event-stream`: the new variant as it streams")
                .errors(&[409, 413, 422, 502, 504])
        }),
    )
}

/// The rest: the change feed, the log's bulk changes, cancel and the context.
fn others() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/sessions/{id}/messages/{seq}",
            patch_with(edit, |op| {
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
            "/v1/sessions/{id}/changes",
            get_with(changes, |op| {
                op.about("listChanges", "The change feed: what changed in the log after a revision")
                    .query::<ListChanges>()
                    .ok::<Changes>(200, "Changes in rev order; deleted messages as tombstones")
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
            "/v1/sessions/{id}/messages/{seq}/cancel",
            post_with(cancel, |op| {
                op.about("cancelReply", "Stop a streaming reply (a no-op once it has ended)")
                    .ok::<Message>(200, "The reply as it stands: `cancelled` with its partial text, or as it ended")
                    .errors(&[409])
            }),
        )
        .api_route(
            "/v1/sessions/{id}/messages/{seq}/tool-results",
            post_with(tool_results, |op| {
                op.about("answerToolCall", "Answer a client tool's call of a paused reply (`requires_action`)")
                    .body::<ToolResultInput>()
                    .ok::<Message>(
                        200,
                        "The reply: still `requires_action` while other calls wait; once the last is answered it \
                         resumes, and this answers when it has ended (its stream carries it meanwhile); as it \
                         stands when this call was answered before",
                    )
                    .errors(&[404, 409])
            }),
        )
        .api_route(
            "/v1/sessions/{id}/summary",
            get_with(summary, |op| {
                op.about("getSummary", "The session's summary: the story before its recent messages")
                    .ok::<Summary>(200, "Written by the model once the log runs a step past the recent window")
                    .errors(&[404])
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
    if let Some(rate) = appended.rate {
        rate_headers(response.headers_mut(), rate);
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

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    Query(query): Query<ListChanges>,
) -> Result<Json<Changes>, ApiError> {
    let limit = query.limit()?;
    Ok(Json(state.chat.changes(&caller.user_id, id, query.after_rev.unwrap_or(0), limit).await?))
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
    let content = Content::written(body.content)?;
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

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn create_reply(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    headers: HeaderMap,
    Json(body): Json<CreateReply>,
) -> Result<Response, ApiError> {
    let (content, options) = body.parse()?;
    let key = idempotency_key(&headers)?.map(|key| DedupeKey::parse("Idempotency-Key", key)).transpose()?;
    let turn = state.chat.reply(&caller.user_id, id, content, options, key).await?;
    respond_with_turn(turn, wants_events(&headers)).await
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn regenerate(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
    headers: HeaderMap,
    Json(body): Json<Regenerate>,
) -> Result<Response, ApiError> {
    let turn = state.chat.regenerate(&caller.user_id, id, seq, body.into()).await?;
    respond_with_turn(turn, wants_events(&headers)).await
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.chat.cancel(&caller.user_id, id, seq).await?))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn tool_results(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
    Json(body): Json<ToolResultInput>,
) -> Result<Json<Message>, ApiError> {
    let (answered, resumed) =
        state.chat.answer_tool_call(&caller.user_id, id, seq, &body.tool_call_id, body.output).await?;
    // The last answer resumed the reply here: answer once it has ended, as a JSON reply does
    // (the stream the client holds follows it meanwhile).
    match resumed {
        Some(mut progress) => Ok(Json(Progress::end(&mut progress).await?.0)),
        None => Ok(Json(answered)),
    }
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after_id = match headers.get(LAST_EVENT_ID) {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be an event id this stream sent"))?,
    };
    let (message, progress) = state.chat.follow(&caller.user_id, id, seq).await?;
    let start = Start { user_message: None, assistant_message: message, after_id };
    Ok(reply_events(start, progress, None).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id, seq = %seq))]
async fn variants(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
    SeqParam(seq): SeqParam,
) -> Result<Json<VariantList>, ApiError> {
    Ok(Json(VariantList { data: state.chat.variants(&caller.user_id, id, seq).await? }))
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("text/event-stream"))
}

/// Answers a turn: a retry with its state as it stands (200); a new turn once the model has
/// said something — a failure before any output is the error it was (the turn stays stored,
/// the reply `failed`) — then as events, or as JSON when the reply has ended (201). A round
/// (`mode: "all"`) answers when its last reply has ended, or streams each reply in turn.
async fn respond_with_turn(turn: Turn, events: bool) -> Result<Response, ApiError> {
    let Turn { user_message, assistant_message, quota, replayed, mut progress, round } = turn;
    let mut response = if replayed && !events {
        let limits = quota;
        (StatusCode::OK, Json(ReplyTurn { user_message, assistant_message, limits, round: None })).into_response()
    } else {
        if !replayed {
            Progress::first_output(&mut progress).await?;
        }
        if events {
            let start = Start { user_message, assistant_message, after_id: 0 };
            let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
            (status, reply_events(start, progress, round)).into_response()
        } else {
            let (ended, after) = Progress::end(&mut progress).await?;
            let limits = after.or(quota);
            let round = match round {
                Some(rest) => Some(round_ended(ended.clone(), rest).await?),
                None => None,
            };
            let turn = ReplyTurn { user_message, assistant_message: ended, limits, round };
            (StatusCode::CREATED, Json(turn)).into_response()
        }
    };
    if replayed {
        response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    }
    if let Some(quota) = quota {
        quota_headers(response.headers_mut(), quota);
    }
    Ok(response)
}

/// A round's replies as they ended, `first` first.
async fn round_ended(first: Message, mut rest: UnboundedReceiver<Turn>) -> Result<Vec<Message>, ApiError> {
    let mut ended = vec![first];
    while let Some(mut turn) = rest.recv().await {
        ended.push(Progress::end(&mut turn.progress).await?.0);
    }
    Ok(ended)
}

/// The session's summary; 404 while it has none (a short session, or one just reset or edited).
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %id))]
async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<SessionId>,
) -> Result<Json<Summary>, ApiError> {
    let summary = state.store.session_summary(&caller.user_id, id).await?;
    Ok(Json(summary.ok_or(shared::store::StoreError::NotFound("summary"))?))
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
