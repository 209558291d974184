//! Each check of `cargo xtask check`, made to fail on a temporary copy of the repository.

mod common;

use common::{assert_clean, assert_error, Checkout};
use std::collections::BTreeSet;

use serde_json::{json, Value};

const EVENT: &str = "orion/event.v1.schema.json";
const OUTCOME: &str = "orion/outcome.v1.schema.json";

#[test]
fn the_committed_repository_is_clean() {
    let checkout = Checkout::as_committed();
    assert_clean(&checkout.check());
}

// --- drift ---

#[test]
fn an_edited_generated_file_is_drift() {
    let checkout = Checkout::new();
    let rel = "crates/contracts/src/generated/event_v1.rs";
    checkout.write(rel, &(checkout.read(rel) + "\n// a hand edit\n"));
    let found = assert_error(&checkout.check(), "GENERATED_FILE_STALE");
    assert_eq!(found[0].path, rel);
}

#[test]
fn a_missing_or_extra_generated_file_is_drift() {
    let checkout = Checkout::new();
    std::fs::remove_file(checkout.path("docs/asyncapi.json")).unwrap();
    checkout.write(
        "crates/contracts/src/generated/helpers.rs",
        "pub fn f() {}\n",
    );
    let report = checkout.check();
    assert_error(&report, "GENERATED_FILE_MISSING");
    assert_error(&report, "GENERATED_FILE_UNEXPECTED");
}

#[test]
fn a_schema_edit_without_codegen_is_drift_and_a_stale_hash() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["description"] = json!("Reworded description of an event.")
    });
    let report = checkout.check();
    assert_error(&report, "GENERATED_FILE_STALE");
    assert_error(&report, "CONTRACT_SET_HASH_STALE");
}

// --- inventory ---

fn edit_inventory(checkout: &Checkout, from: &str, to: &str) {
    let text = checkout.read("schemas/inventory.toml");
    assert!(text.contains(from), "inventory has no {from:?}");
    checkout.write("schemas/inventory.toml", &text.replacen(from, to, 1));
}

#[test]
fn a_schema_missing_from_the_inventory_is_refused() {
    let checkout = Checkout::new();
    checkout.write(
        "schemas/orion/heartbeat.v1.schema.json",
        &checkout
            .read(&format!("schemas/{EVENT}"))
            .replace("\"Event\"", "\"Heartbeat\"")
            .replace("/event/", "/heartbeat/"),
    );
    let found = assert_error(&checkout.check(), "SCHEMA_NOT_IN_INVENTORY");
    assert_eq!(found[0].path, "schemas/orion/heartbeat.v1.schema.json");
}

#[test]
fn an_inventory_entry_without_schema_or_owner_is_refused() {
    let checkout = Checkout::new();
    edit_inventory(
        &checkout,
        "schema = \"orion/outcome.v1.schema.json\"\nowner = \"commander\"",
        "schema = \"orion/outcomes.v1.schema.json\"\nowner = \"\"",
    );
    edit_inventory(&checkout, "owner = \"brain\"", "owner = \" \"");
    let report = checkout.check();
    assert_error(&report, "INVENTORY_SCHEMA_MISSING");
    assert_error(&report, "INVENTORY_OWNER_MISSING");
}

#[test]
fn inventory_cross_references_are_checked() {
    let checkout = Checkout::new();
    edit_inventory(
        &checkout,
        "consumers = [\"brain\"]",
        "consumers = [\"brian\"]",
    );
    edit_inventory(
        &checkout,
        "stream = \"ORION_OUTCOMES\"",
        "stream = \"ORION_OUTCOME\"",
    );
    edit_inventory(
        &checkout,
        "idempotency_key = [\"decision_id\"]",
        "idempotency_key = [\"proposed_action\"]",
    );
    edit_inventory(
        &checkout,
        "subject = \"orion.decision.v1\"",
        "subject = \"orion.decision\"",
    );
    let report = checkout.check();
    assert_error(&report, "INVENTORY_UNKNOWN_SERVICE");
    assert_error(&report, "INVENTORY_UNKNOWN_STREAM");
    assert_error(&report, "INVENTORY_IDEMPOTENCY_KEY_INVALID");
    assert_error(&report, "INVENTORY_SUBJECT_VERSION_MISMATCH");
}

