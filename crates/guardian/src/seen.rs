//! Event ids guardian has handled and no group record holds any more (the group ended, or the
//! event was never held by one: a resolving event), bounded in memory and in the key-value
//! bucket.
//! Pure code, no I/O: it says which key to write or delete, the store does it.
//!
//! Ids are kept oldest first in chunks of [`CHUNK_SIZE`]. Chunk `n` is stored under the key
//! `seen.<n mod slots>`, so the bucket never holds more than `slots` of these keys however many
//! ids pass: when a new chunk needs the slot of the oldest one, that oldest chunk is evicted
//! (its ids are forgotten) and the key is overwritten. Chunks whose newest id is older than the
//! time to live are dropped and their keys deleted (nats-server 2.9 has no per-key TTL).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Ids per chunk: remembering one id rewrites at most this many.
pub const CHUNK_SIZE: usize = 64;
/// Key prefix of the chunks in the bucket.
pub const KEY_PREFIX: &str = "seen.";

/// One stored chunk: its sequence number and `(event id, handled at, unix ms)` pairs, oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenChunk {
    pub seq: u64,
    pub ids: Vec<(Uuid, i64)>,
}

impl SeenChunk {
    fn newest(&self) -> i64 {
        self.ids.last().map(|(_, at)| *at).unwrap_or(i64::MIN)
    }
}

/// A chunk to write (under `key`) before [`SeenIds::commit`] makes the insert visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenWrite {
    pub key: String,
    pub chunk: SeenChunk,
}

/// What [`SeenIds::restore`] found in the bucket that must be fixed.
#[derive(Debug, Default)]
pub struct SeenRestore {
    /// Keys of chunks that are expired, out of the ring, or stored under a layout that no longer
    /// applies (the cap changed): delete them.
    pub stale_keys: Vec<String>,
    /// Ids of chunks under an old layout, to insert again (each insert is a write).
    pub reinsert: Vec<(Uuid, i64)>,
}

/// The bounded set of handled event ids.
#[derive(Debug, Clone)]
pub struct SeenIds {
    slots: u64,
    ttl_ms: i64,
    chunks: VecDeque<SeenChunk>,
    index: HashMap<Uuid, u64>,
    next_seq: u64,
    evicted: u64,
    expired: u64,
}

impl SeenIds {
    /// Remembers up to `capacity` ids (rounded up to whole chunks) for `ttl_ms` each.
    pub fn new(capacity: usize, ttl_ms: i64) -> Self {
        let slots = capacity.div_ceil(CHUNK_SIZE).max(1) as u64;
        Self {
            slots,
            ttl_ms,
            chunks: VecDeque::new(),
            index: HashMap::new(),
            next_seq: 0,
            evicted: 0,
            expired: 0,
        }
    }

    /// The bucket key of chunk `seq`.
    pub fn key(&self, seq: u64) -> String {
        format!("{KEY_PREFIX}{}", seq % self.slots)
    }

    /// How many keys this set may use at most.
    pub fn slots(&self) -> u64 {
        self.slots
    }

