//! The inventory and the schema files agree: every schema is inventoried, every entry has a
//! schema, an owner, known services and streams, a subject that carries the major version, and
//! an idempotency key made of required fields.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Context, Report};

const INVENTORY: &str = "schemas/inventory.toml";
/// The most partitions a service may be split into.
const MAX_PARTITIONS: u32 = 64;

pub fn check(cx: &Context, report: &mut Report) {
    let inventory = &cx.set.inventory;
    let mut subjects = BTreeSet::new();
    let mut names = BTreeSet::new();

    for schema in &cx.set.schemas {
        if !inventory
            .contracts
            .iter()
            .any(|c| c.schema == schema.rel_path)
            && !cx.set.is_bucket_schema(&schema.rel_path)
        {
            report.error(
                "SCHEMA_NOT_IN_INVENTORY",
                format!("schemas/{}", schema.rel_path),
                "has no entry in the inventory, so no service may send or receive it",
                "add a [[contracts]] entry (or a bucket key) for it to schemas/inventory.toml, or delete the schema",
            );
        }
    }

    for entry in &inventory.contracts {
        let at = format!("{INVENTORY}#{}", entry.subject);
        if !subjects.insert(entry.subject.as_str()) {
            report.error(
                "INVENTORY_DUPLICATE_SUBJECT",
                &at,
                "subject is listed twice",
                "one entry per subject",
            );
        }
        let Some(schema) = cx.set.schema(&entry.schema) else {
            report.error(
                "INVENTORY_SCHEMA_MISSING",
                &at,
                format!("schema `schemas/{}` does not exist", entry.schema),
                "fix the `schema` path (relative to schemas/) or add the schema file",
            );
            continue;
        };
        let major = schema.major_version();
        if !names.insert((entry.name.as_str(), major)) {
            report.error(
                "INVENTORY_DUPLICATE_CONTRACT",
                &at,
                format!(
                    "contract `{}` v{} is listed twice",
                    entry.name,
                    major.unwrap_or(0)
                ),
                "one entry per contract and major version",
            );
        }
        if entry.owner.trim().is_empty() {
            report.error(
                "INVENTORY_OWNER_MISSING",
                &at,
                "has no owner",
                "set `owner` to the team or service that owns the contract",
            );
        }
        if let Some(major) = major {
            if !entry.subject.ends_with(&format!(".v{major}")) {
                report.error(
                    "INVENTORY_SUBJECT_VERSION_MISMATCH",
                    &at,
                    format!(
                        "subject does not end with `.v{major}`, the major version of its schema"
                    ),
                    "a subject carries its contract's major version, e.g. `orion.event.v1`",
                );
            }
            let expected_file = format!("{}.v{major}.schema.json", entry.name);
            if !schema.rel_path.ends_with(&format!("/{expected_file}"))
                && schema.rel_path != expected_file
            {
                report.error(
                    "INVENTORY_SCHEMA_NAME_MISMATCH",
                    &at,
                    format!(
                        "contract `{}` points at `{}`; its file must be named `{expected_file}`",
                        entry.name, schema.rel_path
                    ),
                    "name schema files `<contract>.v<major>.schema.json`",
                );
            }
        }
        if !is_subject(&entry.subject) {
            report.error(
                "INVENTORY_SUBJECT_INVALID",
                &at,
                "subject must be lowercase tokens separated by dots, without wildcards",
                "use names like `orion.event.v1`",
            );
        }
        for service in entry
            .producers
            .iter()
            .chain(&entry.consumers)
            .chain(&entry.readers)
        {
            if !inventory.services.contains_key(service) {
                report.error(
                    "INVENTORY_UNKNOWN_SERVICE",
                    &at,
                    format!("service `{service}` is not declared under [services]"),
                    "declare the service identity, or fix the name",
                );
            }
        }
        if entry.producers.is_empty() {
            report.error(
                "INVENTORY_NO_PRODUCER",
                &at,
                "nobody produces this subject",
                "list its producers",
            );
        }
        if entry.consumers.is_empty() && entry.readers.is_empty() {
            report.warning(
                "INVENTORY_NO_CONSUMER",
                &at,
                "nobody consumes or reads this subject",
                "list its consumers or readers, or retire the contract",
            );
        }
        for reader in &entry.readers {
            if !inventory.ordered_readers.contains_key(reader) {
                report.error(
                    "INVENTORY_READER_UNDECLARED",
                    &at,
                    format!(
                        "`{reader}` reads this subject but has no [ordered_readers.{reader}] entry"
                    ),
                    "declare what the service reads the streams for under [ordered_readers]",
                );
            }
            let declared = inventory
                .ordered_readers
                .get(reader)
                .is_some_and(|r| r.also_consumed.contains(&entry.subject));
            if entry.consumers.contains(reader) && !declared {
                report.error(
                    "INVENTORY_READER_AND_CONSUMER",
                    &at,
                    format!("`{reader}` is listed both as a consumer and as a reader"),
                    format!("a service either consumes a subject with its durable or reads it; pick one (or, for a tool that replays history, list the subject in [ordered_readers.{reader}] also_consumed and say why in its description)"),
                );
            }
        }
        if !inventory.streams.contains_key(&entry.stream) {
            report.error(
                "INVENTORY_UNKNOWN_STREAM",
                &at,
                format!("stream `{}` is not declared under [streams]", entry.stream),
                "declare the stream, or fix the name",
            );
        }
        check_idempotency_key(entry, &schema.json, &at, report);
        if let Some(signature) = &entry.signature {
            let known_algorithm =
                ["hmac-sha256", "ed25519"].contains(&signature.algorithm.as_str());
            let known_carrier = signature.carrier.starts_with("field:/")
                || signature.carrier.starts_with("header:");
            if !known_algorithm || !known_carrier {
                report.error(
                    "INVENTORY_SIGNATURE_INVALID",
                    &at,
                    format!("signature `{}` via `{}` is not understood", signature.algorithm, signature.carrier),
                    "algorithm is hmac-sha256 or ed25519; carrier is `field:<json pointer>` or `header:<name>`",
                );
            }
        }
    }

    for (kind, buckets) in [
        ("key_value", &inventory.key_value),
        ("object_stores", &inventory.object_stores),
    ] {
        for (name, bucket) in buckets {
            let at = format!("{INVENTORY}#{kind}.{name}");
            for service in bucket.writers.iter().chain(&bucket.readers) {
                if !inventory.services.contains_key(service) {
                    report.error(
                        "INVENTORY_UNKNOWN_SERVICE",
                        &at,
                        format!("service `{service}` is not declared under [services]"),
                        "declare the service identity, or fix the name",
                    );
                }
            }
            if bucket.writers.is_empty() {
                report.error(
                    "INVENTORY_NO_PRODUCER",
                    &at,
                    "nobody writes this bucket",
                    "list its writers",
                );
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                report.error(
                    "INVENTORY_BUCKET_NAME_INVALID",
                    &at,
                    "bucket names are lower case letters, digits and underscores",
                    "rename the bucket, e.g. `ops_interlock`",
                );
            }
            check_bucket_keys(cx, kind, name, bucket, &at, report);
        }
    }

    check_consumers(inventory, report);

    for name in inventory.streams.keys() {
        if !inventory.contracts.iter().any(|c| &c.stream == name) {
            report.warning(
                "INVENTORY_UNUSED_STREAM",
                format!("{INVENTORY}#streams.{name}"),
                "no contract is stored in this stream",
                "remove the stream or assign contracts to it",
            );
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            report.error(
                "INVENTORY_STREAM_NAME_INVALID",
                format!("{INVENTORY}#streams.{name}"),
                "stream names are upper case letters, digits and underscores",
                "rename the stream, e.g. `ORION_EVENTS`",
            );
        }
    }
}

