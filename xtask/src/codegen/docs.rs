//! `docs/CONTRACTS.md`: the inventory rendered as tables, in the style of the M13 inventory.

use std::fmt::Write;

use serde_json::Value;

use super::header_lines;
use crate::contract_set_file::ContractSetFile;
use crate::inventory::{ContractSet, SchemaFile};

pub fn generate(set: &ContractSet, recorded: &ContractSetFile) -> String {
    let mut out = String::new();
    for line in header_lines() {
        writeln!(out, "<!-- {line} -->").unwrap();
    }
    writeln!(out, "\n# Contract Inventory\n").unwrap();
    writeln!(
        out,
        "> **Rule**: If an integration exists without a contract listed here, it is a production bug.\n"
    )
    .unwrap();
    writeln!(
        out,
        "Contract set version `{}`, sha256 `{}`.\n",
        recorded.version, recorded.sha256
    )
    .unwrap();

    subjects_table(&mut out, set);
    services_table(&mut out, set);
    consumers_table(&mut out, set);
    streams_table(&mut out, set);
    buckets_table(&mut out, "Key-Value Buckets", &set.inventory.key_value);
    buckets_table(&mut out, "Object Stores", &set.inventory.object_stores);

    writeln!(out, "## Schema Details\n").unwrap();
    let values = set.key_values();
    for (entry, schema) in set.contracts() {
        let title = schema.title().unwrap_or(&entry.name);
        writeln!(out, "### {title} (`{}`)\n", entry.subject).unwrap();
        if let Some(why) = &entry.deprecated {
            writeln!(out, "**Deprecated**: {why}.\n").unwrap();
        }
        writeln!(out, "{}\n", schema.description()).unwrap();
        writeln!(
            out,
            "Schema: `schemas/{}` (`{}`).\n",
            schema.rel_path,
            schema.id().unwrap_or_default()
        )
        .unwrap();
        writeln!(out, "| Field | Type | Required | Validation | Meaning |").unwrap();
        writeln!(out, "|-------|------|----------|------------|---------|").unwrap();
        field_rows(&mut out, "", &schema.json);
        conditional_rules(&mut out, schema);
        writeln!(out).unwrap();
    }
    for value in &values {
        let schema = value.schema;
        let title = schema.title().unwrap_or(&value.name);
        writeln!(
            out,
            "### {title} (key `{}` of bucket `{}`)\n",
            value.key, value.bucket
        )
        .unwrap();
        writeln!(out, "{}\n", schema.description()).unwrap();
        writeln!(
            out,
            "Schema: `schemas/{}` (`{}`). Written by {}; read by {}.\n",
            schema.rel_path,
            schema.id().unwrap_or_default(),
            value.spec.writers.join(", "),
            value.spec.readers.join(", ")
        )
        .unwrap();
        writeln!(out, "| Field | Type | Required | Validation | Meaning |").unwrap();
        writeln!(out, "|-------|------|----------|------------|---------|").unwrap();
        field_rows(&mut out, "", &schema.json);
        conditional_rules(&mut out, schema);
        writeln!(out).unwrap();
    }
    out
}

