//! The per-connection prepared-statement cache (a small bounded LRU).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_postgres::types::Type;
use tokio_postgres::Statement;

/// Hit and miss counts of prepared-statement caches.
///
/// [`Client::statement_cache_stats`](super::Client::statement_cache_stats)
/// reports one connection; [`PgManager::statement_cache_stats`](super::PgManager::statement_cache_stats)
/// the total over every connection the manager ever created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatementCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to prepare the statement on the server.
    pub misses: u64,
    /// Entries dropped to keep the cache within its capacity.
    pub evictions: u64,
    /// Entries dropped because the server reported them stale
    /// ("cached plan must not change result type").
    pub invalidations: u64,
    /// Statements currently cached (for one connection; for a manager, summed
    /// over live and dropped connections is meaningless, so it is 0 there).
    pub len: usize,
}

/// Counters shared by every connection of a manager.
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    pub(crate) generation: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) invalidations: AtomicU64,
}

impl SharedCounters {
    pub(crate) fn stats(&self) -> StatementCacheStats {
        StatementCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            len: 0,
        }
    }
}

#[derive(Debug)]
struct Entry {
    types: Vec<Type>,
    statement: Statement,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Lru {
    /// query text -> entries for each distinct parameter-type list.
    map: HashMap<String, Vec<Entry>>,
    len: usize,
    tick: u64,
    generation: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    invalidations: u64,
}

impl Lru {
    fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .map
            .iter()
            .flat_map(|(query, entries)| {
                entries
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| (e.last_used, query, i))
            })
            .min_by_key(|(last_used, _, _)| *last_used)
            .map(|(_, query, i)| (query.clone(), i));
        if let Some((query, i)) = oldest {
            if let Some(entries) = self.map.get_mut(&query) {
                entries.swap_remove(i);
                if entries.is_empty() {
                    self.map.remove(&query);
                }
                self.len -= 1;
                self.evictions += 1;
            }
        }
    }
}

/// A bounded LRU of prepared statements, owned by one connection.
///
/// Uses a `std::sync::Mutex` that is never held across an `.await`, so the
/// cache can be used through `&self` (also from inside a transaction). It is
/// not on the pool's acquire/release path: only `prepare_cached` and
/// `clear_statement_caches` take it, for the one connection that owns the
/// cache, whose single user holds it checked out, so it is uncontended. (A
/// lock-free map would buy nothing there and cost an LRU that is no longer
/// exact.)
#[derive(Debug)]
pub(crate) struct StatementCache {
    capacity: usize,
    lru: Mutex<Lru>,
    shared: Arc<SharedCounters>,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize, shared: Arc<SharedCounters>) -> Self {
        let generation = shared.generation.load(Ordering::Acquire);
        StatementCache {
            capacity,
            lru: Mutex::new(Lru {
                generation,
                ..Lru::default()
            }),
            shared,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // A panic while holding this lock can only come from an allocation
        // failure; the data is still consistent, so recover it.
        let mut guard = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.shared.generation.load(Ordering::Acquire);
        if guard.generation != generation {
            guard.generation = generation;
            guard.clear();
        }
        guard
    }

    /// Looks a statement up, counting a hit when found.
    pub(crate) fn get(&self, query: &str, types: &[Type]) -> Option<Statement> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let found = lru
            .map
            .get_mut(query)
            .and_then(|entries| entries.iter_mut().find(|e| e.types == types))
            .map(|e| {
                e.last_used = tick;
                e.statement.clone()
            });
        if found.is_some() {
            lru.hits += 1;
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Records a miss and stores a freshly prepared statement.
    pub(crate) fn insert(&self, query: &str, types: &[Type], statement: Statement) {
        let mut lru = self.lock();
        lru.misses += 1;
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        if self.capacity == 0 {
            return;
        }
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(entry) = lru
            .map
            .get_mut(query)
            .and_then(|entries| entries.iter_mut().find(|e| e.types == types))
        {
            // Prepared concurrently by another future on this connection.
            entry.statement = statement;
            entry.last_used = tick;
            return;
        }
        let before = lru.evictions;
        while lru.len >= self.capacity {
            lru.evict_oldest();
        }
        let evicted = lru.evictions - before;
        if evicted > 0 {
            self.shared.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        lru.map.entry(query.to_owned()).or_default().push(Entry {
            types: types.to_vec(),
            statement,
            last_used: tick,
        });
        lru.len += 1;
    }

    /// Drops one entry the server reported stale.
    pub(crate) fn invalidate(&self, query: &str, types: &[Type]) {
        let mut lru = self.lock();
        let mut removed = false;
        if let Some(entries) = lru.map.get_mut(query) {
            if let Some(i) = entries.iter().position(|e| e.types == types) {
                entries.swap_remove(i);
                removed = true;
            }
            if entries.is_empty() {
                lru.map.remove(query);
            }
        }
        if removed {
            lru.len -= 1;
            lru.invalidations += 1;
            self.shared.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Empties this cache.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn stats(&self) -> StatementCacheStats {
        let lru = self.lock();
        StatementCacheStats {
            hits: lru.hits,
            misses: lru.misses,
            evictions: lru.evictions,
            invalidations: lru.invalidations,
            len: lru.len,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}
