//! Rust types (typify), subject constants, contract metadata and service bindings.

use std::collections::BTreeSet;
use std::fmt::Write;

use anyhow::{anyhow, Context, Result};
use schemars::schema::{InstanceType, RootSchema, SchemaObject};
use serde_json::Value;
use typify::{TypeSpace, TypeSpaceImpl, TypeSpaceSettings};

use super::{header_lines, GeneratedFile, GENERATED_RUST_DIR};
use crate::contract_set_file::ContractSetFile;
use crate::inventory::{Bucket, ContractEntry, ContractSet, KeyValueEntry, SchemaFile};
use crate::naming::{module_name, pascal_case, screaming_snake};

pub fn generate(set: &ContractSet, recorded: &ContractSetFile) -> Result<Vec<GeneratedFile>> {
    let mut files = Vec::new();
    for (entry, schema) in set.contracts() {
        let module = module_name(entry, schema);
        let code = typify_module(schema)
            .with_context(|| format!("typify failed on schemas/{}", schema.rel_path))?;
        files.push(GeneratedFile {
            path: format!("{GENERATED_RUST_DIR}/{module}.rs"),
            contents: code,
        });
    }
    for value in set.key_values() {
        let code = typify_module(value.schema)
            .with_context(|| format!("typify failed on schemas/{}", value.schema.rel_path))?;
        files.push(GeneratedFile {
            path: format!("{GENERATED_RUST_DIR}/{}.rs", value.module()),
            contents: code,
        });
    }
    files.push(GeneratedFile {
        path: format!("{GENERATED_RUST_DIR}/mod.rs"),
        contents: registry_module(set, recorded)?,
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn rust_header(extra: &str) -> String {
    let mut out = String::new();
    for line in header_lines() {
        writeln!(out, "// {line}").unwrap();
    }
    if !extra.is_empty() {
        writeln!(out, "// {extra}").unwrap();
    }
    out
}

/// Keywords that only the validator enforces. typify cannot represent conditional rules
/// (`if`/`then`, `not`, the `allOf` that carries them), so they are left out of the types;
/// `contracts::decode` and `contracts::encode` still check them on every message.
const VALIDATOR_ONLY_KEYWORDS: &[&str] = &["if", "then", "else", "not", "allOf"];

fn typify_input(schema: &SchemaFile) -> Result<RootSchema> {
    let mut json = schema.json.clone();
    let object = json.as_object_mut().expect("schema files are objects");
    for keyword in VALIDATOR_ONLY_KEYWORDS {
        object.remove(*keyword);
    }
    serde_json::from_value(json).map_err(|e| anyhow!("not a schema typify can read: {e}"))
}

/// Every `date-time` string becomes `crate::Timestamp` (`time::OffsetDateTime`). typify
/// matches conversions on the whole schema (less its description), so each distinct
/// `date-time` schema in the file (with a `pattern`, say) is registered.
fn typify_settings(schema: &SchemaFile) -> Result<TypeSpaceSettings> {
    let mut date_times: Vec<SchemaObject> = vec![SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        format: Some("date-time".into()),
        ..Default::default()
    }];
    for found in find_date_time_schemas(&schema.json) {
        let object: SchemaObject = serde_json::from_value(found.clone())?;
        if !date_times.contains(&object) {
            date_times.push(object);
        }
    }
    let mut settings = TypeSpaceSettings::default();
    settings.with_derive("PartialEq".into());
    // Maps iterate in key order, so `encode` can write a message straight through instead
    // of sorting a `Value` first (canonical JSON orders members by key).
    settings.with_map_type(typify::MapType::new("::std::collections::BTreeMap"));
    for date_time in date_times {
        settings.with_conversion(
            date_time,
            "crate::Timestamp",
            [TypeSpaceImpl::Display, TypeSpaceImpl::FromStr].into_iter(),
        );
    }
    Ok(settings)
}

fn find_date_time_schemas(value: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("date-time") {
                found.push(value);
            }
            map.values()
                .for_each(|v| found.extend(find_date_time_schemas(v)));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| found.extend(find_date_time_schemas(v))),
        _ => {}
    }
    found
}

