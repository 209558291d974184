//! The platform as processes: a nats-server with the generated permissions, then ops-worker,
//! guardian, brain and commander, each as its own binary with its own NATS identity. Keys are
//! generated per stack (TEST KEYS): the administrator's (trusted by brain's policy), brain's
//! signing key (`--signing-key`; its public half in commander's `brain_public_keys`) and the
//! ops HMAC key.
//!
//! The broker is one node with its store in the stack's directory ([`Stack::start`]), or a
//! cluster whose streams keep three replicas ([`Stack::start_clustered`]). Each service process
//! can be killed (SIGKILL) and started again as it was ([`ServiceProcess::kill`],
//! [`ServiceProcess::respawn`]): the chaos tests crash them at random points.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::consumer::pull;
use contracts::bus::Bus;
use contracts::local_server::{NatsCluster, NatsServer, ServerOptions, ADMIN_USER};
use contracts::signing::{SigningKey, BRAIN_SIGNER};
use contracts::{Contract, Service};
use futures::StreamExt;
use orion_testkit::{wait_for, wait_until};

/// The HMAC key ops-worker and commander share in a stack (a TEST KEY, generated per stack).
fn random_secret() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("stack-{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

/// What to start.
pub struct StackOptions {
    /// Configs, keys and logs go here.
    pub dir: PathBuf,
    /// The services ops-worker may act on.
    pub allowlist: Vec<String>,
    /// guardian's configuration (TOML).
    pub guardian_config: String,
    /// brain's policy (TOML) without `[[admins]]`: the stack's administrator is appended.
    pub brain_policy: String,
    /// The administrator whose key signs approvals.
    pub admin_identity: String,
    /// Seconds an ops command may take before commander reports a timeout.
    pub receipt_timeout_s: u64,
}

/// How a service process was started, kept so that it can be started again the same way.
struct Launch {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// One service process; killed when dropped.
pub struct ServiceProcess {
    pub name: &'static str,
    child: Option<Child>,
    pub log: PathBuf,
    launch: Launch,
}

impl ServiceProcess {
    /// Starts the process with its output appended to its log (a restarted process keeps the
    /// earlier lines, so the log tells the whole story).
    fn start(&mut self) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.launch.binary)
            .args(&self.launch.args)
            .env_clear()
            .envs(
                self.launch
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and wait, as a crash would: nothing is drained or flushed. Whether a process
    /// was running to be killed.
    pub fn kill(&mut self) -> bool {
        match self.child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    /// Starts the process again exactly as it was first started (a supervisor's restart). A
    /// process still running is killed first.
    pub fn respawn(&mut self) -> Result<()> {
        self.kill();
        let marker = format!("===== {} started again by the test =====\n", self.name);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .and_then(|mut log| std::io::Write::write_all(&mut log, marker.as_bytes()))?;
        self.start()
    }

    /// Whether the process runs; `false` after [`ServiceProcess::kill`] or once it exited on
    /// its own.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// How the process ended, if it exited on its own (not after [`ServiceProcess::kill`]).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM and wait (graceful drain).
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()?.code()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running platform.
pub struct Stack {
    /// The broker, or with [`Stack::start_clustered`] the first node of the cluster (the one the
    /// test's own connections use).
    pub server: NatsServer,
    /// The other nodes of the cluster; empty for a single node.
    pub peers: Vec<NatsServer>,
    pub dir: PathBuf,
    pub admin_identity: String,
    pub admin_key_file: PathBuf,
    /// brain's signing key (a TEST KEY, generated per stack) and its public half.
    pub brain_key_file: PathBuf,
    pub brain_public_key: String,
    pub ops_secret: String,
    pub services: Vec<ServiceProcess>,
}

/// Where the workspace's binaries are: next to this executable (or one level up from `deps/`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("the executable has a directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --all-features --bins` first",
            path.display()
        );
    }
    Ok(path)
}

impl Stack {
    /// The platform on one nats-server whose store is in `options.dir` (it survives a restart).
    pub async fn start(options: StackOptions) -> Result<Self> {
        Self::start_single(options, None).await
    }

    /// [`Stack::start`] with `authorization` instead of the generated permissions (a test that
    /// makes one of a service's operations fail).
    pub async fn start_with_authorization(
        options: StackOptions,
        authorization: String,
    ) -> Result<Self> {
        Self::start_single(options, Some(authorization)).await
    }

    async fn start_single(options: StackOptions, authorization: Option<String>) -> Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        let server = NatsServer::start_with(ServerOptions {
            auth: true,
            store_dir: Some(options.dir.join("nats")),
            authorization,
            ..Default::default()
        })
        .context("starting nats-server")?;
        let admin = admin_client(&server).await?;
        contracts::bus::provision_all(&async_nats::jetstream::new(admin), 1).await?;
        Self::launch(options, server, Vec::new()).await
    }

    /// The platform on a cluster of `size` nodes with the generated permissions; every stream
    /// and bucket keeps `size` replicas, and the services are given every node's URL.
    pub async fn start_clustered(options: StackOptions, size: usize) -> Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        let mut nodes = NatsCluster::start_with_auth(size)
            .context("starting the cluster")?
            .nodes;
        let server = nodes.remove(0);
        provision_replicated(&server, size).await?;
        Self::launch(options, server, nodes).await
    }

    /// Writes the configs and keys, then starts every service on the provisioned broker.
    async fn launch(
        options: StackOptions,
        server: NatsServer,
        peers: Vec<NatsServer>,
    ) -> Result<Self> {
        let (key, pkcs8) = contracts::signing::SigningKey::generate(&options.admin_identity);
        let admin_key_file = options.dir.join("admin.key");
        write_private(&admin_key_file, &base64_encode(&pkcs8))?;
        let policy = format!(
            "{}\n\n# The stack's administrator (added by e2e::stack).\n[[admins]]\nidentity = {:?}\npublic_key = {:?}\n",
            options.brain_policy.trim_end(),
            options.admin_identity,
            key.public_key_base64()
        );
        std::fs::write(options.dir.join("policy.toml"), policy)?;
        let brain_key_file = options.dir.join("brain.key");
        let brain_key = SigningKey::write_new(BRAIN_SIGNER, &brain_key_file)?;
        std::fs::write(options.dir.join("guardian.toml"), &options.guardian_config)?;
        std::fs::write(
            options.dir.join("commander.toml"),
            format!(
                "receipt_timeout_s = {}\n# brain's public key: commander executes only actions it signed.\nbrain_public_keys = [{:?}]\n",
                options.receipt_timeout_s,
                brain_key.public_key_base64()
            ),
        )?;
        let mut stack = Self {
            server,
            peers,
            dir: options.dir.clone(),
            admin_identity: options.admin_identity.clone(),
            admin_key_file,
            brain_key_file,
            brain_public_key: brain_key.public_key_base64(),
            ops_secret: random_secret(),
            services: Vec::new(),
        };
        let allowlist = options.allowlist.join(",");
        let dir = options.dir.clone();
        stack.spawn(
            "ops-worker",
            &["run", "--drain-s", "5"],
            &[("OPS_ALLOWLIST", allowlist.as_str())],
        )?;
        stack.spawn(
            "guardian",
            &["run", "--config", path_str(&dir.join("guardian.toml"))],
            &[],
        )?;
        stack.spawn(
            "brain",
            &[
                "run",
                "--policy",
                path_str(&dir.join("policy.toml")),
                "--signing-key",
                path_str(&dir.join("brain.key")),
            ],
            &[],
        )?;
        stack.spawn(
            "commander",
            &["run", "--config", path_str(&dir.join("commander.toml"))],
            &[],
        )?;
        for name in ["ops-worker", "guardian", "brain", "commander"] {
            stack.wait_consuming(name).await?;
        }
        Ok(stack)
    }

    /// Every node's URL, comma-separated (what the services are given).
    pub fn urls(&self) -> String {
        std::iter::once(&self.server)
            .chain(&self.peers)
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The environment a process of `user` runs with.
    pub fn env(&self, user: &str) -> Vec<(String, String)> {
        vec![
            ("ORION_NATS_URL".into(), self.urls()),
            ("ORION_NATS_USER".into(), user.into()),
            (
                "ORION_NATS_PASSWORD".into(),
                self.server.password(user).unwrap_or_default().into(),
            ),
            ("OPS_SECRET".into(), self.ops_secret.clone()),
            (
                "ORION_ADMIN_KEY_FILE".into(),
                path_str(&self.admin_key_file).into(),
            ),
            ("RUST_LOG".into(), "info".into()),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ]
        .into_iter()
        // A bench may choose the services' runtime (`--worker-threads`).
        .chain(
            std::env::var("ORION_WORKER_THREADS")
                .ok()
                .map(|n| ("ORION_WORKER_THREADS".into(), n)),
        )
        .collect()
    }

    fn spawn(&mut self, name: &'static str, args: &[&str], extra: &[(&str, &str)]) -> Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        std::fs::File::create(&log)?;
        let mut env = self.env(name);
        // Every service serves its metrics on a port of its own choosing, logged when bound
        // (see `Stack::metrics_address`): no port can be taken by another test in between.
        env.push(("ORION_METRICS_LISTEN".into(), "127.0.0.1:0".into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut process = ServiceProcess {
            name,
            child: None,
            log,
            launch: Launch {
                binary: binary(name)?,
                args: args.iter().map(|a| a.to_string()).collect(),
                env,
            },
        };
        process.start()?;
        self.services.push(process);
        Ok(())
    }

    /// The (first) process of `service`.
    pub fn service_mut(&mut self, service: &str) -> Result<&mut ServiceProcess> {
        self.services
            .iter_mut()
            .find(|p| p.name == service)
            .with_context(|| format!("the stack runs no {service}"))
    }

    /// Waits until `service` is registered as a NATS micro service with its consumers bound.
    pub async fn wait_consuming(&self, service: &str) -> Result<()> {
        let admin = admin_client(&self.server).await?;
        let log = || {
            self.services
                .iter()
                .find(|p| p.name == service)
                .map(ServiceProcess::log_text)
                .unwrap_or_default()
        };
        let what = format!("{service} consuming");
        let consuming = wait_until(&what, Duration::from_secs(30), || async {
            if let Ok(reply) = admin
                .request(format!("$SRV.STATS.{service}"), "".into())
                .await
            {
                let stats: serde_json::Value =
                    serde_json::from_slice(&reply.payload).unwrap_or_default();
                if stats["endpoints"].as_array().is_some_and(|e| !e.is_empty()) {
                    return Some(Ok(()));
                }
            }
            let log = log();
            (log.contains("configuration refused") || log.contains("Error:"))
                .then(|| Err(anyhow!("{service} did not start:\n{log}")))
        })
        .await;
        match consuming {
            Ok(started) => started,
            Err(e) => bail!("{e}; its log:\n{}", log()),
        }
    }

    /// A bus connection as `S`.
    pub async fn bus<S: Service>(&self) -> Result<Bus<S>> {
        Ok(Bus::connect(self.server.bus_config::<S>()).await?)
    }

    /// Runs a workspace binary (approval-cli, ops-worker send …) as `user` and returns its output.
    pub fn run(&self, binary_name: &str, user: &str, args: &[&str]) -> Result<Output> {
        Ok(Command::new(binary(binary_name)?)
            .args(args)
            .env_clear()
            .envs(self.env(user))
            .output()?)
    }

    /// Every message of `T` so far, oldest first.
    pub async fn all<T: Contract>(&self) -> Result<Vec<T>> {
        self.read::<T>(Duration::from_millis(300), usize::MAX).await
    }

    /// Waits up to `timeout` for a message of `T` that `wanted` accepts (looking at the whole
    /// stream, so one that already arrived counts).
    pub async fn wait_for<T: Contract>(
        &self,
        timeout: Duration,
        wanted: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let what = format!("a matching {}", T::INFO.subject);
        wait_until(&what, timeout, || async {
            let all = self.all::<T>().await;
            all.map(|all| all.into_iter().find(|m| wanted(m)))
                .transpose()
        })
        .await?
    }

    /// Watches the stream of `T` for `window` and fails as soon as a message that `unwanted`
    /// accepts is there (one that already arrived counts): a bounded wait for something that
    /// must not happen, which ends early when it does.
    pub async fn none_within<T: Contract>(
        &self,
        window: Duration,
        unwanted: impl Fn(&T) -> bool,
    ) -> Result<()> {
        let what = format!("an unwanted {}", T::INFO.subject);
        let arrived = wait_until(&what, window, || async {
            let all = self.all::<T>().await;
            all.map(|all| all.into_iter().find(|m| unwanted(m)))
                .transpose()
        })
        .await;
        // Waiting in vain for the unwanted one is the success here.
        let Ok(found) = arrived else {
            return Ok(());
        };
        bail!(
            "an unwanted {} arrived: {}",
            T::INFO.subject,
            String::from_utf8_lossy(&contracts::encode(&found?).unwrap_or_default())
        )
    }

    /// Where `service` serves /metrics, /healthz and /readyz (it logs the address it bound).
    pub async fn metrics_address(&self, service: &str) -> Result<std::net::SocketAddr> {
        const BOUND: &str = "metrics, /healthz and /readyz served";
        self.wait_logged(service, BOUND, 0, Duration::from_secs(30))
            .await?;
        let process = self
            .services
            .iter()
            .find(|p| p.name == service)
            .with_context(|| format!("no process of {service}"))?;
        let log = process.log_text();
        // The last one: a respawned process binds a new port.
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(BOUND))
            .context("the line just seen")?;
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .with_context(|| format!("no address in {line:?}"))?;
        address
            .parse()
            .with_context(|| format!("{service}'s metrics address {address:?}"))
    }

    /// How many lines of `service`'s log contain `needle`.
    pub fn logged(&self, service: &str, needle: &str) -> usize {
        self.services
            .iter()
            .find(|p| p.name == service)
            .map(|p| p.log_text().lines().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }

    /// Waits up to `timeout` until `service` has logged `needle` more than `before` times.
    pub async fn wait_logged(
        &self,
        service: &str,
        needle: &str,
        before: usize,
        timeout: Duration,
    ) -> Result<()> {
        let what = format!("{service} logged {needle:?}");
        wait_for(&what, timeout, || self.logged(service, needle) > before).await?;
        Ok(())
    }

    async fn read<T: Contract>(&self, idle: Duration, limit: usize) -> Result<Vec<T>> {
        let js = async_nats::jetstream::new(admin_client(&self.server).await?);
        let stream = js.get_stream(T::INFO.stream).await?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: T::INFO.subject.to_string(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut out = Vec::new();
        while out.len() < limit {
            match tokio::time::timeout(idle, messages.next()).await {
                Ok(Some(Ok(message))) => out.push(contracts::decode::<T>(&message.payload)?),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Stops every service gracefully (SIGTERM, drain).
    pub fn stop(&mut self) {
        for service in self.services.iter_mut().rev() {
            service.terminate();
        }
    }

    /// The permission violations the server logged: none while only the platform's own
    /// services run, since each does exactly what its identity is granted.
    pub fn refusals(&self) -> Vec<String> {
        std::iter::once(&self.server)
            .chain(&self.peers)
            .flat_map(|node| node.log().lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.contains("Publish Violation") || l.contains("Subscription Violation"))
            .collect()
    }

    /// Every service's log, for a failure message.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|s| format!("===== {} =====\n{}", s.name, s.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Provisions with `replicas` replicas, retrying while the new cluster elects its JetStream
/// meta leader (it reports healthy before it can create streams).
async fn provision_replicated(server: &NatsServer, replicas: usize) -> Result<()> {
    let js = async_nats::jetstream::new(admin_client(server).await?);
    let last_error = std::sync::Mutex::new(None);
    let provisioned = wait_until(
        "the cluster provisioned",
        Duration::from_secs(30),
        || async {
            match contracts::bus::provision_all(&js, replicas).await {
                Ok(()) => Some(()),
                Err(e) => {
                    *last_error.lock().unwrap() = Some(e);
                    None
                }
            }
        },
    )
    .await;
    match (provisioned, last_error.into_inner().unwrap()) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e).context("provisioning the cluster"),
        (Err(e), None) => Err(e.into()),
    }
}

async fn admin_client(server: &NatsServer) -> Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .user_and_password(
            ADMIN_USER.into(),
            server.password(ADMIN_USER).unwrap_or_default().into(),
        )
        .connect(server.url())
        .await?)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("paths are UTF-8")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    contracts::runtime::write_private_file(path, text)
        .with_context(|| format!("writing {}", path.display()))
}
