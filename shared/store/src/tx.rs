//! Transaction helpers every writer shares: reading a cancelled transaction's reasons, and the
//! short jitter that spreads out writers whose transactions collided.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::CancellationReason;

use super::StoreError;

pub(crate) fn reason_failed(reason: Option<&CancellationReason>) -> bool {
    reason.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

/// The cancellation reasons of a cancelled transaction, or the error itself.
pub(crate) fn cancellation_reasons(
    error: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Result<Vec<CancellationReason>, StoreError> {
    match error.as_service_error() {
        // An item throttled, or failed on DynamoDB's side: the transaction may succeed if retried.
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
            if cancelled.cancellation_reasons().iter().any(|reason| {
                matches!(
                    reason.code(),
                    Some("ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded")
                ) || reason.code().is_some_and(|code| code.starts_with("Internal"))
            }) =>
        {
            Err(StoreError::Unavailable(Box::new(error)))
        }
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            Ok(cancelled.cancellation_reasons().to_vec())
        }
        _ => Err(StoreError::from_sdk(error)),
    }
}

pub(crate) fn is_conflict(reasons: &[CancellationReason]) -> bool {
    reasons.iter().any(|reason| reason.code() == Some("TransactionConflict"))
}

/// Sleeps a random, growing fraction of a few milliseconds (at most 16) to spread out writers
/// whose transactions collided; short, because the other side is about to commit.
pub(crate) async fn backoff(attempt: u32) {
    let cap_ms = 2u64.saturating_pow(attempt.min(4));
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=cap_ms))).await;
}