// --- schema invariants ---

#[test]
fn an_open_object_is_refused() {
    let checkout = Checkout::new();
    checkout.edit_schema(OUTCOME, |s| {
        s["properties"]["error"]
            .as_object_mut()
            .unwrap()
            .remove("additionalProperties");
    });
    let found = assert_error(&checkout.check(), "SCHEMA_OPEN_OBJECT");
    assert_eq!(
        found[0].path,
        "schemas/orion/outcome.v1.schema.json#/properties/error"
    );
}

#[test]
fn an_unexplained_map_is_refused() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["properties"]["tags"]
            .as_object_mut()
            .unwrap()
            .remove("x-orion-open-map");
    });
    assert_error(&checkout.check(), "SCHEMA_OPEN_OBJECT");
}

#[test]
fn the_version_must_be_a_required_constant_matching_the_id() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["properties"]["version"] = json!({"type": "string"})
    });
    checkout.edit_schema(OUTCOME, |s| {
        s["properties"]["version"]["enum"] = json!(["2.0"])
    });
    let report = checkout.check();
    assert_error(&report, "SCHEMA_VERSION_NOT_CONSTANT");
    assert_error(&report, "SCHEMA_VERSION_MISMATCH");
}

#[test]
fn the_id_must_carry_the_major_version() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["$id"] = json!("https://orion.internal/schemas/event.schema.json")
    });
    checkout.edit_schema(OUTCOME, |s| {
        s["$id"] = json!("https://orion.internal/schemas/outcome/v2.schema.json")
    });
    let report = checkout.check();
    assert_error(&report, "SCHEMA_ID_INVALID");
    assert_error(&report, "SCHEMA_ID_VERSION_MISMATCH");
}

#[test]
fn ids_must_be_uuids_and_timestamps_date_times() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["properties"]["event_id"]
            .as_object_mut()
            .unwrap()
            .remove("format");
        s["properties"]["timestamp"]
            .as_object_mut()
            .unwrap()
            .remove("format");
    });
    let report = checkout.check();
    let ids = assert_error(&report, "SCHEMA_ID_FORMAT_MISSING");
    assert_eq!(
        ids[0].path,
        "schemas/orion/event.v1.schema.json#/properties/event_id"
    );
    assert_error(&report, "SCHEMA_TIMESTAMP_FORMAT_MISSING");
}

#[test]
fn the_draft_must_be_2020_12_and_refs_local() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        s["properties"]["data"] = json!({"$ref": "common.schema.json#/$defs/data"});
    });
    let report = checkout.check();
    assert_error(&report, "SCHEMA_DRAFT_INVALID");
    assert_error(&report, "SCHEMA_REMOTE_REF");
}

// --- version and hash ---

#[test]
fn a_changed_contract_set_needs_a_version_bump() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["description"] = json!("Reworded description of an event.")
    });
    checkout.codegen();
    let found = assert_error(&checkout.check(), "CONTRACT_SET_VERSION_NOT_BUMPED");
    let released = checkout.released_version().to_string();
    assert!(found[0].message.contains(&released), "{}", found[0].message);

    checkout.bump(|v| v.patch += 1);
    checkout.codegen();
    assert_clean(&checkout.check());
}

#[test]
fn a_version_cannot_go_backwards_or_be_malformed() {
    let checkout = Checkout::new();
    checkout.set_version("0.0.1");
    checkout.codegen();
    assert_error(&checkout.check(), "CONTRACT_SET_VERSION_REGRESSED");
    checkout.set_version("one");
    checkout.codegen();
    assert_error(&checkout.check(), "CONTRACT_SET_VERSION_INVALID");
}

// --- evolution ---

