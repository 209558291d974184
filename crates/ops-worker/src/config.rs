//! ops-worker's configuration: a TOML file with environment overlays, then environment
//! variables (`contracts::runtime::load`). Everything is checked before the worker connects
//! anywhere (fail closed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::runtime::{ConfigFile, NatsSection, ServiceConfig};
use serde::Deserialize;

use crate::docker::DockerConfig;
use ops_client::SigningKeys;

/// The SPEC's signing test vector key: public, so never acceptable in production.
const PUBLISHED_TEST_SECRET: &str = "test-ops-secret-32chars!!!!!!!!";

/// The settings as they appear in the file (`ops-worker.toml`, and `ops-worker.<env>.toml`).
/// Secrets never live here: they come from `OPS_SECRET` / `OPS_SECRET_FILE`. `[nats]` is the
/// section every service shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsWorkerConfigFile {
    pub nats: NatsSection,
    pub docker: DockerSection,
    pub commands: CommandsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSection {
    /// The Docker engine's Unix socket.
    pub socket: PathBuf,
    /// The container label whose value names a service.
    pub service_label: String,
    /// Services the worker may act on; `all` means every one of them.
    pub allowlist: Vec<String>,
    /// Longest wait for one Docker engine call.
    pub call_timeout_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsSection {
    /// Commands whose `ts` is further than this from the worker's clock are refused.
    pub clock_skew_s: u64,
    /// Stop timeout of `restart` and `halt` when the command does not say (`timeout_s`).
    pub stop_timeout_s: u64,
    /// How long a new container may take to become ready during `deploy`.
    pub deploy_ready_timeout_s: u64,
    /// Log lines per container in an evidence bundle when the command does not say; at most
    /// [`crate::evidence::MAX_LOG_LINES`].
    pub evidence_log_lines: usize,
    /// Recent receipts in an evidence bundle.
    pub evidence_receipts: usize,
    /// How long the server waits for the worker to settle a command before redelivering it
    /// (the worker reports progress while a command runs).
    pub ack_wait_s: u64,
    /// Commands in flight at once (across all targets).
    pub max_in_flight: usize,
    /// How long `halt`, `cancel_all` and `withdraw` wait for the work they cancel to end, on
    /// every instance (a rollback, or the redelivery of a crashed instance's command).
    pub cancel_wait_s: u64,
}

impl Default for DockerSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/var/run/docker.sock"),
            service_label: "com.docker.compose.service".to_string(),
            allowlist: Vec::new(),
            call_timeout_s: 30,
        }
    }
}

impl Default for CommandsSection {
    fn default() -> Self {
        Self {
            clock_skew_s: 300,
            stop_timeout_s: 10,
            deploy_ready_timeout_s: 60,
            evidence_log_lines: 200,
            evidence_receipts: 100,
            ack_wait_s: 30,
            max_in_flight: 64,
            cancel_wait_s: 120,
        }
    }
}

/// Everything the worker runs with, validated.
#[derive(Debug)]
pub struct WorkerConfig {
    pub keys: SigningKeys,
    pub nats: NatsSection,
    pub docker: DockerConfig,
    pub clock_skew: Duration,
    pub stop_timeout: Duration,
    pub deploy_ready_timeout: Duration,
    pub evidence_log_lines: usize,
    pub evidence_receipts: usize,
    pub ack_wait: Duration,
    pub max_in_flight: usize,
    pub cancel_wait: Duration,
    pub executor_id: String,
}

/// A configuration problem, phrased as what to set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error(transparent)]
    Keys(#[from] ops_client::KeysError),
    #[error("{0} — set a strong OPS_SECRET")]
    WeakSecret(String),
    #[error("{0}")]
    Invalid(String),
}

pub use contracts::runtime::{Environment, ProcessEnvironment};

