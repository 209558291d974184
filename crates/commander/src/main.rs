//! `commander`: executes ORION actions through ops-worker and reports their outcomes.

use std::process::ExitCode;

use clap::Subcommand;
use commander::config::CommanderConfig;
use commander::service::CommanderService;
use contracts::runtime::{self, Program, RunArgs, ServiceMain};
use contracts::services::Commander;

const PROGRAM: Program = Program::new("commander", env!("CARGO_PKG_VERSION"), ABOUT, LONG_ABOUT);

/// For `-h`.
const ABOUT: &str = "Executes ORION actions (orion.action.v1) and reports exactly one outcome per action (orion.outcome.v1).";

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

  COMMANDER_CONFIG      the config file, instead of --config

Config file (TOML, --config): [nats] url, replicas, user, password_file (or the older top-level
nats_url), receipt_timeout_s (120), reconcile_timeout_s (600), max_in_flight (16), ack_wait_s
(30), brain_public_keys = [\"<base64>\", ..] (several while brain's key rotates);
<name>.<ORION_ENV>.toml next to it overrides keys, environment variables override both (the
same for every ORION service; README.md, \"Configuration and exit codes\"). A refused
configuration (no OPS_SECRET, no trusted brain key) exits 2 before connecting.";

#[derive(Subcommand)]
enum Cmd {
    /// Run until SIGTERM/SIGINT, then drain the actions in flight.
    Run(RunArgs),
}

fn main() -> ExitCode {
    runtime::program_main(&PROGRAM, |log, Cmd::Run(run)| {
        ServiceMain::<Commander>::new(&log, run).run(
            |source| CommanderConfig::load(source.path, source.env),
            |running, config| async move {
                let log = running
                    .bus
                    .claim_log::<contracts::buckets::CommanderActions>()
                    .await?;
                tracing::info!(
                    receipt_timeout_s = config.receipt_timeout.as_secs(),
                    trusted_brain_keys = config
                        .brain_keys
                        .key_count(contracts::signing::BRAIN_SIGNER),
                    "commander configured"
                );
                CommanderService::new(
                    running.bus,
                    log,
                    config.keys,
                    config.brain_keys,
                    config.receipt_timeout,
                    config.ack_wait,
                    config.file.max_in_flight,
                )
                .with_reconcile_timeout(config.reconcile_timeout)
                .run(running.shutdown, running.drain)
                .await
            },
        )
    })
}
