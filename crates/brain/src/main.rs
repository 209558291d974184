//! `brain`: the ORION decision service (`run`), a policy checker (`check`), a policy simulator
//! on recorded history (`simulate`), and its signing key (`keygen`, `public-key`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use brain::config::{Flags, Startup};
use brain::simulate::streams::{read_history, Window};
use brain::{Brain, BrainError, Policy};
use clap::Subcommand;
use contracts::bus::Bus;
use contracts::runtime::{
    self, ConfigArgs, ExitStatus, LogArgs, ProcessEnvironment, Program, RunArgs, Running,
    ServiceMain,
};
use contracts::services;
use contracts::signing::{SigningKey, BRAIN_SIGNER};

const PROGRAM: Program = Program::new("brain", env!("CARGO_PKG_VERSION"), ABOUT, LONG_ABOUT);

/// For `-h`.
const ABOUT: &str = "Decides how to respond to ORION incidents: policy, autonomy levels, ops interlock and signed approvals (orion.incident.v1 → orion.decision.v1, orion.action.v1, orion.approval_request.v1).";

const LONG_ABOUT: &str = "\
Decides how to respond to ORION incidents. Consumes orion.incident.v1, orion.approval_decision.v1
(and the deprecated orion.approval.v1, always refused: approvals must be signed) and
orion.outcome.v1 (for the circuit breaker); publishes orion.decision.v1, orion.action.v1 (state
pending) and orion.approval_request.v1. Every decision says why, in words an operator can act on.

Every action is signed with brain's own Ed25519 key (header Orion-Signature: ed25519:<base64>
over the RFC 8785 canonical JSON of the action as published); commander executes only actions
whose signature verifies against brain's public key(s). `brain keygen --out FILE` creates the
key and prints the line commander needs; `brain public-key --signing-key FILE` prints it again.
Without a readable key `brain run` exits 2 before connecting.

Autonomy levels (policy `autonomy_level`, capped live by the ops interlock):
  N0  observe: NO_ACTION
  N1  suggest: SUGGEST_ACTION with the proposed action; a human executes
  N2  SAFE → EXECUTE_SAFE_ACTION + Action; RISKY/UNKNOWN → NO_ACTION (blocked)
  N3  SAFE → EXECUTE_SAFE_ACTION + Action; RISKY/UNKNOWN → REQUEST_APPROVAL + ApprovalRequest,
      then the Action once an administrator's signed approve/force arrives in time
Ops interlock (key-value bucket ops_interlock, written by ops-worker): `disarm`/`halt` → observe
only (N0) until `arm`; `set_risk` caps the level. A missing or unreadable `armed` record also
means observe only (fail closed). Changes apply without a restart.

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

