//! What the end-to-end tests share: the Docker engine, a stack with the test policy and the
//! example guardian rules, unique names.

use std::path::Path;

use crate::stack::{Stack, StackOptions};

/// The Docker engine, or a clear failure (the tests never skip without it).
pub async fn docker() -> bollard::Docker {
    let docker = bollard::Docker::connect_with_socket_defaults().expect("a Docker engine socket");
    docker
        .negotiate_version()
        .await
        .expect("the Docker engine answers (`cargo xtask test` starts it)")
}

/// A stack named `name` whose ops-worker may act on `allowlist`, with the e2e policy.
pub async fn stack(
    name: &str,
    allowlist: &[&str],
    approval_timeout_s: u64,
) -> (Stack, tempfile::TempDir) {
    stack_with_receipt_timeout(name, allowlist, approval_timeout_s, 60).await
}

/// [`stack`], with commander waiting `receipt_timeout_s` for an ops command's final receipt.
pub async fn stack_with_receipt_timeout(
    name: &str,
    allowlist: &[&str],
    approval_timeout_s: u64,
    receipt_timeout_s: u64,
) -> (Stack, tempfile::TempDir) {
    let dir = stack_dir(name);
    let options = StackOptions {
        receipt_timeout_s,
        ..options(dir.path(), allowlist, approval_timeout_s)
    };
    match Stack::start(options).await {
        Ok(stack) => (stack, dir),
        Err(e) => panic!("the stack did not start: {e:#}"),
    }
}

/// A fresh directory for the configs, keys and logs of the stack `name`.
pub fn stack_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("orion-e2e-{name}-"))
        .tempdir()
        .unwrap()
}

/// What the end-to-end stacks run: the e2e policy (tests/config/policy.toml) and the example
/// guardian rules (crates/guardian/guardian.toml), configs and logs in `dir`.
pub fn options(dir: &Path, allowlist: &[&str], approval_timeout_s: u64) -> StackOptions {
    let policy =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.toml"))
            .unwrap()
            .replace(
                "approval_timeout_s = 300",
                &format!("approval_timeout_s = {approval_timeout_s}"),
            );
    StackOptions {
        dir: dir.to_path_buf(),
        allowlist: allowlist.iter().map(|s| s.to_string()).collect(),
        guardian_config: std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/guardian/guardian.toml"
        ))
        .unwrap(),
        brain_policy: policy,
        admin_identity: "e2e-operator".into(),
        receipt_timeout_s: 60,
    }
}

/// `prefix` with a short random suffix, so tests share no container or service name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}
