//! Invariants every schema keeps: draft 2020-12, a title, a `$id` carrying the major version,
//! a constant version field, closed objects, uuid ids and date-time timestamps, local refs only.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{schema_path, Context, Report};
use crate::inventory::{major_from_id, SchemaFile};

pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// The annotation that turns an object into a deliberate, documented map of extra keys.
pub const OPEN_MAP_ANNOTATION: &str = "x-orion-open-map";
/// The annotation that explains why a field named like an id is not a platform UUID.
pub const NOT_UUID_ANNOTATION: &str = "x-orion-not-uuid";

pub fn check(cx: &Context, report: &mut Report) {
    let mut titles: BTreeMap<&str, &str> = BTreeMap::new();
    for schema in &cx.set.schemas {
        check_header(schema, report);
        if let Some(title) = schema.title() {
            if let Some(other) = titles.insert(title, &schema.rel_path) {
                report.error(
                    "SCHEMA_TITLE_DUPLICATE",
                    schema_path(&schema.rel_path, "/title"),
                    format!("title `{title}` is also used by schemas/{other}; titles name the Rust types"),
                    "give each schema (and each major version) its own title, e.g. `EventV2`",
                );
            }
        }
        check_version_constant(schema, report);
        walk(schema, &schema.json, "", report);
    }
}

fn check_header(schema: &SchemaFile, report: &mut Report) {
    let rel = &schema.rel_path;
    if schema.json.get("$schema").and_then(Value::as_str) != Some(DRAFT_2020_12) {
        report.error(
            "SCHEMA_DRAFT_INVALID",
            schema_path(rel, "/$schema"),
            "is not JSON Schema draft 2020-12",
            format!("set \"$schema\": \"{DRAFT_2020_12}\""),
        );
    }
    if let Err(e) = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema.json)
    {
        report.error(
            "SCHEMA_INVALID",
            schema_path(rel, ""),
            format!("is not a valid JSON Schema: {e}"),
            "fix the schema so that a validator can compile it",
        );
    }
    if schema.title().is_none() {
        report.error(
            "SCHEMA_TITLE_MISSING",
            schema_path(rel, ""),
            "has no title; the title names the generated Rust type",
            "add a PascalCase \"title\"",
        );
    }
    if schema.description().trim().is_empty() {
        report.error(
            "SCHEMA_DESCRIPTION_MISSING",
            schema_path(rel, ""),
            "has no description",
            "say what the message means and who emits it",
        );
    }
    if schema.json.get("type").and_then(Value::as_str) != Some("object") {
        report.error(
            "SCHEMA_ROOT_NOT_OBJECT",
            schema_path(rel, "/type"),
            "the root of a message schema must be `type: object`",
            "set \"type\": \"object\"",
        );
    }
    let id_major = schema.id().and_then(major_from_id);
    let file_major = file_major(rel);
    match (id_major, file_major) {
        (None, _) => report.error(
            "SCHEMA_ID_INVALID",
            schema_path(rel, "/$id"),
            format!(
                "$id {:?} does not end in `/v<major>.schema.json`",
                schema.id().unwrap_or("")
            ),
            "use an $id like https://orion.internal/schemas/<name>/v1.schema.json",
        ),
        (Some(id), Some(file)) if id != file => report.error(
            "SCHEMA_ID_VERSION_MISMATCH",
            schema_path(rel, "/$id"),
            format!("$id says major {id} but the file name says {file}"),
            "a new major version is a new file with a new $id; keep them in step",
        ),
        (Some(_), None) => report.error(
            "SCHEMA_FILE_NAME_INVALID",
            schema_path(rel, ""),
            "file name does not end in `.v<major>.schema.json`",
            "name schema files `<contract>.v<major>.schema.json`",
        ),
        _ => {}
    }
}

fn file_major(rel: &str) -> Option<u32> {
    let stem = rel.rsplit('/').next()?.strip_suffix(".schema.json")?;
    stem.rsplit('.').next()?.strip_prefix('v')?.parse().ok()
}

fn check_version_constant(schema: &SchemaFile, report: &mut Report) {
    let rel = &schema.rel_path;
    let Some((field, value)) = schema.version_constant() else {
        report.error(
            "SCHEMA_VERSION_NOT_CONSTANT",
            schema_path(rel, "/properties"),
            "has no version field (`version` or `v`) with a single constant value",
            "add \"version\": {\"type\": \"string\", \"enum\": [\"1.0\"]} and list it in `required`",
        );
        return;
    };
    let required = schema
        .json
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|f| f.as_str() == Some(field)));
    if !required {
        report.error(
            "SCHEMA_VERSION_NOT_REQUIRED",
            schema_path(rel, "/required"),
            format!("version field `{field}` is not required"),
            "list it in `required`: a consumer must know which version it reads",
        );
    }
    let value_major = match &value {
        Value::String(s) => s.split('.').next().and_then(|m| m.parse::<u32>().ok()),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    };
    if value_major.is_some() && value_major != schema.major_version() {
        report.error(
            "SCHEMA_VERSION_MISMATCH",
            schema_path(rel, &format!("/properties/{field}")),
            format!(
                "version constant {value} does not match the $id's major version {:?}",
                schema.major_version()
            ),
            "the version constant, the $id and the file name carry the same major version",
        );
    }
}

