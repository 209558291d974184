//! A real nats-server with the generated permissions, brain running in-process as its own NATS
//! identity, and the other services' identities to feed and watch it.

#![allow(dead_code)]

use std::time::Duration;

use brain::interlock::InterlockState;
use brain::silences::SilenceBook;
use brain::{Brain, Policy, Settings};
use contracts::bus::{Bus, ReadFrom, TypedReader};
use contracts::local_server::NatsServer;
use contracts::services::{self, ApprovalCli, ApprovalTelegram, Commander, Guardian};
use contracts::signing::{SigningKey, Verifier, BRAIN_SIGNER, SIGNATURE_HEADER};
use contracts::*;
use orion_testkit::wait_until;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// How long to wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long to watch for something that should not happen.
pub const QUIET: Duration = Duration::from_millis(1500);

pub fn server() -> NatsServer {
    NatsServer::start_with_auth().expect("start nats-server (install it with `cargo xtask test`)")
}

pub async fn admin_jetstream(server: &NatsServer) -> async_nats::jetstream::Context {
    server.admin_jetstream().await.expect("admin connects")
}

/// A server with every stream and bucket of the inventory (as `cargo xtask up` provisions).
pub async fn provisioned_server() -> NatsServer {
    let server = server();
    contracts::bus::provision_all(&admin_jetstream(&server).await, 1)
        .await
        .expect("provision");
    server
}

pub async fn connect<S: Service>(server: &NatsServer) -> Bus<S> {
    Bus::connect(server.bus_config::<S>())
        .await
        .expect("connect")
}

pub fn settings() -> Settings {
    Settings {
        expiry_check: Duration::from_millis(200),
        rescan: Duration::from_secs(60),
        retry_delay: Duration::from_millis(200),
    }
}

/// brain running in this process; stopped (gracefully) by [`RunningBrain::stop`].
pub struct RunningBrain {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub interlock: watch::Receiver<InterlockState>,
    pub silences: watch::Receiver<SilenceBook>,
    /// The public half of the test key this brain signs its actions with (generated per start).
    pub public_key: String,
}

impl RunningBrain {
    pub async fn start(server: &NatsServer, policy: &str) -> Self {
        let policy = Policy::parse(policy, "test policy").unwrap_or_else(|e| panic!("{e}"));
        let bus = connect::<services::Brain>(server).await;
        bus.verify_provisioned()
            .await
            .expect("what brain uses is provisioned");
        let (signer, _) = SigningKey::generate(BRAIN_SIGNER);
        let public_key = signer.public_key_base64();
        let brain = Brain::start(bus.clone(), policy, signer, settings())
            .await
            .expect("brain starts");
        let interlock = brain.interlock().subscribe();
        let silences = brain.silences().subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            brain
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("brain runs");
            bus.close().await.ok();
        });
        Self {
            stop: Some(stop),
            task: Some(task),
            interlock,
            silences,
            public_key,
        }
    }

    /// What commander would be configured with to trust this brain.
    pub fn verifier(&self) -> Verifier {
        Verifier::for_signer(BRAIN_SIGNER, [self.public_key.as_str()]).unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("brain stops in time")
                .expect("brain's task");
        }
    }

    /// Waits until brain's view of the interlock satisfies `ok`.
    pub async fn wait_interlock(&mut self, ok: impl Fn(&InterlockState) -> bool) {
        tokio::time::timeout(WAIT, self.interlock.wait_for(|s| ok(s)))
            .await
            .expect("brain sees the interlock change")
            .expect("interlock channel open");
    }
}

impl RunningBrain {
    /// Waits until brain's book of silences satisfies `ok`.
    pub async fn wait_silences(&mut self, ok: impl Fn(&SilenceBook) -> bool) {
        tokio::time::timeout(WAIT, self.silences.wait_for(|b| ok(b)))
            .await
            .expect("brain reads the silence")
            .expect("silence channel open");
    }
}

