//! brain end to end on a real nats-server with the generated permissions: incidents in;
//! decisions, actions and approval requests out; signed approvals; the live ops interlock;
//! durable state across a restart.

mod support;

use std::time::Duration;

use brain::interlock::Armed;
use brain::Level;
use contracts::signing::SigningKey;
use serde_json::json;
use support::*;

fn kind(decision: &contracts::Decision) -> String {
    decision.decision_type.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_at_n3_executes_once_and_re_emitted_versions_are_held_by_the_cooldown() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;

    let outage = incident(
        "service_outage",
        "high",
        &[("service_name", "web"), ("rule", "down")],
    );
    publish_incident(&server, &outage).await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    assert_eq!(decision.incident_id, outage.incident_id);
    assert_eq!(decision.safety_classification.to_string(), "SAFE");
    assert_eq!(decision.autonomy_level.unwrap().to_string(), "N3");
    assert_eq!(decision.source.to_string(), "orion-brain");
    assert!(reasoning(&decision).contains("policy rule `restart-crashed-service`"));
    let action = seen.action().await;
    assert_eq!(action.decision_id, decision.decision_id);
    assert_eq!(action.action_type.to_string(), "restart_service");
    assert_eq!(action.state.to_string(), "pending");
    assert_eq!(action.safety_classification.to_string(), "SAFE");
    assert_eq!(
        action.parameters.service_name.as_ref().unwrap().as_str(),
        "web"
    );
    assert_eq!(action.source.as_str(), "orion-brain");
    assert_eq!(action.approval_id, None);

    // guardian re-emits the grown incident: no second action while the first cools down.
    publish_incident(&server, &grown(&outage)).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("cooldown of restart_service on web"),
        "{}",
        reasoning(&decision)
    );
    assert!(reasoning(&decision).contains(&outage.incident_id.to_string()));
    seen.quiet().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risky_at_n3_asks_and_a_signed_approval_runs_it_even_across_a_restart() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let text = policy("N3", &[&alice], 300, "");
    let brain = RunningBrain::start(&server, &text).await;
    let mut seen = Observer::new(&server).await;

    let anomaly = incident("metric_anomaly", "high", &[("service_name", "api")]);
    publish_incident(&server, &anomaly).await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "REQUEST_APPROVAL",
        "{}",
        reasoning(&decision)
    );
    assert!(decision.requires_approval);
    assert_eq!(decision.safety_classification.to_string(), "RISKY");
    let request = seen.request().await;
    assert_eq!(request.decision_id, decision.decision_id);
    assert_eq!(request.incident_id, Some(anomaly.incident_id));
    assert_eq!(request.risk_level.to_string(), "RISKY");
    assert_eq!(request.requested_action.action_type, "scale_service");
    assert_eq!(request.requested_action.parameters["replicas"], 3);
    assert!(request.requested_action.reasoning.is_some());
    let timeout = request.expires_at.0 - request.timestamp.0;
    assert_eq!(timeout, time::Duration::seconds(300));
    seen.no_action().await;
    let stored = stored_request(&server, request.approval_request_id)
        .await
        .expect("the request is kept in brain_state");
    assert!(stored.get("settlement").is_none());

    // brain restarts while the request waits: the request survives.
    brain.stop().await;
    let brain = RunningBrain::start(&server, &text).await;

    let approve = approval(&request, "approve", "alice");
    publish_signed(&server, &approve, &alice).await;
    let action = seen.action().await;
    assert_eq!(action.approval_id, Some(approve.approval_id));
    assert_eq!(action.decision_id, request.decision_id);
    assert_eq!(action.action_type.to_string(), "scale_service");
    assert_eq!(action.safety_classification.to_string(), "RISKY");
    assert_eq!(action.state.to_string(), "pending");
    assert_eq!(action.parameters.replicas, Some(3));

    // Settled once: a second decision for the same request is refused with a decision.
    let again = approval(&request, "force", "alice");
    publish_signed(&server, &again, &alice).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("already settled: approved by alice"),
        "{}",
        reasoning(&decision)
    );
    assert_eq!(decision.tags["approval_id"], again.approval_id.to_string());
    seen.quiet().await;
    let stored = stored_request(&server, request.approval_request_id)
        .await
        .unwrap();
    assert_eq!(stored["settlement"]["outcome"], "approved");
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_forgery_expiry_and_legacy_approvals_never_run_anything() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let (mallory, _) = SigningKey::generate("alice");
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 2, "")).await;
    let mut seen = Observer::new(&server).await;

    // Forged (right name, wrong key): refused, the request stays pending.
    publish_incident(
        &server,
        &incident("metric_anomaly", "high", &[("service_name", "a")]),
    )
    .await;
    assert_eq!(kind(&seen.decision().await), "REQUEST_APPROVAL");
    let request = seen.request().await;
    publish_signed(&server, &approval(&request, "approve", "alice"), &mallory).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("forged or altered"),
        "{}",
        reasoning(&decision)
    );
    assert_eq!(decision.incident_id, request.incident_id.unwrap());
    seen.no_action().await;

    // The legacy unsigned approval is refused, saying approvals must be signed.
    publish_legacy(&server, request.decision_id).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("approvals must be signed"),
        "{}",
        reasoning(&decision)
    );
    seen.no_action().await;

    // Nobody valid answers: the request expires (2 s) with a decision.
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("approval request expired"),
        "{}",
        reasoning(&decision)
    );
    assert_eq!(
        decision.tags["approval_request_id"],
        request.approval_request_id.to_string()
    );
    // A late answer after that is refused too.
    publish_signed(&server, &approval(&request, "approve", "alice"), &alice).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    let text = reasoning(&decision);
    assert!(
        text.contains("already settled: expired") || text.contains("too late"),
        "{text}"
    );
    seen.no_action().await;

    // Deny: a decision naming who and why; no action.
    publish_incident(
        &server,
        &incident("metric_anomaly", "high", &[("service_name", "b")]),
    )
    .await;
    assert_eq!(kind(&seen.decision().await), "REQUEST_APPROVAL");
    let request = seen.request().await;
    publish_signed(&server, &approval(&request, "deny", "alice"), &alice).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("denied by alice"),
        "{}",
        reasoning(&decision)
    );
    assert!(reasoning(&decision).contains("deny in test"));
    seen.quiet().await;
    brain.stop().await;
}