fn breaking_change_after_codegen(edit: impl FnOnce(&mut Value)) -> Vec<xtask::check::Finding> {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, edit);
    checkout.bump(|v| v.minor += 1);
    checkout.codegen();
    let report = checkout.check();
    let found = assert_error(&report, "SCHEMA_BREAKING_CHANGE");
    assert!(
        found
            .iter()
            .all(|f| f.path.starts_with("schemas/orion/event.v1.schema.json")),
        "{found:?}"
    );
    found
}

#[test]
fn removing_a_required_field_is_breaking() {
    let found = breaking_change_after_codegen(|s| {
        s["properties"].as_object_mut().unwrap().remove("severity");
        let required = s["required"].as_array_mut().unwrap();
        required.retain(|f| f != "severity");
    });
    assert!(
        found[0]
            .message
            .contains("required field `severity` removed"),
        "{}",
        found[0].message
    );
    assert!(
        found[0]
            .message
            .contains("old readers of new messages: BREAKING"),
        "{}",
        found[0].message
    );
}

#[test]
fn narrowing_an_enum_is_breaking() {
    let found = breaking_change_after_codegen(|s| {
        s["properties"]["severity"]["enum"] = json!(["warning", "error", "critical"]);
    });
    assert_eq!(
        found[0].path,
        "schemas/orion/event.v1.schema.json#/properties/severity/enum"
    );
    assert!(
        found[0].message.contains("enum value \"info\" removed"),
        "{}",
        found[0].message
    );
}

#[test]
fn adding_a_required_field_is_breaking() {
    let found = breaking_change_after_codegen(|s| {
        s["properties"]["region"] = json!({"type": "string", "description": "Region."});
        s["required"].as_array_mut().unwrap().push(json!("region"));
    });
    assert!(
        found[0].message.contains("required field `region` added"),
        "{}",
        found[0].message
    );
    assert!(
        found[0].hint.contains("new major version"),
        "{}",
        found[0].hint
    );
}

#[test]
fn adding_an_optional_field_is_additive_with_a_warning() {
    let checkout = Checkout::new();
    checkout.edit_schema(EVENT, |s| {
        s["properties"]["region"] = json!({"type": "string", "description": "Region."});
    });
    checkout.bump(|v| v.minor += 1);
    checkout.codegen();
    let report = checkout.check();
    assert_clean(&report);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.code == "SCHEMA_FORWARD_INCOMPATIBLE"),
        "{:?}",
        report.findings
    );
}

const INTERLOCK_ARMED: &str = "titan/interlock_armed.v1.schema.json";

#[test]
fn a_breaking_change_to_a_key_value_schema_is_breaking() {
    let checkout = Checkout::new();
    checkout.edit_schema(INTERLOCK_ARMED, |s| {
        s["properties"]["set_by"]["enum"] = json!(["ops_command"]);
        s["required"]
            .as_array_mut()
            .unwrap()
            .push(json!("command_id"));
    });
    checkout.bump(|v| v.minor += 1);
    checkout.codegen();
    let found = assert_error(&checkout.check(), "SCHEMA_BREAKING_CHANGE");
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths.contains(&"schemas/titan/interlock_armed.v1.schema.json#/properties/set_by/enum"),
        "{paths:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.message.contains("field `command_id` became required")),
        "{found:?}"
    );
}

#[test]
fn a_bucket_that_others_read_declares_a_schema_for_every_key() {
    // A value brain reads loses its schema.
    let checkout = Checkout::new();
    edit_inventory(
        &checkout,
        "key = \"risk_ceiling\"\nschema = \"titan/interlock_risk_ceiling.v1.schema.json\"\n",
        "key = \"risk_ceiling\"\n",
    );
    let found = assert_error(&checkout.check(), "INVENTORY_BUCKET_SCHEMA_MISSING");
    assert_eq!(
        found[0].path,
        "schemas/inventory.toml#key_value.ops_interlock"
    );
    assert!(found[0].message.contains("`brain`"), "{}", found[0].message);
    assert!(
        found[0].message.contains("`risk_ceiling`"),
        "{}",
        found[0].message
    );

    // A private bucket gains an outside reader: its computed keys have no schema.
    let checkout = Checkout::new();
    edit_inventory(
        &checkout,
        "writers = [\"guardian\"]\nreaders = []",
        "writers = [\"guardian\"]\nreaders = [\"approval-cli\"]",
    );
    let found = assert_error(&checkout.check(), "INVENTORY_BUCKET_SCHEMA_MISSING");
    assert!(
        found
            .iter()
            .any(|f| f.message.contains("`group.<uuid v5>`")),
        "{found:?}"
    );
}