/// A bucket's key layout: declared, each entry a fixed key or a pattern, and every value that
/// another service reads a fixed key with a schema.
fn check_bucket_keys(
    cx: &Context,
    kind: &str,
    name: &str,
    bucket: &crate::inventory::Bucket,
    at: &str,
    report: &mut Report,
) {
    if bucket.keys.is_empty() {
        report.error(
            "INVENTORY_BUCKET_KEYS_MISSING",
            at,
            "declares no keys, so nobody can tell what it holds",
            format!("add `[[{kind}.{name}.keys]]` entries: a fixed `key` or a `pattern` of computed keys, with a `description`"),
        );
    }
    let mut fixed = BTreeSet::new();
    for key in &bucket.keys {
        let problem = match (&key.key, &key.pattern) {
            (Some(_), Some(_)) => Some("has both `key` and `pattern`".to_string()),
            (None, None) => Some("has neither `key` nor `pattern`".to_string()),
            (Some(k), None) if !is_bucket_key(k) => Some(format!(
                "key `{k}` is not a valid key (letters, digits, `-`, `_`, `=`, `/`, and `.` between tokens)"
            )),
            (Some(k), None) if !fixed.insert(k.as_str()) => Some(format!("key `{k}` is declared twice")),
            (None, Some(_)) if key.schema.is_some() => Some(
                "gives a `schema` to a pattern; only fixed keys are bound to a value type".to_string(),
            ),
            _ if kind == "object_stores" && key.schema.is_some() => {
                Some("object store entries carry files, not JSON values: no `schema`".to_string())
            }
            _ => None,
        };
        if let Some(problem) = problem {
            report.error(
                "INVENTORY_BUCKET_KEY_INVALID",
                at,
                problem,
                "each key entry has exactly one of `key` (fixed) or `pattern` (computed keys, in words), a `description`, and a `schema` only on a fixed key-value key",
            );
        }
        if let Some(schema) = &key.schema {
            if cx.set.schema(schema).is_none() {
                report.error(
                    "INVENTORY_SCHEMA_MISSING",
                    at,
                    format!("schema `schemas/{schema}` does not exist"),
                    "fix the `schema` path (relative to schemas/) or add the schema file",
                );
            }
        }
    }
    let outside: Vec<&String> = bucket.outside_readers().collect();
    if kind != "key_value" || outside.is_empty() {
        return;
    }
    let readers = outside
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    for key in &bucket.keys {
        if key.key.is_none() || key.schema.is_none() {
            let shown = key.key.as_deref().or(key.pattern.as_deref()).unwrap_or("?");
            report.error(
                "INVENTORY_BUCKET_SCHEMA_MISSING",
                at,
                format!("{readers} read this bucket, but its key `{shown}` has no schema"),
                "a value another service reads is a contract: give it a fixed `key` and a `schema` (schemas/<family>/<name>.v1.schema.json), or drop the readers that do not read it",
            );
        }
    }
}

