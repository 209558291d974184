//! One holder per partition of the group keys (see [`crate::partition`]).
//!
//! Correlation needs every event of a group in one process, so instances contend for each
//! partition's lease key (`p<index>.lease`) in the `guardian_state` bucket: the holder loads
//! the partition's state and consumes its durables; the others wait and take over when the
//! holder stops renewing (crash, network partition, shutdown).
//!
//! No wall clocks are compared: each instance measures on its own monotonic clock.
//! - The holder renews every `ttl / 4` (a compare-and-set on the lease's revision) and stops
//!   handling messages once `ttl / 2` has passed since it began its last successful renewal.
//! - A standby takes over only when the lease's revision has stayed the same for a whole `ttl`,
//!   counted from when it first saw that revision, which is after the holder began writing it.
//!
//! The `ttl / 2` between the two leaves room for the message in hand when the holder fences
//! itself. A holder that stops cleanly deletes the lease, so a standby takes over at its next
//! poll.

use std::time::Duration;

use contracts::buckets::GuardianState;
use contracts::bus::{Entry, Records};
use contracts::services::Guardian;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The key the lease lives under, below a partition's prefix (see [`crate::partition`]).
pub const LEASE_KEY: &str = "lease";

/// What the lease key holds (for operators reading the bucket; guardian only compares revisions).
#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    ttl_ms: u64,
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease was taken over by {holder}; this instance stopped handling messages")]
    TakenOver { holder: String },
    #[error("the lease could not be renewed within {0:?}; this instance stopped handling messages so a standby can take over")]
    Expired(Duration),
}

/// The bucket the lease lives in (guardian's state).
pub type Bucket = Records<Guardian, GuardianState>;

/// The lease, held by this instance.
pub struct Lease {
    kv: Bucket,
    key: String,
    holder: String,
    ttl: Duration,
    revision: u64,
    renewal_started: Instant,
}

impl Lease {
    /// Waits until this instance holds the lease: at once when nobody holds it, otherwise when
    /// the holder has not renewed it for `ttl`.
    pub async fn acquire(kv: Bucket, key: String, holder: String, ttl: Duration) -> Self {
        let mut standby = Standby::default();
        loop {
            if let Some(lease) = Self::try_acquire(&kv, &key, &holder, ttl, &mut standby).await {
                return lease;
            }
            tokio::time::sleep(ttl / 4).await;
        }
    }

    /// One attempt to take the lease under `key`: it is free, or its holder has not renewed it
    /// for `ttl` as `standby` has watched it (call again every `ttl / 4` or so).
    pub async fn try_acquire(
        kv: &Bucket,
        key: &str,
        holder: &str,
        ttl: Duration,
        standby: &mut Standby,
    ) -> Option<Self> {
        let started = Instant::now();
        let value = record(holder, ttl);
        let revision = try_take(kv, key, &value, standby, ttl).await?;
        tracing::info!(%holder, lease = key, "holding the lease");
        Some(Self {
            kv: kv.clone(),
            key: key.to_owned(),
            holder: holder.to_owned(),
            ttl,
            revision,
            renewal_started: started,
        })
    }

    /// The bucket revision of this instance's lease when it took it: the state it starts from
    /// must be at least that recent (see [`crate::store::StateStore::load_since`]).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Keeps the lease renewed in the background until [`LeaseKeeper::release`]; when it cannot,
    /// [`LeaseKeeper::lost`] fires.
    pub fn keep(self) -> LeaseKeeper {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.renew_until(lost.clone(), stop.clone()));
        LeaseKeeper { lost, stop, task }
    }

    async fn renew_until(
        mut self,
        lost: CancellationToken,
        stop: CancellationToken,
    ) -> (Self, Result<(), LeaseError>) {
        let fence_after = self.ttl / 2;
        let value = record(&self.holder, self.ttl);
        loop {
            // A ttl too long to add to the clock never fences.
            let fence_at = self
                .renewal_started
                .checked_add(fence_after)
                .unwrap_or_else(|| self.renewal_started + Duration::from_secs(86_400 * 365));
            tokio::select! {
                () = stop.cancelled() => return (self, Ok(())),
                () = tokio::time::sleep_until(fence_at) => {
                    lost.cancel();
                    return (self, Err(LeaseError::Expired(fence_after)));
                }
                () = tokio::time::sleep(self.ttl / 4) => {}
            }
            let started = Instant::now();
            let renewal = self.kv.update(&self.key, value.clone(), self.revision);
            match tokio::time::timeout_at(fence_at, renewal).await {
                Ok(Ok(revision)) => {
                    self.revision = revision;
                    self.renewal_started = started;
                }
                Ok(Err(e)) if e.is_conflict() => match self.reclaim(&value).await {
                    Ok(revision) => {
                        self.revision = revision;
                        self.renewal_started = started;
                    }
                    Err(holder) => {
                        lost.cancel();
                        return (self, Err(LeaseError::TakenOver { holder }));
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!(lease = self.key, error = %e, "renewing the lease failed; retrying");
                }
                Err(_) => {
                    lost.cancel();
                    return (self, Err(LeaseError::Expired(fence_after)));
                }
            }
        }
    }

    /// The lease key changed under this holder. When nobody holds it (the key or the whole
    /// bucket was removed), nobody took over: take it again. Otherwise: who holds it now.
    async fn reclaim(&self, value: &[u8]) -> Result<u64, String> {
        match self.kv.value(&self.key).await {
            Ok(Some(value)) => return Err(holder_of(&value)),
            Ok(None) => {}
            Err(_) => return Err("another instance".to_owned()),
        }
        match self.kv.create(&self.key, value.to_vec()).await {
            Ok(revision) => {
                tracing::warn!(
                    lease = self.key,
                    "the lease key had been removed; holding it again"
                );
                Ok(revision)
            }
            Err(_) => Err("another instance".to_owned()),
        }
    }

    /// Gives the lease up so a standby takes over at once; only if it is still this instance's.
    async fn release(self) {
        match self.kv.delete_at(&self.key, self.revision).await {
            Ok(()) => tracing::info!(lease = self.key, "lease released"),
            Err(e) => {
                tracing::warn!(lease = self.key, error = %e, "could not release the lease; a standby takes over when it expires")
            }
        }
    }
}

