//! At-most-once execution records in a JetStream key-value bucket: a service claims an id
//! before doing the work (`create` fails if the key exists, so only one claim wins) and records
//! the final result with the claim's revision. A redelivered message finds the record and
//! re-publishes the result instead of doing the work again.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BusError;

/// What is recorded for one id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClaimRecord {
    /// The work started on `worker` at `at`; no result yet.
    Claimed { worker: String, at: String },
    /// The final result (a receipt, an outcome), as published.
    Finished { result: Value },
}

impl ClaimRecord {
    /// Whether this is a claim whose last heartbeat is older than `stale_after`: the worker
    /// that made it is gone (a crash), not still working.
    pub fn is_abandoned(&self, stale_after: std::time::Duration) -> bool {
        match self {
            ClaimRecord::Finished { .. } => false,
            ClaimRecord::Claimed { at, .. } => match at.parse::<crate::Timestamp>() {
                Ok(at) => {
                    let age = crate::Timestamp::now().since(at);
                    age > time::Duration::try_from(stale_after).unwrap_or(time::Duration::MAX)
                }
                Err(_) => true,
            },
        }
    }
}

/// The answer to "may I do the work for this id?".
#[derive(Debug)]
pub enum Claim {
    /// First time: do it, then [`ClaimLog::finish`] with this revision.
    New { revision: u64 },
    /// Seen before, with what was recorded (and its revision).
    Seen { record: ClaimRecord, revision: u64 },
}

/// The records of one bucket.
#[derive(Clone)]
pub struct ClaimLog {
    bucket: String,
    store: kv::Store,
}

impl ClaimLog {
    /// Opens the bucket (it must be provisioned).
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, BusError> {
        let store = js
            .get_key_value(bucket)
            .await
            .map_err(|e| failed(bucket, "opening the bucket (is it provisioned?)", e))?;
        Ok(Self {
            bucket: bucket.to_string(),
            store,
        })
    }

    /// Atomically claims `id` for `worker`.
    pub async fn claim(&self, id: &uuid::Uuid, worker: &str) -> Result<Claim, BusError> {
        let key = id.hyphenated().to_string();
        let record = ClaimRecord::Claimed {
            worker: worker.to_string(),
            at: crate::Timestamp::now().to_string(),
        };
        match self.store.create(&key, encode(&record)).await {
            Ok(revision) => Ok(Claim::New { revision }),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = self
                    .store
                    .entry(&key)
                    .await
                    .map_err(|e| failed(&self.bucket, &format!("reading {key}"), e))?
                    .ok_or_else(|| {
                        failed(&self.bucket, &format!("reading {key}"), "claimed but gone")
                    })?;
                let record = serde_json::from_slice(&entry.value)
                    .map_err(|e| failed(&self.bucket, &format!("decoding {key}"), e))?;
                Ok(Claim::Seen {
                    record,
                    revision: entry.revision,
                })
            }
            Err(e) => Err(failed(&self.bucket, &format!("claiming {key}"), e)),
        }
    }

    /// Renews the claim's time while the work goes on (a heartbeat), so another instance can
    /// tell a live claim from one left by a crash; returns the new revision.
    pub async fn refresh(
        &self,
        id: &uuid::Uuid,
        worker: &str,
        revision: u64,
    ) -> Result<u64, BusError> {
        let key = id.hyphenated().to_string();
        let record = ClaimRecord::Claimed {
            worker: worker.to_string(),
            at: crate::Timestamp::now().to_string(),
        };
        self.store
            .update(&key, encode(&record), revision)
            .await
            .map_err(|e| failed(&self.bucket, &format!("renewing the claim of {key}"), e))
    }

    /// Records the final result; fails if another writer changed the record since `revision`.
    pub async fn finish(
        &self,
        id: &uuid::Uuid,
        result: &Value,
        revision: u64,
    ) -> Result<(), BusError> {
        let key = id.hyphenated().to_string();
        self.store
            .update(
                &key,
                encode(&ClaimRecord::Finished {
                    result: result.clone(),
                }),
                revision,
            )
            .await
            .map(|_| ())
            .map_err(|e| failed(&self.bucket, &format!("recording the result of {key}"), e))
    }

    /// The record of `id`, if any.
    pub async fn get(&self, id: &uuid::Uuid) -> Result<Option<ClaimRecord>, BusError> {
        let key = id.hyphenated().to_string();
        let value = self
            .store
            .get(&key)
            .await
            .map_err(|e| failed(&self.bucket, &format!("reading {key}"), e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| failed(&self.bucket, &format!("decoding {key}"), e))
            })
            .transpose()
    }
}

fn encode(record: &ClaimRecord) -> bytes::Bytes {
    serde_json::to_vec(record)
        .expect("records serialize")
        .into()
}

fn failed(bucket: &str, what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::JetStream {
        what: format!("key-value `{bucket}`: {what}"),
        reason: e.to_string(),
    }
}