fn typify_module(schema: &SchemaFile) -> Result<String> {
    let settings = typify_settings(schema)?;
    let input = typify_input(schema)?;
    // typify panics on some schemas it cannot represent (cross-file refs, allOf over a closed
    // base); turn that into an error that names the schema instead of a crash.
    let tokens = std::panic::catch_unwind(move || {
        let mut space = TypeSpace::new(&settings);
        space.add_root_schema(input).map(|_| space.to_stream())
    })
    .map_err(|panic| {
        anyhow!(
            "typify cannot represent this schema: {}",
            panic_text(&panic)
        )
    })?
    .map_err(|e| anyhow!("{e}"))?;
    let file: syn::File =
        syn::parse2(tokens).context("typify produced tokens that do not parse")?;
    let mut out = rust_header(&format!("Source: schemas/{}", schema.rel_path));
    writeln!(out, "//! Types for `{}`.", schema.id().unwrap_or_default()).unwrap();
    writeln!(out, "//!").unwrap();
    for line in schema.description().lines() {
        writeln!(out, "//! {line}").unwrap();
    }
    writeln!(out).unwrap();
    out.push_str("#![allow(clippy::all, missing_docs, unused_imports)]\n\n");
    out.push_str(&keep_presence(
        prettyplease::unparse(&file),
        &conditionally_required(&schema.json),
    ));
    Ok(out)
}

