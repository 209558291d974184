//! At-most-once execution records in a JetStream key-value bucket: a service claims an id
//! before doing the work (`create` fails if the key exists, so only one claim wins) and records
//! the final result with the claim's revision. A redelivered message finds the record and
//! re-publishes the result instead of doing the work again.
//!
//! Whether a claim's holder is still alive is never judged by comparing clocks across hosts:
//! the holder renews the claim (a new revision) while it works, and another instance calls a
//! claim abandoned only after watching its revision stay the same for a whole period on its own
//! monotonic clock ([`ClaimLog::holder_is_gone`]). A holder that cannot renew its claim stops
//! the work it covers ([`Renewal`]).

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BusError, NatsError};

/// What is recorded for one id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClaimRecord {
    /// The work started on `worker` at `at`; no result yet.
    Claimed { worker: String, at: String },
    /// The final result (a receipt, an outcome), as published.
    Finished { result: Value },
}

/// The holder's side of a claim: renewals, and when the work must stop because the claim can no
/// longer be renewed — taken over by another instance, or not renewed for two thirds of the
/// period after which another instance may call it abandoned.
#[derive(Debug)]
pub struct Renewal {
    revision: u64,
    last_renewed: tokio::time::Instant,
    stale_after: std::time::Duration,
}

/// Why the holder of a claim must stop the work it covers.
#[derive(Debug, thiserror::Error)]
pub enum ClaimFenced {
    #[error("the claim was changed by someone else (another instance took it over)")]
    TakenOver,
    #[error("the claim could not be renewed for {0:?} ({1}); another instance may take it over")]
    Unrenewed(std::time::Duration, String),
}

impl Renewal {
    /// A claim just made (or renewed) at `revision`; another instance calls it abandoned after
    /// `stale_after` without a renewal.
    pub fn new(revision: u64, stale_after: std::time::Duration) -> Self {
        Self {
            revision,
            last_renewed: tokio::time::Instant::now(),
            stale_after,
        }
    }

    /// The revision to finish the claim with.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Renews the claim of `id`; an error means the work must stop.
    pub async fn renew(
        &mut self,
        log: &ClaimLog,
        id: &uuid::Uuid,
        worker: &str,
    ) -> Result<(), ClaimFenced> {
        match log.refresh(id, worker, self.revision).await {
            Ok(revision) => {
                self.revision = revision;
                self.last_renewed = tokio::time::Instant::now();
                Ok(())
            }
            Err(BusError::ClaimLost { .. }) => Err(ClaimFenced::TakenOver),
            Err(e) => {
                let unrenewed = self.last_renewed.elapsed();
                if unrenewed >= self.stale_after * 2 / 3 {
                    Err(ClaimFenced::Unrenewed(unrenewed, e.to_string()))
                } else {
                    tracing::warn!(%id, error = %e, "could not renew the claim; trying again");
                    Ok(())
                }
            }
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

impl<S: crate::Service> super::Bus<S> {
    /// Opens the claim bucket `B` (it must be provisioned). Compiles only when the inventory
    /// lists `S` among `B`'s writers.
    pub async fn claim_log<B: crate::KeyValueBucket>(&self) -> Result<ClaimLog, BusError>
    where
        S: crate::WritesBucket<B>,
    {
        ClaimLog::open(&self.inner.jetstream, B::INFO.name).await
    }
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
        self.create_or_read(
            id,
            &ClaimRecord::Claimed {
                worker: worker.to_string(),
                at: crate::Timestamp::now().to_string(),
            },
        )
        .await
    }

    /// Records `result` as the final result of `id` only if nobody claimed it yet, so the work
    /// never starts (a withdrawn command): `Claim::New` when it was recorded, otherwise what is
    /// there.
    pub async fn settle_unclaimed(
        &self,
        id: &uuid::Uuid,
        result: &Value,
    ) -> Result<Claim, BusError> {
        self.create_or_read(
            id,
            &ClaimRecord::Finished {
                result: result.clone(),
            },
        )
        .await
    }

    async fn create_or_read(
        &self,
        id: &uuid::Uuid,
        record: &ClaimRecord,
    ) -> Result<Claim, BusError> {
        let key = id.hyphenated().to_string();
        match self.store.create(&key, encode(record)).await {
            Ok(revision) => Ok(Claim::New { revision }),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = self
                    .store
                    .entry(&key)
                    .await
                    .map_err(|e| failed(&self.bucket, &format!("reading {key}"), e))?
                    .ok_or_else(|| {
                        failed(
                            &self.bucket,
                            &format!("reading {key}"),
                            NatsError::other("claimed but gone"),
                        )
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

    /// Renews the claim while the work goes on (a heartbeat: a new revision), so another instance
    /// can tell a live claim from one left by a crash; returns the new revision.
    /// [`BusError::ClaimLost`] when someone else changed the record since `revision`.
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
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => BusError::ClaimLost {
                    bucket: self.bucket.clone(),
                    key,
                },
                _ => failed(&self.bucket, &format!("renewing the claim of {key}"), e),
            })
    }

    /// The record's current revision (`None`: no record).
    pub async fn revision(&self, id: &uuid::Uuid) -> Result<Option<u64>, BusError> {
        let key = id.hyphenated().to_string();
        self.store
            .entry(&key)
            .await
            .map(|entry| entry.map(|e| e.revision))
            .map_err(|e| failed(&self.bucket, &format!("reading {key}"), e))
    }

    /// Watches a claim seen at `revision` for `stale_after` on this process's monotonic clock,
    /// calling `keep_alive` meanwhile (a delivery's in-progress report): `true` when its holder
    /// never renewed it (a crash), `false` as soon as the record changes (a live holder, or a
    /// result). The time written in the record plays no part.
    pub async fn holder_is_gone<F, Alive>(
        &self,
        id: &uuid::Uuid,
        revision: u64,
        stale_after: std::time::Duration,
        mut keep_alive: F,
    ) -> Result<bool, BusError>
    where
        F: FnMut() -> Alive,
        Alive: std::future::Future<Output = ()>,
    {
        let deadline = tokio::time::Instant::now() + stale_after;
        let mut look =
            tokio::time::interval((stale_after / 4).max(std::time::Duration::from_millis(50)));
        look.tick().await;
        loop {
            if self.revision(id).await? != Some(revision) {
                return Ok(false);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(true);
            }
            look.tick().await;
            keep_alive().await;
        }
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

fn failed(bucket: &str, what: &str, e: impl Into<NatsError>) -> BusError {
    BusError::JetStream {
        what: format!("key-value `{bucket}`: {what}"),
        source: e.into(),
    }
}
