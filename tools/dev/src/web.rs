//! What the dev server adds for the browser app in `web/`: its built files at `/` (`web/dist`,
//! built by `scripts/dev.sh`), a dev sign-in (`POST /dev/token`, only while the server verifies
//! HS256 dev tokens), and a small demo catalog so the app has characters to open.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use shared::api::characters::CreateCharacter;
use shared::catalog::Catalog;
use shared::domain::Refusal;
use shared::error::ApiError;
use shared::http::Json;
use shared::store::StoreError;
use tower_http::services::{ServeDir, ServeFile};

use kit::token::{TokenRequest, mint};

/// A dev token lives a day, like `mint-token`'s.
const DEV_TOKEN_TTL_SECS: i64 = 24 * 3600;

/// The HS256 secret and claims dev tokens are signed with: the server's own verification settings.
#[derive(Clone)]
pub struct DevSignIn {
    pub secret: Vec<u8>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// The web app's files from `dir` (`index.html` at `/`, its icon, the bundle under `/assets`), and
/// `POST /dev/token` when `sign_in` is given: routes to merge beside the API's (see
/// [`crate::dev_app`]), so the API's request ids and JSON 404 cover them too.
pub fn router<S: Clone + Send + Sync + 'static>(dir: &Path, sign_in: Option<DevSignIn>) -> Router<S> {
    let files = Router::new()
        .route_service("/", ServeFile::new(dir.join("index.html")))
        .route_service("/config.js", ServeFile::new(dir.join("config.js")))
        .route_service("/favicon.ico", ServeFile::new(dir.join("favicon.ico")))
        .nest_service("/assets", ServeDir::new(dir.join("assets")));
    match sign_in {
        Some(sign_in) => files.route_service("/dev/token", post(dev_token).with_state::<()>(sign_in)),
        None => files,
    }
}

/// Where the built app is: `WEB_DIR`, else `web/dist` of this checkout.
pub fn web_dir() -> PathBuf {
    std::env::var_os("WEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    user_id: String,
}

#[derive(Serialize)]
struct TokenAnswer {
    token: String,
    expires_in: i64,
}

/// `POST /dev/token {user_id}` → `{token, expires_in}`: a dev token for a local account. Ids are
/// 1–64 of `A–Z a–z 0–9 _ -`, so no one can sign in as a Telegram user (`tg:…`) this way.
async fn dev_token(
    State(sign_in): State<DevSignIn>,
    Json(body): Json<TokenBody>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let valid = (1..=64).contains(&body.user_id.len())
        && body.user_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !valid {
        return Err(ApiError::invalid("user_id", "1 to 64 letters, digits, '_' or '-'"));
    }
    let request = TokenRequest {
        sub: &body.user_id,
        ttl_secs: DEV_TOKEN_TTL_SECS,
        issuer: sign_in.issuer.as_deref(),
        audience: sign_in.audience.as_deref(),
        admin: false,
    };
    let token = mint(&sign_in.secret, &request).map_err(ApiError::internal)?;
    Ok(Json(TokenAnswer { token, expires_in: DEV_TOKEN_TTL_SECS }))
}

/// The demo characters (`tools/dev/seed/characters.json`): created when missing, left alone when an
/// id exists (an admin may have changed it). Answers how many were created.
pub async fn seed_characters(catalog: &Catalog) -> Result<usize, SeedError> {
    let characters: Vec<CreateCharacter> = serde_json::from_str(include_str!("../seed/characters.json"))?;
    let mut created = 0;
    for character in characters {
        // The seed declares no tools.
        match shared::api::characters::admin_create(catalog, character, |_| Ok(())).await {
            Ok(_) => created += 1,
            Err(StoreError::Refused(Refusal::Conflict(_))) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(created)
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("tools/dev/seed/characters.json is not a list of characters")]
    Parse(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}
