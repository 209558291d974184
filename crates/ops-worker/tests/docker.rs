//! The Docker layer against the real engine of this machine (no mocks). Each test builds its own
//! uniquely named service and checks Docker's own state after every command. When the engine is
//! unreachable the tests fail with instructions to start it.

mod support;

use std::time::Duration;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use ops_worker::docker::{
    CancellationToken, ConfigError, DeployFailure, DockerConfig, DockerError, Engine,
    EngineOptions, Refusal,
};
use orion_testkit::wait_until;
use support::engine::{docker, HOW_TO_START};
use support::images::{ensure_test_images, image_id, BUSYBOX_1, BUSYBOX_2, EXITS_1, EXITS_LINE};
use support::service::{containers_of, Spec, TestService, CONTAINER_PORT, SERVICE_LABEL};

const STOP: Duration = Duration::from_secs(1);
const READY: Duration = Duration::from_secs(15);

/// A layer engine for `services`, with short timeouts for tests.
async fn engine_for(services: &[&str], tune: impl FnOnce(&mut EngineOptions)) -> Engine {
    let mut config = DockerConfig::new(services.iter().copied()).expect("valid config");
    config.call_timeout = Duration::from_secs(20);
    let mut options = EngineOptions {
        settle: Duration::from_secs(1),
        deploy_stop_timeout: STOP,
        failure_log_lines: 20,
        self_id: None,
    };
    tune(&mut options);
    Engine::connect_with(config, options)
        .await
        .unwrap_or_else(|e| panic!("{e}; {HOW_TO_START}"))
}

async fn setup() -> (Docker, TestService) {
    let docker = docker().await;
    ensure_test_images(&docker).await;
    let service = TestService::new(&docker);
    (docker, service)
}

fn busybox(image: &str) -> Spec {
    Spec {
        image: image.to_owned(),
        ..Default::default()
    }
}

fn started_at(c: &ContainerInspectResponse) -> String {
    c.state
        .as_ref()
        .and_then(|s| s.started_at.clone())
        .expect("StartedAt")
}

fn running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running) == Some(true)
}

fn name(c: &ContainerInspectResponse) -> String {
    c.name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned()
}

async fn exists(docker: &Docker, id: &str) -> bool {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .is_ok()
}

/// The executor runs deploys on spawned tasks and wraps errors in `anyhow`.
#[allow(dead_code)]
fn futures_are_send_and_errors_are_send_sync(engine: &Engine, cancel: &CancellationToken) {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync + 'static>() {}
    send(&engine.deploy("s", "i", None, READY, cancel));
    send(&engine.restart("s", STOP, &CancellationToken::new()));
    send(&engine.stop("s", STOP));
    send(&engine.evidence("s", 10));
    send(&engine.containers("s"));
    send(&Engine::connect(DockerConfig::new(["s"]).unwrap()));
    send_sync::<Engine>();
    send_sync::<DockerError>();
    send_sync::<ops_worker::docker::DeployError>();
}

