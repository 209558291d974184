//! Object-store buckets the inventory declares (evidence bundles): [`Bus::objects`] opens bucket
//! `B` for a reader, and only its writers can [`put`](Objects::put).

use std::marker::PhantomData;

use async_nats::jetstream::object_store;
use tokio::io::AsyncReadExt;

use super::Bus;
use crate::{ObjectStoreBucket, ReadsBucket, Service, WritesBucket};

/// An object could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[error("object store `{bucket}`: {what}: {source}")]
pub struct ObjectsError {
    bucket: &'static str,
    what: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn failed<B: ObjectStoreBucket>(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ObjectsError {
    ObjectsError {
        bucket: B::INFO.name,
        what: what.into(),
        source: Box::new(source),
    }
}

/// The objects of bucket `B`, as service `S` may use them.
pub struct Objects<S, B> {
    store: object_store::ObjectStore,
    _types: PhantomData<fn() -> (S, B)>,
}

impl<S: Service> Bus<S> {
    /// Opens the object store `B` (it must be provisioned). Compiles only when the inventory
    /// lists `S` among `B`'s readers or writers.
    pub async fn objects<B: ObjectStoreBucket>(&self) -> Result<Objects<S, B>, ObjectsError>
    where
        S: ReadsBucket<B>,
    {
        let store = self
            .inner
            .jetstream
            .get_object_store(B::INFO.name)
            .await
            .map_err(|e| failed::<B>("opening (is it provisioned?)", e))?;
        Ok(Objects {
            store,
            _types: PhantomData,
        })
    }
}

impl<S: ReadsBucket<B>, B: ObjectStoreBucket> Objects<S, B> {
    /// The bytes of object `name`.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, ObjectsError> {
        let mut object = self
            .store
            .get(name)
            .await
            .map_err(|e| failed::<B>(format!("reading {name}"), e))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| failed::<B>(format!("reading {name}"), e))?;
        Ok(bytes)
    }
}

impl<S: WritesBucket<B>, B: ObjectStoreBucket> Objects<S, B> {
    /// Stores `bytes` as object `name`, replacing any object of that name.
    pub async fn put(
        &self,
        name: &str,
        bytes: &[u8],
        description: String,
    ) -> Result<(), ObjectsError> {
        let meta = object_store::ObjectMetadata {
            name: name.to_string(),
            description: Some(description),
            ..Default::default()
        };
        let mut reader = bytes;
        self.store
            .put(meta, &mut reader)
            .await
            .map(drop)
            .map_err(|e| failed::<B>(format!("writing {name}"), e))
    }
}