const DISARM_ID: &str = "0f6a3c2e-9d41-4b7a-8e25-6c1d3b9a7f01";
const ARM_ID: &str = "0f6a3c2e-9d41-4b7a-8e25-6c1d3b9a7f02";
const RISK_ID: &str = "0f6a3c2e-9d41-4b7a-8e25-6c1d3b9a7f03";

/// Fail closed: provisioning armed the platform; once the `armed` record is deleted brain
/// observes only, and says why in the decision's reasoning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brain_observes_only_when_the_armed_record_is_missing() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let mut brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    brain
        .wait_interlock(|s| matches!(s.armed, Armed::Armed { .. }))
        .await;

    delete_interlock(&server, "armed").await;
    brain
        .wait_interlock(|s| !matches!(s.armed, Armed::Armed { .. }))
        .await;
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "one")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION", "{}", reasoning(&decision));
    assert_eq!(decision.autonomy_level.unwrap().to_string(), "N0");
    assert!(
        reasoning(&decision).contains("no `armed` record"),
        "{}",
        reasoning(&decision)
    );
    seen.no_action().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_interlock_changes_brain_without_a_restart() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let mut brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;

    write_interlock(
        &server,
        "armed",
        json!({"v": 1, "armed": false, "set_by": "ops_command", "command_id": DISARM_ID, "set_at": "2026-02-14T12:00:00Z"}),
    )
    .await;
    brain
        .wait_interlock(|s| matches!(s.armed, Armed::Disarmed { .. }))
        .await;
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "one")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION", "{}", reasoning(&decision));
    assert_eq!(decision.autonomy_level.unwrap().to_string(), "N0");
    assert!(
        reasoning(&decision).contains(&format!(
            "the ops interlock is disarmed (disarmed by ops command {DISARM_ID}"
        )),
        "{}",
        reasoning(&decision)
    );
    seen.no_action().await;

    // Re-armed with a risk ceiling of N1: suggestions only.
    write_interlock(
        &server,
        "armed",
        json!({"v": 1, "armed": true, "set_by": "ops_command", "command_id": ARM_ID, "set_at": "2026-02-14T12:01:00Z"}),
    )
    .await;
    write_interlock(
        &server,
        "risk_ceiling",
        json!({"v": 1, "level": "N1", "set_by": "ops_command", "command_id": RISK_ID, "set_at": "2026-02-14T12:02:00Z"}),
    )
    .await;
    brain
        .wait_interlock(|s| {
            matches!(s.armed, Armed::Armed { .. })
                && s.ceiling.as_ref().is_some_and(|c| c.level == Level::N1)
        })
        .await;
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "two")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "SUGGEST_ACTION",
        "{}",
        reasoning(&decision)
    );
    assert_eq!(decision.autonomy_level.unwrap().to_string(), "N1");
    assert_eq!(
        decision.proposed_action.as_ref().unwrap().action_type,
        "restart_service"
    );
    assert!(reasoning(&decision).contains("ops risk ceiling is N1"));
    seen.no_action().await;

    // Ceiling lifted: the policy's N3 again, and the SAFE action runs.
    write_interlock(
        &server,
        "risk_ceiling",
        json!({"v": 1, "level": "N3", "set_by": "ops_command", "command_id": RISK_ID, "set_at": "2026-02-14T12:03:00Z"}),
    )
    .await;
    brain
        .wait_interlock(|s| s.ceiling.as_ref().is_some_and(|c| c.level == Level::N3))
        .await;
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "three")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    let action = seen.action().await;
    assert_eq!(action.parameters.service_name.unwrap().as_str(), "three");
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_outcomes_open_the_circuit_breaker() {
    let server = provisioned_server().await;
    let extra = r#"
[[rules]]
name = "restart-device"
incident_types = ["edge_device_failure"]
action = "restart_edge_device"
safety = "SAFE"
parameters = { device_id = "${tags.device_id}" }
cooldown_s = 1
circuit_breaker = { failures = 2, within_s = 300, open_s = 600 }
"#;
    let brain = RunningBrain::start(&server, &policy("N2", &[], 300, extra)).await;
    let mut seen = Observer::new(&server).await;
    for _ in 0..2 {
        publish_incident(
            &server,
            &incident("edge_device_failure", "high", &[("device_id", "gw-7")]),
        )
        .await;
        let decision = seen.decision().await;
        assert_eq!(
            kind(&decision),
            "EXECUTE_SAFE_ACTION",
            "{}",
            reasoning(&decision)
        );
        let action = seen.action().await;
        publish_outcome(&server, action.action_id, "failed").await;
        // Time itself is the condition: the rule's 1 s cooldown must be over.
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    publish_incident(
        &server,
        &incident("edge_device_failure", "high", &[("device_id", "gw-7")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION", "{}", reasoning(&decision));
    assert!(
        reasoning(&decision).contains("circuit breaker of restart_edge_device on gw-7 is open"),
        "{}",
        reasoning(&decision)
    );
    // Another device is not affected.
    publish_incident(
        &server,
        &incident("edge_device_failure", "high", &[("device_id", "gw-8")]),
    )
    .await;
    assert_eq!(kind(&seen.decision().await), "EXECUTE_SAFE_ACTION");
    seen.action().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_ceiling_of_n2_blocks_risky_and_uncovered_incidents_are_explained() {
    let server = provisioned_server().await;
    let brain = RunningBrain::start(&server, &policy("N2", &[], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    publish_incident(
        &server,
        &incident("metric_anomaly", "high", &[("service_name", "api")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("blocked at N2"),
        "{}",
        reasoning(&decision)
    );
    publish_incident(&server, &incident("correlation_detected", "low", &[])).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert_eq!(decision.safety_classification.to_string(), "UNKNOWN");
    assert!(
        reasoning(&decision).contains("No policy rule covers"),
        "{}",
        reasoning(&decision)
    );
    seen.quiet().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_incident_replays_the_stored_effects_with_the_same_ids() {
    use brain::state::{outbox_key, Effect, Outbox};
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let outage = incident("service_outage", "high", &[("service_name", "web")]);
    // The incident is message 1 of ORION_INCIDENTS.
    publish_incident(&server, &outage).await;

    // As if an earlier brain had decided, stored its outbox and crashed before publishing.
    let decision: contracts::Decision = contracts::decode_value(json!({
        "version": "1.0",
        "decision_id": uuid::Uuid::new_v4(),
        "timestamp": contracts::Timestamp::now().to_string(),
        "source": "orion-brain",
        "incident_id": outage.incident_id,
        "decision_type": "EXECUTE_SAFE_ACTION",
        "safety_classification": "SAFE",
        "requires_approval": false,
        "reasoning": "decided before the crash"
    }))
    .unwrap();
    let action: contracts::Action = contracts::decode_value(json!({
        "version": "1.0",
        "action_id": uuid::Uuid::new_v4(),
        "timestamp": contracts::Timestamp::now().to_string(),
        "source": "orion-brain",
        "decision_id": decision.decision_id,
        "action_type": "restart_service",
        "safety_classification": "SAFE",
        "state": "pending",
        "parameters": {"service_name": "web"}
    }))
    .unwrap();
    let outbox = Outbox {
        created_at: contracts::Timestamp::now(),
        mutations: Vec::new(),
        effects: vec![
            Effect::Decision(Box::new(decision.clone())),
            Effect::Action(Box::new(action.clone())),
        ],
    };
    let kv = admin_jetstream(&server)
        .await
        .get_key_value("brain_state")
        .await
        .unwrap();
    let key = outbox_key("incident", 1);
    kv.put(&key, serde_json::to_vec(&outbox).unwrap().into())
        .await
        .unwrap();

    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    assert_eq!(seen.decision().await.decision_id, decision.decision_id);
    assert_eq!(seen.action().await.action_id, action.action_id);
    seen.quiet().await;
    brain.stop().await;
    assert!(
        kv.get(&key).await.unwrap().is_some(),
        "the outbox is kept after the ack, for a delivery that may still come"
    );
}

/// A message delivered again after brain acknowledged it — on a cluster a confirmed ack can be
/// lost with the node that confirmed it (seen in the chaos run, seed 17660734304768111536: a
/// second decision, and a second restart action, for one incident version); here the durable
/// consumer is reset — replays the effects it stored, with the same ids, instead of deciding
/// again. Before: the outbox was deleted right after the ack, and brain decided anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_delivered_again_after_its_ack_replays_the_same_decision() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let outage = incident("service_outage", "high", &[("service_name", "web")]);
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    publish_incident(&server, &outage).await;
    let decided = seen.decision().await;
    let acted = seen.action().await;
    assert_eq!(decided.incident_id, outage.incident_id);
    brain.stop().await;

    // Every message of the incident stream is delivered again, as if never acknowledged.
    let js = admin_jetstream(&server).await;
    let durable = contracts::DURABLE_CONSUMERS
        .iter()
        .find(|c| c.service == "brain" && c.filter_subject == "orion.incident.v1")
        .expect("brain's incident consumer is inventoried");
    js.get_stream(durable.stream)
        .await
        .unwrap()
        .delete_consumer(durable.name)
        .await
        .unwrap();
    contracts::bus::provision_consumer(&js, durable, durable.into())
        .await
        .unwrap();

    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    seen.quiet().await;
    brain.stop().await;
    assert_eq!(acted.decision_id, decided.decision_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_request_brain_never_made_is_dead_lettered() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    let invented: contracts::ApprovalRequest = contracts::decode_value(json!({
        "version": "1.0",
        "approval_request_id": uuid::Uuid::new_v4(),
        "timestamp": contracts::Timestamp::now().to_string(),
        "source": "orion-brain",
        "decision_id": uuid::Uuid::new_v4(),
        "action_type": "scale_service",
        "risk_level": "RISKY",
        "requested_action": {"action_type": "scale_service", "parameters": {}},
        "expires_at": contracts::Timestamp::now().to_string()
    }))
    .unwrap();
    publish_signed(&server, &approval(&invented, "approve", "alice"), &alice).await;
    let cli = connect::<contracts::services::ApprovalCli>(&server).await;
    let mut letters = cli
        .read::<contracts::DeadLetter>(contracts::bus::ReadFrom::Start)
        .await
        .unwrap();
    let letter = next(&mut letters, WAIT).await.expect("a dead letter");
    assert_eq!(letter.service.to_string(), "brain");
    assert_eq!(letter.subject.to_string(), "orion.approval_decision.v1");
    assert_eq!(
        letter.reason.code,
        contracts::generated::dead_letter_v1::DeadLetterReasonCode::UnknownReference
    );
    assert!(
        letter.reason.message.contains("which brain never issued"),
        "{:?}",
        letter.reason
    );
    seen.quiet().await;
    brain.stop().await;
}

/// The `limits.*` keys in `brain_state`: one per action type and target brain counts.
async fn limit_keys(server: &contracts::local_server::NatsServer) -> Vec<String> {
    use futures::TryStreamExt;
    let kv = admin_jetstream(server)
        .await
        .get_key_value("brain_state")
        .await
        .unwrap();
    let mut keys: Vec<String> = kv
        .keys()
        .await
        .unwrap()
        .try_filter(|k| futures::future::ready(k.starts_with("limits.")))
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_from_incidents_must_be_canonical_and_web_acts_once_however_it_is_spelled() {
    let server = provisioned_server().await;
    let brain = RunningBrain::start(&server, &policy("N2", &[], 300, "")).await;
    let mut seen = Observer::new(&server).await;

    // What an event source could put in data.service_name, and the rule each one breaks.
    let refused = [
        ("all", "reserved"),
        ("", "empty"),
        ("web ", "leading or trailing whitespace"),
        (" web", "leading or trailing whitespace"),
        ("web\t", "leading or trailing whitespace"),
        ("Web", "uppercase"),
    ];
    let outage = |name: &str| incident("service_outage", "critical", &[("service_name", name)]);
    let expect_refused = |decision: &contracts::Decision, name: &str, broken: &str| {
        let text = reasoning(decision);
        assert_eq!(kind(decision), "NO_ACTION", "{name:?}: {text}");
        assert!(
            text.contains(&format!("{name:?}")),
            "{name:?} named: {text}"
        );
        assert!(text.contains(broken), "{name:?}: says {broken}: {text}");
        assert!(
            text.contains("restart-crashed-service"),
            "names the rule: {text}"
        );
    };
    for (name, broken) in refused {
        publish_incident(&server, &outage(name)).await;
        expect_refused(&seen.decision().await, name, broken);
    }
    seen.no_action().await;

    // The canonical name acts once; afterwards it is held by its cooldown, and the variants
    // are still refused rather than counted under keys of their own.
    publish_incident(&server, &outage("web")).await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    assert_eq!(decision.tags["target"], "web");
    let action = seen.action().await;
    assert_eq!(action.parameters.service_name.unwrap().as_str(), "web");
    for (name, broken) in &refused[2..] {
        publish_incident(&server, &outage(name)).await;
        expect_refused(&seen.decision().await, name, broken);
    }
    publish_incident(&server, &outage("web")).await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION");
    assert!(
        reasoning(&decision).contains("cooldown of restart_service on web"),
        "{}",
        reasoning(&decision)
    );
    seen.quiet().await;
    assert_eq!(
        limit_keys(&server).await,
        ["limits.restart_service.web"],
        "one key for web, none for its variants"
    );
    brain.stop().await;
}

/// Every `orion.action.v1` message so far, with its headers (read as admin).
async fn stored_actions(
    server: &contracts::local_server::NatsServer,
) -> Vec<async_nats::jetstream::Message> {
    server.stored_messages("orion.action.v1").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_brain_publishes_carries_its_signature() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;

    // A SAFE action, emitted on the incident.
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "web")]),
    )
    .await;
    let safe = seen.action().await;
    // A RISKY action, emitted on a signed approval.
    publish_incident(
        &server,
        &incident("metric_anomaly", "high", &[("service_name", "api")]),
    )
    .await;
    let request = seen.request().await;
    publish_signed(&server, &approval(&request, "approve", "alice"), &alice).await;
    let risky = seen.action().await;

    let verifier = brain.verifier();
    let stored = stored_actions(&server).await;
    assert_eq!(stored.len(), 2);
    for (message, action) in stored.iter().zip([&safe, &risky]) {
        let header = message
            .headers
            .as_ref()
            .and_then(|h| h.get(contracts::signing::SIGNATURE_HEADER))
            .map(|v| v.as_str());
        assert!(
            header.is_some_and(|h| h.starts_with("ed25519:")),
            "action {} ({}) carries no Orion-Signature header",
            action.action_id,
            action.action_type
        );
        assert_eq!(
            verifier.verify_payload(contracts::signing::BRAIN_SIGNER, &message.payload, header),
            Ok(()),
            "action {} does not verify with brain's key",
            action.action_id
        );
    }
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_approval_replayed_after_a_re_arm_runs_nothing() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let mut brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    publish_incident(
        &server,
        &incident("metric_anomaly", "high", &[("service_name", "api")]),
    )
    .await;
    seen.decision().await;
    let request = seen.request().await;

    // An administrator approves while the platform is disarmed: refused.
    write_interlock(
        &server,
        "armed",
        json!({"v": 1, "armed": false, "set_by": "ops_command", "command_id": DISARM_ID, "set_at": "2026-02-14T12:00:00Z"}),
    )
    .await;
    brain
        .wait_interlock(|s| matches!(s.armed, Armed::Disarmed { .. }))
        .await;
    let approve = approval(&request, "approve", "alice");
    let payload = contracts::encode(&approve).unwrap();
    let signature = alice.sign(&contracts::to_value(&approve).unwrap());
    publish_signed(&server, &approve, &alice).await;
    let refused = seen.decision().await;
    assert_eq!(kind(&refused), "NO_ACTION", "{}", reasoning(&refused));

    // Re-armed; whoever copied the signed message publishes it again (a new stream message,
    // past the dedup window: no message id).
    write_interlock(
        &server,
        "armed",
        json!({"v": 1, "armed": true, "set_by": "ops_command", "command_id": ARM_ID, "set_at": "2026-02-14T12:01:00Z"}),
    )
    .await;
    brain
        .wait_interlock(|s| matches!(s.armed, Armed::Armed { .. }))
        .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(contracts::signing::SIGNATURE_HEADER, signature.as_str());
    admin_jetstream(&server)
        .await
        .publish_with_headers("orion.approval_decision.v1", headers, payload.into())
        .await
        .unwrap()
        .await
        .expect("stored");
    let replay = seen.decision().await;
    assert_eq!(kind(&replay), "NO_ACTION", "{}", reasoning(&replay));
    assert!(
        reasoning(&replay).contains("refused this same decision"),
        "{}",
        reasoning(&replay)
    );
    seen.no_action().await;

    // The request itself can still be answered, by a new decision.
    let fresh = approval(&request, "approve", "alice");
    publish_signed(&server, &fresh, &alice).await;
    assert_eq!(seen.action().await.approval_id, Some(fresh.approval_id));
    brain.stop().await;
}

/// Poison messages on each of brain's consumers — incidents, approval decisions, outcomes —
/// with each edge-of-time timestamp: each ends as a dead letter naming the field and the range
/// rule, brain keeps running, and the valid messages that follow are handled (an incident
/// decided, an approval turned into an action, an outcome acknowledged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_at_the_edge_of_time_are_dead_lettered_and_brain_goes_on() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;

    let anomaly = incident("metric_anomaly", "high", &[("service_name", "api")]);
    for timestamp in EDGE_OF_TIME {
        let mut poison = contracts::to_value(&anomaly).unwrap();
        poison["incident_id"] = json!(uuid::Uuid::new_v4());
        poison["timestamp"] = json!(timestamp);
        publish_raw(&server, "orion.incident.v1", &poison).await;
    }
    publish_incident(&server, &anomaly).await;
    let decision = seen.decision().await;
    assert_eq!(decision.incident_id, anomaly.incident_id);
    assert_eq!(
        kind(&decision),
        "REQUEST_APPROVAL",
        "{}",
        reasoning(&decision)
    );
    let request = seen.request().await;

    let approve = approval(&request, "approve", "alice");
    for timestamp in EDGE_OF_TIME {
        let mut poison = contracts::to_value(&approve).unwrap();
        poison["approval_id"] = json!(uuid::Uuid::new_v4());
        poison["expires_at"] = json!(timestamp);
        publish_raw(&server, "orion.approval_decision.v1", &poison).await;
    }
    publish_signed(&server, &approve, &alice).await;
    let action = seen.action().await;
    assert_eq!(action.approval_id, Some(approve.approval_id));

    for timestamp in EDGE_OF_TIME {
        let poison = json!({
            "version": "1.0",
            "outcome_id": uuid::Uuid::new_v4(),
            "timestamp": timestamp,
            "source": "orion-commander",
            "action_id": action.action_id,
            "status": "failed",
            "execution_time_ms": 40,
            "error": {"code": "container_exited", "message": "exited with 1"}
        });
        publish_raw(&server, "orion.outcome.v1", &poison).await;
    }
    publish_outcome(&server, action.action_id, "succeeded").await;
    wait_consumer_drained(&server, "brain", "orion.outcome.v1").await;

    let letters = dead_letters(&server, 3 * EDGE_OF_TIME.len()).await;
    let mut per_subject = std::collections::BTreeMap::<String, usize>::new();
    for letter in &letters {
        assert_eq!(letter.service.to_string(), "brain");
        assert_eq!(
            letter.reason.code,
            contracts::generated::dead_letter_v1::DeadLetterReasonCode::SchemaViolation,
            "{letter:#?}"
        );
        assert_eq!(
            letter.reason.rule.as_deref(),
            Some("date_time_range"),
            "{letter:#?}"
        );
        let path = if letter.subject.as_str() == "orion.approval_decision.v1" {
            "/expires_at"
        } else {
            "/timestamp"
        };
        assert_eq!(
            letter.reason.instance_path.as_deref(),
            Some(path),
            "{letter:#?}"
        );
        *per_subject.entry(letter.subject.to_string()).or_default() += 1;
    }
    assert_eq!(
        per_subject.into_iter().collect::<Vec<_>>(),
        vec![
            ("orion.approval_decision.v1".to_string(), EDGE_OF_TIME.len()),
            ("orion.incident.v1".to_string(), EDGE_OF_TIME.len()),
            ("orion.outcome.v1".to_string(), EDGE_OF_TIME.len()),
        ]
    );
    // brain's task is still running and stops cleanly (a panic would fail `stop`).
    brain.stop().await;
}

/// brain starts a decision from the limits it last wrote instead of reading them again; when
/// another instance has acted on the same target since, that decision must lose and brain
/// decide again from what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_by_another_instance_since_brain_last_wrote_the_limits_is_counted() {
    let server = provisioned_server().await;
    let extra = r#"
[[rules]]
name = "restart-device"
incident_types = ["edge_device_failure"]
action = "restart_edge_device"
safety = "SAFE"
parameters = { device_id = "${tags.device_id}" }
cooldown_s = 1
rate_limit = { max = 2, per_s = 3600 }
"#;
    let brain = RunningBrain::start(&server, &policy("N2", &[], 300, extra)).await;
    let mut seen = Observer::new(&server).await;
    let failure = || incident("edge_device_failure", "high", &[("device_id", "gw-7")]);

    publish_incident(&server, &failure()).await;
    seen.decision_of("EXECUTE_SAFE_ACTION", "executing action")
        .await;
    seen.action().await;
    // Time itself is the condition: the rule's 1 s cooldown must be over, so that only the
    // rate limit can hold the next incident back.
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // Another brain instance acts on gw-7, a moment ago: the rate limit's second action is used
    // up (and not by this brain, which still remembers one).
    let a_moment_ago =
        contracts::Timestamp(contracts::Timestamp::now().0 - time::Duration::milliseconds(1200));
    another_instance_acts(&server, "restart_edge_device", "gw-7", a_moment_ago).await;

    publish_incident(&server, &failure()).await;
    seen.decision_of("NO_ACTION", "rate limit").await;
    seen.quiet().await;
    brain.stop().await;
}

/// A target brain has not seen since it started counts as having no limits (no read): when
/// another instance has acted on it meanwhile, brain's action must lose and the cooldown hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_by_another_instance_on_a_target_new_to_brain_is_counted() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    another_instance_acts(
        &server,
        "restart_service",
        "web",
        contracts::Timestamp::now(),
    )
    .await;

    let outage = incident(
        "service_outage",
        "high",
        &[("service_name", "web"), ("rule", "down")],
    );
    publish_incident(&server, &outage).await;
    seen.decision_of("NO_ACTION", "cooldown of restart_service on web")
        .await;
    seen.quiet().await;
    brain.stop().await;
}
