//! Errors of the Docker layer. Every message names the service and container concerned and
//! what failed, so it can go into a receipt as is.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use contracts::target::TargetError;

use super::config::ConfigError;
use super::model::Replacement;

/// Why the worker refuses to touch a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The container carries the label `orion.protected=true`.
    ProtectedLabel,
    /// The container's name or image contains `nats`.
    Nats {
        /// `"name"` or `"image"`.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// The container is the one the worker runs in.
    SelfContainer,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ProtectedLabel => f.write_str("it carries the label orion.protected=true"),
            Refusal::Nats { field, value } => {
                write!(
                    f,
                    "its {field} `{value}` contains `nats` (the worker never acts on NATS)"
                )
            }
            Refusal::SelfContainer => f.write_str(
                "it is the ops worker's own container (the worker never acts on itself)",
            ),
        }
    }
}

/// A failure of the Docker layer.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine's socket does not exist.
    #[error(
        "docker engine socket {} does not exist: is the Docker daemon running? \
         (start it with `systemctl start docker`, or `dockerd &` as root)",
        socket.display()
    )]
    SocketMissing {
        /// The configured socket.
        socket: PathBuf,
    },
    /// The engine did not answer the version handshake.
    #[error("docker engine at {} does not answer: {source}", socket.display())]
    Unreachable {
        /// The configured socket.
        socket: PathBuf,
        /// What went wrong.
        #[source]
        source: bollard::errors::Error,
    },
    /// An engine call did not complete in time.
    #[error("docker engine did not answer within {after:?} while trying to {op}")]
    Timeout {
        /// What was being done, e.g. "restart container `web-1` of service `web`".
        op: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The engine refused or failed a call.
    #[error("could not {op}: {source}")]
    Engine {
        /// What was being done, e.g. "restart container `web-1` of service `web`".
        op: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine answered without a field the layer needs.
    #[error("docker engine answer incomplete while trying to {op}: missing {field}")]
    Incomplete {
        /// What was being done.
        op: String,
        /// The missing field.
        field: &'static str,
    },
    /// A restart was cancelled after it began to stop `container`, before starting it again.
    #[error("cancelled: container `{container}` was stopped (or is still stopping) and was not started again")]
    RestartCancelled {
        /// The container being restarted.
        container: String,
    },
    /// The target is empty.
    #[error("no target given: name an allowlisted service or `all` (allowlist: {allowlist})")]
    EmptyTarget {
        /// The allowlist, comma separated.
        allowlist: String,
    },
    /// The target is spelled in a way no service is named: it is refused, never repaired.
    #[error("{0}; name an allowlisted service exactly, or `all`")]
    InvalidTarget(#[from] TargetError),
    /// The target is not an allowlisted service.
    #[error("service `{target}` is not in the ops allowlist (allowlist: {allowlist})")]
    NotAllowlisted {
        /// The refused target.
        target: String,
        /// The allowlist, comma separated.
        allowlist: String,
    },
    /// The service has no containers at all.
    #[error("service `{service}` has no containers (label {label}={service})")]
    NoContainers {
        /// The service.
        service: String,
        /// The service label.
        label: String,
    },
    /// A container of the service must not be touched; nothing was done.
    #[error("refusing to act on service `{service}`: container `{container}` is protected because {reason}; nothing was done")]
    Protected {
        /// The service.
        service: String,
        /// The protected container's name.
        container: String,
        /// Why it is protected.
        reason: Refusal,
    },
    /// The image a deploy asked for contains `nats`.
    #[error("refusing to deploy image `{image}` to service `{service}`: it contains `nats` (the worker never acts on NATS)")]
    NatsImage {
        /// The service.
        service: String,
        /// The refused image.
        image: String,
    },
    /// The image is not in the engine's local store. Nothing is pulled: no registry is reachable.
    #[error(
        "image `{image}` is not present locally on the docker engine ({detail}); it is not pulled \
         (no registry is reachable): load or build it on this host first"
    )]
    ImageMissing {
        /// The image reference.
        image: String,
        /// The engine's message.
        detail: String,
    },
    /// A container started again (after a failed replacement) is not running.
    #[error("old container `{container}` was started again but is not running (state {state})")]
    NotRunningAgain {
        /// The old container's name.
        container: String,
        /// Its state after the start.
        state: String,
    },
    /// An operation over several containers stopped part way.
    #[error("{source} (already done before the failure: {})", done.join(", "))]
    Partial {
        /// Containers the operation had already completed.
        done: Vec<String>,
        /// The failure.
        #[source]
        source: Box<DockerError>,
    },
}

impl DockerError {
    /// True when the engine answered 404 (the object does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DockerError::Engine {
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                },
                ..
            }
        )
    }
}

