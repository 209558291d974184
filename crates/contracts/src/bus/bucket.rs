//! Typed key-value buckets: the one way a service reads or writes a bucket the inventory
//! declares, without restating its name, its keys or the layout of its values.
//!
//! [`Bus::bucket`] opens bucket `B` for service `S` only if `S: ReadsBucket<B>` (the inventory
//! lists it as a reader or writer). The handle reads the values bound to `B`'s keys
//! ([`KeyValue<B>`](crate::KeyValue): the type names its key) and decodes them with the
//! schema's validator; [`put`](BucketHandle::put) exists only for `S: WritesBucket<B>` and
//! validates before a byte is written. The NATS server enforces the same split with the
//! generated permissions.
//!
//! ```no_run
//! # async fn f(bus: contracts::bus::Bus<contracts::services::OpsWorker>) -> Result<(), contracts::bus::BucketError> {
//! use contracts::{buckets::OpsInterlock, InterlockArmed};
//! let interlock = bus.bucket::<OpsInterlock>().await?;
//! let armed: Option<InterlockArmed> = interlock.get::<InterlockArmed>().await?;
//! interlock.put(&InterlockArmed::by_command(false, uuid::Uuid::new_v4())).await?;
//! # Ok(()) }
//! ```
//!
//! brain reads the interlock:
//!
//! ```no_run
//! # async fn f(bus: contracts::bus::Bus<contracts::services::Brain>) {
//! use contracts::{buckets::OpsInterlock, InterlockArmed};
//! let interlock = bus.bucket::<OpsInterlock>().await.unwrap();
//! let armed = interlock.get::<InterlockArmed>().await;
//! # }
//! ```
//!
//! but a reader cannot write: brain only reads the interlock, so this does not compile.
//!
//! ```compile_fail,E0599
//! # async fn f(bus: contracts::bus::Bus<contracts::services::Brain>) {
//! use contracts::{buckets::OpsInterlock, InterlockArmed};
//! let interlock = bus.bucket::<OpsInterlock>().await.unwrap();
//! interlock.put(&InterlockArmed::provisioned()).await;
//! # }
//! ```
//!
//! And a service that is neither cannot open it: guardian has no business with the interlock.
//!
//! ```compile_fail,E0277
//! # async fn f(bus: contracts::bus::Bus<contracts::services::Guardian>) {
//! let interlock = bus.bucket::<contracts::buckets::OpsInterlock>().await;
//! # }
//! ```

use std::marker::PhantomData;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use super::Bus;
use crate::{
    BucketInfo, ContractError, KeyValue, KeyValueBucket, ReadsBucket, Service, WritesBucket,
};

/// What went wrong, without the details (see [`BucketError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketErrorKind {
    /// The bucket cannot be opened: not provisioned, or not reachable.
    Open,
    /// A key cannot be read from the server.
    Read,
    /// A key holds a value that breaks its schema (or is not JSON).
    Unreadable,
    /// The value to write breaks its schema; nothing was written.
    Invalid,
    /// The server did not store the value.
    Write,
    /// The bucket cannot be watched.
    Watch,
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// Why a bucket operation failed; [`source`](std::error::Error::source) is the underlying error.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("key-value bucket `{bucket}` cannot be opened (is it provisioned?): {source}")]
    Open {
        bucket: &'static str,
        #[source]
        source: Source,
    },
    #[error("reading `{key}` of key-value bucket `{bucket}`: {source}")]
    Read {
        bucket: &'static str,
        key: String,
        #[source]
        source: Source,
    },
    #[error("`{key}` of key-value bucket `{bucket}` is not a valid `{contract}` record: {source}")]
    Unreadable {
        bucket: &'static str,
        key: String,
        contract: &'static str,
        #[source]
        source: Box<ContractError>,
    },
    #[error("refusing to write `{key}` of key-value bucket `{bucket}`: {source}")]
    Invalid {
        bucket: &'static str,
        key: String,
        #[source]
        source: Box<ContractError>,
    },
    #[error("writing `{key}` of key-value bucket `{bucket}`: {source}")]
    Write {
        bucket: &'static str,
        key: String,
        #[source]
        source: Source,
    },
    #[error("watching key-value bucket `{bucket}`: {source}")]
    Watch {
        bucket: &'static str,
        #[source]
        source: Source,
    },
}

impl BucketError {
    pub fn kind(&self) -> BucketErrorKind {
        match self {
            Self::Open { .. } => BucketErrorKind::Open,
            Self::Read { .. } => BucketErrorKind::Read,
            Self::Unreadable { .. } => BucketErrorKind::Unreadable,
            Self::Invalid { .. } => BucketErrorKind::Invalid,
            Self::Write { .. } => BucketErrorKind::Write,
            Self::Watch { .. } => BucketErrorKind::Watch,
        }
    }

    /// The bucket the operation was on.
    pub fn bucket(&self) -> &'static str {
        match self {
            Self::Open { bucket, .. }
            | Self::Read { bucket, .. }
            | Self::Unreadable { bucket, .. }
            | Self::Invalid { bucket, .. }
            | Self::Write { bucket, .. }
            | Self::Watch { bucket, .. } => bucket,
        }
    }
}

/// Bucket `B` as service `S` sees it. Cheap to clone.
pub struct BucketHandle<S, B> {
    store: kv::Store,
    _types: PhantomData<fn() -> (S, B)>,
}

impl<S, B> Clone for BucketHandle<S, B> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            _types: PhantomData,
        }
    }
}