    pub fn contains(&self, id: &Uuid) -> bool {
        self.index.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Ids forgotten because the cap was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Ids forgotten because they outlived the time to live.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// The chunk to write so that `id` is remembered; nothing changes until [`Self::commit`].
    pub fn plan_insert(&self, id: Uuid, at_ms: i64) -> SeenWrite {
        let chunk = match self.chunks.back() {
            Some(last) if last.ids.len() < CHUNK_SIZE => {
                let mut chunk = last.clone();
                chunk.ids.push((id, at_ms));
                chunk
            }
            _ => SeenChunk {
                seq: self.next_seq,
                ids: vec![(id, at_ms)],
            },
        };
        SeenWrite {
            key: self.key(chunk.seq),
            chunk,
        }
    }

    /// The chunks to write so that all of `ids` are remembered, in order (only the newest
    /// `capacity` of them if there are more). Apply each with [`Self::commit`], in order, once
    /// all are written.
    pub fn plan_insert_many(&self, ids: &[Uuid], at_ms: i64) -> Vec<SeenWrite> {
        let capacity = self.slots as usize * CHUNK_SIZE;
        let ids = &ids[ids.len().saturating_sub(capacity)..];
        let mut writes: Vec<SeenWrite> = Vec::new();
        let mut current = match self.chunks.back() {
            Some(last) if last.ids.len() < CHUNK_SIZE => last.clone(),
            _ => SeenChunk {
                seq: self.next_seq,
                ids: Vec::new(),
            },
        };
        for id in ids {
            if current.ids.len() == CHUNK_SIZE {
                let next = SeenChunk {
                    seq: current.seq + 1,
                    ids: Vec::new(),
                };
                let full = std::mem::replace(&mut current, next);
                writes.push(SeenWrite {
                    key: self.key(full.seq),
                    chunk: full,
                });
            }
            current.ids.push((*id, at_ms));
        }
        if !current.ids.is_empty() {
            writes.push(SeenWrite {
                key: self.key(current.seq),
                chunk: current,
            });
        }
        writes
    }

    /// Applies a written chunk. Returns how many ids were evicted to make room.
    pub fn commit(&mut self, write: SeenWrite) -> usize {
        let chunk = write.chunk;
        let seq = chunk.seq;
        for (id, _) in &chunk.ids {
            self.index.insert(*id, seq);
        }
        match self.chunks.back_mut() {
            Some(last) if last.seq == seq => *last = chunk,
            _ => {
                self.chunks.push_back(chunk);
                self.next_seq = seq + 1;
            }
        }
        // Chunks that share the new chunk's slot (or older) are overwritten in the bucket.
        let mut evicted = 0;
        while let Some(front) = self.chunks.front() {
            if front.seq + self.slots > seq {
                break;
            }
            let front = self.chunks.pop_front().expect("front exists");
            evicted += self.forget(&front);
        }
        self.evicted += evicted as u64;
        evicted
    }

    /// Drops the chunks whose newest id is older than the time to live; returns their keys
    /// (to delete) and how many ids went.
    pub fn expire(&mut self, now_ms: i64) -> (Vec<String>, usize) {
        let mut keys = Vec::new();
        let mut dropped = 0;
        while let Some(front) = self.chunks.front() {
            if front.newest() >= now_ms.saturating_sub(self.ttl_ms) {
                break;
            }
            let front = self.chunks.pop_front().expect("front exists");
            keys.push(self.key(front.seq));
            dropped += self.forget(&front);
        }
        self.expired += dropped as u64;
        (keys, dropped)
    }

    fn forget(&mut self, chunk: &SeenChunk) -> usize {
        let mut forgotten = 0;
        for (id, _) in &chunk.ids {
            if self.index.get(id) == Some(&chunk.seq) {
                self.index.remove(id);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Rebuilds the set from the chunks found in the bucket (`(key, chunk)`), dropping what
    /// expired and what no longer fits. Call on an empty set.
    pub fn restore(&mut self, stored: Vec<(String, SeenChunk)>, now_ms: i64) -> SeenRestore {
        let mut report = SeenRestore::default();
        let mut current = Vec::new();
        for (key, chunk) in stored {
            if chunk.ids.is_empty() || chunk.newest() < now_ms.saturating_sub(self.ttl_ms) {
                report.stale_keys.push(key);
            } else if key != self.key(chunk.seq) {
                report.reinsert.extend(chunk.ids.iter().copied());
                report.stale_keys.push(key);
            } else {
                current.push(chunk);
            }
        }
        current.sort_by_key(|c| c.seq);
        if let Some(newest) = current.last().map(|c| c.seq) {
            // Only the last `slots` sequence numbers can be live; older ones were overwritten
            // in spirit (a failed write can leave one behind).
            let (old, live): (Vec<_>, Vec<_>) = current
                .into_iter()
                .partition(|c| c.seq + self.slots <= newest);
            for chunk in old {
                let key = self.key(chunk.seq);
                if !live.iter().any(|c| self.key(c.seq) == key) {
                    report.stale_keys.push(key);
                }
            }
            for chunk in live {
                for (id, _) in &chunk.ids {
                    self.index.insert(*id, chunk.seq);
                }
                self.next_seq = chunk.seq + 1;
                self.chunks.push_back(chunk);
            }
        }
        report.reinsert.sort_by_key(|(_, at)| *at);
        report
            .reinsert
            .retain(|(id, _)| !self.index.contains_key(id));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn insert(set: &mut SeenIds, n: u128, at: i64) -> SeenWrite {
        let write = set.plan_insert(id(n), at);
        set.commit(write.clone());
        write
    }

    #[test]
    fn nothing_changes_before_commit() {
        let set = SeenIds::new(128, 1000);
        let write = set.plan_insert(id(1), 0);
        assert!(!set.contains(&id(1)));
        assert_eq!(write.key, "seen.0");
        assert_eq!(write.chunk.ids, vec![(id(1), 0)]);
    }

    #[test]
    fn many_ids_use_a_bounded_number_of_keys_and_evict_oldest_first() {
        let mut set = SeenIds::new(2 * CHUNK_SIZE, i64::MAX / 4);
        assert_eq!(set.slots(), 2);
        let mut keys = std::collections::BTreeSet::new();
        for n in 0..10_000u128 {
            keys.insert(insert(&mut set, n, n as i64).key);
            assert!(set.len() <= 2 * CHUNK_SIZE);
        }
        assert_eq!(keys.len(), 2, "{keys:?}");
        // The newest ids are remembered, the oldest evicted.
        assert!(set.contains(&id(9_999)));
        assert!(!set.contains(&id(0)));
        assert_eq!(set.evicted() as usize + set.len(), 10_000);
    }

    #[test]
    fn many_ids_at_once_fill_chunks_in_order() {
        let mut set = SeenIds::new(4 * CHUNK_SIZE, 1000);
        insert(&mut set, 0, 0);
        let ids: Vec<Uuid> = (1..=(2 * CHUNK_SIZE as u128)).map(id).collect();
        let writes = set.plan_insert_many(&ids, 5);
        assert_eq!(
            writes.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
            ["seen.0", "seen.1", "seen.2"]
        );
        assert_eq!(writes[0].chunk.ids.len(), CHUNK_SIZE);
        assert_eq!(writes[2].chunk.ids.len(), 1);
        for write in writes {
            set.commit(write);
        }
        assert_eq!(set.len(), 2 * CHUNK_SIZE + 1);
        // Same as inserting one by one.
        let mut single = SeenIds::new(4 * CHUNK_SIZE, 1000);
        insert(&mut single, 0, 0);
        for n in 1..=(2 * CHUNK_SIZE as u128) {
            insert(&mut single, n, 5);
        }
        assert_eq!(single.chunks, set.chunks);
        // More than fit: only the newest are planned.
        let many: Vec<Uuid> = (0..(10 * CHUNK_SIZE as u128)).map(id).collect();
        let writes = set.plan_insert_many(&many, 6);
        let planned: usize = writes.iter().map(|w| w.chunk.ids.len()).sum();
        assert!(planned <= 5 * CHUNK_SIZE, "{planned}");
        assert_eq!(
            writes.last().unwrap().chunk.ids.last().unwrap().0,
            id(10 * CHUNK_SIZE as u128 - 1)
        );
    }

    #[test]
    fn ids_expire_after_their_time_to_live() {
        let mut set = SeenIds::new(1000, 100);
        for n in 0..(CHUNK_SIZE as u128 + 1) {
            insert(&mut set, n, 0);
        }
        insert(&mut set, 500, 150);
        let (keys, dropped) = set.expire(160);
        assert_eq!(keys, vec!["seen.0".to_string()]);
        assert_eq!(dropped, CHUNK_SIZE);
        assert!(set.contains(&id(500)) && set.contains(&id(CHUNK_SIZE as u128)));
        let (keys, _) = set.expire(1000);
        assert_eq!(keys, vec!["seen.1".to_string()]);
        assert!(set.is_empty());
        // After everything expired, new chunks continue the sequence.
        assert_eq!(insert(&mut set, 9, 1000).key, "seen.2");
    }

    #[test]
    fn restore_rebuilds_and_reports_stale_keys() {
        let mut set = SeenIds::new(3 * CHUNK_SIZE, 10_000);
        let mut stored = std::collections::BTreeMap::new();
        for n in 0..(5 * CHUNK_SIZE as u128) {
            let write = insert(&mut set, n, 1000 + n as i64);
            stored.insert(write.key.clone(), write.chunk);
        }
        let mut restored = SeenIds::new(3 * CHUNK_SIZE, 10_000);
        let report = restored.restore(stored.clone().into_iter().collect(), 2000);
        assert!(report.stale_keys.is_empty() && report.reinsert.is_empty());
        assert_eq!(restored.len(), set.len());
        assert!(restored.contains(&id(5 * CHUNK_SIZE as u128 - 1)));
        assert_eq!(
            restored.plan_insert(id(99_999), 3000).key,
            set.plan_insert(id(99_999), 3000).key
        );

        // A smaller cap: chunks under the old layout are re-inserted and their keys deleted.
        let mut smaller = SeenIds::new(2 * CHUNK_SIZE, 10_000);
        let report = smaller.restore(stored.clone().into_iter().collect(), 2000);
        assert!(!report.stale_keys.is_empty());
        assert!(report.reinsert.windows(2).all(|w| w[0].1 <= w[1].1));

        // Everything expired: all keys are stale.
        let mut late = SeenIds::new(3 * CHUNK_SIZE, 10);
        let report = late.restore(stored.into_iter().collect(), 1_000_000);
        assert_eq!(report.stale_keys.len(), 3);
        assert!(late.is_empty());
    }
}
