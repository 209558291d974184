//! What each command type does. The worker decides *whether* a command runs (signature,
//! replay window, idempotency, cancellation); the executor does it.

use std::time::Duration;

use contracts::bus::Bus;
use contracts::generated::ops_command_v1::OpsCommandType;
use contracts::services::OpsWorker;
use contracts::OpsCommand;
use contracts::OpsReceipt;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::docker::{DeployError, DeployFailure, DockerError, Engine};
use crate::evidence;
use crate::receipts::{Failure, FailureCode};
use crate::state::{ArmedRecord, Interlock};

/// Autonomy levels `set_risk` accepts (see brain).
pub const RISK_LEVELS: &[&str] = &["N0", "N1", "N2", "N3"];

/// A command's result (the receipt's `result`) or why it failed (`error_code` and `error`).
pub type Execution = Result<Map<String, Value>, Failure>;

/// Runs commands against Docker and the interlock.
pub struct Executor {
    pub engine: Engine,
    pub interlock: Interlock,
    /// The bus, for evidence: the receipts it quotes and the object store it fills.
    pub bus: Bus<OpsWorker>,
    pub stop_timeout: Duration,
    pub deploy_ready_timeout: Duration,
    /// Log lines per container when the command does not say (clamped to
    /// [`evidence::MAX_LOG_LINES`]).
    pub evidence_log_lines: usize,
    pub evidence_receipts: usize,
}

/// A command's `params` object (empty when absent).
struct Params<'a>(&'a Map<String, Value>);

impl Params<'_> {
    fn seconds(&self, name: &str, default: Duration) -> Result<Duration, Failure> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.as_u64().map(Duration::from_secs).ok_or_else(|| {
                bad_params(format!(
                    "params.{name} must be a whole number of seconds, got {v}"
                ))
            }),
        }
    }

    fn string(&self, name: &str) -> Result<Option<&str>, Failure> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(v) => Err(bad_params(format!(
                "params.{name} must be a non-empty string, got {v}"
            ))),
        }
    }

    fn count(&self, name: &str) -> Result<Option<u32>, Failure> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    bad_params(format!("params.{name} must be a whole number, got {v}"))
                }),
        }
    }
}

