//! A service's own records in a key-value bucket the inventory gives it: keys it chooses (one
//! per group, per command, a lease), values it encodes, and the revisions that make
//! compare-and-set writes, leases and watches possible.
//!
//! [`Bus::records`] opens bucket `B` only for `S: WritesBucket<B>`. Unlike [`BucketHandle`]
//! (fixed keys bound to contract types, shared between services), what is stored here is private
//! to the service that writes it; anything two services exchange belongs in a contract.
//!
//! Errors keep their source and say what kind they are ([`RecordsErrorKind`]): a write that lost
//! a race is [`RecordsErrorKind::Conflict`], everything else [`RecordsErrorKind::Unavailable`],
//! so callers never match on the text.
//!
//! [`BucketHandle`]: super::BucketHandle

use std::marker::PhantomData;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use super::Bus;
use crate::{KeyValueBucket, Service, WritesBucket};

/// What kind of failure a [`RecordsError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsErrorKind {
    /// The key is not as the write expected (created meanwhile, or changed since the revision).
    Conflict,
    /// The server could not be asked, refused, or did not answer in time.
    Unavailable,
}

/// A read or write of a service's records failed.
#[derive(Debug, thiserror::Error)]
#[error("key-value `{bucket}`: {what}: {source}")]
pub struct RecordsError {
    bucket: &'static str,
    what: String,
    kind: RecordsErrorKind,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl RecordsError {
    /// What kind of failure it is.
    pub fn kind(&self) -> RecordsErrorKind {
        self.kind
    }

    /// Whether the write lost a race (see [`RecordsErrorKind::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        self.kind == RecordsErrorKind::Conflict
    }
}

/// One key's latest entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub revision: u64,
    /// `None`: the key was deleted or purged (the marker still has a revision).
    pub value: Option<Bytes>,
}

impl Entry {
    fn from_kv(entry: kv::Entry) -> Self {
        let value = (entry.operation == kv::Operation::Put).then_some(entry.value);
        Self {
            key: entry.key,
            revision: entry.revision,
            value,
        }
    }
}

/// The records of bucket `B`, for its writer `S`.
pub struct Records<S, B> {
    store: kv::Store,
    _types: PhantomData<fn() -> (S, B)>,
}

impl<S, B> Clone for Records<S, B> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            _types: PhantomData,
        }
    }
}

impl<S: Service> Bus<S> {
    /// Opens the key-value bucket `B` for the records `S` keeps there (it must be provisioned).
    /// Compiles only when the inventory lists `S` among `B`'s writers.
    pub async fn records<B: KeyValueBucket>(&self) -> Result<Records<S, B>, RecordsError>
    where
        S: WritesBucket<B>,
    {
        let store = self
            .inner
            .jetstream
            .get_key_value(B::INFO.name)
            .await
            .map_err(|e| unavailable::<B>("opening the bucket (is it provisioned?)", e))?;
        Ok(Records {
            store,
            _types: PhantomData,
        })
    }
}

