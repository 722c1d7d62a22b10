//! Lambda entry point for the limits function (HTTP only; the hourly job is the `job` function).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(limits::routes()).await
}
