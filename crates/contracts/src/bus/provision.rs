//! Provisioning: creates or updates the streams, key-value buckets, object stores and durable
//! consumers declared in the inventory, as the admin identity. Idempotent: running it again
//! changes nothing that is already right. Services never provision: they
//! [`verify`](verify_provisioned) that what they need exists, and refuse to start otherwise.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, object_store, stream};

use super::{BusError, NatsError};
use crate::buckets::OpsInterlock;
use crate::{
    BucketInfo, ConsumerInfo, InterlockArmed, Retention, Service, StreamInfo, DURABLE_CONSUMERS,
    KEY_VALUE_BUCKETS, OBJECT_STORES, STREAMS,
};

fn failed(what: String, e: impl Into<NatsError>) -> BusError {
    BusError::JetStream {
        what,
        source: e.into(),
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

/// Server-side settings of a durable consumer: the inventory's, unless an operator (or a test)
/// provisions it with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSettings {
    pub max_deliver: i64,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
}

impl From<&ConsumerInfo> for ConsumerSettings {
    fn from(info: &ConsumerInfo) -> Self {
        Self {
            max_deliver: info.max_deliver,
            ack_wait: Duration::from_secs(info.ack_wait_s),
            max_ack_pending: info.max_ack_pending,
        }
    }
}

/// Creates the durable consumer `info`, or updates its settings.
pub async fn provision_consumer(
    js: &jetstream::Context,
    info: &ConsumerInfo,
    settings: ConsumerSettings,
) -> Result<(), BusError> {
    let what = || {
        format!(
            "creating or updating consumer `{}` on `{}`",
            info.name, info.stream
        )
    };
    let stream = js
        .get_stream(info.stream)
        .await
        .map_err(|e| failed(what(), e))?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(info.name.to_string()),
            description: Some(format!("{} consumes {}", info.service, info.filter_subject)),
            filter_subject: info.filter_subject.to_string(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: settings.ack_wait,
            max_deliver: settings.max_deliver,
            max_ack_pending: settings.max_ack_pending,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| failed(what(), e))
}

/// Everything the inventory declares: streams, buckets, object stores and durable consumers (the
/// operator's or `cargo xtask provision`'s job, as the admin identity).
pub async fn provision_all(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    for stream in STREAMS {
        ensure_stream(js, stream, replicas).await?;
    }
    for bucket in KEY_VALUE_BUCKETS {
        ensure_key_value(js, bucket, replicas).await?;
    }
    for store in OBJECT_STORES {
        ensure_object_store(js, store, replicas).await?;
    }
    for consumer in DURABLE_CONSUMERS {
        provision_consumer(js, consumer, consumer.into()).await?;
    }
    seed_interlock(js).await?;
    Ok(())
}

/// Writes the initial interlock record (`armed`, set by provisioning) into `ops_interlock`
/// only if the key was never written. A disarm, an arm, an unreadable old record and a deleted
/// key all stay as they are: the interlock fails closed, and only an operator's signed `arm`
/// re-arms a platform that is not armed. Returns whether it wrote the record.
pub async fn seed_interlock(js: &jetstream::Context) -> Result<bool, BusError> {
    let store = super::bucket::open_store::<OpsInterlock>(js).await?;
    let written = super::bucket::create_if_never_written::<OpsInterlock, InterlockArmed>(
        &store,
        &InterlockArmed::provisioned(),
    )
    .await?;
    Ok(written.is_some())
}

/// Why a look-up found nothing or something else.
fn missing(what: String, e: impl std::fmt::Display) -> BusError {
    BusError::NotProvisioned {
        what,
        problem: format!("cannot be read ({e})"),
    }
}

/// Checks that what `S` needs exists as the inventory says: the streams of the subjects it
/// produces, consumes and reads (holding those subjects), its own durable consumers (filtered to
/// their subject, explicit acks), and the buckets and object stores it reads or writes.
/// Services call this on start instead of creating anything.
pub async fn verify_provisioned<S: Service>(js: &jetstream::Context) -> Result<(), BusError> {
    let touches = |stream: &StreamInfo| {
        stream
            .subjects
            .iter()
            .any(|s| S::PRODUCES.contains(s) || S::CONSUMES.contains(s) || S::READS.contains(s))
    };
    for info in STREAMS.iter().filter(|s| touches(s)) {
        verify_stream(js, info).await?;
    }
    for consumer in DURABLE_CONSUMERS.iter().filter(|c| c.service == S::NAME) {
        verify_consumer(js, consumer).await?;
    }
    let uses = |bucket: &&BucketInfo| {
        bucket.writers.contains(&S::NAME) || bucket.readers.contains(&S::NAME)
    };
    for (prefix, bucket) in KEY_VALUE_BUCKETS
        .iter()
        .filter(uses)
        .map(|b| ("KV", b))
        .chain(OBJECT_STORES.iter().filter(uses).map(|b| ("OBJ", b)))
    {
        let name = format!("{prefix}_{}", bucket.name);
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(|e| missing(format!("bucket `{}`", bucket.name), e))?;
        stream
            .info()
            .await
            .map_err(|e| missing(format!("bucket `{}`", bucket.name), e))?;
    }
    Ok(())
}

async fn verify_stream(js: &jetstream::Context, info: &StreamInfo) -> Result<(), BusError> {
    let what = || format!("stream `{}`", info.name);
    let stream = js
        .get_stream(info.name)
        .await
        .map_err(|e| missing(what(), e))?;
    let config = &stream.cached_info().config;
    let subjects = &config.subjects;
    let problem = if let Some(absent) = info
        .subjects
        .iter()
        .find(|s| !subjects.iter().any(|have| have == *s))
    {
        Some(format!("does not hold `{absent}` (it holds {subjects:?})"))
    } else if config.storage != stream::StorageType::File {
        Some(format!(
            "keeps its messages in {:?}, the inventory says file storage",
            config.storage
        ))
    } else if config.retention != stream_config(info, 1).retention {
        Some(format!(
            "has retention {:?}, the inventory says {:?}",
            config.retention, info.retention
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(BusError::NotProvisioned {
            what: what(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The durable exists, delivers exactly its contract's subject and needs explicit acks.
pub(super) async fn verify_consumer(
    js: &jetstream::Context,
    info: &ConsumerInfo,
) -> Result<jetstream::consumer::PullConsumer, BusError> {
    let what = || format!("consumer `{}` on `{}`", info.name, info.stream);
    let stream = js
        .get_stream(info.stream)
        .await
        .map_err(|e| missing(format!("stream `{}`", info.stream), e))?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_consumer(info.name)
        .await
        .map_err(|e| missing(what(), e))?;
    let config = &consumer.cached_info().config;
    let problem = if config.filter_subject != info.filter_subject {
        Some(format!(
            "delivers `{}`, the inventory says `{}`",
            config.filter_subject, info.filter_subject
        ))
    } else if config.ack_policy != AckPolicy::Explicit {
        Some(format!(
            "acks {:?}, the inventory says explicit",
            config.ack_policy
        ))
    } else if config.durable_name.as_deref() != Some(info.name) {
        Some("is not durable".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(BusError::NotProvisioned {
            what: what(),
            problem,
        }),
        None => Ok(consumer),
    }
}

impl<S: Service> super::Bus<S> {
    /// Checks that the streams, buckets and durable consumers this service needs exist as the
    /// inventory says (see [`verify_provisioned`]).
    pub async fn verify_provisioned(&self) -> Result<(), BusError> {
        verify_provisioned::<S>(&self.inner.jetstream).await
    }
}
