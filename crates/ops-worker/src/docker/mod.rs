//! The Docker engine, through bollard: a typed layer the executor uses to restart, stop and
//! deploy services and to collect evidence about them (SPEC §5).
//!
//! A *service* is the set of containers whose [`DockerConfig::service_label`] (compose's
//! `com.docker.compose.service` by default) has the service's name as value. The layer only
//! acts on services of the configured allowlist, named exactly (canonical names of
//! [`contracts::target`]; nothing is trimmed), and never on a container that is protected
//! (see [`guard::refusal`]): one labelled `orion.protected=true`, one whose name or image
//! contains `nats`, or the worker's own container. A refusal stops the whole command before
//! anything is done.
//!
//! Every engine call runs under [`DockerConfig::call_timeout`] (plus the stop grace period
//! where the engine waits for that), so a hung engine cannot block the worker; errors name the
//! service, the container and the operation that failed.
//!
//! Modules: [`config`] (configuration and its validation), [`error`] (errors), [`guard`] (the
//! safety rules), [`model`] (what the layer returns); the deploy rollout and the replacement
//! container's configuration live in private modules.

pub mod config;
mod deploy;
pub mod error;
pub mod guard;
mod logs;
pub mod model;
mod template;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use contracts::target::{CanonicalTarget, OpsTarget};
use futures::TryStreamExt;

pub use config::{
    detect_self_id, ConfigError, DockerConfig, EngineOptions, ALL_TARGET, COMPOSE_SERVICE_LABEL,
    FORBIDDEN_SERVICES,
};
pub use error::{DeployError, DeployFailure, DockerError, Refusal};
pub use guard::PROTECTED_LABEL;
pub use model::{ContainerEvidence, ContainerInfo, DeployReport, Replacement};
pub use tokio_util::sync::CancellationToken;

/// The most bytes of log output kept per container (1 MiB): the newest ones, from the first
/// whole line. Applies to evidence bundles and to the logs a failed deploy reports.
pub const MAX_LOG_BYTES: usize = 1024 * 1024;

/// bollard's own per-request timeout. Ours ([`DockerConfig::call_timeout`]) is the one that
/// matters; this only has to be longer than any of ours.
const BOLLARD_TIMEOUT_SECS: u64 = 24 * 3600;

/// A connection to the Docker engine plus the rules of what the worker may do there.
///
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    config: Arc<DockerConfig>,
    options: Arc<EngineOptions>,
}

impl Engine {
    /// Validates `config`, connects to the engine's socket and negotiates the API version (the
    /// engine may speak an older API than bollard's default, e.g. 1.41 for Docker 20.10).
    ///
    /// Fails with [`DockerError::SocketMissing`] when the socket does not exist, and
    /// [`DockerError::Unreachable`] / [`DockerError::Timeout`] when the engine does not answer.
    pub async fn connect(config: DockerConfig) -> Result<Engine, DockerError> {
        Self::connect_with(config, EngineOptions::default()).await
    }