/// One attempt to take the lease: free, or not renewed for `ttl`. `None` while it is held (or
/// when another standby was faster).
async fn try_take(
    kv: &Bucket,
    key: &str,
    value: &[u8],
    standby: &mut Standby,
    ttl: Duration,
) -> Option<u64> {
    let entry = match kv.entry(key).await {
        Ok(entry) => entry,
        Err(e) => {
            tracing::warn!(lease = key, error = %e, "standby: cannot read the lease; retrying");
            return None;
        }
    };
    match entry {
        Some(entry @ Entry { value: Some(_), .. }) => {
            if !standby.unrenewed_for(&entry, ttl) {
                return None;
            }
            let previous = holder_of(entry.value.as_deref().unwrap_or_default());
            tracing::warn!(%previous, lease = key, "the lease was not renewed for {ttl:?}: taking over");
            kv.update(key, value.to_vec(), entry.revision).await.ok()
        }
        // Never held, released, or purged.
        _ => kv.create(key, value.to_vec()).await.ok(),
    }
}

/// What a standby has seen of the holder's lease.
#[derive(Default)]
pub struct Standby {
    /// The revision last seen, and when this instance first saw it.
    seen: Option<(u64, Instant)>,
    reported_holder: String,
}

impl Standby {
    /// Watches the lease under `key` without taking it, so that a later attempt knows how long
    /// it has gone unrenewed.
    pub async fn observe(&mut self, kv: &Bucket, key: &str, ttl: Duration) {
        if let Ok(Some(entry @ Entry { value: Some(_), .. })) = kv.entry(key).await {
            self.unrenewed_for(&entry, ttl);
        }
    }

    /// Whether `entry` is the same revision as first seen at least `ttl` ago; a new revision
    /// starts the count again.
    fn unrenewed_for(&mut self, entry: &Entry, ttl: Duration) -> bool {
        match self.seen {
            Some((revision, since)) if revision == entry.revision => since.elapsed() >= ttl,
            _ => {
                let holder = holder_of(entry.value.as_deref().unwrap_or_default());
                if holder != self.reported_holder {
                    tracing::info!(%holder, "standby: another guardian holds a lease; taking over if it is not renewed for {ttl:?}");
                    self.reported_holder = holder;
                }
                self.seen = Some((entry.revision, Instant::now()));
                false
            }
        }
    }
}

/// The background renewal of a held lease.
pub struct LeaseKeeper {
    lost: CancellationToken,
    stop: CancellationToken,
    task: JoinHandle<(Lease, Result<(), LeaseError>)>,
}

impl LeaseKeeper {
    /// Fires when the lease is lost: stop handling messages.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing; releases the lease when it was still held. Returns why it was lost, if
    /// it was.
    pub async fn release(self) -> Result<(), LeaseError> {
        self.stop.cancel();
        let (lease, outcome) = self.task.await.expect("the lease task does not panic");
        if outcome.is_ok() {
            lease.release().await;
        }
        outcome
    }
}

fn record(holder: &str, ttl: Duration) -> Vec<u8> {
    serde_json::to_vec(&LeaseRecord {
        holder: holder.to_owned(),
        ttl_ms: ttl.as_millis() as u64,
    })
    .expect("lease records serialize")
}

fn holder_of(value: &[u8]) -> String {
    serde_json::from_slice::<LeaseRecord>(value)
        .map(|r| r.holder)
        .unwrap_or_else(|_| "an unknown holder".to_owned())
}

/// This instance's name in the lease: host, process id and a random suffix.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}
