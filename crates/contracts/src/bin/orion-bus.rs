//! `orion-bus`: provisions the platform's JetStream streams, key-value buckets and object stores
//! from the inventory, and runs the local NATS server of the development stack.
//!
//! `cargo xtask up`, `cargo xtask down` and `cargo xtask provision` call this binary.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use contracts::bus::{BusConfig, DEFAULT_NATS_URL};
use contracts::local_server::{random_passwords, NatsServer, ServerOptions, ADMIN_USER};
use contracts::nats_password_var;

const PID_FILE: &str = "nats-server.pid";
const CREDENTIALS_FILE: &str = "credentials.env";

/// Provision the platform's JetStream resources; run the local development NATS server.
#[derive(Parser)]
#[command(name = "orion-bus", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create or update every stream, key-value bucket and object store of the inventory on a
    /// NATS server (idempotent). Use an identity with JetStream admin rights.
    Provision {
        /// NATS server URL(s), comma-separated.
        #[arg(long, env = "ORION_NATS_URL", default_value = DEFAULT_NATS_URL)]
        url: String,
        /// NATS user.
        #[arg(long, env = "ORION_NATS_USER")]
        user: Option<String>,
        /// NATS password (prefer the environment variable).
        #[arg(long, env = "ORION_NATS_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Replicas of every stream (3 on a 3-node cluster).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// Start a local nats-server with JetStream and the generated per-service permissions,
    /// keeping its data and credentials in DIR, and provision it.
    Up {
        /// Where the server keeps its config, data, log, pid and credentials.
        #[arg(long, default_value = "target/orion-stack")]
        dir: PathBuf,
        /// Client port.
        #[arg(long, default_value_t = 4222)]
        port: u16,
    },
    /// Stop the local nats-server started by `up` (its data stays in DIR).
    Down {
        #[arg(long, default_value = "target/orion-stack")]
        dir: PathBuf,
    },
    /// Publish one observation as the `event-source` identity (a probe, a monitor, a script);
    /// prints the event id.
    EmitEvent {
        /// The event type, e.g. service_down.
        #[arg(long = "type")]
        event_type: String,
        /// info, warning, error or critical.
        #[arg(long, default_value = "error")]
        severity: String,
        /// The observing module, `orion-<name>`.
        #[arg(long, default_value = "orion-probe")]
        source: String,
        /// A data field, KEY=VALUE (VALUE parsed as JSON when it can be); repeatable.
        #[arg(long = "data", value_name = "KEY=VALUE")]
        data: Vec<String>,
    },
    /// Print the messages of one subject as JSON lines, oldest first (as the admin user, or the
    /// user given in ORION_NATS_USER). Stops after --count messages or --timeout seconds of
    /// waiting; exit 1 if fewer than --count arrived.
    Tail {
        /// The subject, e.g. orion.outcome.v1.
        subject: String,
        /// Only messages whose JSON contains this text.
        #[arg(long)]
        matching: Option<String>,
        /// Stop after this many messages.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Seconds to wait for them.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Only messages published from now on (default: from the start of the stream).
        #[arg(long)]
        new: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Provision {
            url,
            user,
            password,
            replicas,
        } => {
            let mut config = BusConfig::new(url);
            if let (Some(user), Some(password)) = (user, password) {
                config = config.with_credentials(user, password);
            }
            provision(&config, replicas).await
        }
        Cmd::Up { dir, port } => up(&dir, port).await,
        Cmd::Down { dir } => down(&dir),
        Cmd::EmitEvent {
            event_type,
            severity,
            source,
            data,
        } => emit_event(&event_type, &severity, &source, &data).await,
        Cmd::Tail {
            subject,
            matching,
            count,
            timeout,
            new,
        } => tail(&subject, matching.as_deref(), count, timeout, new).await,
    }
}

async fn emit_event(event_type: &str, severity: &str, source: &str, data: &[String]) -> Result<()> {
    use contracts::services::EventSource;
    let mut fields = serde_json::Map::new();
    for pair in data {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--data {pair:?} is not KEY=VALUE"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        fields.insert(key.to_string(), value);
    }
    let event: contracts::Event = contracts::decode_value(serde_json::json!({
        "version": "1.0",
        "event_id": uuid::Uuid::new_v4(),
        "timestamp": contracts::Timestamp::now(),
        "source": source,
        "event_type": event_type,
        "severity": severity,
        "data": fields,
    }))
    .context("the event breaks its contract")?;
    let bus =
        contracts::bus::Bus::<EventSource>::connect(BusConfig::from_env::<EventSource>()?).await?;
    bus.publish(&event).await?;
    println!("{}", event.event_id);
    bus.close().await?;
    Ok(())
}

