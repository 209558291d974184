//! `brain`: the ORION decision service (`run`) and a policy checker (`check`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use brain::config::Config;
use brain::{Brain, Policy};
use clap::{Parser, Subcommand};
use contracts::bus::{Bus, BusConfig};
use contracts::runtime::{init_tracing, shutdown_signal, LogFormat};
use contracts::services;

/// Exit code: a bad policy or configuration, or brain failed.
const EXIT_FAILURE: u8 = 1;
/// Exit code: bad command-line arguments.
const EXIT_USAGE: u8 = 2;

/// Decides how to respond to ORION incidents: policy, autonomy levels, ops interlock and signed
/// approvals (orion.incident.v1 → orion.decision.v1, orion.action.v1, orion.approval_request.v1).
#[derive(Parser)]
#[command(name = "brain", version, long_about = LONG_ABOUT)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, env = "ORION_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

const LONG_ABOUT: &str = "\
Decides how to respond to ORION incidents. Consumes orion.incident.v1, orion.approval_decision.v1
(and the deprecated orion.approval.v1, always refused: approvals must be signed) and
orion.outcome.v1 (for the circuit breaker); publishes orion.decision.v1, orion.action.v1 (state
pending) and orion.approval_request.v1. Every decision says why, in words an operator can act on.

Autonomy levels (policy `autonomy_level`, capped live by the ops interlock):
  N0  observe: NO_ACTION
  N1  suggest: SUGGEST_ACTION with the proposed action; a human executes
  N2  SAFE → EXECUTE_SAFE_ACTION + Action; RISKY/UNKNOWN → NO_ACTION (blocked)
  N3  SAFE → EXECUTE_SAFE_ACTION + Action; RISKY/UNKNOWN → REQUEST_APPROVAL + ApprovalRequest,
      then the Action once an administrator's signed approve/force arrives in time
Ops interlock (key-value bucket ops_interlock, written by ops-worker): `disarm`/`halt` → observe
only (N0) until `arm`; `set_risk` caps the level. Changes apply without a restart.

Policy file (TOML, --policy; checked at start, errors give the line; `brain check` checks one):
  autonomy_level = \"N0\".. \"N3\"
  approval_timeout_s = 300                  (default 300, at most 3600)
  targets = [\"web\", \"gw-7\", ..]             (optional: the only targets any rule may act on)
  [[admins]] identity, public_key           (base64 Ed25519; who may approve)
  [[rules]]  name, incident_types = [..], severities = [..] (optional),
             action = restart_service | scale_service | send_notification | acknowledge_incident
                    | run_diagnostic | stop_edge_device | restart_edge_device,
             safety = \"SAFE\" | \"RISKY\",
             parameters = { .. }            (strings may use ${tags.<key>}, ${incident.incident_id},
                                             ${incident.severity}, ${incident.incident_type})
             targets = [..]                 (optional: replaces the policy's targets here)
             cooldown_s = N                 (per action + target; also stops re-emitted versions
                                             of one incident from acting twice)
             rate_limit = { max = N, per_s = S }                    (optional)
             circuit_breaker = { failures = 3, within_s = 300, open_s = 600 }  (optional; default)
  [fallback] action, parameters, cooldown_s, ..  (optional: proposed, as UNKNOWN, when no rule
             covers an incident)
  The target of an action is its service_name or device_id parameter (else the incident id),
  exactly as rendered. It must be a canonical name: a-z, 0-9, '.', '_', '-', starting with a
  letter or digit, at most 63 characters, not `all`. Anything else (\"web \", \"Web\", \"\",
  \"all\") gets NO_ACTION naming the target and the rule it breaks; nothing is trimmed. So
  does a name missing from the rule's targets (its own, else the policy's; none: any name).
  See crates/brain/policy.toml for a documented example.

Config file (TOML, --config; optional): [nats] url, replicas; [brain] policy (relative to the
file), expiry_check_s, rescan_s, ack_wait_s, max_deliver. An overlay <name>.<ORION_ENV>.toml next
to it overrides keys; environment variables override both; --policy overrides everything.

Environment:
  ORION_NATS_URL        NATS URL(s), comma-separated (default nats://localhost:4222)
  ORION_NATS_USER       NATS user (default brain)
  ORION_NATS_PASSWORD   NATS password (or ORION_NATS_PASSWORD_FILE, or ORION_NATS_PASSWORD_BRAIN)
  ORION_BRAIN_POLICY    policy file (instead of [brain] policy)
  ORION_ENV             base, dev, ci or prod: which overlay of the config file to apply
  ORION_LOG_FORMAT      text or json; RUST_LOG filters (default info)

State: key-value bucket brain_state (pending approval requests, cooldowns, rate windows,
breakers), so a restart loses nothing. Exit codes: 0 stopped by SIGTERM/SIGINT, 1 bad policy,
configuration or connection (reported before connecting when it is the policy), 2 bad arguments.";

#[derive(Subcommand)]
enum Cmd {
    /// Run the service until SIGTERM/SIGINT; the message in hand is finished first.
    Run {
        /// Config file (TOML); see --help for the keys.
        #[arg(long, short, env = "BRAIN_CONFIG")]
        config: Option<PathBuf>,
        /// Policy file (TOML); overrides ORION_BRAIN_POLICY and [brain] policy.
        #[arg(long, short)]
        policy: Option<PathBuf>,
    },
    /// Check a policy file and print what it says; exit 1 with line-numbered errors if invalid.
    Check {
        /// Policy file (TOML).
        #[arg(long, short)]
        policy: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    init_tracing(cli.log_format);
    match cli.command {
        Cmd::Check { policy } => match Policy::load(&policy) {
            Ok(policy) => {
                print!("{}", policy.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("brain: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Cmd::Run { config, policy } => {
            let config = match Config::load(config.as_deref(), policy.as_deref(), |k| {
                std::env::var(k).ok().filter(|v| !v.is_empty())
            }) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("brain: configuration refused: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            // The policy is checked before anything connects.
            let policy = match Policy::load(&config.policy) {
                Ok(policy) => policy,
                Err(e) => {
                    eprintln!("brain: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(run(config, policy)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("brain: {e:#}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
    }
}

async fn run(config: Config, policy: Policy) -> Result<()> {
    let mut bus_config =
        BusConfig::from_env::<services::Brain>().context("reading the NATS settings")?;
    bus_config.url = config.nats_url.clone();
    bus_config.replicas = config.nats_replicas;
    tracing::info!(
        policy = %config.policy.display(),
        level = %policy.autonomy_level,
        rules = policy.rules.len(),
        fallback = policy.fallback.is_some(),
        admins = ?policy.admins,
        "brain starting"
    );
    let bus = Bus::<services::Brain>::connect(bus_config)
        .await
        .context("connecting to NATS")?;
    bus.verify_provisioned()
        .await
        .context("checking brain's streams, consumers and buckets")?;
    let brain = Brain::start(bus.clone(), policy, config.settings)
        .await
        .context("opening brain's state")?;
    brain.run(shutdown_signal()).await?;
    bus.close().await.context("closing the NATS connection")?;
    tracing::info!("brain stopped");
    Ok(())
}
