//! commander in process against a real nats-server: the actions that do not need Docker, the
//! at-most-once guarantee, and an ops command nobody answers. (Actions executed by a real
//! ops-worker on Docker are covered end to end in the workspace's tests/.)

use std::time::Duration;

use commander::service::{CommanderService, ACTIONS_BUCKET};
use contracts::bus::{Bus, ClaimLog, ReadFrom, SubscribeOptions, TypedReader};
use contracts::local_server::NatsServer;
use contracts::services::{ApprovalCli, Brain, Commander, Guardian};
use contracts::*;
use serde_json::{json, Value};

const TEST_SECRET: &str = "test-ops-secret-32chars!!!!!!!!";

async fn start_server() -> NatsServer {
    let server = NatsServer::start_with_auth().expect("nats-server");
    let admin = async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap();
    contracts::bus::provision_all(&async_nats::jetstream::new(admin), 1)
        .await
        .unwrap();
    server
}

async fn stop_commander(
    running: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
) {
    let _ = running.0.send(());
    running.1.await.unwrap();
}

async fn spawn_commander(
    server: &NatsServer,
    receipt_timeout: Duration,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let bus = Bus::<Commander>::connect(server.bus_config::<Commander>())
        .await
        .unwrap();
    let log = ClaimLog::open(bus.jetstream(), ACTIONS_BUCKET)
        .await
        .unwrap();
    let keys = ops_worker::signing::SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap();
    let service =
        CommanderService::new(bus, log, keys, receipt_timeout, Duration::from_secs(30), 8);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        service
            .run(
                async {
                    let _ = stopped.await;
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    });
    (stop, task)
}

fn action(action_type: &str, parameters: Value) -> Action {
    contracts::decode_value(json!({
        "version": "1.0",
        "action_id": uuid::Uuid::new_v4(),
        "timestamp": Timestamp::now(),
        "source": "orion-brain",
        "decision_id": uuid::Uuid::new_v4(),
        "action_type": action_type,
        "safety_classification": "SAFE",
        "state": "pending",
        "parameters": parameters,
    }))
    .unwrap()
}

async fn outcomes(server: &NatsServer) -> TypedReader<Outcome> {
    let cli = Bus::<ApprovalCli>::connect(server.bus_config::<ApprovalCli>())
        .await
        .unwrap();
    cli.read::<Outcome>(ReadFrom::Start).await.unwrap()
}

