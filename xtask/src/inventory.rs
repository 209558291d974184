//! The contract inventory (`schemas/inventory.toml`) and the schema files it points to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The parsed inventory file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub services: BTreeMap<String, Service>,
    pub streams: BTreeMap<String, Stream>,
    #[serde(default)]
    pub key_value: BTreeMap<String, Bucket>,
    #[serde(default)]
    pub object_stores: BTreeMap<String, Bucket>,
    /// Settings of every durable consumer unless `consumer_settings` overrides them.
    #[serde(default)]
    pub consumer_defaults: ConsumerSettings,
    /// Per-durable overrides, keyed by the durable's name.
    #[serde(default)]
    pub consumer_settings: BTreeMap<String, ConsumerOverrides>,
    /// Services that read streams through ordered readers, and what for.
    #[serde(default)]
    pub ordered_readers: BTreeMap<String, OrderedReader>,
    pub contracts: Vec<ContractEntry>,
}

/// Server-side settings of a durable consumer.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliver: i64,
    /// Seconds the server waits for an ack before redelivering.
    pub ack_wait_s: u64,
    /// Unacknowledged messages in flight across all instances.
    pub max_ack_pending: i64,
}

impl Default for ConsumerSettings {
    /// What a durable gets when the inventory says nothing (inventories before 1.2.0).
    fn default() -> Self {
        Self {
            max_deliver: 5,
            ack_wait_s: 30,
            max_ack_pending: 1000,
        }
    }
}

/// What one durable changes of [`ConsumerSettings`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerOverrides {
    pub max_deliver: Option<i64>,
    pub ack_wait_s: Option<u64>,
    pub max_ack_pending: Option<i64>,
}

/// A service that reads streams with ordered (unacknowledged, short-lived) consumers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrderedReader {
    pub description: String,
    /// Subjects the service consumes with its durable and also reads (a tool of the service
    /// that replays history, such as `brain simulate`); the description says why. Any other
    /// subject a service both consumes and reads is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_consumed: Vec<String>,
}

/// A durable consumer as the inventory implies it: one per contract and consuming service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableConsumer {
    pub name: String,
    pub service: String,
    pub contract: String,
    pub subject: String,
    pub stream: String,
    pub settings: ConsumerSettings,
    /// Which partition of the service's work it delivers, when the service is partitioned.
    pub partition: Option<u32>,
}

impl Inventory {
    /// Every durable consumer, in contract order.
    pub fn durable_consumers(&self) -> Vec<DurableConsumer> {
        let mut durables = Vec::new();
        for contract in &self.contracts {
            let major = major_from_subject(&contract.subject);
            for service in &contract.consumers {
                let name = durable_name(service, &contract.name, major);
                let overrides = self
                    .consumer_settings
                    .get(&name)
                    .copied()
                    .unwrap_or_default();
                let defaults = self.consumer_defaults;
                let settings = ConsumerSettings {
                    max_deliver: overrides.max_deliver.unwrap_or(defaults.max_deliver),
                    ack_wait_s: overrides.ack_wait_s.unwrap_or(defaults.ack_wait_s),
                    max_ack_pending: overrides
                        .max_ack_pending
                        .unwrap_or(defaults.max_ack_pending),
                };
                let durable = |name: String, partition: Option<u32>| DurableConsumer {
                    settings,
                    name,
                    service: service.clone(),
                    contract: contract.name.clone(),
                    subject: contract.subject.clone(),
                    stream: contract.stream.clone(),
                    partition,
                };
                match self.services.get(service).map(Service::partition_count) {
                    Some(count) if count > 1 => durables.extend(
                        (0..count).map(|p| durable(partition_durable_name(&name, p), Some(p))),
                    ),
                    _ => durables.push(durable(name, None)),
                }
            }
        }
        durables
    }
}

/// `<service>-<contract>-v<major>`.
pub fn durable_name(service: &str, contract: &str, major: u32) -> String {
    format!("{service}-{contract}-v{major}")
}

/// `<durable>-p<partition>`: one durable of a partitioned service.
pub fn partition_durable_name(durable: &str, partition: u32) -> String {
    format!("{durable}-p{partition}")
}

