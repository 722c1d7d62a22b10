//! Lambda entry point for the sessions function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(sessions::routes()).await
}
