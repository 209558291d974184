//! The ops-worker binary end to end: real NATS (with the generated permissions) and the real
//! Docker engine. Effects are checked on Docker's own state.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use contracts::OpsReceipt;
use futures::StreamExt;
use orion_testkit::{wait_for, wait_until};
use serde_json::{json, Value};
use support::engine::docker;
use support::images::{ensure_test_images, image_id, BUSYBOX_1, BUSYBOX_2, EXITS_1};
use support::service::{Spec, TestService};
use support::starts::Starts;
use support::worker::*;

fn busybox() -> Spec {
    Spec {
        image: BUSYBOX_1.to_owned(),
        ..Default::default()
    }
}

/// A container whose stop takes its whole grace period (busybox sleep as PID 1 ignores SIGTERM).
fn slow_to_stop() -> Spec {
    Spec {
        image: BUSYBOX_1.to_owned(),
        stop_signal: Some("SIGTERM".into()),
        ..Default::default()
    }
}

async fn setup() -> (bollard::Docker, TestService) {
    let docker = docker().await;
    ensure_test_images(&docker).await;
    let service = TestService::new(&docker);
    (docker, service)
}

fn started_at(service_containers: &[bollard::models::ContainerInspectResponse]) -> Vec<String> {
    service_containers
        .iter()
        .map(|c| c.state.as_ref().unwrap().started_at.clone().unwrap())
        .collect()
}

