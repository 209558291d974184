//! Schema evolution against the released baseline, classified in both directions:
//!
//! - *backward*: can a reader on the new schema still read messages written with the old one?
//! - *forward*: can a reader still on the old schema read messages written with the new one?
//!
//! A change that breaks backward compatibility needs a new major version (new file, new `$id`,
//! new version constant, new subject) and a note in `schemas/MIGRATIONS.md`. A change that only
//! breaks forward compatibility is additive: allowed within a major version, reported as a
//! warning because consumers must be upgraded before producers start sending it.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{schema_path, Context, Report, MIGRATIONS_FILE};
use crate::inventory::SchemaFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compatibility {
    Compatible,
    Breaking,
}

use Compatibility::{Breaking, Compatible};

/// One difference between two versions of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// JSON pointer into the schema.
    pub pointer: String,
    pub description: String,
    /// New reader, old message.
    pub backward: Compatibility,
    /// Old reader, new message.
    pub forward: Compatibility,
}

/// Keywords that describe and do not constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "$schema",
    "$id",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
];

/// Keywords whose changes we do not try to reason about; any change is treated as breaking.
const UNCLASSIFIED: &[&str] = &[
    "if",
    "then",
    "else",
    "not",
    "allOf",
    "anyOf",
    "oneOf",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "propertyNames",
    "prefixItems",
    "contains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$defs",
    "$ref",
    "multipleOf",
    "uniqueItems",
];

/// Lists every difference between `old` and `new` with its compatibility in both directions.
pub fn classify(old: &Value, new: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    compare(old, new, "", &mut changes);
    changes
}

fn change(
    out: &mut Vec<Change>,
    pointer: &str,
    description: String,
    backward: Compatibility,
    forward: Compatibility,
) {
    out.push(Change {
        pointer: pointer.to_string(),
        description,
        backward,
        forward,
    });
}

fn compare(old: &Value, new: &Value, pointer: &str, out: &mut Vec<Change>) {
    let empty = Map::new();
    let old_map = old.as_object().unwrap_or(&empty);
    let new_map = new.as_object().unwrap_or(&empty);

    compare_properties(old_map, new_map, pointer, out);
    compare_required(old_map, new_map, pointer, out);
    compare_additional(old_map, new_map, pointer, out);
    compare_enum(old_map, new_map, pointer, out);
    compare_types(old_map, new_map, pointer, out);
    compare_bounds(old_map, new_map, pointer, out);

    for keyword in ["const", "format", "pattern"] {
        let at = format!("{pointer}/{keyword}");
        match (old_map.get(keyword), new_map.get(keyword)) {
            (None, Some(v)) => change(
                out,
                &at,
                format!("`{keyword}` {v} added"),
                Breaking,
                Compatible,
            ),
            (Some(v), None) => change(
                out,
                &at,
                format!("`{keyword}` {v} removed"),
                Compatible,
                Breaking,
            ),
            (Some(a), Some(b)) if a != b => change(
                out,
                &at,
                format!("`{keyword}` changed from {a} to {b}"),
                Breaking,
                Breaking,
            ),
            _ => {}
        }
    }
    if let (Some(a), Some(b)) = (old_map.get("items"), new_map.get("items")) {
        compare(a, b, &format!("{pointer}/items"), out);
    }
    for keyword in UNCLASSIFIED {
        if old_map.get(*keyword) != new_map.get(*keyword) {
            change(
                out,
                &format!("{pointer}/{keyword}"),
                format!(
                    "`{keyword}` changed; not classified automatically, so treated as breaking"
                ),
                Breaking,
                Breaking,
            );
        }
    }
    let handled: BTreeSet<&str> = [
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "type",
        "const",
        "format",
        "pattern",
        "items",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    ]
    .into_iter()
    .chain(ANNOTATIONS.iter().copied())
    .chain(UNCLASSIFIED.iter().copied())
    .collect();
    let keys: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
    for key in keys {
        if handled.contains(key.as_str()) || key.starts_with("x-") {
            continue;
        }
        if old_map.get(key) != new_map.get(key) {
            change(
                out,
                &format!("{pointer}/{key}"),
                format!("unknown keyword `{key}` changed; treated as breaking"),
                Breaking,
                Breaking,
            );
        }
    }
}

