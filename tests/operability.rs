//! What an operator sees and steers with the tools they already run: every service scraped by a
//! real Prometheus while the demo's incident flows through, `/healthz` and `/readyz`, the
//! shipped alert rules checked by `promtool`, a signed silence keeping automation off one
//! service, and `brain simulate` on the stack's recorded history. (The one trace per incident
//! is followed in `flow.rs`, `a_risky_action_waits_for_approval_and_runs_once_approved`.)

use std::process::Command;
use std::time::Duration;

use contracts::*;
use e2e::probe::Probe;
use e2e::prometheus::{get_status, Prometheus, ALERT_RULES};
use e2e::testing::{docker, stack, unique};
use e2e::workload::Workload;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const SERVICES: [&str; 4] = ["ops-worker", "guardian", "brain", "commander"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_and_sees_an_incident_go_through() {
    let docker = docker().await;
    let service = unique("metrics");
    let workload = Workload::start(&docker, &service).await.unwrap();
    let (stack, dir) = stack("metrics", &[&service], 300).await;
    let mut targets = Vec::new();
    for name in SERVICES {
        let address = stack.metrics_address(name).await.unwrap();
        let (status, body) = get_status(&format!("http://{address}/healthz"))
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{name} /healthz");
        let (status, body) = get_status(&format!("http://{address}/readyz"))
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "ready\n"), "{name} /readyz");
        let (status, _) = get_status(&format!("http://{address}/nothing"))
            .await
            .unwrap();
        assert_eq!(status, 404, "{name}: an unknown path");
        targets.push((name, address));
    }
    let prometheus = Prometheus::start(&dir.path().join("prometheus"), &targets)
        .await
        .unwrap();

    workload.crash().await.unwrap();
    let probe = Probe::new(stack.bus().await.unwrap());
    probe
        .emit("service_down", "critical", json!({"service_name": service}))
        .await
        .unwrap();
    let outcome = stack
        .wait_for::<Outcome>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(outcome.status.to_string(), "succeeded", "{}", stack.logs());

    // Each query names what moved for the incident: it waits (bounded) for the next scrapes.
    let expected = [
        ("every service is scraped", "count(up == 1) == 4"),
        (
            "guardian opened the incident",
            r#"orion_incidents_opened_total{service="guardian", incident_type="service_outage"} >= 1"#,
        ),
        (
            "brain decided a safe action",
            r#"orion_decisions_total{service="brain", decision_type="EXECUTE_SAFE_ACTION", safety_class="SAFE"} >= 1"#,
        ),
        (
            "brain's breaker for the target is closed",
            &format!(
                r#"orion_circuit_breaker_open{{service="brain", action_type="restart_service", target="{service}"}} == 0"#
            ),
        ),
        (
            "brain sees the interlock armed",
            r#"orion_interlock_armed{service="brain"} == 1"#,
        ),
        (
            "commander reports the action's outcome",
            r#"orion_actions_total{service="commander", action_type="restart_service", outcome="succeeded"} >= 1"#,
        ),
        (
            "ops-worker counted the restart",
            r#"opsd_commands_total{service="ops-worker", type="restart", status="success"} >= 1"#,
        ),
        (
            "ops-worker timed it",
            r#"opsd_command_duration_ms_count{service="ops-worker", type="restart"} >= 1"#,
        ),
        (
            "every consumer acknowledged what it handled",
            r#"count(sum by (service) (orion_consumer_acked_total) >= 1) == 4"#,
        ),
        (
            "publish latency is a histogram with buckets",
            r#"orion_publish_seconds_bucket{service="guardian", subject="orion.incident.v1", le="+Inf"} >= 1 and on (service, subject) orion_publish_seconds_count >= 1"#,
        ),
        (
            "handling time is a histogram with buckets",
            r#"orion_consumer_handling_seconds_count{service="brain", consumer="brain-incident-v1"} >= 1"#,
        ),
        (
            "the build is labelled",
            r#"count(orion_build_info == 1) == 4"#,
        ),
    ];
    for (what, expr) in expected {
        if let Err(e) = prometheus.wait_for(expr, Duration::from_secs(30)).await {
            let everything = prometheus.query(r#"{__name__=~"orion_.+|opsd_.+"}"#).await;
            panic!("{what}: {e}\nwhat Prometheus has: {everything:#?}");
        }
    }
    let none = prometheus
        .query(r#"orion_dead_lettered_total > 0 or orion_publish_failures_total > 0"#)
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "nothing was dead-lettered or failed: {none:?}"
    );

    let rules = prometheus.rules().await.unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    let loaded: Vec<_> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| (r["name"].as_str().unwrap(), r["health"].as_str().unwrap()))
        .collect();
    assert_eq!(loaded.len(), 9, "{loaded:?}");
    assert!(
        loaded.iter().all(|(_, health)| *health == "ok"),
        "every shipped rule evaluates against the live series: {loaded:?}"
    );
    let firing: Vec<_> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r["state"] == "firing")
        .map(|r| r["name"].clone())
        .collect();
    assert!(
        firing.is_empty(),
        "a healthy stack fires no alert: {firing:?}"
    );
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = |args: &[&str]| {
        let output = Command::new("promtool").args(args).output().expect(
            "`promtool` is installed (`apt-get install -y prometheus`; cargo xtask test does it)",
        );
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    promtool(&["check", "rules", ALERT_RULES]);
    let tests = ALERT_RULES.replace("alerts.yml", "alerts.test.yml");
    promtool(&["test", "rules", &tests]);
    let config = ALERT_RULES.replace("alerts.yml", "prometheus.yml");
    promtool(&["check", "config", &config]);
}