fn add_event_v2(checkout: &Checkout) {
    let mut v2: Value = serde_json::from_str(&checkout.read(&format!("schemas/{EVENT}"))).unwrap();
    v2["title"] = json!("EventV2");
    v2["$id"] = json!("https://orion.internal/schemas/event/v2.schema.json");
    v2["properties"]["version"]["enum"] = json!(["2.0"]);
    checkout.write(
        "schemas/orion/event.v2.schema.json",
        &serde_json::to_string_pretty(&v2).unwrap(),
    );
    let inventory = checkout.read("schemas/inventory.toml");
    checkout.write(
        "schemas/inventory.toml",
        &(inventory
            + "\n[[contracts]]\nname = \"event\"\nsubject = \"orion.event.v2\"\nschema = \"orion/event.v2.schema.json\"\nowner = \"guardian\"\nproducers = [\"event-source\"]\nconsumers = [\"guardian\"]\nidempotency_key = [\"event_id\"]\nstream = \"ORION_EVENTS\"\n"),
    );
    checkout.bump(|v| v.minor += 1);
    checkout.codegen();
}

#[test]
fn a_new_major_version_needs_a_migration_note() {
    let checkout = Checkout::new();
    add_event_v2(&checkout);
    let found = assert_error(&checkout.check(), "MIGRATION_NOTE_MISSING");
    assert_eq!(found[0].path, "schemas/orion/event.v2.schema.json");

    let notes = checkout.read("schemas/MIGRATIONS.md");
    checkout.write("schemas/MIGRATIONS.md", &(notes + "\n## 1.1.0\n\n`orion/event.v2.schema.json`: producers move when guardian reads both.\n"));
    assert_clean(&checkout.check());
}

#[test]
fn removing_a_released_contract_is_refused() {
    let checkout = Checkout::new();
    std::fs::remove_file(checkout.path("schemas/orion/approval.v1.schema.json")).unwrap();
    let inventory = checkout.read("schemas/inventory.toml");
    let start = inventory
        .find("[[contracts]]\nname = \"approval\"\n")
        .unwrap();
    let end = start + inventory[start + 1..].find("[[contracts]]").unwrap() + 1;
    checkout.write(
        "schemas/inventory.toml",
        &format!("{}{}", &inventory[..start], &inventory[end..]),
    );
    checkout.bump(|v| v.minor += 1);
    checkout.codegen();
    let report = checkout.check();
    assert_error(&report, "SCHEMA_REMOVED");
    assert_error(&report, "CONTRACT_SET_MAJOR_NOT_BUMPED");
}

#[test]
fn renaming_a_released_subject_is_refused() {
    let checkout = Checkout::new();
    edit_inventory(
        &checkout,
        "subject = \"orion.outcome.v1\"",
        "subject = \"orion.outcomes.v1\"",
    );
    checkout.bump(|v| v.minor += 1);
    checkout.codegen();
    assert_error(&checkout.check(), "INVENTORY_SUBJECT_CHANGED");
}

// --- repository invariants ---

#[test]
fn schemas_outside_schemas_are_refused() {
    let checkout = Checkout::new();
    checkout.write(
        "docs/event.v1.schema.json",
        &checkout.read(&format!("schemas/{EVENT}")),
    );
    let found = assert_error(&checkout.check(), "REPO_SCHEMA_OUTSIDE_SCHEMAS");
    assert_eq!(found[0].path, "docs/event.v1.schema.json");
}