Config file (TOML, --config; optional): [nats] url, replicas; [brain] policy, signing_key (both
relative to the file), expiry_check_s, rescan_s, ack_wait_s, max_deliver. An overlay
<name>.<ORION_ENV>.toml next to it overrides keys; environment variables override both;
--policy and --signing-key override everything (the same precedence for every ORION service;
README.md, \"Configuration and exit codes\").

Environment:
  ORION_NATS_URL        NATS URL(s), comma-separated (default nats://localhost:4222)
  ORION_NATS_USER       NATS user (default brain)
  ORION_NATS_PASSWORD   NATS password (or ORION_NATS_PASSWORD_FILE, or ORION_NATS_PASSWORD_BRAIN)
  ORION_BRAIN_POLICY    policy file (instead of [brain] policy)
  ORION_BRAIN_SIGNING_KEY_FILE
                        brain's private key file (instead of [brain] signing_key); required
  BRAIN_CONFIG          the config file, instead of --config
  ORION_ENV             base, dev, ci or prod: which overlay of the config file to apply
  ORION_LOG_FORMAT      text or json; RUST_LOG filters (default info)

Trying a policy change (`brain simulate --policy NEW.toml [--since 24h | --from-seq N] [--json]`):
replays the incidents recorded on orion.incident.v1 (stream ORION_INCIDENTS) through NEW.toml with
the service's own decision code, cooldowns, rate limits and breakers, in time order with the
incidents' own timestamps as the clock, and prints which decisions would differ from the ones
recorded on orion.decision.v1 (type, safety class, rule), which actions would run or no longer
run, and which approvals would be asked or no longer asked. It connects like `brain run` (config
file, ORION_NATS_*), reads with ordered readers only and never publishes. Assumed, and printed
with every report: the ops interlock armed with no risk ceiling; a simulated approval request is
approved only where brain asked the same and it was approved; recorded outcomes count for a
breaker only where the same action runs again.
A bad NEW.toml exits 2 with its lines, as `brain run` would.

State: key-value bucket brain_state (pending approval requests, cooldowns, rate windows,
breakers), so a restart loses nothing. A bad policy, signing key or configuration exits 2
before connecting (`brain check` exits 1 for a bad policy: the check ran and failed).";

#[derive(Subcommand)]
enum Cmd {
    /// Run the service until SIGTERM/SIGINT; the message in hand is finished first.
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Policy file (TOML); overrides ORION_BRAIN_POLICY and [brain] policy.
        #[arg(long, short)]
        policy: Option<PathBuf>,
        /// brain's private key file (from `brain keygen`); overrides
        /// ORION_BRAIN_SIGNING_KEY_FILE and [brain] signing_key.
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
    },
    /// Replay the recorded incidents through another policy and print what would change
    /// (decisions, actions, approvals) against what brain recorded. Reads only; never publishes.
    Simulate {
        #[command(flatten)]
        config: ConfigArgs,
        /// The policy to try (TOML), checked as `brain run` checks its own.
        #[arg(long, short, value_name = "NEW.toml")]
        policy: PathBuf,
        /// Only incidents the server stored within this long before now: 90s, 30m, 24h, 7d.
        #[arg(long, value_name = "AGE", value_parser = parse_age, conflicts_with = "from_seq")]
        since: Option<time::Duration>,
        /// Only incidents from this sequence of stream ORION_INCIDENTS on.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        from_seq: Option<u64>,
        /// Print the report as JSON (shape `brain-simulation/1`, documented in brain's
        /// `simulate::report`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Tool(Tool),
}

/// `90s`, `30m`, `24h`, `7d` (a whole number and a unit).
fn parse_age(text: &str) -> Result<time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number and a unit, like 24h"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d, like 24h")),
    };
    number
        .checked_mul(unit_s)
        .map(time::Duration::seconds)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The subcommands that do not connect anywhere.
#[derive(Subcommand)]
enum Tool {
    /// Create brain's Ed25519 signing key in FILE (mode 0600, never over an existing file) and
    /// print the public key commander must trust.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the public key (base64) of a signing key file: the value of commander's
    /// brain_public_keys / ORION_BRAIN_PUBLIC_KEYS.
    PublicKey {
        /// brain's private key file.
        #[arg(long, value_name = "FILE", env = "ORION_BRAIN_SIGNING_KEY_FILE")]
        signing_key: PathBuf,
    },
    /// Check a policy file and print what it says; exit 1 with line-numbered errors if invalid.
    Check {
        /// Policy file (TOML).
        #[arg(long, short)]
        policy: PathBuf,
    },
}

fn main() -> ExitCode {
    runtime::program_main(&PROGRAM, |log, command| match command {
        Cmd::Run {
            run,
            policy,
            signing_key,
        } => ServiceMain::<services::Brain>::new(&log, run).run(
            |source| {
                let flags = Flags {
                    policy: policy.as_deref(),
                    signing_key: signing_key.as_deref(),
                };
                Startup::load(source.path, flags, source.env)
            },
            serve,
        ),
        Cmd::Simulate {
            config,
            policy,
            since,
            from_seq,
            json,
        } => {
            let window = match (since, from_seq) {
                // An age beyond the calendar reads everything.
                (Some(age), _) => Window::Since(
                    time::OffsetDateTime::now_utc()
                        .checked_sub(age)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                ),
                (None, Some(sequence)) => Window::FromSequence(sequence),
                (None, None) => Window::All,
            };
            simulate(&log, &config, &policy, window, json)
        }
        Cmd::Tool(command) => {
            runtime::init_tracing(log.log_format);
            tool(command)
        }
    })
}

