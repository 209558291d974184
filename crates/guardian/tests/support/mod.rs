//! The guardian binary as a separate process against a real `nats-server` with the generated
//! permissions, a producer of events, and a reader of every incident version published.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use contracts::bus::Bus;
use contracts::incident_acknowledgement_v1::{
    IncidentAcknowledgementSource, IncidentAcknowledgementVersion,
};
use contracts::local_server::NatsServer;
use contracts::services::{Commander, EventSource, Guardian};
use contracts::{Event, Incident, IncidentAcknowledgement, Timestamp};
use futures::StreamExt;
use orion_testkit::{wait_for, wait_until};
use serde_json::{json, Value};
use uuid::Uuid;

/// Rules for the tests: the shipped outage and metric rules, and a quickly resolving one.
pub const TEST_CONFIG: &str = r#"
[consumer]
tick_ms = 100
retry_delay_ms = 200

[lease]
ttl_s = 2

[[rules]]
name = "service-outage"
group_by = ["data.service_name"]
window_s = 60
threshold = 1
incident_type = "service_outage"
resolve_on = ["service_up"]
[rules.match]
event_type = ["service_down"]

[[rules]]
name = "metric-anomaly"
group_by = ["data.service_name", "data.metric"]
window_s = 60
threshold = 3
incident_type = "metric_anomaly"
[rules.match]
event_type = ["metric_threshold_exceeded"]

[[rules]]
name = "edge-device-failure"
group_by = ["data.device_id"]
window_s = 60
threshold = 1
incident_type = "edge_device_failure"
resolve_on = ["edge_device_online"]
resolve_after_s = 1
[rules.match]
event_type = ["edge_device_offline"]
"#;

pub async fn admin(server: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap()
}

pub async fn admin_jetstream(server: &NatsServer) -> jetstream::Context {
    jetstream::new(admin(server).await)
}

/// A server with auth, everything in the inventory provisioned by the admin.
pub async fn provisioned_server() -> NatsServer {
    let server =
        NatsServer::start_with_auth().expect("start nats-server (`cargo xtask test` installs it)");
    contracts::bus::provision_all(&admin_jetstream(&server).await, 1)
        .await
        .expect("provision");
    server
}

/// A running `guardian run`; killed when dropped.
pub struct GuardianProcess {
    child: Option<Child>,
    pub log: PathBuf,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl GuardianProcess {
    /// Starts guardian with `config` (TOML text) and waits until it consumes.
    pub async fn start(server: &NatsServer, config: &str) -> Self {
        let mut process = Self::spawn(server, config);
        process.wait_ready(server).await;
        process
    }

    /// Starts guardian with `config` next to running ones, without waiting for anything.
    pub fn start_another(server: &NatsServer, config: &str) -> Self {
        Self::spawn(server, config)
    }

    /// Waits up to 30 s until this instance has joined the others: it holds a member slot, or
    /// (all slots taken) watches a lease it may take over.
    pub async fn wait_joined(&self) {
        wait_for("guardian joined", Duration::from_secs(30), || {
            let log = self.log_text();
            log.contains("holding a member slot") || log.contains("standby:")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; its log:\n{}", self.log_text()));
    }

    /// The partitions this instance holds now, as its log tells (taken minus handed back).
    pub fn partitions_held(&self) -> usize {
        let log = self.log_text();
        let taken = log.matches("holding the lease").count();
        let given = log.matches("partition handed back").count();
        taken.saturating_sub(given)
    }

    /// Waits up to 30 s until this instance holds `count` partitions (and has for a moment).
    pub async fn wait_holding(&self, count: usize) {
        let what = format!("guardian holding {count} partitions");
        wait_for(&what, Duration::from_secs(30), || {
            self.partitions_held() == count
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}: it holds {}; its log:\n{}",
                self.partitions_held(),
                self.log_text()
            )
        });
    }

    fn spawn(server: &NatsServer, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guardian.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("guardian.log");
        let mut process = Self {
            child: None,
            log,
            config: path,
            _dir: dir,
        };
        process.launch(server);
        process
    }

    fn launch(&mut self, server: &NatsServer) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ORION_NATS_URL", server.url())
            .env(
                "ORION_NATS_PASSWORD",
                server.password("guardian").expect("server with auth"),
            )
            .env("RUST_LOG", "info,guardian=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the guardian binary");
        self.child = Some(child);
    }

