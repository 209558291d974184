//! commander in process against a real nats-server: only actions brain signed run (unsigned,
//! forged and altered ones are dead-lettered before any ops command), the actions that do not
//! need Docker, the at-most-once guarantee (also for a replayed signed action), and an ops
//! command nobody answers. (Actions executed by a real
//! ops-worker on Docker are covered end to end in the workspace's tests/.)

use std::time::Duration;

use commander::service::{CommanderService, ACTIONS_BUCKET};
use contracts::bus::{Bus, ClaimLog, ReadFrom, SubscribeOptions, TypedReader};
use contracts::local_server::NatsServer;
use contracts::services::{ApprovalCli, Brain, Commander, Guardian};
use contracts::signing::{SigningKey, Verifier, BRAIN_SIGNER, SIGNATURE_HEADER};
use contracts::*;
use orion_testkit::wait_until;
use serde_json::{json, Value};

const TEST_SECRET: &str = "test-ops-secret-32chars!!!!!!!!";

/// brain's signing key in these tests: a TEST KEY, generated at run time.
fn brain_key() -> &'static SigningKey {
    static KEY: std::sync::LazyLock<SigningKey> =
        std::sync::LazyLock::new(|| SigningKey::generate(BRAIN_SIGNER).0);
    &KEY
}

/// Publishes `action` with brain's identity and signature, as brain does.
async fn publish_signed(bus: &Bus<Brain>, action: &Action) {
    let header = brain_key().sign(&to_value(action).unwrap());
    bus.publish_with_headers(action, signature_headers(&header))
        .await
        .unwrap();
}

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
    let keys = ops_client::signing::SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap();
    let trusted =
        Verifier::for_signer(BRAIN_SIGNER, [brain_key().public_key_base64().as_str()]).unwrap();
    let service = CommanderService::new(
        bus,
        log,
        keys,
        trusted,
        receipt_timeout,
        Duration::from_secs(30),
        8,
    )
    .with_reconcile_timeout(receipt_timeout);
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
    publish_signed(&brain, &ack).await;
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
    publish_signed(&brain, &notify).await;
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
    publish_signed(&brain, &notify).await;
    let first = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .expect("an outcome");
    // The same signed action stored again (a replay of the exact message with its valid
    // signature, or a producer retry past the dedup window), delivered to a restarted commander.
    stop_commander(running).await;
    let restarted = spawn_commander(server, Duration::from_secs(5)).await;
    let js = async_nats::jetstream::new(
        async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), server.password("admin").unwrap().into())
            .connect(server.url())
            .await
            .unwrap(),
    );
    // Raw publish without Nats-Msg-Id: the server stores it again, as a replay would. Its
    // signature is valid: only the claim log stops it from running twice.
    let header = brain_key().sign(&to_value(&notify).unwrap());
    js.publish_with_headers(
        "orion.action.v1",
        signature_headers(&header),
        encode(&notify).unwrap().into(),
    )
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
    // The replay was recognised by its action id, not refused: its signature is valid.
    assert_eq!(
        dead_letters_for(server, &notify).await,
        Vec::<DeadLetter>::new(),
        "the signed replay was dead-lettered"
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
    publish_signed(&brain, &bad).await;
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
    publish_signed(&brain, &dry).await;
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(outcome.status.to_string(), "succeeded");
    assert_eq!(outcome.result["plan"]["ops_command"], json!("deploy"));

    // No ops-worker runs: the command is sent, signed, withdrawn after the receipt timeout,
    // and nobody answers either.
    let restart = action("restart_service", json!({"service_name": "web"}));
    publish_signed(&brain, &restart).await;
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(outcome.status.to_string(), "failed");
    assert_eq!(
        outcome.error.as_ref().unwrap().code.as_str(),
        "ops_unreachable"
    );
    let sent = stored(server, "titan.ops.command.v1").await;
    let commands: Vec<OpsCommand> = sent.iter().map(|m| decode(&m.payload).unwrap()).collect();
    let index = commands
        .iter()
        .position(|c| c.meta.reason == commander::service::ops_reason(&restart))
        .expect("the restart's ops command");
    let command = &commands[index];
    assert_eq!(command.meta.initiator_id, "orion-commander");
    let keys = ops_client::signing::SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap();
    for message in &sent {
        let raw: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            keys.verify(&raw)
                .expect("commander's ops commands verify with the shared key"),
            0
        );
    }
    // After the receipt timeout: withdrawn (again, while nobody answers), never re-sent.
    let withdrawals: Vec<&OpsCommand> = commands[index + 1..]
        .iter()
        .filter(|c| c.type_.to_string() == "withdraw")
        .collect();
    assert!(
        !withdrawals.is_empty(),
        "the unanswered command was not withdrawn"
    );
    for withdrawal in &withdrawals {
        assert_eq!(withdrawal.params["command_id"], json!(command.id));
        assert_eq!(withdrawal.params["command_type"], json!("restart"));
    }
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.type_.to_string() == "restart")
            .count(),
        1
    );
    stop_commander(running).await;
}

