//! The deploy rollout (SPEC §5): replace a service's containers with a new image one at a
//! time, each new container proven up before its old one goes, and roll the step back when it
//! is not.

use std::time::Duration;

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum, NetworkConnectRequest,
};
use bollard::query_parameters::CreateContainerOptions;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{DeployError, DeployFailure, DockerError};
use super::guard::mentions_nats;
use super::model::{ContainerInfo, DeployReport, Replacement};
use super::template::{self, Template};
use super::Engine;

/// How often a starting container's state is polled.
const POLL: Duration = Duration::from_millis(200);

impl Engine {
    /// Replaces the containers of `service` with containers of `image`, one at a time.
    ///
    /// For each old container (in name order): create a new one named `<service>-<8 hex>` with
    /// the old one's settings on the new image (see the `template` module: command, entrypoint,
    /// environment and labels the container set itself, working dir, restart policy, binds,
    /// networks, …), start it, wait until it runs — and is healthy when it has a health check —
    /// within `ready_timeout`, then check it is still up, and not restarted, after
    /// [`EngineOptions::settle`](super::EngineOptions::settle). Only then is the old container
    /// stopped (grace period
    /// [`EngineOptions::deploy_stop_timeout`](super::EngineOptions::deploy_stop_timeout)) and
    /// removed. If the new container fails (exits, turns unhealthy, restarts, is not ready in
    /// time, or `cancel` fires) it is removed, the old one is left as it was, the rollout stops
    /// and the error has `rolled_back: true` (with the exit code and last log lines when it
    /// exited).
    ///
    /// With `replicas: Some(n)`, after the rollout containers are added (same settings, new
    /// image, each proven up the same way) or the newest removed until exactly `n` remain.
    ///
    /// `image` must already be present on the engine: nothing is pulled (no registry is
    /// reachable), a missing image fails with [`DockerError::ImageMissing`] before anything is
    /// touched. The service must be allowlisted, have at least one container, and none of its
    /// containers may be protected; an image containing `nats` is refused.
    ///
    /// `cancel` is checked between steps and while waiting; a cancelled deploy keeps what was
    /// completed before (listed in the error) and rolls back the step in progress. Single engine
    /// calls are not interrupted, they are bounded by the call timeout.
    ///
    /// A container that binds fixed host ports (`-p 8080:80`) cannot run next to its
    /// replacement: it is stopped first, and started again if the replacement fails — a short
    /// outage, reported in [`Replacement::stopped_first_for_ports`]. Scaling such a service up
    /// is refused before anything changes: its replicas would all need the same host ports.
    ///
    /// Limits: new containers are named `<service>-<8 hex>`, not compose's `<project>-<service>-N`.
    pub async fn deploy(
        &self,
        service: &str,
        image: &str,
        replicas: Option<u32>,
        ready_timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<DeployReport, DeployError> {
        let mut run = Rollout {
            engine: self,
            service,
            image,
            ready_timeout,
            cancel,
            replaced: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
        };
        match run.execute(replicas).await {
            Ok(report) => {
                tracing::info!(
                    service,
                    image,
                    replaced = report.replaced.len(),
                    "deploy done"
                );
                Ok(report)
            }
            Err(step) => {
                let error = DeployError {
                    service: service.to_owned(),
                    image: image.to_owned(),
                    failure: *step.failure,
                    rolled_back: step.rolled_back,
                    replaced: run.replaced,
                    added: run.added,
                    cleanup_error: step.cleanup_error,
                    stopped_first_for_ports: step.stopped_first_for_ports,
                };
                tracing::warn!(service, image, error = %error, "deploy failed");
                Err(error)
            }
        }
    }

    /// The id of a locally present image; [`DockerError::ImageMissing`] when the engine does not
    /// have it.
    async fn local_image_id(&self, image: &str) -> Result<String, DockerError> {
        let op = format!("inspect image `{image}`");
        match self
            .call(op.clone(), Duration::ZERO, self.docker.inspect_image(image))
            .await
        {
            Ok(inspect) => inspect
                .id
                .ok_or(DockerError::Incomplete { op, field: "Id" }),
            Err(DockerError::Engine {
                source:
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        message,
                    },
                ..
            }) => Err(DockerError::ImageMissing {
                image: image.to_owned(),
                detail: message,
            }),
            Err(e) => Err(e),
        }
    }
}