    /// Waits until this guardian consumes (its micro endpoints answer).
    pub async fn wait_ready(&mut self, server: &NatsServer) {
        let admin = &admin(server).await;
        // Two durables per partition, each with its status endpoint.
        let all = 2 * <Guardian as contracts::Service>::PARTITIONS as usize;
        let consuming = wait_until("guardian consuming", Duration::from_secs(15), || {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "guardian exited with {status} at start; its log:\n{}",
                    self.log_text()
                );
            }
            async move {
                let reply = admin.request("$SRV.STATS.guardian", "".into()).await.ok()?;
                let stats: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
                stats["endpoints"]
                    .as_array()
                    .is_some_and(|e| e.len() >= all)
                    .then_some(())
            }
        })
        .await;
        consuming.unwrap_or_else(|e| panic!("{e}; its log:\n{}", self.log_text()));
    }

    /// Starts the same configuration again after a stop.
    pub async fn restart(&mut self, server: &NatsServer) {
        assert!(self.child.is_none(), "stop it first");
        self.launch(server);
        self.wait_ready(server).await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, nothing finished.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for the process to exit on its own; its exit code.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = wait_until("guardian exited", limit, || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await
        .ok()?;
        self.child = None;
        status.code()
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().ok()?.code()
    }
}

impl Drop for GuardianProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Publishes events as the `event-source` identity.
pub struct Producer {
    bus: Bus<EventSource>,
    js: jetstream::Context,
}

impl Producer {
    pub async fn connect(server: &NatsServer) -> Self {
        Self {
            bus: Bus::connect(server.bus_config::<EventSource>())
                .await
                .unwrap(),
            js: admin_jetstream(server).await,
        }
    }

    pub async fn publish(&self, event: &Event) {
        self.bus.publish(event).await.unwrap();
    }

    /// Stores `copies` copies of `event`, each under its own message id, so that the server's
    /// duplicate window does not drop them: guardian must.
    pub async fn publish_copies(&self, event: &Event, copies: usize) {
        let bytes = contracts::encode(event).unwrap();
        for n in 0..copies {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("copy-{n}-{}", event.event_id).as_str(),
            );
            self.js
                .publish_with_headers("orion.event.v1", headers, bytes.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
}

/// Publishes acknowledgements as commander.
pub async fn acknowledge(server: &NatsServer, incident_id: Uuid) -> IncidentAcknowledgement {
    let bus = Bus::<Commander>::connect(server.bus_config::<Commander>())
        .await
        .unwrap();
    let ack = IncidentAcknowledgement {
        version: IncidentAcknowledgementVersion::X10,
        acknowledgement_id: Uuid::new_v4(),
        timestamp: Timestamp::now(),
        source: IncidentAcknowledgementSource::OrionCommander,
        incident_id,
        action_id: Some(Uuid::new_v4()),
        acknowledged_by: "orion-commander".parse().unwrap(),
        note: Some("acknowledge_incident action".into()),
        tags: Default::default(),
    };
    bus.publish(&ack).await.unwrap();
    ack
}

/// An event issued `offset_ms` after now.
pub fn event(event_type: &str, severity: &str, data: Value) -> Event {
    contracts::decode_value(json!({
        "version": "1.0",
        "event_id": Uuid::new_v4(),
        "timestamp": Timestamp::now(),
        "source": "orion-watcher",
        "event_type": event_type,
        "severity": severity,
        "data": data,
    }))
    .unwrap()
}

pub fn service_down(service: &str) -> Event {
    event("service_down", "critical", json!({"service_name": service}))
}

pub fn service_up(service: &str) -> Event {
    event("service_up", "info", json!({"service_name": service}))
}

pub fn metric(service: &str) -> Event {
    event(
        "metric_threshold_exceeded",
        "warning",
        json!({"service_name": service, "metric": "cpu_percent", "value": 97.5, "threshold": 90}),
    )
}

/// Every incident version on the bus, in order, from the start of the stream.
pub struct Incidents {
    messages: pull::Ordered,
}

impl Incidents {
    pub async fn open(server: &NatsServer) -> Self {
        let js = admin_jetstream(server).await;
        let consumer = js
            .get_stream("ORION_INCIDENTS")
            .await
            .unwrap()
            .create_consumer(pull::OrderedConfig {
                filter_subject: "orion.incident.v1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        Self {
            messages: consumer.messages().await.unwrap(),
        }
    }

    /// The next version within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Incident> {
        match tokio::time::timeout(wait, self.messages.next()).await {
            Ok(Some(Ok(message))) => {
                Some(contracts::decode::<Incident>(&message.payload).expect("a valid incident"))
            }
            Ok(Some(Err(e))) => panic!("reading incidents: {e}"),
            Ok(None) => panic!("the incident stream ended"),
            Err(_) => None,
        }
    }

    /// The next version, which must come within 10 s.
    pub async fn next(&mut self, guardian: &GuardianProcess) -> Incident {
        match self.next_within(Duration::from_secs(10)).await {
            Some(incident) => incident,
            None => panic!(
                "no incident version within 10 s; guardian's log:\n{}",
                guardian.log_text()
            ),
        }
    }

    /// Asserts that nothing more is published for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Some(extra) = self.next_within(quiet).await {
            panic!("an unexpected incident version: {extra:#?}");
        }
    }
}

