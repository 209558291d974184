//! Which guardian instances are running, so that they share the partitions evenly.
//!
//! Each instance keeps a key `member.<id>` in the `guardian_state` bucket and rewrites it every
//! time it looks at the partitions. Like a lease, a member is judged on this instance's own
//! monotonic clock: it is alive while its key's revision keeps changing, and counted dead once
//! the revision has stayed the same for a whole `ttl`. A newcomer counts at once. A key left by
//! an instance that died is deleted once it has been still for three times `ttl`.

use std::collections::HashMap;
use std::time::Duration;

use contracts::bus::RecordsError;
use tokio::time::Instant;

use crate::lease::Bucket;

/// Prefix of the member keys.
pub const KEY_PREFIX: &str = "member.";

/// Longest wait for reading the member keys.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// This instance's membership, and what it has seen of the others.
pub struct Members {
    kv: Bucket,
    key: String,
    value: Vec<u8>,
    ttl: Duration,
    /// Per other member key: the revision last seen and when it was first seen.
    seen: HashMap<String, (u64, Instant)>,
    /// The last count, kept when the bucket cannot be read.
    live: usize,
}

impl Members {
    /// Announces this instance (named `holder` in its key's value).
    pub async fn join(kv: Bucket, holder: &str, ttl: Duration) -> Result<Self, RecordsError> {
        let key = format!("{KEY_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let value = serde_json::to_vec(&serde_json::json!({ "holder": holder }))
            .expect("a member record serializes");
        kv.put(&key, value.clone()).await?;
        tracing::info!(member = key, %holder, "joined the guardian instances");
        Ok(Self {
            kv,
            key,
            value,
            ttl,
            seen: HashMap::new(),
            live: 1,
        })
    }

    /// Renews this instance's key and counts the live members, this one included.
    pub async fn renew_and_count(&mut self) -> usize {
        if let Err(e) = self.kv.put(&self.key, self.value.clone()).await {
            tracing::warn!(member = self.key, error = %e, "could not renew this instance's member key; the others may count it out");
        }
        let entries = match self
            .kv
            .latest(&format!("{KEY_PREFIX}>"), READ_TIMEOUT)
            .await
        {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the member keys; keeping the last count");
                return self.live;
            }
        };
        let now = Instant::now();
        let mut live = 1;
        let mut present = HashMap::new();
        for entry in entries.into_iter().filter(|e| e.value.is_some()) {
            if entry.key == self.key {
                continue;
            }
            let since = match self.seen.get(&entry.key) {
                Some(&(revision, since)) if revision == entry.revision => since,
                _ => now,
            };
            let still_for = now - since;
            if still_for < self.ttl {
                live += 1;
            } else if still_for >= self.ttl * 3 {
                forget_dead(&self.kv, &entry.key, entry.revision).await;
                continue;
            }
            present.insert(entry.key, (entry.revision, since));
        }
        self.seen = present;
        self.live = live;
        live
    }

    /// Removes this instance's key.
    pub async fn leave(self) {
        if let Err(e) = self.kv.delete(&self.key).await {
            tracing::warn!(member = self.key, error = %e, "could not remove this instance's member key; the others count it out after the ttl");
        }
    }
}

/// Deletes a dead member's key, unless it was renewed meanwhile.
async fn forget_dead(kv: &Bucket, key: &str, revision: u64) {
    match kv.delete_at(key, revision).await {
        Ok(()) => {
            tracing::info!(
                member = key,
                "removed the key of a guardian instance that stopped renewing it"
            );
            if let Err(e) = kv.purge_history(key).await {
                tracing::debug!(member = key, error = %e, "could not purge the member key's delete marker");
            }
        }
        Err(e) => {
            tracing::debug!(member = key, error = %e, "a dead member's key changed before it could be removed")
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