/// An operator silences one service for maintenance: its next incident takes no action (and
/// says why), while another service is still restarted. Then they try a policy change on what
/// the stack recorded: `brain simulate` shows the restart that would no longer run, and
/// publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_service_is_left_alone_and_the_simulator_shows_a_policy_change_on_the_history() {
    let docker = docker().await;
    let quiet = unique("maint");
    let loud = unique("web");
    let quiet_workload = Workload::start(&docker, &quiet).await.unwrap();
    let loud_workload = Workload::start(&docker, &loud).await.unwrap();
    let (stack, _dir) = stack("silence", &[&quiet, &loud], 300).await;
    let key = stack.admin_key_file.to_str().unwrap().to_string();
    let silence = stack
        .run(
            "approval-cli",
            "approval-cli",
            &[
                "silence",
                "--target",
                &quiet,
                "--for",
                "1h",
                "--reason",
                "planned maintenance",
                "--identity",
                "e2e-operator",
                "--key",
                &key,
            ],
        )
        .unwrap();
    assert!(
        silence.status.success(),
        "{}{}",
        String::from_utf8_lossy(&silence.stdout),
        String::from_utf8_lossy(&silence.stderr)
    );
    let silences: Vec<Silence> = stack.all().await.unwrap();
    assert_eq!(silences.len(), 1, "{silences:?}");
    let silence_id = silences[0].silence_id.to_string();
    // brain reads the silence stream live; give it the silence before the incident comes.
    stack
        .wait_logged("brain", &silence_id, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));

    quiet_workload.crash().await.unwrap();
    loud_workload.crash().await.unwrap();
    let probe = Probe::new(stack.bus().await.unwrap());
    for service in [&quiet, &loud] {
        probe
            .emit("service_down", "critical", json!({"service_name": service}))
            .await
            .unwrap();
    }
    let outcome = stack
        .wait_for::<Outcome>(WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(outcome.status.to_string(), "succeeded", "{}", stack.logs());
    let held_back = stack
        .wait_for::<Decision>(WAIT, |d| d.decision_type.to_string() == "NO_ACTION")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    let reasoning = held_back.reasoning.as_str();
    assert!(
        reasoning.contains(&silence_id)
            && reasoning.contains("e2e-operator")
            && reasoning.contains("planned maintenance"),
        "the decision names the silence, its author and its reason: {reasoning}"
    );
    let actions: Vec<Action> = stack.all().await.unwrap();
    assert_eq!(
        actions.len(),
        1,
        "only the unsilenced service is restarted: {actions:?}"
    );
    assert_eq!(loud_workload.running().await, 1);
    assert_eq!(
        quiet_workload.running().await,
        0,
        "the silenced service was left alone"
    );

    // A policy that only suggests (N1) on the same history: the restart would no longer run.
    let recorded = std::fs::read_to_string(stack.dir.join("policy.toml")).unwrap();
    let proposed = stack.dir.join("proposed-policy.toml");
    std::fs::write(
        &proposed,
        recorded.replace("autonomy_level = \"N3\"", "autonomy_level = \"N1\""),
    )
    .unwrap();
    let streams_before = stream_sizes(&stack).await;
    let simulate = |args: &[&str]| {
        let mut all = vec!["simulate", "--policy", proposed.to_str().unwrap()];
        all.extend_from_slice(args);
        stack.run("brain", "brain", &all).unwrap()
    };
    let table = simulate(&[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(text.contains("action would no longer run"), "{text}");
    assert!(text.contains("Nothing was published"), "{text}");
    let report: serde_json::Value =
        serde_json::from_slice(&simulate(&["--json"]).stdout).expect("the JSON report");
    assert_eq!(report["format"], "brain-simulation/1", "{report}");
    assert_eq!(
        stream_sizes(&stack).await,
        streams_before,
        "the simulator published nothing"
    );
}

/// The message count of every stream.
async fn stream_sizes(stack: &e2e::stack::Stack) -> Vec<(String, u64)> {
    let admin = stack.server.admin_jetstream().await.unwrap();
    let mut sizes = Vec::new();
    for stream in contracts::STREAMS {
        let mut handle = admin.get_stream(stream.name).await.unwrap();
        sizes.push((
            stream.name.to_string(),
            handle.info().await.unwrap().state.messages,
        ));
    }
    sizes
}