/// The major version a subject ends with (`orion.event.v1` → 1); 0 when it has none (the
/// inventory check reports such subjects).
pub fn major_from_subject(subject: &str) -> u32 {
    subject
        .rsplit('.')
        .next()
        .and_then(|last| last.strip_prefix('v'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A JetStream key-value bucket or object store, and who may write and read it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub description: String,
    pub writers: Vec<String>,
    pub readers: Vec<String>,
    /// Values kept per key (key-value buckets only).
    #[serde(default)]
    pub history: Option<u8>,
    /// 0 keeps entries forever.
    pub max_age_s: u64,
    /// The key layout: fixed keys and patterns of computed keys.
    #[serde(default)]
    pub keys: Vec<BucketKey>,
}

impl Bucket {
    /// Services that read the bucket without writing it.
    pub fn outside_readers(&self) -> impl Iterator<Item = &String> {
        self.readers.iter().filter(|r| !self.writers.contains(r))
    }
}

/// One key (or family of computed keys) of a bucket, and what its value is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BucketKey {
    /// A fixed key.
    #[serde(default)]
    pub key: Option<String>,
    /// Computed keys, in words (`request.<approval_request_id>`).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Schema of the value, relative to `schemas/`: required for a value others read.
    #[serde(default)]
    pub schema: Option<String>,
    pub description: String,
}

/// A key-value value governed by a schema: a fixed key of a bucket.
#[derive(Debug, Clone)]
pub struct KeyValueEntry<'a> {
    pub bucket: &'a str,
    pub spec: &'a Bucket,
    pub key: &'a str,
    pub description: &'a str,
    /// The schema file's stem without the version (`interlock_armed`).
    pub name: String,
    pub schema: &'a SchemaFile,
}

impl KeyValueEntry<'_> {
    /// `$KV.<bucket>.<key>`: the subject its values are stored on.
    pub fn subject(&self) -> String {
        format!("$KV.{}.{}", self.bucket, self.key)
    }

    /// `KV_<bucket>`: the stream behind the bucket.
    pub fn stream(&self) -> String {
        format!("KV_{}", self.bucket)
    }

    /// `<name>_v<major>`: the generated module.
    pub fn module(&self) -> String {
        format!(
            "{}_v{}",
            self.name,
            self.schema.major_version().unwrap_or(0)
        )
    }
}

/// `titan/interlock_armed.v1.schema.json` → `interlock_armed`.
pub fn schema_stem_name(rel_path: &str) -> String {
    let file = rel_path.rsplit('/').next().unwrap_or(rel_path);
    let stem = file.strip_suffix(".schema.json").unwrap_or(file);
    match stem.rsplit_once('.') {
        Some((name, version)) if version.starts_with('v') => name.to_string(),
        _ => stem.to_string(),
    }
}

/// A service identity: one NATS user with its own permissions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub description: String,
    /// Runs outside this repository (legacy or third-party producers); still gets an identity.
    #[serde(default)]
    pub external: bool,
    /// Shares of the service's work that instances take separately (see `partitions`): each
    /// durable consumer of the service exists once per partition, `<durable>-p<index>`.
    /// Absent means 1: one durable per contract, shared by every instance.
    #[serde(default)]
    pub partitions: Option<u32>,
}

impl Service {
    /// How many partitions the service's work is split into (1 when it is not partitioned).
    pub fn partition_count(&self) -> u32 {
        self.partitions.unwrap_or(1)
    }
}

/// A JetStream stream holding one contract family.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub description: String,
    pub retention: Retention,
    pub max_age_s: u64,
    pub max_msg_size: u32,
    pub duplicate_window_s: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    Limits,
    Interest,
    Workqueue,
}

/// One subject and the contract that governs it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContractEntry {
    /// Contract name (snake case); with the schema's major version it names the Rust module.
    pub name: String,
    pub subject: String,
    /// Path of the schema file, relative to `schemas/`.
    pub schema: String,
    pub owner: String,
    pub producers: Vec<String>,
    /// Services with a durable consumer on the subject (acknowledged, shared by instances).
    pub consumers: Vec<String>,
    /// Services that may read the subject with ordered readers (no acks, nothing taken away).
    #[serde(default)]
    pub readers: Vec<String>,
    /// Top-level fields whose values, joined with `:`, form the `Nats-Msg-Id`.
    pub idempotency_key: Vec<String>,
    pub stream: String,
    #[serde(default)]
    pub signature: Option<Signature>,
    /// Why the contract is deprecated and what replaces it.
    #[serde(default)]
    pub deprecated: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub algorithm: String,
    /// Where the signature travels: `field:<json pointer>` or `header:<name>`.
    pub carrier: String,
}

/// A schema file as read from disk.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Path relative to `schemas/`, with `/` separators.
    pub rel_path: String,
    pub text: String,
    pub json: Value,
}

impl SchemaFile {
    pub fn title(&self) -> Option<&str> {
        self.json.get("title").and_then(Value::as_str)
    }

    pub fn id(&self) -> Option<&str> {
        self.json.get("$id").and_then(Value::as_str)
    }

