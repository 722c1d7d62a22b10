//! Does history length change what an append or a "latest 50" read costs? Sessions are seeded to
//! each history length through the store, then one client alternates appends and reads over HTTP.

use std::time::Instant;

use shared::domain::{Content, MessageType, NewMessage, Role, SessionId, UserId};

use crate::BoxError;
use crate::ops::{message, text};
use crate::server::{Api, Served, token};
use crate::stats::{Percentiles, ServerSide};

pub struct Point {
    pub history: u64,
    /// Appends measured per session: the history stays within `history..2 × history`.
    pub per_session: usize,
    pub sessions: usize,
    pub seed_secs: f64,
    pub append: Measured,
    pub latest: Measured,
}

pub struct Measured {
    pub client: Percentiles,
    pub server: ServerSide,
}

impl Measured {
    fn of(latencies: Vec<std::time::Duration>, served: &[Served]) -> Result<Self, BoxError> {
        Ok(Self { client: Percentiles::new(latencies), server: ServerSide::of(served).ok_or("nothing served")? })
    }
}

pub async fn run(api: &Api, histories: &[u64], ops: usize) -> Result<Vec<Point>, BoxError> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut points = Vec::with_capacity(histories.len());
    for &history in histories {
        let per_session = ops.min(usize::try_from(history)?).max(1);
        let sessions = ops.div_ceil(per_session);
        let user_name = format!("scale-{run}-{history}");
        let user = UserId::parse(&user_name).ok_or("user id")?;
        let seeding = Instant::now();
        let mut seeded = tokio::task::JoinSet::new();
        for _ in 0..sessions {
            let (state, user) = (api.state.clone(), user.clone());
            seeded.spawn(async move { seed(&state, &user, history).await });
        }
        let mut ids = Vec::with_capacity(sessions);
        while let Some(id) = seeded.join_next().await {
            ids.push(id??);
        }
        let seed_secs = seeding.elapsed().as_secs_f64();
        eprintln!("history {history}: seeded {sessions} session(s) in {seed_secs:.1} s");

        let token = token(&user_name)?;
        api.discard_served();
        let (mut appends, mut reads) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
        let (mut append_served, mut read_served) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
        for (s, session) in ids.iter().enumerate() {
            let messages = format!("/v1/sessions/{session}/messages");
            for k in 0..per_session.min(ops - s * per_session) {
                let body = message(usize::try_from(history)? + k);
                appends.push(api.call(&token, "POST", &messages, Some(&body)).await?.latency);
                append_served.extend(api.take_served().await?);
                let latest = format!("{messages}?order=desc&limit=50");
                reads.push(api.call(&token, "GET", &latest, None).await?.latency);
                read_served.extend(api.take_served().await?);
            }
        }
        points.push(Point {
            history,
            per_session,
            sessions,
            seed_secs,
            append: Measured::of(appends, &append_served)?,
            latest: Measured::of(reads, &read_served)?,
        });
    }
    Ok(points)
}

/// A new session of `history` alternating ~300-byte messages, written 20 to a transaction.
async fn seed(state: &shared::AppState, user: &UserId, history: u64) -> Result<SessionId, BoxError> {
    let session = state.store.create_session(user, Default::default(), None).await?.id;
    let mut seeded = 0;
    while seeded < history {
        let batch = (seeded..(seeded + 20).min(history))
            .map(|i| {
                Ok(NewMessage {
                    role: if i.is_multiple_of(2) { Role::User } else { Role::Assistant },
                    message_type: MessageType::default(),
                    content: Content::parse(text(usize::try_from(i)?))?,
                    payload: None,
                    reply_to: None,
                    usage: None,
                    reply: None,
                    agent: None,
                    routing: None,
                    routing_usage: None,
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        seeded += batch.len() as u64;
        state.store.append_messages(user, session, batch, None, None).await?;
    }
    Ok(session)
}