fn running(c: &bollard::models::ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn error_of(receipt: &contracts::OpsReceipt) -> String {
    receipt
        .error
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_deploy_rollback_and_halt_change_dockers_state() {
    let (docker, web) = setup().await;
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;

    // restart: a new StartedAt, still running; a pending receipt first.
    let before = started_at(&web.containers().await);
    // Time itself is the condition: Docker's StartedAt has one-second resolution, so a restart
    // within the same second as the start would not show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let receipts = send(
        &console,
        &signed(command("restart", &web.name, json!({"timeout_s": 1}))),
    )
    .await;
    assert_eq!(
        receipts.pending.len(),
        1,
        "a pending receipt before the final one"
    );
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "success", "{}", error_of(last));
    assert!(!last.meta.executor_id.is_empty());
    let after = web.containers().await;
    assert_ne!(started_at(&after), before, "restart did not restart");
    assert!(after.iter().all(running));

    // deploy: the container now runs image 2.
    let receipts = send(
        &console,
        &signed(command("deploy", &web.name, json!({"image": BUSYBOX_2}))),
    )
    .await;
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "success", "{}", error_of(last));
    let deployed = web.containers().await;
    assert_eq!(deployed.len(), 1);
    assert_eq!(
        deployed[0].image.as_deref(),
        Some(image_id(&docker, BUSYBOX_2).await.as_str())
    );
    assert!(running(&deployed[0]));

    // deploy of an image that exits at once: failure, rolled back, the old one still runs.
    let receipts = send(
        &console,
        &signed(command("deploy", &web.name, json!({"image": EXITS_1}))),
    )
    .await;
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "failure");
    assert_eq!(
        last.error_code,
        Some(ops_worker::receipts::FailureCode::RolledBack),
        "{}",
        error_of(last)
    );
    let kept = web.containers().await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, deployed[0].id, "the old container must be kept");
    assert!(running(&kept[0]));

    // halt: stopped, and the platform disarmed.
    let receipts = send(&console, &signed(command("halt", &web.name, Value::Null))).await;
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "success", "{}", error_of(last));
    assert!(
        web.containers().await.iter().all(|c| !running(c)),
        "halt left a container running"
    );
    assert_eq!(
        last.result.as_ref().and_then(|r| r.get("armed")),
        Some(&json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interlock_refuses_mutating_commands_while_disarmed() {
    let (_docker, web) = setup().await;
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;

    let disarm = send(&console, &signed(command("disarm", "", Value::Null))).await;
    assert_eq!(final_receipt(&disarm).status.to_string(), "success");
    let before = started_at(&web.containers().await);
    let refused = send(
        &console,
        &signed(command("restart", &web.name, json!({"timeout_s": 1}))),
    )
    .await;
    let last = final_receipt(&refused);
    assert_eq!(last.status.to_string(), "failure");
    assert!(error_of(last).contains("disarmed"), "{}", error_of(last));
    assert_eq!(
        started_at(&web.containers().await),
        before,
        "a disarmed platform restarted a container"
    );

    let risk = send(
        &console,
        &signed(command("set_risk", "", json!({"level": "N2"}))),
    )
    .await;
    assert_eq!(
        final_receipt(&risk)
            .result
            .as_ref()
            .and_then(|r| r.get("risk_ceiling")),
        Some(&json!("N2"))
    );
    let bad_risk = send(
        &console,
        &signed(command("set_risk", "", json!({"level": "N9"}))),
    )
    .await;
    assert!(error_of(final_receipt(&bad_risk)).contains("N9"));

    let arm = send(&console, &signed(command("arm", "", Value::Null))).await;
    assert_eq!(final_receipt(&arm).status.to_string(), "success");
    let allowed = send(
        &console,
        &signed(command("restart", &web.name, json!({"timeout_s": 1}))),
    )
    .await;
    assert_eq!(
        final_receipt(&allowed).status.to_string(),
        "success",
        "{}",
        error_of(final_receipt(&allowed))
    );

    // The state lives in the ops_interlock bucket, where brain reads it.
    let js = async_nats::jetstream::new(admin(&server).await);
    let kv = js.get_key_value("ops_interlock").await.unwrap();
    let armed: Value = serde_json::from_slice(&kv.get("armed").await.unwrap().unwrap()).unwrap();
    let ceiling: Value =
        serde_json::from_slice(&kv.get("risk_ceiling").await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (armed["armed"].clone(), ceiling["level"].clone()),
        (json!(true), json!("N2"))
    );
}

/// The interlock fails closed: with the `armed` key deleted, or holding a record that breaks
/// its schema (here one in the pre-1.1 layout, which said armed), a restart is refused with a
/// receipt that says what is wrong and how to fix it, and no container is touched; an
/// operator's `arm` writes the record again and re-arms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unreadable_armed_record_refuses_mutating_commands() {
    let (docker, web) = setup().await;
    let starts = Starts::watch(&docker, &web.name);
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;
    let js = async_nats::jetstream::new(admin(&server).await);
    let kv = js.get_key_value("ops_interlock").await.unwrap();
    let before = web.containers().await;

    kv.delete("armed").await.unwrap();
    let refused = send(
        &console,
        &signed(command("restart", &web.name, json!({"timeout_s": 1}))),
    )
    .await;
    let last = final_receipt(&refused);
    assert_eq!(last.status.to_string(), "failure", "{}", error_of(last));
    let error = error_of(last);
    assert!(error.contains("`armed` is missing"), "{error}");
    assert!(error.contains("`arm`"), "{error}");

    let legacy = json!({"armed": true, "command_id": "c1", "at": "2026-02-14T12:00:00Z"});
    kv.put("armed", serde_json::to_vec(&legacy).unwrap().into())
        .await
        .unwrap();
    let refused = send(
        &console,
        &signed(command("restart", &web.name, json!({"timeout_s": 1}))),
    )
    .await;
    let last = final_receipt(&refused);
    assert_eq!(last.status.to_string(), "failure", "{}", error_of(last));
    let error = error_of(last);
    assert!(error.contains("cannot be read"), "{error}");
    assert!(error.contains("fail closed"), "{error}");

    let after = web.containers().await;
    assert_eq!(
        (
            after.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            started_at(&after)
        ),
        (
            before.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            started_at(&before)
        ),
        "a container was touched while the interlock record was missing or unreadable"
    );
    assert!(after.iter().all(running));
    assert_eq!(starts.settled_at_least(1).await, 1, "only the first start");

    let arm = send(&console, &signed(command("arm", "", Value::Null))).await;
    assert_eq!(final_receipt(&arm).status.to_string(), "success");
    let stored: contracts::InterlockArmed =
        contracts::decode(&kv.get("armed").await.unwrap().unwrap()).unwrap();
    assert!(stored.armed);
    let allowed = send(
        &console,
        &signed(command("restart", &web.name, json!({"timeout_s": 1}))),
    )
    .await;
    assert_eq!(
        final_receipt(&allowed).status.to_string(),
        "success",
        "{}",
        error_of(final_receipt(&allowed))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_malformed_commands_are_refused_and_nothing_runs() {
    let (_docker, web) = setup().await;
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[("OPS_CLOCK_SKEW_S", "60")]).await;
    let console = console(&server).await;
    let before = started_at(&web.containers().await);

    let wrong_key =
        ops_client::signing::SigningKeys::new(&["another-secret-of-enough-length!".to_string()])
            .unwrap();
    let forged =
        ops_client::client::sign(command("restart", &web.name, Value::Null), &wrong_key).unwrap();
    let mut tampered = signed(command("restart", &web.name, json!({"timeout_s": 1})));
    tampered.meta.reason = "tampered after signing".into();
    let mut stale = command("restart", &web.name, Value::Null);
    stale["ts"] = json!(contracts::Timestamp::from(
        time::OffsetDateTime::now_utc() - time::Duration::minutes(10)
    ));
    let mut future = command("restart", &web.name, Value::Null);
    future["ts"] = json!(contracts::Timestamp::from(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(10)
    ));
    let cases = [
        ("wrong key", forged, "signature"),
        ("tampered", tampered, "signature"),
        ("stale", signed(stale), "older than"),
        ("future", signed(future), "future"),
    ];
    for (name, command, expected) in cases {
        let receipts = send(&console, &command).await;
        let last = final_receipt(&receipts);
        assert_eq!(last.status.to_string(), "failure", "{name}");
        assert!(
            error_of(last).contains(expected),
            "{name}: {}",
            error_of(last)
        );
    }

    // Messages the typed API cannot even build go in raw: uppercase hex, no signature.
    let js = async_nats::jetstream::new(admin(&server).await);
    let mut upper =
        serde_json::to_value(signed(command("restart", &web.name, Value::Null))).unwrap();
    let signature = upper["meta"]["signature"].as_str().unwrap().to_uppercase();
    upper["meta"]["signature"] = json!(signature);
    let mut unsigned = command("restart", &web.name, Value::Null);
    unsigned["meta"]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    for raw in [&upper, &unsigned] {
        js.publish(
            "titan.ops.command.v1",
            serde_json::to_vec(raw).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    js.publish("titan.ops.command.v1", b"not a command".to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let wanted: Vec<uuid::Uuid> = [&upper, &unsigned]
        .iter()
        .map(|v| v["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let answered = || async {
        let failed: Vec<uuid::Uuid> = all_receipts(&server)
            .await
            .into_iter()
            .filter(|r| r.status.to_string() == "failure")
            .map(|r| r.command_id)
            .collect();
        wanted.iter().all(|id| failed.contains(id)).then_some(())
    };
    wait_until(
        "malformed commands answered with failure receipts",
        Duration::from_secs(20),
        answered,
    )
    .await
    .unwrap();
    // The unreadable one became a dead letter.
    let dead = js
        .get_stream("PLATFORM_DEAD_LETTERS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(dead, 1);
    assert_eq!(
        started_at(&web.containers().await),
        before,
        "a refused command restarted a container"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_not_canonical_is_refused_and_no_container_is_touched() {
    let (docker, web) = setup().await;
    let starts = Starts::watch(&docker, &web.name);
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;

    // The allowlisted name with a space after it, as an event once carried it.
    let padded = format!("{} ", web.name);
    let cases = [
        ("restart", padded.clone(), "leading or trailing whitespace"),
        ("halt", padded.clone(), "leading or trailing whitespace"),
        (
            "restart",
            format!("\t{}", web.name),
            "leading or trailing whitespace",
        ),
        ("restart", web.name.to_uppercase(), "uppercase"),
    ];
    for (command_type, target, problem) in cases {
        let receipts = send(
            &console,
            &signed(command(command_type, &target, json!({"timeout_s": 1}))),
        )
        .await;
        let last = final_receipt(&receipts);
        assert_eq!(
            last.status.to_string(),
            "failure",
            "{command_type} {target:?}"
        );
        let error = error_of(last);
        assert!(
            error.contains(&format!("{target:?}")) && error.contains(problem),
            "{command_type} {target:?}: the receipt names the target and the problem: {error}"
        );
        assert!(
            receipts.pending.is_empty(),
            "{command_type} {target:?}: refused before it was accepted"
        );
    }
    assert!(
        web.containers().await.iter().all(running),
        "a refused halt stopped a container"
    );
    assert_eq!(
        starts.settled_at_least(1).await,
        1,
        "only the first start: a refused command restarted a container"
    );

    // `all` keeps its meaning on signed ops commands (and the refused halt did not disarm).
    let receipts = send(
        &console,
        &signed(command("restart", "all", json!({"timeout_s": 1}))),
    )
    .await;
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "success", "{}", error_of(last));
    assert_eq!(starts.settled_at_least(1 + 1).await, 1 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_command_is_not_executed_again_and_gets_its_stored_receipt() {
    let (docker, web) = setup().await;
    let starts = Starts::watch(&docker, &web.name);
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;
    let command = signed(command("restart", &web.name, json!({"timeout_s": 1})));
    let first = send(&console, &command).await;
    let first = final_receipt(&first).clone();
    assert_eq!(first.status.to_string(), "success");
    // Same id again (a replayed capture inside the window): the stored receipt, not a restart.
    let second = send(&console, &command).await;
    assert_eq!(
        final_receipt(&second),
        &first,
        "the stored receipt is re-published as it was"
    );
    assert_eq!(
        starts.settled_at_least(1 + 1).await,
        1 + 1,
        "first start + one restart: the command ran twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_and_cancel_all_are_not_stuck_behind_a_slow_command() {
    let (_docker, slow) = setup().await;
    slow.run(slow_to_stop()).await;
    let (_docker, other) = setup().await;
    other.run(slow_to_stop()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&slow.name, &other.name], &[]).await;
    let console = console(&server).await;

    // A restart that waits 30 s for the container to stop.
    let restart = signed(command("restart", &slow.name, json!({"timeout_s": 30})));
    let restart_id = restart.id;
    let watcher = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &restart).await })
    };
    let other_restart = signed(command("restart", &other.name, json!({"timeout_s": 30})));
    let other_id = other_restart.id;
    let other_watcher = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &other_restart).await })
    };
    wait_accepted(&server, restart_id).await;
    wait_accepted(&server, other_id).await;

    let cancel = send(&console, &signed(command("cancel_all", "", Value::Null))).await;
    let cancel = final_receipt(&cancel).clone();
    assert_eq!(cancel.status.to_string(), "success");
    let cancelled = cancel
        .result
        .as_ref()
        .and_then(|r| r.get("cancelled"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        cancelled.contains(&json!(restart_id.to_string())),
        "{cancelled:?}"
    );
    assert!(
        cancelled.contains(&json!(other_id.to_string())),
        "{cancelled:?}"
    );

    let restart = watcher.await.unwrap();
    let restart = final_receipt(&restart);
    assert_eq!(restart.status.to_string(), "failure");
    assert!(
        error_of(restart).contains("cancelled by cancel_all"),
        "{}",
        error_of(restart)
    );
    let other = other_watcher.await.unwrap();
    assert!(error_of(final_receipt(&other)).contains("cancelled by cancel_all"));

    // halt goes ahead of a slow restart on the same target and cancels it.
    let restart = signed(command("restart", &slow.name, json!({"timeout_s": 30})));
    let slow_restart = restart.id;
    let watcher = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &restart).await })
    };
    wait_accepted(&server, slow_restart).await;
    let halt = send(
        &console,
        &signed(command("halt", &slow.name, json!({"timeout_s": 1}))),
    )
    .await;
    assert_eq!(
        final_receipt(&halt).status.to_string(),
        "success",
        "{}",
        error_of(final_receipt(&halt))
    );
    let restart = watcher.await.unwrap();
    assert!(
        error_of(final_receipt(&restart)).contains("cancelled by halt"),
        "{}",
        error_of(final_receipt(&restart))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_evidence_stores_a_verified_bundle() {
    let (docker, web) = setup().await;
    let id = web
        .run(Spec {
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo evidence-line-42; exec sleep 3600".into(),
            ]),
            ..busybox()
        })
        .await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;
    send(&console, &signed(command("arm", "", Value::Null))).await;
    wait_for_log(&docker, &id, "evidence-line-42").await;
    let receipts = send(
        &console,
        &signed(command("export_evidence", &web.name, Value::Null)),
    )
    .await;
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "success", "{}", error_of(last));
    let name = last.result.as_ref().expect("a result")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let sha256 = last.result.as_ref().expect("a result")["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let size = last.result.as_ref().expect("a result")["size"]
        .as_u64()
        .unwrap();

    let bytes = ops_worker::evidence::fetch(&console, &name).await.unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        sha256
    );
    let files: BTreeMap<String, Vec<u8>> = ops_worker::evidence::unpack_verified(&bytes)
        .unwrap()
        .into_iter()
        .collect();
    let container = web.containers().await[0]
        .name
        .clone()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let logs =
        String::from_utf8_lossy(&files[&format!("containers/{container}/logs.txt")]).into_owned();
    assert!(logs.contains("evidence-line-42"), "{logs}");
    let inspect: Value =
        serde_json::from_slice(&files[&format!("containers/{container}/inspect.json")]).unwrap();
    assert_eq!(inspect["Name"], format!("/{container}"));
    let receipts = String::from_utf8_lossy(&files["receipts.jsonl"]).into_owned();
    assert!(
        receipts.contains("\"arm\""),
        "recent receipts belong in the bundle: {receipts}"
    );

    // The operator command fetches and checks it too.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("bundle.tar.gz");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_ops-worker"))
        .args([
            "evidence",
            "get",
            &name,
            "--output",
            path.to_str().unwrap(),
            "--sha256",
            &sha256,
        ])
        .env("ORION_NATS_URL", server.url())
        .env(
            "ORION_NATS_PASSWORD",
            server.password("ops-console").unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// Waits until the container's logs (via Docker itself) contain `needle`.
async fn wait_for_log(docker: &bollard::Docker, id: &str, needle: &str) {
    let what = format!("container {id} logged {needle:?}");
    wait_until(&what, Duration::from_secs(10), || async {
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: "5".into(),
            ..Default::default()
        };
        let tail: Vec<_> = docker
            .logs(id, Some(options))
            .filter_map(|c| async move { c.ok() })
            .collect()
            .await;
        tail.iter()
            .any(|c| c.to_string().contains(needle))
            .then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_evidence_holds_no_secrets_and_caps_log_lines() {
    const SECRETS: [&str; 3] = ["hunter2-secret", "tok-secret", "arg-secret"];
    let (docker, web) = setup().await;
    // 6000 numbered lines, one line that prints the password, then a marker. The secret
    // argument is `$1` of the script, which never prints it.
    let script = "i=0; while [ $i -lt 6000 ]; do echo line-$i; i=$((i+1)); done; \
                  echo \"connecting with $DB_PASSWORD\"; echo logs-complete; exec sleep 3600";
    let id = web
        .run(Spec {
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "evidence-test".into(),
                "--password=arg-secret".into(),
            ]),
            env: vec!["DB_PASSWORD=hunter2-secret".into()],
            labels: vec![("com.example.api-token".into(), "tok-secret".into())],
            ..busybox()
        })
        .await;
    wait_for_log(&docker, &id, "logs-complete").await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;

    // Twice the documented maximum: clamped, and both the receipt and the bundle say so.
    let receipts = send(
        &console,
        &signed(command(
            "export_evidence",
            &web.name,
            json!({ "log_lines": 10_000 }),
        )),
    )
    .await;
    let last = final_receipt(&receipts);
    assert_eq!(last.status.to_string(), "success", "{}", error_of(last));
    let name = last.result.as_ref().expect("a result")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = ops_worker::evidence::fetch(&console, &name).await.unwrap();
    let files: BTreeMap<String, Vec<u8>> = ops_worker::evidence::unpack_verified(&bytes)
        .unwrap()
        .into_iter()
        .collect();

    // No secret anywhere in any file (the gzip is unpacked, so compression hides nothing).
    for (path, content) in &files {
        let text = String::from_utf8_lossy(content);
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {path}:\n{text}"
            );
        }
    }

    let result = |key: &str| {
        last.result
            .as_ref()
            .and_then(|r| r.get(key))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(result("log_lines"), 5000, "{:?}", last.result);
    assert_eq!(result("log_lines_requested"), 10_000, "{:?}", last.result);
    let count = result("redactions").as_u64().expect("a redaction count");

    let container = web.containers().await[0]
        .name
        .clone()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let inspect: Value =
        serde_json::from_slice(&files[&format!("containers/{container}/inspect.json")]).unwrap();
    let env = inspect["Config"]["Env"].as_array().unwrap();
    let db = env
        .iter()
        .position(|e| e.as_str().unwrap().starts_with("DB_PASSWORD="))
        .expect("the variable name stays");
    assert_eq!(env[db], "DB_PASSWORD=[redacted]");
    assert_eq!(
        inspect["Config"]["Labels"]["com.example.api-token"],
        "[redacted]"
    );
    assert_eq!(inspect["Config"]["Cmd"][4], "--password=[redacted]");
    assert_eq!(inspect["Args"][3], "--password=[redacted]");
    // What is not a credential stays as it was.
    assert_eq!(inspect["Config"]["Cmd"][3], "evidence-test");
    assert_eq!(
        inspect["Config"]["Labels"][support::service::SERVICE_LABEL],
        web.name.as_str()
    );

    // The redaction record names every place, never a value, and is in the manifest.
    let manifest = String::from_utf8_lossy(&files["MANIFEST.sha256"]).into_owned();
    assert!(manifest.contains("  redactions.json\n"), "{manifest}");
    let record: Value = serde_json::from_slice(&files["redactions.json"]).unwrap();
    let listed = record["redactions"].as_array().unwrap();
    assert_eq!(record["count"].as_u64(), Some(listed.len() as u64));
    assert_eq!(count, listed.len() as u64);
    let find = |path: &str| {
        listed
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no redaction of {path} in {record:#}"))
    };
    let r = find(&format!("/Config/Env/{db}"));
    assert_eq!(r["container"], container.as_str());
    assert_eq!(r["name"], "DB_PASSWORD");
    assert_eq!(r["reason"], "environment_value");
    let r = find("/Config/Labels/com.example.api-token");
    assert_eq!(r["reason"], "sensitive_name");
    assert_eq!(r["keyword"], "token");
    for path in ["/Config/Cmd/4", "/Args/3"] {
        let r = find(path);
        assert_eq!(r["name"], "--password");
        assert_eq!(r["keyword"], "password");
    }
    // The password the container printed is known, so it is scrubbed from its logs too.
    let logs =
        String::from_utf8_lossy(&files[&format!("containers/{container}/logs.txt")]).into_owned();
    assert!(logs.contains("connecting with [redacted]"), "{logs}");
    assert!(listed
        .iter()
        .any(|r| r["file"] == format!("containers/{container}/logs.txt")
            && r["reason"] == "known_secret"
            && r["occurrences"] == 1));

    // Exactly the documented maximum of lines: the last 5000 of 6002.
    assert_eq!(logs.lines().count(), 5000);
    assert!(
        logs.lines().next().unwrap().ends_with(" line-1002"),
        "{logs}"
    );
    assert!(logs.lines().last().unwrap().ends_with(" logs-complete"));
    let summary: Value = serde_json::from_slice(&files["bundle.json"]).unwrap();
    assert_eq!(summary["log_lines"], 5000, "{summary:#}");
    assert_eq!(summary["log_lines_requested"], 10_000, "{summary:#}");
    assert_eq!(summary["log_lines_max"], 5000, "{summary:#}");
    assert!(manifest.contains("  bundle.json\n"), "{manifest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_leaves_every_command_with_one_final_receipt_and_none_run_twice()
{
    let (docker, web) = setup().await;
    let starts = Starts::watch(&docker, &web.name);
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let mut worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;

    const COMMANDS: usize = 12;
    let commands: Vec<_> = (0..COMMANDS)
        .map(|_| signed(command("restart", &web.name, json!({"timeout_s": 1}))))
        .collect();
    for command in &commands {
        console.publish(command).await.unwrap();
    }
    // Let a few run, then crash the worker in the middle of the stream.
    wait_until(
        "three final receipts before the kill",
        Duration::from_secs(30),
        || async { (final_receipts(&server).await.len() >= 3).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", worker.log_text()));
    worker.kill_9();
    let _restarted =
        WorkerProcess::start(&server, &[&web.name], &[("OPS_CLOCK_SKEW_S", "600")]).await;

    let finals = wait_until(
        "a final receipt for every command",
        Duration::from_secs(90),
        || async {
            let finals = final_receipts(&server).await;
            commands
                .iter()
                .all(|c| finals.iter().any(|r| r.command_id == c.id))
                .then_some(finals)
        },
    )
    .await
    .unwrap();
    let mut successes = 0;
    let mut interrupted = 0;
    for command in &commands {
        let mine: Vec<_> = finals
            .iter()
            .filter(|r| r.command_id == command.id)
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "command {} has {} final receipts: {mine:?}",
            command.id,
            mine.len()
        );
        match mine[0].status.to_string().as_str() {
            "success" => successes += 1,
            _ => {
                assert!(
                    error_of(mine[0]).contains("interrupted"),
                    "unexpected failure: {}",
                    error_of(mine[0])
                );
                interrupted += 1;
            }
        }
    }
    let restarts = starts.settled_at_least(1 + successes).await - 1; // less the first start
    assert!(
        restarts >= successes && restarts <= successes + interrupted,
        "Docker started the service {restarts} times for {successes} successful and {interrupted} interrupted restarts: a command ran twice or a success did not run"
    );
    assert!(
        successes >= COMMANDS - 1,
        "only {successes} of {COMMANDS} succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_could_not_be_published_is_published_by_the_redelivery_and_nothing_runs_twice(
) {
    let (docker, web) = setup().await;
    let starts = Starts::watch(&docker, &web.name);
    web.run(busybox()).await;
    let server = provisioned_server().await;
    let js = server.admin_jetstream().await.unwrap();
    let console = console(&server).await;
    let worker = WorkerProcess::start(&server, &[&web.name], &[]).await;

    // The ops stream stops taking receipts: ops-worker can run the command and record its
    // receipt, but not publish it.
    let mut stream = js.get_stream("TITAN_OPS").await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    let subjects = config.subjects.clone();
    config.subjects = vec!["titan.ops.command.v1".into()];
    js.update_stream(&config).await.unwrap();
    let command = signed(command("restart", &web.name, json!({"timeout_s": 1})));
    console.publish(&command).await.unwrap();
    let final_id = ops_worker::receipts::receipt_id(&command.id, "final").to_string();
    wait_for(
        "the receipt failed to publish",
        Duration::from_secs(60),
        || {
            worker
                .log_text()
                .lines()
                .any(|l| l.contains("gave up publishing a result") && l.contains(&final_id))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}:\n{}", worker.log_text()));
    assert_eq!(
        starts.settled_at_least(2).await,
        2,
        "first start + the restart"
    );

    // Receipts are stored again: the redelivered command publishes the recorded receipt.
    config.subjects = subjects;
    js.update_stream(&config).await.unwrap();
    let finals = wait_until(
        "the redelivered command's final receipt",
        Duration::from_secs(60),
        || async {
            let mut finals = final_receipts(&server).await;
            finals.retain(|r| r.command_id == command.id);
            (!finals.is_empty()).then_some(finals)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}:\n{}", worker.log_text()));
    assert_eq!(finals.len(), 1, "{finals:?}\n{}", worker.log_text());
    assert_eq!(finals[0].status.to_string(), "success");
    assert_eq!(finals[0].id.to_string(), final_id);
    assert_eq!(
        starts.settled_at_least(2).await,
        2,
        "the redelivery ran the restart again"
    );
}

/// Timestamps outside the supported range (after their offset is applied): decode refuses them.
const EDGE_OF_TIME: &[&str] = &[
    "9999-12-31T23:59:59-00:01",
    "0000-01-01T00:00:00+00:01",
    "1969-12-31T23:59:59Z",
    "9999-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
];

/// Poison commands: an edge-of-time `ts` on a correctly signed command gets a failure receipt
/// naming `/ts` and the range rule (its id is readable: SPEC §5), one whose id is unreadable too
/// ends as a dead letter; the worker keeps running and handles the next valid command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_at_the_edge_of_time_are_refused_and_the_worker_goes_on() {
    let server = provisioned_server().await;
    let mut worker = WorkerProcess::start(&server, &["web"], &[]).await;
    let js = async_nats::jetstream::new(admin(&server).await);
    let keys = test_keys();
    let mut poisoned = Vec::new();
    for timestamp in EDGE_OF_TIME {
        let mut raw = command("arm", "", Value::Null);
        raw["ts"] = json!(timestamp);
        raw["meta"]["signature"] = json!("0".repeat(64));
        let raw = keys.signed(&raw).unwrap();
        poisoned.push(raw["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
        js.publish(
            "titan.ops.command.v1",
            serde_json::to_vec(&raw).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let mut unreadable = command("arm", "", Value::Null);
    unreadable["id"] = json!("not-an-id");
    unreadable["ts"] = json!("9999-12-31T23:59:59-00:01");
    js.publish(
        "titan.ops.command.v1",
        serde_json::to_vec(&unreadable).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let console = console(&server).await;
    let receipts = send(&console, &signed(command("arm", "", Value::Null))).await;
    assert_eq!(
        final_receipt(&receipts).status.to_string(),
        "success",
        "{}",
        worker.log_text()
    );
    let all = all_receipts(&server).await;
    for id in &poisoned {
        let receipt = all
            .iter()
            .find(|r| &r.command_id == id)
            .unwrap_or_else(|| panic!("no receipt for {id}:\n{}", worker.log_text()));
        assert_eq!(receipt.status.to_string(), "failure");
        let error = error_of(receipt);
        assert!(
            error.contains("/ts") && error.contains("date_time_range"),
            "{error}"
        );
    }
    let cli = contracts::bus::Bus::<contracts::services::ApprovalCli>::connect(
        server.bus_config::<contracts::services::ApprovalCli>(),
    )
    .await
    .unwrap();
    let mut letters = cli
        .read::<contracts::DeadLetter>(contracts::bus::ReadFrom::Start)
        .await
        .unwrap();
    let (letter, _) = tokio::time::timeout(Duration::from_secs(10), letters.next())
        .await
        .expect("the unreadable command is dead-lettered")
        .unwrap()
        .unwrap();
    assert_eq!(letter.service.as_str(), "ops-worker");
    assert_eq!(letter.reason.code.to_string(), "schema_violation");
    assert!(
        letter.reason.message.contains("date_time_range"),
        "{:?}",
        letter.reason
    );
    assert_eq!(worker.terminate(), Some(0), "{}", worker.log_text());
}

/// Sends a slow restart (30 s to stop) to each of `services` and waits until each is accepted;
/// returns the commands and the instance (executor id) that accepted each.
async fn slow_restarts(
    server: &contracts::local_server::NatsServer,
    console: &contracts::bus::Bus<contracts::services::OpsConsole>,
    services: &[TestService],
) -> (
    Vec<tokio::task::JoinHandle<ops_client::client::Receipts>>,
    Vec<uuid::Uuid>,
    Vec<String>,
) {
    let mut waiting = Vec::new();
    let mut ids = Vec::new();
    for service in services {
        service.run(slow_to_stop()).await;
        let restart = signed(command("restart", &service.name, json!({"timeout_s": 30})));
        ids.push(restart.id);
        let console = console.clone();
        waiting.push(tokio::spawn(async move { send(&console, &restart).await }));
    }
    for id in &ids {
        wait_accepted(server, *id).await;
    }
    let receipts = all_receipts(server).await;
    let instances = ids
        .iter()
        .map(|id| {
            receipts
                .iter()
                .find(|r| r.command_id == *id && r.status.to_string() == "pending")
                .map(|r| r.meta.executor_id.clone())
                .expect("accepted")
        })
        .collect();
    (waiting, ids, instances)
}

/// Where `command_id`'s final receipt is in the receipt stream.
fn final_position(receipts: &[OpsReceipt], command_id: uuid::Uuid) -> usize {
    receipts
        .iter()
        .position(|r| r.command_id == command_id && r.status.to_string() != "pending")
        .unwrap_or_else(|| panic!("no final receipt for {command_id}"))
}

/// Two instances share the command consumer. A `cancel_all` or `halt` handled by either one
/// cancels the matching work on both (through the control board, not process memory), and
/// answers only after that work ended: its receipt comes after theirs, and after a halt no
/// container of the halted services is running or started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_all_and_halt_reach_the_work_of_every_instance() {
    let (docker, _) = setup().await;
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 4;
    // Fresh services each round: a cancelled slow restart leaves its container stopping.
    let services: Vec<Vec<TestService>> = (0..2 * ROUNDS)
        .map(|_| (0..PER_ROUND).map(|_| TestService::new(&docker)).collect())
        .collect();
    let server = provisioned_server().await;
    let console = console(&server).await;

    let mut rounds = services.iter();
    for canceller in ["cancel_all", "halt"] {
        let mut crossed = false;
        for _ in 0..ROUNDS {
            let round = rounds.next().expect("enough services");
            // Two instances for this round's services (`halt all` means exactly them).
            let names: Vec<&str> = round.iter().map(|s| s.name.as_str()).collect();
            let a = WorkerProcess::start(&server, &names, &[]).await;
            let b = WorkerProcess::start(&server, &names, &[]).await;
            let starts: Vec<Starts> = round
                .iter()
                .map(|s| Starts::watch(&docker, &s.name))
                .collect();
            let (waiting, ids, instances) = slow_restarts(&server, &console, round).await;
            let (target, params) = match canceller {
                "halt" => ("all", json!({"timeout_s": 1})),
                _ => ("", Value::Null),
            };
            let cancel = signed(command(canceller, target, params));
            let answer = final_receipt(&send(&console, &cancel).await).clone();
            assert_eq!(
                answer.status.to_string(),
                "success",
                "{}",
                error_of(&answer)
            );
            let cancelled = answer.result.as_ref().unwrap()["cancelled"].clone();
            for id in &ids {
                assert!(
                    cancelled
                        .as_array()
                        .unwrap()
                        .contains(&json!(id.to_string())),
                    "{canceller} did not list {id}: {cancelled}\n{:#?}\nA:\n{}\nB:\n{}",
                    all_receipts(&server)
                        .await
                        .iter()
                        .map(|r| (
                            r.command_id,
                            r.status.to_string(),
                            r.meta.executor_id.clone(),
                            r.error.as_ref().map(|e| e.to_string())
                        ))
                        .collect::<Vec<_>>(),
                    a.log_text(),
                    b.log_text()
                );
            }
            for restart in waiting {
                let restart = restart.await.unwrap();
                let error = error_of(final_receipt(&restart));
                assert!(
                    error.contains(&format!("cancelled by {canceller} {}", cancel.id)),
                    "{error}"
                );
            }
            // The canceller answered only after every cancelled command had ended.
            let receipts = all_receipts(&server).await;
            let answered = final_position(&receipts, cancel.id);
            for id in &ids {
                assert!(
                    final_position(&receipts, *id) < answered,
                    "{canceller} answered before {id} ended"
                );
            }
            if canceller == "halt" {
                for (service, starts) in round.iter().zip(&starts) {
                    let after = service.containers().await;
                    assert!(
                        after.iter().all(|c| !running(c)),
                        "a container of {} runs after the halt",
                        service.name
                    );
                    assert_eq!(
                        starts.settled_at_least(1).await,
                        1,
                        "{} was started again after its first start",
                        service.name
                    );
                }
                send(&console, &signed(command("arm", "", Value::Null))).await;
            }
            drop((a, b));
            if instances.iter().any(|i| *i != answer.meta.executor_id) {
                crossed = true;
                break;
            }
        }
        assert!(
            crossed,
            "in {ROUNDS} rounds every restart ran on the instance that handled {canceller}: \
             the cross-instance path was never exercised"
        );
    }
}

/// A halt replayed (same id, same bytes) is answered "seen before": it cancels nothing that
/// started after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_halt_cancels_nothing() {
    let (_docker, slow) = setup().await;
    slow.run(slow_to_stop()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&slow.name], &[]).await;
    let console = console(&server).await;

    let halt = signed(command("halt", &slow.name, json!({"timeout_s": 1})));
    assert_eq!(
        final_receipt(&send(&console, &halt).await)
            .status
            .to_string(),
        "success"
    );
    send(&console, &signed(command("arm", "", Value::Null))).await;
    slow.run(slow_to_stop()).await;
    let restart = signed(command("restart", &slow.name, json!({"timeout_s": 3})));
    let restart_id = restart.id;
    let waiting = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &restart).await })
    };
    wait_accepted(&server, restart_id).await;
    // The captured bytes again, without the publisher's message id (so past the server's
    // duplicate window), while the restart is still stopping its container.
    let js = async_nats::jetstream::new(admin(&server).await);
    let replayed = js
        .publish(
            "titan.ops.command.v1",
            contracts::encode(&halt).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    wait_until("the replay handled", Duration::from_secs(30), || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream("ops-worker-ops_command-v1", "TITAN_OPS")
            .await
            .unwrap();
        // Handled: delivered and acknowledged, only the restart still outstanding.
        let info = consumer.info().await.unwrap();
        (info.delivered.stream_sequence >= replayed
            && info.num_pending == 0
            && info.num_ack_pending <= 1)
            .then_some(())
    })
    .await
    .unwrap();
    assert!(
        !all_receipts(&server)
            .await
            .iter()
            .any(|r| r.command_id == restart_id && r.status.to_string() != "pending"),
        "the restart ended before the replay was handled: this run proves nothing"
    );
    let restart = waiting.await.unwrap();
    assert_eq!(
        final_receipt(&restart).status.to_string(),
        "success",
        "the replayed halt cancelled a restart sent after it: {}",
        error_of(final_receipt(&restart))
    );
}

/// `withdraw` takes back a command that has not started (it never will, and its final receipt
/// says so), and answers for one that runs with how it ended, without cancelling it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdraw_keeps_a_queued_command_from_ever_starting_and_lets_a_running_one_finish() {
    let (docker, slow) = setup().await;
    let starts = Starts::watch(&docker, &slow.name);
    slow.run(slow_to_stop()).await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&slow.name], &[]).await;
    let console = console(&server).await;

    // A restart that takes 3 s, and one queued behind it on the same target.
    let running = signed(command("restart", &slow.name, json!({"timeout_s": 3})));
    let queued = signed(command("restart", &slow.name, json!({"timeout_s": 3})));
    let running_id = running.id;
    let queued_id = queued.id;
    let first = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &running).await })
    };
    wait_accepted(&server, running_id).await;
    let second = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &queued).await })
    };
    let withdraw = |id: uuid::Uuid| {
        signed(command(
            "withdraw",
            "",
            json!({"command_id": id, "command_type": "restart"}),
        ))
    };
    let answer = send(&console, &withdraw(queued_id)).await;
    let answer = final_receipt(&answer).clone();
    assert_eq!(
        answer.status.to_string(),
        "success",
        "{}",
        error_of(&answer)
    );
    let result = answer.result.clone().unwrap();
    assert_eq!(result["withdrawn"], json!(true), "{result:?}");
    let queued = second.await.unwrap();
    let queued = final_receipt(&queued);
    assert_eq!(
        queued.error_code,
        Some(ops_worker::receipts::FailureCode::Withdrawn),
        "{}",
        error_of(queued)
    );
    assert_eq!(
        &contracts::decode_value::<OpsReceipt>(result["receipt"].clone()).unwrap(),
        queued
    );

    // The running one is not cancelled: the answer waits for its end and carries it.
    let answer = send(&console, &withdraw(running_id)).await;
    let answer = final_receipt(&answer).clone();
    assert_eq!(
        answer.status.to_string(),
        "success",
        "{}",
        error_of(&answer)
    );
    let result = answer.result.clone().unwrap();
    assert_eq!(result["withdrawn"], json!(false));
    assert_eq!(result["receipt"]["status"], json!("success"));
    let running = first.await.unwrap();
    assert_eq!(final_receipt(&running).status.to_string(), "success");
    // Let the queued one reach its turn: it finds its record and never restarts anything.
    wait_until(
        "no command outstanding",
        Duration::from_secs(30),
        || async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                async_nats::jetstream::new(admin(&server).await)
                    .get_consumer_from_stream("ops-worker-ops_command-v1", "TITAN_OPS")
                    .await
                    .unwrap();
            let info = consumer.info().await.unwrap();
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(
        starts.settled_at_least(1 + 1).await,
        1 + 1,
        "first start + the one restart that ran: the withdrawn one ran too"
    );
}

