//! Which guardian instances are running, so that they share the partitions evenly.
//!
//! There is one member slot per partition, `member.<slot>` in the `guardian_state` bucket (more
//! instances than partitions could hold nothing anyway). An instance claims a free or dead slot
//! and rewrites it every time it looks at the partitions; it reads the others' slots one key at
//! a time (direct gets: no consumer, so a cluster node that is gone cannot stall the read).
//! Like a lease, a member is judged on this instance's own monotonic clock: it is alive while
//! its slot's revision keeps changing, and counted dead once the revision has stayed the same
//! for a whole `ttl` (then its slot may be claimed). A newcomer counts at once. An instance
//! always counts itself, slot or not.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::lease::Bucket;

/// Prefix of the member slots.
pub const KEY_PREFIX: &str = "member.";

fn slot_key(slot: u32) -> String {
    format!("{KEY_PREFIX}{slot}")
}

/// This instance's membership, and what it has seen of the others.
pub struct Members {
    kv: Bucket,
    slots: u32,
    value: Vec<u8>,
    ttl: Duration,
    /// The slot this instance holds, and the revision it last wrote.
    mine: Option<(u32, u64)>,
    /// Per other slot: the revision last seen and when this instance first saw it.
    seen: HashMap<u32, (u64, Instant)>,
}

/// What one look at a slot found.
enum Slot {
    Live,
    /// Free (never written, or left), or dead (at this revision): it may be claimed.
    Claimable(Option<u64>),
    Unreadable,
}

impl Members {
    /// A member among `slots` slots, named `holder` in its slot's value; it claims a slot at
    /// its first [`Members::renew_and_count`].
    pub fn new(kv: Bucket, slots: u32, holder: &str, ttl: Duration) -> Self {
        let value = serde_json::to_vec(&serde_json::json!({ "holder": holder }))
            .expect("a member record serializes");
        Self {
            kv,
            slots: slots.max(1),
            value,
            ttl,
            mine: None,
            seen: HashMap::new(),
        }
    }

    /// Renews (or claims) this instance's slot and counts the live members, this one included.
    pub async fn renew_and_count(&mut self) -> usize {
        if let Some((slot, revision)) = self.mine {
            match self
                .kv
                .update(&slot_key(slot), self.value.clone(), revision)
                .await
            {
                Ok(revision) => self.mine = Some((slot, revision)),
                Err(e) if e.is_conflict() => {
                    tracing::warn!(
                        slot,
                        "another instance took this instance's member slot; claiming another"
                    );
                    self.mine = None;
                }
                Err(e) => {
                    tracing::warn!(slot, error = %e, "could not renew this instance's member slot; the others may count it out")
                }
            }
        }
        let mut live = 1;
        let mut claimable = Vec::new();
        for slot in 0..self.slots {
            if self.mine.is_some_and(|(mine, _)| mine == slot) {
                continue;
            }
            match self.look(slot).await {
                Slot::Live => live += 1,
                Slot::Claimable(revision) => claimable.push((slot, revision)),
                Slot::Unreadable => {}
            }
        }
        if self.mine.is_none() {
            self.claim(claimable).await;
        }
        live
    }

    async fn look(&mut self, slot: u32) -> Slot {
        let entry = match self.kv.entry(&slot_key(slot)).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::debug!(slot, error = %e, "could not read a member slot");
                return Slot::Unreadable;
            }
        };
        let Some(entry) = entry.filter(|e| e.value.is_some()) else {
            self.seen.remove(&slot);
            return Slot::Claimable(None);
        };
        let now = Instant::now();
        let since = match self.seen.get(&slot) {
            Some(&(revision, since)) if revision == entry.revision => since,
            _ => now,
        };
        self.seen.insert(slot, (entry.revision, since));
        if now - since < self.ttl {
            Slot::Live
        } else {
            Slot::Claimable(Some(entry.revision))
        }
    }

    async fn claim(&mut self, claimable: Vec<(u32, Option<u64>)>) {
        for (slot, revision) in claimable {
            let key = slot_key(slot);
            let claimed = match revision {
                None => self.kv.create(&key, self.value.clone()).await,
                Some(revision) => self.kv.update(&key, self.value.clone(), revision).await,
            };
            if let Ok(revision) = claimed {
                tracing::info!(slot, "holding a member slot");
                self.seen.remove(&slot);
                self.mine = Some((slot, revision));
                return;
            }
        }
    }

    /// Frees this instance's slot.
    pub async fn leave(self) {
        if let Some((slot, revision)) = self.mine {
            if let Err(e) = self.kv.delete_at(&slot_key(slot), revision).await {
                tracing::warn!(slot, error = %e, "could not free this instance's member slot; the others count it out after the ttl");
            }
        }
    }
}

/// The partitions an instance should hold: an even share of `count` among `live` members,
/// rounded up so that every partition has a holder.
pub fn fair_share(count: u32, live: usize) -> usize {
    let live = live.max(1);
    (count as usize).div_ceil(live)
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn the_shares_cover_every_partition() {
        assert_eq!(fair_share(4, 1), 4);
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(4, 5), 1);
        assert_eq!(fair_share(1, 0), 1);
    }
}
