//! The attacks that used to work, tried again against the running platform: a real nats-server
//! with the generated permissions, every service as its own process, and an outside NATS client
//! holding one low-privilege identity's stolen credentials (`event-source`, the deprecated
//! `approval-telegram`). Each test shows the attack refused by the server and the platform still
//! doing its work. The whole matrix of refusals per identity is `tests/permissions.rs`.

use std::time::Duration;

use contracts::*;
use e2e::attacker::Attacker;
use e2e::probe::Probe;
use e2e::stack::Stack;
use e2e::testing::{docker, stack, unique};
use e2e::workload::Workload;
use orion_testkit::wait_until;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_secs(3);

async fn attacker(stack: &Stack, identity: &IdentityInfo) -> Attacker {
    Attacker::connect(&stack.server, identity.name, identity.inbox_prefix)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn identity(name: &str) -> &'static IdentityInfo {
    IDENTITIES
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("`{name}` is not an identity of the inventory"))
}

async fn admin_jetstream(stack: &Stack) -> async_nats::jetstream::Context {
    stack.server.admin_jetstream().await.unwrap()
}

/// A service goes down and the platform restarts it: the flow that must survive each attack.
async fn outage_is_handled(stack: &Stack, workload: &Workload, service: &str) {
    let probe = Probe::new(stack.bus().await.unwrap());
    workload.crash().await.unwrap();
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
        "{:?}\n{}",
        outcome.error,
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_event_source_credential_reads_no_replies_and_takes_no_events() {
    let docker = docker().await;
    let service = unique("web");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("attack-inbox", &[&service], 300).await;
    let thief = attacker(&stack, identity("event-source")).await;

    // Every service's replies (pull deliveries, signed ops commands, key-value reads).
    let (refused, mut everything) = thief.subscribe_refused("_INBOX.>").await.unwrap();
    assert!(refused, "event-source may subscribe to _INBOX.>");
    for other in IDENTITIES.iter().filter(|i| i.name != "event-source") {
        let (refused, _) = thief
            .subscribe_refused(&format!("{}.>", other.inbox_prefix))
            .await
            .unwrap();
        assert!(refused, "event-source may read {}'s replies", other.name);
    }
    // guardian's events, pulled from its durable consumer.
    assert!(
        thief
            .publish_refused(
                "$JS.API.CONSUMER.MSG.NEXT.ORION_EVENTS.guardian-event-v1",
                br#"{"batch":100,"expires":2000000000}"#.to_vec(),
            )
            .await
            .unwrap(),
        "event-source may pull guardian's events"
    );

    outage_is_handled(&stack, &workload, &service).await;
    let stolen = tokio::time::timeout(QUIET, futures::StreamExt::next(&mut everything)).await;
    assert!(
        stolen.is_err(),
        "event-source received a reply meant for another service: {stolen:?}"
    );
    let incidents: Vec<Incident> = stack.all().await.unwrap();
    assert_eq!(incidents.len(), 1, "guardian saw the event: {incidents:?}");
    // The server logged the refusals: what operators alert on.
    let refusals = stack.refusals();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("event-source") && l.contains("_INBOX.>")),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_outside_identity_can_reconfigure_a_stream_or_delete_a_consumer() {
    let docker = docker().await;
    let service = unique("web");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("attack-admin", &[&service], 300).await;
    let js = admin_jetstream(&stack).await;
    let before = js
        .get_stream("ORION_EVENTS")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();

    let producer = attacker(&stack, identity("event-source")).await;
    let shrink = json!({"name": "ORION_EVENTS", "subjects": ["orion.event.v1"], "max_age": 1_000_000_000u64, "storage": "file", "num_replicas": 1});
    assert!(
        producer
            .publish_refused(
                "$JS.API.STREAM.UPDATE.ORION_EVENTS",
                shrink.to_string().into_bytes()
            )
            .await
            .unwrap(),
        "event-source may reconfigure ORION_EVENTS"
    );
    let bot = attacker(&stack, identity("approval-telegram")).await;
    assert!(
        bot.publish_refused(
            "$JS.API.CONSUMER.DELETE.ORION_DECISIONS.commander-action-v1",
            Vec::new()
        )
        .await
        .unwrap(),
        "approval-telegram may delete commander's consumer"
    );

    let after = js
        .get_stream("ORION_EVENTS")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(after.max_age, before.max_age, "the stream was reshaped");
    js.get_stream("ORION_DECISIONS")
        .await
        .unwrap()
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("commander-action-v1")
        .await
        .expect("commander's consumer is still there");
    outage_is_handled(&stack, &workload, &service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deprecated_telegram_bot_cannot_have_a_risky_action_run() {
    let docker = docker().await;
    let service = unique("api");
    let _workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("attack-action", &[&service], 300).await;
    let bot = attacker(&stack, identity("approval-telegram")).await;

    let action = json!({
        "version": "1.0",
        "action_id": uuid::Uuid::new_v4(),
        "timestamp": Timestamp::now(),
        "source": "orion-brain",
        "decision_id": uuid::Uuid::new_v4(),
        "action_type": "scale_service",
        "safety_classification": "RISKY",
        "state": "pending",
        "parameters": {"service_name": service, "replicas": 5},
    });
    let action: Action = contracts::decode_value(action).unwrap();
    assert!(
        bot.publish_refused("orion.action.v1", encode(&action).unwrap())
            .await
            .unwrap(),
        "approval-telegram may publish actions"
    );
    // Refused, so never stored: no action for commander to run, and no ops command.
    let actions: Vec<Action> = stack.all().await.unwrap();
    assert!(actions.is_empty(), "an action was stored: {actions:?}");
    let commands: Vec<OpsCommand> = stack.all().await.unwrap();
    assert!(
        commands.is_empty(),
        "an ops command was sent: {commands:?}\n{}",
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_naming_all_or_a_respelled_service_restarts_nothing() {
    let docker = docker().await;
    let service = unique("web");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, _dir) = stack("attack-targets", &[&service], 300).await;
    let probe = Probe::new(stack.bus().await.unwrap());
    let started = workload.containers().await[0].state.clone();

    for name in [
        "all".to_string(),
        format!("{service} "),
        format!(" {service}"),
        format!("{service}\t"),
        service.to_uppercase(),
    ] {
        probe
            .emit("service_down", "critical", json!({"service_name": name}))
            .await
            .unwrap();
    }
    let expected = 5;
    let decided = wait_until("a decision for each event", WAIT, || async {
        let decisions: Vec<Decision> = stack.all().await.unwrap();
        (decisions.len() >= expected).then_some(decisions)
    })
    .await;
    let decisions = match decided {
        Ok(decisions) => decisions,
        Err(e) => panic!(
            "{e}: {:?}\n{}",
            stack.all::<Decision>().await.unwrap(),
            stack.logs()
        ),
    };
    assert_eq!(decisions.len(), expected, "{decisions:?}\n{}", stack.logs());
    for decision in &decisions {
        assert_eq!(
            decision.decision_type.to_string(),
            "NO_ACTION",
            "{decision:?}"
        );
    }
    // brain stores an action together with its decision: none was stored, so none can run.
    let actions: Vec<Action> = stack.all().await.unwrap();
    assert!(actions.is_empty(), "actions were emitted: {actions:?}");
    let commands: Vec<OpsCommand> = stack.all().await.unwrap();
    assert!(commands.is_empty(), "ops commands were sent: {commands:?}");
    assert_eq!(
        workload.containers().await[0].state,
        started,
        "the container was touched"
    );
}
