//! brain's sustained rate: a backlog of incident versions through the service in process, next
//! to a raw async-nats baseline doing the minimal equivalent work in the same run.
//!
//! - brain: N distinct open incidents (`service_outage`, one service each) are stored on
//!   `orion.incident.v1` as guardian before brain starts; the clock runs from brain's start
//!   (state bucket opened, interlock read) until every decision is read back from
//!   `ORION_DECISIONS`. Two policies:
//!   - observe (N0): every incident gets a `NO_ACTION` decision and nothing else;
//!   - act (N2, `send_notification` SAFE, the latency benchmark's rule): every incident gets
//!     an `EXECUTE_SAFE_ACTION` decision and a signed action (distinct targets, so no
//!     cooldown applies), with the cooldown recorded in `brain_state`.
//! - baseline: raw async-nats draining the same bytes from a stream in batches of brain's
//!   batch size (10): pull a batch, publish one message per incident (the size of a decision)
//!   with a `Nats-Msg-Id` to a second stream, confirm them, then confirm-ack the batch.
//!
//! Run: `cargo bench -p brain --bench throughput` (needs nats-server on PATH; fails without it).

#[path = "../../../bench/raw_relay.rs"]
mod raw_relay;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use brain::interlock::Armed;
use brain::{Brain, Policy, Settings};
use contracts::bus::Bus;
use contracts::local_server::NatsServer;
use contracts::services::{self, Guardian};
use contracts::signing::{SigningKey, BRAIN_SIGNER};
use contracts::{Incident, Timestamp};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

const BACKLOG: usize = 5_000;
/// brain's `SubscribeOptions { batch }` (service.rs).
const BRAIN_BATCH: usize = 10;
/// The observe case: decisions only.
const OBSERVE: &str = r#"
autonomy_level = "N0"
approval_timeout_s = 300

[[rules]]
name = "notify-on-outage"
incident_types = ["service_outage"]
action = "send_notification"
safety = "SAFE"
parameters = { message = "${tags.service_name} is down", incident_id = "${incident.incident_id}" }
cooldown_s = 1
"#;
/// The act case: tests/config/latency-policy.toml's rule (an outage → a notification action), at
/// N2 (which runs SAFE actions as N3 does; N3 also needs [[admins]] for RISKY ones).
const ACT: &str = r#"
autonomy_level = "N2"
approval_timeout_s = 300

[[rules]]
name = "notify-on-outage"
incident_types = ["service_outage"]
action = "send_notification"
safety = "SAFE"
parameters = { message = "${tags.service_name} is down", incident_id = "${incident.incident_id}" }
cooldown_s = 1
"#;

/// An open `service_outage` incident as guardian emits it (one event, tags of its rule).
fn incident(service: usize) -> Incident {
    let now = Timestamp::now();
    contracts::decode_value(json!({
        "version": "1.0",
        "incident_id": Uuid::new_v4(),
        "timestamp": now.to_string(),
        "source": "orion-guardian",
        "incident_type": "service_outage",
        "severity": "critical",
        "description": format!("svc-{service}: 1 service_down event"),
        "event_ids": [Uuid::new_v4()],
        "correlation_window": {"start": now.to_string(), "end": now.to_string()},
        "state": "open",
        "tags": {"service_name": format!("svc-{service}"), "rule": "service-outage"}
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

async fn backlog(server: &NatsServer, incidents: &[Incident]) {
    let guardian = Bus::<Guardian>::connect(server.bus_config::<Guardian>())
        .await
        .unwrap();
    for result in guardian.publish_all(incidents, 256).await {
        result.unwrap();
    }
    guardian.close().await.unwrap();
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

/// brain drains a backlog under `policy`: from its start until every decision is read back.
async fn brain_backlog(policy: &str, incidents: &[Incident]) -> Duration {
    let (server, js) = provisioned().await;
    backlog(&server, incidents).await;
    let mut decisions = js
        .get_stream("ORION_DECISIONS")
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig {
            filter_subject: "orion.decision.v1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .messages()
        .await
        .unwrap();
    let policy = Policy::parse(policy, "bench policy").unwrap_or_else(|e| panic!("{e}"));
    let bus = Bus::<services::Brain>::connect(server.bus_config::<services::Brain>())
        .await
        .unwrap();
    bus.verify_provisioned().await.unwrap();
    let (signer, _) = SigningKey::generate(BRAIN_SIGNER);
    let start = Instant::now();
    let brain = Brain::start(bus.clone(), policy, signer, Settings::default())
        .await
        .unwrap();
    // The interlock provisioning wrote (armed) is read before any incident counts.
    let mut interlock = brain.interlock().subscribe();
    tokio::time::timeout(
        Duration::from_secs(15),
        interlock.wait_for(|s| matches!(s.armed, Armed::Armed { .. })),
    )
    .await
    .expect("brain reads the armed interlock")
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(brain.run(async {
        let _ = stopped.await;
    }));
    read(&mut decisions, incidents.len(), "decision").await;
    let took = start.elapsed();
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    bus.close().await.unwrap();
    took
}

/// The raw baseline on a server of its own, provisioned like the service's: one `reply` per
/// incident.
async fn raw_backlog(payloads: &[Vec<u8>], reply: &[u8], batch: usize) -> Duration {
    let (_server, js) = provisioned().await;
    raw_relay::drain(&js, payloads, &[reply.to_vec()], batch).await
}

/// A decision of the size brain writes (the payload the baseline publishes per incident): the
/// valid fixture of an N2 SAFE execution.
fn decision_sized() -> Vec<u8> {
    let bytes = include_bytes!("../../../fixtures/decision/valid/execute_safe_action_n2.json");
    let decision: contracts::Decision = contracts::decode(bytes).unwrap();
    contracts::encode(&decision).unwrap()
}

fn report(case: &str, rate: f64, baseline: f64) {
    println!(
        "{case:<64} {rate:>9.0} /s {:>8.1} µs  {:>6.3}× of baseline",
        1e6 / rate,
        rate / baseline
    );
}

async fn bench() {
    println!(
        "== brain: a backlog of {BACKLOG} incident versions ({}, file storage) ==",
        nats_version()
    );
    let reply = decision_sized();
    for (case, policy) in [
        ("observe (N0): one NO_ACTION decision each", OBSERVE),
        (
            "act (N2): decision + signed send_notification action each",
            ACT,
        ),
    ] {
        let incidents: Vec<Incident> = (0..BACKLOG).map(incident).collect();
        let payloads: Vec<Vec<u8>> = incidents
            .iter()
            .map(|i| contracts::encode(i).unwrap())
            .collect();
        let raw = BACKLOG as f64
            / raw_backlog(&payloads, &reply, BRAIN_BATCH)
                .await
                .as_secs_f64();
        println!(
            "{:<64} {raw:>9.0} /s {:>8.1} µs  (baseline; {} B in, {} B out)",
            format!("baseline: raw async-nats, batches of {BRAIN_BATCH}, 1 out per in"),
            1e6 / raw,
            payloads[0].len(),
            reply.len()
        );
        let ours = BACKLOG as f64 / brain_backlog(policy, &incidents).await.as_secs_f64();
        report(&format!("brain, {case}"), ours, raw);
    }
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
