//! A real `nats-server` with JetStream, started on free loopback ports with its own store
//! directory — for integration tests and for the local stack (`cargo xtask up`).
//!
//! With [`ServerOptions::auth`] the server runs with the generated per-service permissions
//! (`deploy/nats/authorization.conf`) and a random password for every identity.
//!
//! Not for production: production servers are configured by operators; this only starts
//! loopback servers.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The generated permissions, embedded so that a test runs with exactly what is committed.
pub const AUTHORIZATION_CONF: &str = include_str!("../../../deploy/nats/authorization.conf");

/// The identity with full access, used by operators and provisioning.
pub const ADMIN_USER: &str = "admin";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LocalServerError {
    #[error(
        "`nats-server` was not found on PATH. Install it (`apt-get install -y nats-server`, or run \
         `cargo xtask test`, which installs it) — tests that need NATS cannot run without it"
    )]
    NotInstalled,
    #[error("nats-server on port {port} did not become ready within {timeout:?}; its log:\n{log}")]
    NotReady {
        port: u16,
        timeout: Duration,
        log: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Run with the generated per-service users and permissions.
    pub auth: bool,
    /// Keep the store here instead of in a temporary directory.
    pub store_dir: Option<PathBuf>,
    /// Listen on this client port instead of a free one.
    pub port: Option<u16>,
    /// Passwords to use instead of random ones (service name → password).
    pub passwords: Option<BTreeMap<String, String>>,
    /// Authorization config to use instead of the generated one (tests of refusals).
    pub authorization: Option<String>,
}

