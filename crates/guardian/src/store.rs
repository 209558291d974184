//! guardian's durable state in the JetStream key-value bucket `guardian_state` (guardian is its
//! only writer; provisioning creates it).
//!
//! Keys (each under its partition's prefix `p<index>.`, see [`crate::partition`]; a store
//! handles one partition's keys and names them without the prefix):
//! - `group.<uuid v5>` — one group (rule + group-by values): the events counted below the
//!   threshold, or the open/acknowledged incident with everything its next version needs. The
//!   key is deleted (and purged, delete marker included) when the incident resolves or the
//!   counted events leave the window, so the bucket holds only live groups. Before an
//!   incident's last version (resolved) is published, the key holds a *closing* record instead:
//!   that version and the event ids to remember. Once the version is published, the group is
//!   over for everyone, even if guardian dies before it has remembered the ids and deleted the
//!   key: the next start publishes the version again (same id: a duplicate the server drops)
//!   and finishes the clean-up, and no event joins the closed incident meanwhile.
//! - `lease` — which instance holds the partition (see [`crate::lease`]).
//!
//! Outside the partitions, `member.<id>` keys say which instances run (see [`crate::members`]).
//! - `seen.<slot>` — chunks of handled event ids no group record holds any more (see
//!   [`crate::seen`]): a fixed ring of keys, deleted when their ids outlive the time to live.
//!
//! Values are JSON with a `format` number; a record guardian cannot read is skipped (and
//! logged), never fatal.

use std::time::Duration;

use contracts::buckets::GuardianState;
use contracts::bus::{Bus, Records, RecordsError};
use contracts::services::Guardian;
use serde::{Deserialize, Serialize};

use crate::engine::{Group, GROUP_KEY_PREFIX};
use crate::lease::LEASE_KEY;
use crate::members::KEY_PREFIX as MEMBER_KEY_PREFIX;
use crate::partition::Partition;
use crate::seen::{SeenChunk, SeenWrite, KEY_PREFIX as SEEN_KEY_PREFIX};

/// The bucket (see `schemas/inventory.toml`).
pub const BUCKET: &str = <contracts::buckets::GuardianState as contracts::Bucket>::INFO.name;
/// Version of the stored records.
const FORMAT: u32 = 1;
/// Longest wait for the initial load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A key-value operation that failed; transient from guardian's point of view (the message is
/// handed back and retried).
#[derive(Debug, thiserror::Error)]
#[error("guardian's state: {what}")]
pub struct StoreError {
    pub what: String,
    #[source]
    pub source: RecordsError,
}

