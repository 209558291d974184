//! commander's sustained rate: a backlog of signed `send_notification` actions through the
//! service in process, next to a raw async-nats baseline doing the minimal equivalent work in
//! the same run.
//!
//! - commander: N actions (`send_notification`, SAFE: commander publishes a notification and an
//!   outcome, no ops command and no Docker) are stored on `orion.action.v1` as brain, each
//!   signed with brain's key, before commander starts; the clock runs from commander's start
//!   until every outcome is read back from `ORION_OUTCOMES`. Per action commander verifies the
//!   signature, claims the action id in its claim bucket, records the result there, publishes
//!   the notification and the outcome and confirm-acks the action (the at-most-once driver).
//!   Actions backed by Docker (restart, scale, …) are bounded by ops-worker and the Docker
//!   engine instead, and are not measured here.
//! - baseline: raw async-nats draining the same bytes from a stream in batches of commander's
//!   batch size (16, from `max_in_flight` = 16, the config default): pull a batch, publish two
//!   messages per action (the sizes of a notification and an outcome) with a `Nats-Msg-Id` to a
//!   second stream, confirm them, then confirm-ack the batch.
//!
//! Run: `cargo bench -p commander --bench throughput` (needs nats-server on PATH; fails without
//! it).

#[path = "../../../bench/raw_relay.rs"]
mod raw_relay;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use commander::service::{CommanderService, ACTIONS_BUCKET};
use contracts::bus::{Bus, ClaimLog};
use contracts::local_server::NatsServer;
use contracts::services::{Brain, Commander};
use contracts::signing::{SigningKey, Verifier, BRAIN_SIGNER, SIGNATURE_HEADER};
use contracts::{Action, Timestamp};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

const BACKLOG: usize = 5_000;
/// commander.toml's default `max_in_flight`; commander pulls min(it, 20) at a time.
const MAX_IN_FLIGHT: usize = 16;
const TEST_SECRET: &str = "bench-ops-secret-32chars!!!!!!!!";

/// A pending `send_notification` action as brain publishes it under the latency policy.
fn action(n: usize) -> Action {
    contracts::decode_value(json!({
        "version": "1.0",
        "action_id": Uuid::new_v4(),
        "timestamp": Timestamp::now(),
        "source": "orion-brain",
        "decision_id": Uuid::new_v4(),
        "action_type": "send_notification",
        "safety_classification": "SAFE",
        "state": "pending",
        "parameters": {"message": format!("svc-{n} is down"), "incident_id": Uuid::new_v4().to_string()},
    }))
    .unwrap()
}

fn server() -> NatsServer {
    NatsServer::start_with_auth().unwrap_or_else(|e| {
        panic!("this benchmark needs a real nats-server and does not run without one: {e}")
    })
}

async fn provisioned() -> (NatsServer, jetstream::Context) {
    let server = server();
    let js = server.admin_jetstream().await.expect("admin connects");
    contracts::bus::provision_all(&js, 1).await.unwrap();
    (server, js)
}

/// Reads `count` messages, each within 60 s.
async fn read(messages: &mut pull::Ordered, count: usize, what: &str) {
    for n in 0..count {
        tokio::time::timeout(Duration::from_secs(60), messages.next())
            .await
            .unwrap_or_else(|_| panic!("{what} {n} of {count} within 60 s"))
            .unwrap()
            .unwrap();
    }
}

/// Stores the actions as brain, signed with `key`.
async fn backlog(server: &NatsServer, key: &SigningKey, actions: &[Action]) {
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .unwrap();
    for action in actions {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            key.sign(&contracts::to_value(action).unwrap()).as_str(),
        );
        brain.publish_with_headers(action, headers).await.unwrap();
    }
    brain.close().await.unwrap();
}

/// commander drains the backlog: from its start until every outcome is read back.
async fn commander_backlog(actions: &[Action]) -> Duration {
    let (server, js) = provisioned().await;
    let (key, _) = SigningKey::generate(BRAIN_SIGNER);
    backlog(&server, &key, actions).await;
    let mut outcomes = js
        .get_stream("ORION_OUTCOMES")
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig {
            filter_subject: "orion.outcome.v1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .messages()
        .await
        .unwrap();
    let bus = Bus::<Commander>::connect(server.bus_config::<Commander>())
        .await
        .unwrap();
    bus.verify_provisioned().await.unwrap();
    let start = Instant::now();
    let log = ClaimLog::open(bus.jetstream(), ACTIONS_BUCKET)
        .await
        .unwrap();
    let keys = ops_client::signing::SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap();
    let trusted = Verifier::for_signer(BRAIN_SIGNER, [key.public_key_base64().as_str()]).unwrap();
    let service = CommanderService::new(
        bus.clone(),
        log,
        keys,
        trusted,
        Duration::from_secs(30),
        Duration::from_secs(30),
        MAX_IN_FLIGHT,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    read(&mut outcomes, actions.len(), "outcome").await;
    let took = start.elapsed();
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    bus.close().await.unwrap();
    took
}

/// The raw baseline on a server of its own, provisioned like the service's.
async fn raw_backlog(payloads: &[Vec<u8>], replies: &[Vec<u8>], batch: usize) -> Duration {
    let (_server, js) = provisioned().await;
    raw_relay::drain(&js, payloads, replies, batch).await
}

/// Valid fixtures of the sizes commander publishes per action: a notification and an outcome.
fn replies() -> Vec<Vec<u8>> {
    let notification: contracts::Notification = contracts::decode(include_bytes!(
        "../../../fixtures/notification/valid/full.json"
    ))
    .unwrap();
    let outcome: contracts::Outcome = contracts::decode(include_bytes!(
        "../../../fixtures/outcome/valid/succeeded_with_result.json"
    ))
    .unwrap();
    vec![
        contracts::encode(&notification).unwrap(),
        contracts::encode(&outcome).unwrap(),
    ]
}

async fn bench() {
    println!(
        "== commander: a backlog of {BACKLOG} signed send_notification actions ({}, file storage) ==",
        nats_version()
    );
    let replies = replies();
    let batch = MAX_IN_FLIGHT.min(20);
    let actions: Vec<Action> = (0..BACKLOG).map(action).collect();
    let payloads: Vec<Vec<u8>> = actions
        .iter()
        .map(|a| contracts::encode(a).unwrap())
        .collect();
    let raw = BACKLOG as f64 / raw_backlog(&payloads, &replies, batch).await.as_secs_f64();
    println!(
        "{:<64} {raw:>9.0} /s {:>8.1} µs  (baseline; {} B in, {} + {} B out)",
        format!("baseline: raw async-nats, batches of {batch}, 2 out per in"),
        1e6 / raw,
        payloads[0].len(),
        replies[0].len(),
        replies[1].len()
    );
    let ours = BACKLOG as f64 / commander_backlog(&actions).await.as_secs_f64();
    println!(
        "{:<64} {ours:>9.0} /s {:>8.1} µs  {:>6.3}× of baseline",
        "commander: signed send_notification → outcome read back",
        1e6 / ours,
        ours / raw
    );
}

fn nats_version() -> String {
    std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}