async fn next_outcome(reader: &mut TypedReader<Outcome>, wait: Duration) -> Option<Outcome> {
    let (outcome, _) = tokio::time::timeout(wait, reader.next())
        .await
        .ok()??
        .unwrap();
    Some(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_and_notify_do_real_work_and_report_succeeded() {
    let server = &start_server().await;
    let running = spawn_commander(server, Duration::from_secs(5)).await;
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();
    let guardian = Bus::<Guardian>::connect(server.bus_config::<Guardian>())
        .await
        .unwrap();
    let mut acks = guardian
        .subscribe::<IncidentAcknowledgement>(SubscribeOptions::default())
        .await
        .unwrap();
    let cli = Bus::<ApprovalCli>::connect(server.bus_config::<ApprovalCli>())
        .await
        .unwrap();
    let mut notifications = cli.read::<Notification>(ReadFrom::Start).await.unwrap();
    let mut outcomes = outcomes(server).await;

    let incident = uuid::Uuid::new_v4();
    let ack = action(
        "acknowledge_incident",
        json!({"incident_id": incident.to_string()}),
    );
    brain.publish(&ack).await.unwrap();
    let acknowledgement = tokio::time::timeout(Duration::from_secs(10), acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(acknowledgement.message().incident_id, incident);
    assert_eq!(acknowledgement.message().action_id, Some(ack.action_id));
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .expect("an outcome");
    assert_eq!(
        (outcome.action_id, outcome.status.to_string()),
        (ack.action_id, "succeeded".to_string())
    );

    let notify = action(
        "send_notification",
        json!({"message": "payments restarted", "severity": "warning", "incident_id": incident.to_string()}),
    );
    brain.publish(&notify).await.unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(10), notifications.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(notification.message.as_str(), "payments restarted");
    assert_eq!(notification.incident_id, Some(incident));
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .expect("an outcome");
    assert_eq!(
        (outcome.action_id, outcome.status.to_string()),
        (notify.action_id, "succeeded".to_string())
    );
    stop_commander(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_is_executed_once_and_gets_exactly_one_outcome() {
    let server = &start_server().await;
    let running = spawn_commander(server, Duration::from_secs(5)).await;
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();
    let cli = Bus::<ApprovalCli>::connect(server.bus_config::<ApprovalCli>())
        .await
        .unwrap();
    let mut notifications = cli.read::<Notification>(ReadFrom::Start).await.unwrap();
    let mut outcomes = outcomes(server).await;
    let notify = action("send_notification", json!({"message": "once"}));
    brain.publish(&notify).await.unwrap();
    let first = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .expect("an outcome");
    // The same action stored again (a replay, or a producer retry past the dedup window),
    // delivered to a restarted commander.
    stop_commander(running).await;
    let restarted = spawn_commander(server, Duration::from_secs(5)).await;
    let js = async_nats::jetstream::new(
        async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), server.password("admin").unwrap().into())
            .connect(server.url())
            .await
            .unwrap(),
    );
    // Raw publish without Nats-Msg-Id: the server stores it again, as a replay would.
    js.publish("orion.action.v1", encode(&notify).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let again = next_outcome(&mut outcomes, Duration::from_secs(10)).await;
    if let Some(again) = &again {
        assert_eq!(
            again, &first,
            "a repeated action only re-publishes its stored outcome"
        );
    }
    assert!(
        next_outcome(&mut outcomes, Duration::from_millis(700))
            .await
            .is_none(),
        "a second outcome"
    );
    tokio::time::timeout(Duration::from_secs(5), notifications.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), notifications.next())
            .await
            .is_err(),
        "the action ran twice: a second notification"
    );
    stop_commander(restarted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_dry_runs_and_an_unanswered_ops_command_end_in_one_outcome_each() {
    let server = &start_server().await;
    let running = spawn_commander(server, Duration::from_secs(2)).await;
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();
    let mut outcomes = outcomes(server).await;

    let bad = action("restart_service", json!({}));
    brain.publish(&bad).await.unwrap();
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(outcome.status.to_string(), "failed");
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.code.as_str(), "invalid_parameters");
    assert!(error.message.contains("service_name"));

    let mut dry = action(
        "scale_service",
        json!({"service_name": "web", "replicas": 3}),
    );
    dry.dry_run = true;
    brain.publish(&dry).await.unwrap();
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(outcome.status.to_string(), "succeeded");
    assert_eq!(outcome.result["plan"]["ops_command"], json!("deploy"));

    // No ops-worker runs: the command is sent, signed, and nobody answers.
    let restart = action("restart_service", json!({"service_name": "web"}));
    brain.publish(&restart).await.unwrap();
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(outcome.status.to_string(), "failed");
    assert_eq!(outcome.error.as_ref().unwrap().code.as_str(), "ops_timeout");
    let js = async_nats::jetstream::new(
        async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), server.password("admin").unwrap().into())
            .connect(server.url())
            .await
            .unwrap(),
    );
    let stream = js.get_stream("TITAN_OPS").await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject("titan.ops.command.v1")
        .await
        .unwrap();
    let command: OpsCommand = decode(&last.payload).unwrap();
    assert_eq!(
        command.meta.reason,
        commander::service::ops_reason(&restart)
    );
    assert_eq!(command.meta.initiator_id, "orion-commander");
    let raw: Value = serde_json::from_slice(&last.payload).unwrap();
    let keys = ops_worker::signing::SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap();
    assert_eq!(
        keys.verify(&raw)
            .expect("commander's ops command verifies with the shared key"),
        0
    );
    stop_commander(running).await;
}
