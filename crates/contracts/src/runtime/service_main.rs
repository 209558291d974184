//! The one way a service binary starts, runs and stops: [`ServiceMain`].
//!
//! ```text
//! parse (clap: help/version → 0, bad arguments → 2)
//!   → logs (ORION_LOG_FORMAT / --log-format, RUST_LOG)
//!   → configuration: --config or <SERVICE>_CONFIG, overlay of ORION_ENV, environment (runtime::load)
//!     and the service's own checks                                    refused → 2, nothing connected
//!   → connect as the service's identity, register the NATS micro service ($SRV.PING|INFO|STATS)
//!   → verify provisioning                                             unreachable / missing → 3
//!   → the service's own future, with a Shutdown (SIGTERM/SIGINT) and the drain period
//!   → close the connection                                            a failure → 1; done → 0
//! ```
//!
//! A service's `main` is its subcommands (with [`RunArgs`] flattened into `run`) and:
//!
//! ```ignore
//! const PROGRAM: Program = Program::new("guardian", env!("CARGO_PKG_VERSION"), ABOUT, LONG_ABOUT);
//!
//! fn main() -> std::process::ExitCode {
//!     runtime::program_main(&PROGRAM, |log, command| match command {
//!         Cmd::Run(run) => ServiceMain::<services::Guardian>::new(&log, run).run(
//!             |source| GuardianConfig::load(source.path, source.env),
//!             |running, config| async move {
//!                 guardian::service::run(running.bus, &config, running.shutdown).await
//!             },
//!         ),
//!     })
//! }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use super::telemetry::{self, Health};
use super::{
    exit_status_of, init_tracing, init_tracing_at, report, shutdown_signal, Environment,
    ExitStatus, LogFormat, NatsSection, ProcessEnvironment, Shutdown,
};
use crate::bus::{Bus, BusConfig, BusError};
use crate::Service;

/// Any error, boxed (an `anyhow::Error` converts into it and keeps its sources).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long after the drain period a service may still take to release what it holds and
/// close its connection before the bootstrap gives up on it.
pub const CLOSE_MARGIN: Duration = Duration::from_secs(10);

/// `--log-format`, global to every subcommand of every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format: text or json.
    #[arg(long, global = true, env = "ORION_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// `--config FILE` (else the variable `<SERVICE>_CONFIG`, e.g. `GUARDIAN_CONFIG`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Config file (TOML; else <SERVICE>_CONFIG); see --help for the keys.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The config file: the flag, else `<SERVICE>_CONFIG` from `env`.
    pub fn path<S: Service>(&self, env: &dyn Environment) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| env.var(&config_variable::<S>()).map(PathBuf::from))
    }
}

/// The flags of every service's `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Seconds the work in flight may take to finish after SIGTERM/SIGINT (no new work is
    /// taken meanwhile).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub drain_s: u64,
    /// Serve Prometheus metrics (/metrics), /healthz and /readyz on this address, e.g.
    /// 127.0.0.1:9464 (docs/OPERATIONS.md lists the metrics). Off unless set.
    #[arg(long, value_name = "ADDR", env = "ORION_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Threads that run the service: 0 runs everything on the main thread (tokio's current-
    /// thread runtime: no hand-off between threads on each message); N > 0 runs a pool of N;
    /// unset, one per core.
    #[arg(long, value_name = "N", env = "ORION_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl Default for RunArgs {
    fn default() -> Self {
        Self {
            config: ConfigArgs::default(),
            drain_s: 60,
            metrics_listen: None,
            worker_threads: None,
        }
    }
}

/// `guardian` → `GUARDIAN_CONFIG`, `ops-worker` → `OPS_WORKER_CONFIG`.
pub fn config_variable<S: Service>() -> String {
    format!("{}_CONFIG", crate::variable_stem(S::NAME))
}

/// What a binary says about itself in `--help` and `--version`.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    /// `env!("CARGO_PKG_VERSION")` of the binary's crate.
    pub version: &'static str,
    /// One line, for `-h`.
    pub about: &'static str,
    /// For `--help`; the exit-code table ([`super::EXIT_CODES_HELP`]) follows it.
    pub long_about: &'static str,
}

