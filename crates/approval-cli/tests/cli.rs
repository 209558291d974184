//! The `approval-cli` binary against a real `nats-server` with the generated permissions: the
//! upstream messages are published by their own identities (guardian, brain, commander, …) and
//! the binary runs as `approval-cli`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use approval_cli::records::{decode_all, Record};
use approval_cli::render::format_time;
use async_nats::jetstream;
use base64::Engine;
use contracts::bus::Bus;
use contracts::local_server::NatsServer;
use contracts::services::*;
use contracts::signing::{SignatureError, SigningKey, Verifier, APPROVAL_SIGNER_FIELD};
use contracts::*;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Harness

struct Platform {
    server: NatsServer,
    admin: jetstream::Context,
    source: Bus<EventSource>,
    guardian: Bus<Guardian>,
    brain: Bus<Brain>,
    commander: Bus<Commander>,
    worker: Bus<OpsWorker>,
    cli: Bus<ApprovalCli>,
}

impl Platform {
    async fn start() -> Self {
        let server = NatsServer::start_with_auth()
            .expect("start nats-server (install it with `cargo xtask test`)");
        let admin_client = async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), server.password("admin").unwrap().into())
            .connect(server.url())
            .await
            .unwrap();
        let admin = jetstream::new(admin_client);
        contracts::bus::provision_all(&admin, 1)
            .await
            .expect("provision");
        Self {
            source: connect(&server).await,
            guardian: connect(&server).await,
            brain: connect(&server).await,
            commander: connect(&server).await,
            worker: connect(&server).await,
            cli: connect(&server).await,
            admin,
            server,
        }
    }

    /// Publishes `message` as the identity that produces it on the real platform.
    async fn publish(&self, message: &Message) {
        let published = match message {
            Message::Event(m) => self.source.publish(m).await,
            Message::Incident(m) => self.guardian.publish(m).await,
            Message::Decision(m) => self.brain.publish(m).await,
            Message::Action(m) => self.brain.publish(m).await,
            Message::ApprovalRequest(m) => self.brain.publish(m).await,
            Message::ApprovalDecision(m) => self.cli.publish(m).await,
            Message::OpsCommand(m) => self.commander.publish(m).await,
            Message::OpsReceipt(m) => self.worker.publish(m).await,
            Message::Outcome(m) => self.commander.publish(m).await,
            Message::Notification(m) => self.commander.publish(m).await,
            Message::IncidentAcknowledgement(m) => self.commander.publish(m).await,
            Message::DeadLetter(m) => self.brain.publish(m).await,
            Message::Silence(m) => self.cli.publish(m).await,
            Message::Approval(_) => panic!("no identity here publishes legacy approvals"),
        };
        published.unwrap_or_else(|e| panic!("publish {}: {e}", message.info().name));
    }

    async fn publish_all(&self, messages: &[Message]) {
        for message in messages {
            self.publish(message).await;
        }
    }

    /// The binary, connecting as approval-cli, with nothing inherited that could change it.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        cli_command(
            args,
            &self.server.url(),
            self.server.password("approval-cli"),
        )
    }

    async fn run(&self, args: &[&str]) -> Run {
        run_command(self.command(args)).await
    }

    /// Every decodable message stored on `T`'s subject, read as approval-cli reads it.
    async fn stored<T: Contract>(&self) -> Vec<Record>
    where
        ApprovalCli: contracts::Reads<T>,
    {
        let bus = connect::<ApprovalCli>(&self.server).await;
        let raw = approval_cli::streams::read_subject::<T>(&bus)
            .await
            .unwrap();
        let decoded = decode_all(raw);
        assert!(decoded.skipped.is_empty(), "{:?}", decoded.skipped);
        decoded.records
    }

    async fn approval_decisions(&self) -> Vec<Record> {
        self.stored::<ApprovalDecision>().await
    }
}

async fn connect<S: Service>(server: &NatsServer) -> Bus<S> {
    Bus::connect(server.bus_config::<S>())
        .await
        .expect("connect")
}

