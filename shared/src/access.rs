//! Who may call a route, and what a call costs them: the layer every authenticated route is
//! registered under. It verifies the credentials (401 before any input is read), counts the call
//! against the caller's per-minute limit of the route's class, hands the `Caller` to the handler
//! in the request's extensions, and sets the `RateLimit` headers of the limit it counted against.
//!
//! A route's class is said where it is registered (`.route_layer(access::metered(RateClass::Read))`),
//! never worked out from its path: a new route gets the limit its group is registered under.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, FromFnLayer, Next};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;

use crate::auth::Caller;
use crate::domain::RateClass;
use crate::error::{ApiError, rate_headers};
use crate::state::AppState;

/// How a route's calls are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metering {
    /// Against the caller's per-minute limit of this class (one conditional write).
    PerMinute(RateClass),
    /// Inside the route's own write: appends count in their transaction (with the daily quota).
    InWrite,
    /// Not at all: answered from this instance's memory (the catalog), so counting would cost a
    /// database write for a read that costs none.
    Free,
}

/// The layer a group of routes is registered under.
pub type AccessLayer = FromFnLayer<Guard, Metering, (State<Metering>, Request)>;
type Guard = fn(State<Metering>, Request, Next) -> BoxFuture<'static, Response>;

/// Authenticated, and counted against the caller's per-minute limit of `class`.
pub fn metered(class: RateClass) -> AccessLayer {
    layer(Metering::PerMinute(class))
}

/// Authenticated; the route counts the call in its own write (appends).
pub fn counted_in_write() -> AccessLayer {
    layer(Metering::InWrite)
}

/// Authenticated, never counted (reads served from the instance's memory).
pub fn free() -> AccessLayer {
    layer(Metering::Free)
}

fn layer(metering: Metering) -> AccessLayer {
    let guard: Guard = |metering, request, next| Box::pin(guard(metering, request, next));
    middleware::from_fn_with_state(metering, guard)
}

async fn guard(State(metering): State<Metering>, mut request: Request, next: Next) -> Response {
    let Some(state) = request.extensions().get::<AppState>().cloned() else {
        return ApiError::Internal("the app state is not in the request (not built by http::app)".into())
            .into_response();
    };
    let header = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
    let caller = match state.auth.authenticate(header, state.clock.now()).await {
        Ok(caller) => caller,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let rate = match metering {
        Metering::PerMinute(class) => match state.store.hit_rate_limit(&caller.user_id, class).await {
            Ok(rate) => rate,
            Err(error) => return ApiError::from(error).into_response(),
        },
        Metering::InWrite | Metering::Free => None,
    };
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if let Some(rate) = rate
        && !response.headers().contains_key("ratelimit")
    {
        rate_headers(response.headers_mut(), rate);
    }
    response
}

/// The caller the access layer verified. A handler that takes a `Caller` on a route registered
/// without the layer answers 500: every authenticated route is registered under a metering.
pub(crate) fn caller_of(request: &axum::http::request::Parts) -> Result<Caller, ApiError> {
    request
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("this route takes a caller but is registered without an access layer".into()))
}
