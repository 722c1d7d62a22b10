//! One small handler per endpoint: extract, call the service, respond.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, patch_with, post_with};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::access;
use shared::api::characters::{
    self, CharacterPage, CharacterView, CreateCharacter, ListCharacters, SearchCharacters, TagList, UpdateCharacter,
};
use shared::api::sessions::{
    CreateSession, GetSession, LatestMessages, ListSessions, SessionList, SessionListing, SessionWithMessages,
    UpdateSession,
};
use shared::auth::{Admin, Caller};
use shared::domain::RateClass;
use shared::domain::Session;
use shared::domain::{CharacterId, NewSession, SessionChanges, SessionId};
use shared::http::{CategoryParam, Json, PathParam, Query, no_content};
use shared::openapi::Describe as _;
use shared::store::{MessageOrder, MessageQuery};
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
                    .ok::<SessionList>(
                        200,
                        "One page of sessions; with include=latest_messages, the first one's newest messages too",
                    )
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
        .route_layer(access::metered(RateClass::Other))
        .merge(catalog())
        .merge(character_chats().route_layer(access::metered(RateClass::Other)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// The character catalog: read from the instance's snapshot, so never metered.
fn catalog() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/characters",
            get_with(list_characters, |op| {
                op.about("listCharacters", "List active characters, filtered and sorted")
                    .query::<ListCharacters>()
                    .ok::<CharacterPage>(200, "One page of characters")
            }),
        )
        .api_route(
            "/v1/characters/search",
            get_with(search_characters, |op| {
                op.about("searchCharacters", "Search names, descriptions and tags (case- and accent-insensitive)")
                    .query::<SearchCharacters>()
                    .ok::<CharacterPage>(200, "Matches, best first")
            }),
        )
        .api_route(
            "/v1/characters/{id}",
            get_with(get_character, |op| {
                op.about("getCharacter", "A character (inactive ones too, for their existing chats)")
                    .ok::<CharacterView>(200, "The character")
            }),
        )
        .api_route(
            "/v1/tags",
            get_with(tags, |op| {
                op.about("listTags", "Tags of active characters, most used first").ok::<TagList>(200, "The tags")
            }),
        )
        .api_route(
            "/v1/tags/{category}",
            get_with(category_tags, |op| {
                op.about("listCategoryTags", "One category's tags, most used first").ok::<TagList>(200, "The tags")
            }),
        )
        .route_layer(access::free())
}

/// The caller's chat with a character, and the catalog's admin writes: metered as other calls.
fn character_chats() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/characters/{id}/session",
            get_with(character_session, |op| {
                op.about("getCharacterSession", "The caller's chat with a character, opened on first use")
                    .ok::<Session>(200, "The chat (a new one starts with the character's greeting as seq 1)")
                    .errors(&[403])
            }),
        )
        .api_route(
            "/v1/admin/characters",
            post_with(create_character, |op| {
                op.about("createCharacter", "Add a character (admin)")
                    .body::<CreateCharacter>()
                    .ok::<CharacterView>(201, "The new character")
                    .errors(&[403, 409, 413])
            }),
        )
        .api_route(
            "/v1/admin/characters/{id}",
            patch_with(update_character, |op| {
                op.about("updateCharacter", "Change a character (admin)")
                    .body::<UpdateCharacter>()
                    .ok::<CharacterView>(200, "The character")
                    .errors(&[403, 409, 413])
            })
            .delete_with(deactivate_character, |op| {
                op.about("deactivateCharacter", "Deactivate a character: its chats stay readable (admin)")
                    .ok::<CharacterView>(200, "The deactivated character")
                    .errors(&[403, 409])
            }),
        )
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
    let latest = match (listing.latest, page.data.first()) {
        (Some(limit), Some(first)) => {
            let query = MessageQuery { after_seq: None, before_seq: None, limit, order: MessageOrder::Desc };
            let slice = state.store.list_messages(&caller.user_id, first.id, query).await?;
            Some(LatestMessages { session_id: first.id, messages: slice.data, has_more: slice.has_more })
        }
        _ => None,
    };
    Ok(Json(SessionList { page, latest }).into_response())
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

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn list_characters(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListCharacters>,
) -> Result<Response, ApiError> {
    Ok(Json(characters::list(&state.catalog, query, caller.is_admin).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn search_characters(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SearchCharacters>,
) -> Result<Response, ApiError> {
    Ok(Json(characters::search(&state.catalog, query, caller.is_admin).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, character = %id))]
async fn get_character(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<CharacterId>,
) -> Result<Response, ApiError> {
    Ok(Json(characters::view(&state.catalog, &id, caller.is_admin).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, character = %id))]
async fn character_session(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<CharacterId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.chat.character_chat(&caller.user_id, &id).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn tags(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(Json(characters::tag_list(&state.catalog, None).await?).into_response())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn category_tags(
    State(state): State<AppState>,
    caller: Caller,
    CategoryParam(category): CategoryParam,
) -> Result<Response, ApiError> {
    Ok(Json(characters::tag_list(&state.catalog, Some(&category)).await?).into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id))]
async fn create_character(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<CreateCharacter>,
) -> Result<Response, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(characters::admin_create(&state.catalog, body, |tools| state.chat.admit_tools(tools)).await?),
    )
        .into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id, character = %id))]
async fn update_character(
    State(state): State<AppState>,
    Admin(admin): Admin,
    PathParam(id): PathParam<CharacterId>,
    Json(body): Json<UpdateCharacter>,
) -> Result<Response, ApiError> {
    Ok(Json(characters::admin_update(&state.catalog, &id, body, |tools| state.chat.admit_tools(tools)).await?)
        .into_response())
}

#[tracing::instrument(skip_all, fields(admin = %admin.user_id, character = %id))]
async fn deactivate_character(
    State(state): State<AppState>,
    Admin(admin): Admin,
    PathParam(id): PathParam<CharacterId>,
) -> Result<Response, ApiError> {
    let deactivate = UpdateCharacter { is_active: Some(false), ..UpdateCharacter::default() };
    Ok(Json(characters::admin_update(&state.catalog, &id, deactivate, |tools| state.chat.admit_tools(tools)).await?)
        .into_response())
}