/// Why one step failed, and whether it was undone.
struct StepError {
    // Boxed: the failure is large and every step returns it on the error path only.
    failure: Box<DeployFailure>,
    rolled_back: bool,
    cleanup_error: Option<String>,
    stopped_first_for_ports: Option<Vec<String>>,
}

impl From<DockerError> for StepError {
    fn from(e: DockerError) -> Self {
        DeployFailure::Docker(e).into()
    }
}

impl From<DeployFailure> for StepError {
    fn from(failure: DeployFailure) -> Self {
        StepError {
            failure: Box::new(failure),
            rolled_back: false,
            cleanup_error: None,
            stopped_first_for_ports: None,
        }
    }
}

/// One deploy in progress.
struct Rollout<'a> {
    engine: &'a Engine,
    service: &'a str,
    image: &'a str,
    ready_timeout: Duration,
    cancel: &'a CancellationToken,
    replaced: Vec<Replacement>,
    added: Vec<String>,
    removed: Vec<String>,
}

impl Rollout<'_> {
    async fn execute(&mut self, replicas: Option<u32>) -> Result<DeployReport, StepError> {
        let (engine, service, image) = (self.engine, self.service, self.image);
        engine.check_service(service)?;
        if mentions_nats(image) {
            return Err(DockerError::NatsImage {
                service: service.into(),
                image: image.into(),
            }
            .into());
        }
        if replicas == Some(0) {
            return Err(DeployFailure::ZeroReplicas.into());
        }
        let image_id = engine.local_image_id(image).await?;
        let olds = engine.guarded(service).await?;
        if let Some(n) = replicas.filter(|&n| n as usize > olds.len()) {
            let ports = self.template_from(&olds[0]).await?.fixed_host_ports();
            if !ports.is_empty() {
                return Err(DeployFailure::ScaleOnFixedHostPorts { replicas: n, ports }.into());
            }
        }

        let mut template = None;
        for old in &olds {
            self.check_cancel()?;
            let t = self.template_from(old).await?;
            let ports = t.fixed_host_ports();
            let new = if ports.is_empty() {
                let new = self.launch(&t).await?;
                self.retire(old, &new).await?;
                new
            } else {
                self.replace_stopped_first(old, &t, &ports).await?
            };
            self.replaced.push(Replacement {
                old: old.name.clone(),
                new,
                stopped_first_for_ports: ports,
            });
            template = Some(t);
        }

        if let (Some(n), Some(template)) = (replicas, template) {
            let mut current = engine.containers(service).await?;
            let n = n as usize;
            while current.len() + self.added.len() < n {
                self.check_cancel()?;
                let name = self.launch(&template).await?;
                self.added.push(name);
            }
            if current.len() > n {
                // Newest first; the name breaks ties so the order is stable.
                current.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
                for extra in current.iter().take(current.len() - n) {
                    self.check_cancel()?;
                    engine
                        .stop_container(
                            service,
                            &extra.id,
                            &extra.name,
                            engine.options.deploy_stop_timeout,
                        )
                        .await?;
                    engine.remove_container(service, &extra.id).await?;
                    self.removed.push(extra.name.clone());
                }
            }
        }

        let containers = engine
            .containers(service)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        Ok(DeployReport {
            service: service.to_owned(),
            image: image.to_owned(),
            image_id,
            replaced: std::mem::take(&mut self.replaced),
            added: std::mem::take(&mut self.added),
            removed: std::mem::take(&mut self.removed),
            containers,
        })
    }

    fn check_cancel(&self) -> Result<(), StepError> {
        if self.cancel.is_cancelled() {
            Err(DeployFailure::Cancelled { container: None }.into())
        } else {
            Ok(())
        }
    }

    /// The replacement's settings, from the old container and its image.
    async fn template_from(&self, old: &ContainerInfo) -> Result<Template, StepError> {
        let what = format!("container `{}` of service `{}`", old.name, self.service);
        let inspect = self.engine.inspect(&old.id, &what).await?;
        // Without the old image (removed with `--force`) every setting is copied as is.
        let op = format!("inspect image {} of {what}", old.image_id);
        let old_image = self
            .engine
            .call(
                op,
                Duration::ZERO,
                self.engine.docker.inspect_image(&old.image_id),
            )
            .await
            .ok()
            .and_then(|i| i.config);
        Ok(template::replacement(
            &inspect,
            old_image.as_ref(),
            self.image,
            &self.engine.config.service_label,
            self.service,
        ))
    }

    /// Creates, starts and proves up one new container; on failure removes it again.
    async fn launch(&self, template: &Template) -> Result<String, StepError> {
        let name = format!(
            "{}-{}",
            self.service,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        match self.start_and_wait(&name, template).await {
            Ok(()) => Ok(name),
            Err(failure) => {
                // By name: also removes a container whose creation answer was lost to a timeout.
                let cleanup = self.engine.remove_container(self.service, &name).await;
                Err(StepError {
                    failure: Box::new(failure),
                    rolled_back: cleanup.is_ok(),
                    cleanup_error: cleanup
                        .err()
                        .map(|e| format!("the failed new container could not be removed: {e}")),
                    stopped_first_for_ports: None,
                })
            }
        }
    }

    async fn start_and_wait(&self, name: &str, template: &Template) -> Result<(), DeployFailure> {
        let (engine, service) = (self.engine, self.service);
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            platform: String::new(),
        };
        let op = format!(
            "create container `{name}` for service `{service}` from image `{}`",
            self.image
        );
        engine
            .call(
                op,
                Duration::ZERO,
                engine
                    .docker
                    .create_container(Some(options), template.body.clone()),
            )
            .await?;
        for (network, endpoint) in &template.extra_networks {
            let request = NetworkConnectRequest {
                container: name.to_owned(),
                endpoint_config: Some(endpoint.clone()),
            };
            let op =
                format!("connect container `{name}` of service `{service}` to network `{network}`");
            engine
                .call(
                    op,
                    Duration::ZERO,
                    engine.docker.connect_network(network, request),
                )
                .await?;
        }
        if self.cancel.is_cancelled() {
            return Err(DeployFailure::Cancelled {
                container: Some(name.to_owned()),
            });
        }
        engine
            .start_container(name, &format!("container `{name}` of service `{service}`"))
            .await?;
        self.wait_ready(name).await
    }

    /// Waits until the new container runs (and is healthy, with a health check), then checks it
    /// is still up, and was not restarted, after the settle period.
    async fn wait_ready(&self, name: &str) -> Result<(), DeployFailure> {
        let deadline = Instant::now() + self.ready_timeout;
        let what = format!("new container `{name}` of service `{}`", self.service);
        let ready = loop {
            let inspect = self.engine.inspect(name, &what).await?;
            match self.judge(name, &inspect).await? {
                Some(ready) => break ready,
                None if Instant::now() >= deadline => {
                    let state = inspect.state.unwrap_or_default();
                    return Err(DeployFailure::NotReady {
                        container: name.to_owned(),
                        waited: self.ready_timeout,
                        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
                        health: state
                            .health
                            .and_then(|h| h.status)
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "none".to_owned()),
                    });
                }
                None => {
                    self.pause(
                        name,
                        POLL.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await?
                }
            }
        };

        self.pause(name, self.engine.options.settle).await?;
        let inspect = self.engine.inspect(name, &what).await?;
        let started_at = inspect.state.as_ref().and_then(|s| s.started_at.clone());
        if started_at != ready {
            return Err(self.restarted(name, &inspect).await);
        }
        match self.judge(name, &inspect).await? {
            Some(_) => Ok(()),
            // Still running but its health went back to `starting`: cannot happen with Docker,
            // treat as not ready.
            None => Err(DeployFailure::NotReady {
                container: name.to_owned(),
                waited: self.ready_timeout,
                state: "running".to_owned(),
                health: "starting".to_owned(),
            }),
        }
    }

    /// `Some(started_at)` when ready, `None` when still starting, an error when it failed.
    async fn judge(
        &self,
        name: &str,
        inspect: &ContainerInspectResponse,
    ) -> Result<Option<Option<String>>, DeployFailure> {
        let state = inspect.state.clone().unwrap_or_default();
        if inspect.restart_count.unwrap_or(0) > 0 {
            return Err(self.restarted(name, inspect).await);
        }
        let running = state.running.unwrap_or(false);
        if matches!(
            state.status,
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
        ) {
            return Err(DeployFailure::Exited {
                container: name.to_owned(),
                exit_code: state.exit_code,
                logs: self.failure_logs(name).await,
            });
        }
        if !running {
            return Ok(None);
        }
        let health = state.health.as_ref();
        match health.and_then(|h| h.status) {
            Some(HealthStatusEnum::STARTING) => Ok(None),
            Some(HealthStatusEnum::UNHEALTHY) => Err(DeployFailure::Unhealthy {
                container: name.to_owned(),
                detail: health
                    .and_then(|h| h.log.as_ref())
                    .and_then(|log| log.last())
                    .map(|r| {
                        format!(
                            "exit code {}: {}",
                            r.exit_code.unwrap_or(-1),
                            r.output.as_deref().unwrap_or("").trim()
                        )
                    })
                    .unwrap_or_else(|| "no health check output".to_owned()),
            }),
            _ => Ok(Some(state.started_at)),
        }
    }

    async fn restarted(&self, name: &str, inspect: &ContainerInspectResponse) -> DeployFailure {
        DeployFailure::Restarted {
            container: name.to_owned(),
            restarts: inspect.restart_count.unwrap_or(0).max(1),
            exit_code: inspect.state.as_ref().and_then(|s| s.exit_code),
            logs: self.failure_logs(name).await,
        }
    }

    /// The failed container's last log lines, or why they could not be read.
    async fn failure_logs(&self, name: &str) -> String {
        let lines = self.engine.options.failure_log_lines;
        match self.engine.tail_logs(self.service, name, name, lines).await {
            Ok((logs, _)) => logs,
            Err(e) => format!("(logs unavailable: {e})"),
        }
    }

    /// Sleeps `period` unless cancelled first.
    async fn pause(&self, name: &str, period: Duration) -> Result<(), DeployFailure> {
        tokio::select! {
            () = self.cancel.cancelled() => {
                Err(DeployFailure::Cancelled { container: Some(name.to_owned()) })
            }
            () = tokio::time::sleep(period) => Ok(()),
        }
    }

    /// Replaces `old`, which binds fixed host `ports`, by stopping it first so its replacement
    /// can bind them; when the replacement fails, `old` is started again.
    async fn replace_stopped_first(
        &self,
        old: &ContainerInfo,
        template: &Template,
        ports: &[String],
    ) -> Result<String, StepError> {
        let (engine, service) = (self.engine, self.service);
        tracing::info!(
            service,
            container = %old.name,
            ports = %ports.join(", "),
            "binds fixed host ports: stopping it before its replacement starts"
        );
        let timeout = engine.options.deploy_stop_timeout;
        engine
            .stop_container(service, &old.id, &old.name, timeout)
            .await?;
        match self.launch(template).await {
            Ok(new) => {
                engine
                    .remove_container(service, &old.id)
                    .await
                    .map_err(|e| old_not_removed(old, &new, e))?;
                Ok(new)
            }
            Err(mut step) => {
                step.stopped_first_for_ports = Some(ports.to_vec());
                if let Err(e) = self.start_again(old).await {
                    step.rolled_back = false;
                    let note = format!("the old container could not be started again: {e}");
                    step.cleanup_error = Some(match step.cleanup_error.take() {
                        Some(earlier) => format!("{earlier}; {note}"),
                        None => note,
                    });
                }
                Err(step)
            }
        }
    }

    /// Starts a container this rollout stopped, and checks that it runs.
    async fn start_again(&self, old: &ContainerInfo) -> Result<(), DockerError> {
        let (engine, service) = (self.engine, self.service);
        let what = format!("old container `{}` of service `{service}`", old.name);
        engine.start_container(&old.id, &what).await?;
        let state = engine
            .inspect(&old.id, &what)
            .await?
            .state
            .unwrap_or_default();
        if state.running.unwrap_or(false) {
            Ok(())
        } else {
            Err(DockerError::NotRunningAgain {
                container: old.name.clone(),
                state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            })
        }
    }

    /// Stops and removes an old container once its replacement `new` is up.
    async fn retire(&self, old: &ContainerInfo, new: &str) -> Result<(), StepError> {
        let engine = self.engine;
        let service = self.service;
        let stopped = engine
            .stop_container(
                service,
                &old.id,
                &old.name,
                engine.options.deploy_stop_timeout,
            )
            .await;
        let result = match stopped {
            Ok(()) => engine.remove_container(service, &old.id).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| old_not_removed(old, new, e))
    }
}

/// The step's new container is up and stays, serving; only the old one lingers.
fn old_not_removed(old: &ContainerInfo, new: &str, error: DockerError) -> StepError {
    StepError::from(DockerError::Partial {
        done: vec![format!(
            "{} -> {new} (new container up, old one not removed)",
            old.name
        )],
        source: Box::new(error),
    })
}
