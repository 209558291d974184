//! `guardian`: correlates ORION events into incidents (`run`), or checks a configuration
//! (`check`).

use std::process::ExitCode;

use clap::Subcommand;
use contracts::runtime::{
    self, ConfigArgs, ExitStatus, LogArgs, ProcessEnvironment, Program, RunArgs, ServiceMain,
};
use contracts::services::Guardian;
use guardian::config::{ConfigError, GuardianConfig};

const PROGRAM: Program = Program::new("guardian", env!("CARGO_PKG_VERSION"), ABOUT, LONG_ABOUT);

/// For `-h`.
const ABOUT: &str = "Correlates ORION events (orion.event.v1) into incidents (orion.incident.v1) by configurable rules, and applies incident acknowledgements (orion.incident_acknowledgement.v1).";

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
  [lease]     ttl_s (default 10): how long the others wait for a partition holder's renewal
  [[rules]]   name, group_by, window_s, threshold, incident_type, severity (optional fixed
              incident severity), resolve_on, resolve_after_s, and a [rules.match] table:
              event_type, source (names or `*` patterns), severity, data.<field> = value(s),
              tags.<name> = value(s)

Scale-out and high availability: run two or more instances. The group keys are split into
partitions (schemas/inventory.toml); the instances share them evenly, each partition held by one
instance through a lease in `guardian_state`. When an instance dies, the others take its
partitions after lease.ttl_s (plus up to a quarter of it) and continue its open incidents; after a
clean stop, at once. An instance that cannot renew a lease, or finds one taken over, stops
handling events and exits 1 (let the supervisor restart it: it comes back and gets its share).

Incident tags (a contract with brain): for each group_by key its last path segment → value
(data.service_name → service_name), plus rule → the rule's name.

Configuration precedence: the file, then its ORION_ENV overlay, then environment variables (the
same for every ORION service; README.md, \"Configuration and exit codes\"). A refused
configuration exits 2 before connecting; a lost lease exits 1.";

#[derive(Subcommand)]
enum Cmd {
    /// Run until SIGTERM/SIGINT; the message in hand is finished before exiting.
    Run(RunArgs),
    /// Check a configuration and print its rules, without connecting to NATS.
    Check(ConfigArgs),
}

fn main() -> ExitCode {
    runtime::program_main(&PROGRAM, |log, command| match command {
        Cmd::Run(run) => ServiceMain::<Guardian>::new(&log, run).run(
            |source| GuardianConfig::load(source.path, source.env),
            |running, config| async move {
                tracing::info!(rules = config.rules.len(), "guardian rules loaded");
                guardian::instance::run(running.bus, &config, running.shutdown).await
            },
        ),
        Cmd::Check(args) => check(&log, &args),
    })
}

/// `guardian check`: a check that finds problems exits 1; no file to check is a usage error.
fn check(log: &LogArgs, args: &ConfigArgs) -> ExitStatus {
    runtime::init_tracing(log.log_format);
    let path = args.path::<Guardian>(&ProcessEnvironment);
    match GuardianConfig::load(path.as_deref(), &ProcessEnvironment) {
        Ok(config) => {
            print_rules(&config);
            ExitStatus::Ok
        }
        Err(e) => {
            eprintln!("guardian: configuration refused: {e}");
            match e {
                ConfigError::NoFile => ExitStatus::Usage,
                _ => ExitStatus::Failure,
            }
        }
    }
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