/// Properties that a conditional rule (`allOf[*].then` / `else`) requires: whether they are
/// present is part of the message, so their type must tell absent from empty.
fn conditionally_required(schema: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for rule in schema["allOf"].as_array().into_iter().flatten() {
        for branch in ["then", "else"] {
            for name in rule[branch]["required"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

/// typify gives an optional array or map property its empty value when absent and leaves it
/// out when empty (`#[serde(default, skip_serializing_if = "…::is_empty")]`), so `"result": {}`
/// and no `result` become the same value. For a property in `names` (see
/// [`conditionally_required`]) that is not enough: a success receipt with `"result": {}` would
/// decode, then encode without `result` and break the rule that requires it. Such a property
/// becomes an `Option` of its type: `None` when absent, `Some` (even empty) when present.
fn keep_presence(code: String, names: &BTreeSet<String>) -> String {
    const OPTION_ATTRIBUTE: &str =
        "#[serde(default, skip_serializing_if = \"::std::option::Option::is_none\")]";
    let lines: Vec<&str> = code.lines().collect();
    let mut out = String::with_capacity(code.len());
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let next = lines.get(index + 1).map(|l| l.trim_start());
        let field = next.and_then(|n| n.strip_prefix("pub ")).and_then(|n| {
            let (name, rest) = n.split_once(": ")?;
            Some((name, rest.strip_suffix(',')?))
        });
        let empties_skipped = line
            .trim_start()
            .starts_with("#[serde(default, skip_serializing_if = \"")
            && line.trim_end().ends_with("::is_empty\")]");
        match field {
            Some((name, ty)) if empties_skipped && names.contains(name) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                writeln!(out, "{indent}{OPTION_ATTRIBUTE}").unwrap();
                writeln!(out, "{indent}pub {name}: ::std::option::Option<{ty}>,").unwrap();
                index += 2;
            }
            _ => {
                writeln!(out, "{line}").unwrap();
                index += 1;
            }
        }
    }
    out
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn registry_module(set: &ContractSet, recorded: &ContractSetFile) -> Result<String> {
    let mut body = String::new();
    let out = &mut body;
    out.push_str(
        "//! Generated registry: one module of types per contract, the `Contract` metadata of each\n\
         //! root type, subject constants, streams and the service identities with what they may\n\
         //! produce and consume.\n\n",
    );
    let contracts: Vec<_> = set.contracts().collect();
    let values = set.key_values();

    for (entry, schema) in &contracts {
        writeln!(out, "pub mod {};", module_name(entry, schema)).unwrap();
    }
    for value in &values {
        writeln!(out, "pub mod {};", value.module()).unwrap();
    }
    writeln!(out).unwrap();
    for (entry, schema) in &contracts {
        let title = root_type(schema)?;
        writeln!(out, "pub use {}::{title};", module_name(entry, schema)).unwrap();
    }
    for value in &values {
        let title = root_type(value.schema)?;
        writeln!(out, "pub use {}::{title};", value.module()).unwrap();
    }

    writeln!(
        out,
        "\n/// Semantic version of the contract set (`schemas/contract-set.toml`)."
    )
    .unwrap();
    writeln!(
        out,
        "pub const CONTRACT_SET_VERSION: &str = {:?};",
        recorded.version
    )
    .unwrap();
    writeln!(
        out,
        "/// sha256 over the canonical form of the schemas and the inventory."
    )
    .unwrap();
    writeln!(
        out,
        "pub const CONTRACT_SET_SHA256: &str = {:?};\n",
        recorded.sha256
    )
    .unwrap();

    for (entry, schema) in &contracts {
        contract_impl(out, &ImplSpec::of_contract(entry), schema)?;
    }
    for value in &values {
        contract_impl(out, &ImplSpec::of_key_value(value), value.schema)?;
    }
    contract_table(out, &contracts)?;
    message_enum(out, &contracts)?;
    subjects_module(out, &contracts);
    streams_table(out, set);
    buckets_module(out, set, &values)?;
    key_value_table(out, &values)?;
    consumers_table(out, set);
    services_module(out, set, &contracts)?;
    let file: syn::File = syn::parse_str(&body).context("the generated registry does not parse")?;
    Ok(rust_header("") + &prettyplease::unparse(&file))
}

fn root_type(schema: &SchemaFile) -> Result<String> {
    schema
        .title()
        .map(pascal_case)
        .ok_or_else(|| anyhow!("schemas/{} has no title", schema.rel_path))
}

/// What a `Contract` impl says besides the schema: a message contract's inventory entry, or a
/// key-value value's bucket and key.
struct ImplSpec {
    name: String,
    subject: String,
    stream: String,
    owner: String,
    idempotency_key: Vec<String>,
    signature: Option<crate::inventory::Signature>,
    deprecated: Option<String>,
}

impl ImplSpec {
    fn of_contract(entry: &ContractEntry) -> Self {
        Self {
            name: entry.name.clone(),
            subject: entry.subject.clone(),
            stream: entry.stream.clone(),
            owner: entry.owner.clone(),
            idempotency_key: entry.idempotency_key.clone(),
            signature: entry.signature.clone(),
            deprecated: entry.deprecated.clone(),
        }
    }

    /// A value is stored on `$KV.<bucket>.<key>` in `KV_<bucket>`, owned by the bucket's
    /// writers, and has no idempotency key (a put replaces the value).
    fn of_key_value(value: &KeyValueEntry) -> Self {
        Self {
            name: value.name.clone(),
            subject: value.subject(),
            stream: value.stream(),
            owner: value.spec.writers.join(", "),
            idempotency_key: Vec::new(),
            signature: None,
            deprecated: None,
        }
    }
}

fn contract_impl(out: &mut String, entry: &ImplSpec, schema: &SchemaFile) -> Result<()> {
    let title = root_type(schema)?;
    let (version_field, version_value) = schema
        .version_constant()
        .ok_or_else(|| anyhow!("schemas/{} has no constant version", schema.rel_path))?;
    let key: Vec<String> = entry
        .idempotency_key
        .iter()
        .map(|k| format!("{k:?}"))
        .collect();
    let deprecated = match &entry.deprecated {
        Some(why) => format!("Some({why:?})"),
        None => "None".into(),
    };
    let signature = match &entry.signature {
        Some(s) => format!(
            "Some(crate::SignatureSpec {{ algorithm: {:?}, carrier: {:?} }})",
            s.algorithm, s.carrier
        ),
        None => "None".into(),
    };
    write!(
        out,
        r#"impl crate::Contract for {title} {{
    const INFO: &'static crate::ContractInfo = &crate::ContractInfo {{
        name: {name:?},
        subject: {subject:?},
        schema_id: {schema_id:?},
        schema_path: {schema_path:?},
        schema: include_str!("../../../../schemas/{schema_path}"),
        major: {major},
        version_field: {version_field:?},
        version_value: {version_value:?},
        idempotency_key: &[{key}],
        stream: {stream:?},
        owner: {owner:?},
        signature: {signature},
        deprecated: {deprecated},
    }};

    fn validator() -> &'static crate::Validator {{
        static VALIDATOR: std::sync::OnceLock<crate::Validator> = std::sync::OnceLock::new();
        VALIDATOR.get_or_init(|| crate::Validator::compile(Self::INFO))
    }}
}}