fn subjects_table(out: &mut String, set: &ContractSet) {
    writeln!(out, "## NATS Subjects\n").unwrap();
    writeln!(
        out,
        "| Subject | Schema | Producers | Consumers | Signed? | Idempotency | Stream | Owner |"
    )
    .unwrap();
    writeln!(
        out,
        "|---------|--------|-----------|-----------|---------|-------------|--------|-------|"
    )
    .unwrap();
    for (entry, schema) in set.contracts() {
        let signed = match &entry.signature {
            Some(s) => format!("**Yes** ({}, {})", s.algorithm, s.carrier),
            None => "No".into(),
        };
        let deprecated = if entry.deprecated.is_some() {
            " (deprecated)"
        } else {
            ""
        };
        writeln!(
            out,
            "| `{}` | `{}`{deprecated} | {} | {} | {signed} | `{}` | `{}` | {} |",
            entry.subject,
            schema.title().unwrap_or_default(),
            entry.producers.join(", "),
            receivers(entry),
            entry.idempotency_key.join(":"),
            entry.stream,
            entry.owner,
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

/// Durable consumers, then ordered readers in italics.
fn receivers(entry: &crate::inventory::ContractEntry) -> String {
    let durable = entry.consumers.iter().cloned();
    let readers = entry.readers.iter().map(|r| format!("*{r}* (reader)"));
    durable.chain(readers).collect::<Vec<_>>().join(", ")
}

/// Every durable consumer with its stream, filter and settings.
fn consumers_table(out: &mut String, set: &ContractSet) {
    writeln!(out, "## Durable Consumers\n").unwrap();
    writeln!(
        out,
        "Created by provisioning (`cargo xtask provision`), bound by their service, which may pull\n\
         and acknowledge only these.\n"
    )
    .unwrap();
    writeln!(
        out,
        "| Consumer | Service | Stream | Filter subject | Max deliver | Ack wait | Max ack pending |"
    )
    .unwrap();
    writeln!(
        out,
        "|----------|---------|--------|----------------|-------------|----------|-----------------|"
    )
    .unwrap();
    for durable in set.inventory.durable_consumers() {
        writeln!(
            out,
            "| `{}` | `{}` | `{}` | `{}` | {} | {} s | {} |",
            durable.name,
            durable.service,
            durable.stream,
            durable.subject,
            durable.settings.max_deliver,
            durable.settings.ack_wait_s,
            durable.settings.max_ack_pending,
        )
        .unwrap();
    }
    writeln!(out).unwrap();
    writeln!(out, "## Ordered Readers\n").unwrap();
    writeln!(out, "| Service | Reads | Purpose |").unwrap();
    writeln!(out, "|---------|-------|---------|").unwrap();
    for (service, reader) in &set.inventory.ordered_readers {
        let subjects: Vec<String> = set
            .inventory
            .contracts
            .iter()
            .filter(|c| c.readers.contains(service))
            .map(|c| format!("`{}`", c.subject))
            .collect();
        writeln!(
            out,
            "| `{service}` | {} | {} |",
            subjects.join(", "),
            reader.description
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

fn services_table(out: &mut String, set: &ContractSet) {
    writeln!(out, "## Direction per Service\n").unwrap();
    writeln!(
        out,
        "| Service | Publishes | Consumes (durable) | Reads (ordered readers) | Notes |"
    )
    .unwrap();
    writeln!(
        out,
        "|---------|-----------|--------------------|-------------------------|-------|"
    )
    .unwrap();
    for (name, service) in &set.inventory.services {
        let subjects = |pick: fn(&crate::inventory::ContractEntry) -> &Vec<String>| {
            let list: Vec<String> = set
                .inventory
                .contracts
                .iter()
                .filter(|c| pick(c).contains(name))
                .map(|c| format!("`{}`", c.subject))
                .collect();
            if list.is_empty() {
                "—".to_string()
            } else {
                list.join(", ")
            }
        };
        let external = if service.external {
            " (outside this repository)"
        } else {
            ""
        };
        writeln!(
            out,
            "| `{name}` | {} | {} | {} | {}{external} |",
            subjects(|c| &c.producers),
            subjects(|c| &c.consumers),
            subjects(|c| &c.readers),
            service.description
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

fn streams_table(out: &mut String, set: &ContractSet) {
    writeln!(out, "## JetStream Streams\n").unwrap();
    writeln!(
        out,
        "| Stream | Subjects | Retention | Max age | Max message | Dedup window | Purpose |"
    )
    .unwrap();
    writeln!(
        out,
        "|--------|----------|-----------|---------|-------------|--------------|---------|"
    )
    .unwrap();
    for (name, stream) in &set.inventory.streams {
        let subjects: Vec<String> = set
            .inventory
            .contracts
            .iter()
            .filter(|c| &c.stream == name)
            .map(|c| format!("`{}`", c.subject))
            .collect();
        writeln!(
            out,
            "| `{name}` | {} | {:?} (file) | {} s | {} B | {} s | {} |",
            subjects.join(", "),
            stream.retention,
            stream.max_age_s,
            stream.max_msg_size,
            stream.duplicate_window_s,
            stream.description
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

fn buckets_table(
    out: &mut String,
    heading: &str,
    buckets: &std::collections::BTreeMap<String, crate::inventory::Bucket>,
) {
    if buckets.is_empty() {
        return;
    }
    writeln!(out, "## {heading}\n").unwrap();
    writeln!(out, "| Bucket | Writers | Readers | Max age | Purpose |").unwrap();
    writeln!(out, "|--------|---------|---------|---------|---------|").unwrap();
    for (name, bucket) in buckets {
        let age = if bucket.max_age_s == 0 {
            "forever".to_string()
        } else {
            format!("{} s", bucket.max_age_s)
        };
        let readers = if bucket.readers.is_empty() {
            "— (writers only)".to_string()
        } else {
            bucket.readers.join(", ")
        };
        writeln!(
            out,
            "| `{name}` | {} | {readers} | {age} | {} |",
            bucket.writers.join(", "),
            bucket.description
        )
        .unwrap();
    }
    writeln!(out).unwrap();
    writeln!(out, "Keys:\n").unwrap();
    writeln!(out, "| Bucket | Key | Value schema | Meaning |").unwrap();
    writeln!(out, "|--------|-----|--------------|---------|").unwrap();
    for (name, bucket) in buckets {
        for key in &bucket.keys {
            let shown = match (&key.key, &key.pattern) {
                (Some(k), _) => format!("`{k}`"),
                (None, Some(p)) => format!("`{p}` (computed)"),
                (None, None) => "?".to_string(),
            };
            let schema = match &key.schema {
                Some(s) => format!("`schemas/{s}`"),
                None => "— (private to its writers)".to_string(),
            };
            writeln!(
                out,
                "| `{name}` | {shown} | {schema} | {} |",
                key.description
            )
            .unwrap();
        }
    }
    writeln!(out).unwrap();
}

fn field_rows(out: &mut String, prefix: &str, schema: &Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, field) in props {
        let path = format!("{prefix}{name}");
        writeln!(
            out,
            "| `{path}` | {} | {} | {} | {} |",
            type_of(field),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            },
            rules_of(field),
            field
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .replace('|', "\\|"),
        )
        .unwrap();
        field_rows(out, &format!("{path}."), field);
    }
}

fn type_of(field: &Value) -> String {
    let base = field.get("type").and_then(Value::as_str).unwrap_or("any");
    match (base, field.get("format").and_then(Value::as_str)) {
        ("array", _) => {
            let item = field
                .get("items")
                .map(type_of)
                .unwrap_or_else(|| "any".into());
            format!("array of {item}")
        }
        (_, Some(format)) => format!("{base} ({format})"),
        _ => base.to_string(),
    }
}

fn rules_of(field: &Value) -> String {
    let mut rules = Vec::new();
    if let Some(values) = field.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        rules.push(if list.len() == 1 {
            format!("const {}", list[0])
        } else {
            format!("one of {}", list.join(", "))
        });
    }
    if let Some(value) = field.get("const") {
        rules.push(format!("const `{value}`"));
    }
    if let Some(pattern) = field.get("pattern").and_then(Value::as_str) {
        rules.push(format!("pattern `{}`", pattern.replace('|', "\\|")));
    }
    for (keyword, label) in [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minItems", "min items"),
    ] {
        if let Some(v) = field.get(keyword) {
            rules.push(format!("{label} {v}"));
        }
    }
    if let Some(default) = field.get("default") {
        rules.push(format!("default `{default}`"));
    }
    match field.get("additionalProperties") {
        Some(Value::Bool(false)) => rules.push("no other keys".into()),
        Some(Value::Object(map)) if map.is_empty() => rules.push("other keys allowed".into()),
        Some(Value::Object(map)) => rules.push(format!(
            "other keys: {}",
            map.get("type").and_then(Value::as_str).unwrap_or("any")
        )),
        _ => {}
    }
    if rules.is_empty() {
        "—".into()
    } else {
        rules.join("; ")
    }
}

fn conditional_rules(out: &mut String, schema: &SchemaFile) {
    let mut conditions: Vec<&Value> = Vec::new();
    if schema.json.get("if").is_some() {
        conditions.push(&schema.json);
    }
    if let Some(all) = schema.json.get("allOf").and_then(Value::as_array) {
        conditions.extend(all.iter().filter(|s| s.get("if").is_some()));
    }
    if conditions.is_empty() {
        return;
    }
    writeln!(out, "\nConditional rules (enforced by the validator):\n").unwrap();
    for rule in conditions {
        writeln!(out, "- if `{}` then `{}`", rule["if"], rule["then"]).unwrap();
    }
}
