//! `--metrics-listen`: a service run by the bootstrap answers `/healthz`, `/readyz` through its
//! life (ready, NATS lost, draining) and `/metrics` with the platform's metrics, against a real
//! `nats-server`.

use std::net::SocketAddr;
use std::time::Duration;

use contracts::local_server::NatsServer;
use contracts::runtime::{
    self, BoxError, ConfigArgs, ConfigFile, ExitStatus, LogArgs, LogFormat, NatsSection, RunArgs,
    Running, ServiceConfig, ServiceMain,
};
use contracts::services::Commander;
use contracts::Notification;
use orion_testkit::wait_until;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    nats: NatsSection,
}

impl ConfigFile for Config {
    fn nats_mut(&mut self) -> &mut NatsSection {
        &mut self.nats
    }
}

impl ServiceConfig for Config {
    fn nats(&self) -> &NatsSection {
        &self.nats
    }
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut response = agent.get(&format!("http://{address}{path}")).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// Polls `path` until it answers `status` and its body passes `wanted` (bounded); the body.
fn wait_for_body(
    what: &str,
    address: SocketAddr,
    path: &str,
    status: u16,
    wanted: impl Fn(&str) -> bool,
) -> String {
    // The test is synchronous (ureq); the bounded wait runs on a runtime of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(wait_until(what, Duration::from_secs(30), || async {
            get(address, path)
                .and_then(|(got, body)| (got == status && wanted(&body)).then_some(body))
        }))
        .unwrap_or_else(|e| panic!("{e}; its answer now: {:?}", get(address, path)))
}

/// Polls `path` until it answers `status` (bounded), and returns the body.
fn wait_for(address: SocketAddr, path: &str, status: u16) -> String {
    let what = format!("{path} answering {status}");
    wait_for_body(&what, address, path, status, |_| true)
}

#[test]
fn a_service_reports_ready_lost_and_draining_and_serves_its_metrics() {
    let mut server = NatsServer::start_with_auth()
        .expect("start nats-server (install it with `cargo xtask test`)");
    let client = tokio::runtime::Runtime::new().unwrap();
    client.block_on(async {
        let admin = server.admin_jetstream().await.expect("admin connects");
        contracts::bus::provision_all(&admin, 1)
            .await
            .expect("provision");
    });
    let vars = [
        ("ORION_NATS_URL".to_string(), server.url().to_string()),
        (
            "ORION_NATS_PASSWORD".to_string(),
            server.password("commander").unwrap().to_string(),
        ),
    ];
    let address = free_address();
    let run = RunArgs {
        config: ConfigArgs { config: None },
        drain_s: 30,
        metrics_listen: Some(address),
        worker_threads: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let service = std::thread::spawn(move || {
        let log = LogArgs {
            log_format: LogFormat::Text,
        };
        ServiceMain::<Commander>::new(&log, run)
            .with_environment(move |name: &str| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .with_shutdown(async move {
                let _ = stopped.await;
            })
            .run(
                |source| runtime::load::<Config>(source.path, source.env),
                // Publishes once, then holds on after the shutdown until released: the drain.
                move |running: Running<Commander>, _config: Config| async move {
                    let notification: Notification = serde_json::from_str(include_str!(
                        "../../../fixtures/notification/valid/minimal.json"
                    ))
                    .expect("the fixture");
                    running.bus.publish(&notification).await?;
                    running.shutdown.await;
                    tokio::task::spawn_blocking(move || released.recv())
                        .await
                        .map_err(|e| Box::new(e) as BoxError)?
                        .map_err(|e| Box::new(e) as BoxError)?;
                    Ok::<(), BoxError>(())
                },
            )
    });

    assert_eq!(wait_for(address, "/healthz", 200), "ok\n");
    assert_eq!(wait_for(address, "/readyz", 200), "ready\n");
    let metrics = wait_for(address, "/metrics", 200);
    assert!(
        metrics.contains(r#"orion_build_info{service="commander",version="#),
        "{metrics}"
    );
    let published =
        "orion_publish_seconds_count{service=\"commander\",subject=\"orion.notification.v1\"} 1";
    let what = format!("{published} in /metrics");
    wait_for_body(&what, address, "/metrics", 200, |body| {
        body.contains(published)
    });
    assert_eq!(get(address, "/nowhere").map(|(s, _)| s), Some(404));

    server.stop();
    assert_eq!(
        wait_for(address, "/readyz", 503),
        "the NATS connection is down\n"
    );
    server.restart().expect("the server comes back on its port");
    assert_eq!(wait_for(address, "/readyz", 200), "ready\n");

    stop.send(()).expect("the service still runs");
    assert_eq!(
        wait_for(address, "/readyz", 503),
        "draining: shutting down\n"
    );
    assert_eq!(
        wait_for(address, "/healthz", 200),
        "ok\n",
        "alive while draining"
    );
    release.send(()).expect("the service waits to be released");
    let status = service.join().expect("the service thread does not panic");
    assert_eq!(status, ExitStatus::Ok);
}
