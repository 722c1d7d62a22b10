//! A reply as Server-Sent Events. Event ids count the reply's events: 1 is `reply.started`, then
//! its parts' events in order — each text's segments as `reply.delta`s (`domain::segments`), each
//! tool call and its result as `reply.tool_call` and `reply.tool_result` — and the closing
//! `reply.completed` or `reply.failed` comes last. The events are a pure function of the reply's
//! parts, which only grow, so a stream picked up again on any instance with `Last-Event-ID`
//! continues exactly where it left off.
//! A round's stream (`mode: "all"`) carries each reply's events in turn, each counted from its own
//! `reply.started`, so any of them resumes on its own seq's stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::stream::{self, StreamExt};
use shared::api::replies::{ReplyCompleted, ReplyDelta, ReplyFailed, ReplyStarted, ReplyToolCall, ReplyToolResult};
use shared::chat::{Progress, Turn};
use shared::domain::{Draft, Message, MessageStatus, Part, all_segments, segments};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

/// Idle proxies close quiet connections; a comment line this often keeps them open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a stream starts from.
pub struct Start {
    pub user_message: Option<Message>,
    pub assistant_message: Message,
    /// Events up to this id were received already (`Last-Event-ID`).
    pub after_id: u64,
}

struct State {
    progress: watch::Receiver<Progress>,
    assistant: Message,
    queued: VecDeque<Event>,
    next_id: u64,
    after_id: u64,
    /// Events of the reply's parts sent (or skipped as received) so far.
    parts_done: usize,
    ended: bool,
}

impl State {
    fn push(&mut self, name: &str, data: impl serde::Serialize) {
        let id = self.next_id;
        self.next_id += 1;
        if id <= self.after_id {
            return;
        }
        let event = Event::default().id(id.to_string()).event(name);
        let event = event.json_data(data).unwrap_or_else(|_| Event::default().comment("unserialisable event"));
        self.queued.push_back(event);
    }

    /// Sends the part events not sent yet; only those are built (this runs on every piece).
    fn push_parts(&mut self, draft: &Draft, ended: bool) {
        let seq = self.assistant.seq;
        let events = part_events(draft, ended);
        let count = events.len();
        for event in events.into_iter().skip(self.parts_done) {
            match event {
                PartEvent::Delta(text) => self.push("reply.delta", ReplyDelta { seq, text: text.to_owned() }),
                PartEvent::Tool(Part::ToolCall { id, name, arguments }) => {
                    let call = ReplyToolCall { seq, id: id.clone(), name: name.clone(), arguments: arguments.clone() };
                    self.push("reply.tool_call", call);
                }
                PartEvent::Tool(Part::ToolResult { tool_call_id, name, output, error }) => {
                    let result = ReplyToolResult {
                        seq,
                        tool_call_id: tool_call_id.clone(),
                        name: name.clone(),
                        output: output.clone(),
                        error: error.clone(),
                    };
                    self.push("reply.tool_result", result);
                }
                PartEvent::Tool(Part::Text { .. }) => {}
            }
        }
        self.parts_done = self.parts_done.max(count);
    }

    /// Turns the progress as it stands into the events not sent yet.
    fn observe(&mut self, progress: &Progress) {
        match progress {
            Progress::Streaming(draft) => self.push_parts(draft, false),
            // The calls the client must answer; the stream stays open for the rest.
            Progress::Paused(message) => {
                self.push_parts(&Draft::of_parts(&message.parts, message.content.as_str()), false)
            }
            Progress::Ended(message, quota) => {
                self.push_parts(&Draft::of_parts(&message.parts, message.content.as_str()), true);
                let assistant_message = message.as_ref().clone();
                match (&message.status, &message.error) {
                    (MessageStatus::Failed, Some(error)) => {
                        let error = error.clone();
                        self.push("reply.failed", ReplyFailed { assistant_message, error });
                    }
                    _ => {
                        let limits = *quota;
                        self.push("reply.completed", ReplyCompleted { assistant_message, limits });
                    }
                }
                self.ended = true;
            }
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let progress = self.progress.borrow_and_update().clone();
            self.observe(&progress);
            if self.queued.is_empty() && !self.ended && self.progress.changed().await.is_err() {
                // The generator is gone without an end: nothing more will come.
                let last = self.progress.borrow().clone();
                self.observe(&last);
                if !self.ended {
                    return None;
                }
            }
        }
    }
}

/// One event of a reply's parts: a piece of a text, or a call or a result.
enum PartEvent<'a> {
    Delta(&'a str),
    Tool(&'a Part),
}

/// The events of a reply's parts so far: each closed part's (a text's segments, a call, a result),
/// then the open text's complete segments — all of them once the reply has `ended`.
fn part_events(draft: &Draft, ended: bool) -> Vec<PartEvent<'_>> {
    let mut events = Vec::new();
    for part in &draft.closed {
        match part {
            Part::Text { text } => events.extend(all_segments(text).into_iter().map(PartEvent::Delta)),
            tool => events.push(PartEvent::Tool(tool)),
        }
    }
    let open = if ended { all_segments(&draft.text) } else { segments(&draft.text).0 };
    events.extend(open.into_iter().map(PartEvent::Delta));
    events
}

/// The reply's events from `start` on, as its `progress` goes; in a round (`mode: "all"`), then
/// each further reply's events in turn, from its own `reply.started`.
pub fn reply_events(
    start: Start,
    progress: watch::Receiver<Progress>,
    round: Option<UnboundedReceiver<Turn>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rest = stream::unfold(round, |round| async move {
        let mut round = round?;
        let turn = round.recv().await?;
        let start = Start { user_message: None, assistant_message: turn.assistant_message, after_id: 0 };
        Some((events_of(start, turn.progress), Some(round)))
    });
    let events = events_of(start, progress).chain(rest.flatten());
    Sse::new(events.map(Ok)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// One reply's events: ids count from 1 (its `reply.started`), as its resume stream counts them.
fn events_of(start: Start, progress: watch::Receiver<Progress>) -> impl Stream<Item = Event> {
    let mut state = State {
        progress,
        assistant: start.assistant_message.clone(),
        queued: VecDeque::new(),
        next_id: 1,
        after_id: start.after_id,
        parts_done: 0,
        ended: false,
    };
    let started = ReplyStarted { user_message: start.user_message, assistant_message: start.assistant_message };
    state.push("reply.started", started);
    stream::unfold(state, |mut state| async move { state.next().await.map(|event| (event, state)) })
}
