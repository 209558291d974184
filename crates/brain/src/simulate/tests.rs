use super::report::{differences, effects, Effect, Side};
use super::*;

fn side(decision_type: &str, rule: Option<&str>, target: Option<&str>) -> Side {
    Side {
        decision_type: decision_type.to_string(),
        safety: "SAFE".to_string(),
        rule: rule.map(str::to_string),
        action: rule.map(|_| "restart_service".to_string()),
        target: target.map(str::to_string),
        autonomy_level: Some("N2".to_string()),
    }
}

#[test]
fn effects_say_what_runs_and_what_is_asked() {
    let run = side("EXECUTE_SAFE_ACTION", Some("r"), Some("web"));
    let nothing = side("NO_ACTION", Some("r"), Some("web"));
    let ask = side("REQUEST_APPROVAL", Some("r"), Some("web"));
    assert_eq!(effects(Some(&run), &run), vec![]);
    assert_eq!(
        effects(Some(&run), &nothing),
        vec![Effect::ActionWouldNoLongerRun]
    );
    assert_eq!(effects(Some(&nothing), &run), vec![Effect::ActionWouldRun]);
    assert_eq!(effects(None, &run), vec![Effect::ActionWouldRun]);
    assert_eq!(
        effects(Some(&run), &ask),
        vec![Effect::ActionWouldNoLongerRun, Effect::ApprovalWouldBeAsked]
    );
    // Another target: the old action no longer runs, a new one would.
    let elsewhere = side("EXECUTE_SAFE_ACTION", Some("r"), Some("db"));
    assert_eq!(
        effects(Some(&run), &elsewhere),
        vec![Effect::ActionWouldNoLongerRun, Effect::ActionWouldRun]
    );
    assert_eq!(differences(Some(&run), &elsewhere), vec!["target"]);
    assert_eq!(
        differences(Some(&run), &nothing),
        vec!["decision_type"],
        "the level alone is not a difference"
    );
    assert_eq!(differences(None, &run), vec!["no_recorded_decision"]);
}

#[test]
fn the_ids_of_messages_never_made_get_stable_names() {
    let mut labels = Labels::default();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    labels.add(a, "action");
    labels.add(b, "request");
    assert_eq!(
        labels.apply(&format!("action {a} ran; request {b} waits; action {a}")),
        "action sim-action-1 ran; request sim-request-1 waits; action sim-action-1"
    );
}

#[test]
fn an_empty_history_changes_nothing() {
    let policy = Policy::parse(
        "autonomy_level = \"N2\"\n[[rules]]\nname = \"r\"\nincident_types = [\"service_outage\"]\naction = \"restart_service\"\nsafety = \"SAFE\"\nparameters = { service_name = \"web\" }\ncooldown_s = 60\n",
        "t",
    )
    .unwrap();
    let report = simulate(&History::default(), &policy, "t").unwrap();
    assert_eq!(report.summary.incidents, 0);
    assert!(report.changes.is_empty());
    assert!(report.to_table().contains("No decision would change."));
}

#[test]
fn a_recorded_approval_counts_only_while_the_simulated_request_waits() {
    let policy = Policy::parse(
        r#"
autonomy_level = "N3"
approval_timeout_s = 60
[[admins]]
identity = "ops-lead@example"
public_key = "7zWRtRe5IQL9oM3LHBLcU8JmLoqmwNe225WAXZpO/rI="
[[rules]]
name = "scale"
incident_types = ["metric_anomaly"]
action = "scale_service"
safety = "RISKY"
parameters = { service_name = "api", replicas = 3 }
cooldown_s = 600
"#,
        "t",
    )
    .unwrap();
    let t0: Timestamp = serde_json::from_value(serde_json::json!("2026-11-30T10:00:00Z")).unwrap();
    let later = |s: i64| Timestamp(t0.0 + time::Duration::seconds(s));
    let incident: contracts::Incident = contracts::decode_value(serde_json::json!({
        "version": "1.0", "incident_id": Uuid::from_u128(1), "timestamp": t0.to_string(),
        "source": "orion-guardian", "incident_type": "metric_anomaly", "severity": "high",
        "event_ids": [Uuid::from_u128(2)],
        "correlation_window": {"start": t0.to_string(), "end": t0.to_string()},
        "state": "open", "tags": {}
    }))
    .unwrap();
    let approved_at = |s: i64, request: &contracts::ApprovalRequest| {
        crate::messages::ActionDraft {
            decision_id: request.decision_id,
            action_type: crate::messages::action_type("scale_service").unwrap(),
            safety: crate::policy::Safety::Risky,
            parameters: &request.requested_action.parameters,
            approval_id: Some(Uuid::from_u128(3)),
            tags: Default::default(),
        }
        .build(later(s))
        .unwrap()
    };
    let interlock = InterlockState::armed();

    // Too late for the simulated request (60s): the service would refuse that answer.
    let mut replay = Replay::new(&policy, &interlock);
    let plan = replay.incident(&incident, t0).unwrap();
    let request = plan.request.expect("an approval request");
    assert_eq!(
        replay.approved(request.approval_request_id, &approved_at(90, &request)),
        None
    );

    // In time: the approved action starts the cooldown, so the next version is blocked by it.
    let mut replay = Replay::new(&policy, &interlock);
    let plan = replay.incident(&incident, t0).unwrap();
    let request = plan.request.expect("an approval request");
    assert!(replay
        .approved(request.approval_request_id, &approved_at(30, &request))
        .is_some());
    let next = replay.incident(&incident, later(120)).unwrap();
    assert_eq!(next.decision.decision_type.to_string(), "NO_ACTION");
    assert!(
        next.decision.reasoning.as_str().contains("cooldown"),
        "{}",
        next.decision.reasoning.as_str()
    );
}
