//! encode / decode: what an error says, and what the generated types refuse to construct.

use contracts::{decode, encode, Contract, ContractError, Event, Outcome, Timestamp};
use serde_json::json;

fn event_json() -> serde_json::Value {
    json!({
        "version": "1.0",
        "event_id": "0b7c6c3e-8f7e-4d39-9d3c-2c0d6f1f7a10",
        "timestamp": "2026-02-14T12:00:00Z",
        "source": "orion-watcher",
        "event_type": "service_down",
        "severity": "critical",
        "data": {"service_name": "payments"}
    })
}

#[test]
fn decode_then_encode_keeps_the_message() {
    let bytes = serde_json::to_vec(&event_json()).unwrap();
    let event: Event = decode(&bytes).unwrap();
    assert_eq!(
        event.data.service_name.as_deref().map(String::as_str),
        Some("payments")
    );
    let again: serde_json::Value = serde_json::from_slice(&encode(&event).unwrap()).unwrap();
    assert_eq!(again, event_json());
}

#[test]
fn an_error_names_the_path_the_rule_and_the_value() {
    let mut message = event_json();
    message["event_id"] = json!("not-a-uuid");
    let err = decode::<Event>(&serde_json::to_vec(&message).unwrap()).unwrap_err();
    let violation = &err.violations()[0];
    assert_eq!(violation.instance_path, "/event_id");
    assert_eq!(violation.rule, "format");
    assert_eq!(violation.value, "\"not-a-uuid\"");
    let text = err.to_string();
    assert!(text.starts_with("event:"), "{text}");
    assert!(
        text.contains("/event_id") && text.contains("format") && text.contains("not-a-uuid"),
        "{text}"
    );
}

#[test]
fn every_broken_rule_is_listed() {
    let mut message = event_json();
    message["severity"] = json!("fatal");
    message["source"] = json!("watcher");
    message.as_object_mut().unwrap().remove("data");
    message["extra"] = json!(1);
    let err = decode::<Event>(&serde_json::to_vec(&message).unwrap()).unwrap_err();
    let mut rules: Vec<(String, String)> = err
        .violations()
        .iter()
        .map(|v| (v.instance_path.clone(), v.rule.clone()))
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            ("".into(), "additionalProperties".into()),
            ("".into(), "required".into()),
            ("/severity".into(), "enum".into()),
            ("/source".into(), "pattern".into()),
        ]
    );
}

#[test]
fn another_version_is_its_own_error() {
    let mut message = event_json();
    message["version"] = json!("2.0");
    match decode::<Event>(&serde_json::to_vec(&message).unwrap()) {
        Err(ContractError::UnsupportedVersion {
            field,
            found,
            expected,
            ..
        }) => {
            assert_eq!(
                (field, found.as_str(), expected),
                ("version", "\"2.0\"", "\"1.0\"")
            );
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn garbage_is_not_json() {
    let err = decode::<Event>(b"{\"version\":").unwrap_err();
    assert!(
        matches!(
            err,
            ContractError::NotJson {
                contract: "event",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn generated_types_refuse_values_that_break_their_rules() {
    use contracts::generated::decision_v1::DecisionReasoning;
    use contracts::generated::event_v1::EventSource;
    use contracts::generated::outcome_v1::OutcomeSource;
    assert!(EventSource::try_from("orion-watcher").is_ok());
    assert!(EventSource::try_from("watcher").is_err());
    assert!(DecisionReasoning::try_from("too short").is_err());
    assert!(DecisionReasoning::try_from("long enough reasoning").is_ok());
    assert!("orion-brain".parse::<OutcomeSource>().is_err());
}

#[test]
fn encode_refuses_what_the_types_cannot_express() {
    // A failed outcome must carry `error`: an if/then rule only the validator knows.
    let outcome: Outcome = serde_json::from_value(json!({
        "version": "1.0",
        "outcome_id": "7d1b0c39-3f5e-4d0c-8a0e-0a5b0c9d1e2f",
        "timestamp": "2026-02-14T12:00:00Z",
        "source": "orion-commander",
        "action_id": "5a4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
        "status": "failed",
        "execution_time_ms": 12
    }))
    .unwrap();
    let err = encode(&outcome).unwrap_err();
    let violation = &err.violations()[0];
    assert_eq!(
        (violation.instance_path.as_str(), violation.rule.as_str()),
        ("", "required")
    );
    assert!(violation.message.contains("error"), "{violation}");
}

#[test]
fn timestamps_are_time_offset_date_times() {
    let ts: Timestamp = "2026-02-14T12:00:00.250+02:00".parse().unwrap();
    assert_eq!(ts.as_offset_date_time().offset().whole_hours(), 2);
    assert_eq!(ts.to_string(), "2026-02-14T12:00:00.25+02:00");
    assert!("2026-02-14 12:00".parse::<Timestamp>().is_err());
}

#[test]
fn contract_metadata_comes_from_the_inventory() {
    let info = <Event as Contract>::INFO;
    assert_eq!(info.subject, "orion.event.v1");
    assert_eq!(
        info.schema_id,
        "https://orion.internal/schemas/event/v1.schema.json"
    );
    assert_eq!((info.major, info.stream), (1, "ORION_EVENTS"));
    assert_eq!(info.idempotency_key, ["event_id"]);
    assert_eq!(
        contracts::contract_for_subject("titan.ops.command.v1")
            .unwrap()
            .name,
        "ops_command"
    );
}

#[test]
fn whole_numbers_written_as_floats_decode_as_integers() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/outcome/valid/failed_with_error.json"),
    )
    .unwrap();
    let mut message: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    message["execution_time_ms"] = json!(30001.0);
    let outcome: Outcome = decode(&serde_json::to_vec(&message).unwrap()).unwrap();
    assert_eq!(outcome.execution_time_ms, 30001);
    let again: serde_json::Value = serde_json::from_slice(&encode(&outcome).unwrap()).unwrap();
    assert_eq!(again["execution_time_ms"], json!(30001));

    message["execution_time_ms"] = json!(30001.5);
    let err = decode::<Outcome>(&serde_json::to_vec(&message).unwrap()).unwrap_err();
    assert!(err.to_string().contains("execution_time_ms"), "{err}");
}
