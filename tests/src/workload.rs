//! A service on the Docker engine for the platform to look after: containers labelled as the
//! service, removed when dropped.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;

/// The label naming a container's service (compose's, ops-worker's default).
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// A named service with one container to start with.
pub struct Workload {
    pub name: String,
    docker: Docker,
}

impl Workload {
    /// Starts one container of `name` (busybox sleeping, stopped at once); removes any
    /// leftovers of it first.
    pub async fn start(docker: &Docker, name: &str) -> Result<Self> {
        Self::start_stopping_with(docker, name, "SIGKILL").await
    }

    /// [`Workload::start`] whose container is stopped with `stop_signal`: with `SIGTERM`, which
    /// busybox's sleep as PID 1 ignores, a stop takes the whole grace period.
    pub async fn start_stopping_with(
        docker: &Docker,
        name: &str,
        stop_signal: &str,
    ) -> Result<Self> {
        crate::images::ensure_test_images(docker).await;
        let workload = Self {
            name: name.to_string(),
            docker: docker.clone(),
        };
        workload.remove_all().await;
        let body = ContainerCreateBody {
            image: Some(crate::images::BUSYBOX_1.to_string()),
            labels: Some(HashMap::from([(
                SERVICE_LABEL.to_string(),
                name.to_string(),
            )])),
            stop_signal: Some(stop_signal.into()),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("{name}-1")),
            ..Default::default()
        };
        let id = docker
            .create_container(Some(options), body)
            .await
            .context("creating the workload container")?
            .id;
        docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .context("starting it")?;
        Ok(workload)
    }

    /// The service's containers as Docker sees them, sorted by name.
    pub async fn containers(&self) -> Vec<ContainerInspectResponse> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{SERVICE_LABEL}={}", self.name)],
            )])),
            ..Default::default()
        };
        let mut out = Vec::new();
        for summary in self
            .docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default()
        {
            if let Some(id) = summary.id {
                if let Ok(inspect) = self
                    .docker
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                {
                    out.push(inspect);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// How many of its containers run.
    pub async fn running(&self) -> usize {
        self.containers()
            .await
            .iter()
            .filter(|c| c.state.as_ref().and_then(|s| s.running).unwrap_or(false))
            .count()
    }

    /// Misbehave: kill every container of the service (it is down until something restarts it).
    pub async fn crash(&self) -> Result<()> {
        for container in self.containers().await {
            let id = container.id.unwrap_or_default();
            self.docker
                .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
                .await
                .with_context(|| format!("killing {id}"))?;
        }
        Ok(())
    }

    async fn remove_all(&self) {
        for container in self.containers().await {
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = self
                .docker
                .remove_container(&container.id.unwrap_or_default(), Some(options))
                .await;
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Remove by label with a blocking call: Drop cannot await.
        let label = format!("label={SERVICE_LABEL}={}", self.name);
        if let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
        }
    }
}