    /// [`Engine::connect`] with explicit [`EngineOptions`] (deploy settle period, stop grace
    /// period, the worker's own container id).
    pub async fn connect_with(
        config: DockerConfig,
        options: EngineOptions,
    ) -> Result<Engine, DockerError> {
        config.validate()?;
        options.validate()?;
        let socket = config.socket.clone();
        if !socket.exists() {
            return Err(DockerError::SocketMissing { socket });
        }
        let docker = Docker::connect_with_socket(
            &socket.to_string_lossy(),
            BOLLARD_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|source| DockerError::Unreachable {
            socket: socket.clone(),
            source,
        })?;
        let docker =
            match tokio::time::timeout(config.call_timeout, docker.negotiate_version()).await {
                Err(_) => {
                    return Err(DockerError::Timeout {
                        op: format!(
                            "negotiate the API version with the engine at {}",
                            socket.display()
                        ),
                        after: config.call_timeout,
                    })
                }
                Ok(Err(source)) => return Err(DockerError::Unreachable { socket, source }),
                Ok(Ok(docker)) => docker,
            };
        tracing::info!(
            socket = %config.socket.display(),
            api_version = %docker.client_version(),
            "connected to the docker engine"
        );
        Ok(Engine {
            docker,
            config: Arc::new(config),
            options: Arc::new(options),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The options in use.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Expands a command target into the services to act on: `all` gives every allowlisted
    /// service (sorted), an allowlisted name gives itself. A name that is not canonical
    /// (`"web "`, `"Web"`, …) is refused as it is, not trimmed or case-folded into a service;
    /// anything else is an error that names the allowlist.
    pub fn allowlisted(&self, target: &str) -> Result<Vec<String>, DockerError> {
        if target.is_empty() {
            return Err(DockerError::EmptyTarget {
                allowlist: self.allowlist_text(),
            });
        }
        match OpsTarget::parse(target)? {
            OpsTarget::All => Ok(self.config.allowlist.iter().cloned().collect()),
            OpsTarget::One(service) => {
                self.check_service(service.as_str())?;
                Ok(vec![service.to_string()])
            }
        }
    }

    /// The containers of `service` in every state, sorted by name. An allowlisted service with
    /// no containers gives an empty list. Protected containers are listed too (listing is
    /// read-only).
    pub async fn containers(&self, service: &str) -> Result<Vec<ContainerInfo>, DockerError> {
        self.check_service(service)?;
        Ok(self
            .inspect_service(service)
            .await?
            .into_iter()
            .map(|(_, info)| info)
            .collect())
    }

    /// Restarts every container of `service`: stop (each given `timeout` before it is killed),
    /// then start. `cancel` is honoured between the two: a cancelled restart may leave a
    /// container stopping (the engine finishes a stop it began), but never starts one after
    /// the cancel, so a `halt` that waited for it has the last word. Returns the names of the
    /// containers restarted, in name order.
    ///
    /// Errors: [`DockerError::RestartCancelled`] with what was already restarted, or what
    /// [`Engine::stop`] returns, wrapped in [`DockerError::Partial`] once something was done.
    pub async fn restart(
        &self,
        service: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, DockerError> {
        let targets = self.guarded(service).await?;
        let mut done = Vec::new();
        for c in targets {
            let stopped = tokio::select! {
                stopped = self.stop_container(service, &c.id, &c.name, timeout) => stopped,
                () = cancel.cancelled() => Err(DockerError::RestartCancelled { container: c.name.clone() }),
            };
            if let Err(e) = stopped {
                return Err(partial(done, e));
            }
            if cancel.is_cancelled() {
                let e = DockerError::RestartCancelled {
                    container: c.name.clone(),
                };
                return Err(partial(done, e));
            }
            let what = format!("container `{}` of service `{service}`", c.name);
            if let Err(e) = self.start_container(&c.id, &what).await {
                return Err(partial(done, e));
            }
            done.push(c.name);
        }
        Ok(done)
    }

    /// Stops every container of `service`, giving each `timeout` before it is killed.
    /// Containers already stopped count as stopped. Returns the names, in name order.
    ///
    /// Errors as for [`Engine::restart`].
    pub async fn stop(&self, service: &str, timeout: Duration) -> Result<Vec<String>, DockerError> {
        let targets = self.guarded(service).await?;
        let mut done = Vec::new();
        for c in targets {
            if let Err(e) = self.stop_container(service, &c.id, &c.name, timeout).await {
                return Err(partial(done, e));
            }
            done.push(c.name);
        }
        Ok(done)
    }

    /// Evidence about every container of `service`: the inspect answer as JSON and the last
    /// `log_lines` lines of its logs (stdout and stderr, with timestamps), at most
    /// [`MAX_LOG_BYTES`] of them. Both are redacted ([`crate::redact::container`]: every
    /// environment value, credential-like labels and arguments, URL user info, and those
    /// secrets in the logs) before they leave this function. A service without containers
    /// gives an empty list. Read-only, so protected containers are included.
    pub async fn evidence(
        &self,
        service: &str,
        log_lines: usize,
    ) -> Result<Vec<ContainerEvidence>, DockerError> {
        self.check_service(service)?;
        let mut out = Vec::new();
        for (inspect, info) in self.inspect_service(service).await? {
            let (mut logs, mut logs_truncated) = self
                .tail_logs(service, &info.id, &info.name, log_lines)
                .await?;
            let op = || {
                format!(
                    "encode the inspect data of container `{}` of service `{service}`",
                    info.name
                )
            };
            let mut inspect = serde_json::to_value(&inspect).map_err(|e| DockerError::Engine {
                op: op(),
                source: bollard::errors::Error::from(e),
            })?;
            let redactions = crate::redact::container(&mut inspect, &mut logs);
            // A marker can be longer than the secret it replaced.
            if logs.len() > MAX_LOG_BYTES {
                logs = logs::keep_last(logs, MAX_LOG_BYTES).0;
                logs_truncated = true;
            }
            out.push(ContainerEvidence {
                name: info.name,
                inspect,
                logs,
                logs_truncated,
                redactions,
            });
        }
        Ok(out)
    }

    // ----- building blocks shared with the deploy module -----

    /// Runs one engine call under the call timeout (plus `extra`), naming `op` in errors.
    async fn call<T>(
        &self,
        op: String,
        extra: Duration,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        let after = self.config.call_timeout.saturating_add(extra);
        match tokio::time::timeout(after, fut).await {
            Err(_) => Err(DockerError::Timeout { op, after }),
            Ok(Err(source)) => Err(DockerError::Engine { op, source }),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// Refuses a service that is not a canonical name (`all` is not one) or not in the
    /// allowlist.
    fn check_service(&self, service: &str) -> Result<(), DockerError> {
        CanonicalTarget::parse(service)?;
        if self.config.allowlist.contains(service) {
            Ok(())
        } else {
            Err(DockerError::NotAllowlisted {
                target: service.to_owned(),
                allowlist: self.allowlist_text(),
            })
        }
    }

    fn allowlist_text(&self) -> String {
        if self.config.allowlist.is_empty() {
            "empty".to_owned()
        } else {
            self.config
                .allowlist
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// The allowlisted service's containers, refusing the whole service when it has none or
    /// when any of them is protected.
    async fn guarded(&self, service: &str) -> Result<Vec<ContainerInfo>, DockerError> {
        let containers = self.containers(service).await?;
        if containers.is_empty() {
            return Err(DockerError::NoContainers {
                service: service.to_owned(),
                label: self.config.service_label.clone(),
            });
        }
        for c in &containers {
            if let Some(reason) = guard::refusal(c, self.options.self_id.as_deref()) {
                return Err(DockerError::Protected {
                    service: service.to_owned(),
                    container: c.name.clone(),
                    reason,
                });
            }
        }
        Ok(containers)
    }

    /// Inspects every container carrying the service label, sorted by name. Containers that
    /// disappear between listing and inspecting are skipped.
    async fn inspect_service(
        &self,
        service: &str,
    ) -> Result<Vec<(ContainerInspectResponse, ContainerInfo)>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(
                [(
                    "label".to_owned(),
                    vec![format!("{}={service}", self.config.service_label)],
                )]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        };
        let op = format!("list the containers of service `{service}`");
        let listed = self
            .call(
                op,
                Duration::ZERO,
                self.docker.list_containers(Some(options)),
            )
            .await?;
        let mut out = Vec::new();
        for summary in listed {
            let Some(id) = summary.id else { continue };
            let what = format!("container {id} of service `{service}`");
            let inspect = match self.inspect(&id, &what).await {
                Ok(inspect) => inspect,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let info =
                ContainerInfo::from_inspect(&inspect).ok_or_else(|| DockerError::Incomplete {
                    op: format!("inspect {what}"),
                    field: "Id",
                })?;
            out.push((inspect, info));
        }
        out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        Ok(out)
    }

    /// Inspects one container; `what` describes it in errors.
    async fn inspect(&self, id: &str, what: &str) -> Result<ContainerInspectResponse, DockerError> {
        let options = InspectContainerOptions { size: false };
        self.call(
            format!("inspect {what}"),
            Duration::ZERO,
            self.docker.inspect_container(id, Some(options)),
        )
        .await
    }

    /// Starts one container; `what` describes it in errors.
    async fn start_container(&self, id_or_name: &str, what: &str) -> Result<(), DockerError> {
        self.call(
            format!("start {what}"),
            Duration::ZERO,
            self.docker
                .start_container(id_or_name, None::<StartContainerOptions>),
        )
        .await
    }

    /// Stops one container with a grace period.
    async fn stop_container(
        &self,
        service: &str,
        id: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(grace_secs(timeout)),
            signal: None,
        };
        let op = format!("stop container `{name}` of service `{service}`");
        self.call(op, timeout, self.docker.stop_container(id, Some(options)))
            .await
    }

    /// Removes one container, running or not; an already removed one counts as removed.
    async fn remove_container(&self, service: &str, id_or_name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        let op = format!("remove container `{id_or_name}` of service `{service}`");
        match self
            .call(
                op,
                Duration::ZERO,
                self.docker.remove_container(id_or_name, Some(options)),
            )
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The last `lines` log lines of a container, stdout and stderr, with timestamps, at most
    /// [`MAX_LOG_BYTES`] of them; and whether older lines were dropped for that cap.
    async fn tail_logs(
        &self,
        service: &str,
        id: &str,
        name: &str,
        lines: usize,
    ) -> Result<(String, bool), DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let collect = self.docker.logs(id, Some(options)).try_fold(
            logs::Tail::new(MAX_LOG_BYTES),
            |mut tail, chunk| async move {
                tail.push(&chunk.into_bytes());
                Ok(tail)
            },
        );
        let op = format!("read the logs of container `{name}` of service `{service}`");
        Ok(self.call(op, Duration::ZERO, collect).await?.finish())
    }
}

/// A grace period in whole seconds for the engine, rounded up.
fn grace_secs(timeout: Duration) -> i32 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Wraps an error of a multi-container operation with what was already done.
fn partial(done: Vec<String>, error: DockerError) -> DockerError {
    if done.is_empty() {
        error
    } else {
        DockerError::Partial {
            done,
            source: Box::new(error),
        }
    }
}