#[tokio::test]
async fn config_refuses_nats_and_the_worker_itself() {
    for entry in ["nats", "nats-server", "ops-worker", "NATS"] {
        let err = DockerConfig::new(["web", entry]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::ForbiddenService {
                entry: entry.to_owned()
            }
        );
        assert!(
            err.to_string().contains("never acts on NATS or on itself"),
            "{err}"
        );
    }
    for entry in ["all", "", "two words", "Web", "-web", "web/1"] {
        assert!(
            matches!(
                DockerConfig::new([entry]),
                Err(ConfigError::InvalidEntry { .. })
            ),
            "{entry:?}"
        );
    }
    // Fields changed after construction are validated again when connecting.
    let mut config = DockerConfig::new(["web"]).unwrap();
    config.allowlist.insert("nats".to_owned());
    let err = Engine::connect(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            DockerError::Config(ConfigError::ForbiddenService { .. })
        ),
        "{err}"
    );
    let options = EngineOptions {
        self_id: Some("abc".to_owned()),
        ..EngineOptions::default()
    };
    let err = Engine::connect_with(DockerConfig::new(["web"]).unwrap(), options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DockerError::Config(ConfigError::InvalidSelfId { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn connect_names_a_missing_socket() {
    let mut config = DockerConfig::new(["web"]).unwrap();
    config.socket = "/nonexistent/docker.sock".into();
    let err = Engine::connect(config).await.unwrap_err();
    assert!(matches!(err, DockerError::SocketMissing { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/docker.sock") && text.contains("does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn targets_expand_to_the_allowlist_and_others_are_refused() {
    let (docker, svc) = setup().await;
    let outsider = TestService::new(&docker);
    let outsider_id = outsider.run(busybox(BUSYBOX_1)).await;
    let before = started_at(&outsider.containers().await[0]);
    let engine = engine_for(&[&svc.name, "zz-other"], |_| {}).await;

    assert_eq!(
        engine.allowlisted("all").unwrap(),
        vec![svc.name.clone(), "zz-other".to_owned()]
    );
    assert_eq!(
        engine.allowlisted(&svc.name).unwrap(),
        vec![svc.name.clone()]
    );
    let err = engine.allowlisted(&outsider.name).unwrap_err();
    assert!(matches!(err, DockerError::NotAllowlisted { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("allowlist: {}, zz-other", svc.name)),
        "{err}"
    );
    assert!(matches!(
        engine.allowlisted(""),
        Err(DockerError::EmptyTarget { .. })
    ));
    assert!(matches!(
        engine.allowlisted("nats"),
        Err(DockerError::NotAllowlisted { .. })
    ));
    // Spelled any other way, an allowlisted name is refused, saying why: never trimmed or
    // case-folded into the service.
    for variant in [
        format!("{} ", svc.name),
        format!(" {}", svc.name),
        svc.name.to_uppercase(),
    ] {
        let err = engine.allowlisted(&variant).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{variant:?}")),
            "{variant:?}: {err}"
        );
    }

    // Acting on a service outside the allowlist is refused and leaves it alone.
    let err = engine
        .restart(&outsider.name, STOP, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, DockerError::NotAllowlisted { .. }), "{err}");
    let err = engine.stop(&outsider.name, STOP).await.unwrap_err();
    assert!(matches!(err, DockerError::NotAllowlisted { .. }), "{err}");
    let err = engine
        .deploy(
            &outsider.name,
            BUSYBOX_2,
            None,
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.failure,
            DeployFailure::Docker(DockerError::NotAllowlisted { .. })
        ),
        "{err}"
    );
    let after = outsider.containers().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id.as_deref(), Some(outsider_id.as_str()));
    assert!(running(&after[0]));
    assert_eq!(started_at(&after[0]), before);

    // An allowlisted service without containers: listing is empty, acting is an error.
    assert!(engine.containers("zz-other").await.unwrap().is_empty());
    let err = engine
        .restart("zz-other", STOP, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, DockerError::NoContainers { .. }), "{err}");
    assert!(err.to_string().contains("zz-other"), "{err}");
}

#[tokio::test]
async fn restart_restarts_every_container() {
    let (_docker, svc) = setup().await;
    svc.run(busybox(BUSYBOX_1)).await;
    svc.run(busybox(BUSYBOX_1)).await;
    let before = svc.containers().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let listed = engine.containers(&svc.name).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        before.iter().map(name).collect::<Vec<_>>()
    );
    assert!(listed
        .iter()
        .all(|c| c.running && c.state == "running" && c.started_at.is_some()));

    let restarted = engine
        .restart(&svc.name, STOP, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(restarted, before.iter().map(name).collect::<Vec<_>>());
    let after = svc.containers().await;
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.id, b.id);
        assert!(running(a), "{} not running after restart", name(a));
        assert_ne!(
            started_at(a),
            started_at(b),
            "{} StartedAt unchanged",
            name(a)
        );
    }
}

#[tokio::test]
async fn stop_stops_every_container() {
    let (_docker, svc) = setup().await;
    svc.run(busybox(BUSYBOX_1)).await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let stopped = engine.stop(&svc.name, STOP).await.unwrap();
    assert_eq!(stopped, vec![format!("{}-old-0", svc.name)]);
    let after = svc.containers().await;
    assert_eq!(after.len(), 1);
    assert!(!running(&after[0]));
    // Stopping again is not an error.
    assert_eq!(engine.stop(&svc.name, STOP).await.unwrap().len(), 1);
    assert_eq!(
        engine.containers(&svc.name).await.unwrap()[0].state,
        "exited"
    );
}

#[tokio::test]
async fn deploy_replaces_each_container_with_the_new_image() {
    let (docker, svc) = setup().await;
    let network = svc.network().await;
    let spec = Spec {
        env: vec!["GREETING=hello".to_owned()],
        labels: vec![("orion.team".to_owned(), "ops".to_owned())],
        healthcheck: Some(vec![
            "test".to_owned(),
            "-x".to_owned(),
            "/bin/busybox".to_owned(),
        ]),
        network: Some((network.clone(), vec!["backend".to_owned()])),
        ..busybox(BUSYBOX_1)
    };
    let old_ids = [svc.run(spec.clone()).await, svc.run(spec).await];
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let report = engine
        .deploy(&svc.name, BUSYBOX_2, None, READY, &CancellationToken::new())
        .await
        .unwrap();

    let new_image = image_id(&docker, BUSYBOX_2).await;
    assert_eq!(report.image_id, new_image);
    assert_eq!(report.replaced.len(), 2, "{report:?}");
    assert!(report.added.is_empty() && report.removed.is_empty());
    for id in &old_ids {
        assert!(
            !exists(&docker, id).await,
            "old container {id} still exists"
        );
    }
    let after = svc.containers().await;
    assert_eq!(after.len(), 2, "container count changed");
    assert_eq!(
        after.iter().map(name).collect::<Vec<_>>(),
        report.containers
    );
    for c in &after {
        let n = name(c);
        assert!(running(c), "{n} not running");
        assert_eq!(
            c.image.as_deref(),
            Some(new_image.as_str()),
            "{n} runs the wrong image"
        );
        assert!(
            n.starts_with(&format!("{}-", svc.name)) && n.len() == svc.name.len() + 9,
            "{n}"
        );
        let config = c.config.clone().unwrap();
        let labels = config.labels.unwrap();
        assert_eq!(labels.get(SERVICE_LABEL), Some(&svc.name));
        assert_eq!(labels.get("orion.team").map(String::as_str), Some("ops"));
        assert!(config.env.unwrap().contains(&"GREETING=hello".to_owned()));
        assert_eq!(
            config.cmd,
            Some(vec!["sleep".to_owned(), "3600".to_owned()])
        );
        let health = c
            .state
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status);
        assert_eq!(
            health,
            Some(HealthStatusEnum::HEALTHY),
            "{n} was kept before it was healthy"
        );
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.clone())
            .unwrap();
        let aliases = networks
            .get(&network)
            .and_then(|e| e.aliases.clone())
            .unwrap_or_default();
        assert!(
            aliases.contains(&"backend".to_owned()),
            "{n} lost its network alias: {aliases:?}"
        );
    }
}

