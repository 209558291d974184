//! `orion-demo`: the main job. Starts a real NATS server and every service, makes a real
//! container misbehave, and shows an incident flowing from event to outcome — first a SAFE
//! restart that runs on its own, then a RISKY scale-up that waits for an operator's approval
//! (given with approval-cli) — printed as the audit trail, then stops everything.
//!
//! Run it with `cargo xtask demo` (which installs and starts what it needs first).

use std::process::Output;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use contracts::*;
use e2e::probe::Probe;
use e2e::stack::{Stack, StackOptions};
use e2e::workload::Workload;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn say(step: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m▶ {step}\x1b[0m");
    } else {
        println!("\n▶ {step}");
    }
}

fn show(output: &Output) -> Result<()> {
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let dir = root.join("target/orion-demo");
    let _ = std::fs::remove_dir_all(&dir);
    let docker = bollard::Docker::connect_with_socket_defaults()
        .context("connecting to the Docker engine")?;
    let docker = docker
        .negotiate_version()
        .await
        .context("the Docker engine does not answer")?;

    say("Starting a container for the service `demo-web` on the Docker engine");
    let web = Workload::start(&docker, "demo-web").await?;
    println!("  demo-web: {} container(s) running", web.running().await);

    say("Starting nats-server (generated permissions) and ops-worker, guardian, brain, commander");
    let mut stack = Stack::start(StackOptions {
        dir: dir.clone(),
        allowlist: vec!["demo-web".into()],
        guardian_config: std::fs::read_to_string(root.join("crates/guardian/guardian.toml"))?,
        brain_policy: std::fs::read_to_string(root.join("tests/config/policy.toml"))?,
        admin_identity: "demo-operator".into(),
        receipt_timeout_s: 60,
    })
    .await?;
    println!(
        "  NATS at {}; logs, configs and keys in {}",
        stack.server.url(),
        dir.display()
    );
    let probe = Probe::new(stack.bus().await?);

    say("1. demo-web crashes; the probe reports it down (SAFE: restart runs without a person)");
    web.crash().await?;
    println!("  demo-web: {} container(s) running", web.running().await);
    probe
        .emit(
            "service_down",
            "critical",
            json!({"service_name": "demo-web", "message": "health check failed"}),
        )
        .await?;
    let incident = stack.wait_for::<Incident>(WAIT, |_| true).await?;
    let outcome = stack.wait_for::<Outcome>(WAIT, |_| true).await?;
    println!(
        "  outcome: {} in {} ms; demo-web: {} container(s) running",
        outcome.status,
        outcome.execution_time_ms,
        web.running().await
    );
    probe
        .emit("service_up", "info", json!({"service_name": "demo-web"}))
        .await?;
    // The trail should end with the resolution: wait for that version.
    stack
        .wait_for::<Incident>(WAIT, |i| {
            i.incident_id == incident.incident_id && i.state.to_string() == "resolved"
        })
        .await?;
    say(&format!("Audit trail of incident {}", incident.incident_id));
    show(&stack.run(
        "approval-cli",
        "approval-cli",
        &["trail", &incident.incident_id.to_string()],
    )?)?;

    say("2. demo-web's latency crosses its threshold three times (RISKY: scale-up needs approval)");
    for value in [950, 1100, 1400] {
        probe.emit("metric_threshold_exceeded", "warning", json!({"service_name": "demo-web", "metric": "latency_ms", "value": value, "threshold": 500})).await?;
    }
    let request = stack.wait_for::<ApprovalRequest>(WAIT, |_| true).await?;
    say("The operator lists pending approvals");
    show(&stack.run("approval-cli", "approval-cli", &["list"])?)?;
    say("The operator approves it (signed with their Ed25519 key)");
    let key = stack.admin_key_file.display().to_string();
    show(&stack.run(
        "approval-cli",
        "approval-cli",
        &[
            "approve",
            &request.approval_request_id.to_string(),
            "--reason",
            "scale out for the evening peak",
            "--identity",
            "demo-operator",
            "--key",
            &key,
        ],
    )?)?;
    let action = stack
        .wait_for::<Action>(WAIT, |a| a.approval_id.is_some())
        .await?;
    let outcome = stack
        .wait_for::<Outcome>(WAIT, |o| o.action_id == action.action_id)
        .await?;
    println!(
        "  outcome: {} in {} ms; demo-web: {} container(s) running",
        outcome.status,
        outcome.execution_time_ms,
        web.running().await
    );
    let incident_id = request
        .incident_id
        .context("brain names the incident of its requests")?;
    say(&format!("Audit trail of incident {incident_id}"));
    show(&stack.run(
        "approval-cli",
        "approval-cli",
        &["trail", &incident_id.to_string()],
    )?)?;

    say("What Prometheus scrapes from each service (/metrics; docs/OPERATIONS.md lists them)");
    for service in ["guardian", "brain", "commander", "ops-worker"] {
        let address = stack.metrics_address(service).await?;
        let (_, body) = e2e::prometheus::get_status(&format!("http://{address}/metrics")).await?;
        for line in body.lines().filter(|l| {
            [
                "orion_incidents_opened_total",
                "orion_decisions_total",
                "orion_actions_total",
                "opsd_commands_total",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        }) {
            println!("  {address}  {line}");
        }
    }

    say("3. Maintenance on demo-web: an administrator silences it for an hour (signed)");
    show(&stack.run(
        "approval-cli",
        "approval-cli",
        &[
            "silence",
            "--target",
            "demo-web",
            "--for",
            "1h",
            "--reason",
            "planned maintenance",
            "--identity",
            "demo-operator",
            "--key",
            &key,
        ],
    )?)?;
    let silence = stack.wait_for::<Silence>(WAIT, |_| true).await?;
    stack
        .wait_logged("brain", &silence.silence_id.to_string(), 0, WAIT)
        .await?;
    web.crash().await?;
    probe
        .emit(
            "service_down",
            "critical",
            json!({"service_name": "demo-web", "message": "down for maintenance"}),
        )
        .await?;
    let held_back = stack
        .wait_for::<Decision>(WAIT, |d| d.reasoning.as_str().contains("silence"))
        .await?;
    println!(
        "  decision: {} — {}",
        held_back.decision_type,
        held_back.reasoning.as_str()
    );
    println!(
        "  demo-web: {} container(s) running (left alone)",
        web.running().await
    );

    say("4. Trying a policy change on this history: the same policy at level N1 (suggest only)");
    let proposed = dir.join("proposed-policy.toml");
    std::fs::write(
        &proposed,
        std::fs::read_to_string(dir.join("policy.toml"))?
            .replace("autonomy_level = \"N3\"", "autonomy_level = \"N1\""),
    )?;
    show(&stack.run(
        "brain",
        "brain",
        &["simulate", "--policy", &proposed.display().to_string()],
    )?)?;

    say("Stopping the services (graceful drain), NATS and the demo containers");
    stack.stop();
    drop(stack);
    drop(web);
    println!("  done. Logs stay in {}", dir.display());
    Ok(())
}
