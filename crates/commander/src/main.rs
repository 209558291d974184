//! `commander`: executes ORION actions through ops-worker and reports their outcomes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use commander::config::CommanderConfig;
use commander::service::CommanderService;
use contracts::bus::{Bus, BusConfig};
use contracts::runtime::{init_tracing, shutdown_signal, LogFormat};
use contracts::services::Commander;

/// Executes ORION actions (orion.action.v1) and reports exactly one outcome per action
/// (orion.outcome.v1).
#[derive(Parser)]
#[command(name = "commander", version, long_about = LONG_ABOUT)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, env = "ORION_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

const LONG_ABOUT: &str = "\
Executes ORION actions (orion.action.v1) and reports exactly one outcome per action
(orion.outcome.v1). restart_service / restart_edge_device → ops `restart`; scale_service → ops
`deploy` with `replicas`; stop_edge_device → ops `halt`; run_diagnostic → ops `export_evidence`
(each a signed command to ops-worker, waiting for its final receipt); acknowledge_incident → an
incident acknowledgement to guardian; send_notification → a notification operators see in
`approval-cli watch`. An action id is executed at most once, even across a crash or a replay.

Only actions brain signed run: each must carry brain's Ed25519 signature (header
Orion-Signature: ed25519:<base64>, over the RFC 8785 canonical JSON of the action as received),
verified against brain's trusted public keys before it is claimed or planned. An unsigned,
forged or altered action is dead-lettered (platform.dead_letter.v1, reason bad_signature, with
why), logged, and never reaches ops-worker; it gets no outcome. Without a trusted brain key
commander refuses to start.

Environment:
  OPS_SECRET            the HMAC key shared with ops-worker (or OPS_SECRET_FILE); required
  ORION_BRAIN_PUBLIC_KEYS
                        brain's public key(s), base64, comma-separated (instead of
                        brain_public_keys); `brain keygen` / `brain public-key` print one;
                        required (one of the two)
  ORION_NATS_URL        NATS URL (default nats://localhost:4222)
  ORION_NATS_USER       NATS user (default commander)
  ORION_NATS_PASSWORD   NATS password (or ORION_NATS_PASSWORD_FILE / ORION_NATS_PASSWORD_COMMANDER)
  ORION_ENV             base, dev, ci or prod: which overlay of the config file to apply
  ORION_LOG_FORMAT      text or json; RUST_LOG filters (default info)

Config file (TOML, --config): nats_url, receipt_timeout_s (120), reconcile_timeout_s (600), max_in_flight (16),
ack_wait_s (30), brain_public_keys = [\"<base64>\", ..] (several while brain's key rotates);
<name>.<ORION_ENV>.toml next to it overrides keys.";

#[derive(Subcommand)]
enum Cmd {
    /// Run until SIGTERM/SIGINT, then drain the actions in flight.
    Run {
        #[arg(long, short, env = "COMMANDER_CONFIG")]
        config: Option<PathBuf>,
        /// How long to wait for actions in flight at shutdown.
        #[arg(long, default_value = "60")]
        drain_s: u64,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("commander: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Cmd) -> Result<u8> {
    let Cmd::Run { config, drain_s } = command;
    let config = match CommanderConfig::load(config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("commander: configuration refused: {e}");
            return Ok(1);
        }
    };
    let keys = match ops_client::keys_from_env(&contracts::runtime::ProcessEnvironment) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("commander: configuration refused: {e}");
            return Ok(1);
        }
    };
    let mut bus_config = BusConfig::from_env::<Commander>().context("reading the NATS settings")?;
    bus_config.url = config.file.nats_url.clone();
    let bus = Bus::<Commander>::connect(bus_config)
        .await
        .context("connecting to NATS")?;
    bus.verify_provisioned()
        .await
        .context("checking commander's streams, consumer and buckets")?;
    let log = bus
        .claim_log::<contracts::buckets::CommanderActions>()
        .await
        .context("opening commander's claim bucket")?;
    tracing::info!(
        receipt_timeout_s = config.receipt_timeout.as_secs(),
        trusted_brain_keys = config
            .brain_keys
            .key_count(contracts::signing::BRAIN_SIGNER),
        "commander starting"
    );
    CommanderService::new(
        bus.clone(),
        log,
        keys,
        config.brain_keys,
        config.receipt_timeout,
        config.ack_wait,
        config.file.max_in_flight,
    )
    .with_reconcile_timeout(config.reconcile_timeout)
    .run(shutdown_signal(), Duration::from_secs(drain_s))
    .await?;
    bus.close().await?;
    tracing::info!("commander stopped");
    Ok(0)
}