fn cli_command(args: &[&str], url: &str, password: Option<&str>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_approval-cli"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("USER", "test-operator")
        .env("ORION_NATS_URL", url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(password) = password {
        command.env("ORION_NATS_PASSWORD", password);
    }
    command
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

async fn run_command(mut command: tokio::process::Command) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("approval-cli finished within 60 s")
        .expect("run approval-cli");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

fn ts(time: OffsetDateTime) -> String {
    format_time(time)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn message<T: Contract>(value: Value) -> T {
    decode_value(value).unwrap_or_else(|e| panic!("{}: {e}", T::INFO.name))
}

fn event(id: Uuid, at: OffsetDateTime, text: &str) -> Message {
    Message::Event(message(json!({
        "version": "1.0", "event_id": id, "timestamp": ts(at), "source": "orion-monitor",
        "event_type": "service_down", "severity": "critical",
        "data": {"service_name": "web", "message": text},
    })))
}

fn incident(
    id: Uuid,
    at: OffsetDateTime,
    events: &[Uuid],
    start: OffsetDateTime,
    state: &str,
) -> Message {
    Message::Incident(message(json!({
        "version": "1.0", "incident_id": id, "timestamp": ts(at), "source": "orion-guardian",
        "incident_type": "service_outage", "severity": "critical", "event_ids": events,
        "correlation_window": {"start": ts(start), "end": ts(at)}, "state": state,
        "description": format!("web is down ({} events)", events.len()),
    })))
}

fn decision(id: Uuid, incident: Uuid, at: OffsetDateTime, kind: &str) -> Message {
    Message::Decision(message(json!({
        "version": "1.0", "decision_id": id, "timestamp": ts(at), "source": "orion-brain",
        "incident_id": incident, "decision_type": kind, "safety_classification": "RISKY",
        "requires_approval": kind == "REQUEST_APPROVAL", "autonomy_level": "N3",
        "reasoning": "web is down; restarting it is RISKY under the policy",
        "proposed_action": {"action_type": "restart_service", "parameters": {"service_name": "web"}},
    })))
}

fn request(
    id: Uuid,
    decision: Uuid,
    incident: Option<Uuid>,
    at: OffsetDateTime,
    expires: OffsetDateTime,
) -> Message {
    let mut value = json!({
        "version": "1.0", "approval_request_id": id, "timestamp": ts(at), "source": "orion-brain",
        "decision_id": decision, "action_type": "restart_service", "risk_level": "RISKY",
        "requested_action": {
            "action_type": "restart_service", "parameters": {"service_name": "web"},
            "reasoning": "web is down; restarting it is RISKY under the policy",
        },
        "expires_at": ts(expires),
    });
    if let Some(incident) = incident {
        value["incident_id"] = json!(incident);
    }
    Message::ApprovalRequest(message(value))
}

fn approval(id: Uuid, request: Uuid, decision: Uuid, at: OffsetDateTime, verdict: &str) -> Message {
    Message::ApprovalDecision(message(json!({
        "version": "1.0", "approval_id": id, "timestamp": ts(at), "source": "orion-approval-cli",
        "approval_request_id": request, "decision_id": decision, "decision": verdict,
        "admin_identity": "alice", "reason": "checked the dashboards", "issued_at": ts(at),
        "expires_at": ts(at + secs(300)),
    })))
}

fn action(id: Uuid, decision: Uuid, approval: Option<Uuid>, at: OffsetDateTime) -> Message {
    let mut value = json!({
        "version": "1.0", "action_id": id, "timestamp": ts(at), "source": "orion-brain",
        "decision_id": decision, "action_type": "restart_service", "safety_classification": "RISKY",
        "state": "pending", "parameters": {"service_name": "web", "timeout_s": 30},
    });
    if let Some(approval) = approval {
        value["approval_id"] = json!(approval);
    }
    Message::Action(message(value))
}

fn ops_command(id: Uuid, action: Uuid, at: OffsetDateTime) -> Message {
    Message::OpsCommand(message(json!({
        "v": 1, "id": id, "ts": ts(at), "type": "restart", "target": "web",
        "params": {"timeout_s": 30},
        "meta": {
            "initiator_id": "orion-commander",
            "reason": format!("orion action {action}: restart_service web"),
            "signature": "0123456789abcdef".repeat(4),
        },
    })))
}

fn receipt(id: Uuid, command: Uuid, at: OffsetDateTime, status: &str) -> Message {
    let mut value = json!({
        "v": 1, "id": id, "command_id": command, "ts": ts(at), "type": "restart", "status": status,
        "meta": {"executor_id": "ops-host-1", "duration_ms": 1250},
    });
    if status == "success" {
        value["result"] = json!({"restarted": ["web-1"]});
    }
    Message::OpsReceipt(message(value))
}

fn outcome(id: Uuid, action: Uuid, at: OffsetDateTime) -> Message {
    Message::Outcome(message(json!({
        "version": "1.0", "outcome_id": id, "timestamp": ts(at), "source": "orion-commander",
        "action_id": action, "status": "succeeded", "execution_time_ms": 1310,
        "result": {"restarted": ["web-1"]},
    })))
}

fn notification(id: Uuid, incident: Option<Uuid>, at: OffsetDateTime, text: &str) -> Message {
    let mut value = json!({
        "version": "1.0", "notification_id": id, "timestamp": ts(at), "source": "orion-commander",
        "severity": "warning", "message": text, "channel": "ops",
    });
    if let Some(incident) = incident {
        value["incident_id"] = json!(incident);
    }
    Message::Notification(message(value))
}

fn dead_letter(id: Uuid, at: OffsetDateTime, rejected: &Value) -> Message {
    let payload = base64::engine::general_purpose::STANDARD.encode(rejected.to_string());
    Message::DeadLetter(message(json!({
        "version": "1.0", "dead_letter_id": id, "timestamp": ts(at), "service": "brain",
        "subject": "orion.approval_decision.v1",
        "reason": {"code": "bad_signature", "message": "the signature does not match administrator `mallory`'s key"},
        "payload_base64": payload,
    })))
}

fn wire(message: &Message) -> Value {
    serde_json::from_slice(&message.encode().unwrap()).unwrap()
}

fn id_of(message: &Message) -> String {
    approval_cli::render::summarize(message).id
}

/// A pending request (and the REQUEST_APPROVAL decision behind it) expiring `expires_in` from
/// now (negative: already expired).
fn pending_request(expires_in: time::Duration) -> (Uuid, Uuid, Vec<Message>) {
    let (incident_id, decision_id, request_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let at = now() - secs(30);
    (
        request_id,
        decision_id,
        vec![
            decision(decision_id, incident_id, at, "REQUEST_APPROVAL"),
            request(
                request_id,
                decision_id,
                Some(incident_id),
                at,
                now() + expires_in,
            ),
        ],
    )
}

async fn keygen(platform: &Platform, dir: &Path, identity: &str) -> (PathBuf, SigningKey) {
    let path = dir.join(format!("{identity}.key"));
    platform
        .run(&[
            "keygen",
            "--identity",
            identity,
            "--out",
            path.to_str().unwrap(),
        ])
        .await
        .expect(0);
    let text = std::fs::read_to_string(&path).unwrap();
    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap();
    (
        path.clone(),
        SigningKey::from_pkcs8(identity, &pkcs8).unwrap(),
    )
}

fn keyring(identity: &str, key: &SigningKey) -> Verifier {
    let mut ring = Verifier::default();
    ring.add(identity, &key.public_key_base64()).unwrap();
    ring
}

fn approval_of(records: &[Record], request: Uuid) -> (&Record, &ApprovalDecision) {
    records
        .iter()
        .find_map(|r| match &r.message {
            Message::ApprovalDecision(d) if d.approval_request_id == request => Some((r, d)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no approval decision for {request}"))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_a_private_key_prints_the_policy_entry_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    let out = path.to_str().unwrap();
    // keygen needs no server.
    let first = run_command(cli_command(
        &["keygen", "--identity", "alice", "--out", out],
        "nats://127.0.0.1:1",
        None,
    ))
    .await;
    first.expect(0);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(std::fs::read_to_string(&path).unwrap().trim())
        .unwrap();
    let key = SigningKey::from_pkcs8("alice", &pkcs8).unwrap();
    let public = key.public_key_base64();
    assert!(first.stdout.contains(&public), "{}", first.stdout);
    let snippet = format!("[[admins]]\nidentity = \"alice\"\npublic_key = \"{public}\"\n");
    assert!(first.stdout.contains(&snippet), "{}", first.stdout);

    let before = std::fs::read(&path).unwrap();
    let second = run_command(cli_command(
        &["keygen", "--identity", "alice", "--out", out],
        "nats://127.0.0.1:1",
        None,
    ))
    .await;
    second.expect(1);
    assert!(
        second.stderr.contains("refusing to overwrite"),
        "{}",
        second.stderr
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the key was changed");

    let json_path = dir.path().join("bob.key");
    let json = run_command(cli_command(
        &[
            "keygen",
            "--identity",
            "bob",
            "--out",
            json_path.to_str().unwrap(),
            "--json",
        ],
        "nats://127.0.0.1:1",
        None,
    ))
    .await;
    json.expect(0);
    let value = json.json();
    assert_eq!(value["identity"], "bob");
    let snippet: toml::Table = value["policy_snippet"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        snippet["admins"][0]["public_key"].as_str(),
        value["public_key"].as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_pending_requests_and_hides_settled_and_expired_ones() {
    let platform = Platform::start().await;
    let (pending, _, messages) = pending_request(secs(600));
    platform.publish_all(&messages).await;
    let (settled, settled_decision, messages) = pending_request(secs(600));
    platform.publish_all(&messages).await;
    platform
        .publish(&approval(
            Uuid::new_v4(),
            settled,
            settled_decision,
            now(),
            "deny",
        ))
        .await;
    let (expired, _, messages) = pending_request(secs(-60));
    platform.publish_all(&messages).await;

    let list = platform.run(&["list"]).await;
    list.expect(0);
    assert!(
        list.stdout.contains(&pending.to_string()),
        "{}",
        list.stdout
    );
    assert!(
        !list.stdout.contains(&settled.to_string()),
        "{}",
        list.stdout
    );
    assert!(
        !list.stdout.contains(&expired.to_string()),
        "{}",
        list.stdout
    );
    for column in [
        "ID",
        "ACTION",
        "RISK",
        "INCIDENT",
        "EXPIRES IN",
        "REASONING",
    ] {
        assert!(list.stdout.contains(column), "{column}: {}", list.stdout);
    }
    assert!(
        list.stdout.contains("restart_service web"),
        "{}",
        list.stdout
    );

    let json = platform.run(&["list", "--json"]).await;
    json.expect(0);
    let rows = json.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["approval_request_id"], pending.to_string());
    assert_eq!(rows[0]["status"], "pending");
    assert!(rows[0]["expires_in_s"].as_i64().unwrap() > 500);

    let all = platform.run(&["list", "--all"]).await;
    all.expect(0);
    for id in [pending, settled, expired] {
        assert!(all.stdout.contains(&id.to_string()), "{id}: {}", all.stdout);
    }
    assert!(all.stdout.contains("denied by alice"), "{}", all.stdout);
    assert!(all.stdout.contains("expired"), "{}", all.stdout);

    let show = platform.run(&["show", &pending.to_string()[..8]]).await;
    show.expect(0);
    assert!(
        show.stdout.contains(&pending.to_string()),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("decision REQUEST_APPROVAL"),
        "{}",
        show.stdout
    );
    let show = platform
        .run(&["show", &settled.to_string(), "--json"])
        .await;
    show.expect(0);
    let value = show.json();
    assert_eq!(value["status"], "deny");
    let kinds: Vec<&str> = value["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["contract"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["decision", "approval_request", "approval_decision"]);
    platform
        .run(&["show", &Uuid::new_v4().to_string()])
        .await
        .expect(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_requires_a_reason_and_a_key_before_anything_else() {
    // Nothing listens here: usage errors must come before connecting.
    let run = |args: &[&str]| run_command(cli_command(args, "nats://127.0.0.1:1", Some("x")));
    let id = "a4d426fc-f083-43e6-87e4-475a7048dfe9";
    let no_reason = run(&[
        "approve",
        "a4d426fc-f083-43e6-87e4-475a7048dfe9",
        "--key",
        "/nonexistent",
    ])
    .await;
    no_reason.expect(2);
    assert!(
        no_reason.stderr.contains("--reason"),
        "{}",
        no_reason.stderr
    );
    run(&[
        "deny",
        "a4d426fc-f083-43e6-87e4-475a7048dfe9",
        "--reason",
        "",
        "--key",
        "/x",
    ])
    .await
    .expect(2);
    run(&[
        "force",
        "a4d426fc-f083-43e6-87e4-475a7048dfe9",
        "--reason",
        "   ",
        "--key",
        "/x",
    ])
    .await
    .expect(2);
    let no_key = run(&[
        "approve",
        "a4d426fc-f083-43e6-87e4-475a7048dfe9",
        "--reason",
        "fine",
    ])
    .await;
    no_key.expect(2);
    assert!(no_key.stderr.contains("--key"), "{}", no_key.stderr);
    run(&["approve"]).await.expect(2);
    run(&["list", "--bogus"]).await.expect(2);
    // With arguments in order it gets as far as connecting, and there is nothing to reach.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let (_, pkcs8) = SigningKey::generate("test-operator");
    std::fs::write(
        &key,
        base64::engine::general_purpose::STANDARD.encode(pkcs8),
    )
    .unwrap();
    let unreachable = run_command(cli_command(
        &[
            "approve",
            id,
            "--reason",
            "fine",
            "--key",
            key.to_str().unwrap(),
        ],
        "nats://127.0.0.1:1",
        Some("x"),
    ))
    .await;
    unreachable.expect(3);
    run(&["list"]).await.expect(3);
    run(&["trail", id]).await.expect(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_publishes_a_decision_signed_by_the_admin_key() {
    let platform = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key) = keygen(&platform, dir.path(), "alice").await;
    let (request_id, decision_id, messages) = pending_request(secs(600));
    platform.publish_all(&messages).await;

    let before = now();
    let run = platform
        .run(&[
            "approve",
            &request_id.to_string()[..8],
            "--reason",
            "checked the dashboards",
            "--identity",
            "alice",
            "--key",
            key_path.to_str().unwrap(),
            "--json",
        ])
        .await;
    run.expect(0);
    let printed = run.json();

    let stored = platform.approval_decisions().await;
    assert_eq!(stored.len(), 1);
    let (record, sent) = approval_of(&stored, request_id);
    assert_eq!(printed["sent"], record.raw, "printed what was sent");
    assert_eq!(sent.decision.to_string(), "approve");
    assert_eq!(sent.decision_id, decision_id);
    assert_eq!(sent.admin_identity, "alice");
    assert_eq!(sent.reason.as_str(), "checked the dashboards");
    assert_eq!(sent.source.as_str(), "orion-approval-cli");
    assert_eq!(sent.version.to_string(), "1.0");
    assert_eq!(sent.issued_at, sent.timestamp);
    let issued = sent.issued_at.as_offset_date_time();
    assert!(issued >= before - secs(1) && issued <= now() + secs(1));
    assert_eq!(sent.expires_at.as_offset_date_time() - issued, secs(300));
    assert!(!sent.override_cooldown && !sent.override_circuit_breaker);
    assert_eq!(record.raw["override_cooldown"], false);

    // The signature travels in the header and verifies against alice's public key only.
    let header = record.signature.as_deref();
    assert_eq!(header, printed["signature"].as_str());
    assert_eq!(
        keyring("alice", &key).verify_claimed(&record.raw, APPROVAL_SIGNER_FIELD, header),
        Ok("alice")
    );
    let (other, _) = SigningKey::generate("alice");
    assert_eq!(
        keyring("alice", &other).verify_claimed(&record.raw, APPROVAL_SIGNER_FIELD, header),
        Err(SignatureError::Mismatch("alice".into()))
    );
    let mut altered = record.raw.clone();
    altered["decision"] = json!("force");
    assert!(keyring("alice", &key)
        .verify_claimed(&altered, APPROVAL_SIGNER_FIELD, header)
        .is_err());

    // Answered now: a second answer is refused unless asked for.
    let again = platform
        .run(&[
            "deny",
            &request_id.to_string(),
            "--reason",
            "changed my mind",
            "--identity",
            "alice",
            "--key",
            key_path.to_str().unwrap(),
        ])
        .await;
    again.expect(1);
    assert!(
        again.stderr.contains("already answered"),
        "{}",
        again.stderr
    );
    assert_eq!(platform.approval_decisions().await.len(), 1);

    // Text output says what was sent.
    let (request_id, _, messages) = pending_request(secs(600));
    platform.publish_all(&messages).await;
    let text = platform
        .command(&[
            "approve",
            &request_id.to_string(),
            "--reason",
            "looks right",
            "--key",
            key_path.to_str().unwrap(),
        ])
        .env("USER", "alice")
        .output()
        .await
        .unwrap();
    assert_eq!(text.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&format!("Sent approve for approval request {request_id}")),
        "{stdout}"
    );
    assert!(stdout.contains("Orion-Signature: ed25519:"), "{stdout}");
    let stored = platform.approval_decisions().await;
    let (record, sent) = approval_of(&stored, request_id);
    assert_eq!(sent.admin_identity, "alice", "identity defaults to $USER");
    assert_eq!(
        keyring("alice", &key).verify_claimed(
            &record.raw,
            APPROVAL_SIGNER_FIELD,
            record.signature.as_deref()
        ),
        Ok("alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_force_set_their_decision_validity_and_override_flags() {
    let platform = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key) = keygen(&platform, dir.path(), "bob").await;
    let key_arg = key_path.to_str().unwrap().to_string();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (request_id, _, messages) = pending_request(secs(600));
        platform.publish_all(&messages).await;
        ids.push(request_id.to_string());
    }
    let common = ["--identity", "bob", "--key", key_arg.as_str()];
    let with = |mut args: Vec<&'static str>, id: &str| -> Vec<String> {
        let mut all: Vec<String> = vec![args.remove(0).to_string(), id.to_string()];
        all.extend(args.into_iter().map(String::from));
        all.extend(common.iter().map(|s| s.to_string()));
        all
    };
    for args in [
        with(
            vec![
                "deny",
                "--reason",
                "not during the sale",
                "--valid-for",
                "60",
            ],
            &ids[0],
        ),
        with(
            vec![
                "force",
                "--reason",
                "site lead agreed",
                "--override-cooldown",
                "--override-circuit-breaker",
            ],
            &ids[1],
        ),
        with(
            vec!["force", "--reason", "cooldown only", "--override-cooldown"],
            &ids[2],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        platform.run(&args).await.expect(0);
    }
    let stored = platform.approval_decisions().await;
    assert_eq!(stored.len(), 3);
    let ring = keyring("bob", &key);
    for record in &stored {
        assert_eq!(
            ring.verify_claimed(
                &record.raw,
                APPROVAL_SIGNER_FIELD,
                record.signature.as_deref()
            ),
            Ok("bob")
        );
    }

    let (_, deny) = approval_of(&stored, ids[0].parse().unwrap());
    assert_eq!(deny.decision.to_string(), "deny");
    assert_eq!(deny.reason.as_str(), "not during the sale");
    assert_eq!(
        deny.expires_at.as_offset_date_time() - deny.issued_at.as_offset_date_time(),
        secs(60)
    );
    assert!(!deny.override_cooldown && !deny.override_circuit_breaker);

    let (_, both) = approval_of(&stored, ids[1].parse().unwrap());
    assert_eq!(both.decision.to_string(), "force");
    assert!(both.override_cooldown && both.override_circuit_breaker);
    assert_eq!(
        both.expires_at.as_offset_date_time() - both.issued_at.as_offset_date_time(),
        secs(300)
    );

    let (record, cooldown) = approval_of(&stored, ids[2].parse().unwrap());
    assert_eq!(cooldown.decision.to_string(), "force");
    assert!(cooldown.override_cooldown && !cooldown.override_circuit_breaker);
    assert_eq!(record.raw["override_cooldown"], true);
    assert_eq!(record.raw["override_circuit_breaker"], false);

    // The override flags belong to force only.
    platform
        .run(&["approve", &ids[0], "--reason", "x", "--override-cooldown"])
        .await
        .expect(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_expired_or_unknown_requests_are_refused_and_nothing_is_sent() {
    let platform = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = keygen(&platform, dir.path(), "alice").await;
    let key = key_path.to_str().unwrap();
    let (expired, _, messages) = pending_request(secs(-5));
    platform.publish_all(&messages).await;

    let run = platform
        .run(&[
            "approve",
            &expired.to_string(),
            "--reason",
            "too late?",
            "--identity",
            "alice",
            "--key",
            key,
        ])
        .await;
    run.expect(1);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    let forced = platform
        .run(&[
            "force",
            &expired.to_string(),
            "--reason",
            "still too late",
            "--identity",
            "alice",
            "--key",
            key,
            "--again",
        ])
        .await;
    forced.expect(1);

    let unknown = platform
        .run(&[
            "approve",
            &Uuid::new_v4().to_string(),
            "--reason",
            "what?",
            "--identity",
            "alice",
            "--key",
            key,
        ])
        .await;
    unknown.expect(1);
    assert!(
        unknown.stderr.contains("no approval request"),
        "{}",
        unknown.stderr
    );
    assert!(platform.approval_decisions().await.is_empty());
}

/// A whole incident, event to notification, in time order; plus the ids to check.
struct Chain {
    incident: Uuid,
    messages: Vec<Message>,
}

fn realistic_chain(base: OffsetDateTime) -> Chain {
    let at = |s: i64| base + secs(s);
    let incident_id = Uuid::new_v4();
    let (e1, e2) = (Uuid::new_v4(), Uuid::new_v4());
    let (decision_id, request_id, approval_id, action_id, command_id) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let forged =
        json!({"approval_request_id": request_id, "decision_id": decision_id, "decision": "force"});
    let messages = vec![
        event(e1, at(0), "web health check failed"),
        event(e2, at(5), "web health check failed again"),
        incident(incident_id, at(6), &[e1], at(0), "open"),
        incident(incident_id, at(10), &[e1, e2], at(0), "open"),
        decision(decision_id, incident_id, at(11), "REQUEST_APPROVAL"),
        request(request_id, decision_id, Some(incident_id), at(12), at(312)),
        dead_letter(Uuid::new_v4(), at(20), &forged),
        approval(approval_id, request_id, decision_id, at(30), "approve"),
        action(action_id, decision_id, Some(approval_id), at(31)),
        ops_command(command_id, action_id, at(32)),
        receipt(Uuid::new_v4(), command_id, at(33), "pending"),
        receipt(Uuid::new_v4(), command_id, at(35), "success"),
        outcome(Uuid::new_v4(), action_id, at(36)),
        notification(
            Uuid::new_v4(),
            Some(incident_id),
            at(37),
            "web restarted after approval",
        ),
        incident(incident_id, at(40), &[e1, e2], at(0), "resolved"),
    ];
    Chain {
        incident: incident_id,
        messages,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trail_prints_the_chain_of_one_incident_in_time_order() {
    let platform = Platform::start().await;
    let base = now() - secs(120);
    let chain = realistic_chain(base);
    // Another incident's chain, interleaved: none of it belongs to the trail.
    let noise = realistic_chain(base + secs(1));
    // Published out of time order (the events last), interleaved with the noise.
    let mut order: Vec<&Message> = chain.messages[2..].iter().collect();
    order.extend(&chain.messages[..2]);
    for (mine, other) in order.iter().zip(&noise.messages) {
        platform.publish(mine).await;
        platform.publish(other).await;
    }
    platform
        .publish(&notification(
            Uuid::new_v4(),
            None,
            base + secs(38),
            "unrelated",
        ))
        .await;
    // Something in the outcome stream that is not an outcome at all.
    platform
        .admin
        .publish(
            "orion.outcome.v1",
            b"{\"not\": \"an outcome\"}".to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let run = platform.run(&["trail", &chain.incident.to_string()]).await;
    run.expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].contains(&chain.incident.to_string()),
        "{}",
        run.stdout
    );
    assert!(lines[0].contains("now resolved"), "{}", run.stdout);
    // The incident's trace id is its id's hex digits; these hand-published messages are each
    // on a trace of their own, and their lines say so.
    assert!(
        lines[1].starts_with(&format!("Trace {}", chain.incident.simple())),
        "{}",
        run.stdout
    );
    let body = &lines[2..lines.len() - 1];
    assert!(
        body.iter().all(|line| line.contains("  [trace ")),
        "{}",
        run.stdout
    );
    assert_eq!(body.len(), chain.messages.len(), "{}", run.stdout);
    for (line, message) in body.iter().zip(&chain.messages) {
        let summary = approval_cli::render::summarize(message);
        assert!(
            line.contains(&summary.id) && line.contains(&summary.kind),
            "expected {} {} here:\n{}",
            summary.kind,
            summary.id,
            run.stdout
        );
        assert!(line.starts_with(&ts(approval_cli::records::message_time(message))));
    }
    for message in &noise.messages {
        assert!(
            !run.stdout.contains(&id_of(message)),
            "noise in the trail:\n{}",
            run.stdout
        );
    }
    let footer = lines.last().unwrap();
    assert!(footer.contains("15 message(s) in the trail"), "{footer}");
    assert!(
        footer.contains("1 stored message(s) did not decode"),
        "{footer}"
    );
    // Key fields an operator reads.
    for needle in [
        "incident open",
        "incident resolved",
        "decision REQUEST_APPROVAL",
        "restarting it is RISKY",
        "approval approve",
        "action pending",
        "ops command restart",
        "ops receipt pending",
        "ops receipt success",
        "outcome succeeded",
        "notification warning",
        "dead letter bad_signature",
    ] {
        assert!(run.stdout.contains(needle), "{needle}:\n{}", run.stdout);
    }

    // --json: exactly those messages, in order, as published.
    let json = platform
        .run(&["trail", &chain.incident.to_string()[..8], "--json"])
        .await;
    json.expect(0);
    let entries = json.json();
    let entries = entries.as_array().unwrap();
    let got: Vec<&Value> = entries.iter().map(|e| &e["message"]).collect();
    let want: Vec<Value> = chain.messages.iter().map(wire).collect();
    assert_eq!(got, want.iter().collect::<Vec<_>>());
    let subjects: Vec<&str> = entries
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    let want_subjects: Vec<&str> = chain.messages.iter().map(|m| m.info().subject).collect();
    assert_eq!(subjects, want_subjects);
    assert!(
        json.stderr.contains("1 stored message(s) did not decode"),
        "{}",
        json.stderr
    );

    // A full scan finds the same chain.
    let full = platform
        .run(&[
            "trail",
            &chain.incident.to_string(),
            "--json",
            "--full-scan",
        ])
        .await;
    full.expect(0);
    assert_eq!(full.json(), json.json());

    platform
        .run(&["trail", &Uuid::new_v4().to_string()])
        .await
        .expect(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_line_for_each_new_message_until_stopped() {
    let platform = Platform::start().await;
    // Already stored before the watch starts: not shown.
    let old = notification(Uuid::new_v4(), None, now(), "before the watch");
    platform.publish(&old).await;

    let mut watchers = Vec::new();
    for json in [false, true] {
        let mut args = vec!["watch"];
        if json {
            args.push("--json");
        }
        let mut child = platform
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                if line.starts_with("watching") {
                    return line;
                }
            }
            panic!("watch ended before it was ready");
        })
        .await
        .expect("watch ready within 30 s");
        assert!(ready.contains("ORION_OUTCOMES"), "{ready}");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        watchers.push((json, child, stdout));
    }

    let notification_id = Uuid::new_v4();
    let incident_id = Uuid::new_v4();
    platform
        .publish(&notification(
            notification_id,
            Some(incident_id),
            now(),
            "web restarted",
        ))
        .await;
    let (request_id, _, messages) = pending_request(secs(600));
    platform.publish_all(&messages).await;

    for (json, mut child, mut stdout) in watchers {
        let mut lines = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while lines.len() < 3 {
                lines.push(stdout.next_line().await.unwrap().expect("watch output"));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("watch printed only {lines:?}"));
        let all = lines.join("\n");
        assert!(!all.contains(&id_of(&old)), "{all}");
        let line = lines
            .iter()
            .find(|l| l.contains(&notification_id.to_string()))
            .unwrap_or_else(|| panic!("no notification line in {all}"));
        assert!(all.contains(&request_id.to_string()), "{all}");
        if json {
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["subject"], "orion.notification.v1");
            assert_eq!(value["message"]["message"], "web restarted");
        } else {
            assert!(line.contains("notification warning"), "{line}");
            assert!(line.contains("web restarted"), "{line}");
            assert!(line.contains(&incident_id.to_string()), "{line}");
        }
        if json {
            child.kill().await.unwrap();
        } else {
            // Ctrl-C stops it cleanly.
            let pid = child.id().unwrap().to_string();
            let sent = std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap();
            assert!(sent.success());
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .expect("watch stops on SIGINT")
                .unwrap();
            assert_eq!(status.code(), Some(0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_publishes_an_acknowledgement_of_an_open_incident_only() {
    let platform = Platform::start().await;
    let (open, resolved) = (Uuid::new_v4(), Uuid::new_v4());
    let event_id = Uuid::new_v4();
    let start = now() - secs(60);
    platform
        .publish(&incident(
            open,
            now() - secs(30),
            &[event_id],
            start,
            "open",
        ))
        .await;
    platform
        .publish(&incident(
            resolved,
            now() - secs(30),
            &[event_id],
            start,
            "open",
        ))
        .await;
    platform
        .publish(&incident(
            resolved,
            now() - secs(10),
            &[event_id],
            start,
            "resolved",
        ))
        .await;

    platform
        .run(&["ack", &open.to_string(), "--identity", "bob"])
        .await
        .expect(2);
    let run = platform
        .run(&[
            "ack",
            &open.to_string()[..8],
            "--reason",
            "looking into it",
            "--identity",
            "bob",
            "--json",
        ])
        .await;
    run.expect(0);
    let stored = platform.stored::<IncidentAcknowledgement>().await;
    assert_eq!(stored.len(), 1);
    let Message::IncidentAcknowledgement(ack) = &stored[0].message else {
        unreachable!()
    };
    assert_eq!(ack.incident_id, open);
    assert_eq!(ack.acknowledged_by.as_str(), "bob");
    assert_eq!(ack.note.as_deref(), Some("looking into it"));
    assert_eq!(ack.source.to_string(), "orion-approval-cli");
    assert_eq!(run.json()["sent"], stored[0].raw);

    let refused = platform
        .run(&[
            "ack",
            &resolved.to_string(),
            "--reason",
            "late",
            "--identity",
            "bob",
        ])
        .await;
    refused.expect(1);
    assert!(
        refused.stderr.contains("already resolved"),
        "{}",
        refused.stderr
    );
    platform
        .run(&[
            "ack",
            &Uuid::new_v4().to_string(),
            "--reason",
            "who?",
            "--identity",
            "bob",
        ])
        .await
        .expect(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_explains_itself() {
    for sub in [
        "keygen",
        "list",
        "show",
        "approve",
        "deny",
        "force",
        "watch",
        "trail",
        "ack",
        "silence",
        "silences",
        "unsilence",
    ] {
        let run = run_command(cli_command(&[sub, "--help"], "nats://127.0.0.1:1", None)).await;
        run.expect(0);
        assert!(run.stdout.contains("Exit codes:"), "{sub}: {}", run.stdout);
        assert!(run.stdout.contains("--json"), "{sub}: {}", run.stdout);
    }
    let top = run_command(cli_command(&["--help"], "nats://127.0.0.1:1", None)).await;
    top.expect(0);
    assert!(top.stdout.contains("ORION_NATS_URL"), "{}", top.stdout);
}

// ---------------------------------------------------------------------------------------------
// Silences

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_refuses_bad_requests_before_anything_is_signed_or_sent() {
    // Nothing listens here: refusals must come before connecting.
    let run = |args: &[&str]| run_command(cli_command(args, "nats://127.0.0.1:1", Some("x")));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let (_, pkcs8) = SigningKey::generate("test-operator");
    std::fs::write(
        &key,
        base64::engine::general_purpose::STANDARD.encode(pkcs8),
    )
    .unwrap();
    let key = key.to_str().unwrap();
    let past = ts(now() - secs(60));
    let far = ts(now() + time::Duration::days(8));
    for (args, says) in [
        (vec!["--for", "2h", "--reason", "r"], "--target"),
        (vec!["--target", "web", "--for", "2h"], "--reason"),
        (
            vec!["--target", "web", "--for", "2h", "--reason", "  "],
            "--reason",
        ),
        (vec!["--target", "web", "--reason", "r"], "--for"),
        (
            vec!["--target", "web", "--for", "8d", "--reason", "r"],
            "at most 7 days",
        ),
        (
            vec!["--target", "web", "--until", &far, "--reason", "r"],
            "at most 7 days",
        ),
        (
            vec!["--target", "web", "--until", &past, "--reason", "r"],
            "not in the future",
        ),
        (
            vec!["--target", "web", "--for", "soon", "--reason", "r"],
            "not a duration",
        ),
        (
            vec!["--target", "Web", "--for", "2h", "--reason", "r"],
            "--target",
        ),
        (
            vec!["--target", "all", "--for", "2h", "--reason", "r"],
            "--target",
        ),
        (
            vec![
                "--incident-type",
                "disk_full",
                "--for",
                "2h",
                "--reason",
                "r",
            ],
            "incident type",
        ),
        (
            vec!["--tag", "env", "--for", "2h", "--reason", "r"],
            "KEY=VALUE",
        ),
        (
            vec!["--target", "web", "--for", "2h", "--reason", "r"],
            "--key",
        ),
    ] {
        let mut full = vec!["silence"];
        full.extend(&args);
        let refused = run(&full).await;
        refused.expect(2);
        assert!(
            refused.stderr.contains(says),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let long = "x".repeat(501);
    run(&[
        "silence", "--target", "web", "--for", "1h", "--reason", &long, "--key", key,
    ])
    .await
    .expect(2);
    let no_reason = run(&["unsilence", "5b0d2c9e", "--key", key]).await;
    no_reason.expect(2);
    assert!(
        no_reason.stderr.contains("--reason"),
        "{}",
        no_reason.stderr
    );
    // In order, it gets as far as connecting, and there is nothing to reach.
    run(&[
        "silence", "--target", "web", "--for", "2h", "--reason", "r", "--key", key,
    ])
    .await
    .expect(3);
    run(&["silences"]).await.expect(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_publishes_a_signed_window_that_silences_lists_and_unsilence_lifts() {
    let platform = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_path, alice) = keygen(&platform, dir.path(), "alice").await;
    let (bob_path, bob) = keygen(&platform, dir.path(), "bob").await;
    let alice_key = alice_path.to_str().unwrap();
    let bob_key = bob_path.to_str().unwrap();
    platform.run(&["silences"]).await.expect(0);

    let before = now();
    let run = platform
        .run(&[
            "silence",
            "--target",
            "web",
            "--tag",
            "env=prod",
            "--for",
            "2h",
            "--reason",
            "database migration",
            "--identity",
            "alice",
            "--key",
            alice_key,
            "--json",
        ])
        .await;
    run.expect(0);
    let printed = run.json();
    let stored = platform.stored::<Silence>().await;
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!(printed["sent"], record.raw, "printed what was sent");
    let Message::Silence(sent) = &record.message else {
        panic!("{:?}", record.message)
    };
    assert_eq!(sent.state.to_string(), "active");
    assert_eq!(sent.admin_identity.as_str(), "alice");
    assert_eq!(sent.created_by.as_str(), "alice");
    assert_eq!(sent.reason.as_str(), "database migration");
    assert_eq!(sent.source.to_string(), "orion-approval-cli");
    assert_eq!(sent.match_.target.as_ref().unwrap().as_str(), "web");
    assert_eq!(sent.match_.tags["env"], "prod");
    assert!(sent.match_.incident_type.is_none());
    let starts = sent.starts_at.as_offset_date_time();
    assert!(starts >= before - secs(1) && starts <= now() + secs(1));
    assert_eq!(sent.ends_at.as_offset_date_time() - starts, secs(7200));
    // Signed like an approval: alice's key verifies it, nothing else does.
    let header = record.signature.as_deref();
    assert_eq!(header, printed["signature"].as_str());
    assert_eq!(
        keyring("alice", &alice).verify_claimed(&record.raw, APPROVAL_SIGNER_FIELD, header),
        Ok("alice")
    );
    let mut altered = record.raw.clone();
    altered["ends_at"] = json!(ts(now() + time::Duration::days(6)));
    assert!(keyring("alice", &alice)
        .verify_claimed(&altered, APPROVAL_SIGNER_FIELD, header)
        .is_err());
    let first = sent.silence_id;

    // A second one, by incident type, until a time.
    let until = ts(now() + secs(3600));
    let text = platform
        .run(&[
            "silence",
            "--incident-type",
            "metric_anomaly",
            "--until",
            &until,
            "--reason",
            "load test",
            "--identity",
            "alice",
            "--key",
            alice_key,
        ])
        .await;
    text.expect(0);
    assert!(
        text.stdout
            .contains("Silenced incident_type=metric_anomaly until"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("Orion-Signature: ed25519:"),
        "{}",
        text.stdout
    );

    let listed = platform.run(&["silences", "--json"]).await;
    listed.expect(0);
    let listed = listed.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0]["match"], "incident_type=metric_anomaly",
        "soonest end first"
    );
    assert_eq!(listed[1]["silence_id"], first.to_string());
    assert_eq!(listed[1]["status"], "active");
    assert_eq!(listed[1]["match"], "target=web tag:env=prod");
    let table = platform.run(&["silences"]).await;
    table.expect(0);
    assert!(
        table.stdout.contains(&first.to_string()),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("database migration"),
        "{}",
        table.stdout
    );

    // bob lifts alice's first silence, by a prefix of its id.
    let lifted = platform
        .run(&[
            "unsilence",
            &first.to_string()[..8],
            "--reason",
            "migration done",
            "--identity",
            "bob",
            "--key",
            bob_key,
            "--json",
        ])
        .await;
    lifted.expect(0);
    let stored = platform.stored::<Silence>().await;
    assert_eq!(stored.len(), 3);
    let record = &stored[2];
    assert_eq!(lifted.json()["sent"], record.raw);
    let Message::Silence(lift) = &record.message else {
        panic!("{:?}", record.message)
    };
    assert_eq!(lift.silence_id, first);
    assert_eq!(lift.state.to_string(), "lifted");
    assert_eq!(lift.admin_identity.as_str(), "bob");
    assert_eq!(lift.created_by.as_str(), "alice");
    assert_eq!(
        lift.lift_reason.as_ref().unwrap().as_str(),
        "migration done"
    );
    assert!(lift.lifted_at.is_some());
    assert_eq!(
        keyring("bob", &bob).verify_claimed(
            &record.raw,
            APPROVAL_SIGNER_FIELD,
            record.signature.as_deref()
        ),
        Ok("bob")
    );

    let current = platform.run(&["silences", "--json"]).await.json();
    assert_eq!(current.as_array().unwrap().len(), 1);
    let all = platform.run(&["silences", "--all", "--json"]).await.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["status"], "lifted");
    assert_eq!(all[1]["lifted_by"], "bob");
    let all = platform.run(&["silences", "--all"]).await;
    assert!(all.stdout.contains("lifted by bob"), "{}", all.stdout);

    // Lifted once; unknown ids are refused too. Nothing more is sent.
    let again = platform
        .run(&[
            "unsilence",
            &first.to_string(),
            "--reason",
            "again",
            "--identity",
            "bob",
            "--key",
            bob_key,
        ])
        .await;
    again.expect(1);
    assert!(
        again.stderr.contains("already lifted by bob"),
        "{}",
        again.stderr
    );
    platform
        .run(&[
            "unsilence",
            &Uuid::new_v4().to_string(),
            "--reason",
            "r",
            "--identity",
            "bob",
            "--key",
            bob_key,
        ])
        .await
        .expect(1);
    assert_eq!(platform.stored::<Silence>().await.len(), 3);

    // trail shows the silence brain named in its decision about an incident.
    let incident_id = Uuid::new_v4();
    let t = now();
    let held: Decision = message(json!({
        "version": "1.0", "decision_id": Uuid::new_v4(), "timestamp": ts(t), "source": "orion-brain",
        "incident_id": incident_id, "decision_type": "NO_ACTION", "safety_classification": "SAFE",
        "requires_approval": false, "autonomy_level": "N3",
        "reasoning": format!("silenced by silence {first}"),
        "tags": {"silence_id": first.to_string()},
    }));
    platform
        .publish_all(&[
            event(Uuid::new_v4(), t - secs(2), "web down"),
            incident(
                incident_id,
                t - secs(1),
                &[Uuid::new_v4()],
                t - secs(2),
                "open",
            ),
            Message::Decision(held),
        ])
        .await;
    let trail = platform.run(&["trail", &incident_id.to_string()]).await;
    trail.expect(0);
    let lines: Vec<&str> = trail
        .stdout
        .lines()
        .filter(|l| l.contains(&first.to_string()))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("silence active") && l.contains("target=web")),
        "{}",
        trail.stdout
    );
    assert!(
        lines.iter().any(|l| l.contains("silence lifted")),
        "{}",
        trail.stdout
    );
}