impl Program {
    pub const fn new(
        name: &'static str,
        version: &'static str,
        about: &'static str,
        long_about: &'static str,
    ) -> Self {
        Self {
            name,
            version,
            about,
            long_about,
        }
    }
}

/// A binary's command line: `--log-format` and the binary's subcommands `C`.
#[derive(clap::Parser)]
struct ProgramArgs<C: clap::Subcommand> {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: C,
}

/// The `main` of every service binary: parses `--log-format` and the subcommands `C` (help and
/// version exit 0, bad arguments 2) and returns the exit code of `body` — a [`ServiceMain`]
/// for `run`, the binary's own code for its other subcommands.
pub fn program_main<C: clap::Subcommand>(
    program: &Program,
    body: impl FnOnce(LogArgs, C) -> ExitStatus,
) -> std::process::ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let command = ProgramArgs::<C>::command()
        .name(program.name)
        .bin_name(program.name)
        .version(program.version)
        .about(program.about)
        .long_about(program.long_about)
        .after_help(super::EXIT_CODES_HELP);
    let parsed = command
        .try_get_matches()
        .and_then(|matches| ProgramArgs::<C>::from_arg_matches(&matches));
    match parsed {
        Ok(args) => body(args.log, args.command),
        Err(e) => clap_exit(&e),
    }
    .into()
}

/// Parses the command line as `C`. `Err` carries the status to exit with once clap has printed
/// what it had to: help and version exit 0, bad arguments 2.
pub fn parse_args<C: clap::Parser>() -> Result<C, ExitStatus> {
    C::try_parse().map_err(|e| clap_exit(&e))
}

/// Prints clap's message; help and version are 0, anything else bad arguments (2).
fn clap_exit(e: &clap::Error) -> ExitStatus {
    let _ = e.print();
    if e.use_stderr() {
        ExitStatus::Usage
    } else {
        ExitStatus::Ok
    }
}

/// Where a service's loader reads its configuration from.
#[derive(Clone, Copy)]
pub struct ConfigSource<'a> {
    /// The config file, if any (`--config`, else `<SERVICE>_CONFIG`).
    pub path: Option<&'a Path>,
    /// The environment (the process's, or a map in tests).
    pub env: &'a dyn Environment,
}

/// A service's checked configuration: the bootstrap connects with its `[nats]` section.
pub trait ServiceConfig {
    fn nats(&self) -> &NatsSection;
}

/// What the service's own code gets once the bus is up.
pub struct Running<S: Service> {
    /// Connected as `S`, registered as a micro service, provisioning verified. The bootstrap
    /// closes it after the service's future ends.
    pub bus: Bus<S>,
    /// Resolves on SIGTERM/SIGINT.
    pub shutdown: Shutdown,
    /// How long the work in flight may take after the shutdown.
    pub drain: Duration,
}

/// Why a service did not run or stopped: the kind decides the exit code (see
/// [`super::exit`]).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration (file, overlay, environment, flags, keys, policy) was refused. Exit 2.
    #[error("configuration refused")]
    Config(#[source] BoxError),
    /// A bus operation of the bootstrap (connect, verify provisioning, close). Exit code by
    /// the bus error's kind: unreachable or not provisioned 3, bad settings 2, else 1.
    #[error("{what}")]
    Bus {
        what: String,
        #[source]
        source: BusError,
    },
    /// Another dependency could not be reached (the Docker engine). Exit 3.
    #[error("{what}")]
    Unreachable {
        what: String,
        #[source]
        source: BoxError,
    },
    /// The service did not stop within its drain period after the shutdown signal. Exit 1.
    #[error("did not stop within {0:?} of the shutdown signal")]
    Drain(Duration),
    /// Failed while running; the exit code is that of the first known kind among its
    /// sources, else 1.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: BoxError,
    },
}

impl ServiceError {
    pub fn config(error: impl Into<BoxError>) -> Self {
        Self::Config(error.into())
    }

    pub fn bus(what: impl Into<String>, source: BusError) -> Self {
        Self::Bus {
            what: what.into(),
            source,
        }
    }

