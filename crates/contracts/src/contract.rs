//! Contract metadata and service identities, implemented by the generated code.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Validator;

/// What the inventory and the schema say about one contract (one subject, one major version).
#[derive(Debug)]
pub struct ContractInfo {
    /// Contract name in the inventory, e.g. `event`.
    pub name: &'static str,
    /// The subject its messages travel on, e.g. `orion.event.v1`.
    pub subject: &'static str,
    /// The schema's `$id`.
    pub schema_id: &'static str,
    /// Path of the schema below `schemas/`.
    pub schema_path: &'static str,
    /// The schema text, embedded at build time.
    pub schema: &'static str,
    /// Major version (from the `$id`).
    pub major: u32,
    /// Name of the constant version field (`version` or `v`).
    pub version_field: &'static str,
    /// The constant version value as JSON text (`"1.0"`, `1`).
    pub version_value: &'static str,
    /// Top-level fields whose values, joined with `:`, identify a message for deduplication.
    pub idempotency_key: &'static [&'static str],
    /// The JetStream stream that stores the subject.
    pub stream: &'static str,
    /// Who owns the contract.
    pub owner: &'static str,
    /// How messages are signed, if they are.
    pub signature: Option<SignatureSpec>,
    /// Why the contract is deprecated, if it is.
    pub deprecated: Option<&'static str>,
}

/// How a contract's messages are signed.
#[derive(Debug, Clone, Copy)]
pub struct SignatureSpec {
    /// `hmac-sha256` or `ed25519`.
    pub algorithm: &'static str,
    /// `field:<json pointer>` or `header:<name>`.
    pub carrier: &'static str,
}

/// A JetStream stream from the inventory.
#[derive(Debug)]
pub struct StreamInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub subjects: &'static [&'static str],
    pub retention: Retention,
    pub max_age_s: u64,
    pub max_msg_size: u32,
    pub duplicate_window_s: u64,
}

/// A JetStream key-value bucket or object store from the inventory.
#[derive(Debug)]
pub struct BucketInfo {
    pub name: &'static str,
    /// Key-value bucket or object store.
    pub kind: BucketKind,
    pub description: &'static str,
    /// Services allowed to write.
    pub writers: &'static [&'static str],
    /// Services allowed to read (and watch).
    pub readers: &'static [&'static str],
    /// Values kept per key (key-value buckets).
    pub history: u8,
    /// Entry age limit in seconds; 0 keeps entries forever.
    pub max_age_s: u64,
    /// The key layout the inventory declares.
    pub keys: &'static [KeyInfo],
}

impl BucketInfo {
    /// The stream behind it: `KV_<name>` or `OBJ_<name>`.
    pub fn stream(&self) -> String {
        match self.kind {
            BucketKind::KeyValue => format!("KV_{}", self.name),
            BucketKind::ObjectStore => format!("OBJ_{}", self.name),
        }
    }
}

/// What a bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    KeyValue,
    ObjectStore,
}

/// One declared key of a bucket (or family of computed keys).
#[derive(Debug)]
pub struct KeyInfo {
    /// A fixed key.
    pub key: Option<&'static str>,
    /// Computed keys, in words (`request.<approval_request_id>`).
    pub pattern: Option<&'static str>,
    /// The value's schema below `schemas/`, when it has one (then a generated type implements
    /// [`KeyValue`] for the bucket with this key).
    pub schema_path: Option<&'static str>,
    pub description: &'static str,
}

/// A durable consumer from the inventory: created by provisioning, bound by its service.
#[derive(Debug)]
pub struct ConsumerInfo {
    /// `<service>-<contract>-v<major>`.
    pub name: &'static str,
    /// The service identity that binds it.
    pub service: &'static str,
    /// The contract it delivers (its subject is the consumer's filter).
    pub contract: &'static str,
    pub filter_subject: &'static str,
    pub stream: &'static str,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliver: i64,
    /// Seconds the server waits for an ack before redelivering.
    pub ack_wait_s: u64,
    /// Unacknowledged messages in flight across all instances.
    pub max_ack_pending: i64,
    /// The share of the service's work it delivers, when the service is partitioned
    /// (`partitions` in the inventory): the consumer exists once per partition, all with the
    /// same filter, and an instance binds the partitions it holds.
    pub partition: Option<u32>,
}

/// A service identity from the inventory, as data (the [`Service`] impls carry the same facts
/// as types): what its NATS user is granted.
#[derive(Debug)]
pub struct IdentityInfo {
    pub name: &'static str,
    pub external: bool,
    /// Subjects it publishes.
    pub produces: &'static [&'static str],
    /// Subjects it consumes with its own durables.
    pub consumes: &'static [&'static str],
    /// Subjects it reads with ordered readers.
    pub reads: &'static [&'static str],
    /// Prefix of its reply subjects.
    pub inbox_prefix: &'static str,
}

/// JetStream retention policy of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Limits,
    Interest,
    Workqueue,
}

/// A message type governed by a contract. Implemented by the generated code for every root
/// type; do not implement it by hand.
pub trait Contract: Serialize + DeserializeOwned {
    const INFO: &'static ContractInfo;

    /// The schema compiled once (format checks on) and shared.
    fn validator() -> &'static Validator;
}

