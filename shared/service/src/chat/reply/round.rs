//! A group round (`mode: "all"`): after the turn's first reply, each further agent of the session
//! answers in turn. A reply is appended only when the one before it has ended, so each agent's
//! context holds the answers before its own, and nothing waits in the log: a round whose process
//! dies leaves the replies it wrote, none `streaming` past its lease, and no agent half-started.
//! The user's message counted one quota unit; the further replies count none. A reply that is
//! cancelled or fails ends the round (a cancel is the whole turn's). The round shares one time
//! cap (`LLM_REPLY_TIMEOUT_SECS`, from the request): each reply ends by it, and no agent starts
//! past it — so a round fits the function that runs it as one reply does.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::agents::Speaker;
use super::{Progress, ReplyFailure, Turn, placeholder};
use crate::chat::Chat;
use domain::{MessageStatus, ReplyOptions, SessionId, UserId};

impl Chat {
    /// Runs the rest of a round after the reply `first` follows; the receiver gets each further
    /// reply as it starts, and closes when the round ends. The round goes on without a receiver
    /// (a caller that went away does not stop it).
    pub(super) fn continue_round(
        &self,
        user: &UserId,
        session_id: SessionId,
        options: ReplyOptions,
        rest: Vec<Speaker>,
        first: watch::Receiver<Progress>,
        requested_at: Instant,
    ) -> mpsc::UnboundedReceiver<Turn> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (chat, user) = (self.clone(), user.clone());
        tokio::spawn(async move {
            let mut previous = first;
            for speaker in rest {
                let Ok((ended, _)) = Progress::end(&mut previous).await else { return };
                if matches!(
                    ended.status,
                    MessageStatus::Cancelled | MessageStatus::Failed | MessageStatus::RequiresAction
                ) {
                    tracing::info!(%session_id, seq = %ended.seq, status = ended.status.as_str(), "the round ends early");
                    return;
                }
                let Ok(replies) = chat.replies() else { return };
                if Instant::now() >= requested_at + Duration::from_secs(replies.config.reply_timeout_secs) {
                    tracing::info!(%session_id, "the round reached its time cap");
                    return;
                }
                match chat.next_in_round(&user, session_id, &options, speaker, requested_at).await {
                    Ok(turn) => {
                        previous = turn.progress.clone();
                        let _ = sender.send(turn);
                    }
                    Err(error) => {
                        tracing::warn!(%session_id, %error, "the round's next reply could not start");
                        return;
                    }
                }
            }
        });
        receiver
    }

    /// The next agent's reply: its placeholder appended (no user message, no quota unit), its
    /// context read beside, generated like any reply.
    async fn next_in_round(
        &self,
        user: &UserId,
        session_id: SessionId,
        options: &ReplyOptions,
        speaker: Speaker,
        requested_at: Instant,
    ) -> Result<Turn, ReplyFailure> {
        let mut generation = self.generation_for(options, &speaker)?;
        generation.requested_at = requested_at;
        let generation = self.admitted(generation).await?;
        let messages = vec![placeholder(&generation, &speaker)];
        let mut turn = self.start(user, session_id, messages, generation, speaker, None).await?;
        turn.quota = None;
        Ok(turn)
    }
}
