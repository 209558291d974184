//! The `commander` binary on the platform's bootstrap (`contracts::runtime::ServiceMain`): a
//! refused configuration exits 2 before connecting, and SIGTERM drains and exits 0, against a
//! real nats-server.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use contracts::local_server::NatsServer;
use contracts::signing::{SigningKey, BRAIN_SIGNER};
use orion_testkit::wait_until;
use serde_json::Value;

const COMMANDER: &str = env!("CARGO_BIN_EXE_commander");
/// The SPEC's signing test vector key — a TEST KEY.
const TEST_SECRET: &str = "test-ops-secret-32chars!!!!!!!!";
/// The longest any wait here may take.
const WAIT: Duration = Duration::from_secs(20);

fn brain_public_key() -> String {
    SigningKey::generate(BRAIN_SIGNER).0.public_key_base64()
}

fn commander(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(COMMANDER)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Nothing listens there: a refusal must come before any connection attempt.
        .env("ORION_NATS_URL", "nats://127.0.0.1:1")
        .envs(env.iter().copied())
        .output()
        .expect("run the commander binary")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_refused_configuration_exits_2_before_connecting() {
    let key = brain_public_key();
    let started = Instant::now();
    // (case, environment, what the refusal says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 3] = [
        (
            "no brain key",
            vec![("OPS_SECRET", TEST_SECRET)],
            "no trusted brain key",
        ),
        (
            "no ops secret",
            vec![("ORION_BRAIN_PUBLIC_KEYS", key.as_str())],
            "OPS_SECRET",
        ),
        (
            "unknown environment",
            vec![
                ("OPS_SECRET", TEST_SECRET),
                ("ORION_BRAIN_PUBLIC_KEYS", key.as_str()),
                ("ORION_ENV", "staging"),
            ],
            "staging",
        ),
    ];
    for (case, env, needle) in cases {
        let output = commander(&["run"], &env);
        let printed = text(&output);
        assert_eq!(output.status.code(), Some(2), "{case}: {printed}");
        assert!(
            printed.contains("commander: configuration refused") && printed.contains(needle),
            "{case}: {printed}"
        );
        assert!(
            !printed.to_lowercase().contains("connect"),
            "{case}: it tried to connect: {printed}"
        );
    }
    // A config file with a key commander does not know, named by COMMANDER_CONFIG.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("commander.toml");
    std::fs::write(&path, "receipt_timeout = 5\n").unwrap();
    let output = commander(
        &["run"],
        &[
            ("OPS_SECRET", TEST_SECRET),
            ("ORION_BRAIN_PUBLIC_KEYS", key.as_str()),
            ("COMMANDER_CONFIG", path.to_str().unwrap()),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("receipt_timeout"),
        "{}",
        text(&output)
    );
    assert!(started.elapsed() < WAIT);

    // Nothing listens at the URL of a valid configuration: 3, unreachable.
    let output = commander(
        &["run"],
        &[
            ("OPS_SECRET", TEST_SECRET),
            ("ORION_BRAIN_PUBLIC_KEYS", key.as_str()),
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(
        text(&output).contains("connecting to NATS"),
        "{}",
        text(&output)
    );

    let help = commander(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    for needle in ["Exit codes", "README.md", "COMMANDER_CONFIG", "ORION_ENV"] {
        assert!(text(&help).contains(needle), "--help lacks {needle}");
    }
    let run_help = text(&commander(&["run", "--help"], &[]));
    assert!(
        run_help.contains("--config") && run_help.contains("--drain-s"),
        "{run_help}"
    );
    assert_eq!(commander(&["run", "--bogus"], &[]).status.code(), Some(2));
}

async fn provisioned_server() -> NatsServer {
    let server = NatsServer::start_with_auth().expect(
        "start nats-server (`cargo xtask test` installs it, or apt-get install nats-server)",
    );
    contracts::bus::provision_all(&async_nats::jetstream::new(admin(&server).await), 1)
        .await
        .expect("provision");
    server
}

async fn admin(server: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_0() {
    let server = provisioned_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("commander.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(COMMANDER)
        .args(["run", "--drain-s", "5"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORION_NATS_URL", server.url())
        .env(
            "ORION_NATS_PASSWORD",
            server.password("commander").expect("server with auth"),
        )
        .env("OPS_SECRET", TEST_SECRET)
        .env("ORION_BRAIN_PUBLIC_KEYS", brain_public_key())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start the commander binary");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Consuming: its micro-service endpoint (one per consumer) answers.
    let admin = admin(&server).await;
    let admin = &admin;
    wait_until("commander consuming", WAIT, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "commander exited with {status} at start; its log:\n{}",
                log_text()
            );
        }
        async move {
            let reply = admin.request("$SRV.STATS.commander", "".into()).await;
            let endpoints = reply
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.payload).ok())
                .and_then(|stats| stats["endpoints"].as_array().map(Vec::len))
                .unwrap_or(0);
            (endpoints > 0).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", log_text()));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = wait_until("commander stopped on SIGTERM", WAIT, || {
        std::future::ready(child.try_wait().unwrap())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", log_text()))
    .code();
    let text = log_text();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("SIGTERM: shutting down"), "{text}");
    assert!(text.contains("commander stopped"), "{text}");
}