/// brain, once the bootstrap has connected and checked provisioning.
async fn serve(running: Running<services::Brain>, startup: Startup) -> Result<(), BrainError> {
    let Startup {
        config,
        policy,
        signer,
    } = startup;
    tracing::info!(
        policy = %config.policy.display(),
        level = %policy.autonomy_level,
        rules = policy.rules.len(),
        fallback = policy.fallback.is_some(),
        admins = ?policy.admins,
        signing_key = %config.signing_key.display(),
        public_key = %signer.public_key_base64(),
        "brain's policy and key loaded"
    );
    let brain = Brain::start(running.bus, policy, signer, config.settings).await?;
    brain.run(running.shutdown).await
}

/// `simulate`: the configuration and the new policy are checked before connecting (exit 2, as
/// `brain run`); NATS unreachable or not provisioned exits 3. Only reads.
fn simulate(
    log: &LogArgs,
    config: &ConfigArgs,
    policy_path: &std::path::Path,
    window: Window,
    json: bool,
) -> ExitStatus {
    let env = ProcessEnvironment;
    let failed = |status: ExitStatus, e: anyhow::Error| {
        let error: &(dyn std::error::Error + 'static) = e.as_ref();
        eprintln!("brain: {}", runtime::report(error));
        status
    };
    let path = config.path::<services::Brain>(&env);
    let bus_config = match brain::config::load_nats(path.as_deref(), &env)
        .map_err(anyhow::Error::from)
        .and_then(|nats| Ok(nats.bus_config::<services::Brain>(&env)?))
    {
        Ok(config) => config,
        Err(e) => return failed(ExitStatus::Usage, e.context("configuration refused")),
    };
    let policy = match Policy::load(policy_path) {
        Ok(policy) => policy,
        Err(e) => {
            return failed(
                ExitStatus::Usage,
                anyhow::Error::new(e).context("policy refused"),
            )
        }
    };
    runtime::client_main(log, async move {
        let bus = match Bus::<services::Brain>::connect(bus_config).await {
            Ok(bus) => bus,
            Err(e) => {
                let status = runtime::bus_exit_status(&e);
                return failed(status, anyhow::Error::new(e).context("connecting to NATS"));
            }
        };
        let read = read_history(&bus, window).await;
        let _ = bus.close().await;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                let status = e
                    .bus_error()
                    .map_or(ExitStatus::Unreachable, runtime::bus_exit_status);
                return failed(
                    status,
                    anyhow::Error::new(e).context("reading the recorded history"),
                );
            }
        };
        if read.skipped > 0 {
            eprintln!(
                "brain: note: {} stored message(s) did not decode and were left out",
                read.skipped
            );
        }
        let origin = policy_path.display().to_string();
        match brain::simulate::simulate(&read.history, &policy, &origin)
            .with_context(|| format!("simulating {origin}"))
        {
            Ok(report) if json => {
                println!("{}", report.to_json());
                ExitStatus::Ok
            }
            Ok(report) => {
                print!("{}", report.to_table());
                ExitStatus::Ok
            }
            Err(e) => failed(ExitStatus::Failure, e),
        }
    })
}

/// `check`, `keygen`, `public-key`: no bus. A check that finds problems, or a key file that
/// cannot be written or read, exits 1.
fn tool(command: Tool) -> ExitStatus {
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("brain: {e}");
        ExitStatus::Failure
    };
    match command {
        Tool::Check { policy } => match Policy::load(&policy) {
            Ok(policy) => {
                print!("{}", policy.summary());
                ExitStatus::Ok
            }
            Err(e) => failed(&e),
        },
        Tool::Keygen { out } => match SigningKey::write_new(BRAIN_SIGNER, &out) {
            Ok(key) => {
                println!(
                    "Wrote brain's signing key to {} (mode 0600: keep it secret; brain reads it with --signing-key or ORION_BRAIN_SIGNING_KEY_FILE).",
                    out.display()
                );
                println!("Give commander its public key (commander.toml, or ORION_BRAIN_PUBLIC_KEYS=<key>):");
                println!();
                println!("brain_public_keys = [\"{}\"]", key.public_key_base64());
                ExitStatus::Ok
            }
            Err(e) => failed(&e),
        },
        Tool::PublicKey { signing_key } => match SigningKey::load(BRAIN_SIGNER, &signing_key) {
            Ok(loaded) => {
                if let Some(warning) = loaded.warning {
                    eprintln!("brain: warning: {warning}");
                }
                println!("{}", loaded.key.public_key_base64());
                ExitStatus::Ok
            }
            Err(e) => failed(&e),
        },
    }
}