    pub fn unreachable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unreachable {
            what: what.into(),
            source: source.into(),
        }
    }

    pub fn failed(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Failed {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The exit status this error decides by itself (`Failed` leaves it to its sources).
    pub(super) fn own_status(&self) -> Option<ExitStatus> {
        match self {
            Self::Config(_) => Some(ExitStatus::Usage),
            Self::Bus { source, .. } => Some(super::bus_exit_status(source)),
            Self::Unreachable { .. } => Some(ExitStatus::Unreachable),
            Self::Drain(_) => Some(ExitStatus::Failure),
            Self::Failed { .. } => None,
        }
    }

    /// The exit status of this error.
    pub fn exit_status(&self) -> ExitStatus {
        exit_status_of(self)
    }
}

type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service's own code with its configuration bound, as the bootstrap runs it.
type ServiceFn<'a, S> =
    Box<dyn FnOnce(Running<S>) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + 'a>> + 'a>;

/// The bootstrap of service `S` (a `contracts::services` identity); see the module docs.
pub struct ServiceMain<S: Service> {
    log_format: LogFormat,
    run: RunArgs,
    env: Box<dyn Environment>,
    shutdown: Option<ShutdownFuture>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> ServiceMain<S> {
    /// With the parsed common flags and the process environment.
    pub fn new(log: &LogArgs, run: RunArgs) -> Self {
        Self {
            log_format: log.log_format,
            run,
            env: Box::new(ProcessEnvironment),
            shutdown: None,
            _service: PhantomData,
        }
    }

    /// Reads variables from `env` instead of the process environment (tests).
    pub fn with_environment(mut self, env: impl Environment + 'static) -> Self {
        self.env = Box::new(env);
        self
    }

    /// Stops when `shutdown` resolves instead of on SIGTERM/SIGINT (tests).
    pub fn with_shutdown(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(shutdown));
        self
    }

    /// Logs; loads the configuration with `configure` (before anything connects); connects
    /// as `S` (which registers the micro service), verifies provisioning, runs `service` until
    /// it ends (it gets the shutdown and the drain period), closes the bus. A failure is
    /// printed as `<service>: <error>: <its sources>` on stderr, and its kind decides the
    /// status.
    pub fn run<C, E, F, Fut, R>(
        self,
        configure: impl FnOnce(ConfigSource<'_>) -> Result<C, E>,
        service: F,
    ) -> ExitStatus
    where
        C: ServiceConfig,
        E: Into<BoxError>,
        F: FnOnce(Running<S>, C) -> Fut,
        Fut: Future<Output = Result<(), R>>,
        R: Into<BoxError>,
    {
        init_tracing(self.log_format);
        let env = &*self.env;
        let path = self.run.config.path::<S>(env);
        let source = ConfigSource {
            path: path.as_deref(),
            env,
        };
        let configured = configure(source)
            .map_err(ServiceError::config)
            .and_then(|config| {
                let bus_config = config.nats().bus_config::<S>(env);
                Ok((bus_config.map_err(ServiceError::config)?, config))
            });
        let outcome = match configured {
            Ok((bus_config, config)) => self.serve(
                bus_config,
                Box::new(move |running| {
                    Box::pin(async move { service(running, config).await.map_err(Into::into) })
                }),
            ),
            Err(refused) => Err(refused.into()),
        };
        match outcome {
            Ok(()) => ExitStatus::Ok,
            Err(error) => fail(S::NAME, &*error),
        }
    }

    /// Connects, verifies, runs `service` with the shutdown and the drain period, closes.
    fn serve<'a>(self, bus_config: BusConfig, service: ServiceFn<'a, S>) -> Result<(), BoxError> {
        let drain = Duration::from_secs(self.run.drain_s);
        let metrics_listen = self.run.metrics_listen;
        let runtime = service_runtime(self.run.worker_threads)
            .map_err(|e| ServiceError::failed("starting the tokio runtime", e))?;
        let signal = self.shutdown.unwrap_or_else(|| Box::pin(shutdown_signal()));
        runtime.block_on(async move {
            let (shutdown, trigger) = Shutdown::new();
            let fire = trigger.clone();
            tokio::spawn(async move {
                signal.await;
                fire.fire();
            });
            let health = Health::default();
            if let Some(address) = metrics_listen {
                telemetry::serve(address, S::NAME, env!("CARGO_PKG_VERSION"), health.clone())
                    .await
                    .map_err(ServiceError::config)?;
                let draining = (health.clone(), trigger.clone());
                tokio::spawn(async move {
                    draining.1.fired().await;
                    draining.0.set_draining();
                });
            }
            let started = async {
                let bus = Bus::<S>::connect(bus_config)
                    .await
                    .map_err(|e| ServiceError::bus("connecting to NATS", e))?;
                bus.verify_provisioned().await.map_err(|e| {
                    ServiceError::bus(
                        format!("checking {}'s streams, consumers and buckets", S::NAME),
                        e,
                    )
                })?;
                Ok::<_, ServiceError>(bus)
            };
            let bus = tokio::select! {
                bus = started => bus?,
                () = trigger.fired() => {
                    tracing::info!("{} stopped before it started", S::NAME);
                    return Ok(());
                }
            };
            tracing::info!(url = %bus.config().url, drain_s = drain.as_secs(), "{} starting", S::NAME);
            let connection = bus.clone();
            health.watch_connection(move || connection.is_connected());
            health.set_running();
            let running = Running {
                bus: bus.clone(),
                shutdown,
                drain,
            };
            let work = service(running);
            let outcome: Result<(), BoxError> = tokio::select! {
                outcome = work => outcome,
                () = async {
                    trigger.fired().await;
                    tokio::time::sleep(drain + CLOSE_MARGIN).await;
                } => Err(ServiceError::Drain(drain + CLOSE_MARGIN).into()),
            };
            let closed = bus
                .close()
                .await
                .map_err(|e| ServiceError::bus("closing the NATS connection", e));
            outcome?;
            closed?;
            tracing::info!("{} stopped", S::NAME);
            Ok(())
        })
    }
}

/// The runtime a service runs on (`--worker-threads`).
fn service_runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Runs a command-line client (`approval-cli`, `ops-worker send`): logs at `warn` unless
/// `RUST_LOG` says otherwise (so that its own output is not buried in connection logs), a
/// small tokio runtime, and `work`, which decides the exit status (the same convention,
/// [`ExitStatus`]).
pub fn client_main(log: &LogArgs, work: impl Future<Output = ExitStatus>) -> ExitStatus {
    init_tracing_at(log.log_format, "warn");
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("starting the tokio runtime: {e}");
            ExitStatus::Failure
        }
    }
}