#[test]
fn generated_files_outside_their_place_are_refused() {
    let checkout = Checkout::new();
    checkout.write(
        "crates/contracts/src/event_types.rs",
        &checkout.read("crates/contracts/src/generated/event_v1.rs"),
    );
    let found = assert_error(&checkout.check(), "REPO_GENERATED_OUTSIDE");
    assert_eq!(found[0].path, "crates/contracts/src/event_types.rs");
}

#[test]
fn symlinks_are_refused() {
    let checkout = Checkout::new();
    std::os::unix::fs::symlink(
        checkout.path("schemas/orion"),
        checkout.path("schemas/orion-link"),
    )
    .unwrap();
    let found = assert_error(&checkout.check(), "REPO_SYMLINK");
    assert_eq!(found[0].path, "schemas/orion-link");
}

#[test]
fn timeline_names_are_refused_in_paths_and_inventory_keys() {
    let checkout = Checkout::new();
    checkout.write("docs/contracts_v2_final.md", "notes\n");
    edit_inventory(
        &checkout,
        "[streams.ORION_OUTCOMES]",
        "[streams.ORION_OUTCOMES_OLD]",
    );
    let report = checkout.check();
    let found = assert_error(&report, "REPO_NAME_NOT_DURABLE");
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"docs/contracts_v2_final.md"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("#ORION_OUTCOMES_OLD")),
        "{paths:?}"
    );
}

// --- the command line ---

fn xtask(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run the xtask binary")
}

