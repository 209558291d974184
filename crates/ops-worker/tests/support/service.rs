//! A uniquely named test service whose containers (and networks) are removed when the guard is
//! dropped, also when the test fails.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HealthConfig, HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;

use super::engine::SOCKET;

/// The container port a [`Spec::host_port`] is published to.
pub const CONTAINER_PORT: &str = "80/tcp";

/// The label the tests use to name a container's service (compose's).
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// A test service `svc-<8 hex>`: its containers carry `SERVICE_LABEL=<name>`.
pub struct TestService {
    /// The service name.
    pub name: String,
    docker: Docker,
    networks: Mutex<Vec<String>>,
}

/// How to run one container of a test service.
#[derive(Default, Clone)]
pub struct Spec {
    /// Image (required).
    pub image: String,
    /// Container name suffix (`<service>-<suffix>`); default `old-<n>`.
    pub name: Option<String>,
    /// Command; `None` keeps the image's.
    pub cmd: Option<Vec<String>>,
    /// Environment.
    pub env: Vec<String>,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// Health check command (`CMD` form), checked every 200 ms.
    pub healthcheck: Option<Vec<String>>,
    /// A network to join, with aliases.
    pub network: Option<(String, Vec<String>)>,
    /// Stop signal; default SIGKILL so stops take no time. `SIGTERM` with busybox `sleep` as
    /// PID 1 makes every stop wait its whole grace period (a slow service, on purpose).
    pub stop_signal: Option<String>,
    /// A fixed host port on 127.0.0.1 published to the container's port 80/tcp.
    pub host_port: Option<u16>,
}

impl TestService {
    /// A new service with a random name.
    pub fn new(docker: &Docker) -> Self {
        let name = format!("svc-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Self {
            name,
            docker: docker.clone(),
            networks: Mutex::new(Vec::new()),
        }
    }

    /// Creates and starts a container of this service; returns its id.
    pub async fn run(&self, spec: Spec) -> String {
        let n = self.containers().await.len();
        let name = format!(
            "{}-{}",
            self.name,
            spec.name.clone().unwrap_or_else(|| format!("old-{n}"))
        );
        let mut labels: HashMap<String, String> = spec.labels.into_iter().collect();
        labels.insert(SERVICE_LABEL.to_owned(), self.name.clone());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd,
            env: Some(spec.env),
            labels: Some(labels),
            // busybox `sleep` as PID 1 ignores SIGTERM: kill at once so stops take no time.
            stop_signal: Some(
                spec.stop_signal
                    .clone()
                    .unwrap_or_else(|| "SIGKILL".to_owned()),
            ),
            healthcheck: spec.healthcheck.map(|test| HealthConfig {
                test: Some([vec!["CMD".to_owned()], test].concat()),
                interval: Some(200_000_000),
                timeout: Some(2_000_000_000),
                retries: Some(1),
                ..Default::default()
            }),
            exposed_ports: spec.host_port.map(|_| vec![CONTAINER_PORT.to_owned()]),
            host_config: Some(HostConfig {
                network_mode: spec.network.as_ref().map(|(n, _)| n.clone()),
                port_bindings: spec.host_port.map(|port| {
                    HashMap::from([(
                        CONTAINER_PORT.to_owned(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".to_owned()),
                            host_port: Some(port.to_string()),
                        }]),
                    )])
                }),
                ..Default::default()
            }),
            networking_config: spec.network.map(|(network, aliases)| {
                bollard::models::NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        network,
                        bollard::models::EndpointSettings {
                            aliases: Some(aliases),
                            ..Default::default()
                        },
                    )])),
                }
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .unwrap_or_else(|e| panic!("create test container {name}: {e}"))
            .id;
        self.docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap_or_else(|e| panic!("start test container {name}: {e}"));
        id
    }

    /// Creates a user-defined network removed with the service; returns its name.
    pub async fn network(&self) -> String {
        let name = format!("{}-net", self.name);
        self.docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create network {name}: {e}"));
        self.networks.lock().unwrap().push(name.clone());
        name
    }

    /// Docker's own view of the service's containers (every state), sorted by name.
    pub async fn containers(&self) -> Vec<ContainerInspectResponse> {
        containers_of(&self.docker, &self.name).await
    }
}

/// Docker's own view of the containers labelled as `service` (every state), sorted by name.
pub async fn containers_of(docker: &Docker, service: &str) -> Vec<ContainerInspectResponse> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{SERVICE_LABEL}={service}")],
        )])),
        ..Default::default()
    };
    let mut out = Vec::new();
    for summary in docker
        .list_containers(Some(options))
        .await
        .expect("list containers")
    {
        let id = summary.id.expect("container id");
        if let Ok(inspect) = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            out.push(inspect);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl Drop for TestService {
    fn drop(&mut self) {
        let service = self.name.clone();
        let networks =
            std::mem::take(&mut *self.networks.lock().unwrap_or_else(|e| e.into_inner()));
        // A fresh runtime on its own thread: Drop may run inside (or outside) the test's runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let docker = Docker::connect_with_socket(SOCKET, 30, bollard::API_DEFAULT_VERSION)
                    .ok()?
                    .negotiate_version()
                    .await
                    .ok()?;
                let options = ListContainersOptions {
                    all: true,
                    filters: Some(HashMap::from([(
                        "label".to_owned(),
                        vec![format!("{SERVICE_LABEL}={service}")],
                    )])),
                    ..Default::default()
                };
                for summary in docker.list_containers(Some(options)).await.ok()? {
                    if let Some(id) = summary.id {
                        let options = RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        };
                        let _ = docker.remove_container(&id, Some(options)).await;
                    }
                }
                for network in networks {
                    let _ = docker.remove_network(&network).await;
                }
                Some(())
            })
        });
        let _ = cleanup.join();
    }
}