/// A halt that arrives while a deploy runs waits for the deploy's rollback before it stops the
/// service. The service binds a fixed host port, so its old container was stopped first and the
/// rollback starts it again: that start must come before halt's stop, never after halt
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_during_a_deploy_has_the_last_word_on_the_containers() {
    let (docker, web) = setup().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    web.run(Spec {
        host_port: Some(port),
        ..busybox()
    })
    .await;
    let server = provisioned_server().await;
    let _worker = WorkerProcess::start(&server, &[&web.name], &[]).await;
    let console = console(&server).await;

    let deploy = signed(command("deploy", &web.name, json!({"image": BUSYBOX_2})));
    let deploy_id = deploy.id;
    let deploying = {
        let console = console.clone();
        tokio::spawn(async move { send(&console, &deploy).await })
    };
    // The new container runs (its settle period), the old one is stopped for the port.
    let new_image = image_id(&docker, BUSYBOX_2).await;
    wait_until(
        "the new container running",
        Duration::from_secs(30),
        || async {
            web.containers()
                .await
                .iter()
                .any(|c| running(c) && c.image.as_deref() == Some(new_image.as_str()))
                .then_some(())
        },
    )
    .await
    .unwrap();
    let halt = signed(command("halt", &web.name, json!({"timeout_s": 1})));
    let halted = final_receipt(&send(&console, &halt).await).clone();
    assert_eq!(
        halted.status.to_string(),
        "success",
        "{}",
        error_of(&halted)
    );
    let after_halt = Starts::watch_since(&docker, &web.name, time::OffsetDateTime::now_utc());
    let deployed = deploying.await.unwrap();
    let deployed = final_receipt(&deployed);
    assert_eq!(deployed.status.to_string(), "failure");
    assert!(
        error_of(deployed).contains(&format!("cancelled by halt {}", halt.id)),
        "{}",
        error_of(deployed)
    );
    let receipts = all_receipts(&server).await;
    assert!(final_position(&receipts, deploy_id) < final_position(&receipts, halt.id));
    // Nothing of the service runs, nor starts in the seconds after halt answered.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < quiet_until {
        assert!(
            web.containers().await.iter().all(|c| !running(c)),
            "a container runs after the halt"
        );
        // Time itself is the condition: nothing may run for the whole 3 s, so this is no
        // wait for a condition but a watch over a period.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = web.containers().await;
    assert!(
        after
            .iter()
            .all(|c| c.image.as_deref() != Some(new_image.as_str())),
        "the rollback left the new container behind"
    );
    assert_eq!(
        after_halt.settled_at_least(0).await,
        0,
        "a container of the service was started after halt answered"
    );
}
