//! The `brain` binary: refuses a bad policy or a missing signing key before connecting, checks
//! policies, makes signing keys, runs against a real nats-server (its actions signed) and stops
//! gracefully on SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orion_testkit::wait_until;
use support::*;

const BRAIN: &str = env!("CARGO_BIN_EXE_brain");

fn example_policy() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.toml")
}

/// A TEST KEY made with `brain keygen` in `dir`; returns its file and the public key printed.
fn keygen(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let path = dir.join("brain.key");
    let output = Command::new(BRAIN)
        .args(["keygen", "--out", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("brain_public_keys = [\""))
        .and_then(|l| l.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("keygen prints commander's line: {stdout}"))
        .to_string();
    (path, public)
}

#[test]
fn a_bad_policy_exits_2_with_the_line_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-policy.toml");
    std::fs::write(
        &path,
        r#"autonomy_level = "N2"

[[rules]]
name = "restart"
incident_types = ["service_outage"]
action = "reboot_everything"
safety = "SAFE"
parameters = { service_name = "web" }
cooldown_s = 60
"#,
    )
    .unwrap();
    let (key, _) = keygen(dir.path());
    let started = Instant::now();
    let output = Command::new(BRAIN)
        .args(["run", "--policy", path.to_str().unwrap()])
        .env("ORION_BRAIN_SIGNING_KEY_FILE", &key)
        // Nothing listens there: brain must not get as far as trying.
        .env("ORION_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "bad-policy.toml:6:10: rule `restart`: unknown action type \"reboot_everything\""
        ),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("connect"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A TOML syntax error too.
    std::fs::write(&path, "autonomy_level = \"N2\"\n[[rules]\n").unwrap();
    let output = Command::new(BRAIN)
        .args(["run", "--policy", path.to_str().unwrap()])
        .env("ORION_BRAIN_SIGNING_KEY_FILE", &key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad-policy.toml:2:"), "{stderr}");
    // `check` ran and found the problem: 1.
    let output = Command::new(BRAIN)
        .args(["check", "--policy", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad-policy.toml:2:"), "{stderr}");

    // No policy at all.
    let output = Command::new(BRAIN)
        .arg("run")
        .env_remove("ORION_BRAIN_POLICY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no policy file"));
}

#[test]
fn check_prints_the_policy_and_help_explains_the_keys() {
    let output = Command::new(BRAIN)
        .args(["check", "--policy", example_policy().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("autonomy level N3"), "{stdout}");
    assert!(stdout.contains("restart-crashed-service (line"), "{stdout}");
    assert!(stdout.contains("fallback (line"), "{stdout}");

    let output = Command::new(BRAIN)
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let output = Command::new(BRAIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "autonomy_level",
        "approval_timeout_s",
        "[[admins]]",
        "cooldown_s",
        "rate_limit",
        "circuit_breaker",
        "targets = [",
        "canonical name",
        "${tags.<key>}",
        "ORION_NATS_URL",
        "ORION_NATS_PASSWORD_BRAIN",
        "ORION_BRAIN_SIGNING_KEY_FILE",
        "brain keygen --out FILE",
        "Orion-Signature",
        "ORION_ENV",
        "ORION_LOG_FORMAT",
        "BRAIN_CONFIG",
        "Exit codes",
        "README.md",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let output = Command::new(BRAIN).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn without_a_readable_signing_key_brain_exits_2_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let run = |key: Option<&std::path::Path>| {
        let mut command = Command::new(BRAIN);
        command
            .args(["run", "--policy", example_policy().to_str().unwrap()])
            .env_remove("ORION_BRAIN_SIGNING_KEY_FILE")
            // Nothing listens there: brain must not get as far as trying.
            .env("ORION_NATS_URL", "nats://127.0.0.1:1");
        if let Some(key) = key {
            command.arg("--signing-key").arg(key);
        }
        let started = Instant::now();
        let output = command.output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(!stderr.to_lowercase().contains("connect"), "{stderr}");
        stderr
    };
    let none = run(None);
    assert!(
        none.contains("no signing key") && none.contains("brain keygen --out FILE"),
        "{none}"
    );
    let missing = dir.path().join("missing.key");
    let stderr = run(Some(&missing));
    assert!(
        stderr.contains("signing key refused: reading key file") && stderr.contains("missing.key"),
        "{stderr}"
    );
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let stderr = run(Some(&garbage));
    assert!(
        stderr.contains("is not a base64 PKCS#8 Ed25519 key"),
        "{stderr}"
    );

    // keygen never overwrites a key; public-key prints the key keygen printed.
    let (key, public) = keygen(dir.path());
    let again = Command::new(BRAIN)
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let printed = Command::new(BRAIN)
        .args(["public-key", "--signing-key", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), public);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_decides_and_stops_gracefully_on_sigterm() {
    let server = provisioned_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let log = dir.path().join("brain.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(BRAIN)
        .args(["run", "--policy", example_policy().to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORION_NATS_URL", server.url())
        .env(
            "ORION_NATS_PASSWORD_BRAIN",
            server.password("brain").unwrap(),
        )
        .env("ORION_BRAIN_SIGNING_KEY_FILE", &key)
        .env("ORION_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut seen = Observer::new(&server).await;
    publish_incident(
        &server,
        &incident("service_outage", "critical", &[("service_name", "web")]),
    )
    .await;
    let decision = tokio::time::timeout(WAIT, seen.decisions.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no decision; brain's log:\n{}",
                std::fs::read_to_string(&log).unwrap()
            )
        })
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(decision.decision_type.to_string(), "EXECUTE_SAFE_ACTION");
    let (action, raw) = tokio::time::timeout(WAIT, seen.actions.next())
        .await
        .expect("an action")
        .unwrap()
        .unwrap();
    assert_eq!(action.action_type.to_string(), "restart_service");
    // Signed with the key from the file, verifiable with the public key keygen printed.
    let verifier = contracts::signing::Verifier::for_signer("brain", [public.as_str()]).unwrap();
    let header = raw.header(contracts::signing::SIGNATURE_HEADER);
    assert_eq!(
        verifier.verify_payload("brain", &raw.payload, header),
        Ok(())
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = wait_until("brain stopped on SIGTERM", WAIT, || {
        std::future::ready(child.try_wait().unwrap())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", std::fs::read_to_string(&log).unwrap()))
    .code();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("\"brain stopped\""),
        "structured logs: {text}"
    );
    assert!(
        !text.to_lowercase().contains("permissions violation"),
        "{text}"
    );
}