fn required_of(map: &Map<String, Value>) -> BTreeSet<&str> {
    map.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn properties_of(map: &Map<String, Value>) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    map.get("properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn is_closed(map: &Map<String, Value>) -> bool {
    map.get("additionalProperties") == Some(&Value::Bool(false))
}

fn compare_properties(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Change>,
) {
    let (old_props, new_props) = (properties_of(old), properties_of(new));
    let (old_required, new_required) = (required_of(old), required_of(new));
    for (name, old_field) in old_props {
        let at = format!("{pointer}/properties/{name}");
        match new_props.get(name) {
            Some(new_field) => compare(old_field, new_field, &at, out),
            None => {
                let backward = if is_closed(new) { Breaking } else { Compatible };
                let forward = if old_required.contains(name.as_str()) {
                    Breaking
                } else {
                    Compatible
                };
                let kind = if old_required.contains(name.as_str()) {
                    "required"
                } else {
                    "optional"
                };
                change(
                    out,
                    &at,
                    format!("{kind} field `{name}` removed"),
                    backward,
                    forward,
                );
            }
        }
    }
    for name in new_props.keys().filter(|n| !old_props.contains_key(*n)) {
        let backward = if new_required.contains(name.as_str()) {
            Breaking
        } else {
            Compatible
        };
        let forward = if is_closed(old) { Breaking } else { Compatible };
        let kind = if new_required.contains(name.as_str()) {
            "required"
        } else {
            "optional"
        };
        change(
            out,
            &format!("{pointer}/properties/{name}"),
            format!("{kind} field `{name}` added"),
            backward,
            forward,
        );
    }
}

fn compare_required(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Change>,
) {
    let (old_props, new_props) = (properties_of(old), properties_of(new));
    let (old_required, new_required) = (required_of(old), required_of(new));
    let at = format!("{pointer}/required");
    // Fields added or removed are reported by compare_properties; here only existing ones.
    for name in new_required.difference(&old_required) {
        if old_props.contains_key(*name) {
            change(
                out,
                &at,
                format!("existing field `{name}` became required"),
                Breaking,
                Compatible,
            );
        }
    }
    for name in old_required.difference(&new_required) {
        if new_props.contains_key(*name) {
            change(
                out,
                &at,
                format!("field `{name}` is no longer required"),
                Compatible,
                Breaking,
            );
        }
    }
}

fn compare_additional(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Change>,
) {
    let at = format!("{pointer}/additionalProperties");
    match (
        old.get("additionalProperties"),
        new.get("additionalProperties"),
    ) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => compare(
            &Value::Object(a.clone()),
            &Value::Object(b.clone()),
            &at,
            out,
        ),
        (a, b) if a == b => {}
        (_, Some(Value::Bool(false))) => change(
            out,
            &at,
            "object closed to extra keys".into(),
            Breaking,
            Compatible,
        ),
        (Some(Value::Bool(false)), _) => change(
            out,
            &at,
            "object opened to extra keys".into(),
            Compatible,
            Breaking,
        ),
        (a, b) => change(
            out,
            &at,
            format!("extra keys changed from {a:?} to {b:?}"),
            Breaking,
            Breaking,
        ),
    }
}

fn compare_enum(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Change>,
) {
    let at = format!("{pointer}/enum");
    match (
        old.get("enum").and_then(Value::as_array),
        new.get("enum").and_then(Value::as_array),
    ) {
        (Some(a), Some(b)) => {
            for value in a.iter().filter(|v| !b.contains(v)) {
                change(
                    out,
                    &at,
                    format!("enum value {value} removed"),
                    Breaking,
                    Compatible,
                );
            }
            for value in b.iter().filter(|v| !a.contains(v)) {
                change(
                    out,
                    &at,
                    format!("enum value {value} added"),
                    Compatible,
                    Breaking,
                );
            }
        }
        (None, Some(_)) => change(out, &at, "enum added".into(), Breaking, Compatible),
        (Some(_), None) => change(out, &at, "enum removed".into(), Compatible, Breaking),
        (None, None) => {}
    }
}

fn types_of(map: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match map.get("type")? {
        Value::String(s) => Some([s.clone()].into()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        ),
        _ => None,
    }
}

fn compare_types(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Change>,
) {
    let at = format!("{pointer}/type");
    match (types_of(old), types_of(new)) {
        (Some(a), Some(b)) if a != b => {
            // integer ⊂ number: widening integer to number, or narrowing the other way.
            let widened = |x: &BTreeSet<String>, y: &BTreeSet<String>| {
                x.iter()
                    .all(|t| y.contains(t) || (t == "integer" && y.contains("number")))
            };
            let backward = if widened(&a, &b) {
                Compatible
            } else {
                Breaking
            };
            let forward = if widened(&b, &a) {
                Compatible
            } else {
                Breaking
            };
            change(
                out,
                &at,
                format!("type changed from {a:?} to {b:?}"),
                backward,
                forward,
            );
        }
        (None, Some(b)) => change(out, &at, format!("type {b:?} added"), Breaking, Compatible),
        (Some(a), None) => change(
            out,
            &at,
            format!("type {a:?} removed"),
            Compatible,
            Breaking,
        ),
        _ => {}
    }
}