impl WorkerConfig {
    /// Loads `path` (+ overlay for `ORION_ENV`), applies the environment variables, and checks
    /// everything. Variables: `OPS_SECRET`, `OPS_SECRET_PREVIOUS` (comma-separated older keys still
    /// accepted), `OPS_SECRET_FILE`, `NATS_URL` / `ORION_NATS_URL`, `DOCKER_SOCKET`,
    /// `OPS_ALLOWLIST` (comma-separated), `OPS_SERVICE_LABEL`, `OPS_CLOCK_SKEW_S`.
    pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Self, ConfigError> {
        let file: OpsWorkerConfigFile = contracts::runtime::load(path, env)?;
        let keys = signing_keys(env)?;
        if env.var("ORION_ENV").as_deref() == Some("prod")
            && ops_client::keys::secrets(env)?
                .iter()
                .any(|s| s == PUBLISHED_TEST_SECRET)
        {
            return Err(ConfigError::WeakSecret(
                "the published test key of fixtures/ops_signing is refused in prod".into(),
            ));
        }
        let allowlist: BTreeSet<String> = file
            .docker
            .allowlist
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if allowlist.is_empty() {
            return Err(ConfigError::Invalid(
                "the service allowlist is empty: list the services the worker may act on in [docker] allowlist or OPS_ALLOWLIST".into(),
            ));
        }
        if file.commands.evidence_log_lines > crate::evidence::MAX_LOG_LINES {
            return Err(ConfigError::Invalid(format!(
                "commands.evidence_log_lines is {}, above the maximum of {} log lines per container",
                file.commands.evidence_log_lines,
                crate::evidence::MAX_LOG_LINES
            )));
        }
        if file.commands.clock_skew_s == 0 {
            return Err(ConfigError::Invalid(
                "commands.clock_skew_s must be above 0".into(),
            ));
        }
        let docker = DockerConfig {
            socket: file.docker.socket.clone(),
            service_label: file.docker.service_label.clone(),
            allowlist,
            call_timeout: Duration::from_secs(file.docker.call_timeout_s.max(1)),
        };
        docker
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Self {
            keys,
            nats: file.nats,
            docker,
            clock_skew: Duration::from_secs(file.commands.clock_skew_s),
            stop_timeout: Duration::from_secs(file.commands.stop_timeout_s),
            deploy_ready_timeout: Duration::from_secs(file.commands.deploy_ready_timeout_s),
            evidence_log_lines: file.commands.evidence_log_lines,
            evidence_receipts: file.commands.evidence_receipts,
            ack_wait: Duration::from_secs(file.commands.ack_wait_s.max(5)),
            max_in_flight: file.commands.max_in_flight.max(1),
            cancel_wait: Duration::from_secs(file.commands.cancel_wait_s),
            // The process id too: several instances on one host must tell their work apart.
            executor_id: format!(
                "{}-{}",
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            ),
        })
    }
}

/// The signing keys from the environment, checked (for the worker and for `send`).
pub fn signing_keys(env: &dyn Environment) -> Result<SigningKeys, ConfigError> {
    Ok(ops_client::keys_from_env(env)?)
}

impl ConfigFile for OpsWorkerConfigFile {
    fn nats_mut(&mut self) -> &mut NatsSection {
        &mut self.nats
    }

    fn apply_environment(
        &mut self,
        env: &dyn Environment,
    ) -> Result<(), contracts::runtime::ConfigError> {
        if let Some(socket) = env.var("DOCKER_SOCKET") {
            self.docker.socket = socket.into();
        }
        if let Some(list) = env.list("OPS_ALLOWLIST") {
            self.docker.allowlist = list;
        }
        if let Some(label) = env.var("OPS_SERVICE_LABEL") {
            self.docker.service_label = label;
        }
        if let Some(skew) = env.parsed("OPS_CLOCK_SKEW_S")? {
            self.commands.clock_skew_s = skew;
        }
        Ok(())
    }
}

impl ServiceConfig for WorkerConfig {
    fn nats(&self) -> &NatsSection {
        &self.nats
    }
}
