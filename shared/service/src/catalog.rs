//! The character catalog as an instance serves it: an in-memory snapshot, so listing, search and
//! lookups cost no database call. A snapshot older than `MAX_AGE` is checked against the catalog's
//! version item (one read), and the table is read again only when the version moved. On a server
//! the check runs in the background while requests keep using the snapshot; on Lambda (where a
//! task may not outlive the invocation) the request that finds it stale checks it first. An admin
//! write in this instance drops the snapshot at once.
//!
//! An instance that only needs a few characters (the messages function, for its gates and
//! prompts) looks them up one by one instead (`character`), each cached for `MAX_AGE`; it never
//! reads the whole catalog unless something asked for the snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use domain::{CatalogIndex, Character, CharacterId, Clock, Gate, InputError, Refusal, Timestamp};
use store::{Store, StoreError};

use crate::Runtime;

/// How stale a snapshot (or a cached character) may be before it is checked again.
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// Characters one instance caches by id before it starts over.
const CHARACTER_CACHE: usize = 10_000;

/// One read of the catalog.
pub struct Snapshot {
    pub index: CatalogIndex,
    pub version: u64,
    /// When the version was last confirmed.
    checked_at: Timestamp,
}

/// A character looked up by id (or its absence), and when it was read.
type Lookup = (Option<Arc<Character>>, Timestamp);

#[derive(Default)]
struct State {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Characters looked up by id when there is no snapshot: the character (or its absence) and
    /// when it was read.
    by_id: RwLock<HashMap<CharacterId, Lookup>>,
    /// One load at a time; requests without a snapshot wait for it.
    loading: tokio::sync::Mutex<()>,
    /// A background check is running.
    checking: AtomicBool,
}

/// The catalog service; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    store: Store,
    /// When snapshots and cached characters were read, and views are stamped.
    clock: Arc<dyn Clock>,
    runtime: Runtime,
    state: Arc<State>,
}

fn stale(at: Timestamp, now: Timestamp) -> bool {
    now.unix_seconds() - at.unix_seconds() >= MAX_AGE.as_secs() as i64
}

impl Catalog {
    pub fn new(store: Store, clock: Arc<dyn Clock>, runtime: Runtime) -> Self {
        Self { store, clock, runtime, state: Arc::default() }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.state.snapshot.read().ok().and_then(|snapshot| snapshot.clone())
    }

    /// The snapshot: loaded on first use. A stale one is checked — in the background on a
    /// server, first on Lambda — and served as it is if the check fails.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        if let Some(snapshot) = self.current() {
            if stale(snapshot.checked_at, self.clock.now()) {
                match self.runtime {
                    Runtime::Server => self.check_in_background(snapshot.clone()),
                    Runtime::Lambda => {
                        if let Err(error) = self.check(&snapshot).await {
                            tracing::warn!(error = %error, "catalog check failed; serving the snapshot as it is");
                        }
                        return Ok(self.current().unwrap_or(snapshot));
                    }
                }
            }
            return Ok(snapshot);
        }
        let _loading = self.state.loading.lock().await;
        if let Some(snapshot) = self.current() {
            return Ok(snapshot);
        }
        self.read_and_install().await
    }

    async fn read_and_install(&self) -> Result<Arc<Snapshot>, StoreError> {
        let read = self.store.read_catalog().await?;
        Ok(self.install(read.characters.into_iter().map(Arc::new).collect(), read.version))
    }

    /// Indexes `characters` as of now, confirmed at `version`, as the snapshot requests read.
    fn install(&self, characters: Vec<Arc<Character>>, version: u64) -> Arc<Snapshot> {
        let now = self.clock.now();
        let snapshot = Arc::new(Snapshot { index: CatalogIndex::build(characters, now), version, checked_at: now });
        if let Ok(mut slot) = self.state.snapshot.write() {
            *slot = Some(snapshot.clone());
        }
        snapshot
    }

    fn check_in_background(&self, snapshot: Arc<Snapshot>) {
        if self.state.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let catalog = self.clone();
        tokio::spawn(async move {
            if let Err(error) = catalog.check(&snapshot).await {
                tracing::warn!(error = %error, "catalog check failed; serving the snapshot as it is");
            }
            catalog.state.checking.store(false, Ordering::Release);
        });
    }

    /// Renews `snapshot`: the same characters when the version has not moved, else a fresh read.
    async fn check(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let version = self.store.catalog_version().await?;
        if version == snapshot.version {
            // Re-indexed as of now: `recommended` weighs the characters' ages.
            self.install(snapshot.index.characters().cloned().collect(), version);
        } else {
            self.read_and_install().await?;
        }
        Ok(())
    }

    /// One character, active or not: from the snapshot when this instance has one, else looked
    /// up by id and cached for `MAX_AGE`.
    pub async fn character(&self, id: &CharacterId) -> Result<Option<Arc<Character>>, StoreError> {
        if self.current().is_some() {
            return Ok(self.snapshot().await?.index.get(id).cloned());
        }
        let now = self.clock.now();
        let cached = self.state.by_id.read().ok().and_then(|cache| cache.get(id).cloned());
        if let Some((character, at)) = cached
            && !stale(at, now)
        {
            return Ok(character);
        }
        let character = self.store.get_character(id).await?.map(Arc::new);
        if let Ok(mut cache) = self.state.by_id.write() {
            if cache.len() >= CHARACTER_CACHE {
                cache.clear();
            }
            cache.insert(id.clone(), (character.clone(), now));
        }
        Ok(character)
    }

    /// Forgets everything read: the next read sees the catalog as it now is.
    pub fn invalidate(&self) {
        if let Ok(mut slot) = self.state.snapshot.write() {
            *slot = None;
        }
        if let Ok(mut cache) = self.state.by_id.write() {
            cache.clear();
        }
    }

    /// Adds a character (admin) and drops what this instance had read.
    pub async fn create(&self, character: &Character) -> Result<(), StoreError> {
        self.store.create_character(character).await?;
        self.invalidate();
        Ok(())
    }

    /// Replaces a character read at `read_at` (admin) and drops what this instance had read.
    pub async fn replace(&self, character: &Character, read_at: Timestamp) -> Result<(), StoreError> {
        self.store.replace_character(character, read_at).await?;
        self.invalidate();
        Ok(())
    }

    /// Changes a character read fresh from the table, and writes it back on the condition that
    /// nothing else wrote in between; a change that changes nothing (`change` answers `false`)
    /// writes nothing. 404 `character_not_found` for an unknown id.
    pub async fn update(
        &self,
        id: &CharacterId,
        change: impl FnOnce(&mut Character) -> Result<bool, InputError>,
    ) -> Result<Character, StoreError> {
        let mut character = self.store.get_character(id).await?.ok_or(Refusal::Gate(Gate::NotFound))?;
        let read_at = character.updated_at;
        if change(&mut character)? {
            character.updated_at = self.clock.now().max(read_at.plus(Duration::from_micros(1)));
            self.replace(&character, read_at).await?;
        }
        Ok(character)
    }

    /// The time the catalog's views are stamped with.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