// ---- only actions brain signed reach ops-worker ---------------------------------------------

/// Every message of `subject` so far, oldest first, with its headers (read as admin).
async fn stored(server: &NatsServer, subject: &str) -> Vec<async_nats::jetstream::Message> {
    server.stored_messages(subject).await.unwrap()
}

/// The ops commands commander sent for `action` (found by the action id in `meta.reason`).
async fn ops_commands_for(server: &NatsServer, action: &Action) -> Vec<OpsCommand> {
    stored(server, "titan.ops.command.v1")
        .await
        .iter()
        .map(|m| decode::<OpsCommand>(&m.payload).unwrap())
        .filter(|c| c.meta.reason.contains(&action.action_id.to_string()))
        .collect()
}

/// The dead letters whose raw payload is `action`.
async fn dead_letters_for(server: &NatsServer, action: &Action) -> Vec<DeadLetter> {
    use base64::Engine;
    stored(server, "platform.dead_letter.v1")
        .await
        .iter()
        .map(|m| decode::<DeadLetter>(&m.payload).unwrap())
        .filter(|d| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(d.payload_base64.as_str())
                .unwrap_or_default();
            serde_json::from_slice::<Action>(&raw).is_ok_and(|a| a.action_id == action.action_id)
        })
        .collect()
}

fn risky_scale(replicas: u64) -> Action {
    let mut scale = action(
        "scale_service",
        json!({"service_name": "payments", "replicas": replicas}),
    );
    scale.safety_classification = "RISKY".parse().unwrap();
    scale
}