#[test]
fn json_report_and_exit_codes() {
    let checkout = Checkout::new();
    let root = checkout.root.to_str().unwrap();
    let clean = xtask(&["check", "--json", "--root", root]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let report: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(report["ok"], json!(true));

    checkout.edit_schema(EVENT, |s| {
        s["properties"]["severity"]["enum"] = json!(["error"])
    });
    let failing = xtask(&["check", "--json", "--root", root]);
    assert_eq!(failing.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&failing.stdout).unwrap();
    assert_eq!(report["ok"], json!(false));
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert!(codes.contains(&"SCHEMA_BREAKING_CHANGE"), "{codes:?}");
    for finding in report["findings"].as_array().unwrap() {
        for key in ["code", "severity", "message", "path", "hint"] {
            assert!(finding[key].is_string(), "finding without {key}: {finding}");
        }
    }

    let usage = xtask(&["check", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2));
}

// --- every other code, one edit each ---

type Edit = fn(&Checkout);

#[test]
fn every_remaining_code_is_triggered_by_its_edit() {
    let cases: &[(&str, Edit)] = &[
        ("CONTRACT_SET_UNREADABLE", |c| {
            c.write("schemas/inventory.toml", "this is = not [valid toml")
        }),
        ("CONTRACT_SET_VERSION_MISSING", |c| {
            std::fs::remove_file(c.path("schemas/contract-set.toml")).unwrap()
        }),
        ("BASELINE_MISSING", |c| {
            std::fs::remove_dir_all(c.path("schemas/baseline")).unwrap()
        }),
        ("BASELINE_UNREADABLE", |c| {
            c.write("schemas/baseline/inventory.toml", "[broken")
        }),
        ("INVENTORY_DUPLICATE_SUBJECT", |c| {
            edit_inventory(
                c,
                "subject = \"orion.decision.v1\"",
                "subject = \"orion.event.v1\"",
            )
        }),
        ("INVENTORY_DUPLICATE_CONTRACT", |c| {
            edit_inventory(c, "name = \"decision\"\nsubject = \"orion.decision.v1\"\nschema = \"orion/decision.v1.schema.json\"", "name = \"event\"\nsubject = \"orion.decision.v1\"\nschema = \"orion/event.v1.schema.json\"")
        }),
        ("INVENTORY_SCHEMA_NAME_MISMATCH", |c| {
            edit_inventory(c, "name = \"decision\"", "name = \"verdict\"")
        }),
        ("INVENTORY_SUBJECT_INVALID", |c| {
            edit_inventory(
                c,
                "subject = \"orion.decision.v1\"",
                "subject = \"orion.*.decision.v1\"",
            )
        }),
        ("INVENTORY_NO_PRODUCER", |c| {
            edit_inventory(c, "producers = [\"commander\"]", "producers = []")
        }),
        ("INVENTORY_IDEMPOTENCY_KEY_MISSING", |c| {
            edit_inventory(
                c,
                "idempotency_key = [\"outcome_id\"]",
                "idempotency_key = []",
            )
        }),
        ("INVENTORY_SIGNATURE_INVALID", |c| {
            edit_inventory(c, "algorithm = \"ed25519\"", "algorithm = \"rot13\"")
        }),
        ("INVENTORY_STREAM_NAME_INVALID", |c| {
            let text = c
                .read("schemas/inventory.toml")
                .replace("ORION_OUTCOMES", "orion_outcomes");
            c.write("schemas/inventory.toml", &text);
        }),
        ("INVENTORY_BUCKET_NAME_INVALID", |c| {
            let text = c
                .read("schemas/inventory.toml")
                .replace("ops_evidence", "OpsEvidence");
            c.write("schemas/inventory.toml", &text);
        }),
        ("INVENTORY_BUCKET_KEYS_MISSING", |c| {
            let text = c.read("schemas/inventory.toml");
            let block = "[[key_value.commander_actions.keys]]";
            let start = text.find(block).unwrap();
            let end = start + text[start..].find("\n\n").unwrap() + 2;
            c.write(
                "schemas/inventory.toml",
                &(text[..start].to_string() + &text[end..]),
            );
        }),
        ("INVENTORY_BUCKET_KEY_INVALID", |c| {
            edit_inventory(
                c,
                "pattern = \"<action id>\"",
                "pattern = \"<action id>\"\nkey = \"also-fixed\"",
            )
        }),
        ("INVENTORY_READER_UNDECLARED", |c| {
            edit_inventory(
                c,
                "[ordered_readers.ops-worker]\ndescription",
                "[ordered_readers.ops-worker-gone]\ndescription",
            )
        }),
        ("INVENTORY_READER_AND_CONSUMER", |c| {
            edit_inventory(
                c,
                "consumers = [\"guardian\"]\nreaders = [\"approval-cli\"]",
                "consumers = [\"guardian\"]\nreaders = [\"approval-cli\", \"guardian\"]",
            )
        }),
        ("INVENTORY_CONSUMER_UNKNOWN", |c| {
            edit_inventory(
                c,
                "[consumer_settings.commander-action-v1]",
                "[consumer_settings.commander-actions-v1]",
            )
        }),
        ("INVENTORY_CONSUMER_SETTINGS_INVALID", |c| {
            edit_inventory(c, "max_deliver = 5", "max_deliver = 0")
        }),
        ("INVENTORY_PARTITIONS_INVALID", |c| {
            edit_inventory(c, "partitions = 1", "partitions = 0")
        }),
        ("SCHEMA_INVALID", |c| {
            c.edit_schema(EVENT, |s| s["properties"]["severity"]["type"] = json!(5))
        }),
        ("SCHEMA_TITLE_MISSING", |c| {
            c.edit_schema(EVENT, |s| {
                s.as_object_mut().unwrap().remove("title");
            })
        }),
        ("SCHEMA_TITLE_DUPLICATE", |c| {
            c.edit_schema(OUTCOME, |s| s["title"] = json!("Event"))
        }),
        ("SCHEMA_DESCRIPTION_MISSING", |c| {
            c.edit_schema(EVENT, |s| s["description"] = json!(""))
        }),
        ("SCHEMA_ROOT_NOT_OBJECT", |c| {
            c.edit_schema(EVENT, |s| s["type"] = json!("array"))
        }),
        ("SCHEMA_VERSION_NOT_REQUIRED", |c| {
            c.edit_schema(EVENT, |s| {
                s["required"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|f| f != "version")
            })
        }),
        ("SCHEMA_FILE_NAME_INVALID", |c| {
            std::fs::rename(
                c.path("schemas/orion/event.v1.schema.json"),
                c.path("schemas/orion/event.schema.json"),
            )
            .unwrap();
            edit_inventory(
                c,
                "schema = \"orion/event.v1.schema.json\"",
                "schema = \"orion/event.schema.json\"",
            );
        }),
    ];
    for (code, edit) in cases {
        let checkout = Checkout::new();
        edit(&checkout);
        let report = checkout.check();
        assert!(
            report.error_codes().contains(code),
            "the edit for {code} did not trigger it; the report was:\n{}",
            report
                .findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn every_documented_code_is_emitted_somewhere_and_documented() {
    let governance = std::fs::read_to_string(
        xtask::inventory::Layout::of_this_checkout()
            .root
            .join("docs/GOVERNANCE.md"),
    )
    .unwrap();
    let sources: String = walkdir::WalkDir::new(
        xtask::inventory::Layout::of_this_checkout()
            .root
            .join("xtask/src/check"),
    )
    .into_iter()
    .filter_map(Result::ok)
    .filter(|e| e.file_type().is_file())
    .map(|e| std::fs::read_to_string(e.path()).unwrap())
    .collect();
    let mut emitted = BTreeSet::new();
    for quoted in sources.split('"').skip(1).step_by(2) {
        if quoted.len() > 6
            && quoted.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            && quoted.contains('_')
        {
            emitted.insert(quoted.to_string());
        }
    }
    assert!(emitted.len() > 40, "found only {} codes", emitted.len());
    let undocumented: Vec<_> = emitted
        .iter()
        .filter(|code| {
            !governance.contains(code.as_str()) && !documented_as_family(&governance, code)
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from docs/GOVERNANCE.md: {undocumented:?}"
    );
}

/// `GENERATED_FILE_STALE` / `_MISSING` style rows document a family of codes.
fn documented_as_family(governance: &str, code: &str) -> bool {
    code.rmatch_indices('_').any(|(i, _)| {
        let (stem, suffix) = code.split_at(i);
        governance.contains(stem) && governance.contains(&format!("`{suffix}`"))
    })
}

// --- the SDK boundary ---

#[test]
fn a_service_crate_that_reaches_past_the_platform_is_refused() {
    let checkout = Checkout::new();
    checkout.write(
        "crates/brain/Cargo.toml",
        "[package]\nname = \"brain\"\n\n[dependencies]\nasync-nats = \"0.51\"\nnats = { package = \"async-nats\", version = \"0.51\" }\n\n[dev-dependencies]\nasync-nats = \"0.51\"\n",
    );
    checkout.write(
        "crates/brain/src/state.rs",
        "// async_nats in a comment is fine\nuse async_nats::jetstream::kv;\n",
    );
    let found = assert_error(&checkout.check(), "SDK_BYPASSED");
    let places: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        places,
        [
            "crates/brain/Cargo.toml",
            "crates/brain/Cargo.toml",
            "crates/brain/src/state.rs:2"
        ],
        "both [dependencies] entries and the source line, not the dev-dependency or the comment"
    );
}

#[test]
fn the_platform_crate_and_dev_dependencies_may_use_the_client() {
    let checkout = Checkout::new();
    checkout.write(
        "crates/contracts/Cargo.toml",
        "[package]\nname = \"contracts\"\n\n[dependencies]\nasync-nats = \"0.51\"\n",
    );
    checkout.write("crates/contracts/src/bus.rs", "use async_nats::Client;\n");
    checkout.write(
        "crates/guardian/Cargo.toml",
        "[package]\nname = \"guardian\"\n\n[dev-dependencies]\nasync-nats = \"0.51\"\n",
    );
    checkout.write("crates/guardian/src/lib.rs", "pub fn f() {}\n");
    assert_clean(&checkout.check());
}

#[test]
fn the_service_crates_of_this_repository_reach_nats_only_through_the_platform() {
    let report = xtask::check::run(&xtask::inventory::Layout::of_this_checkout()).unwrap();
    let bypasses: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.code == "SDK_BYPASSED")
        .map(ToString::to_string)
        .collect();
    assert!(bypasses.is_empty(), "{bypasses:#?}");
}