/// A host port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The host port Docker bound for the container's published port, if any.
fn bound_host_port(c: &ContainerInspectResponse) -> Option<String> {
    c.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(CONTAINER_PORT)?
        .as_ref()?
        .first()?
        .host_port
        .clone()
}

/// A one-container service publishing a free host port; returns the port and the container id.
async fn service_on_a_fixed_host_port() -> (Docker, TestService, u16, String) {
    let (docker, svc) = setup().await;
    let port = free_port();
    let old_id = svc
        .run(Spec {
            host_port: Some(port),
            ..busybox(BUSYBOX_1)
        })
        .await;
    (docker, svc, port, old_id)
}

#[tokio::test]
async fn deploy_of_a_service_on_a_fixed_host_port_stops_the_old_container_first() {
    let (docker, svc, port, old_id) = service_on_a_fixed_host_port().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let report = engine
        .deploy(&svc.name, BUSYBOX_2, None, READY, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("deploy on a fixed host port: {e}"));

    assert_eq!(report.replaced.len(), 1, "{report:?}");
    assert_eq!(
        report.replaced[0].stopped_first_for_ports,
        vec![port.to_string()]
    );
    assert!(
        !exists(&docker, &old_id).await,
        "old container still exists"
    );
    let after = svc.containers().await;
    assert_eq!(after.len(), 1, "container count changed");
    assert!(running(&after[0]));
    assert_eq!(
        after[0].image.as_deref(),
        Some(image_id(&docker, BUSYBOX_2).await.as_str())
    );
    assert_eq!(bound_host_port(&after[0]), Some(port.to_string()));
}