/// An active silence by `admin` from now for `for_s` seconds, matching `criteria`.
pub fn silence(admin: &str, criteria: Value, for_s: i64) -> Silence {
    let now = Timestamp::now();
    contracts::decode_value(json!({
        "version": "1.0",
        "silence_id": Uuid::new_v4(),
        "timestamp": now.to_string(),
        "source": "orion-approval-cli",
        "state": "active",
        "admin_identity": admin,
        "created_by": admin,
        "created_at": now.to_string(),
        "reason": "database migration in test",
        "starts_at": now.to_string(),
        "ends_at": Timestamp(now.0 + time::Duration::seconds(for_s)).to_string(),
        "match": criteria
    }))
    .unwrap()
}

/// The lift of `silence` by `admin`.
pub fn lift(silence: &Silence, admin: &str) -> Silence {
    let mut value = contracts::to_value(silence).unwrap();
    let now = Timestamp::now().to_string();
    value["state"] = json!("lifted");
    value["admin_identity"] = json!(admin);
    value["timestamp"] = json!(now);
    value["lifted_at"] = json!(now);
    value["lift_reason"] = json!("done early in test");
    contracts::decode_value(value).unwrap()
}

/// Publishes `silence` as approval-cli with `signature` in the Orion-Signature header (none:
/// unsigned).
pub async fn publish_silence(server: &NatsServer, silence: &Silence, signature: Option<String>) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(signature) = signature {
        headers.insert(SIGNATURE_HEADER, signature.as_str());
    }
    connect::<ApprovalCli>(server)
        .await
        .publish_with_headers(silence, headers)
        .await
        .expect("approval-cli publishes");
}

/// Publishes `silence` as approval-cli, signed by `key`.
pub async fn publish_signed_silence(server: &NatsServer, silence: &Silence, key: &SigningKey) {
    let signature = key.sign(&contracts::to_value(silence).unwrap());
    publish_silence(server, silence, Some(signature)).await;
}

/// What approval-cli sees of brain's output.
pub struct Observer {
    pub decisions: TypedReader<Decision>,
    pub actions: TypedReader<Action>,
    pub requests: TypedReader<ApprovalRequest>,
}

impl Observer {
    pub async fn new(server: &NatsServer) -> Self {
        let cli = connect::<ApprovalCli>(server).await;
        Self {
            decisions: cli.read(ReadFrom::Start).await.unwrap(),
            actions: cli.read(ReadFrom::Start).await.unwrap(),
            requests: cli.read(ReadFrom::Start).await.unwrap(),
        }
    }

    pub async fn decision(&mut self) -> Decision {
        next(&mut self.decisions, WAIT).await.expect("a decision")
    }

    /// The next decision, which must be of `kind` with reasoning that contains `why`.
    pub async fn decision_of(&mut self, kind: &str, why: &str) -> Decision {
        let decision = self.decision().await;
        let reasoning = reasoning(&decision);
        assert_eq!(decision.decision_type.to_string(), kind, "{reasoning}");
        assert!(reasoning.contains(why), "expected {why:?} in: {reasoning}");
        decision
    }

    pub async fn action(&mut self) -> Action {
        next(&mut self.actions, WAIT).await.expect("an action")
    }

    pub async fn request(&mut self) -> ApprovalRequest {
        next(&mut self.requests, WAIT)
            .await
            .expect("an approval request")
    }

    /// Nothing more for a while on any of the three.
    pub async fn quiet(&mut self) {
        let (d, a, r) = tokio::join!(
            next(&mut self.decisions, QUIET),
            next(&mut self.actions, QUIET),
            next(&mut self.requests, QUIET)
        );
        assert!(d.is_none(), "unexpected decision: {d:?}");
        assert!(a.is_none(), "unexpected action: {a:?}");
        assert!(r.is_none(), "unexpected approval request: {r:?}");
    }

    pub async fn no_action(&mut self) {
        let a = next(&mut self.actions, QUIET).await;
        assert!(a.is_none(), "unexpected action: {a:?}");
    }
}

/// The next message within `wait`.
pub async fn next<T: Contract>(reader: &mut TypedReader<T>, wait: Duration) -> Option<T> {
    match tokio::time::timeout(wait, reader.next()).await {
        Ok(Some(read)) => Some(read.expect("a valid message").0),
        Ok(None) => panic!("reader ended"),
        Err(_) => None,
    }
}

