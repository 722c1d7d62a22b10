//! The stream fan-out: each change record of the messages, sessions and memories tables becomes the event
//! the session's sockets receive. The same code runs on AWS (the `fanout` function, fed by the
//! tables' streams) and locally (the dev server, fed by DynamoDB Local's streams).

use domain::{Hidden, ServerEvent};
use store::StoreError;
use store::stream::{Image, Recorded, memory_record, message_record, session_record};

use super::Delivery;

/// Which table a change record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Messages,
    Sessions,
    Memories,
}

/// One change record: the item before and after.
#[derive(Clone, Debug)]
pub struct Record {
    pub source: Source,
    pub old: Option<Image>,
    pub new: Option<Image>,
}

impl Record {
    /// What the record says happened, in order.
    pub fn recorded(self) -> Result<Vec<Recorded>, StoreError> {
        match self.source {
            Source::Messages => Ok(message_record(self.old, self.new)?.into_iter().collect()),
            Source::Sessions => session_record(self.old, self.new),
            Source::Memories => Ok(memory_record(self.old, self.new)?.into_iter().collect()),
        }
    }
}

/// The event a recorded change is announced with.
fn event_of(recorded: Recorded) -> ServerEvent {
    match recorded {
        Recorded::MessageNew(message) => ServerEvent::MessageNew {
            session_id: message.session_id,
            seq: message.seq,
            rev: message.rev,
            message: Some(message),
        },
        Recorded::MessageUpdated(message) => ServerEvent::MessageUpdated {
            session_id: message.session_id,
            seq: message.seq,
            rev: message.rev,
            message: Some(message),
        },
        Recorded::MessageDeleted { session_id, seq, rev } => {
            ServerEvent::MessageDeleted { session_id, rev, hidden: Hidden::Seqs { seqs: vec![seq] } }
        }
        Recorded::Cleared { session_id, through_seq, rev } => {
            ServerEvent::MessageDeleted { session_id, rev, hidden: Hidden::Through { through_seq } }
        }
        Recorded::SessionUpdated(session) => {
            ServerEvent::SessionUpdated { session_id: session.id, rev: session.rev, session }
        }
        Recorded::MemoryNew { session_id, memory } => ServerEvent::MemoryNew { session_id, memory },
        Recorded::MemoryUpdated { session_id, memory } => ServerEvent::MemoryUpdated { session_id, memory },
        Recorded::MemoryDeleted { session_id, memory_id } => ServerEvent::MemoryDeleted { session_id, memory_id },
    }
}

impl Delivery {
    /// Delivers a batch of change records, in order, to the connections of their sessions. A
    /// record that cannot be read is logged and skipped (it is not retried: a corrupt image stays
    /// corrupt); the change itself is in the feed, which `sync` serves.
    pub async fn fan_out(&self, records: Vec<Record>) -> usize {
        let mut delivered = 0;
        for record in records {
            let source = record.source;
            match record.recorded() {
                Ok(recorded) => {
                    for change in recorded {
                        let session_id = change.session_id();
                        let event = event_of(change).fitted();
                        delivered += self.broadcast(session_id, &event).await;
                    }
                }
                Err(error) => tracing::error!(?source, error = %error, "a change record could not be read"),
            }
        }
        delivered
    }
}
