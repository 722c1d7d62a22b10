//! Per-user admission to the write path inside one process.
//!
//! Every append of a user touches two contended items: the session summary (the seq guard) and
//! the user's quota counter. Writers racing on those items inside one process only cancel each
//! other's transactions, and the loser of a race can lose again and again while newer writers win.
//! So each process lets one write per user run at a time, in arrival order (tokio's mutex is
//! FIFO-fair): inside a process nobody starves, and across processes the contenders for an item
//! are at most the number of processes, each retrying at once from the state the cancellation
//! returned.
//!
//! A turn is waited for at most `PATIENCE`: a holder that slow means the database is struggling
//! (an outage, throttling), and queueing every other write of the user behind its timeouts would
//! only stack their latencies; past it a writer goes ahead and races as before.
//!
//! The gates are a fixed set of stripes chosen by a hash of the user id: memory stays bounded and
//! no entry needs cleaning up. Two users on one stripe merely queue behind each other inside this
//! process; with `STRIPES` stripes that is rare, and a Lambda instance serves one request at a time.

use std::hash::BuildHasher;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use domain::UserId;

const STRIPES: usize = 256;
const PATIENCE: Duration = Duration::from_secs(1);

pub(crate) struct WriteGates {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for WriteGates {
    fn default() -> Self {
        Self { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(), hasher: Default::default() }
    }
}

impl WriteGates {
    /// Waits for this user's turn (at most `PATIENCE`); the turn lasts as long as the guard.
    pub(crate) async fn enter(&self, user: &UserId) -> Option<MutexGuard<'_, ()>> {
        let index = self.stripe(user);
        tokio::time::timeout(PATIENCE, self.stripes[index].lock()).await.ok()
    }

    fn stripe(&self, user: &UserId) -> usize {
        (self.hasher.hash_one(user.as_str()) as usize) % self.stripes.len()
    }
}
