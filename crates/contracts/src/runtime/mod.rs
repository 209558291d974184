//! What every service binary does the same way, one job per module:
//!
//! - [`service_main`]: the bootstrap, [`ServiceMain`] — command-line flags, logs, configuration,
//!   bus connection (with the NATS micro-service registration), provisioning check, shutdown on
//!   SIGTERM/SIGINT with a drain period, and the exit code;
//! - [`config`]: layered configuration ([`load`]: file < `ORION_ENV` overlay < environment
//!   variables < the service's flags) and the [`Environment`] it reads;
//! - [`nats`]: the `[nats]` section every config file shares ([`NatsSection`]);
//! - [`exit`]: the one exit-code convention ([`ExitStatus`]) and how an error's kind decides it;
//! - [`logging`]: structured logs ([`LogFormat`]);
//! - [`shutdown`]: the shutdown signal ([`Shutdown`]);
//! - [`files`]: private files for secrets;
//! - [`telemetry`]: `/metrics`, `/healthz` and `/readyz` on `--metrics-listen`.
//!
//! README.md ("Configuration and exit codes") is the operators' description of the same rules.

pub mod config;
pub mod exit;
pub mod files;
pub mod logging;
pub mod nats;
pub mod service_main;
pub mod shutdown;
pub mod telemetry;

pub use config::{
    environment, load, load_layered, overlay_path, ConfigError, ConfigFile, Environment,
    ProcessEnvironment, ENVIRONMENTS,
};
pub use exit::{bus_exit_status, exit_status_of, report, ExitStatus, EXIT_CODES_HELP};
pub use files::{create_private_file, write_private_file};
pub use logging::{init_tracing, init_tracing_at, LogFormat};
pub use nats::NatsSection;
pub use service_main::{
    client_main, config_variable, fail, parse_args, program_main, BoxError, ConfigArgs,
    ConfigSource, LogArgs, Program, RunArgs, Running, ServiceConfig, ServiceError, ServiceMain,
    CLOSE_MARGIN,
};
pub use shutdown::{shutdown_signal, Shutdown, ShutdownTrigger};