impl Executor {
    /// Executes `command`; `cancel` stops long work between steps.
    pub async fn execute(&self, command: &OpsCommand, cancel: &CancellationToken) -> Execution {
        let params = Params(&command.params);
        let id = command.id;
        match command.type_ {
            OpsCommandType::Restart => {
                self.require_armed("restart").await?;
                let timeout = params.seconds("timeout_s", self.stop_timeout)?;
                let mut restarted = Vec::new();
                for service in self.targets(&command.target)? {
                    check_cancelled(cancel)?;
                    restarted.extend(self.engine.restart(&service, timeout, cancel).await?);
                }
                Ok(object(json!({ "restarted": restarted })))
            }
            OpsCommandType::Deploy => {
                self.require_armed("deploy").await?;
                let image = params.string("image")?;
                let replicas = params.count("replicas")?;
                if image.is_none() && replicas.is_none() {
                    return Err(bad_params("deploy needs params.image (an image present on the Docker host), params.replicas, or both"));
                }
                let ready = params.seconds("timeout_s", self.deploy_ready_timeout)?;
                let mut reports = Vec::new();
                for service in self.targets(&command.target)? {
                    check_cancelled(cancel)?;
                    // A scale without an image keeps the image the service runs now.
                    let image = match image {
                        Some(image) => image.to_string(),
                        None => self.current_image(&service).await?,
                    };
                    match self
                        .engine
                        .deploy(&service, &image, replicas, ready, cancel)
                        .await
                    {
                        Ok(report) => {
                            reports.push(serde_json::to_value(&report).expect("reports serialize"))
                        }
                        Err(e) => return Err(deploy_failure(&e, &reports)),
                    }
                }
                Ok(object(json!({ "deployed": reports })))
            }
            OpsCommandType::Halt => {
                let timeout = params.seconds("timeout_s", self.stop_timeout)?;
                // Disarm first: nothing automated may start while containers are stopping.
                self.interlock
                    .set_armed(false, id)
                    .await
                    .map_err(internal)?;
                let mut stopped = Vec::new();
                for service in self.targets(&command.target)? {
                    stopped.extend(self.engine.stop(&service, timeout).await?);
                }
                Ok(object(json!({ "stopped": stopped, "armed": false })))
            }
            OpsCommandType::Disarm => {
                self.interlock
                    .set_armed(false, id)
                    .await
                    .map_err(internal)?;
                Ok(object(json!({ "armed": false })))
            }
            OpsCommandType::Arm => {
                self.interlock.set_armed(true, id).await.map_err(internal)?;
                Ok(object(json!({ "armed": true })))
            }
            OpsCommandType::SetRisk => {
                let level = params.string("level")?.ok_or_else(|| {
                    bad_params("set_risk needs params.level: one of N0, N1, N2, N3")
                })?;
                let parsed = match RISK_LEVELS.contains(&level) {
                    true => level.parse().ok(),
                    false => None,
                };
                let Some(parsed) = parsed else {
                    return Err(bad_params(format!(
                        "params.level {level:?} is not one of N0, N1, N2, N3"
                    )));
                };
                self.interlock
                    .set_risk_ceiling(parsed, id)
                    .await
                    .map_err(internal)?;
                Ok(object(json!({ "risk_ceiling": level })))
            }
            OpsCommandType::ExportEvidence => self.export_evidence(command, &params, cancel).await,
            // cancel_all and withdraw are the worker's: it owns the commands in flight.
            other @ (OpsCommandType::CancelAll | OpsCommandType::Withdraw) => Err(Failure::new(
                FailureCode::InvalidCommand,
                format!("command type `{other}` is not executed here"),
            )),
        }
    }

    async fn current_image(&self, service: &str) -> Result<String, Failure> {
        let containers = self.engine.containers(service).await?;
        containers
            .into_iter()
            .find(|c| c.running)
            .map(|c| c.image)
            .ok_or_else(|| bad_params(format!("cannot scale `{service}` without params.image: none of its containers is running")))
    }

    async fn require_armed(&self, what: &str) -> Result<(), Failure> {
        let refused = |why: String| Failure::new(FailureCode::RefusedDisarmed, why);
        match self.interlock.armed().await {
            ArmedRecord::Armed(_) => Ok(()),
            ArmedRecord::Disarmed(_) => Err(refused(format!(
                "refused: the platform is disarmed, so `{what}` does not run; send `arm` first"
            ))),
            ArmedRecord::Missing => Err(refused(format!(
                "refused: the interlock record `armed` is missing from key-value bucket `ops_interlock`, so the platform counts as disarmed (fail closed) and `{what}` does not run; send a signed `arm` to write it (provisioning writes it only into a bucket that never held one)"
            ))),
            ArmedRecord::Unreadable(e) => Err(refused(format!(
                "refused: the interlock record cannot be read ({e}), so the platform counts as disarmed (fail closed) and `{what}` does not run; send a signed `arm` to write a valid record"
            ))),
        }
    }

    /// `all` (or empty, for evidence) means every allowlisted service.
    fn targets(&self, target: &str) -> Result<Vec<String>, Failure> {
        Ok(self.engine.allowlisted(target)?)
    }

