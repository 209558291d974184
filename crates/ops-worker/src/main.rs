//! `ops-worker`: the worker (`run`) and the operator's client (`send`, `evidence get`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use contracts::bus::Bus;
use contracts::generated::ops_command_v1::OpsCommandType;
use contracts::runtime::{
    self, fail, BoxError, ExitStatus, NatsSection, ProcessEnvironment, Program, RunArgs, Running,
    ServiceError, ServiceMain,
};
use contracts::services::{OpsConsole, OpsWorker};
use ops_client::client::{self, CommandRequest};
use ops_worker::config::{self, WorkerConfig};
use ops_worker::control::ControlBoard;
use ops_worker::docker::Engine;
use ops_worker::executor::Executor;
use ops_worker::state::{command_log, ArmedRecord, Interlock};
use ops_worker::worker::{Worker, WorkerSettings};
use serde_json::{Map, Value};

const PROGRAM: Program = Program::new("ops-worker", env!("CARGO_PKG_VERSION"), ABOUT, LONG_ABOUT);

/// For `-h`.
const ABOUT: &str = "Executes HMAC-signed ops commands (titan.ops.command.v1) against the Docker engine and answers with receipts (titan.ops.receipt.v1); also the operator's client for them.";

const LONG_ABOUT: &str = "\
Executes HMAC-signed ops commands (titan.ops.command.v1) against the Docker engine and answers
with receipts (titan.ops.receipt.v1). `run` is the worker; `send` and `evidence get` are the
operator's client.