fn failed(what: impl Into<String>, source: RecordsError) -> StoreError {
    StoreError {
        what: what.into(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct GroupRecord {
    format: u32,
    #[serde(flatten)]
    group: Group,
}

/// A group whose last version is being published: what the next start must finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closing {
    /// The group's storage key.
    pub key: String,
    /// Its last version (resolved), published before the key is deleted.
    pub version: contracts::Incident,
    /// The event ids it held, to remember as seen.
    pub forget: Vec<uuid::Uuid>,
}

#[derive(Serialize, Deserialize)]
struct ClosingRecord {
    format: u32,
    closing: Closing,
}

#[derive(Serialize, Deserialize)]
struct SeenRecord {
    format: u32,
    #[serde(flatten)]
    chunk: SeenChunk,
}

/// Everything found in the bucket at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub groups: Vec<Group>,
    /// Groups that were closing when guardian stopped.
    pub closings: Vec<Closing>,
    pub seen: Vec<(String, SeenChunk)>,
    /// Keys whose value could not be read (`key`, reason).
    pub unreadable: Vec<(String, String)>,
    /// Whether the lease key holds a value (see [`crate::lease`]).
    pub lease_held: bool,
}

/// The bucket, as one partition of guardian uses it.
#[derive(Clone)]
pub struct StateStore {
    kv: Records<Guardian, GuardianState>,
    /// Put before every key this store names (`p<index>.`, or nothing).
    prefix: String,
}

impl StateStore {
    /// The keys of `partition`.
    pub async fn open(bus: &Bus<Guardian>, partition: Partition) -> Result<Self, StoreError> {
        let kv = bus
            .records::<GuardianState>()
            .await
            .map_err(|e| failed("opening the bucket", e))?;
        Ok(Self {
            kv,
            prefix: partition.key_prefix(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Reads the latest value of every key.
    pub async fn load(&self) -> Result<Snapshot, StoreError> {
        self.load_since(0).await
    }

    /// [`StateStore::load`] from a copy of the bucket that holds revision `written` (the lease
    /// this instance took): on a cluster the read may be served by a replica that is behind,
    /// and an instance taking over must not start from a state older than its predecessor's
    /// last writes (a group record written just before it died would be missing, and the event
    /// it held lost).
    pub async fn load_since(&self, written: u64) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let filter = self.full_key(">");
        let entries = self
            .kv
            .latest_since(&filter, LOAD_TIMEOUT, written)
            .await
            .map_err(|e| failed(format!("reading the keys {filter}"), e))?;
        for entry in entries {
            let (Some(value), Some(key)) = (&entry.value, entry.key.strip_prefix(&self.prefix))
            else {
                continue;
            };
            self.decode(key, value, &mut snapshot);
        }
        Ok(snapshot)
    }

    fn decode(&self, key: &str, value: &[u8], snapshot: &mut Snapshot) {
        if key == LEASE_KEY {
            snapshot.lease_held = true;
            return;
        }
        if self.prefix.is_empty() && key.starts_with(MEMBER_KEY_PREFIX) {
            return;
        }
        let problem = if key.starts_with(GROUP_KEY_PREFIX) {
            if let Ok(record) = serde_json::from_slice::<ClosingRecord>(value) {
                if record.format == FORMAT && record.closing.key == key {
                    snapshot.closings.push(record.closing);
                    return;
                }
            }
            match serde_json::from_slice::<GroupRecord>(value) {
                Ok(record) if record.format == FORMAT => {
                    if record.group.key.storage_key() == key {
                        snapshot.groups.push(record.group);
                        return;
                    }
                    "the record belongs to another key".to_string()
                }
                Ok(record) => format!("unknown format {}", record.format),
                Err(e) => e.to_string(),
            }
        } else if key.starts_with(SEEN_KEY_PREFIX) {
            match serde_json::from_slice::<SeenRecord>(value) {
                Ok(record) if record.format == FORMAT => {
                    snapshot.seen.push((key.to_string(), record.chunk));
                    return;
                }
                Ok(record) => format!("unknown format {}", record.format),
                Err(e) => e.to_string(),
            }
        } else {
            "not a key guardian writes".to_string()
        };
        snapshot.unreadable.push((key.to_string(), problem));
    }

    /// The bucket itself (the lease lives in it too).
    pub fn bucket(&self) -> &Records<Guardian, GuardianState> {
        &self.kv
    }

    /// Stores a group under its key.
    pub async fn put_group(&self, group: &Group) -> Result<(), StoreError> {
        let key = self.full_key(&group.key.storage_key());
        let value = serde_json::to_vec(&GroupRecord {
            format: FORMAT,
            group: group.clone(),
        })
        .expect("groups serialize");
        self.kv
            .put(&key, value)
            .await
            .map(|_| ())
            .map_err(|e| failed(format!("writing {key} ({})", group.key), e))
    }

    /// Records that the group under `closing.key` is ending (replacing its group record).
    pub async fn put_closing(&self, closing: &Closing) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&ClosingRecord {
            format: FORMAT,
            closing: closing.clone(),
        })
        .expect("closings serialize");
        self.kv
            .put(&self.full_key(&closing.key), value)
            .await
            .map(|_| ())
            .map_err(|e| failed(format!("writing the end of {}", closing.key), e))
    }

    /// Stores a chunk of seen ids.
    pub async fn put_seen(&self, write: &SeenWrite) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&SeenRecord {
            format: FORMAT,
            chunk: write.chunk.clone(),
        })
        .expect("chunks serialize");
        self.kv
            .put(&self.full_key(&write.key), value)
            .await
            .map(|_| ())
            .map_err(|e| failed(format!("writing {}", write.key), e))
    }

    /// Deletes a key (a group that resolved or expired, an expired chunk), then purges its
    /// subject so not even the delete marker stays: a marker per group that ever existed would
    /// make the bucket, and every start's load, grow with the number of distinct groups. Live
    /// watchers still see the delete. A failed purge only costs that marker, so it is logged.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = &self.full_key(key);
        self.kv
            .delete(key)
            .await
            .map_err(|e| failed(format!("deleting {key}"), e))?;
        if let Err(e) = self.kv.purge_history(key).await {
            tracing::warn!(
                key,
                error = %e,
                "could not purge the delete marker (does guardian's NATS user have $JS.API.STREAM.PURGE.KV_{BUCKET}?)"
            );
        }
        Ok(())
    }

    /// The keys of the partition that currently hold a value (not deleted), sorted, without
    /// the partition's prefix.
    pub async fn live_keys(&self) -> Result<Vec<String>, StoreError> {
        let snapshot = self.load().await?;
        let mut keys: Vec<String> = snapshot
            .groups
            .iter()
            .map(|g| g.key.storage_key())
            .chain(snapshot.closings.into_iter().map(|c| c.key))
            .chain(snapshot.seen.into_iter().map(|(k, _)| k))
            .chain(snapshot.unreadable.into_iter().map(|(k, _)| k))
            .chain(snapshot.lease_held.then(|| LEASE_KEY.to_owned()))
            .collect();
        keys.sort();
        Ok(keys)
    }
}
