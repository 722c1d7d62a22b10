//! The HTTP edge every function shares: extractors that turn bad input into `ApiError`,
//! the request-id middleware, the JSON 404 fallback, and the assembly of a router into an app.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument as _;

use crate::auth::{Admin, Caller};
use crate::config::CorsOrigins;
use crate::domain::{InputError, Label, Seq, UserId};
use crate::error::{ApiError, with_request_id};
use crate::state::AppState;

/// Turns a function's routes into the app Lambda (or the local server) runs.
pub fn app(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_context))
        .layer(Extension(state.clone()))
        .with_state(state)
}

/// The request headers the API reads: what a preflight may ask to send.
pub const CORS_ALLOW_HEADERS: &[&str] = &["authorization", "content-type", "idempotency-key", "last-event-id"];
/// The response headers the API sets that a browser script may read.
pub const CORS_EXPOSE_HEADERS: &[&str] = &[
    "x-request-id",
    "x-quota-limit",
    "x-quota-remaining",
    "x-quota-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit",
    "ratelimit-policy",
    "idempotent-replayed",
    "retry-after",
    "www-authenticate",
];
pub const CORS_ALLOW_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// How long a browser may cache a preflight's answer.
pub const CORS_MAX_AGE_SECS: u64 = 3600;

/// CORS for the allowed origins, as the HTTP API's `CorsConfiguration` answers it in AWS (the
/// same lists: `template.yaml` and `infra/` are checked against these constants). Credentials
/// mode is not allowed: the API reads `Authorization`, never cookies, and a request with an
/// `Authorization` header needs no `credentials: "include"`. A preflight is `204`.
pub fn cors(routes: Router, origins: &CorsOrigins) -> Router {
    let allow_origin = match origins {
        CorsOrigins::None => return routes,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()))
        }
    };
    let names = |names: &[&str]| {
        names.iter().filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok()).collect::<Vec<_>>()
    };
    let methods: Vec<Method> = CORS_ALLOW_METHODS.iter().filter_map(|method| method.parse().ok()).collect();
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods(methods)
        .allow_headers(names(CORS_ALLOW_HEADERS))
        .expose_headers(names(CORS_EXPOSE_HEADERS))
        .max_age(std::time::Duration::from_secs(CORS_MAX_AGE_SECS));
    routes.layer(layer).layer(middleware::from_fn(preflight_no_content))
}

/// tower-http answers a preflight `200` with an empty body; API Gateway answers `204`.
async fn preflight_no_content(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

async fn route_not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// A known path with another method: 405, and axum's `Allow` header lists the methods it has.
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Gives each request an id (API Gateway's when there is one), a span, a log line, an
/// `x-request-id` header, and logs the error a response carries (`ApiError` puts itself in the
/// response's extensions). Logs ids and timings only, never bodies.
async fn request_context(request: Request, next: Next) -> Response {
    let request_id = request_id_of(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = with_request_id(request_id.clone(), next.run(request)).instrument(span.clone()).await;
    if let Some(error) = response.extensions().get::<Arc<ApiError>>() {
        span.in_scope(|| error.log());
    }
    let status = response.status().as_u16();
    tracing::info!(parent: &span, status, elapsed_us = started.elapsed().as_micros() as u64, "request done");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn request_id_of(request: &Request) -> String {
    let from_gateway = request.request_context_ref().and_then(|context| match context {
        RequestContext::ApiGatewayV2(context) => context.request_id.clone(),
        RequestContext::ApiGatewayV1(context) => context.request_id.clone(),
        _ => None,
    });
    from_gateway.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// A JSON body parsed into `T`; any failure is a 4xx naming the offending field.
/// An empty body reads as `{}`, so `POST /v1/sessions` with no body works.
/// It is also the response type: `Json(value)` answers 200 with `value` as JSON.
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { field: None, message: "the request body is too large".into() }
            } else {
                ApiError::invalid("body", "the request body could not be read")
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        parse_json(bytes).map(Json)
    }
}

/// Every body is a JSON object: serde would also take a struct as an array of its fields in
/// declaration order (`["title", null]`), which no client means and no schema documents.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::invalid("body", format!("the body is not valid JSON: {inner}"))
            }
            _ => InputError::from_serde(&path, &inner.to_string()).into(),
        }
    })?;
    deserializer.end().map_err(|_| ApiError::invalid("body", "trailing characters after the JSON value"))?;
    Ok(value)
}

/// Query-string parameters parsed into `T`; a bad one is a 400 naming it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| InputError::from_serde(&error.path().to_string(), &error.into_inner().to_string()).into())
    }
}

/// The `{id}` path segment parsed as `T` (400 `invalid_input` naming the field when it does not parse).
pub struct PathParam<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParam<T>
where
    T: std::str::FromStr<Err = InputError>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = path_param(parts, state, "id").await?;
        Ok(Self(text.parse()?))
    }
}

/// The `{user_id}` path segment of an admin route (400 `invalid_input` when it is not a user id).
pub struct UserIdParam(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = path_param(parts, state, "user_id").await?;
        UserId::parse(&text)
            .map(Self)
            .ok_or_else(|| ApiError::invalid("user_id", "must be 1 to 128 characters, not blank or space-padded"))
    }
}

/// The `{category}` path segment of a tag listing.
pub struct CategoryParam(pub Label);

impl<S: Send + Sync> FromRequestParts<S> for CategoryParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = path_param(parts, state, "category").await?;
        Ok(Self(Label::parse("category", &text)?))
    }
}

/// The `{seq}` path segment as a seq (400 `invalid_input` when it is not a positive integer).
pub struct SeqParam(pub Seq);

impl<S: Send + Sync> FromRequestParts<S> for SeqParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = path_param(parts, state, "seq").await?;
        Ok(Self(text.parse()?))
    }
}

async fn path_param<S: Send + Sync>(parts: &mut Parts, state: &S, name: &'static str) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::invalid(name, "is not valid in the path"))?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| ApiError::invalid(name, "is missing from the path"))
}

/// A `204 No Content` response.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The caller the route's access layer verified (see `access`).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        crate::access::caller_of(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let caller = crate::access::caller_of(parts)?;
        if !caller.is_admin {
            return Err(ApiError::Forbidden("this route needs an admin token".to_owned()));
        }
        Ok(Self(caller))
    }
}
