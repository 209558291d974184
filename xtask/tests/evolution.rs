//! The evolution classifier on its own: each kind of change, in both directions.

use serde_json::json;
use xtask::check::{classify, Compatibility::*};

fn one(
    old: serde_json::Value,
    new: serde_json::Value,
) -> (xtask::check::Compatibility, xtask::check::Compatibility) {
    let changes = classify(&old, &new);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    (changes[0].backward, changes[0].forward)
}

fn closed(props: serde_json::Value, required: serde_json::Value) -> serde_json::Value {
    json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
}

#[test]
fn field_changes() {
    let a = json!({"type": "string"});
    // optional field added: new readers fine, old (closed) readers reject it
    assert_eq!(
        one(
            closed(json!({}), json!([])),
            closed(json!({"a": a}), json!([]))
        ),
        (Compatible, Breaking)
    );
    // required field added
    assert_eq!(
        one(
            closed(json!({}), json!([])),
            closed(json!({"a": a}), json!(["a"]))
        ),
        (Breaking, Breaking)
    );
    // optional field removed: old messages carrying it are rejected by the closed new schema
    assert_eq!(
        one(
            closed(json!({"a": a}), json!([])),
            closed(json!({}), json!([]))
        ),
        (Breaking, Compatible)
    );
    // required field removed
    assert_eq!(
        one(
            closed(json!({"a": a}), json!(["a"])),
            closed(json!({}), json!([]))
        ),
        (Breaking, Breaking)
    );
    // existing field made required / optional
    assert_eq!(
        one(
            closed(json!({"a": a}), json!([])),
            closed(json!({"a": a}), json!(["a"]))
        ),
        (Breaking, Compatible)
    );
    assert_eq!(
        one(
            closed(json!({"a": a}), json!(["a"])),
            closed(json!({"a": a}), json!([]))
        ),
        (Compatible, Breaking)
    );
}

#[test]
fn value_changes() {
    assert_eq!(
        one(json!({"enum": ["x", "y"]}), json!({"enum": ["x"]})),
        (Breaking, Compatible)
    );
    assert_eq!(
        one(json!({"enum": ["x"]}), json!({"enum": ["x", "y"]})),
        (Compatible, Breaking)
    );
    assert_eq!(
        one(json!({"type": "integer"}), json!({"type": "number"})),
        (Compatible, Breaking)
    );
    assert_eq!(
        one(json!({"type": "string"}), json!({"type": "integer"})),
        (Breaking, Breaking)
    );
    assert_eq!(
        one(json!({"minLength": 1}), json!({"minLength": 10})),
        (Breaking, Compatible)
    );
    assert_eq!(
        one(json!({"maxLength": 10}), json!({"maxLength": 20})),
        (Compatible, Breaking)
    );
    assert_eq!(
        one(json!({}), json!({"format": "uuid"})),
        (Breaking, Compatible)
    );
    assert_eq!(
        one(json!({"pattern": "^a"}), json!({"pattern": "^b"})),
        (Breaking, Breaking)
    );
    assert_eq!(
        one(json!({"if": {}}), json!({"if": {"required": ["a"]}})),
        (Breaking, Breaking)
    );
}

#[test]
fn annotations_are_not_changes() {
    let old = json!({"description": "a", "title": "T", "x-orion-open-map": "why", "default": 1});
    let new =
        json!({"description": "b", "title": "U", "x-orion-open-map": "because", "default": 2});
    assert!(classify(&old, &new).is_empty());
}

#[test]
fn nested_changes_carry_their_pointer() {
    let old = closed(
        json!({"meta": closed(json!({"a": {"type": "string"}}), json!(["a"]))}),
        json!(["meta"]),
    );
    let new = closed(
        json!({"meta": closed(json!({}), json!([]))}),
        json!(["meta"]),
    );
    let changes = classify(&old, &new);
    assert_eq!(changes[0].pointer, "/properties/meta/properties/a");
}