fn is_bucket_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/.".contains(c))
}

/// Durable consumer settings name real durables and make sense; every declared ordered reader
/// reads something.
fn check_consumers(inventory: &crate::inventory::Inventory, report: &mut Report) {
    let durables = inventory.durable_consumers();
    for (service, entry) in &inventory.services {
        if let Some(count) = entry.partitions {
            if !(1..=MAX_PARTITIONS).contains(&count) {
                report.error(
                    "INVENTORY_PARTITIONS_INVALID",
                    format!("{INVENTORY}#services.{service}"),
                    format!("partitions = {count}: it must be between 1 and {MAX_PARTITIONS}"),
                    "each partition is a durable consumer per contract and a lease: pick a small number (at least the largest count of instances you will run)",
                );
            }
        }
    }
    let settles = |name: &str, d: &crate::inventory::DurableConsumer| match d.partition {
        None => d.name == name,
        Some(p) => d.name == crate::inventory::partition_durable_name(name, p),
    };
    for name in inventory.consumer_settings.keys() {
        if !durables.iter().any(|d| settles(name, d)) {
            report.error(
                "INVENTORY_CONSUMER_UNKNOWN",
                format!("{INVENTORY}#consumer_settings.{name}"),
                format!("no contract lists a consumer whose durable is named `{name}`"),
                "durables are named `<service>-<contract>-v<major>`; fix the name or remove the entry",
            );
        }
    }
    for durable in &durables {
        let s = durable.settings;
        if s.max_deliver < 1 || s.ack_wait_s == 0 || s.max_ack_pending < 1 {
            report.error(
                "INVENTORY_CONSUMER_SETTINGS_INVALID",
                format!("{INVENTORY}#consumer_settings.{}", durable.name),
                format!(
                    "max_deliver {}, ack_wait_s {}, max_ack_pending {}: each must be at least 1",
                    s.max_deliver, s.ack_wait_s, s.max_ack_pending
                ),
                "set positive values in [consumer_defaults] or the durable's entry",
            );
        }
    }
    for service in inventory.ordered_readers.keys() {
        let at = format!("{INVENTORY}#ordered_readers.{service}");
        if !inventory.services.contains_key(service) {
            report.error(
                "INVENTORY_UNKNOWN_SERVICE",
                &at,
                format!("service `{service}` is not declared under [services]"),
                "declare the service identity, or fix the name",
            );
        }
        if !inventory
            .contracts
            .iter()
            .any(|c| c.readers.contains(service))
        {
            report.warning(
                "INVENTORY_READER_UNUSED",
                &at,
                "no contract lists this service among its readers",
                "list the subjects it reads, or remove the entry",
            );
        }
    }
}

fn is_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

fn check_idempotency_key(
    entry: &crate::inventory::ContractEntry,
    schema: &Value,
    at: &str,
    report: &mut Report,
) {
    if entry.idempotency_key.is_empty() {
        report.error(
            "INVENTORY_IDEMPOTENCY_KEY_MISSING",
            at,
            "has no idempotency key, so the server cannot drop duplicates",
            "set `idempotency_key` to the message's id field",
        );
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for field in &entry.idempotency_key {
        if !required.contains(&field.as_str()) {
            report.error(
                "INVENTORY_IDEMPOTENCY_KEY_INVALID",
                at,
                format!("idempotency key field `{field}` is not a required top-level field of the schema"),
                "build the key only from required top-level fields",
            );
        }
    }
}
