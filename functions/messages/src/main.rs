//! Lambda entry point for the messages function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(messages::routes()).await
}
