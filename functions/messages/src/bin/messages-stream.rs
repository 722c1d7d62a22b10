//! Lambda entry point for the messages routes behind a response-streaming function URL: the
//! same router as `messages`, with bodies streamed, so replies arrive token by token.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run_streaming(messages::routes()).await
}