/// An open incident as guardian emits it.
pub fn incident(incident_type: &str, severity: &str, tags: &[(&str, &str)]) -> Incident {
    let tags: serde_json::Map<String, Value> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let now = Timestamp::now();
    contracts::decode_value(json!({
        "version": "1.0",
        "incident_id": Uuid::new_v4(),
        "timestamp": now.to_string(),
        "source": "orion-guardian",
        "incident_type": incident_type,
        "severity": severity,
        "event_ids": [Uuid::new_v4()],
        "correlation_window": {"start": now.to_string(), "end": now.to_string()},
        "state": "open",
        "tags": tags
    }))
    .unwrap()
}

/// The next version of `incident` (it grew by one event).
pub fn grown(incident: &Incident) -> Incident {
    let mut next = incident.clone();
    next.event_ids.push(Uuid::new_v4());
    next.timestamp = Timestamp(incident.timestamp.0 + time::Duration::milliseconds(500));
    next
}

pub async fn publish_incident(server: &NatsServer, incident: &Incident) {
    connect::<Guardian>(server)
        .await
        .publish(incident)
        .await
        .expect("guardian publishes");
}

/// An approval decision for `request`, as approval-cli builds it.
pub fn approval(request: &ApprovalRequest, verdict: &str, admin: &str) -> ApprovalDecision {
    let now = Timestamp::now();
    contracts::decode_value(json!({
        "version": "1.0",
        "approval_id": Uuid::new_v4(),
        "timestamp": now.to_string(),
        "source": "orion-approval-cli",
        "approval_request_id": request.approval_request_id,
        "decision_id": request.decision_id,
        "decision": verdict,
        "admin_identity": admin,
        "reason": format!("{verdict} in test"),
        "issued_at": now.to_string(),
        "expires_at": Timestamp(now.0 + time::Duration::minutes(10)).to_string(),
    }))
    .unwrap()
}

/// Publishes `decision` as approval-cli, signed by `key`.
pub async fn publish_signed(server: &NatsServer, decision: &ApprovalDecision, key: &SigningKey) {
    let value = contracts::to_value(decision).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, key.sign(&value).as_str());
    connect::<ApprovalCli>(server)
        .await
        .publish_with_headers(decision, headers)
        .await
        .expect("approval-cli publishes");
}

pub async fn publish_legacy(server: &NatsServer, decision_id: Uuid) {
    let approval: Approval = contracts::decode_value(json!({
        "version": "1.0",
        "approval_id": Uuid::new_v4(),
        "timestamp": Timestamp::now().to_string(),
        "source": "orion-approval-telegram",
        "decision_id": decision_id,
        "status": "approved",
        "approved_by": "telegram-bob"
    }))
    .unwrap();
    connect::<ApprovalTelegram>(server)
        .await
        .publish(&approval)
        .await
        .expect("the telegram identity publishes");
}

pub async fn publish_outcome(server: &NatsServer, action_id: Uuid, status: &str) {
    let mut value = json!({
        "version": "1.0",
        "outcome_id": Uuid::new_v4(),
        "timestamp": Timestamp::now().to_string(),
        "source": "orion-commander",
        "action_id": action_id,
        "status": status,
        "execution_time_ms": 40
    });
    if status == "failed" {
        value["error"] = json!({"code": "container_exited", "message": "exited with 1"});
    }
    let outcome: Outcome = contracts::decode_value(value).unwrap();
    connect::<Commander>(server)
        .await
        .publish(&outcome)
        .await
        .expect("commander publishes");
}

/// Writes the interlock as ops-worker does (the admin user stands in for ops-worker).
pub async fn write_interlock(server: &NatsServer, key: &str, value: Value) {
    let kv = admin_jetstream(server)
        .await
        .get_key_value("ops_interlock")
        .await
        .unwrap();
    kv.put(key, serde_json::to_vec(&value).unwrap().into())
        .await
        .unwrap();
}

/// Deletes an interlock key as an operator (or an attacker with admin rights) could.
pub async fn delete_interlock(server: &NatsServer, key: &str) {
    let kv = admin_jetstream(server)
        .await
        .get_key_value("ops_interlock")
        .await
        .unwrap();
    kv.delete(key).await.unwrap();
}