/// Walks every subschema, checking closed objects, id and timestamp formats and refs.
fn walk(schema: &SchemaFile, node: &Value, pointer: &str, report: &mut Report) {
    let Some(map) = node.as_object() else { return };
    let rel = &schema.rel_path;
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        if !reference.starts_with('#') {
            report.error(
                "SCHEMA_REMOTE_REF",
                schema_path(rel, pointer),
                format!("$ref {reference:?} points outside this file"),
                "keep refs local (`#/$defs/...`): each contract is self-contained, and the generator cannot follow cross-file refs",
            );
        }
    }
    let is_object =
        map.get("type").and_then(Value::as_str) == Some("object") || map.contains_key("properties");
    // Fragments under if/then/else/not constrain an object defined elsewhere; they are not
    // object definitions of their own.
    let is_condition = pointer
        .split('/')
        .any(|segment| ["if", "then", "else", "not"].contains(&segment));
    if is_object && !is_condition {
        check_closed(map, rel, pointer, report);
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, field) in props {
            let at = format!("{pointer}/properties/{name}");
            if !is_condition {
                check_field_format(name, field, rel, &at, report);
            }
            walk(schema, field, &at, report);
        }
    }
    for keyword in ["items", "additionalProperties", "if", "then", "else", "not"] {
        if let Some(child) = map.get(keyword) {
            walk(schema, child, &format!("{pointer}/{keyword}"), report);
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(children) = map.get(keyword).and_then(Value::as_array) {
            for (i, child) in children.iter().enumerate() {
                walk(schema, child, &format!("{pointer}/{keyword}/{i}"), report);
            }
        }
    }
    if let Some(defs) = map.get("$defs").and_then(Value::as_object) {
        for (name, child) in defs {
            walk(schema, child, &format!("{pointer}/$defs/{name}"), report);
        }
    }
}

fn check_closed(
    map: &serde_json::Map<String, Value>,
    rel: &str,
    pointer: &str,
    report: &mut Report,
) {
    let annotated = map
        .get(OPEN_MAP_ANNOTATION)
        .and_then(Value::as_str)
        .is_some_and(|why| !why.trim().is_empty());
    match map.get("additionalProperties") {
        Some(Value::Bool(false)) => {}
        Some(Value::Object(_)) if annotated => {}
        Some(Value::Object(_)) => report.error(
            "SCHEMA_OPEN_OBJECT",
            schema_path(rel, pointer),
            "object allows extra keys without saying why",
            format!("set \"additionalProperties\": false, or keep the map and explain it in \"{OPEN_MAP_ANNOTATION}\""),
        ),
        _ => report.error(
            "SCHEMA_OPEN_OBJECT",
            schema_path(rel, pointer),
            "object does not set \"additionalProperties\": false, so unknown fields would pass",
            "add \"additionalProperties\": false (or a typed map with an x-orion-open-map reason)",
        ),
    }
}

fn check_field_format(name: &str, field: &Value, rel: &str, pointer: &str, report: &mut Report) {
    let format = field.get("format").and_then(Value::as_str);
    let is_string = field.get("type").and_then(Value::as_str) == Some("string");
    let exempt = field
        .get(NOT_UUID_ANNOTATION)
        .and_then(Value::as_str)
        .is_some_and(|why| !why.trim().is_empty());
    let is_id = (name == "id" || name.ends_with("_id")) && !exempt;
    if is_id && is_string && format != Some("uuid") {
        report.error(
            "SCHEMA_ID_FORMAT_MISSING",
            schema_path(rel, pointer),
            format!("id field `{name}` is not `format: uuid`"),
            format!("ids are UUIDs: add \"format\": \"uuid\", or explain in \"{NOT_UUID_ANNOTATION}\" why this id is not one"),
        );
    }
    if name.ends_with("_ids") {
        let item_format = field.pointer("/items/format").and_then(Value::as_str);
        if item_format != Some("uuid") {
            report.error(
                "SCHEMA_ID_FORMAT_MISSING",
                schema_path(rel, &format!("{pointer}/items")),
                format!("items of `{name}` are not `format: uuid`"),
                "ids are UUIDs: add \"format\": \"uuid\" to items",
            );
        }
    }
    let is_time = ["timestamp", "ts", "start", "end"].contains(&name)
        || name.ends_with("_at")
        || name.ends_with("_timestamp");
    if is_time && format != Some("date-time") {
        report.error(
            "SCHEMA_TIMESTAMP_FORMAT_MISSING",
            schema_path(rel, pointer),
            format!("timestamp field `{name}` is not `format: date-time`"),
            "timestamps are RFC 3339: add \"type\": \"string\", \"format\": \"date-time\"",
        );
    }
}
