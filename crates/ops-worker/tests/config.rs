//! Fail-closed configuration: every refusal says what to set, before anything connects.

use std::collections::HashMap;
use std::path::PathBuf;

use ops_worker::config::{Environment, WorkerConfig};

struct Vars(HashMap<&'static str, String>);

impl Environment for Vars {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

const SECRET: &str = "test-ops-secret-32chars!!!!!!!!";
/// Another test-only key, for prod (where the published vector key is refused).
const PROD_TEST_SECRET: &str = "prod-like-test-key-not-a-real-one-4711";

fn vars(pairs: &[(&'static str, &str)]) -> Vars {
    Vars(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ops-worker/ops-worker.toml")
}

fn refused(path: Option<&std::path::Path>, env: &Vars) -> String {
    WorkerConfig::load(path, env)
        .expect_err("the configuration should be refused")
        .to_string()
}

#[test]
fn no_secret_is_refused_with_what_to_set() {
    let message = refused(Some(&example()), &vars(&[]));
    assert!(message.contains("OPS_SECRET"), "{message}");
}

#[test]
fn weak_secrets_are_refused_without_printing_them() {
    for weak in [
        "short",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "changeme-changeme-changeme-changeme",
    ] {
        let message = refused(Some(&example()), &vars(&[("OPS_SECRET", weak)]));
        assert!(message.contains("OPS_SECRET"), "{message}");
        assert!(
            !message.contains(weak),
            "the secret leaked into the error: {message}"
        );
    }
}

#[test]
fn an_empty_or_dangerous_allowlist_is_refused() {
    let message = refused(None, &vars(&[("OPS_SECRET", SECRET)]));
    assert!(message.contains("allowlist"), "{message}");
    let message = refused(
        None,
        &vars(&[("OPS_SECRET", SECRET), ("OPS_ALLOWLIST", "web,nats")]),
    );
    assert!(message.contains("nats"), "{message}");
    let message = refused(
        None,
        &vars(&[("OPS_SECRET", SECRET), ("OPS_ALLOWLIST", "ops-worker")]),
    );
    assert!(message.contains("ops-worker"), "{message}");
}

#[test]
fn a_bad_number_names_the_variable() {
    let message = refused(
        Some(&example()),
        &vars(&[("OPS_SECRET", SECRET), ("OPS_CLOCK_SKEW_S", "five")]),
    );
    assert!(
        message.contains("OPS_CLOCK_SKEW_S") && message.contains("five"),
        "{message}"
    );
}

#[test]
fn an_unknown_key_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops-worker.toml");
    std::fs::write(
        &path,
        "[docker]\nallowlist = [\"web\"]\nsecret = \"oops\"\n",
    )
    .unwrap();
    let message = refused(Some(&path), &vars(&[("OPS_SECRET", SECRET)]));
    assert!(
        message.contains("secret") && message.contains("ops-worker.toml"),
        "{message}"
    );
}

#[test]
fn evidence_log_lines_above_the_maximum_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops-worker.toml");
    let write = |lines: usize| {
        std::fs::write(
            &path,
            format!("[docker]\nallowlist = [\"web\"]\n[commands]\nevidence_log_lines = {lines}\n"),
        )
        .unwrap()
    };
    write(5000);
    let config = WorkerConfig::load(Some(&path), &vars(&[("OPS_SECRET", SECRET)])).unwrap();
    assert_eq!(config.evidence_log_lines, 5000);
    write(5001);
    let message = refused(Some(&path), &vars(&[("OPS_SECRET", SECRET)]));
    assert!(
        message.contains("evidence_log_lines") && message.contains("5000"),
        "{message}"
    );
}

#[test]
fn file_overlay_and_environment_layer_in_that_order() {
    let base = WorkerConfig::load(Some(&example()), &vars(&[("OPS_SECRET", SECRET)])).unwrap();
    assert_eq!(base.clock_skew.as_secs(), 300);
    assert_eq!(base.docker.allowlist.len(), 3);
    let prod = WorkerConfig::load(
        Some(&example()),
        &vars(&[("OPS_SECRET", PROD_TEST_SECRET), ("ORION_ENV", "prod")]),
    )
    .unwrap();
    assert_eq!((prod.clock_skew.as_secs(), prod.nats.replicas), (120, 3));
    let env = WorkerConfig::load(
        Some(&example()),
        &vars(&[
            ("OPS_SECRET", PROD_TEST_SECRET),
            ("ORION_ENV", "prod"),
            ("OPS_CLOCK_SKEW_S", "30"),
            ("NATS_URL", "nats://other:4222"),
            ("OPS_ALLOWLIST", "api"),
        ]),
    )
    .unwrap();
    assert_eq!(env.clock_skew.as_secs(), 30);
    assert_eq!(env.nats.url, "nats://other:4222");
    assert_eq!(env.docker.allowlist.iter().collect::<Vec<_>>(), ["api"]);
}

#[test]
fn rotation_keys_come_from_the_environment_or_a_file() {
    let rotated = WorkerConfig::load(
        Some(&example()),
        &vars(&[
            ("OPS_SECRET", SECRET),
            (
                "OPS_SECRET_PREVIOUS",
                "previous-secret-long-enough-to-use,older-secret-long-enough-to-use",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(rotated.keys.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(
        &file,
        format!("# current first\n{SECRET}\nprevious-secret-long-enough-to-use\n"),
    )
    .unwrap();
    let from_file = WorkerConfig::load(
        Some(&example()),
        &vars(&[("OPS_SECRET_FILE", file.to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(from_file.keys.len(), 2);
    let missing = refused(
        Some(&example()),
        &vars(&[("OPS_SECRET_FILE", "/nonexistent/keys")]),
    );
    assert!(
        missing.contains("OPS_SECRET_FILE") && missing.contains("/nonexistent/keys"),
        "{missing}"
    );
}

#[test]
fn the_binary_exits_2_before_connecting_when_the_secret_is_missing() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ops-worker"))
        .args(["run", "--config", example().to_str().unwrap()])
        .env_clear()
        .env("ORION_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    // Configuration refused: 2 (contracts::runtime::ExitStatus, the same for every binary).
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("OPS_SECRET"), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("connect"),
        "it tried to connect: {stderr}"
    );
}

#[test]
fn the_published_test_key_is_refused_in_prod() {
    let message = refused(
        Some(&example()),
        &vars(&[("OPS_SECRET", SECRET), ("ORION_ENV", "prod")]),
    );
    assert!(message.contains("test key"), "{message}");
}
