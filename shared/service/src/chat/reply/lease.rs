//! Replies whose generator is gone. A streaming reply holds a lease its generator renews with
//! every write; once the lease has passed — the process died, or Lambda ended the invocation — the
//! reply is ended by whoever meets it first: a read of the message, a follower, a cancel, a
//! regenerate, a new reply in the session, or the hourly job. It ends `incomplete` with the text
//! of its last checkpoint, or `failed` when it had none (the turn's quota unit is then given back,
//! as for any reply that fails before output); `finish_reason` is `interrupted`.
//!
//! A paused reply (`requires_action`) has no generator: its client has `CLIENT_TOOL_TIMEOUT` to
//! answer, and is then met the same way — ended `incomplete`, `finish_reason: "timeout"`, each
//! unanswered call's result a `timeout` error.

use std::time::{Duration, Instant};

use crate::chat::Chat;
use domain::{CLIENT_TOOL_TIMEOUT, Message, MessageStatus, ReplyError, ToolError, UserId, answer_pending};
use store::{Miss, ReplyEnd, StoreError};

/// The lease a process without the model's configuration judges by (the hourly job): the longest
/// `REPLY_LEASE_SECS` allows, so it never takes a live reply for dead whatever the setting.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// What the hourly job's pass over `by_lease` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseReport {
    /// Replies the pass found streaming or unfinished.
    pub replies_leased: u64,
    /// Replies it ended because their lease had passed.
    pub replies_interrupted: u64,
    /// False when the pass stopped for time; the next run carries on.
    pub finished: bool,
}

impl Chat {
    /// How long a streaming reply's lease lasts.
    pub fn lease(&self) -> Duration {
        self.replies.as_deref().map_or(DEFAULT_LEASE, |replies| Duration::from_secs(replies.config.lease_secs))
    }

    /// `message` as it stands once its lease is looked at: a streaming reply whose lease passed
    /// is ended (see the module); anything else comes back as it is.
    pub async fn unstuck(&self, user: &UserId, message: Message) -> Result<Message, StoreError> {
        let now = self.clock.now();
        let lease = self.lease();
        if !message.lease_expired(now, lease) {
            return Ok(message);
        }
        let (session_id, seq) = (message.session_id, message.seq);
        let end = if message.status == MessageStatus::RequiresAction {
            paused_end(&message, now)
        } else {
            lease_end(&message, now, lease)
        };
        match self.store.finish_reply(user, &message, end).await {
            Ok(ended) => {
                tracing::info!(%session_id, %seq, status = ended.status.as_str(), "ended a reply whose lease passed");
                Ok(ended)
            }
            // Another reader ended it first, or its generator was alive after all: as it is now.
            Err(StoreError::Miss(Miss::Replaced)) => {
                Ok(self.store.reply_state(session_id, seq).await?.unwrap_or(message))
            }
            Err(error) => Err(error),
        }
    }

    /// Ends, among `messages`, the replies whose lease passed (those a new reply's context met);
    /// a failure is logged: the next reader or the job tries again.
    pub(super) async fn unstick_all(&self, user: &UserId, messages: Vec<Message>) {
        for message in messages {
            if let Err(error) = self.unstuck(user, message).await {
                tracing::warn!(error = %error, "a reply whose lease passed could not be ended");
            }
        }
    }

    /// The hourly job's pass: every reply in `by_lease` whose lease passed is ended, until
    /// `budget` is spent.
    pub async fn end_interrupted_replies(&self, budget: Duration) -> Result<LeaseReport, StoreError> {
        let started = Instant::now();
        let mut report = LeaseReport::default();
        for leased in self.store.leased_replies().await? {
            if started.elapsed() > budget {
                return Ok(report);
            }
            report.replies_leased += 1;
            let Some(message) = self.store.reply_state(leased.session_id, leased.seq).await? else { continue };
            if message.lease_expired(self.clock.now(), self.lease()) {
                let ended = self.unstuck(&leased.user, message).await?;
                report.replies_interrupted += u64::from(ended.lease.is_none());
            }
        }
        report.finished = true;
        Ok(report)
    }
}

/// The end of a streaming reply whose generator is gone: its last checkpoint kept (`incomplete`),
/// or `failed` without any output (its quota unit given back).
fn lease_end(message: &Message, now: domain::Timestamp, lease: Duration) -> ReplyEnd {
    // Tool calls stored are output too (each with its result).
    let text = !message.content.as_str().is_empty() || !message.parts.is_empty();
    ReplyEnd {
        content: message.content.clone(),
        parts: message.parts.clone(),
        status: if text { MessageStatus::Incomplete } else { MessageStatus::Failed },
        stop_reason: Some("interrupted".to_owned()),
        usage: None,
        error: (!text).then(|| ReplyError {
            code: "llm_error".to_owned(),
            message: "the reply's generation stopped before it had any text; regenerate it".to_owned(),
            retryable: true,
            retry_after: None,
        }),
        // A cancelled reply keeps its unit, as it does when its generator ends it.
        refund: match (text, message.status) {
            (false, MessageStatus::Streaming) => message.lease.as_ref().and_then(|lease| lease.counted_in.clone()),
            _ => None,
        },
        written_before: Some(domain::Timestamp::from_datetime(now.datetime() - lease)),
    }
}

/// The end of a paused reply whose client never answered (`CLIENT_TOOL_TIMEOUT`): `incomplete`,
/// each unanswered call's result a `timeout` error, so no call is left without its result.
fn paused_end(message: &Message, now: domain::Timestamp) -> ReplyEnd {
    let error =
        ToolError::new("timeout", format!("the client did not answer within {} s", CLIENT_TOOL_TIMEOUT.as_secs()));
    let parts = answer_pending(&message.parts, &error);
    ReplyEnd {
        content: message.content.clone(),
        parts,
        status: MessageStatus::Incomplete,
        stop_reason: Some("timeout".to_owned()),
        usage: message.usage.clone(),
        error: None,
        refund: None,
        written_before: Some(domain::Timestamp::from_datetime(now.datetime() - CLIENT_TOOL_TIMEOUT)),
    }
}
