//! Creates or updates the streams, key-value buckets and object stores declared in the
//! inventory. Idempotent: running it again changes nothing that is already right.

use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream};

use super::BusError;
use crate::{
    BucketInfo, Retention, Service, StreamInfo, KEY_VALUE_BUCKETS, OBJECT_STORES, STREAMS,
};

fn failed(what: String, e: impl std::fmt::Display) -> BusError {
    BusError::JetStream {
        what,
        reason: e.to_string(),
    }
}

fn stream_config(info: &StreamInfo, replicas: usize) -> stream::Config {
    stream::Config {
        name: info.name.to_string(),
        description: Some(info.description.to_string()),
        subjects: info.subjects.iter().map(|s| s.to_string()).collect(),
        retention: match info.retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::Interest => stream::RetentionPolicy::Interest,
            Retention::Workqueue => stream::RetentionPolicy::WorkQueue,
        },
        max_age: Duration::from_secs(info.max_age_s),
        max_message_size: i32::try_from(info.max_msg_size).unwrap_or(i32::MAX),
        duplicate_window: Duration::from_secs(info.duplicate_window_s),
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Creates or updates one stream.
pub async fn ensure_stream(
    js: &jetstream::Context,
    info: &StreamInfo,
    replicas: usize,
) -> Result<(), BusError> {
    js.create_or_update_stream(stream_config(info, replicas))
        .await
        .map(|_| ())
        .map_err(|e| failed(format!("creating or updating stream `{}`", info.name), e))
}

/// The backing stream of a key-value bucket, as the client library would configure it.
/// We create it ourselves: async-nats' `create_key_value` first reads the account info, whose
/// shape changed after nats-server 2.9 (the server Debian ships), and fails there.
fn key_value_stream(bucket: &BucketInfo, replicas: usize) -> stream::Config {
    let (name, max_age_s) = (bucket.name, bucket.max_age_s);
    stream::Config {
        name: format!("KV_{name}"),
        description: Some(bucket.description.to_string()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: i64::from(bucket.history.max(1)),
        max_age: Duration::from_secs(max_age_s),
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        // The client's default: a dedup window no longer than the entries live.
        duplicate_window: if max_age_s > 0 {
            Duration::from_secs(max_age_s.min(120))
        } else {
            Duration::from_secs(120)
        },
        ..Default::default()
    }
}

async fn ensure_key_value(
    js: &jetstream::Context,
    bucket: &BucketInfo,
    replicas: usize,
) -> Result<(), BusError> {
    let name = bucket.name;
    js.create_or_update_stream(key_value_stream(bucket, replicas))
        .await
        .map(|_| ())
        .map_err(|e| failed(format!("creating or updating key-value bucket `{name}`"), e))
}

async fn ensure_object_store(
    js: &jetstream::Context,
    store: &BucketInfo,
    replicas: usize,
) -> Result<(), BusError> {
    let name = store.name;
    if js.get_object_store(name).await.is_ok() {
        return Ok(());
    }
    let config = object_store::Config {
        bucket: name.to_string(),
        description: Some(store.description.to_string()),
        max_age: Duration::from_secs(store.max_age_s),
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    js.create_object_store(config)
        .await
        .map(|_| ())
        .map_err(|e| failed(format!("creating object store `{name}`"), e))
}

/// Everything the inventory declares (the operator's or `cargo xtask provision`'s job).
pub async fn provision_all(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    provision(js, replicas, |_| true, |_| true).await
}

/// What service `S` produces to, consumes from, and writes: the streams of its subjects and
/// the buckets it owns. Services run this on start.
pub async fn provision_for<S: Service>(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<(), BusError> {
    let touches = |stream: &StreamInfo| {
        stream
            .subjects
            .iter()
            .any(|s| S::PRODUCES.contains(s) || S::CONSUMES.contains(s))
    };
    provision(js, replicas, touches, |bucket| {
        bucket.writers.contains(&S::NAME)
    })
    .await
}

async fn provision(
    js: &jetstream::Context,
    replicas: usize,
    stream_wanted: impl Fn(&StreamInfo) -> bool,
    bucket_wanted: impl Fn(&BucketInfo) -> bool,
) -> Result<(), BusError> {
    for stream in STREAMS.iter().filter(|s| stream_wanted(s)) {
        ensure_stream(js, stream, replicas).await?;
    }
    for bucket in KEY_VALUE_BUCKETS.iter().filter(|b| bucket_wanted(b)) {
        ensure_key_value(js, bucket, replicas).await?;
    }
    for store in OBJECT_STORES.iter().filter(|b| bucket_wanted(b)) {
        ensure_object_store(js, store, replicas).await?;
    }
    Ok(())
}

impl<S: Service> super::Bus<S> {
    /// Creates or updates the streams and buckets this service uses (see [`provision_for`]).
    pub async fn provision(&self) -> Result<(), BusError> {
        provision_for::<S>(&self.inner.jetstream, self.inner.config.replicas).await
    }
}
