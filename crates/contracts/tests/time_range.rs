//! The supported range of `date-time` values: every edge, on every date-time field of every
//! contract, refused at decode with a violation that names the field and the rule.

use std::path::{Path, PathBuf};

use contracts::{decode, encode, ContractError, Event, Message, Timestamp, CONTRACTS};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The rule a violation of the range names.
const RANGE_RULE: &str = "date_time_range";

/// Inside the range (after conversion to UTC).
const INSIDE: &[&str] = &[
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:01:00+00:01",
    "9998-12-31T23:59:59.999Z",
    "9998-12-31T23:58:59.999-00:01",
    "2016-12-31T23:59:60Z",
    "2026-02-14T12:00:00.123456789+05:30",
];

/// Outside the range, several of them only once their offset is applied.
const OUTSIDE: &[&str] = &[
    "1969-12-31T23:59:59Z",
    "1969-12-31T23:59:59.999999999Z",
    "1969-12-31T23:59:60Z",
    "1970-01-01T00:00:00+00:01",
    "0000-01-01T00:00:00+00:01",
    "0000-01-01T00:00:00Z",
    "9998-12-31T23:59:59.9991Z",
    "9998-12-31T23:59:60Z",
    "9999-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-00:01",
    "9998-12-31T23:59:59.999-00:01",
];

fn event_with(timestamp: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "1.0",
        "event_id": "0b7c6c3e-8f7e-4d39-9d3c-2c0d6f1f7a10",
        "timestamp": timestamp,
        "source": "orion-watcher",
        "event_type": "service_down",
        "severity": "critical",
        "data": {"service_name": "payments"}
    }))
    .unwrap()
}

fn assert_refused_at(err: &ContractError, path: &str, value: &str) {
    let violations = err.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.instance_path == path && v.rule == RANGE_RULE),
        "{value}: expected a `{RANGE_RULE}` violation at {path}, got {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(path) && text.contains(RANGE_RULE) && text.contains(value),
        "{text}"
    );
}

#[test]
fn each_edge_inside_the_range_decodes_and_encodes_again() {
    for timestamp in INSIDE {
        let event: Event = decode(&event_with(timestamp))
            .unwrap_or_else(|e| panic!("{timestamp} is inside the range: {e}"));
        encode(&event).unwrap_or_else(|e| panic!("{timestamp} encodes again: {e}"));
    }
}

#[test]
fn each_edge_outside_the_range_is_refused_naming_the_field_and_the_rule() {
    for timestamp in OUTSIDE {
        let err = decode::<Event>(&event_with(timestamp))
            .expect_err(&format!("{timestamp} is outside the range"));
        assert_refused_at(&err, "/timestamp", timestamp);
    }
}

#[test]
fn a_timestamp_outside_the_range_does_not_parse_or_deserialize() {
    for timestamp in OUTSIDE {
        assert!(timestamp.parse::<Timestamp>().is_err(), "{timestamp}");
        assert!(
            serde_json::from_value::<Timestamp>(json!(timestamp)).is_err(),
            "{timestamp}"
        );
    }
    for timestamp in INSIDE {
        let parsed: Timestamp = timestamp.parse().unwrap();
        assert_eq!(
            serde_json::from_value::<Timestamp>(json!(timestamp)).unwrap(),
            parsed
        );
    }
}

#[test]
fn an_encoded_message_outside_the_range_is_refused_before_it_leaves() {
    let mut event: Event = decode(&event_with("2026-02-14T12:00:00Z")).unwrap();
    event.timestamp =
        Timestamp(OffsetDateTime::parse("9999-12-31T23:59:59-00:01", &Rfc3339).unwrap());
    let err = encode(&event).unwrap_err();
    assert_refused_at(&err, "/timestamp", "9999-12-31T23:59:59-00:01");
}

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// JSON pointers of the `date-time` properties of `schema` (nested objects included).
fn date_time_properties(schema: &Value, at: String, found: &mut Vec<String>) {
    if schema.get("format") == Some(&json!("date-time")) {
        found.push(at.clone());
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let escaped = name.replace('~', "~0").replace('/', "~1");
            date_time_properties(property, format!("{at}/{escaped}"), found);
        }
    }
}

#[test]
fn every_date_time_field_of_every_contract_is_held_to_the_range() {
    let mut checked = 0;
    for info in CONTRACTS {
        let schema: Value = serde_json::from_str(info.schema).unwrap();
        let mut pointers = Vec::new();
        date_time_properties(&schema, String::new(), &mut pointers);
        assert_eq!(
            pointers.len(),
            info.schema.matches("\"date-time\"").count(),
            "{}: every date-time of the schema is a property this test finds",
            info.name
        );
        let dir = fixtures_root().join(info.name).join("valid");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for pointer in &pointers {
            let mut covered = false;
            for file in &files {
                let message: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
                if message.pointer(pointer).is_none() {
                    continue;
                }
                covered = true;
                for timestamp in OUTSIDE {
                    let mut changed = message.clone();
                    *changed.pointer_mut(pointer).unwrap() = json!(timestamp);
                    let bytes = serde_json::to_vec(&changed).unwrap();
                    let err = Message::decode(info.subject, &bytes).expect_err(&format!(
                        "{}: {timestamp} at {pointer} is outside the range",
                        file.display()
                    ));
                    assert_refused_at(&err, pointer, timestamp);
                    checked += 1;
                }
            }
            assert!(covered, "{}: no valid fixture carries {pointer}", info.name);
        }
    }
    assert!(checked > 0);
}

/// Strings near the edges of what `time` can represent, with every kind of offset: decoding
/// them never panics, and whatever decodes encodes again.
#[test]
fn decode_never_panics_near_the_ends_of_time() {
    let dates = [
        "0000-01-01",
        "0001-01-01",
        "1969-12-31",
        "1970-01-01",
        "9998-12-31",
        "9999-01-01",
        "9999-12-31",
        "2016-12-31",
        "2024-02-29",
        "2023-02-29",
    ];
    let times = [
        "00:00:00",
        "00:00:60",
        "23:59:59",
        "23:59:60",
        "23:59:59.999",
        "23:59:59.999999999",
        "23:59:59.9999999999999",
    ];
    let offsets = [
        "Z", "z", "+00:00", "-00:00", "+00:01", "-00:01", "+23:59", "-23:59", "+24:00",
    ];
    for date in dates {
        for clock in times {
            for offset in offsets {
                for separator in ["T", "t", " "] {
                    let text = format!("{date}{separator}{clock}{offset}");
                    if let Ok(event) = decode::<Event>(&event_with(&text)) {
                        encode(&event).unwrap_or_else(|e| panic!("{text}: {e}"));
                    }
                }
            }
        }
    }
}