Environment (the worker fails closed: without a strong secret it exits 2 before connecting):
  OPS_SECRET            HMAC-SHA256 key (UTF-8 bytes), at least 24 bytes; signs and verifies
  OPS_SECRET_PREVIOUS   older keys still accepted during a rotation, comma-separated
  OPS_SECRET_FILE       instead of OPS_SECRET: a file with one key per line, the first signing
  ORION_NATS_URL        NATS URL (also NATS_URL; default nats://localhost:4222)
  ORION_NATS_USER       NATS user (default: ops-worker for run, ops-console for send)
  ORION_NATS_PASSWORD   NATS password (or ORION_NATS_PASSWORD_FILE, or ORION_NATS_PASSWORD_<USER>)
  OPS_ALLOWLIST         services the worker may act on, comma-separated canonical names (also
                        [docker] allowlist)
  OPS_SERVICE_LABEL     container label naming a service (default com.docker.compose.service)
  DOCKER_SOCKET         Docker engine socket (default /var/run/docker.sock)
  OPS_CLOCK_SKEW_S      replay window in seconds (default 300)
  OPS_WORKER_CONFIG     the config file, instead of --config
  ORION_ENV             base, dev, ci or prod: which overlay of the config file to apply
  ORION_LOG_FORMAT      text or json; RUST_LOG filters (default info)

Config file (TOML, --config): [nats] url, replicas; [docker] socket, service_label, allowlist,
call_timeout_s; [commands] clock_skew_s, stop_timeout_s, deploy_ready_timeout_s,
evidence_log_lines (at most 5000), evidence_receipts, ack_wait_s, max_in_flight, cancel_wait_s. An overlay
<name>.<ORION_ENV>.toml next to it overrides keys; environment variables override both (the
same for every ORION service; README.md, \"Configuration and exit codes\"). [nats] also takes
user and password_file.

Evidence bundles (export_evidence, param log_lines clamped to 5000; logs at most 1 MiB per
container) never hold environment values, credential-like labels and arguments, or URL user
info: they are replaced by [redacted] and listed, without values, in redactions.json.

Targets: a command's target is an allowlisted service spelled exactly as allowlisted, `all`
(every allowlisted service), or empty for platform-wide commands (arm, disarm, set_risk,
cancel_all; export_evidence of everything). Service names are canonical: a-z, 0-9, '.', '_'
and '-', starting with a letter or digit, at most 63 characters, and never `all`. A target
that is not (\"web \", \" web\", \"Web\") gets a failure receipt naming the problem and nothing
runs: targets are never trimmed or case-folded. The allowlist must hold canonical names too.";

#[derive(Subcommand)]
enum Cmd {
    /// Run the worker until SIGTERM/SIGINT, then drain the commands in flight.
    Run(RunArgs),
    /// Sign a command with OPS_SECRET, send it as ops-console, and wait for its final receipt.
    /// Exit code: 0 success, 1 failure receipt, 2 usage, 3 no final receipt in time.
    Send(SendArgs),
    /// Evidence bundles exported by `export_evidence`.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCmd,
    },
}

#[derive(Args)]
struct SendArgs {
    /// restart, deploy, halt, disarm, arm, set_risk, cancel_all, export_evidence or withdraw
    /// (with --param command_id=<id> --param command_type=<type>).
    #[arg(long = "type", value_name = "TYPE", value_parser = command_type)]
    command_type: OpsCommandType,
    /// An allowlisted service spelled exactly as allowlisted (never trimmed or case-folded),
    /// `all`, or empty for platform-wide commands.
    #[arg(long, default_value = "")]
    target: String,
    /// A parameter, KEY=VALUE (VALUE parsed as JSON when it can be: 10, true, "x"); repeatable.
    /// Example: --param image=registry.local/web:2 --param replicas=2 --param level=N2.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Why (recorded in the command and the audit trail).
    #[arg(long)]
    reason: String,
    /// Who is sending (default: $USER).
    #[arg(long, env = "USER", default_value = "operator")]
    initiator: String,
    /// Seconds to wait for the final receipt.
    #[arg(long, default_value = "120")]
    wait_s: u64,
    /// Print receipts as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum EvidenceCmd {
    /// Download a bundle (the `name` of an export_evidence receipt) and check its manifest.
    Get {
        name: String,
        /// Where to write it (default: NAME in the current directory).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Expected sha256 of the bundle (from the receipt); a mismatch exits 1.
        #[arg(long)]
        sha256: Option<String>,
    },
}

fn main() -> ExitCode {
    runtime::program_main(&PROGRAM, |log, command| match command {
        Cmd::Run(run) => ServiceMain::<OpsWorker>::new(&log, run)
            .run(|source| WorkerConfig::load(source.path, source.env), serve),
        Cmd::Send(args) => runtime::client_main(&log, send(args)),
        Cmd::Evidence {
            command:
                EvidenceCmd::Get {
                    name,
                    output,
                    sha256,
                },
        } => runtime::client_main(&log, evidence_get(name, output, sha256)),
    })
}

/// The worker, once the bootstrap has connected and checked provisioning.
async fn serve(running: Running<OpsWorker>, config: WorkerConfig) -> Result<(), BoxError> {
    let bus = running.bus;
    let engine = Engine::connect(config.docker.clone())
        .await
        .map_err(|e| ServiceError::unreachable("connecting to the Docker engine", e))?;
    let interlock = Interlock::open(&bus).await?;
    match interlock.armed().await {
        ArmedRecord::Armed(_) => tracing::info!("the interlock is armed"),
        ArmedRecord::Disarmed(record) => tracing::warn!(?record, "the interlock is disarmed: mutating commands are refused until `arm`"),
        ArmedRecord::Missing => tracing::warn!("the interlock record `armed` is missing from `ops_interlock`: disarmed (fail closed) until a signed `arm` writes it"),
        ArmedRecord::Unreadable(e) => tracing::warn!(error = %e, "the interlock record `armed` cannot be read: disarmed (fail closed) until a signed `arm` writes a valid one"),
    }
    let executor = Executor {
        engine,
        interlock,
        bus: bus.clone(),
        stop_timeout: config.stop_timeout,
        deploy_ready_timeout: config.deploy_ready_timeout,
        evidence_log_lines: config.evidence_log_lines,
        evidence_receipts: config.evidence_receipts,
    };
    let log = command_log(&bus).await?;
    tracing::info!(executor_id = %config.executor_id, allowlist = ?config.docker.allowlist, keys = config.keys.len(), "ops-worker configured");
    let settings = WorkerSettings {
        keys: config.keys,
        clock_skew: config.clock_skew,
        ack_wait: config.ack_wait,
        max_in_flight: config.max_in_flight,
        cancel_wait: config.cancel_wait,
        executor_id: config.executor_id,
    };
    let board = ControlBoard::open(&bus).await?;
    Worker::new(bus, executor, log, board, settings)
        .run(running.shutdown, running.drain)
        .await?;
    Ok(())
}

/// The operator's connection: ops-console, with the `[nats]` defaults and the environment.
async fn console() -> Result<Bus<OpsConsole>, BoxError> {
    let config = NatsSection::from_environment(&ProcessEnvironment)
        .bus_config::<OpsConsole>(&ProcessEnvironment);
    let config = config.map_err(ServiceError::config)?;
    Bus::<OpsConsole>::connect(config)
        .await
        .map_err(|e| ServiceError::bus("connecting to NATS", e).into())
}

/// `--param KEY=VALUE`s as a JSON object.
fn parse_params(params: &[String]) -> Result<Option<Map<String, Value>>, String> {
    if params.is_empty() {
        return Ok(None);
    }
    let mut map = Map::new();
    for param in params {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| format!("--param {param:?} is not KEY=VALUE"))?;
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        map.insert(key.to_string(), value);
    }
    Ok(Some(map))
}

fn command_type(text: &str) -> Result<OpsCommandType, String> {
    text.parse().map_err(|e| format!("{e}"))
}

async fn send(args: SendArgs) -> ExitStatus {
    const SEND: &str = "ops-worker send";
    let keys = match config::signing_keys(&ProcessEnvironment) {
        Ok(keys) => keys,
        Err(e) => return fail(SEND, &ServiceError::config(e)),
    };
    let params = match parse_params(&args.params) {
        Ok(params) => params,
        Err(e) => return fail(SEND, &ServiceError::config(e)),
    };
    let request = CommandRequest {
        command_type: args.command_type,
        target: args.target,
        params,
        initiator_id: args.initiator,
        reason: args.reason,
    };
    let command = match client::build_signed(&request, &keys) {
        Ok(command) => command,
        Err(e) => return fail(SEND, &ServiceError::config(e)),
    };
    let bus = match console().await {
        Ok(bus) => bus,
        Err(e) => return fail(SEND, &*e),
    };
    if !args.json {
        eprintln!(
            "sent {} {} (command {})",
            command.type_,
            if command.target.is_empty() {
                "-"
            } else {
                &command.target
            },
            command.id
        );
    }
    let json = args.json;
    let receipts = client::send_and_wait(
        &bus,
        &command,
        Duration::from_secs(args.wait_s),
        |receipt| {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(receipt).expect("receipts serialize")
                );
            } else {
                let detail = match (&receipt.result, &receipt.error) {
                    (_, Some(error)) => error.to_string(),
                    (Some(result), None) if !result.is_empty() => {
                        Value::Object(result.clone()).to_string()
                    }
                    _ => String::new(),
                };
                println!(
                    "{:<8} {:>7} ms  {}",
                    receipt.status, receipt.meta.duration_ms, detail
                );
            }
        },
    )
    .await;
    let status = match receipts {
        // Sending or reading the receipts failed: no final receipt, as good as unreachable.
        Err(e) => {
            eprintln!("{SEND}: {e}");
            ExitStatus::Unreachable
        }
        Ok(receipts) => match receipts.last {
            None => {
                eprintln!(
                    "{SEND}: no final receipt within {} s (is ops-worker running?)",
                    args.wait_s
                );
                ExitStatus::Unreachable
            }
            Some(last) if last.status == contracts::ops_receipt_v1::OpsReceiptStatus::Success => {
                ExitStatus::Ok
            }
            Some(_) => ExitStatus::Failure,
        },
    };
    bus.close().await.ok();
    status
}