    async fn export_evidence(
        &self,
        command: &OpsCommand,
        params: &Params<'_>,
        cancel: &CancellationToken,
    ) -> Execution {
        let lines = match params.0.get("log_lines") {
            None => evidence::LogLines::clamp(self.evidence_log_lines as u64),
            Some(v) => evidence::LogLines::clamp(v.as_u64().ok_or_else(|| {
                bad_params(format!(
                    "params.log_lines must be a whole number of lines (at most {}), got {v}",
                    evidence::MAX_LOG_LINES
                ))
            })?),
        };
        let target = if command.target.is_empty() {
            "all"
        } else {
            command.target.as_str()
        };
        let mut containers = Vec::new();
        for service in self.targets(target)? {
            check_cancelled(cancel)?;
            containers.extend(self.engine.evidence(&service, lines.used).await?);
        }
        // Commands and receipts share the stream; look back at most four messages a receipt.
        let receipts = self
            .bus
            .last_published::<OpsReceipt>(self.evidence_receipts, self.evidence_receipts as u64 * 4)
            .await;
        let (bytes, files) = evidence::archive(&containers, &receipts, lines)
            .map_err(|e| internal(format!("building the bundle: {e}")))?;
        let name = format!("evidence-{}.tar.gz", command.id);
        let stored = evidence::store(&self.bus, &name, bytes, files)
            .await
            .map_err(internal)?;
        let mut result = object(serde_json::to_value(&stored).expect("bundles serialize"));
        result.insert(
            "containers".into(),
            json!(containers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()),
        );
        result.insert("receipts".into(), json!(receipts.len()));
        result.insert(
            "redactions".into(),
            json!(evidence::redaction_count(&containers)),
        );
        result.insert("log_lines".into(), json!(lines.used));
        if lines.clamped() {
            result.insert("log_lines_requested".into(), json!(lines.requested));
        }
        let cut: Vec<&str> = containers
            .iter()
            .filter(|c| c.logs_truncated)
            .map(|c| c.name.as_str())
            .collect();
        if !cut.is_empty() {
            result.insert("logs_truncated".into(), json!(cut));
        }
        Ok(result)
    }
}

fn check_cancelled(cancel: &CancellationToken) -> Result<(), Failure> {
    if cancel.is_cancelled() {
        Err(Failure::new(
            FailureCode::Cancelled,
            "cancelled before it finished",
        ))
    } else {
        Ok(())
    }
}

fn bad_params(message: impl Into<String>) -> Failure {
    Failure::new(FailureCode::BadParams, message)
}

/// ops-worker's own state (the interlock, the evidence store) failed.
fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureCode::Internal, e.to_string())
}

impl From<DockerError> for Failure {
    fn from(e: DockerError) -> Self {
        Failure::new(docker_code(&e), e.to_string())
    }
}

/// The receipt code of a Docker-layer failure.
fn docker_code(e: &DockerError) -> FailureCode {
    match e {
        DockerError::Partial { source, .. } => docker_code(source),
        DockerError::RestartCancelled { .. } => FailureCode::Cancelled,
        DockerError::EmptyTarget { .. }
        | DockerError::InvalidTarget(_)
        | DockerError::NotAllowlisted { .. }
        | DockerError::NoContainers { .. } => FailureCode::InvalidTarget,
        DockerError::Protected { .. } | DockerError::NatsImage { .. } => FailureCode::Protected,
        DockerError::ImageMissing { .. } => FailureCode::BadParams,
        _ => FailureCode::Engine,
    }
}

/// A failed deploy as a receipt failure: `rolled_back` when the step in progress was undone,
/// with what was already deployed before it.
fn deploy_failure(e: &DeployError, done: &[Value]) -> Failure {
    let code = match &e.failure {
        _ if e.rolled_back => FailureCode::RolledBack,
        DeployFailure::Docker(docker) => docker_code(docker),
        DeployFailure::ZeroReplicas | DeployFailure::ScaleOnFixedHostPorts { .. } => {
            FailureCode::BadParams
        }
        DeployFailure::Cancelled { .. } => FailureCode::Cancelled,
        _ => FailureCode::Engine,
    };
    let done = if done.is_empty() {
        String::new()
    } else {
        format!(" (already deployed: {})", Value::Array(done.to_vec()))
    };
    Failure::new(code, format!("{e}{done}"))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([("value".to_string(), other)]),
    }
}
