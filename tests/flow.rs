//! End to end, as operators run it: a real nats-server with the generated permissions; ops-worker,
//! guardian, brain and commander as their own processes; real containers on the Docker engine;
//! approvals given with the approval-cli binary.

use std::collections::BTreeSet;
use std::time::Duration;

use contracts::services::ApprovalCli;
use contracts::*;
use e2e::probe::Probe;
use e2e::testing::{docker, stack, stack_with_receipt_timeout, unique};
use e2e::workload::Workload;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn tags_of(incident: &Incident, key: &str) -> Option<String> {
    incident.tags.get(key).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_action_runs_without_a_person_and_a_burst_of_duplicates_makes_one_incident() {
    let docker = docker().await;
    let service = unique("web");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("safe", &[&service], 300).await;
    let probe = Probe::new(stack.bus().await.unwrap());

    workload.crash().await.unwrap();
    assert_eq!(workload.running().await, 0);
    let down = probe
        .emit("service_down", "critical", json!({"service_name": service}))
        .await
        .unwrap();
    for _ in 0..5 {
        probe.repeat(&down).await.unwrap();
    }

    let outcome = stack
        .wait_for::<Outcome>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(
        outcome.status.to_string(),
        "succeeded",
        "{:?}\n{}",
        outcome.error,
        stack.logs()
    );
    assert_eq!(
        workload.running().await,
        1,
        "the restart did not bring the service back"
    );

    let incidents: Vec<Incident> = stack.all().await.unwrap();
    let ids: BTreeSet<_> = incidents
        .iter()
        .filter(|i| tags_of(i, "service_name").as_deref() == Some(&service))
        .map(|i| i.incident_id)
        .collect();
    assert_eq!(ids.len(), 1, "one incident for the burst: {incidents:?}");
    assert!(
        incidents.iter().all(|i| i.event_ids.len() == 1),
        "a duplicate event was counted"
    );
    let decisions: Vec<Decision> = stack.all().await.unwrap();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(
        decisions[0].decision_type.to_string(),
        "EXECUTE_SAFE_ACTION"
    );
    let actions: Vec<Action> = stack.all().await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].action_type.to_string(), "restart_service");
    let outcomes: Vec<Outcome> = stack.all().await.unwrap();
    assert_eq!(outcomes.len(), 1, "exactly one outcome per action");
    assert_eq!(outcomes[0].action_id, actions[0].action_id);
    let receipts: Vec<OpsReceipt> = stack.all().await.unwrap();
    assert_eq!(
        receipts
            .iter()
            .filter(|r| r.status.to_string() != "pending")
            .count(),
        1
    );
    assert_eq!(
        stack.refusals(),
        Vec::<String>::new(),
        "a service did something its identity is not granted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risky_action_waits_for_approval_and_runs_once_approved() {
    let docker = docker().await;
    let service = unique("api");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("risky", &[&service], 300).await;
    let probe = Probe::new(stack.bus().await.unwrap());
    for value in [950, 980, 1200] {
        probe.emit("metric_threshold_exceeded", "warning", json!({"service_name": service, "metric": "latency_ms", "value": value, "threshold": 500})).await.unwrap();
    }
    let request = stack
        .wait_for::<ApprovalRequest>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(request.action_type, "scale_service");
    stack
        .none_within::<Action>(Duration::from_secs(2), |_| true)
        .await
        .unwrap_or_else(|e| panic!("a RISKY action ran without approval: {e}"));

    let id = request.approval_request_id.to_string();
    let key = stack.admin_key_file.to_str().unwrap().to_string();
    let approve = stack
        .run(
            "approval-cli",
            "approval-cli",
            &[
                "approve",
                &id,
                "--reason",
                "capacity for the sale",
                "--identity",
                "e2e-operator",
                "--key",
                &key,
            ],
        )
        .unwrap();
    assert!(
        approve.status.success(),
        "{}{}",
        String::from_utf8_lossy(&approve.stdout),
        String::from_utf8_lossy(&approve.stderr)
    );

    let outcome = stack
        .wait_for::<Outcome>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(
        outcome.status.to_string(),
        "succeeded",
        "{:?}\n{}",
        outcome.error,
        stack.logs()
    );
    let actions: Vec<Action> = stack.all().await.unwrap();
    assert_eq!(actions.len(), 1);
    assert!(
        actions[0].approval_id.is_some(),
        "the approved action names its approval"
    );
    assert_eq!(workload.running().await, 2, "scale_service to 2 replicas");
    // The audit trail has the whole chain.
    let trail = stack
        .run(
            "approval-cli",
            "approval-cli",
            &["trail", &request.incident_id.unwrap().to_string(), "--json"],
        )
        .unwrap();
    assert!(
        trail.status.success(),
        "{}",
        String::from_utf8_lossy(&trail.stderr)
    );
    let text = String::from_utf8_lossy(&trail.stdout);
    for subject in [
        "orion.event.v1",
        "orion.incident.v1",
        "orion.decision.v1",
        "orion.approval_request.v1",
        "orion.approval_decision.v1",
        "orion.action.v1",
        "titan.ops.command.v1",
        "titan.ops.receipt.v1",
        "orion.outcome.v1",
    ] {
        assert!(
            text.contains(subject) || text.contains(&subject.replace('.', "_")),
            "the trail lacks {subject}: {text}"
        );
    }
    // One trace for the incident: every message after the event carries its trace id (the
    // incident id's hex digits) in `traceparent`, and every service logged it.
    let incident_trace = request.incident_id.unwrap().simple().to_string();
    let envelopes: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut traced = BTreeSet::new();
    for envelope in &envelopes {
        let subject = envelope["subject"].as_str().unwrap();
        let trace_id = envelope["trace_id"].as_str();
        if subject == "orion.event.v1" {
            assert!(
                trace_id.is_some_and(|t| t != incident_trace),
                "an event keeps its producer's trace: {envelope}"
            );
        } else {
            assert_eq!(
                trace_id,
                Some(incident_trace.as_str()),
                "{subject} is not on the incident's trace: {envelope}"
            );
            traced.insert(subject.to_string());
        }
    }
    assert!(traced.len() >= 8, "{traced:?}");
    // guardian logs the event under the event's trace and names the incident's (below).
    for service in ["brain", "commander", "ops-worker"] {
        assert!(
            stack.logged(service, &format!("trace_id={incident_trace}")) > 0,
            "{service} logged nothing on the incident's trace:\n{}",
            stack.logs()
        );
    }
    assert!(
        stack.logged("guardian", &format!("incident_trace=\"{incident_trace}\"")) > 0,
        "guardian links the event's trace to the incident's"
    );
    assert_eq!(
        stack.refusals(),
        Vec::<String>::new(),
        "a service did something its identity is not granted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_forged_and_expired_approvals_lead_to_no_action() {
    let (stack, _dir) = stack("refusals", &["unused"], 12).await;
    let probe = Probe::new(stack.bus().await.unwrap());
    let services = [unique("deny"), unique("forge"), unique("expire")];
    for service in &services {
        for value in [900, 910, 920] {
            probe
                .emit(
                    "metric_threshold_exceeded",
                    "warning",
                    json!({"service_name": service, "metric": "latency_ms", "value": value}),
                )
                .await
                .unwrap();
        }
    }
    let mut requests = Vec::new();
    for service in &services {
        let incident = stack
            .wait_for::<Incident>(WAIT, |i| {
                tags_of(i, "service_name").as_deref() == Some(service)
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
        let request = stack
            .wait_for::<ApprovalRequest>(WAIT, |r| r.incident_id == Some(incident.incident_id))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
        requests.push(request);
    }
    let key = stack.admin_key_file.to_str().unwrap().to_string();
    let deny = stack
        .run(
            "approval-cli",
            "approval-cli",
            &[
                "deny",
                &requests[0].approval_request_id.to_string(),
                "--reason",
                "not now",
                "--identity",
                "e2e-operator",
                "--key",
                &key,
            ],
        )
        .unwrap();
    assert!(
        deny.status.success(),
        "{}",
        String::from_utf8_lossy(&deny.stderr)
    );

    // A decision signed by a key brain does not know, published straight on the bus.
    let (forger, _) = contracts::signing::SigningKey::generate("e2e-operator");
    let now = Timestamp::now();
    let forged: ApprovalDecision = contracts::decode_value(json!({
        "version": "1.0", "approval_id": uuid::Uuid::new_v4(), "timestamp": now, "source": "orion-approval-cli",
        "approval_request_id": requests[1].approval_request_id, "decision_id": requests[1].decision_id,
        "decision": "approve", "admin_identity": "e2e-operator", "reason": "forged", "issued_at": now,
        "expires_at": Timestamp::from(now.as_offset_date_time() + time::Duration::minutes(5)),
    }))
    .unwrap();
    let value = contracts::to_value(&forged).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        contracts::signing::SIGNATURE_HEADER,
        forger.sign(&value).as_str(),
    );
    stack
        .bus::<ApprovalCli>()
        .await
        .unwrap()
        .publish_with_headers(&forged, headers)
        .await
        .unwrap();

    // The third request is left to expire (12 s).
    for request in &requests {
        let (first_decision, incident) = (request.decision_id, request_incident(request));
        let settled = move |d: &Decision| {
            d.decision_type.to_string() == "NO_ACTION"
                && d.decision_id != first_decision
                && d.incident_id == incident
        };
        let decision = stack
            .wait_for::<Decision>(WAIT, settled)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
        assert!(decision.reasoning.len() >= 10);
    }
    assert!(
        stack.all::<Action>().await.unwrap().is_empty(),
        "an action was emitted for a denied, forged or expired approval\n{}",
        stack.logs()
    );
    assert_eq!(
        stack.refusals(),
        Vec::<String>::new(),
        "a service did something its identity is not granted"
    );
}

fn request_incident(request: &ApprovalRequest) -> uuid::Uuid {
    request
        .incident_id
        .expect("brain sets the incident id on its requests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_runs_while_the_platform_is_disarmed() {
    let docker = docker().await;
    let service = unique("db");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("disarmed", &[&service], 300).await;
    let interlock_changes = stack.logged("brain", "ops interlock changed");
    let disarm = stack
        .run(
            "ops-worker",
            "ops-console",
            &["send", "--type", "disarm", "--reason", "maintenance window"],
        )
        .unwrap();
    assert!(
        disarm.status.success(),
        "{}",
        String::from_utf8_lossy(&disarm.stderr)
    );
    // brain follows the interlock live: the incident comes once it has seen the disarm.
    stack
        .wait_logged("brain", "ops interlock changed", interlock_changes, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));

    workload.crash().await.unwrap();
    let probe = Probe::new(stack.bus().await.unwrap());
    probe
        .emit("service_down", "critical", json!({"service_name": service}))
        .await
        .unwrap();
    let decision = stack
        .wait_for::<Decision>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(
        decision.decision_type.to_string(),
        "NO_ACTION",
        "{}",
        decision.reasoning.as_str()
    );
    assert!(
        decision.reasoning.to_lowercase().contains("disarm"),
        "{}",
        decision.reasoning.as_str()
    );
    stack
        .none_within::<Action>(Duration::from_secs(2), |_| true)
        .await
        .unwrap_or_else(|e| panic!("nothing may run while disarmed: {e}"));
    assert_eq!(
        workload.running().await,
        0,
        "something restarted the service while disarmed"
    );
    assert_eq!(
        stack.refusals(),
        Vec::<String>::new(),
        "a service did something its identity is not granted"
    );
}

/// commander stops waiting for an ops command after its receipt timeout, but the outcome says
/// what really happened: the withdrawal finds the restart running, waits for its end, and the
/// outcome is its success (before: `failed`/`ops_timeout` while the restart went on), counted
/// as such by brain's breaker. No command is sent twice, and the container restarted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ops_command_that_outlasts_the_receipt_timeout_is_reconciled_not_failed() {
    let docker = docker().await;
    let service = unique("slow");
    // A restart waits its whole stop timeout (the policy says 2 s): longer than commander's 1 s.
    let workload = Workload::start_stopping_with(&docker, &service, "SIGTERM")
        .await
        .unwrap();
    let first_start = workload.containers().await[0]
        .state
        .as_ref()
        .and_then(|s| s.started_at.clone())
        .unwrap();
    let (stack, _dir) = stack_with_receipt_timeout("reconcile", &[&service], 300, 1).await;
    let probe = Probe::new(stack.bus().await.unwrap());
    probe
        .emit("service_down", "critical", json!({"service_name": service}))
        .await
        .unwrap();

    let outcome = stack
        .wait_for::<Outcome>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(
        outcome.status.to_string(),
        "succeeded",
        "the outcome contradicts what ran: {:?}\n{}",
        outcome.error,
        stack.logs()
    );
    let commands: Vec<OpsCommand> = stack.all().await.unwrap();
    let restarts: Vec<&OpsCommand> = commands
        .iter()
        .filter(|c| c.type_.to_string() == "restart")
        .collect();
    assert_eq!(restarts.len(), 1, "{commands:?}");
    assert!(
        commands.iter().any(|c| c.type_.to_string() == "withdraw"
            && c.params["command_id"] == json!(restarts[0].id)),
        "commander did not withdraw the command it stopped waiting for: {commands:?}"
    );
    let container = &workload.containers().await[0];
    let started = container
        .state
        .as_ref()
        .and_then(|s| s.started_at.clone())
        .unwrap();
    assert_ne!(started, first_start, "the restart did not happen");
    assert!(container
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false));
    let outcomes: Vec<Outcome> = stack.all().await.unwrap();
    assert_eq!(
        outcomes.len(),
        1,
        "exactly one outcome per action: {outcomes:?}"
    );
    assert_eq!(stack.refusals(), Vec::<String>::new());
}