/// A running `nats-server`; stopped and cleaned up when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    passwords: BTreeMap<String, String>,
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// A single node with JetStream and no authentication.
    pub fn start() -> Result<Self, LocalServerError> {
        Self::start_with(ServerOptions::default())
    }

    /// A single node with JetStream and the generated per-service permissions.
    pub fn start_with_auth() -> Result<Self, LocalServerError> {
        Self::start_with(ServerOptions {
            auth: true,
            ..Default::default()
        })
    }

    pub fn start_with(options: ServerOptions) -> Result<Self, LocalServerError> {
        ensure_installed()?;
        let (temp, dir) = match &options.store_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new().prefix("orion-nats-").tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let monitor_port = free_port()?;
        let passwords = if options.auth {
            options.passwords.clone().unwrap_or_else(random_passwords)
        } else {
            BTreeMap::new()
        };
        let config = server_config(&dir, port, monitor_port, None, options.auth);
        let authorization = options
            .authorization
            .as_deref()
            .unwrap_or(AUTHORIZATION_CONF);
        write_config(&dir, &config, options.auth.then_some(authorization))?;
        let mut server = Self {
            child: None,
            port,
            monitor_port,
            dir,
            _temp: temp,
            env: password_env(&passwords),
            passwords,
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> Result<(), LocalServerError> {
        let log = std::fs::File::create(self.dir.join("nats-server.log"))?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(self.dir.join("nats-server.conf"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        wait_ready(self.monitor_port, self.port, &self.dir)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store directory (config, JetStream data and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The password of `user` (a service name or `admin`) when running with auth.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.passwords.get(user).map(String::as_str)
    }

    /// Every identity's password when running with auth.
    pub fn passwords(&self) -> &BTreeMap<String, String> {
        &self.passwords
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), LocalServerError> {
        self.stop();
        self.launch()
    }

    /// Leaves the server running after this value is dropped; returns its process id.
    /// (`orion-bus down` stops it by that id; nothing here waits for it.)
    #[allow(clippy::zombie_processes)]
    pub fn detach(mut self) -> u32 {
        let child = self.child.take().expect("the server is running");
        child.id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream nodes clustered on loopback.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(size: usize) -> Result<Self, LocalServerError> {
        Self::launch(size, false)
    }

    /// Like [`NatsCluster::start`], with the generated per-service permissions on every node and
    /// one random password per identity, the same on every node (a client fails over to any).
    pub fn start_with_auth(size: usize) -> Result<Self, LocalServerError> {
        Self::launch(size, true)
    }

    /// Starts the nodes; ports are picked free, released, then bound by the servers, so a
    /// concurrent test may take one in between: that start is tried again on other ports.
    fn launch(size: usize, auth: bool) -> Result<Self, LocalServerError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match Self::launch_once(size, auth) {
                Err(LocalServerError::NotReady { log, .. })
                    if attempt < ATTEMPTS && log.contains("address already in use") =>
                {
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn launch_once(size: usize, auth: bool) -> Result<Self, LocalServerError> {
        ensure_installed()?;
        let passwords = if auth {
            random_passwords()
        } else {
            BTreeMap::new()
        };
        let env = password_env(&passwords);
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_, std::io::Error>>()?;
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c, _)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let mut nodes = Vec::new();
        for (port, cluster_port, monitor_port) in &ports {
            let temp = tempfile::Builder::new()
                .prefix("orion-nats-node-")
                .tempdir()?;
            let dir = temp.path().to_path_buf();
            let cluster = ClusterConfig {
                port: *cluster_port,
                routes: routes.clone(),
            };
            write_config(
                &dir,
                &server_config(&dir, *port, *monitor_port, Some(&cluster), auth),
                auth.then_some(AUTHORIZATION_CONF),
            )?;
            let log = std::fs::File::create(dir.join("nats-server.log"))?;
            let child = Command::new("nats-server")
                .arg("-c")
                .arg(dir.join("nats-server.conf"))
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            nodes.push(NatsServer {
                child: Some(child),
                port: *port,
                monitor_port: *monitor_port,
                dir,
                _temp: Some(temp),
                passwords: passwords.clone(),
                env: env.clone(),
            });
        }
        for node in &nodes {
            wait_ready(node.monitor_port, node.port, &node.dir)?;
        }
        Ok(Self { nodes })
    }

    /// Every node's URL, comma-separated (what a client is given to fail over).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

struct ClusterConfig {
    port: u16,
    routes: Vec<String>,
}

fn ensure_installed() -> Result<(), LocalServerError> {
    match Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => Err(LocalServerError::NotInstalled),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh random password for `admin` and every service identity.
pub fn random_passwords() -> BTreeMap<String, String> {
    use rand::distr::{Alphanumeric, SampleString};
    std::iter::once(ADMIN_USER)
        .chain(crate::SERVICES.iter().copied())
        // nats-server parses variable values as config values: a leading letter keeps a
        // password like `6e5…` from being read as a number.
        .map(|user| {
            (
                user.to_string(),
                format!("pw-{}", Alphanumeric.sample_string(&mut rand::rng(), 32)),
            )
        })
        .collect()
}

fn password_env(passwords: &BTreeMap<String, String>) -> Vec<(String, String)> {
    passwords
        .iter()
        .map(|(user, password)| (crate::nats_password_var(user), password.clone()))
        .collect()
}

fn server_config(
    dir: &Path,
    port: u16,
    monitor_port: u16,
    cluster: Option<&ClusterConfig>,
    auth: bool,
) -> String {
    let mut config = format!(
        "server_name: orion-{port}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n\
         jetstream {{\n  store_dir: {:?}\n  max_memory_store: 268435456\n  max_file_store: 4294967296\n}}\n",
        dir.join("jetstream").display().to_string()
    );
    if let Some(cluster) = cluster {
        let routes: Vec<String> = cluster.routes.iter().map(|r| format!("{r:?}")).collect();
        config.push_str(&format!(
            "cluster {{\n  name: orion-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
            cluster.port,
            routes.join(", ")
        ));
    }
    if auth {
        config.push_str("include ./authorization.conf\n");
    }
    config
}

fn write_config(dir: &Path, config: &str, authorization: Option<&str>) -> std::io::Result<()> {
    std::fs::write(dir.join("nats-server.conf"), config)?;
    if let Some(authorization) = authorization {
        std::fs::write(dir.join("authorization.conf"), authorization)?;
    }
    Ok(())
}

/// Waits until the monitoring endpoint says the server (and JetStream) is healthy.
fn wait_ready(monitor_port: u16, port: u16, dir: &Path) -> Result<(), LocalServerError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if healthz(monitor_port).unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LocalServerError::NotReady {
        port,
        timeout: READY_TIMEOUT,
        log: std::fs::read_to_string(dir.join("nats-server.log")).unwrap_or_default(),
    })
}

fn healthz(monitor_port: u16) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", monitor_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"))
}

#[cfg(feature = "bus")]
impl NatsServer {
    /// Connection settings for service `S` on this server (its own user when running with auth).
    pub fn bus_config<S: crate::Service>(&self) -> crate::bus::BusConfig {
        let config = crate::bus::BusConfig::new(self.url());
        match self.password(S::NAME) {
            Some(password) => config.with_credentials(S::NAME, password),
            None => config,
        }
    }

    /// A JetStream context logged in as the admin (provisioning, and tests that inspect what
    /// the platform stored).
    pub async fn admin_jetstream(
        &self,
    ) -> Result<async_nats::jetstream::Context, crate::bus::BusError> {
        let config = self.admin_config();
        let mut options = async_nats::ConnectOptions::new();
        if let (Some(user), Some(password)) = (config.user, config.password) {
            options = options.user_and_password(user, password);
        }
        let client =
            options
                .connect(self.url())
                .await
                .map_err(|e| crate::bus::BusError::Connect {
                    url: self.url(),
                    user: ADMIN_USER.to_string(),
                    source: e.into(),
                })?;
        Ok(async_nats::jetstream::new(client))
    }

    /// Every message stored on `subject` so far, oldest first, with its headers, read as the
    /// admin; stops when nothing more arrives for 300 ms.
    pub async fn stored_messages(
        &self,
        subject: &str,
    ) -> Result<Vec<async_nats::jetstream::Message>, crate::bus::BusError> {
        use futures::StreamExt;
        let failed = |source: crate::bus::NatsError| crate::bus::BusError::JetStream {
            what: format!("reading `{subject}`"),
            source,
        };
        let info = crate::CONTRACTS
            .iter()
            .find(|c| c.subject == subject)
            .ok_or_else(|| crate::bus::BusError::Config(format!("no contract on `{subject}`")))?;
        let consumer = self
            .admin_jetstream()
            .await?
            .get_stream(info.stream)
            .await
            .map_err(|e| failed(e.into()))?
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.into()))?;
        let mut messages = consumer.messages().await.map_err(|e| failed(e.into()))?;
        let mut out = Vec::new();
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(300), messages.next()).await
        {
            out.push(message.map_err(|e| failed(e.into()))?);
        }
        Ok(out)
    }

    /// Connection settings for the admin user (or anonymous without auth).
    pub fn admin_config(&self) -> crate::bus::BusConfig {
        let config = crate::bus::BusConfig::new(self.url());
        match self.password(ADMIN_USER) {
            Some(password) => config.with_credentials(ADMIN_USER, password),
            None => config,
        }
    }
}