/// A service identity from the inventory. Implemented by the generated unit structs in
/// [`crate::generated::services`].
pub trait Service: 'static {
    /// The identity's name, which is also its NATS user.
    const NAME: &'static str;
    /// Runs outside this repository (legacy or third-party producer).
    const EXTERNAL: bool;
    /// Shares its work is split into (`partitions` in the inventory; 1 when not partitioned):
    /// each of its durable consumers exists once per partition.
    const PARTITIONS: u32;
    /// Subjects the identity may publish.
    const PRODUCES: &'static [&'static str];
    /// Subjects the identity consumes with its own durable consumers.
    const CONSUMES: &'static [&'static str];
    /// Subjects the identity may read with ordered readers.
    const READS: &'static [&'static str];
    /// Prefix of the identity's reply subjects; only it may subscribe below it.
    const INBOX_PREFIX: &'static str;
}

/// `S: Produces<T>` holds exactly when the inventory lists `S` as a producer of `T`.
///
/// guardian produces incidents:
///
/// ```
/// fn may_publish<S: contracts::Produces<T>, T: contracts::Contract>(_: S) {}
/// may_publish::<_, contracts::Incident>(contracts::services::Guardian);
/// ```
///
/// but not decisions, so this does not compile:
///
/// ```compile_fail
/// fn may_publish<S: contracts::Produces<T>, T: contracts::Contract>(_: S) {}
/// may_publish::<_, contracts::Decision>(contracts::services::Guardian);
/// ```
pub trait Produces<T: Contract>: Service {}

/// `S: Consumes<T>` holds exactly when the inventory lists `S` as a consumer of `T`: `S` has
/// its own durable consumer on `T`'s subject.
///
/// ops-worker consumes ops commands but not events:
///
/// ```compile_fail
/// fn may_consume<S: contracts::Consumes<T>, T: contracts::Contract>(_: S) {}
/// may_consume::<_, contracts::Event>(contracts::services::OpsWorker);
/// ```
pub trait Consumes<T: Contract>: Service {}

/// `S: Reads<T>` holds exactly when the inventory lists `S` among the readers of `T`: `S` may
/// read `T`'s subject with ordered readers (no acks; nothing is taken from the consumers).
///
/// commander reads receipts, but not events:
///
/// ```compile_fail
/// fn may_read<S: contracts::Reads<T>, T: contracts::Contract>(_: S) {}
/// may_read::<_, contracts::Event>(contracts::services::Commander);
/// ```
pub trait Reads<T: Contract>: Service {}

/// A key-value bucket or object store from the inventory: the generated marker types in
/// [`crate::generated::buckets`] implement it. Do not implement it by hand.
pub trait Bucket: Send + Sync + 'static {
    const INFO: &'static BucketInfo;
}

/// A JetStream key-value bucket (as opposed to an object store).
pub trait KeyValueBucket: Bucket {}

/// A JetStream object store.
pub trait ObjectStoreBucket: Bucket {}

/// A value with a schema stored under the fixed key [`KEY`](KeyValue::KEY) of bucket `B`. Its
/// [`Contract`] metadata names `$KV.<bucket>.<key>` as subject and `KV_<bucket>` as stream,
/// so `encode` and `decode` validate it like a message; it is not a message (not in
/// [`CONTRACTS`](crate::CONTRACTS), never [`Produces`]).
pub trait KeyValue<B: KeyValueBucket>: Contract {
    const KEY: &'static str;
}

/// `S: ReadsBucket<B>` holds exactly when the inventory lists `S` among the readers or writers
/// of bucket `B`.
///
/// brain reads the interlock; guardian does not:
///
/// ```
/// fn may_read<S: contracts::ReadsBucket<B>, B: contracts::Bucket>(_: S, _: B) {}
/// may_read(contracts::services::Brain, contracts::buckets::OpsInterlock);
/// ```
///
/// ```compile_fail
/// fn may_read<S: contracts::ReadsBucket<B>, B: contracts::Bucket>(_: S, _: B) {}
/// may_read(contracts::services::Guardian, contracts::buckets::OpsInterlock);
/// ```
pub trait ReadsBucket<B: Bucket>: Service {}

/// `S: WritesBucket<B>` holds exactly when the inventory lists `S` among the writers of `B`.
///
/// ops-worker writes the interlock; brain only reads it:
///
/// ```
/// fn may_write<S: contracts::WritesBucket<B>, B: contracts::Bucket>(_: S, _: B) {}
/// may_write(contracts::services::OpsWorker, contracts::buckets::OpsInterlock);
/// ```
///
/// ```compile_fail
/// fn may_write<S: contracts::WritesBucket<B>, B: contracts::Bucket>(_: S, _: B) {}
/// may_write(contracts::services::Brain, contracts::buckets::OpsInterlock);
/// ```
pub trait WritesBucket<B: Bucket>: ReadsBucket<B> {}

/// The environment variable holding `user`'s NATS password (`guardian` →
/// `ORION_NATS_PASSWORD_GUARDIAN`): the generated server config reads it, and
/// `BusConfig::from_env` falls back to it.
pub fn nats_password_var(user: &str) -> String {
    format!("ORION_NATS_PASSWORD_{}", variable_stem(user))
}

/// A name as it appears in environment variable names: upper case, anything but ASCII letters
/// and digits as `_` (`ops-worker` → `OPS_WORKER`).
pub fn variable_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