#[tokio::test]
async fn scaling_up_a_service_on_a_fixed_host_port_is_refused_before_anything_changes() {
    let (_docker, svc, port, old_id) = service_on_a_fixed_host_port().await;
    let before = svc.containers().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let err = engine
        .deploy(
            &svc.name,
            BUSYBOX_2,
            Some(2),
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();

    match &err.failure {
        DeployFailure::ScaleOnFixedHostPorts { replicas, ports } => {
            assert_eq!((*replicas, ports.clone()), (2, vec![port.to_string()]));
        }
        other => panic!("expected ScaleOnFixedHostPorts, got {other:?}"),
    }
    assert!(!err.rolled_back && err.replaced.is_empty(), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let after = svc.containers().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id.as_deref(), Some(old_id.as_str()));
    assert_eq!(started_at(&after[0]), started_at(&before[0]));
}

#[tokio::test]
async fn a_failed_deploy_on_a_fixed_host_port_starts_the_old_container_again() {
    let (docker, svc, port, old_id) = service_on_a_fixed_host_port().await;
    let before = svc.containers().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let err = engine
        .deploy(&svc.name, EXITS_1, None, READY, &CancellationToken::new())
        .await
        .unwrap_err();

    assert!(err.rolled_back, "{err}");
    assert_eq!(err.stopped_first_for_ports, Some(vec![port.to_string()]));
    assert!(matches!(err.failure, DeployFailure::Exited { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("rolled back")
            && text.contains("started again")
            && text.contains(&port.to_string()),
        "{text}"
    );
    let after = svc.containers().await;
    assert_eq!(
        after.iter().map(name).collect::<Vec<_>>(),
        before.iter().map(name).collect::<Vec<_>>(),
        "leftover containers"
    );
    assert_eq!(after[0].id.as_deref(), Some(old_id.as_str()));
    assert!(
        running(&after[0]),
        "the old container was not started again"
    );
    assert_ne!(started_at(&after[0]), started_at(&before[0]));
    assert_eq!(bound_host_port(&after[0]), Some(port.to_string()));
    assert_eq!(
        after[0].image.as_deref(),
        Some(image_id(&docker, BUSYBOX_1).await.as_str())
    );
}

#[tokio::test]
async fn deploy_of_an_image_that_exits_rolls_back() {
    let (docker, svc) = setup().await;
    let old_id = svc.run(busybox(BUSYBOX_1)).await;
    let before = svc.containers().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let err = engine
        .deploy(&svc.name, EXITS_1, None, READY, &CancellationToken::new())
        .await
        .unwrap_err();

    assert!(err.rolled_back, "{err}");
    assert!(err.replaced.is_empty());
    match &err.failure {
        DeployFailure::Exited {
            exit_code,
            logs,
            container,
        } => {
            assert_eq!(*exit_code, Some(3));
            assert!(logs.contains(EXITS_LINE), "logs: {logs}");
            assert!(
                !exists(&docker, container).await,
                "failed new container {container} left behind"
            );
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&svc.name) && text.contains("code 3") && text.contains("rolled back"),
        "{text}"
    );
    let after = svc.containers().await;
    assert_eq!(
        after.len(),
        1,
        "leftover containers: {:?}",
        after.iter().map(name).collect::<Vec<_>>()
    );
    assert_eq!(after[0].id.as_deref(), Some(old_id.as_str()));
    assert!(running(&after[0]));
    assert_eq!(after[0].image, before[0].image);
    assert_eq!(
        after[0].image.as_deref(),
        Some(image_id(&docker, BUSYBOX_1).await.as_str())
    );
    assert_eq!(started_at(&after[0]), started_at(&before[0]));
}

#[tokio::test]
async fn deploy_of_an_image_that_turns_unhealthy_rolls_back() {
    let (docker, svc) = setup().await;
    // Healthy on busybox:2 (which has /version), unhealthy on busybox:1.
    let spec = Spec {
        healthcheck: Some(vec![
            "test".to_owned(),
            "-f".to_owned(),
            "/version".to_owned(),
        ]),
        ..busybox(BUSYBOX_2)
    };
    let old_id = svc.run(spec).await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let err = engine
        .deploy(&svc.name, BUSYBOX_1, None, READY, &CancellationToken::new())
        .await
        .unwrap_err();

    assert!(err.rolled_back, "{err}");
    assert!(
        matches!(err.failure, DeployFailure::Unhealthy { .. }),
        "{err}"
    );
    let after = svc.containers().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id.as_deref(), Some(old_id.as_str()));
    assert!(running(&after[0]));
    assert_eq!(
        after[0].image.as_deref(),
        Some(image_id(&docker, BUSYBOX_2).await.as_str())
    );
}

#[tokio::test]
async fn deploy_of_a_missing_image_changes_nothing() {
    let (_docker, svc) = setup().await;
    svc.run(busybox(BUSYBOX_1)).await;
    let before = svc.containers().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let err = engine
        .deploy(
            &svc.name,
            "orion-test/absent:404",
            None,
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();

    assert!(!err.rolled_back);
    assert!(
        matches!(
            err.failure,
            DeployFailure::Docker(DockerError::ImageMissing { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("orion-test/absent:404") && text.contains("not present locally"),
        "{text}"
    );
    let after = svc.containers().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before[0].id);
    assert!(running(&after[0]));
    assert_eq!(started_at(&after[0]), started_at(&before[0]));
}

#[tokio::test]
async fn deploy_scales_up_and_down() {
    let (docker, svc) = setup().await;
    svc.run(busybox(BUSYBOX_1)).await;
    let engine = engine_for(&[&svc.name], |_| {}).await;
    let new_image = image_id(&docker, BUSYBOX_2).await;

    let up = engine
        .deploy(
            &svc.name,
            BUSYBOX_2,
            Some(3),
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (up.replaced.len(), up.added.len(), up.removed.len()),
        (1, 2, 0),
        "{up:?}"
    );
    let after = svc.containers().await;
    assert_eq!(after.len(), 3);
    assert!(after
        .iter()
        .all(|c| running(c) && c.image.as_deref() == Some(new_image.as_str())));

    let down = engine
        .deploy(
            &svc.name,
            BUSYBOX_2,
            Some(1),
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (down.replaced.len(), down.added.len(), down.removed.len()),
        (3, 0, 2),
        "{down:?}"
    );
    let after = svc.containers().await;
    assert_eq!(
        after.len(),
        1,
        "{:?}",
        after.iter().map(name).collect::<Vec<_>>()
    );
    assert!(running(&after[0]));
    assert_eq!(after[0].image.as_deref(), Some(new_image.as_str()));
    // The oldest replacement stays, the newest ones go.
    assert_eq!(name(&after[0]), down.replaced[0].new);
    assert_eq!(down.containers, vec![down.replaced[0].new.clone()]);

    let err = engine
        .deploy(
            &svc.name,
            BUSYBOX_2,
            Some(0),
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.failure, DeployFailure::ZeroReplicas), "{err}");
}

#[tokio::test]
async fn protected_nats_and_own_containers_are_refused() {
    let (docker, svc) = setup().await;
    let protected = Spec {
        labels: vec![("orion.protected".to_owned(), "true".to_owned())],
        ..busybox(BUSYBOX_1)
    };
    svc.run(busybox(BUSYBOX_1)).await;
    svc.run(protected).await;
    let before = svc.containers().await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let err = engine
        .restart(&svc.name, STOP, &CancellationToken::new())
        .await
        .unwrap_err();
    match &err {
        DockerError::Protected {
            container, reason, ..
        } => {
            assert_eq!(container, &format!("{}-old-1", svc.name));
            assert_eq!(reason, &Refusal::ProtectedLabel);
        }
        other => panic!("expected Protected, got {other}"),
    }
    assert!(err.to_string().contains("orion.protected=true"), "{err}");
    assert!(matches!(
        engine.stop(&svc.name, STOP).await,
        Err(DockerError::Protected { .. })
    ));
    let err = engine
        .deploy(&svc.name, BUSYBOX_2, None, READY, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!err.rolled_back);
    assert!(
        matches!(
            err.failure,
            DeployFailure::Docker(DockerError::Protected { .. })
        ),
        "{err}"
    );
    // Nothing was done, not even to the unprotected container.
    let after = svc.containers().await;
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.id, b.id);
        assert!(running(a));
        assert_eq!(started_at(a), started_at(b));
    }

    // A container whose name mentions nats.
    let nats_svc = TestService::new(&docker);
    nats_svc
        .run(Spec {
            name: Some("nats-1".to_owned()),
            ..busybox(BUSYBOX_1)
        })
        .await;
    let engine = engine_for(&[&nats_svc.name], |_| {}).await;
    let err = engine
        .restart(&nats_svc.name, STOP, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DockerError::Protected {
                reason: Refusal::Nats { field: "name", .. },
                ..
            }
        ),
        "{err}"
    );
    // An image that mentions nats is never deployed.
    let err = engine
        .deploy(
            &nats_svc.name,
            "nats:2.10",
            None,
            READY,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.failure,
            DeployFailure::Docker(DockerError::NatsImage { .. })
        ),
        "{err}"
    );

    // The worker's own container, recognised by its id prefix (the host name in a container).
    let own = TestService::new(&docker);
    let own_id = own.run(busybox(BUSYBOX_1)).await;
    let own_before = own.containers().await;
    let engine = engine_for(&[&own.name], |c| c.self_id = Some(own_id[..12].to_owned())).await;
    let err = engine
        .restart(&own.name, STOP, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DockerError::Protected {
                reason: Refusal::SelfContainer,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        started_at(&own.containers().await[0]),
        started_at(&own_before[0])
    );
}

#[tokio::test]
async fn cancelling_a_deploy_rolls_back() {
    let (docker, svc) = setup().await;
    let old_id = svc.run(busybox(BUSYBOX_1)).await;
    // A long settle period so the cancel lands while the new container is being proven up.
    let engine = engine_for(&[&svc.name], |c| c.settle = Duration::from_secs(20)).await;
    let cancel = CancellationToken::new();

    let watcher = {
        let cancel = cancel.clone();
        let docker = docker.clone();
        let service = svc.name.clone();
        tokio::spawn(async move {
            // Cancel either way: a deploy that never started its new container fails the
            // assertions on its error.
            let _ = wait_until("the new container", Duration::from_secs(10), || async {
                (containers_of(&docker, &service).await.len() > 1).then_some(())
            })
            .await;
            cancel.cancel();
        })
    };
    let started = std::time::Instant::now();
    let err = engine
        .deploy(&svc.name, BUSYBOX_2, None, READY, &cancel)
        .await
        .unwrap_err();
    watcher.await.unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cancel was not prompt: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err.failure, DeployFailure::Cancelled { container: Some(_) }),
        "{err}"
    );
    assert!(err.rolled_back, "{err}");
    let after = svc.containers().await;
    assert_eq!(
        after.len(),
        1,
        "leftover containers: {:?}",
        after.iter().map(name).collect::<Vec<_>>()
    );
    assert_eq!(after[0].id.as_deref(), Some(old_id.as_str()));
    assert!(running(&after[0]));
    assert_eq!(
        after[0].image.as_deref(),
        Some(image_id(&docker, BUSYBOX_1).await.as_str())
    );

    // A token cancelled up front stops the deploy before anything happens.
    let err = engine
        .deploy(&svc.name, BUSYBOX_2, None, READY, &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(err.failure, DeployFailure::Cancelled { container: None }),
        "{err}"
    );
    assert_eq!(
        svc.containers().await[0].id.as_deref(),
        Some(old_id.as_str())
    );
}