fn compare_bounds(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Change>,
) {
    // (keyword, true when a larger value is stricter)
    const BOUNDS: &[(&str, bool)] = &[
        ("minLength", true),
        ("minimum", true),
        ("exclusiveMinimum", true),
        ("minItems", true),
        ("minProperties", true),
        ("maxLength", false),
        ("maximum", false),
        ("exclusiveMaximum", false),
        ("maxItems", false),
        ("maxProperties", false),
    ];
    for (keyword, larger_is_stricter) in BOUNDS {
        let at = format!("{pointer}/{keyword}");
        let (a, b) = (
            old.get(*keyword).and_then(Value::as_f64),
            new.get(*keyword).and_then(Value::as_f64),
        );
        let stricter = match (a, b) {
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) if a != b => (b > a) == *larger_is_stricter,
            _ => continue,
        };
        let text = format!("`{keyword}` changed from {} to {}", show(a), show(b));
        if stricter {
            change(out, &at, format!("{text} (narrower)"), Breaking, Compatible);
        } else {
            change(out, &at, format!("{text} (wider)"), Compatible, Breaking);
        }
    }
}

fn show(bound: Option<f64>) -> String {
    bound.map_or_else(|| "none".to_string(), |b| b.to_string())
}

/// Compares the current schemas with the released baseline.
pub fn check(cx: &Context, report: &mut Report) {
    let Some(baseline) = cx.baseline else { return };
    for old in &baseline.set.schemas {
        match cx.set.schema(&old.rel_path) {
            Some(new) => check_same_file(old, new, report),
            None if mentions(cx.migration_notes, old) => {}
            None => report.error(
                "SCHEMA_REMOVED",
                schema_path(&old.rel_path, ""),
                "was released and has been removed; its consumers and producers break",
                format!("keep it during the transition to its next major version; remove it only with a note in schemas/{MIGRATIONS_FILE} that names `{}`", old.rel_path),
            ),
        }
    }
    for new in &cx.set.schemas {
        if baseline.set.schema(&new.rel_path).is_some() {
            continue;
        }
        let Some(contract) = cx
            .set
            .inventory
            .contracts
            .iter()
            .find(|c| c.schema == new.rel_path)
        else {
            continue; // the inventory check reports it
        };
        let earlier_major = baseline
            .set
            .inventory
            .contracts
            .iter()
            .any(|c| c.name == contract.name);
        if earlier_major && !mentions(cx.migration_notes, new) {
            report.error(
                "MIGRATION_NOTE_MISSING",
                schema_path(&new.rel_path, ""),
                format!("is a new major version of `{}` but schemas/{MIGRATIONS_FILE} does not describe the migration", contract.name),
                format!("add a section to schemas/{MIGRATIONS_FILE} that names `{}` and says how producers and consumers move over", new.rel_path),
            );
        }
    }
    for old_entry in &baseline.set.inventory.contracts {
        if let Some(entry) = cx
            .set
            .inventory
            .contracts
            .iter()
            .find(|c| c.schema == old_entry.schema)
        {
            if entry.subject != old_entry.subject {
                report.error(
                    "INVENTORY_SUBJECT_CHANGED",
                    format!("schemas/inventory.toml#{}", entry.subject),
                    format!("the released subject `{}` of schemas/{} was renamed; running services would stop seeing it", old_entry.subject, entry.schema),
                    "subjects are part of the contract: publish a new major version on a new subject instead",
                );
            }
        }
    }
}

fn mentions(notes: &str, schema: &SchemaFile) -> bool {
    notes.contains(&schema.rel_path) || schema.id().is_some_and(|id| notes.contains(id))
}

fn check_same_file(old: &SchemaFile, new: &SchemaFile, report: &mut Report) {
    for change in classify(&old.json, &new.json) {
        let path = schema_path(&new.rel_path, &change.pointer);
        let directions = format!(
            "new readers of old messages: {}; old readers of new messages: {}",
            word(change.backward),
            word(change.forward)
        );
        if change.backward == Breaking {
            report.error(
                "SCHEMA_BREAKING_CHANGE",
                path,
                format!("{} ({directions})", change.description),
                format!(
                    "revert it in {}, or publish a new major version: a new file `<name>.v<N+1>.schema.json` with a new $id and version constant, a new subject in the inventory, and a note in schemas/{MIGRATIONS_FILE}; consumers accept both during the transition",
                    new.rel_path
                ),
            );
        } else if change.forward == Breaking {
            report.warning(
                "SCHEMA_FORWARD_INCOMPATIBLE",
                path,
                format!("{} ({directions})", change.description),
                "additive change: deploy the consumers of this contract before its producers send the new shape",
            );
        }
    }
}

fn word(c: Compatibility) -> &'static str {
    match c {
        Compatible => "compatible",
        Breaking => "BREAKING",
    }
}