/// What made a deploy fail. Goes inside [`DeployError`].
#[derive(Debug, thiserror::Error)]
pub enum DeployFailure {
    /// A precondition was refused or an engine call failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// `replicas` was zero.
    #[error("replicas must be at least 1 (use halt to stop a service)")]
    ZeroReplicas,
    /// More replicas of a service whose containers bind fixed host ports: only one can bind them.
    #[error("cannot scale to {replicas} replicas: the service's containers bind fixed host port(s) {}, which only one container can hold (publish a port range or put a load balancer in front)", ports.join(", "))]
    ScaleOnFixedHostPorts {
        /// The requested replicas.
        replicas: u32,
        /// The fixed host ports.
        ports: Vec<String>,
    },
    /// The new container stopped running.
    #[error(
        "new container `{container}` exited{} before it was ready; last log lines:\n{logs}",
        exit_code.map(|c| format!(" with code {c}")).unwrap_or_default()
    )]
    Exited {
        /// The new container's name.
        container: String,
        /// Its exit code, if the engine reported one.
        exit_code: Option<i64>,
        /// Its last log lines (stdout and stderr, with timestamps).
        logs: String,
    },
    /// The engine restarted the new container (restart policy) during the settle period.
    #[error(
        "new container `{container}` restarted {restarts} time(s) instead of staying up{}; last log lines:\n{logs}",
        exit_code.map(|c| format!(" (last exit code {c})")).unwrap_or_default()
    )]
    Restarted {
        /// The new container's name.
        container: String,
        /// How many restarts were seen.
        restarts: i64,
        /// Last exit code.
        exit_code: Option<i64>,
        /// Its last log lines.
        logs: String,
    },
    /// The new container's health check reported unhealthy.
    #[error("new container `{container}` became unhealthy; last health check output: {detail}")]
    Unhealthy {
        /// The new container's name.
        container: String,
        /// Output of the last health check.
        detail: String,
    },
    /// The new container was not running (and healthy) within the ready timeout.
    #[error("new container `{container}` was not ready within {waited:?} (state {state}, health {health})")]
    NotReady {
        /// The new container's name.
        container: String,
        /// The ready timeout.
        waited: Duration,
        /// Its last state.
        state: String,
        /// Its last health status (`none` without a health check).
        health: String,
    },
    /// The deploy was cancelled.
    #[error("cancelled{}", container.as_ref().map(|c| format!(" while starting new container `{c}`")).unwrap_or_default())]
    Cancelled {
        /// The new container being started when the cancel arrived, if any.
        container: Option<String>,
    },
}

/// A failed deploy: what failed, and in which state it left the service.
#[derive(Debug, thiserror::Error)]
pub struct DeployError {
    /// The service.
    pub service: String,
    /// The image being deployed.
    pub image: String,
    /// What failed.
    #[source]
    pub failure: DeployFailure,
    /// True when the failure happened while a new container was being created, started or proven
    /// up, and everything of that new container was removed again: the old container of that
    /// step is untouched (still running if it was). False when the deploy was refused before any
    /// change (see `failure`), or when the clean-up failed too (see `cleanup_error`).
    pub rolled_back: bool,
    /// Old containers already replaced by new ones before the failure (those stay replaced).
    pub replaced: Vec<Replacement>,
    /// Containers added while scaling up before the failure (those stay).
    pub added: Vec<String>,
    /// Set when removing the failed new container during the roll back failed as well, or when
    /// an old container stopped for its host ports could not be started again.
    pub cleanup_error: Option<String>,
    /// The fixed host ports for which the old container of the failed step was stopped before
    /// its replacement started; `None` when it was left running.
    pub stopped_first_for_ports: Option<Vec<String>>,
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deploy of image `{}` to service `{}` failed: {}",
            self.image, self.service, self.failure
        )?;
        if self.rolled_back {
            f.write_str("; rolled back: the new container was removed and the old one kept")?;
            if let Some(ports) = &self.stopped_first_for_ports {
                write!(
                    f,
                    " (it had been stopped to free host port(s) {} and was started again)",
                    ports.join(", ")
                )?;
            }
        }
        if let Some(e) = &self.cleanup_error {
            write!(f, "; roll back incomplete: {e}")?;
        }
        if !self.replaced.is_empty() {
            let list: Vec<String> = self
                .replaced
                .iter()
                .map(|r| format!("{} -> {}", r.old, r.new))
                .collect();
            write!(
                f,
                "; already replaced before the failure: {}",
                list.join(", ")
            )?;
        }
        if !self.added.is_empty() {
            write!(
                f,
                "; already added before the failure: {}",
                self.added.join(", ")
            )?;
        }
        Ok(())
    }
}
