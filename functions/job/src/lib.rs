//! The hourly job: its own function (its own timeout and role) on EventBridge's schedule. It does
//! the chores the limits table lists for each day (`Store::run_chores`: subscriptions, usage days,
//! meters, and the retention sweeps of sessions whose messages or memories were hidden) within
//! the time the invocation has, and leaves the rest to the next run. First it ends the replies
//! whose generator is gone and that no reader met (`Chat::end_interrupted_replies`).

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::AppState;

/// The job stops this long before the Lambda deadline (at most a fifth of the time it has) and
/// leaves the rest to the next run.
const SAFETY_MARGIN: Duration = Duration::from_secs(5);
const MAX_JOB_TIME: Duration = Duration::from_secs(600);

/// Time until the invocation's deadline. AWS sends an epoch in milliseconds; cargo-lambda's local
/// runtime sends the timeout itself (e.g. `600000`), which reads as a date in 1970: take such a
/// value as "this many milliseconds from now".
fn time_left(deadline_ms: u64) -> Duration {
    const YEAR_2000_MS: u64 = 946_684_800_000;
    if deadline_ms < YEAR_2000_MS {
        return Duration::from_millis(deadline_ms);
    }
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default()
}

/// Runs one pass of the job; the event's content does not matter (any trigger runs the chores).
pub async fn handle(state: AppState, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let remaining = time_left(event.context.deadline);
    let budget = remaining.saturating_sub(SAFETY_MARGIN.min(remaining / 5)).min(MAX_JOB_TIME);
    let started = std::time::Instant::now();
    let failed = |error| {
        tracing::error!(error = %error, "hourly job failed; the next run retries");
        error
    };
    let leases = state.chat.end_interrupted_replies(budget / 5).await.map_err(failed)?;
    let report = state.store.run_chores(budget.saturating_sub(started.elapsed())).await.map_err(failed)?;
    tracing::info!(
        subscriptions_expired = report.subscriptions_expired,
        usage_days_finalized = report.usage_days_finalized,
        meters_closed = report.meters_closed,
        sessions_swept = report.sessions_swept,
        messages_expired = report.messages_expired,
        memories_expired = report.memories_expired,
        replies_interrupted = leases.replies_interrupted,
        finished = report.finished && leases.finished,
        "hourly job done"
    );
    let mut answer = serde_json::to_value(report)?;
    answer["replies_interrupted"] = leases.replies_interrupted.into();
    answer["finished"] = (answer["finished"].as_bool().unwrap_or(false) && leases.finished).into();
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_epoch_deadlines_and_cargo_lambdas_relative_ones() {
        assert_eq!(time_left(600_000), Duration::from_secs(600));
        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        let epoch_ms = in_a_minute.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let left = time_left(epoch_ms);
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60), "{left:?}");
        assert_eq!(time_left(1_000_000_000_000), Duration::ZERO, "a deadline in the past leaves nothing");
    }
}