#[tokio::test]
async fn evidence_has_inspect_data_and_log_lines() {
    let (_docker, svc) = setup().await;
    let marker = format!("evidence-line-{}", svc.name);
    // The engine copies stdout and stderr separately, so lines of the two streams written at
    // nearly the same time may be logged in either order: pause before the last line.
    let script =
        format!("echo {marker}; echo to-stderr >&2; sleep 0.3; echo last-line; sleep 3600");
    let id = svc
        .run(Spec {
            cmd: Some(vec!["sh".into(), "-c".into(), script]),
            ..busybox(BUSYBOX_1)
        })
        .await;
    let engine = engine_for(&[&svc.name], |_| {}).await;

    let evidence = wait_until(
        "the evidence held last-line",
        Duration::from_secs(5),
        || async {
            let evidence = engine.evidence(&svc.name, 100).await.unwrap();
            (evidence.len() == 1 && evidence[0].logs.contains("last-line")).then_some(evidence)
        },
    )
    .await
    .unwrap();
    let e = &evidence[0];
    assert_eq!(e.name, format!("{}-old-0", svc.name));
    assert_eq!(e.inspect["Id"], id.as_str());
    assert_eq!(
        e.inspect["Config"]["Labels"][SERVICE_LABEL],
        svc.name.as_str()
    );
    assert_eq!(e.inspect["State"]["Running"], true);
    assert!(
        e.logs.contains(&marker) && e.logs.contains("to-stderr"),
        "logs: {}",
        e.logs
    );
    let first = e.logs.lines().next().unwrap();
    assert!(
        first.starts_with("20") && first.contains('T'),
        "no timestamp: {first}"
    );

    let tail = engine.evidence(&svc.name, 1).await.unwrap();
    assert_eq!(tail[0].logs.lines().count(), 1);
    assert!(tail[0].logs.contains("last-line"), "{}", tail[0].logs);
}

