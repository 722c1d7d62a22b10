//! Lambda entry point for the limits function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(limits::routes()).await
}