async fn evidence_get(
    name: String,
    output: Option<PathBuf>,
    expected: Option<String>,
) -> ExitStatus {
    const EVIDENCE: &str = "ops-worker evidence";
    let bus = match console().await {
        Ok(bus) => bus,
        Err(e) => return fail(EVIDENCE, &*e),
    };
    let bytes = match ops_worker::evidence::fetch(&bus, &name).await {
        Ok(bytes) => bytes,
        Err(e) => return fail(EVIDENCE, &e),
    };
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if let Some(expected) = expected {
        if !expected.eq_ignore_ascii_case(&digest) {
            eprintln!("{EVIDENCE}: {name} has sha256 {digest}, expected {expected}");
            return ExitStatus::Failure;
        }
    }
    let files = match ops_worker::evidence::unpack_verified(&bytes) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("{EVIDENCE}: {name} fails its manifest check: {e}");
            return ExitStatus::Failure;
        }
    };
    let path = output.unwrap_or_else(|| PathBuf::from(&name));
    if let Err(e) = std::fs::write(&path, &bytes) {
        eprintln!("{EVIDENCE}: writing {}: {e}", path.display());
        return ExitStatus::Failure;
    }
    println!(
        "{}: {} bytes, sha256 {digest}, {} files, manifest verified",
        path.display(),
        bytes.len(),
        files.len()
    );
    ExitStatus::Ok
}