/// Polls the layer's evidence until the container's logs hold `needle`.
async fn evidence_once_logged(
    engine: &Engine,
    service: &str,
    lines: usize,
    needle: &str,
) -> Vec<ops_worker::docker::ContainerEvidence> {
    let what = format!("the logs of {service} held {needle:?}");
    wait_until(&what, Duration::from_secs(10), || async {
        let evidence = engine.evidence(service, lines).await.unwrap();
        (evidence.len() == 1 && evidence[0].logs.contains(needle)).then_some(evidence)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn evidence_from_the_engine_holds_no_secrets() {
    let (_docker, svc) = setup().await;
    svc.run(Spec {
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo \"token is $API_TOKEN\"; echo ready; exec sleep 3600".into(),
            "script".into(),
            "--token".into(),
            "flag-secret".into(),
        ]),
        env: vec!["API_TOKEN=env-secret-value".into(), "MODE=plain".into()],
        labels: vec![(
            "com.example.dsn".into(),
            "postgres://app:dsn-secret@db/app".into(),
        )],
        ..busybox(BUSYBOX_1)
    })
    .await;
    let engine = engine_for(&[&svc.name], |_| {}).await;
    let evidence = evidence_once_logged(&engine, &svc.name, 100, "ready").await;
    let e = &evidence[0];
    let everything = format!("{}\n{}", e.inspect, e.logs);
    for secret in ["env-secret-value", "flag-secret", "dsn-secret"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    assert!(e.logs.contains("token is [redacted]"), "{}", e.logs);
    let env = e.inspect["Config"]["Env"].as_array().unwrap();
    assert!(env.contains(&"MODE=[redacted]".into()), "{env:?}");
    assert_eq!(
        e.inspect["Config"]["Labels"]["com.example.dsn"],
        "[redacted]"
    );
    assert_eq!(e.inspect["Config"]["Cmd"][5], "[redacted]");
    assert_eq!(e.inspect["Config"]["Cmd"][4], "--token");
    let paths: Vec<&str> = e.redactions.iter().map(|r| r.path.as_str()).collect();
    for path in ["/Config/Labels/com.example.dsn", "/Config/Cmd/5", "/Args/4"] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
}

#[tokio::test]
async fn evidence_logs_are_capped_in_bytes_at_a_line_boundary() {
    let (_docker, svc) = setup().await;
    // 3000 lines of about 510 bytes: 1.5 MB, over the 1 MiB cap.
    let script = "s=xxxxxxxxxx; s=$s$s$s$s$s$s$s$s$s$s; l=$s$s$s$s$s; i=0; \
                  while [ $i -lt 3000 ]; do echo \"$i $l\"; i=$((i+1)); done; \
                  echo last-line; exec sleep 3600";
    svc.run(Spec {
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..busybox(BUSYBOX_1)
    })
    .await;
    let engine = engine_for(&[&svc.name], |_| {}).await;
    let evidence = evidence_once_logged(&engine, &svc.name, 5000, "last-line").await;
    let logs = &evidence[0].logs;
    assert!(
        logs.len() <= ops_worker::docker::MAX_LOG_BYTES,
        "{} bytes of logs",
        logs.len()
    );
    assert!(logs.len() > ops_worker::docker::MAX_LOG_BYTES - 1024);
    // The newest lines are kept, and the first one kept is whole.
    assert!(
        logs.ends_with(" last-line\n"),
        "{}",
        &logs[logs.len() - 100..]
    );
    let first = logs.lines().next().unwrap();
    assert!(
        first.starts_with("20") && first.ends_with(&"x".repeat(500)),
        "{first}"
    );
    assert!(evidence[0].logs_truncated);

    // Under the cap nothing is cut.
    let evidence = engine.evidence(&svc.name, 10).await.unwrap();
    assert_eq!(evidence[0].logs.lines().count(), 10);
    assert!(!evidence[0].logs_truncated);
}