    pub fn description(&self) -> &str {
        self.json
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The major version, read from the `$id` (`…/v<N>.schema.json`).
    pub fn major_version(&self) -> Option<u32> {
        major_from_id(self.id()?)
    }

    /// The name of the constant version field (`version` for ORION, `v` for TITAN) and its value.
    pub fn version_constant(&self) -> Option<(&str, Value)> {
        let props = self.json.get("properties")?.as_object()?;
        ["version", "v"].into_iter().find_map(|name| {
            let field = props.get(name)?;
            let value = match (field.get("const"), field.get("enum")) {
                (Some(c), _) => c.clone(),
                (None, Some(Value::Array(values))) if values.len() == 1 => values[0].clone(),
                _ => return None,
            };
            Some((name, value))
        })
    }
}

/// Reads `…/v3.schema.json` as 3.
pub fn major_from_id(id: &str) -> Option<u32> {
    let file = id.rsplit('/').next()?;
    file.strip_prefix('v')?
        .strip_suffix(".schema.json")?
        .parse()
        .ok()
}

/// Everything the code generator and the checks read: the inventory and every schema file.
#[derive(Debug, Clone)]
pub struct ContractSet {
    pub inventory: Inventory,
    pub inventory_text: String,
    /// Every `*.schema.json` under `schemas/` (outside the baseline), sorted by path.
    pub schemas: Vec<SchemaFile>,
}

pub const INVENTORY_FILE: &str = "inventory.toml";
pub const BASELINE_DIR: &str = "baseline";

impl ContractSet {
    /// Loads `<schemas_dir>/inventory.toml` and every schema file under `schemas_dir`
    /// except the released baseline.
    pub fn load(schemas_dir: &Path) -> Result<Self> {
        let inventory_path = schemas_dir.join(INVENTORY_FILE);
        let inventory_text = std::fs::read_to_string(&inventory_path)
            .with_context(|| format!("reading {}", inventory_path.display()))?;
        let inventory: Inventory = toml::from_str(&inventory_text)
            .with_context(|| format!("parsing {}", inventory_path.display()))?;
        let schemas = load_schema_files(schemas_dir, &[BASELINE_DIR])?;
        Ok(Self {
            inventory,
            inventory_text,
            schemas,
        })
    }

    pub fn schema(&self, rel_path: &str) -> Option<&SchemaFile> {
        self.schemas.iter().find(|s| s.rel_path == rel_path)
    }

    /// Key-value values with a schema, by bucket and key; keys whose schema file is missing
    /// are skipped (the inventory check reports them).
    pub fn key_values(&self) -> Vec<KeyValueEntry<'_>> {
        let mut out = Vec::new();
        for (bucket, spec) in &self.inventory.key_value {
            for key in &spec.keys {
                let (Some(name), Some(rel)) = (&key.key, &key.schema) else {
                    continue;
                };
                let Some(schema) = self.schema(rel) else {
                    continue;
                };
                out.push(KeyValueEntry {
                    bucket,
                    spec,
                    key: name,
                    description: &key.description,
                    name: schema_stem_name(rel),
                    schema,
                });
            }
        }
        out
    }

    /// Whether a bucket key (of a key-value bucket or an object store) points at `rel_path`.
    pub fn is_bucket_schema(&self, rel_path: &str) -> bool {
        self.inventory
            .key_value
            .values()
            .chain(self.inventory.object_stores.values())
            .flat_map(|b| &b.keys)
            .any(|k| k.schema.as_deref() == Some(rel_path))
    }

    /// Inventory entries paired with their schema files; entries without a file are skipped
    /// (the inventory check reports them).
    pub fn contracts(&self) -> impl Iterator<Item = (&ContractEntry, &SchemaFile)> {
        self.inventory
            .contracts
            .iter()
            .filter_map(|c| Some((c, self.schema(&c.schema)?)))
    }
}

/// Reads every `*.schema.json` below `dir`, skipping the top-level folders in `skip`.
pub fn load_schema_files(dir: &Path, skip: &[&str]) -> Result<Vec<SchemaFile>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays below its root");
        if skip.iter().any(|s| rel.starts_with(s)) || !entry.file_type().is_file() {
            continue;
        }
        let rel_path = rel_to_string(rel);
        if !rel_path.ends_with(".schema.json") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", entry.path().display()))?;
        if !json.is_object() {
            bail!("{} is not a JSON object", entry.path().display());
        }
        files.push(SchemaFile {
            rel_path,
            text,
            json,
        });
    }
    Ok(files)
}

pub fn rel_to_string(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Repository layout, relative to a root (the real checkout or a test's temporary copy).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The workspace root of this checkout (the parent of `xtask/`).
    pub fn of_this_checkout() -> Self {
        let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Self::new(
            xtask_dir
                .parent()
                .expect("xtask/ lives in the workspace root"),
        )
    }

    pub fn schemas_dir(&self) -> PathBuf {
        self.root.join("schemas")
    }

    pub fn load(&self) -> Result<ContractSet> {
        ContractSet::load(&self.schemas_dir())
    }
}