/// A policy at `level` with the given admins; rules: restart_service SAFE on service_outage,
/// scale_service RISKY on metric_anomaly; `extra` is appended.
pub fn policy(level: &str, admins: &[&SigningKey], timeout_s: u64, extra: &str) -> String {
    let mut text = format!("autonomy_level = \"{level}\"\napproval_timeout_s = {timeout_s}\n");
    for admin in admins {
        text.push_str(&format!(
            "[[admins]]\nidentity = \"{}\"\npublic_key = \"{}\"\n",
            admin.identity(),
            admin.public_key_base64()
        ));
    }
    text.push_str(
        r#"
[[rules]]
name = "restart-crashed-service"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "${tags.service_name}" }
cooldown_s = 300

[[rules]]
name = "scale-on-anomaly"
incident_types = ["metric_anomaly"]
action = "scale_service"
safety = "RISKY"
parameters = { service_name = "${tags.service_name}", replicas = 3 }
cooldown_s = 300
"#,
    );
    text.push_str(extra);
    text
}

/// brain's record of a request in `brain_state` (read as admin).
pub async fn stored_request(server: &NatsServer, id: Uuid) -> Option<Value> {
    let kv = admin_jetstream(server)
        .await
        .get_key_value("brain_state")
        .await
        .unwrap();
    kv.get(format!("request.{id}"))
        .await
        .unwrap()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

pub fn reasoning(decision: &Decision) -> String {
    decision.reasoning.to_string()
}

/// Timestamps outside the supported range (after their offset is applied): decode refuses them.
pub const EDGE_OF_TIME: &[&str] = &[
    "9999-12-31T23:59:59-00:01",
    "0000-01-01T00:00:00+00:01",
    "1969-12-31T23:59:59Z",
    "9999-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
];

/// Stores `message` on `subject` as it is, as the admin (bypassing every check of the bus).
pub async fn publish_raw(server: &NatsServer, subject: &str, message: &Value) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    admin_jetstream(server)
        .await
        .publish_with_headers(
            subject.to_string(),
            headers,
            serde_json::to_vec(message).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The next `count` dead letters, as approval-cli reads them.
pub async fn dead_letters(server: &NatsServer, count: usize) -> Vec<DeadLetter> {
    let cli = connect::<ApprovalCli>(server).await;
    let mut reader = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    let mut letters = Vec::new();
    while letters.len() < count {
        match next(&mut reader, WAIT).await {
            Some(letter) => letters.push(letter),
            None => panic!(
                "only {} of {count} dead letters: {letters:#?}",
                letters.len()
            ),
        }
    }
    letters
}

/// Waits until the durable consumer of `subject` of `service` has nothing pending or unacked.
pub async fn wait_consumer_drained(server: &NatsServer, service: &str, subject: &str) {
    let declared = contracts::DURABLE_CONSUMERS
        .iter()
        .find(|c| c.service == service && c.filter_subject == subject)
        .unwrap();
    let js = admin_jetstream(server).await;
    let info = || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream(declared.name, declared.stream)
            .await
            .unwrap();
        consumer.info().await.unwrap().clone()
    };
    let what = format!("{} drained", declared.name);
    let drained = wait_until(&what, WAIT, || async {
        let info = info().await;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    if let Err(e) = drained {
        let info = info().await;
        panic!(
            "{e}: {} pending, {} unacked",
            info.num_pending, info.num_ack_pending
        );
    }
}

/// Another brain instance records an action of `action_type` on `target` at `at` in
/// `brain_state`, as its own decision would (unconditionally).
pub async fn another_instance_acts(
    server: &NatsServer,
    action_type: &str,
    target: &str,
    at: Timestamp,
) {
    use brain::limits::ActionMark;
    use brain::policy::LimitKey;
    use brain::state::{Expect, Mutation, StateStore};
    let other = StateStore::open(&connect::<services::Brain>(server).await)
        .await
        .expect("a second instance opens brain_state");
    let action = Mutation::RecordAction {
        key: LimitKey {
            action_type: action_type.into(),
            target: target.into(),
        },
        mark: ActionMark {
            action_id: Uuid::new_v4(),
            at,
            incident_id: Uuid::new_v4(),
            approval_id: None,
        },
        answers_request: None,
        expect: Expect::Any,
    };
    other
        .apply(&action, true, None)
        .await
        .expect("the other instance records its action");
}
