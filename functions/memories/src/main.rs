//! Lambda entry point for the memories function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(memories::routes()).await
}
