//! `cargo xtask`: see the library docs (`xtask/src/lib.rs`) and docs/GOVERNANCE.md.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::check::{EXIT_CANNOT_RUN, EXIT_USAGE};
use xtask::inventory::Layout;

/// Project automation: contract code generation and governance.
#[derive(Parser)]
#[command(name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the Rust contract types and registry, docs/CONTRACTS.md, docs/asyncapi.json
    /// and deploy/nats/authorization.conf from schemas/, and record the content hash.
    Codegen,
    /// Check the contracts: drift, inventory, schema invariants, version and hash, evolution
    /// against the released baseline, repository invariants.
    ///
    /// Exit codes: 0 clean (warnings allowed), 1 contract violations, 2 usage error,
    /// 3 the check could not run.
    Check {
        /// Print a machine-readable JSON report on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Check another checkout (defaults to this one).
        #[arg(long, value_name = "DIR")]
        root: Option<std::path::PathBuf>,
    },
    /// Record the current contract set as the released baseline in schemas/baseline/.
    Release,
    /// The main job: installs and starts what it needs (nats-server, the Docker engine, a local
    /// test image), builds and starts every service, makes a real container misbehave, and
    /// shows the incident flowing from event to outcome — a SAFE restart, then a RISKY scale-up
    /// approved with approval-cli — as audit trails; then stops everything.
    Demo,
    /// Start the local stack: a nats-server with JetStream and the generated per-service
    /// permissions, provisioned from the inventory, and ops-worker, guardian, brain and
    /// commander with the example configs — data, logs, credentials and pids under
    /// target/orion-stack/. Installs nats-server if it is missing.
    Up,
    /// Stop the local stack started by `up` (services first; the data stays).
    Down,
    /// Create or update every stream, bucket and object store of the inventory on a NATS server
    /// (ORION_NATS_URL, ORION_NATS_USER, ORION_NATS_PASSWORD).
    Provision {
        /// Arguments for `orion-bus provision` (see `cargo xtask provision -- --help`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the whole test suite: installs and starts what it needs (nats-server, the Docker
    /// engine), then `cargo test --workspace --all-features --no-fail-fast` and
    /// `cargo xtask check`.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run every fuzz target of fuzz/ (contract decode, ops signatures, brain policy, guardian
    /// rules) for N seconds each, with cargo-fuzz (installed if missing) on the stable
    /// toolchain; prints per target the inputs run, the corpus size and the crashes found.
    /// Exits 1 on a crash. Run it niced on a shared machine: `nice -n 19 cargo xtask fuzz …`.
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Also stop a target after this many inputs, whichever comes first.
        #[arg(long)]
        runs: Option<u64>,
        /// Targets that run at the same time (each uses one core).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Sanitizer for cargo fuzz: `none` (the code is safe Rust) or `address`.
        #[arg(long, default_value = "none")]
        sanitizer: String,
        /// Run only these targets (default: all).
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE as u8 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CANNOT_RUN as u8)
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let layout = Layout::of_this_checkout();
    match cli.command {
        Command::Codegen => {
            let files = xtask::codegen::run(&layout)?;
            eprintln!("codegen: {} generated files up to date", files.len());
            Ok(0)
        }
        Command::Check { json, root } => {
            let layout = root.map(Layout::new).unwrap_or(layout);
            let report = xtask::check::run(&layout)?;
            print_report(&report, json)?;
            Ok(report.exit_code())
        }
        Command::Test { cargo_args } => {
            xtask::machine::prepare()?;
            let tests = std::process::Command::new(env!("CARGO"))
                // Every test binary runs even after a failure: one run shows every problem.
                .args(["test", "--workspace", "--all-features", "--no-fail-fast"])
                .args(&cargo_args)
                .current_dir(&layout.root)
                .status()?;
            if !tests.success() {
                return Ok(tests.code().unwrap_or(1));
            }
            let report = xtask::check::run(&layout)?;
            print_report(&report, false)?;
            Ok(report.exit_code())
        }
        Command::Demo => {
            xtask::machine::prepare()?;
            let cargo = |args: &[&str]| -> Result<i32> {
                let status = std::process::Command::new(env!("CARGO"))
                    .args(args)
                    .current_dir(&layout.root)
                    .status()?;
                Ok(status.code().unwrap_or(1))
            };
            let built = cargo(&["build", "--workspace", "--all-features", "--bins"])?;
            if built != 0 {
                return Ok(built);
            }
            cargo(&["run", "--quiet", "-p", "e2e", "--bin", "orion-demo"])
        }
        Command::Up => {
            xtask::stack::up(&layout)?;
            Ok(0)
        }
        Command::Down => {
            xtask::stack::down(&layout)?;
            Ok(0)
        }
        Command::Provision { args } => {
            let mut full = vec!["provision"];
            full.extend(args.iter().map(String::as_str));
            orion_bus(&layout, &full)
        }
        Command::Fuzz {
            seconds,
            runs,
            jobs,
            sanitizer,
            targets,
        } => {
            let options = xtask::fuzz::Options {
                seconds,
                runs,
                jobs,
                targets,
                sanitizer,
            };
            let outcomes = xtask::fuzz::run(&layout, &options)?;
            let bad = outcomes.iter().filter(|o| o.failed).count();
            if bad > 0 {
                eprintln!("fuzz: {bad} target(s) crashed or failed; the inputs are in fuzz/artifacts/<target>/");
                return Ok(1);
            }
            Ok(0)
        }
        Command::Release => {
            let version = xtask::release::run(&layout)?;
            eprintln!("release: contract set {version} recorded in schemas/baseline/");
            Ok(0)
        }
    }
}

/// Runs the `orion-bus` command of the contracts crate (kept out of xtask so that xtask never
/// depends on the code it generates).
fn orion_bus(layout: &Layout, args: &[&str]) -> Result<i32> {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "-p",
            "contracts",
            "--features",
            "cli",
            "--bin",
            "orion-bus",
            "--",
        ])
        .args(args)
        .current_dir(&layout.root)
        .status()?;
    Ok(status.code().unwrap_or(1))
}

fn print_report(report: &xtask::check::Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        return Ok(());
    }
    for finding in &report.findings {
        eprintln!("{finding}\n");
    }
    eprintln!(
        "cargo xtask check: {} error(s), {} warning(s)",
        report.errors(),
        report.warnings()
    );
    Ok(())
}
