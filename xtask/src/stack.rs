//! `cargo xtask up` / `down`: the local stack — nats-server (through the `orion-bus` command of
//! the contracts crate) and every service binary, detached, with data, logs, credentials and
//! process ids under `target/orion-stack/`. brain's signing key (`brain.key`, made by
//! `brain keygen` on first use) is kept there too; brain reads it through
//! `ORION_BRAIN_SIGNING_KEY_FILE`, commander trusts its public half through
//! `ORION_BRAIN_PUBLIC_KEYS` (from `brain public-key`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::inventory::Layout;

/// Where `up` has each service serve its metrics, /healthz and /readyz: the ports
/// deploy/prometheus/prometheus.yml scrapes (docs/OPERATIONS.md).
const METRICS_ADDRESSES: &[(&str, &str)] = &[
    ("ops-worker", "127.0.0.1:9464"),
    ("guardian", "127.0.0.1:9465"),
    ("brain", "127.0.0.1:9466"),
    ("commander", "127.0.0.1:9467"),
];

/// The services `up` starts, with their arguments (paths relative to the repository root).
const SERVICES: &[(&str, &[&str])] = &[
    (
        "ops-worker",
        &["run", "--config", "deploy/ops-worker/ops-worker.toml"],
    ),
    (
        "guardian",
        &["run", "--config", "crates/guardian/guardian.toml"],
    ),
    ("brain", &["run", "--policy", "crates/brain/policy.toml"]),
    ("commander", &["run"]),
];

fn stack_dir(layout: &Layout) -> PathBuf {
    layout.root.join("target/orion-stack")
}

fn cargo(layout: &Layout, args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(&layout.root)
        .status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Starts nats-server and the services (each only if it is not running already).
pub fn up(layout: &Layout) -> Result<()> {
    crate::machine::ensure_nats_server()?;
    cargo(
        layout,
        &[
            "build",
            "--quiet",
            "--workspace",
            "--all-features",
            "--bins",
        ],
    )?;
    let dir = stack_dir(layout);
    let bin = layout.root.join("target/debug");
    let status = Command::new(bin.join("orion-bus"))
        .args(["up", "--dir"])
        .arg(&dir)
        .current_dir(&layout.root)
        .status()?;
    if !status.success() {
        bail!("orion-bus up failed");
    }
    let brain_key = brain_key(&bin, &dir)?;
    let keys = StackKeys {
        ops_secret: ops_secret(&dir)?,
        brain_public_key: brain_public_key(&bin, &brain_key)?,
        brain_key,
    };
    for (name, args) in SERVICES {
        let pid_file = dir.join(format!("{name}.pid"));
        if let Some(pid) = running(&pid_file) {
            eprintln!("{name} already running (pid {pid})");
            continue;
        }
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(bin.join(name))
            .args(*args)
            .env_clear()
            .envs(service_env(&dir, name, &keys)?)
            .current_dir(&layout.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        std::fs::write(&pid_file, child.id().to_string())?;
        eprintln!(
            "{name} started (pid {}), log {}",
            child.id(),
            dir.join(format!("{name}.log")).display()
        );
    }
    eprintln!("the local stack runs; `cargo xtask down` stops it");
    Ok(())
}

/// Stops the services, then nats-server.
pub fn down(layout: &Layout) -> Result<()> {
    let dir = stack_dir(layout);
    for (name, _) in SERVICES.iter().rev() {
        let pid_file = dir.join(format!("{name}.pid"));
        if let Some(pid) = running(&pid_file) {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            for _ in 0..100 {
                if running(&pid_file).is_none() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("{name} stopped (pid {pid})");
        }
        std::fs::remove_file(&pid_file).ok();
    }
    let bin = layout.root.join("target/debug/orion-bus");
    if bin.exists() {
        Command::new(bin)
            .args(["down", "--dir"])
            .arg(&dir)
            .status()?;
    }
    Ok(())
}

fn running(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let alive = Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    alive.then_some(pid)
}

/// The local stack's secrets, each handed only to the services that use it.
struct StackKeys {
    /// The HMAC key of ops commands (ops-worker and commander).
    ops_secret: String,
    /// brain's signing key file (brain only).
    brain_key: PathBuf,
    /// Its public half (commander trusts it).
    brain_public_key: String,
}

/// Only what `service` needs: its own NATS credentials (never another identity's, nor the
/// admin's), the keys it signs or verifies with, and the operator's logging and environment
/// settings.
fn service_env(dir: &Path, service: &str, keys: &StackKeys) -> Result<Vec<(String, String)>> {
    let mut env = read_env(&dir.join("credentials").join(format!("{service}.env")))?;
    if ["ops-worker", "commander"].contains(&service) {
        env.push(("OPS_SECRET".into(), keys.ops_secret.clone()));
    }
    if service == "brain" {
        env.push((
            "ORION_BRAIN_SIGNING_KEY_FILE".into(),
            keys.brain_key.display().to_string(),
        ));
    }
    if service == "commander" {
        env.push((
            "ORION_BRAIN_PUBLIC_KEYS".into(),
            keys.brain_public_key.clone(),
        ));
    }
    if let Some((_, address)) = METRICS_ADDRESSES.iter().find(|(name, _)| *name == service) {
        env.push(("ORION_METRICS_LISTEN".into(), address.to_string()));
    }
    for inherited in ["PATH", "HOME", "RUST_LOG", "ORION_LOG_FORMAT", "ORION_ENV"] {
        if let Ok(value) = std::env::var(inherited) {
            env.push((inherited.to_string(), value));
        }
    }
    Ok(env)
}

/// `KEY=VALUE` lines (comments skipped).
fn read_env(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The local stack's HMAC key for ops commands, created on first use (mode 0600).
fn ops_secret(dir: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("ops-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_string());
    }
    let bytes = random_hex(32)?;
    // Readable by its owner only from the first byte on.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, bytes.as_bytes()))
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(bytes)
}

/// The local stack's signing key for brain, created on first use with `brain keygen` (mode
/// 0600, kept across `up`s so actions already signed stay verifiable).
fn brain_key(bin: &Path, dir: &Path) -> Result<PathBuf> {
    let path = dir.join("brain.key");
    if !path.exists() {
        let output = Command::new(bin.join("brain"))
            .args(["keygen", "--out"])
            .arg(&path)
            .output()?;
        if !output.status.success() {
            bail!(
                "brain keygen failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(path)
}

/// What commander trusts: the public half of `key`, printed by `brain public-key`.
fn brain_public_key(bin: &Path, key: &Path) -> Result<String> {
    let output = Command::new(bin.join("brain"))
        .args(["public-key", "--signing-key"])
        .arg(key)
        .output()?;
    if !output.status.success() {
        bail!(
            "brain public-key failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

fn random_hex(len: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}
