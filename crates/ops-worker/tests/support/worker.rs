//! The ops-worker binary as a separate process against a real NATS server, and a signed-command
//! sender — what an operator runs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use contracts::bus::Bus;
use contracts::local_server::NatsServer;
use contracts::services::OpsConsole;
use contracts::{OpsCommand, OpsReceipt};
use ops_client::client::{self, Receipts};
use ops_client::signing::SigningKeys;
use orion_testkit::wait_until;
use serde_json::{json, Value};

/// The test key of the SPEC's signing vector (fixtures/ops_signing/vector.json) — a TEST KEY.
pub const TEST_SECRET: &str = "test-ops-secret-32chars!!!!!!!!";

pub fn test_keys() -> SigningKeys {
    SigningKeys::new(&[TEST_SECRET.to_string()]).expect("the test key is accepted")
}

/// A running `ops-worker run`; killed when dropped.
pub struct WorkerProcess {
    child: Option<Child>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts the worker for `allowlist` and waits until it consumes.
    pub async fn start(
        server: &NatsServer,
        allowlist: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ops-worker.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ops-worker"))
            .args(["run", "--drain-s", "5"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OPS_SECRET", TEST_SECRET)
            .env("ORION_NATS_URL", server.url())
            .env(
                "ORION_NATS_PASSWORD",
                server.password("ops-worker").expect("server with auth"),
            )
            .env("OPS_ALLOWLIST", allowlist.join(","))
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the ops-worker binary");
        let worker = Self {
            child: Some(child),
            log,
            _dir: dir,
        };
        worker.wait_ready(server).await;
        worker
    }

    async fn wait_ready(&self, server: &NatsServer) {
        let admin = admin(server).await;
        wait_until("ops-worker consuming", Duration::from_secs(15), || async {
            let reply = admin
                .request("$SRV.STATS.ops-worker", "".into())
                .await
                .ok()?;
            let stats: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
            stats["endpoints"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; its log:\n{}", self.log_text()));
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, nothing drained.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a graceful exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().ok()?.code()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub async fn admin(server: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap()
}

pub async fn provisioned_server() -> NatsServer {
    let server =
        NatsServer::start_with_auth().expect("start nats-server (`cargo xtask test` installs it)");
    let js = async_nats::jetstream::new(admin(&server).await);
    contracts::bus::provision_all(&js, 1)
        .await
        .expect("provision");
    server
}

pub async fn console(server: &NatsServer) -> Bus<OpsConsole> {
    Bus::connect(server.bus_config::<OpsConsole>())
        .await
        .unwrap()
}

/// An unsigned command as JSON, issued now.
pub fn command(command_type: &str, target: &str, params: Value) -> Value {
    let mut value = json!({
        "v": 1,
        "id": uuid::Uuid::new_v4(),
        "ts": contracts::Timestamp::now(),
        "type": command_type,
        "target": target,
        "meta": { "initiator_id": "test-operator", "reason": "integration test" },
    });
    if !params.is_null() {
        value["params"] = params;
    }
    value
}

/// Signs with the test key.
pub fn signed(value: Value) -> OpsCommand {
    client::sign(value, &test_keys()).expect("sign")
}

/// Sends and waits for the final receipt.
pub async fn send(bus: &Bus<OpsConsole>, command: &OpsCommand) -> Receipts {
    client::send_and_wait(bus, command, Duration::from_secs(60), |_| {})
        .await
        .expect("send")
}

pub fn final_receipt(receipts: &Receipts) -> &OpsReceipt {
    receipts.last.as_ref().expect("a final receipt within 60 s")
}

/// Every final receipt (not `pending`) in the ops stream, in order.
pub async fn final_receipts(server: &NatsServer) -> Vec<OpsReceipt> {
    let mut receipts = all_receipts(server).await;
    receipts.retain(|r| r.status.to_string() != "pending");
    receipts
}

/// Every receipt in the ops stream, in order.
pub async fn all_receipts(server: &NatsServer) -> Vec<OpsReceipt> {
    use async_nats::jetstream::consumer::pull;
    use futures::StreamExt;
    let js = async_nats::jetstream::new(admin(server).await);
    let stream = js.get_stream("TITAN_OPS").await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: "titan.ops.receipt.v1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut receipts = Vec::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        receipts.push(contracts::decode::<OpsReceipt>(&message.payload).expect("valid receipt"));
    }
    receipts
}

/// Waits (up to 30 s) until ops-worker has accepted `command_id` (its pending receipt is
/// stored): the command is running, or waiting for its target's lane.
pub async fn wait_accepted(server: &NatsServer, command_id: uuid::Uuid) {
    let what = format!("command {command_id} accepted");
    wait_until(&what, Duration::from_secs(30), || async {
        all_receipts(server)
            .await
            .iter()
            .any(|r| r.command_id == command_id && r.status.to_string() == "pending")
            .then_some(())
    })
    .await
    .unwrap();
}