"#,
        name = entry.name,
        subject = entry.subject,
        schema_id = schema.id().unwrap_or_default(),
        schema_path = schema.rel_path,
        major = schema.major_version().unwrap_or(0),
        version_value = serde_json::to_string(&version_value)?,
        key = key.join(", "),
        stream = entry.stream,
        owner = entry.owner,
    )
    .unwrap();
    Ok(())
}

fn contract_table(out: &mut String, contracts: &[(&ContractEntry, &SchemaFile)]) -> Result<()> {
    writeln!(
        out,
        "/// Every contract in the inventory, in inventory order."
    )
    .unwrap();
    writeln!(out, "pub static CONTRACTS: &[&crate::ContractInfo] = &[").unwrap();
    for (_, schema) in contracts {
        writeln!(
            out,
            "    <{} as crate::Contract>::INFO,",
            root_type(schema)?
        )
        .unwrap();
    }
    writeln!(out, "];\n").unwrap();
    Ok(())
}

fn message_enum(out: &mut String, contracts: &[(&ContractEntry, &SchemaFile)]) -> Result<()> {
    let arms = contracts
        .iter()
        .map(|(entry, schema)| Ok((entry.subject.clone(), root_type(schema)?)))
        .collect::<Result<Vec<_>>>()?;
    dispatch_enum(
        out,
        &DispatchEnum {
            name: "Message",
            doc: "Any message of the inventory, for tools that handle every subject (audit trail, dead letters).",
            decode_doc: "Decodes (parse + validate + deserialize) a message that arrived on `subject`.",
            noun: "message",
        },
        &arms,
    );
    Ok(())
}

/// The names and docs of an enum over contract types, dispatched by subject.
struct DispatchEnum {
    name: &'static str,
    doc: &'static str,
    decode_doc: &'static str,
    noun: &'static str,
}

