//! What this process last learned from DynamoDB (a session's `last_seq`, a user's profile or
//! quota use), kept as the guess the next conditional write starts from. Bounded: a full map is
//! emptied, which costs nothing worse than a miss.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Entries one map keeps before it starts over.
const CAPACITY: usize = 50_000;

pub struct Hints<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Hints<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Hints<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        self.0.lock().ok()?.get(key).cloned()
    }

    /// Stores `next(previous)`.
    pub fn update(&self, key: K, next: impl FnOnce(Option<&V>) -> V) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CAPACITY && !map.contains_key(&key) {
                map.clear();
            }
            let value = next(map.get(&key));
            map.insert(key, value);
        }
    }

    pub fn insert(&self, key: K, value: V) {
        self.update(key, |_| value);
    }

    pub fn remove(&self, key: &K) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(key);
        }
    }
}
