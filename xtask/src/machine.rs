//! Makes sure this machine has what the tests and the local stack need: `nats-server`,
//! `prometheus` with `promtool`, and a running Docker engine. Installs Debian's packages when they are missing (as root) and starts
//! `dockerd` when no engine answers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const DOCKER_SOCKET: &str = "/var/run/docker.sock";
const DOCKERD_LOG: &str = "/tmp/orion-dockerd.log";
const DOCKERD_PID: &str = "/var/run/docker.pid";

/// Installs and starts everything the test suite needs.
pub fn prepare() -> Result<()> {
    ensure_installed("nats-server", "nats-server")?;
    ensure_installed("dockerd", "docker.io")?;
    // tests/operability.rs scrapes the services with a real Prometheus and checks the alert
    // rules with promtool (both in Debian's `prometheus`).
    ensure_installed("prometheus", "prometheus")?;
    ensure_installed("promtool", "prometheus")?;
    // The Docker tests build their images from the host's static busybox (no registry here).
    ensure_file("/bin/busybox", "busybox-static")?;
    ensure_docker_running()?;
    Ok(())
}

/// Installs nats-server if it is missing (for the local stack).
pub fn ensure_nats_server() -> Result<()> {
    ensure_installed("nats-server", "nats-server")
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_installed(program: &str, package: &str) -> Result<()> {
    if on_path(program) {
        return Ok(());
    }
    eprintln!("machine: `{program}` is missing; installing Debian package `{package}`");
    if !is_root() {
        bail!("`{program}` is missing and installing `{package}` needs root: run `sudo apt-get install -y {package}`");
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if !on_path(program) {
        bail!("installed `{package}` but `{program}` is still not on PATH");
    }
    Ok(())
}

fn ensure_file(path: &str, package: &str) -> Result<()> {
    if Path::new(path).exists() {
        return Ok(());
    }
    eprintln!("machine: `{path}` is missing; installing Debian package `{package}`");
    if !is_root() {
        bail!("`{path}` is missing and installing `{package}` needs root: run `sudo apt-get install -y {package}`");
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_docker_running() -> Result<()> {
    if docker_answers() {
        return Ok(());
    }
    // A dockerd that died leaves its socket and pid file behind, so neither says whether an
    // engine is on its way up: only a live process does.
    if !dockerd_alive() {
        eprintln!("machine: no Docker engine; starting dockerd (log: {DOCKERD_LOG})");
        let log = std::fs::File::create(DOCKERD_LOG).context("creating the dockerd log")?;
        Command::new("dockerd")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting dockerd")?;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if docker_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!(
        "the Docker engine did not answer on {DOCKER_SOCKET} within 90 s; the end of {DOCKERD_LOG}:\n{}",
        log_tail(DOCKERD_LOG, 20)
    )
}

/// Whether the dockerd recorded in its pid file is still running.
fn dockerd_alive() -> bool {
    std::fs::read_to_string(DOCKERD_PID)
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "dockerd")
        })
}

fn log_tail(path: &str, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read it: {error})"),
    }
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