fn signature_headers(header: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, header);
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_and_altered_actions_are_dead_lettered_and_never_reach_ops_worker() {
    let server = &start_server().await;
    let brain_key = brain_key();
    let running = spawn_commander(server, Duration::from_secs(2)).await;
    // Brain's NATS identity (credentials alone must not be enough) publishes every variant.
    let bus = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();
    let mut outcomes = outcomes(server).await;

    let unsigned = risky_scale(12);
    bus.publish(&unsigned).await.unwrap();

    let forged = risky_scale(13);
    let (stranger, _) = SigningKey::generate(BRAIN_SIGNER);
    let header = stranger.sign(&to_value(&forged).unwrap());
    bus.publish_with_headers(&forged, signature_headers(&header))
        .await
        .unwrap();

    // Signed by brain as replicas = 2, then changed to 20 on the way.
    let mut altered = risky_scale(2);
    let header = brain_key.sign(&to_value(&altered).unwrap());
    altered.parameters.replicas = Some(20);
    bus.publish_with_headers(&altered, signature_headers(&header))
        .await
        .unwrap();

    // A brain-signed action is executed: its ops deploy goes out (nobody answers it here).
    let genuine = risky_scale(3);
    let header = brain_key.sign(&to_value(&genuine).unwrap());
    bus.publish_with_headers(&genuine, signature_headers(&header))
        .await
        .unwrap();
    let mut others = Vec::new();
    let outcome = loop {
        let outcome = next_outcome(&mut outcomes, Duration::from_secs(20))
            .await
            .expect("an outcome for the signed action");
        if outcome.action_id == genuine.action_id {
            break outcome;
        }
        others.push(outcome);
    };
    assert_eq!(
        outcome.error.as_ref().unwrap().code.as_str(),
        "ops_unreachable"
    );
    let sent = ops_commands_for(server, &genuine).await;
    assert_eq!(sent.len(), 1, "the signed action's ops deploy");
    assert_eq!(sent[0].type_.to_string(), "deploy");

    for (what, refused, why) in [
        ("unsigned", &unsigned, "no Orion-Signature header"),
        ("forged", &forged, "does not verify"),
        ("altered", &altered, "does not verify"),
    ] {
        assert_eq!(
            ops_commands_for(server, refused).await,
            Vec::<OpsCommand>::new(),
            "commander sent an ops command for the {what} action"
        );
        let awaited = format!("a dead letter for the {what} action");
        let letters = wait_until(&awaited, Duration::from_secs(10), || async {
            let letters = dead_letters_for(server, refused).await;
            (!letters.is_empty()).then_some(letters)
        })
        .await
        .unwrap();
        assert_eq!(letters.len(), 1, "one dead letter for the {what} action");
        let letter = &letters[0];
        assert_eq!(letter.service.as_str(), "commander");
        assert_eq!(letter.subject.as_str(), "orion.action.v1");
        assert_eq!(letter.reason.code.to_string(), "bad_signature", "{what}");
        assert!(
            letter.reason.message.contains(why),
            "the {what} action's dead letter says why: {}",
            letter.reason.message.as_str()
        );
    }
    // No outcome for a refused action: brain's circuit breaker must not count what brain never
    // asked for.
    others.extend(next_outcome(&mut outcomes, Duration::from_millis(700)).await);
    assert_eq!(others, Vec::new(), "outcomes of refused actions");
    stop_commander(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deprecated_telegram_identity_cannot_have_an_action_executed() {
    // The attack: approval-telegram publishes a RISKY, unapproved scale_service action.
    let server = &start_server().await;
    let running = spawn_commander(server, Duration::from_secs(2)).await;
    let telegram = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(
            async_nats::ConnectOptions::new()
                .user_and_password(
                    "approval-telegram".into(),
                    server.password("approval-telegram").unwrap().into(),
                )
                .connect(server.url())
                .await
                .unwrap(),
        );
    let attack = risky_scale(50);
    let stored_ack = match telegram
        .publish("orion.action.v1", encode(&attack).unwrap().into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    // Refused, so never stored: there is nothing commander could have run.
    assert!(
        !stored_ack,
        "the server stored an action published by approval-telegram"
    );
    assert_eq!(
        ops_commands_for(server, &attack).await,
        Vec::<OpsCommand>::new(),
        "commander sent the ops deploy approval-telegram asked for"
    );
    stop_commander(running).await;
}

/// Timestamps outside the supported range (after their offset is applied): decode refuses them.
const EDGE_OF_TIME: &[&str] = &[
    "9999-12-31T23:59:59-00:01",
    "0000-01-01T00:00:00+00:01",
    "1969-12-31T23:59:59Z",
    "9999-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
];

/// Poison actions (signed by brain, but with an edge-of-time timestamp, stored as the admin):
/// each ends as a dead letter naming `/timestamp` and the range rule, none reaches ops-worker,
/// commander keeps running and executes the next valid action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_at_the_edge_of_time_are_dead_lettered_and_commander_goes_on() {
    let server = &start_server().await;
    let running = spawn_commander(server, Duration::from_secs(5)).await;
    let admin = server.admin_jetstream().await.unwrap();
    for timestamp in EDGE_OF_TIME {
        let mut poison = to_value(&action(
            "send_notification",
            json!({"message": "from the end of time", "severity": "info"}),
        ))
        .unwrap();
        poison["timestamp"] = json!(timestamp);
        let mut headers = signature_headers(&brain_key().sign(&poison));
        headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
        admin
            .publish_with_headers(
                "orion.action.v1",
                headers,
                serde_json::to_vec(&poison).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();
    let mut outcomes = outcomes(server).await;
    let valid = action(
        "send_notification",
        json!({"message": "still here", "severity": "info"}),
    );
    publish_signed(&brain, &valid).await;
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(10))
        .await
        .expect("the valid action's outcome");
    assert_eq!(
        (outcome.action_id, outcome.status.to_string()),
        (valid.action_id, "succeeded".to_string())
    );
    assert!(
        next_outcome(&mut outcomes, Duration::from_millis(700))
            .await
            .is_none(),
        "no outcome for a poison action"
    );

    let cli = Bus::<ApprovalCli>::connect(server.bus_config::<ApprovalCli>())
        .await
        .unwrap();
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    for _ in EDGE_OF_TIME {
        let (letter, _) = tokio::time::timeout(Duration::from_secs(10), letters.next())
            .await
            .expect("a dead letter per poison action")
            .unwrap()
            .unwrap();
        assert_eq!(letter.service.as_str(), "commander");
        assert_eq!(letter.subject.as_str(), "orion.action.v1");
        assert_eq!(letter.reason.code.to_string(), "schema_violation");
        assert_eq!(letter.reason.instance_path.as_deref(), Some("/timestamp"));
        assert_eq!(letter.reason.rule.as_deref(), Some("date_time_range"));
    }
    assert!(stored(server, "titan.ops.command.v1").await.is_empty());
    // commander's task is still running and stops cleanly (a panic would fail the join).
    stop_commander(running).await;
}

/// An outcome recorded but not published is not acknowledged: the redelivered action publishes
/// the stored outcome, and the work is not done again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_could_not_be_published_is_published_by_the_redelivery() {
    let server = &start_server().await;
    let js = server.admin_jetstream().await.unwrap();
    let running = spawn_commander(server, Duration::from_secs(5)).await;
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();

    // The outcomes stream stops taking outcomes (notifications are still stored).
    let mut stream = js.get_stream("ORION_OUTCOMES").await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    let subjects = config.subjects.clone();
    config.subjects = vec!["orion.notification.v1".into()];
    js.update_stream(&config).await.unwrap();

    let notify = action(
        "send_notification",
        json!({"message": "outcome held back", "severity": "info"}),
    );
    publish_signed(&brain, &notify).await;
    // Wait until the outcome is recorded and the action came back at least once: the first
    // attempt handed it back instead of acknowledging it.
    let log = ClaimLog::open(&js, ACTIONS_BUCKET).await.unwrap();
    let state = || async {
        let recorded = matches!(
            log.get(&notify.action_id).await.unwrap(),
            Some(contracts::bus::ClaimRecord::Finished { .. })
        );
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream("commander-action-v1", "ORION_DECISIONS")
            .await
            .unwrap();
        (recorded, consumer.info().await.unwrap().clone())
    };
    let handed_back = wait_until(
        "the action recorded and handed back",
        Duration::from_secs(60),
        || async {
            let (recorded, info) = state().await;
            (recorded && info.num_redelivered >= 1).then_some(())
        },
    )
    .await;
    if let Err(e) = handed_back {
        let (recorded, info) = state().await;
        panic!("{e} (recorded: {recorded}, {info:?})");
    }

    // Outcomes are stored again: the redelivery publishes the recorded one.
    config.subjects = subjects;
    js.update_stream(&config).await.unwrap();
    let mut outcomes = outcomes(server).await;
    let outcome = next_outcome(&mut outcomes, Duration::from_secs(30))
        .await
        .expect("the recorded outcome, published by the redelivery");
    assert_eq!(outcome.action_id, notify.action_id);
    assert_eq!(outcome.status.to_string(), "succeeded");
    let notifications = stored(server, "orion.notification.v1").await;
    assert_eq!(notifications.len(), 1, "the notification was sent again");
    stop_commander(running).await;
}
