//! What the SDK leaves a new service to write: its own logic and a few lines of `main`. The
//! service here consumes one contract (`orion.action.v1`) and publishes another
//! (`orion.notification.v1`, one per action), as the `commander` identity, started, drained and
//! stopped by the one bootstrap against a real `nats-server`.

mod support;

use support::fixture;

use std::time::Duration;

use contracts::bus::{serve, Bus, BusError, ReadFrom, SubscribeOptions};
use contracts::generated::notification_v1::{
    NotificationSeverity, NotificationSource, NotificationVersion,
};
use contracts::local_server::NatsServer;
use contracts::runtime::{
    self, ConfigArgs, ConfigFile, ExitStatus, LogArgs, LogFormat, NatsSection, RunArgs, Running,
    ServiceConfig, ServiceMain,
};
use contracts::services::{ApprovalCli, Brain, Commander};
use contracts::{Action, Notification, Timestamp};
use tokio_util::task::TaskTracker;

// ---- the service: everything below this line up to the tests is all it needs ----

/// Its configuration file: only the `[nats]` section every service has.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct AnnouncerConfig {
    nats: NatsSection,
}

impl ConfigFile for AnnouncerConfig {
    fn nats_mut(&mut self) -> &mut NatsSection {
        &mut self.nats
    }
}

impl ServiceConfig for AnnouncerConfig {
    fn nats(&self) -> &NatsSection {
        &self.nats
    }
}

/// Its logic: every action becomes a notification; the action is acknowledged only once the
/// notification is stored.
async fn announce(running: Running<Commander>, _config: AnnouncerConfig) -> Result<(), BusError> {
    let bus = running.bus;
    let actions = bus.subscribe::<Action>(SubscribeOptions::default()).await?;
    serve(
        actions,
        running.shutdown,
        TaskTracker::new(),
        running.drain,
        |delivery| {
            let bus = bus.clone();
            async move {
                let action = delivery.message();
                let notification = Notification {
                    action_id: Some(action.action_id),
                    channel: None,
                    incident_id: None,
                    message: format!("{} proposed", action.action_type)
                        .parse()
                        .expect("a non-empty message"),
                    notification_id: uuid::Uuid::new_v5(
                        &uuid::Uuid::NAMESPACE_OID,
                        action.action_id.as_bytes(),
                    ),
                    severity: NotificationSeverity::Info,
                    source: NotificationSource::OrionCommander,
                    tags: Default::default(),
                    timestamp: Timestamp::now(),
                    version: NotificationVersion::X10,
                };
                let _ = match bus.publish(&notification).await {
                    Ok(_) => delivery.ack().await,
                    Err(e) => {
                        delivery
                            .nak(Some(Duration::from_secs(1)), &e.to_string())
                            .await
                    }
                };
            }
        },
    )
    .await;
    Ok(())
}

/// Its `main` would be `runtime::program_main(&PROGRAM, |log, Cmd::Run(run)| start(&log, run))`.
fn start(log: &LogArgs, run: RunArgs) -> ServiceMain<Commander> {
    ServiceMain::<Commander>::new(log, run)
}

// ---- the test ----

#[test]
fn a_service_is_its_logic_and_a_few_lines_of_main() {
    let server = NatsServer::start_with_auth()
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let log = LogArgs {
        log_format: LogFormat::Text,
    };
    let run = RunArgs {
        config: ConfigArgs { config: None },
        drain_s: 5,
        metrics_listen: None,
        worker_threads: None,
    };
    let service = std::thread::spawn(move || {
        start(&log, run)
            .with_environment(move |name: &str| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .with_shutdown(async move {
                let _ = stopped.await;
            })
            .run(
                |source| runtime::load::<AnnouncerConfig>(source.path, source.env),
                announce,
            )
    });

    let action: Action = fixture("minimal.json");
    let announced = client.block_on(async {
        let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
            .await
            .expect("brain connects");
        let reader = Bus::<ApprovalCli>::connect(server.bus_config::<ApprovalCli>())
            .await
            .expect("approval-cli connects");
        let mut notifications = reader
            .read::<Notification>(ReadFrom::Start)
            .await
            .expect("read notifications");
        brain.publish(&action).await.expect("publish the action");
        let (notification, _) = tokio::time::timeout(Duration::from_secs(20), notifications.next())
            .await
            .expect("the service announces the action in time")
            .expect("the reader is open")
            .expect("a valid notification");
        notification
    });
    assert_eq!(announced.action_id, Some(action.action_id));
    assert_eq!(announced.message.as_str(), "restart_service proposed");

    stop.send(()).expect("the service still runs");
    let status = service.join().expect("the service thread does not panic");
    assert_eq!(status, ExitStatus::Ok, "drained and stopped: exit 0");
}