fn unavailable<B: KeyValueBucket>(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> RecordsError {
    RecordsError {
        bucket: B::INFO.name,
        what: what.into(),
        kind: RecordsErrorKind::Unavailable,
        source: Box::new(source),
    }
}

fn conflict<B: KeyValueBucket>(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> RecordsError {
    RecordsError {
        kind: RecordsErrorKind::Conflict,
        ..unavailable::<B>(what, source)
    }
}

/// The bucket did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {0:?}")]
struct TimedOut(Duration);

/// Every read within the bound came from a copy of the bucket older than a write made before.
#[derive(Debug, thiserror::Error)]
#[error("every read within {within:?} came from a copy older than revision {written} (the newest it had was {newest})")]
struct Behind {
    within: Duration,
    written: u64,
    newest: u64,
}

/// Pause between two reads of [`Records::latest_since`] that came from a copy behind.
const BEHIND_PAUSE: Duration = Duration::from_millis(100);

impl<S, B: KeyValueBucket> Records<S, B> {
    /// The latest entry of `key` (`None`: never written).
    pub async fn entry(&self, key: &str) -> Result<Option<Entry>, RecordsError> {
        self.store
            .entry(key)
            .await
            .map(|entry| entry.map(Entry::from_kv))
            .map_err(|e| unavailable::<B>(format!("reading `{key}`"), e))
    }

    /// The value of `key`, if it has one.
    pub async fn value(&self, key: &str) -> Result<Option<Bytes>, RecordsError> {
        Ok(self.entry(key).await?.and_then(|entry| entry.value))
    }

    /// Writes `value` at `key` whatever is there; the new revision.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<u64, RecordsError> {
        self.store
            .put(key, value.into())
            .await
            .map_err(|e| unavailable::<B>(format!("writing `{key}`"), e))
    }

    /// Writes `value` at `key` only if the key has no value; a conflict otherwise.
    pub async fn create(&self, key: &str, value: impl Into<Bytes>) -> Result<u64, RecordsError> {
        self.store
            .create(key, value.into())
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => conflict::<B>(format!("creating `{key}`"), e),
                _ => unavailable::<B>(format!("creating `{key}`"), e),
            })
    }

    /// Writes `value` at `key` only if its latest revision is `revision`; a conflict otherwise.
    pub async fn update(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        revision: u64,
    ) -> Result<u64, RecordsError> {
        self.store
            .update(key, value.into(), revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => {
                    conflict::<B>(format!("writing `{key}` at revision {revision}"), e)
                }
                _ => unavailable::<B>(format!("writing `{key}`"), e),
            })
    }

    /// Deletes `key` (a delete marker with a revision of its own).
    pub async fn delete(&self, key: &str) -> Result<(), RecordsError> {
        self.store
            .delete(key)
            .await
            .map_err(|e| unavailable::<B>(format!("deleting `{key}`"), e))
    }

    /// Removes every message of `key` from the bucket's stream, the delete marker included, so a
    /// key that no longer exists costs nothing to later loads (needs the stream-purge grant).
    pub async fn purge_history(&self, key: &str) -> Result<(), RecordsError> {
        let subject = format!("{}{key}", self.store.prefix);
        self.store
            .stream
            .purge()
            .filter(subject)
            .await
            .map(drop)
            .map_err(|e| unavailable::<B>(format!("purging the history of `{key}`"), e))
    }

    /// Deletes `key` only if its latest revision is `revision`; a conflict otherwise.
    pub async fn delete_at(&self, key: &str, revision: u64) -> Result<(), RecordsError> {
        self.store
            .delete_expect_revision(key, Some(revision))
            .await
            .map_err(|e| match e.kind() {
                kv::DeleteErrorKind::WrongLastRevision => {
                    conflict::<B>(format!("deleting `{key}` at revision {revision}"), e)
                }
                _ => unavailable::<B>(format!("deleting `{key}`"), e),
            })
    }

    /// The keys that have a value now.
    pub async fn keys(&self) -> Result<Vec<String>, RecordsError> {
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|e| unavailable::<B>("listing the keys", e))?;
        let mut all = Vec::new();
        while let Some(key) = keys.next().await {
            all.push(key.map_err(|e| unavailable::<B>("listing the keys", e))?);
        }
        Ok(all)
    }

    /// The latest entry of every key matching `filter` (`>` for all), read within `within`.
    pub async fn latest(&self, filter: &str, within: Duration) -> Result<Vec<Entry>, RecordsError> {
        let reading = || format!("reading the keys `{filter}`");
        let info = self
            .store
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable::<B>("reading the bucket's status", e))?;
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        let read = async {
            let mut watch = self
                .store
                .watch_with_history(filter)
                .await
                .map_err(|e| unavailable::<B>(reading(), e))?;
            let mut entries = Vec::new();
            while let Some(entry) = watch.next().await {
                let entry = entry.map_err(|e| unavailable::<B>(reading(), e))?;
                let last = entry.delta == 0;
                entries.push(Entry::from_kv(entry));
                if last {
                    break;
                }
            }
            Ok(entries)
        };
        tokio::time::timeout(within, read)
            .await
            .map_err(|_| unavailable::<B>(reading(), TimedOut(within)))?
    }

    /// [`Records::latest`], from a copy of the bucket that holds revision `written` (a write of
    /// a key matching `filter` that this process made or saw before): a read from an older copy
    /// is made again until `within` is over.
    ///
    /// Why: on a cluster the reading consumer may be placed on any replica of the bucket
    /// (nats-server 2.9–2.11 picks one at random for a short-lived consumer), and a replica that
    /// has not caught up yet — right after a node was lost, typically — answers with an older
    /// state: a key written just before is missing or old. An instance taking over from a dead
    /// one would then start from a state its predecessor had already moved past.
    pub async fn latest_since(
        &self,
        filter: &str,
        within: Duration,
        written: u64,
    ) -> Result<Vec<Entry>, RecordsError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let entries = self.latest(filter, left).await?;
            let newest = entries.iter().map(|e| e.revision).max().unwrap_or(0);
            if newest >= written {
                return Ok(entries);
            }
            if tokio::time::Instant::now() + BEHIND_PAUSE >= deadline {
                return Err(unavailable::<B>(
                    format!("reading the keys `{filter}`"),
                    Behind {
                        within,
                        written,
                        newest,
                    },
                ));
            }
            tracing::warn!(
                bucket = B::INFO.name,
                written,
                newest,
                "read an older copy of the bucket than a write made before; reading again"
            );
            tokio::time::sleep(BEHIND_PAUSE).await;
        }
    }

    /// Every change of a key matching `filter` from now on, or from `from_revision` on.
    pub async fn watch(
        &self,
        filter: &str,
        from_revision: Option<u64>,
    ) -> Result<BoxStream<'static, Result<Entry, RecordsError>>, RecordsError> {
        let watch = match from_revision {
            None => self.store.watch(filter).await,
            Some(revision) => self.store.watch_from_revision(filter, revision).await,
        }
        .map_err(|e| unavailable::<B>(format!("watching `{filter}`"), e))?;
        let filter = filter.to_string();
        Ok(watch
            .map(move |entry| {
                entry
                    .map(Entry::from_kv)
                    .map_err(|e| unavailable::<B>(format!("watching `{filter}`"), e))
            })
            .boxed())
    }
}