impl<S: Service> Bus<S> {
    /// Opens the key-value bucket `B` (it must be provisioned). Compiles only when the
    /// inventory lists `S` among `B`'s readers or writers.
    pub async fn bucket<B: KeyValueBucket>(&self) -> Result<BucketHandle<S, B>, BucketError>
    where
        S: ReadsBucket<B>,
    {
        let store = open_store::<B>(&self.inner.jetstream).await?;
        Ok(BucketHandle {
            store,
            _types: PhantomData,
        })
    }
}

pub(super) async fn open_store<B: KeyValueBucket>(
    js: &jetstream::Context,
) -> Result<kv::Store, BucketError> {
    js.get_key_value(B::INFO.name)
        .await
        .map_err(|e| BucketError::Open {
            bucket: B::INFO.name,
            source: Box::new(e),
        })
}

/// Decodes the value of `T`'s key (`None`: never written, deleted or purged).
fn decode_as<B: KeyValueBucket, T: KeyValue<B>>(bytes: &[u8]) -> Result<T, BucketError> {
    crate::decode::<T>(bytes).map_err(|source| BucketError::Unreadable {
        bucket: B::INFO.name,
        key: T::KEY.to_string(),
        contract: T::INFO.name,
        source: Box::new(source),
    })
}

pub(super) fn encode_value<B: KeyValueBucket, T: KeyValue<B>>(
    value: &T,
) -> Result<Bytes, BucketError> {
    crate::encode(value)
        .map(Bytes::from)
        .map_err(|source| BucketError::Invalid {
            bucket: B::INFO.name,
            key: T::KEY.to_string(),
            source: Box::new(source),
        })
}

/// Writes `value` under `T`'s key only if the key was never written (no value, and no delete or
/// purge marker either). `Ok(None)`: something is there already, left as it is.
pub(super) async fn create_if_never_written<B: KeyValueBucket, T: KeyValue<B>>(
    store: &kv::Store,
    value: &T,
) -> Result<Option<u64>, BucketError> {
    let bytes = encode_value::<B, T>(value)?;
    // Revision 0 = "expect no message at all on this key's subject".
    match store.update(T::KEY, bytes, 0).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => Err(BucketError::Write {
            bucket: B::INFO.name,
            key: T::KEY.to_string(),
            source: Box::new(e),
        }),
    }
}

impl<S: ReadsBucket<B>, B: KeyValueBucket> BucketHandle<S, B> {
    /// What the inventory says about the bucket.
    pub fn info(&self) -> &'static BucketInfo {
        B::INFO
    }

    /// The current value of `T`'s key, validated against its schema. `Ok(None)`: the key was
    /// never written, or was deleted or purged. A value that breaks the schema is
    /// [`BucketErrorKind::Unreadable`].
    pub async fn get<T: KeyValue<B>>(&self) -> Result<Option<T>, BucketError> {
        let bytes = self
            .store
            .get(T::KEY)
            .await
            .map_err(|e| BucketError::Read {
                bucket: B::INFO.name,
                key: T::KEY.to_string(),
                source: Box::new(e),
            })?;
        bytes.map(|b| decode_as::<B, T>(&b)).transpose()
    }

    /// The latest value of every key, then every change, as they happen.
    pub async fn watch(
        &self,
    ) -> Result<BoxStream<'static, Result<KeyChange<B>, BucketError>>, BucketError> {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| BucketError::Watch {
                bucket: B::INFO.name,
                source: Box::new(e),
            })?;
        Ok(watch
            .map(|entry| {
                let entry = entry.map_err(|e| BucketError::Watch {
                    bucket: B::INFO.name,
                    source: Box::new(e),
                })?;
                let value = match entry.operation {
                    kv::Operation::Put => Some(entry.value),
                    kv::Operation::Delete | kv::Operation::Purge => None,
                };
                Ok(KeyChange {
                    key: entry.key,
                    value,
                    revision: entry.revision,
                    _bucket: PhantomData,
                })
            })
            .boxed())
    }
}

impl<S: WritesBucket<B>, B: KeyValueBucket> BucketHandle<S, B> {
    /// Validates `value` and stores it under its key. Compiles only for the bucket's writers.
    pub async fn put<T: KeyValue<B>>(&self, value: &T) -> Result<u64, BucketError> {
        let bytes = encode_value::<B, T>(value)?;
        self.store
            .put(T::KEY, bytes)
            .await
            .map_err(|e| BucketError::Write {
                bucket: B::INFO.name,
                key: T::KEY.to_string(),
                source: Box::new(e),
            })
    }

    /// Stores `value` only if its key was never written (a deleted key counts as written).
    /// `Ok(None)`: left as it was.
    pub async fn create_if_never_written<T: KeyValue<B>>(
        &self,
        value: &T,
    ) -> Result<Option<u64>, BucketError> {
        create_if_never_written::<B, T>(&self.store, value).await
    }
}

/// One key's new value in a [watch](BucketHandle::watch).
#[derive(Debug, Clone)]
pub struct KeyChange<B> {
    pub key: String,
    /// `None`: deleted or purged.
    pub value: Option<Bytes>,
    pub revision: u64,
    _bucket: PhantomData<fn() -> B>,
}

impl<B: KeyValueBucket> KeyChange<B> {
    /// Whether this change is to `T`'s key.
    pub fn is<T: KeyValue<B>>(&self) -> bool {
        self.key == T::KEY
    }

    /// The new value of `T`'s key, validated: `None` if the change is to another key,
    /// `Some(Ok(None))` if the key was deleted.
    pub fn decode<T: KeyValue<B>>(&self) -> Option<Result<Option<T>, BucketError>> {
        if !self.is::<T>() {
            return None;
        }
        Some(
            self.value
                .as_ref()
                .map(|b| decode_as::<B, T>(b))
                .transpose(),
        )
    }
}