async fn tail(
    subject: &str,
    matching: Option<&str>,
    count: usize,
    timeout: u64,
    new: bool,
) -> Result<()> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    use futures::StreamExt;
    let info = contracts::contract_for_subject(subject)
        .with_context(|| format!("no contract in the inventory for `{subject}`"))?;
    let user = std::env::var("ORION_NATS_USER").unwrap_or_else(|_| ADMIN_USER.to_string());
    let password = std::env::var("ORION_NATS_PASSWORD")
        .or_else(|_| std::env::var(nats_password_var(&user)))
        .with_context(|| {
            format!(
                "no password for NATS user `{user}`: set ORION_NATS_PASSWORD or {}",
                nats_password_var(&user)
            )
        })?;
    let url = std::env::var("ORION_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_string());
    let client = async_nats::ConnectOptions::new()
        .user_and_password(user, password)
        .connect(url.as_str())
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(info.stream)
        .await
        .with_context(|| format!("stream {}", info.stream))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: if new {
                DeliverPolicy::New
            } else {
                DeliverPolicy::All
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut printed = 0;
    while printed < count {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.next()).await else {
            break;
        };
        let message = message?;
        let text = String::from_utf8_lossy(&message.payload);
        if matching.is_some_and(|m| !text.contains(m)) {
            continue;
        }
        println!("{text}");
        printed += 1;
    }
    if printed < count {
        bail!("only {printed} of {count} message(s) on {subject} within {timeout} s");
    }
    Ok(())
}

async fn provision(config: &BusConfig, replicas: usize) -> Result<()> {
    let mut options = async_nats::ConnectOptions::new().name("orion-bus provision");
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    let client = options
        .connect(config.url.as_str())
        .await
        .with_context(|| format!("connecting to {}", config.url))?;
    contracts::bus::provision_all(&async_nats::jetstream::new(client), replicas)
        .await
        .context("provisioning")?;
    eprintln!(
        "provisioned {} streams, {} key-value buckets, {} object stores, {} durable consumers on {}",
        contracts::STREAMS.len(),
        contracts::KEY_VALUE_BUCKETS.len(),
        contracts::OBJECT_STORES.len(),
        contracts::DURABLE_CONSUMERS.len(),
        config.url
    );
    Ok(())
}

fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let alive = Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    alive.then_some(pid)
}

/// Reads the stack's credentials, creating them on first use: every password in
/// `credentials.env` (for orion-bus itself), and one file per identity under `credentials/`,
/// which is all a process of that identity is given. Every file is created with mode 0600.
fn credentials(dir: &Path, url: &str) -> Result<BTreeMap<String, String>> {
    let path = dir.join(CREDENTIALS_FILE);
    let users: Vec<&str> = std::iter::once(ADMIN_USER)
        .chain(contracts::SERVICES.iter().copied())
        .collect();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let passwords: BTreeMap<String, String> = users
            .iter()
            .filter_map(|u| {
                Some((
                    u.to_string(),
                    vars.get(nats_password_var(u).as_str())?.to_string(),
                ))
            })
            .collect();
        if passwords.len() == users.len() {
            write_identity_files(dir, url, &passwords)?;
            return Ok(passwords);
        }
    }
    let passwords = random_passwords();
    let mut text = format!(
        "# Local development credentials written by `orion-bus up` (not secrets of any real system).\n\
         # Every identity's password, admin included: give a process only its own file in\n\
         # {}/credentials/.\nORION_NATS_URL={url}\n",
        dir.display()
    );
    for (user, password) in &passwords {
        text.push_str(&format!("{}={password}\n", nats_password_var(user)));
    }
    write_private(&path, &text)?;
    write_identity_files(dir, url, &passwords)?;
    Ok(passwords)
}

/// `credentials/<identity>.env`: the URL, the user and that identity's password only.
fn write_identity_files(dir: &Path, url: &str, passwords: &BTreeMap<String, String>) -> Result<()> {
    let identities = dir.join("credentials");
    std::fs::create_dir_all(&identities)?;
    std::fs::set_permissions(&identities, std::fs::Permissions::from_mode(0o700))?;
    for (user, password) in passwords {
        write_private(
            &identities.join(format!("{user}.env")),
            &format!(
                "# `{user}`'s NATS credentials for the local stack (orion-bus up).\n\
                 ORION_NATS_URL={url}\nORION_NATS_USER={user}\nORION_NATS_PASSWORD={password}\n"
            ),
        )?;
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    contracts::runtime::write_private_file(path, text)
        .with_context(|| format!("writing {}", path.display()))
}

async fn up(dir: &Path, port: u16) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let url = format!("nats://127.0.0.1:{port}");
    if let Some(pid) = running_pid(&dir) {
        eprintln!("the local nats-server is already running (pid {pid}) at {url}");
        return Ok(());
    }
    let passwords = credentials(&dir, &url)?;
    let server = NatsServer::start_with(ServerOptions {
        auth: true,
        store_dir: Some(dir.clone()),
        port: Some(port),
        passwords: Some(passwords.clone()),
        authorization: None,
    })
    .context("starting nats-server")?;
    let admin = BusConfig::new(server.url()).with_credentials(ADMIN_USER, &passwords[ADMIN_USER]);
    provision(&admin, 1).await?;
    let pid = server.detach();
    std::fs::write(dir.join(PID_FILE), pid.to_string())?;
    eprintln!(
        "local nats-server running (pid {pid}) at {url}\n  data and log: {}\n  credentials:  {}\n  stop it with: cargo xtask down",
        dir.display(),
        dir.join(CREDENTIALS_FILE).display()
    );
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    let Some(pid) = running_pid(dir) else {
        eprintln!("no local nats-server is running for {}", dir.display());
        return Ok(());
    };
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("could not stop nats-server (pid {pid})");
    }
    for _ in 0..100 {
        if running_pid(dir).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::remove_file(dir.join(PID_FILE)).ok();
    eprintln!(
        "stopped the local nats-server (pid {pid}); its data stays in {}",
        dir.display()
    );
    Ok(())
}