/// `enum <name> { <Type>(<Type>), … }` with `decode(subject, bytes)`, `info()` and `encode()`.
fn dispatch_enum(out: &mut String, e: &DispatchEnum, arms: &[(String, String)]) {
    let DispatchEnum {
        name,
        doc,
        decode_doc,
        noun,
    } = e;
    writeln!(out, "/// {doc}").unwrap();
    writeln!(out, "#[derive(Debug, Clone, PartialEq)]").unwrap();
    writeln!(out, "pub enum {name} {{").unwrap();
    for (_, ty) in arms {
        writeln!(out, "    {ty}({ty}),").unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    writeln!(out, "impl {name} {{").unwrap();
    writeln!(out, "    /// {decode_doc}").unwrap();
    writeln!(
        out,
        "    pub fn decode(subject: &str, bytes: &[u8]) -> Result<Self, crate::ContractError> {{"
    )
    .unwrap();
    writeln!(out, "        match subject {{").unwrap();
    for (subject, ty) in arms {
        writeln!(
            out,
            "            {subject:?} => crate::decode::<{ty}>(bytes).map(Self::{ty}),"
        )
        .unwrap();
    }
    writeln!(out, "            _ => Err(crate::ContractError::UnknownSubject {{ subject: subject.to_string() }}),").unwrap();
    writeln!(out, "        }}\n    }}\n").unwrap();
    writeln!(out, "    /// The contract of this {noun}.").unwrap();
    writeln!(
        out,
        "    pub fn info(&self) -> &'static crate::ContractInfo {{"
    )
    .unwrap();
    writeln!(out, "        match self {{").unwrap();
    for (_, ty) in arms {
        writeln!(
            out,
            "            Self::{ty}(_) => <{ty} as crate::Contract>::INFO,"
        )
        .unwrap();
    }
    writeln!(out, "        }}\n    }}\n").unwrap();
    writeln!(out, "    /// Serializes and validates the {noun}.").unwrap();
    writeln!(
        out,
        "    pub fn encode(&self) -> Result<Vec<u8>, crate::ContractError> {{"
    )
    .unwrap();
    writeln!(out, "        match self {{").unwrap();
    for (_, ty) in arms {
        writeln!(out, "            Self::{ty}(m) => crate::encode(m),").unwrap();
    }
    writeln!(out, "        }}\n    }}\n}}\n").unwrap();
}

fn subjects_module(out: &mut String, contracts: &[(&ContractEntry, &SchemaFile)]) {
    writeln!(out, "/// Every subject in the inventory.").unwrap();
    writeln!(out, "pub mod subjects {{").unwrap();
    for (entry, _) in contracts {
        writeln!(out, "    /// Carries `{}` messages.", entry.name).unwrap();
        writeln!(
            out,
            "    pub const {}: &str = {:?};",
            screaming_snake(&entry.subject),
            entry.subject
        )
        .unwrap();
    }
    writeln!(out, "}}\n").unwrap();
}

fn streams_table(out: &mut String, set: &ContractSet) {
    writeln!(
        out,
        "/// Every JetStream stream in the inventory, with the subjects it holds."
    )
    .unwrap();
    writeln!(out, "pub static STREAMS: &[crate::StreamInfo] = &[").unwrap();
    for (name, stream) in &set.inventory.streams {
        let subjects: Vec<String> = set
            .inventory
            .contracts
            .iter()
            .filter(|c| &c.stream == name)
            .map(|c| format!("{:?}", c.subject))
            .collect();
        writeln!(
            out,
            "    crate::StreamInfo {{ name: {name:?}, description: {:?}, subjects: &[{}], retention: crate::Retention::{:?}, max_age_s: {}, max_msg_size: {}, duplicate_window_s: {} }},",
            stream.description,
            subjects.join(", "),
            stream.retention,
            stream.max_age_s,
            stream.max_msg_size,
            stream.duplicate_window_s,
        )
        .unwrap();
    }
    writeln!(out, "];\n").unwrap();
}

fn bucket_info(bucket: &str, spec: &Bucket, kind: &str) -> String {
    let list = |s: &[String]| {
        s.iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let option = |s: &Option<String>| match s {
        Some(s) => format!("Some({s:?})"),
        None => "None".to_string(),
    };
    let keys: Vec<String> = spec
        .keys
        .iter()
        .map(|k| {
            format!(
                "crate::KeyInfo {{ key: {}, pattern: {}, schema_path: {}, description: {:?} }}",
                option(&k.key),
                option(&k.pattern),
                option(&k.schema),
                k.description
            )
        })
        .collect();
    format!(
        "crate::BucketInfo {{ name: {bucket:?}, kind: crate::BucketKind::{kind}, description: {:?}, writers: &[{}], readers: &[{}], history: {}, max_age_s: {}, keys: &[{}] }}",
        spec.description,
        list(&spec.writers),
        list(&spec.readers),
        spec.history.unwrap_or(1),
        spec.max_age_s,
        keys.join(", "),
    )
}

/// The marker type of every bucket and object store (with its metadata), the tables of both,
/// and the key bindings of the values with a schema.
fn buckets_module(out: &mut String, set: &ContractSet, values: &[KeyValueEntry]) -> Result<()> {
    let kinds = [
        ("KeyValue", "KeyValueBucket", &set.inventory.key_value),
        (
            "ObjectStore",
            "ObjectStoreBucket",
            &set.inventory.object_stores,
        ),
    ];
    writeln!(
        out,
        "/// One marker type per key-value bucket and object store. `S: ReadsBucket<B>` and\n\
         /// `S: WritesBucket<B>` hold exactly for the readers and writers the inventory lists, and\n\
         /// each value with a schema is bound to its key (`KeyValue<B>`), so `Bus::bucket` hands\n\
         /// out typed handles and a service cannot write a bucket it does not own."
    )
    .unwrap();
    writeln!(out, "pub mod buckets {{").unwrap();
    for (kind, marker, buckets) in kinds {
        for (name, spec) in buckets {
            let ty = pascal_case(name);
            let info = screaming_snake(name);
            writeln!(out, "    /// {}", spec.description).unwrap();
            writeln!(
                out,
                "    pub const {info}: crate::BucketInfo = {};\n",
                bucket_info(name, spec, kind)
            )
            .unwrap();
            writeln!(out, "    /// {}", spec.description).unwrap();
            writeln!(out, "    #[derive(Debug, Clone, Copy, Default)]").unwrap();
            writeln!(out, "    pub struct {ty};\n").unwrap();
            writeln!(out, "    impl crate::Bucket for {ty} {{").unwrap();
            writeln!(
                out,
                "        const INFO: &'static crate::BucketInfo = &{info};"
            )
            .unwrap();
            writeln!(out, "    }}\n").unwrap();
            writeln!(out, "    impl crate::{marker} for {ty} {{}}\n").unwrap();
        }
    }
    for value in values {
        let ty = root_type(value.schema)?;
        writeln!(
            out,
            "    impl crate::KeyValue<{}> for super::{ty} {{\n        const KEY: &'static str = {:?};\n    }}\n",
            pascal_case(value.bucket),
            value.key
        )
        .unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    for (table, kind, buckets) in [
        (
            "KEY_VALUE_BUCKETS",
            "key-value bucket",
            &set.inventory.key_value,
        ),
        (
            "OBJECT_STORES",
            "object store",
            &set.inventory.object_stores,
        ),
    ] {
        writeln!(out, "/// Every JetStream {kind} in the inventory.").unwrap();
        writeln!(out, "pub static {table}: &[crate::BucketInfo] = &[").unwrap();
        for name in buckets.keys() {
            writeln!(out, "    buckets::{},", screaming_snake(name)).unwrap();
        }
        writeln!(out, "];\n").unwrap();
    }
    Ok(())
}

/// The values with a schema: their table and an enum like [`Message`]'s, kept apart from the
/// message tables (they are never published on a message subject).
fn key_value_table(out: &mut String, values: &[KeyValueEntry]) -> Result<()> {
    let types: Vec<String> = values
        .iter()
        .map(|v| root_type(v.schema))
        .collect::<Result<_>>()?;
    writeln!(
        out,
        "/// Every key-value value with a schema (not messages: they are not in `CONTRACTS`)."
    )
    .unwrap();
    writeln!(out, "pub static KEY_VALUES: &[&crate::ContractInfo] = &[").unwrap();
    for ty in &types {
        writeln!(out, "    <{ty} as crate::Contract>::INFO,").unwrap();
    }
    writeln!(out, "];\n").unwrap();
    let arms: Vec<(String, String)> = values.iter().map(|v| v.subject()).zip(types).collect();
    dispatch_enum(
        out,
        &DispatchEnum {
            name: "KeyValueRecord",
            doc: "Any key-value value with a schema, for tools that read every bucket.",
            decode_doc: "Decodes (parse + validate + deserialize) the value stored on `subject` (`$KV.<bucket>.<key>`).",
            noun: "value",
        },
        &arms,
    );
    Ok(())
}

fn consumers_table(out: &mut String, set: &ContractSet) {
    writeln!(
        out,
        "/// Every durable consumer in the inventory (created by provisioning, bound by its service)."
    )
    .unwrap();
    writeln!(
        out,
        "pub static DURABLE_CONSUMERS: &[crate::ConsumerInfo] = &["
    )
    .unwrap();
    for d in set.inventory.durable_consumers() {
        writeln!(
            out,
            "    crate::ConsumerInfo {{ name: {:?}, service: {:?}, contract: {:?}, filter_subject: {:?}, stream: {:?}, max_deliver: {}, ack_wait_s: {}, max_ack_pending: {}, partition: {:?} }},",
            d.name, d.service, d.contract, d.subject, d.stream,
            d.settings.max_deliver, d.settings.ack_wait_s, d.settings.max_ack_pending,
            d.partition,
        )
        .unwrap();
    }
    writeln!(out, "];\n").unwrap();
}

/// What each identity may publish, consume and read, by subject.
fn subjects_of<'a>(
    contracts: &[(&'a ContractEntry, &SchemaFile)],
    pick: impl Fn(&ContractEntry) -> bool,
) -> BTreeSet<&'a str> {
    contracts
        .iter()
        .filter(|(c, _)| pick(c))
        .map(|(c, _)| c.subject.as_str())
        .collect()
}

fn quoted_list(subjects: &BTreeSet<&str>) -> String {
    subjects
        .iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn identities_table(
    out: &mut String,
    set: &ContractSet,
    contracts: &[(&ContractEntry, &SchemaFile)],
) {
    writeln!(
        out,
        "/// Every service identity with what the inventory grants it (tests derive attack cases from this)."
    )
    .unwrap();
    writeln!(out, "pub static IDENTITIES: &[crate::IdentityInfo] = &[").unwrap();
    for (name, service) in &set.inventory.services {
        writeln!(
            out,
            "    crate::IdentityInfo {{ name: {name:?}, external: {}, produces: &[{}], consumes: &[{}], reads: &[{}], inbox_prefix: {:?} }},",
            service.external,
            quoted_list(&subjects_of(contracts, |c| c.producers.contains(name))),
            quoted_list(&subjects_of(contracts, |c| c.consumers.contains(name))),
            quoted_list(&subjects_of(contracts, |c| c.readers.contains(name))),
            super::nats_auth::inbox_prefix(name),
        )
        .unwrap();
    }
    writeln!(out, "];\n").unwrap();
}

fn services_module(
    out: &mut String,
    set: &ContractSet,
    contracts: &[(&ContractEntry, &SchemaFile)],
) -> Result<()> {
    writeln!(
        out,
        "/// Service identities. `Produces<T>` / `Consumes<T>` are implemented exactly as the\n\
         /// inventory says, so publishing a message a service does not own does not compile."
    )
    .unwrap();
    let names: Vec<String> = set
        .inventory
        .services
        .keys()
        .map(|n| format!("{n:?}"))
        .collect();
    writeln!(
        out,
        "/// Every service identity in the inventory (each is a NATS user)."
    )
    .unwrap();
    writeln!(
        out,
        "pub static SERVICES: &[&str] = &[{}];\n",
        names.join(", ")
    )
    .unwrap();
    identities_table(out, set, contracts);
    writeln!(out, "pub mod services {{").unwrap();
    for (name, service) in &set.inventory.services {
        let type_name = pascal_case(name);
        let produces: BTreeSet<&str> = contracts
            .iter()
            .filter(|(c, _)| c.producers.contains(name))
            .map(|(c, _)| c.subject.as_str())
            .collect();
        let consumes: BTreeSet<&str> = contracts
            .iter()
            .filter(|(c, _)| c.consumers.contains(name))
            .map(|(c, _)| c.subject.as_str())
            .collect();
        let reads: BTreeSet<&str> = contracts
            .iter()
            .filter(|(c, _)| c.readers.contains(name))
            .map(|(c, _)| c.subject.as_str())
            .collect();
        let list = |s: &BTreeSet<&str>| {
            s.iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(out, "    /// {}", service.description).unwrap();
        writeln!(out, "    #[derive(Debug, Clone, Copy, Default)]").unwrap();
        writeln!(out, "    pub struct {type_name};\n").unwrap();
        writeln!(out, "    impl crate::Service for {type_name} {{").unwrap();
        writeln!(out, "        const NAME: &'static str = {name:?};").unwrap();
        writeln!(out, "        const EXTERNAL: bool = {};", service.external).unwrap();
        writeln!(
            out,
            "        const PARTITIONS: u32 = {};",
            service.partition_count()
        )
        .unwrap();
        writeln!(
            out,
            "        const PRODUCES: &'static [&'static str] = &[{}];",
            list(&produces)
        )
        .unwrap();
        writeln!(
            out,
            "        const CONSUMES: &'static [&'static str] = &[{}];",
            list(&consumes)
        )
        .unwrap();
        writeln!(
            out,
            "        const READS: &'static [&'static str] = &[{}];",
            list(&reads)
        )
        .unwrap();
        writeln!(
            out,
            "        const INBOX_PREFIX: &'static str = {:?};",
            super::nats_auth::inbox_prefix(name)
        )
        .unwrap();
        writeln!(out, "    }}\n").unwrap();
        for (entry, schema) in contracts {
            let ty = root_type(schema)?;
            if entry.producers.contains(name) {
                writeln!(
                    out,
                    "    impl crate::Produces<super::{ty}> for {type_name} {{}}"
                )
                .unwrap();
            }
            if entry.consumers.contains(name) {
                writeln!(
                    out,
                    "    impl crate::Consumes<super::{ty}> for {type_name} {{}}"
                )
                .unwrap();
            }
            if entry.readers.contains(name) {
                writeln!(
                    out,
                    "    impl crate::Reads<super::{ty}> for {type_name} {{}}"
                )
                .unwrap();
            }
        }
        for (bucket, spec) in set
            .inventory
            .key_value
            .iter()
            .chain(&set.inventory.object_stores)
        {
            let marker = pascal_case(bucket);
            let writes = spec.writers.contains(name);
            if writes || spec.readers.contains(name) {
                writeln!(
                    out,
                    "    impl crate::ReadsBucket<super::buckets::{marker}> for {type_name} {{}}"
                )
                .unwrap();
            }
            if writes {
                writeln!(
                    out,
                    "    impl crate::WritesBucket<super::buckets::{marker}> for {type_name} {{}}"
                )
                .unwrap();
            }
        }
        writeln!(out).unwrap();
    }
    writeln!(out, "}}").unwrap();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditionally_required_map_keeps_absent_apart_from_empty() {
        let schema = serde_json::json!({
            "allOf": [{ "if": {}, "then": { "required": ["result"] } }]
        });
        let names = conditionally_required(&schema);
        let code = "pub struct R {\n    #[serde(default, skip_serializing_if = \"::serde_json::Map::is_empty\")]\n    pub result: ::serde_json::Map<K, V>,\n    #[serde(default, skip_serializing_if = \"::serde_json::Map::is_empty\")]\n    pub other: ::serde_json::Map<K, V>,\n}\n";
        let out = keep_presence(code.to_string(), &names);
        assert!(out.contains(
            "    #[serde(default, skip_serializing_if = \"::std::option::Option::is_none\")]\n    pub result: ::std::option::Option<::serde_json::Map<K, V>>,\n"
        ), "{out}");
        assert!(
            out.contains("    pub other: ::serde_json::Map<K, V>,\n"),
            "{out}"
        );
        assert_eq!(out.matches("is_empty").count(), 1, "{out}");
    }
}
