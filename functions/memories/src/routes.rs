//! One small handler per endpoint: extract, call the store, respond.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::access;
use shared::api::memories::{
    CreateMemory, DeleteMemories, ListMemories, MemoriesDeleted, MemoryDeleted, MemoryList, MemoryListing, UpdateMemory,
};
use shared::auth::Caller;
use shared::domain::Memory;
use shared::domain::RateClass;
use shared::domain::{MemoryChanges, MemoryId, NewMemory};
use shared::http::{Json, PathParam, Query};
use shared::openapi::Describe as _;
use shared::{ApiError, AppState};

/// Memory bodies are small: content is at most 2000 characters.
const BODY_LIMIT: usize = 64 * 1024;

/// The memories routes, each with its annotation for the OpenAPI document.
pub fn api() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/memories",
            post_with(create, |op| {
                op.about("addMemory", "Add a memory (an identical one is returned instead)")
                    .body::<CreateMemory>()
                    .ok::<Memory>(201, "The new memory")
                    .ok::<Memory>(200, "An identical memory already existed")
                    .errors(&[409, 413])
            })
            .get_with(list, |op| {
                op.about("listMemories", "List memories, most important first")
                    .query::<ListMemories>()
                    .ok::<MemoryList>(200, "One page of memories")
            })
            .delete_with(remove_all, |op| {
                op.about("deleteMemories", "Delete all memories of a scope")
                    .query::<DeleteMemories>()
                    .ok::<MemoriesDeleted>(200, "How many were deleted")
            }),
        )
        .api_route(
            "/v1/memories/{id}",
            get_with(read, |op| op.about("getMemory", "Get a memory").ok::<Memory>(200, "The memory"))
                .patch_with(update, |op| {
                    op.about("updateMemory", "Change a memory's content, type or importance")
                        .body::<UpdateMemory>()
                        .ok::<Memory>(200, "The updated memory")
                        .errors(&[409, 413])
                })
                .delete_with(remove, |op| {
                    op.about("deleteMemory", "Delete a memory").ok::<MemoryDeleted>(200, "Deleted")
                }),
        )
        .route_layer(access::metered(RateClass::Other))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

pub fn routes() -> Router<AppState> {
    api().into()
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateMemory>,
) -> Result<Response, ApiError> {
    let (memory, created) = state.store.add_memory(&caller.user_id, NewMemory::try_from(body)?).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(memory)).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListMemories>,
) -> Result<Response, ApiError> {
    let listing = MemoryListing::try_from(query)?;
    let page =
        state.store.list_memories(&caller.user_id, &listing.filter, listing.limit, listing.cursor.as_ref()).await?;
    let body =
        MemoryList { data: page.data, has_more: page.has_more, next_cursor: page.next_cursor, total: page.total };
    Ok(Json(body).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, memory = %id))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<MemoryId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.store.get_memory(&caller.user_id, id).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, memory = %id))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<MemoryId>,
    Json(body): Json<UpdateMemory>,
) -> Result<Response, ApiError> {
    let changes = MemoryChanges::try_from(body)?;
    Ok(Json(state.store.update_memory(&caller.user_id, id, changes).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, memory = %id))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<MemoryId>,
) -> Result<Response, ApiError> {
    state.store.delete_memory(&caller.user_id, id).await?;
    Ok(Json(MemoryDeleted { success: true, deleted_id: id }).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn remove_all(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<DeleteMemories>,
) -> Result<Response, ApiError> {
    let deleted_count = state.store.delete_scope(&caller.user_id, query.scope()).await?;
    Ok(Json(MemoriesDeleted { success: true, deleted_count }).into_response())
}
