//! `guardian`: correlates ORION events into incidents (`run`), or checks a configuration
//! (`check`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use contracts::bus::{Bus, BusConfig};
use contracts::runtime::{init_tracing, shutdown_signal, LogFormat};
use contracts::services::Guardian as GuardianIdentity;
use guardian::config::{GuardianConfig, ProcessEnvironment};

/// Exit code: a bad configuration, or guardian failed.
const EXIT_FAILURE: u8 = 1;
/// Exit code: bad arguments.
const EXIT_USAGE: u8 = 2;

/// Correlates ORION events (orion.event.v1) into incidents (orion.incident.v1) by configurable
/// rules, and applies incident acknowledgements (orion.incident_acknowledgement.v1).
#[derive(Parser)]
#[command(name = "guardian", version, long_about = LONG_ABOUT)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, env = "ORION_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

const LONG_ABOUT: &str = "\
Correlates ORION events (orion.event.v1) into incidents (orion.incident.v1) by the rules of its
configuration file, re-emits an incident (same incident_id) when it grows, is acknowledged
(orion.incident_acknowledgement.v1) or resolves, ignores duplicate events, and keeps its state in
the JetStream key-value bucket `guardian_state`, so a restart continues the open incidents.

Environment:
  ORION_NATS_URL        NATS URL(s), comma-separated (overrides [nats] url; default
                        nats://localhost:4222)
  ORION_NATS_USER       NATS user (default: guardian)
  ORION_NATS_PASSWORD   NATS password (or ORION_NATS_PASSWORD_FILE, a file holding it, or
                        ORION_NATS_PASSWORD_GUARDIAN, which `cargo xtask up` writes)
  GUARDIAN_CONFIG       the config file, instead of --config
  ORION_ENV             base, dev, ci or prod: also read <config>.<ORION_ENV>.toml next to the
                        file, whose keys override the file's
  ORION_LOG_FORMAT      text or json; RUST_LOG filters (default info)

Config file (TOML; crates/guardian/guardian.toml is a documented example):
  [nats]      url, replicas
  [consumer]  retry_delay_ms, batch, tick_ms (ack wait and max deliveries are the durable
              consumers' settings in the inventory, applied by `cargo xtask provision`)
  [limits]    max_groups, max_seen_event_ids, seen_ttl_s, max_event_ids_per_incident
  [lease]     ttl_s (default 10): how long standbys wait for the active guardian's renewal
  [[rules]]   name, group_by, window_s, threshold, incident_type, severity (optional fixed
              incident severity), resolve_on, resolve_after_s, and a [rules.match] table:
              event_type, source (names or `*` patterns), severity, data.<field> = value(s),
              tags.<name> = value(s)

High availability: run two or more instances. One holds a lease in `guardian_state` and consumes;
the others log `standby:` and wait. When the active one dies, a standby takes over after
lease.ttl_s (plus up to a quarter of it) and continues the open incidents; after a clean stop,
at once. An instance that cannot renew its lease, or finds it taken over, stops handling events
and exits 1 (let the supervisor restart it: it comes back as a standby).

Incident tags (a contract with brain): for each group_by key its last path segment → value
(data.service_name → service_name), plus rule → the rule's name.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT), 1 bad configuration or failure, 2 bad arguments.";

#[derive(Subcommand)]
enum Cmd {
    /// Run until SIGTERM/SIGINT; the message in hand is finished before exiting.
    Run {
        /// Config file (TOML); see --help for the keys.
        #[arg(long, short, env = "GUARDIAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration and print its rules, without connecting to NATS.
    Check {
        /// Config file (TOML).
        #[arg(long, short, env = "GUARDIAN_CONFIG")]
        config: Option<PathBuf>,
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
    let (config_path, check_only) = match cli.command {
        Cmd::Run { config } => (config, false),
        Cmd::Check { config } => (config, true),
    };
    let config = match GuardianConfig::load(config_path.as_deref(), &ProcessEnvironment) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("guardian: configuration refused: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if check_only {
        print_rules(&config);
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guardian: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn run(config: GuardianConfig) -> Result<()> {
    let mut bus_config =
        BusConfig::from_env::<GuardianIdentity>().context("reading the NATS settings")?;
    bus_config.url = config.nats_url.clone();
    bus_config.replicas = config.nats_replicas;
    let bus = Bus::<GuardianIdentity>::connect(bus_config)
        .await
        .context("connecting to NATS")?;
    tracing::info!(rules = config.rules.len(), url = %config.nats_url, "guardian starting");
    guardian::service::run(bus, &config, shutdown_signal())
        .await
        .context("running guardian")?;
    tracing::info!("guardian stopped");
    Ok(())
}

fn print_rules(config: &GuardianConfig) {
    println!("configuration ok: {} rule(s)", config.rules.len());
    for rule in &config.rules {
        let group_by: Vec<String> = rule.group_by.iter().map(|k| k.path.to_string()).collect();
        let types: Vec<String> = rule.event_types.iter().map(|t| t.to_string()).collect();
        let resolve: Vec<String> = rule.resolve_on.iter().map(|t| t.to_string()).collect();
        println!(
            "  {}: {} × [{}] in {} s by [{}] → {}{}{}",
            rule.name,
            rule.threshold,
            types.join(", "),
            rule.window.whole_seconds(),
            group_by.join(", "),
            rule.incident_type,
            if resolve.is_empty() {
                String::new()
            } else {
                format!("; resolved by [{}]", resolve.join(", "))
            },
            rule.resolve_after
                .map(|d| format!("; after {} s quiet", d.whole_seconds()))
                .unwrap_or_default(),
        );
    }
}