/// Waits until guardian has settled every event published so far, in every partition.
pub async fn wait_until_events_settled(server: &NatsServer, guardian: &GuardianProcess) {
    let js = admin_jetstream(server).await;
    let stream = js.get_stream("ORION_EVENTS").await.unwrap();
    let durables: Vec<&str> = contracts::DURABLE_CONSUMERS
        .iter()
        .filter(|c| c.service == "guardian" && c.contract == "event")
        .map(|c| c.name)
        .collect();
    wait_until(
        "guardian settled the events",
        Duration::from_secs(60),
        || async {
            for name in &durables {
                let mut consumer: jetstream::consumer::Consumer<pull::Config> =
                    stream.get_consumer(name).await.unwrap();
                let info = consumer.info().await.unwrap();
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", guardian.log_text()));
}

/// The keys of `guardian_state` that hold a value, every partition's, each without its
/// partition's prefix (`p1.group.…` → `group.…`), sorted.
pub async fn live_state_keys(server: &NatsServer) -> Vec<String> {
    let bus = contracts::bus::Bus::<Guardian>::connect(server.bus_config::<Guardian>())
        .await
        .expect("guardian connects");
    let mut keys = Vec::new();
    for partition in guardian::partition::Partition::all() {
        let store = guardian::store::StateStore::open(&bus, partition)
            .await
            .unwrap();
        keys.extend(store.live_keys().await.unwrap());
    }
    let records = bus
        .records::<contracts::buckets::GuardianState>()
        .await
        .unwrap();
    let members = records
        .latest("member.>", Duration::from_secs(10))
        .await
        .unwrap();
    keys.extend(
        members
            .into_iter()
            .filter(|e| e.value.is_some())
            .map(|e| e.key),
    );
    keys.sort();
    keys
}

/// The lease key of partition `index`.
pub fn lease_key(index: u32) -> String {
    guardian::partition::Partition::all()
        .nth(index as usize)
        .expect("guardian has that partition")
        .lease_key()
}

/// How many messages the state bucket's stream holds: one per live key when deleted keys leave
/// no marker behind.
pub async fn state_stream_messages(server: &NatsServer) -> u64 {
    let js = admin_jetstream(server).await;
    let mut stream = js.get_stream("KV_guardian_state").await.unwrap();
    stream.info().await.unwrap().state.messages
}

pub fn ids(incident: &Incident) -> Vec<Uuid> {
    incident.event_ids.clone()
}

pub fn tag<'a>(incident: &'a Incident, name: &str) -> &'a str {
    incident.tags.get(name).map(String::as_str).unwrap_or("")
}

/// Timestamps outside the supported range (after their offset is applied): decode refuses them.
pub const EDGE_OF_TIME: &[&str] = &[
    "9999-12-31T23:59:59-00:01",
    "0000-01-01T00:00:00+00:01",
    "1969-12-31T23:59:59Z",
    "9999-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
];

/// Stores `message` on `subject` as it is, bypassing every check of the bus (the admin may
/// publish anywhere): what a broken or hostile producer could send.
pub async fn publish_raw(server: &NatsServer, subject: &str, message: &Value) {
    let js = admin_jetstream(server).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    js.publish_with_headers(
        subject.to_string(),
        headers,
        serde_json::to_vec(message).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// `message` as JSON with its `timestamp` replaced.
pub fn with_timestamp<T: serde::Serialize>(message: &T, timestamp: &str) -> Value {
    let mut value = serde_json::to_value(message).unwrap();
    value["timestamp"] = json!(timestamp);
    value
}

/// The first `count` dead letters, read as approval-cli reads them; panics if fewer come in 10 s.
pub async fn dead_letters(server: &NatsServer, count: usize) -> Vec<contracts::DeadLetter> {
    let cli = Bus::<contracts::services::ApprovalCli>::connect(
        server.bus_config::<contracts::services::ApprovalCli>(),
    )
    .await
    .unwrap();
    let mut reader = cli
        .read::<contracts::DeadLetter>(contracts::bus::ReadFrom::Start)
        .await
        .unwrap();
    let mut letters = Vec::new();
    while letters.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
            Ok(Some(Ok((letter, _)))) => letters.push(letter),
            Ok(other) => panic!("reading dead letters: {:?}", other.map(|r| r.err())),
            Err(_) => panic!(
                "only {} of {count} dead letters: {letters:#?}",
                letters.len()
            ),
        }
    }
    letters
}

/// Asserts that `letter` is the refusal of a timestamp outside the supported range at `path`.
pub fn assert_out_of_range(letter: &contracts::DeadLetter, path: &str) {
    assert_eq!(
        letter.reason.code,
        contracts::generated::dead_letter_v1::DeadLetterReasonCode::SchemaViolation,
        "{letter:#?}"
    );
    assert_eq!(
        letter.reason.instance_path.as_deref(),
        Some(path),
        "{letter:#?}"
    );
    assert_eq!(
        letter.reason.rule.as_deref(),
        Some("date_time_range"),
        "{letter:#?}"
    );
}