/// Prints `<program>: <error>: <its sources>` and returns the status the error's kind decides.
pub fn fail(program: &str, error: &(dyn std::error::Error + 'static)) -> ExitStatus {
    eprintln!("{program}: {}", report(error));
    exit_status_of(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Guardian;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn worker_threads_choose_the_runtime() {
        use clap::Parser;
        use tokio::runtime::RuntimeFlavor;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let flavor = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("valid arguments");
            let runtime = service_runtime(cli.run.worker_threads).expect("a runtime");
            (
                runtime.handle().runtime_flavor(),
                runtime.metrics().num_workers(),
            )
        };
        assert_eq!(
            flavor(&["x", "--worker-threads", "0"]),
            (RuntimeFlavor::CurrentThread, 1)
        );
        assert_eq!(
            flavor(&["x", "--worker-threads", "3"]),
            (RuntimeFlavor::MultiThread, 3)
        );
        assert_eq!(flavor(&["x"]).0, RuntimeFlavor::MultiThread);
        assert!(Cli::try_parse_from(["x", "--worker-threads", "many"]).is_err());
    }

    struct TestConfig(NatsSection);

    impl ServiceConfig for TestConfig {
        fn nats(&self) -> &NatsSection {
            &self.0
        }
    }

    fn bootstrap(vars: &[(&str, &str)], run: RunArgs) -> ServiceMain<Guardian> {
        let log = LogArgs {
            log_format: LogFormat::Text,
        };
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServiceMain::new(&log, run).with_environment(move |name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn load(source: ConfigSource<'_>) -> Result<TestConfig, ConfigError> {
        super::super::load::<TestFile>(source.path, source.env).map(|f| TestConfig(f.nats))
    }

    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct TestFile {
        nats: NatsSection,
    }

    impl super::super::ConfigFile for TestFile {
        fn nats_mut(&mut self) -> &mut NatsSection {
            &mut self.nats
        }
    }

    use super::super::ConfigError;

    #[test]
    fn the_config_file_comes_from_the_flag_or_the_services_variable() {
        assert_eq!(config_variable::<Guardian>(), "GUARDIAN_CONFIG");
        assert_eq!(
            config_variable::<crate::services::OpsWorker>(),
            "OPS_WORKER_CONFIG"
        );
        let env = |name: &str| (name == "GUARDIAN_CONFIG").then(|| "/etc/g.toml".to_string());
        let none = ConfigArgs::default();
        assert_eq!(none.path::<Guardian>(&env), Some("/etc/g.toml".into()));
        let flag = ConfigArgs {
            config: Some("flag.toml".into()),
        };
        assert_eq!(flag.path::<Guardian>(&env), Some("flag.toml".into()));
    }

    #[test]
    fn a_refused_configuration_exits_2_and_nothing_runs() {
        let ran = Arc::new(AtomicBool::new(false));
        let seen = ran.clone();
        let status = bootstrap(&[("ORION_ENV", "staging")], RunArgs::default()).run(
            load,
            move |_, _| async move {
                seen.store(true, Ordering::SeqCst);
                Ok::<(), BoxError>(())
            },
        );
        assert_eq!(status, ExitStatus::Usage);
        assert!(!ran.load(Ordering::SeqCst));
        let missing = RunArgs {
            config: ConfigArgs {
                config: Some("/nonexistent/guardian.toml".into()),
            },
            drain_s: 1,
            metrics_listen: None,
            worker_threads: None,
        };
        let status = bootstrap(&[], missing).run(load, |_, _| async { Ok::<(), BoxError>(()) });
        assert_eq!(status, ExitStatus::Usage);
    }

    #[test]
    fn an_unreachable_server_exits_3() {
        let status = bootstrap(
            &[("ORION_NATS_URL", "nats://127.0.0.1:1")],
            RunArgs::default(),
        )
        .run(load, |_, _| async { Ok::<(), BoxError>(()) });
        assert_eq!(status, ExitStatus::Unreachable);
    }

    #[cfg(feature = "local-server")]
    #[test]
    fn a_service_runs_until_the_shutdown_then_the_bootstrap_closes_and_exits_0() {
        use crate::local_server::NatsServer;

        let server = NatsServer::start_with_auth().expect(
            "start nats-server (`cargo xtask test` installs it; or apt-get install nats-server)",
        );
        let admin_password = server.password("admin").unwrap().to_string();
        let url = server.url().to_string();
        let admin = {
            let (url, password) = (url.clone(), admin_password.clone());
            move || async move {
                async_nats::ConnectOptions::new()
                    .user_and_password("admin".into(), password)
                    .connect(url.as_str())
                    .await
                    .unwrap()
            }
        };
        let provision = admin.clone();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                crate::bus::provision_all(&async_nats::jetstream::new(provision().await), 1)
                    .await
                    .expect("provision");
            });
        let vars = [
            ("ORION_NATS_URL", url.as_str()),
            ("ORION_NATS_PASSWORD", server.password("guardian").unwrap()),
        ];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let status = bootstrap(&vars, RunArgs::default())
            .with_shutdown(async move {
                let _ = stopped.await;
            })
            .run(load, move |running, _config| async move {
                // Registered as a micro service by the time the service's code runs.
                let info = admin()
                    .await
                    .request("$SRV.PING.guardian", "".into())
                    .await
                    .map_err(|e| ServiceError::failed("pinging itself", e))?;
                assert!(!info.payload.is_empty());
                assert_eq!(running.drain, Duration::from_secs(60));
                let _ = stop.send(());
                tokio::time::timeout(Duration::from_secs(10), running.shutdown)
                    .await
                    .map_err(|e| ServiceError::failed("waiting for the shutdown", e))?;
                Ok::<(), ServiceError>(())
            });
        assert_eq!(status, ExitStatus::Ok);
    }
}
