//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` for a given time each and reports,
//! per target, the inputs executed, the corpus size and the crashes found.
//!
//! The targets build with libFuzzer's instrumentation flags, which need a nightly compiler; the
//! machine has only stable, so `cargo fuzz` runs with `RUSTC_BOOTSTRAP=1` (the stable compiler
//! then accepts the `-Z` flags cargo-fuzz passes) and `--sanitizer none` by default: the code
//! under test is safe Rust, where AddressSanitizer would find little that a panic does not
//! (`--sanitizer address` is passed through but untried on this toolchain). Each target's corpus lives in `fuzz/corpus/<target>/` and grows from run to
//! run; the seeds (fixtures, the example configurations) are written into it before each run.
//! Crashing inputs land in `fuzz/artifacts/<target>/`, libFuzzer's output in
//! `fuzz/logs/<target>.log`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::inventory::{ContractSet, Layout};

/// Every fuzz target, in the order they run.
pub const TARGETS: &[&str] = &["decode", "ops_signature", "brain_policy", "guardian_rules"];

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds per target (libFuzzer `-max_total_time`).
    pub seconds: u64,
    /// Stop a target after this many inputs, if it gets there first (libFuzzer `-runs`).
    pub runs: Option<u64>,
    /// Targets run at the same time.
    pub jobs: usize,
    /// The targets to run; empty: all of [`TARGETS`].
    pub targets: Vec<String>,
    /// `none` (default) or a sanitizer cargo-fuzz knows (`address`, …).
    pub sanitizer: String,
}

/// How one target's run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub target: String,
    /// Inputs executed (`stat::number_of_executed_units`, else the last `#N` line).
    pub executed: Option<u64>,
    /// Inputs in the corpus at the end (the last `corp: N/…` figure).
    pub corpus: Option<u64>,
    /// Average inputs per second (`stat::average_exec_per_sec`).
    pub per_second: Option<u64>,
    /// Inputs libFuzzer wrote because they crashed, timed out or ran out of memory.
    pub crashes: Vec<String>,
    /// Wall-clock seconds the run took.
    pub seconds: u64,
    /// Whether libFuzzer (or cargo fuzz) exited with an error.
    pub failed: bool,
    pub log: PathBuf,
}

/// Reads libFuzzer's output: the figures of the final lines and the artifacts written.
pub fn parse_output(text: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.executed = n.trim().parse().ok();
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            outcome.per_second = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix('#') {
            // `#1234\tNEW    cov: … corp: 56/7Kb …`, `#1234\tDONE …`
            let count = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            if outcome.executed.is_none() || line.contains("DONE") {
                outcome.executed = count.or(outcome.executed);
            }
            if let Some(corp) = line.split("corp: ").nth(1) {
                outcome.corpus = corp.split('/').next().and_then(|n| n.parse().ok());
            }
        } else if line.starts_with("Done ") && line.contains(" runs in ") {
            // `Done 1000000 runs in 30 second(s)`
            let count = line.split_whitespace().nth(1).and_then(|n| n.parse().ok());
            outcome.executed = outcome.executed.or(count);
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            outcome.crashes.push(path.trim().to_string());
        }
    }
    outcome
}

/// Installs cargo-fuzz unless `cargo fuzz` already answers.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let answers = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if answers {
        return Ok(());
    }
    eprintln!("fuzz: cargo-fuzz is missing, installing it (cargo install cargo-fuzz --locked)");
    let status = Command::new(env!("CARGO"))
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

/// `cargo fuzz <subcommand>` with the flags every invocation shares.
fn cargo_fuzz(layout: &Layout, subcommand: &str, sanitizer: &str) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["fuzz", subcommand, "--sanitizer", sanitizer])
        // The only toolchain is stable: let it accept the `-Z` flags cargo-fuzz passes.
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(layout.root.join("fuzz"));
    command
}

/// Writes each target's seeds into `fuzz/corpus/<target>/` (as `seed-…` files, overwritten on
/// every run so that fixture changes reach the corpus).
pub fn write_seeds(layout: &Layout, target: &str) -> Result<usize> {
    let corpus = layout.root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    match target {
        "decode" => {
            // The first byte picks the contract by its position in the inventory, which is the
            // order of `contracts::CONTRACTS`.
            let set = ContractSet::load(&layout.schemas_dir())?;
            for (index, entry) in set.inventory.contracts.iter().enumerate() {
                let pick = u8::try_from(index).context("more than 256 contracts")?;
                for (name, bytes) in json_files(&layout.root.join("fixtures").join(&entry.name))? {
                    let mut input = vec![pick];
                    input.extend(bytes);
                    seeds.push((format!("{}-{name}", entry.name), input));
                }
            }
        }
        "ops_signature" => {
            seeds.extend(json_files(&layout.root.join("fixtures/ops_command"))?);
            let vector = std::fs::read(layout.root.join("fixtures/ops_signing/vector.json"))?;
            let vector: serde_json::Value = serde_json::from_slice(&vector)?;
            seeds.push((
                "vector-command".into(),
                serde_json::to_vec(&vector["command"])?,
            ));
        }
        "brain_policy" => {
            let path = layout.root.join("crates/brain/policy.toml");
            seeds.push(("policy.toml".into(), std::fs::read(&path)?));
        }
        "guardian_rules" => {
            let path = layout.root.join("crates/guardian/guardian.toml");
            seeds.push(("guardian.toml".into(), std::fs::read(&path)?));
        }
        other => bail!("unknown fuzz target {other:?}: the targets are {TARGETS:?}"),
    }
    for (name, bytes) in &seeds {
        let file = format!("seed-{}", name.replace('/', "-"));
        std::fs::write(corpus.join(file), bytes)?;
    }
    Ok(seeds.len())
}

/// Every `*.json` below `dir` (valid and invalid fixtures), named by its path below `dir`.
fn json_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.strip_prefix(dir)?.to_string_lossy().into_owned();
            files.push((name, std::fs::read(path)?));
        }
    }
    Ok(files)
}

/// Runs one target and reads its output.
fn run_target(layout: &Layout, options: &Options, target: &str) -> Result<Outcome> {
    let fuzz_dir = layout.root.join("fuzz");
    let logs = fuzz_dir.join("logs");
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(&artifacts)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut command = cargo_fuzz(layout, "run", &options.sanitizer);
    command
        .arg(target)
        .arg(fuzz_dir.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={}", options.seconds))
        .arg("-print_final_stats=1")
        // An input that takes 10 s is a hang worth reporting.
        .arg("-timeout=10")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(runs) = options.runs {
        command.arg(format!("-runs={runs}"));
    }
    let started = Instant::now();
    let status = command
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let text = std::fs::read_to_string(&log_path)?;
    let mut outcome = parse_output(&text);
    outcome.target = target.to_string();
    outcome.seconds = started.elapsed().as_secs();
    outcome.failed = !status.success();
    outcome.log = log_path;
    Ok(outcome)
}

/// Builds every target, then runs them, `options.jobs` at a time, and prints the figures.
/// Returns the outcomes; a target that crashed or failed has `failed` set.
pub fn run(layout: &Layout, options: &Options) -> Result<Vec<Outcome>> {
    let targets: Vec<String> = if options.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        options.targets.clone()
    };
    for target in &targets {
        if !TARGETS.contains(&target.as_str()) {
            bail!("unknown fuzz target {target:?}: the targets are {TARGETS:?}");
        }
    }
    ensure_cargo_fuzz()?;
    for target in &targets {
        let seeds = write_seeds(layout, target)?;
        eprintln!("fuzz: {target}: {seeds} seed input(s) in fuzz/corpus/{target}/");
    }
    eprintln!(
        "fuzz: building the targets (cargo fuzz build --sanitizer {})",
        options.sanitizer
    );
    let built = cargo_fuzz(layout, "build", &options.sanitizer)
        .status()
        .context("running cargo fuzz build")?;
    if !built.success() {
        bail!("cargo fuzz build failed ({built})");
    }
    let queue = Mutex::new(targets.iter());
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| loop {
                let Some(target) = queue.lock().unwrap().next() else {
                    return;
                };
                eprintln!(
                    "fuzz: {target}: running for {}{} (log: fuzz/logs/{target}.log)",
                    human(Duration::from_secs(options.seconds)),
                    options
                        .runs
                        .map(|r| format!(" or {r} inputs"))
                        .unwrap_or_default()
                );
                let outcome = run_target(layout, options, target);
                if let Ok(outcome) = &outcome {
                    eprintln!("fuzz: {}", summary_line(outcome));
                }
                outcomes.lock().unwrap().push((target.clone(), outcome));
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|(target, _)| targets.iter().position(|t| t == target));
    let outcomes = outcomes
        .into_iter()
        .map(|(target, outcome)| outcome.with_context(|| format!("fuzz target {target}")))
        .collect::<Result<Vec<_>>>()?;
    println!("{}", table(&outcomes));
    Ok(outcomes)
}

fn human(duration: Duration) -> String {
    let s = duration.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_string(), |v| v.to_string())
}

fn summary_line(o: &Outcome) -> String {
    let verdict = if !o.crashes.is_empty() {
        format!("CRASH: {}", o.crashes.join(", "))
    } else if o.failed {
        format!("FAILED (see {})", o.log.display())
    } else {
        "no crash".to_string()
    };
    format!(
        "{}: {} inputs in {} s ({} /s), corpus {}: {verdict}",
        o.target,
        figure(o.executed),
        o.seconds,
        figure(o.per_second),
        figure(o.corpus)
    )
}

/// The figures of every target as a Markdown table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| target | inputs run | duration (s) | inputs/s | corpus | crashes |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for o in outcomes {
        let crashes = if o.failed && o.crashes.is_empty() {
            "run failed".to_string()
        } else {
            o.crashes.len().to_string()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            o.target,
            figure(o.executed),
            o.seconds,
            figure(o.per_second),
            figure(o.corpus),
            crashes
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DONE: &str = "\
INFO: Seed: 1234
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb
#848959\tREDUCE cov: 10531 ft: 20287 corp: 1626/421Kb lim: 1170 exec/s: 33958 rss: 78Mb L: 168/1059 MS: 2 ChangeASCIIInt-EraseBytes-
#1000000\tDONE   cov: 10555 ft: 20451 corp: 1686/428Kb lim: 1310 exec/s: 36558 rss: 78Mb
Done 1000000 runs in 28 second(s)
stat::number_of_executed_units: 1000000
stat::average_exec_per_sec:     36565
stat::new_units_added:          6944
";

    #[test]
    fn reads_the_figures_of_a_finished_run() {
        let o = parse_output(DONE);
        assert_eq!(o.executed, Some(1_000_000));
        assert_eq!(o.corpus, Some(1686));
        assert_eq!(o.per_second, Some(36565));
        assert!(o.crashes.is_empty());
    }

    #[test]
    fn reads_the_artifact_of_a_crash() {
        let text = "\
#1023694\tREDUCE cov: 10555 ft: 20451 corp: 1686/428Kb lim: 1310 exec/s: 36560 rss: 78Mb
thread '<unnamed>' panicked at fuzz_targets/decode.rs:20:19:
==29889== ERROR: libFuzzer: deadly signal
artifact_prefix='/w/fuzz/artifacts/decode/'; Test unit written to /w/fuzz/artifacts/decode/crash-9e13
stat::number_of_executed_units: 1023835
stat::average_exec_per_sec:     36565
";
        let o = parse_output(text);
        assert_eq!(o.executed, Some(1_023_835));
        assert_eq!(o.corpus, Some(1686));
        assert_eq!(
            o.crashes,
            vec!["/w/fuzz/artifacts/decode/crash-9e13".to_string()]
        );
    }

    #[test]
    fn without_final_stats_the_last_count_is_taken() {
        let o =
            parse_output("#10\tNEW cov: 1 ft: 1 corp: 3/9b\n#20\tDONE cov: 1 ft: 1 corp: 4/9b\n");
        assert_eq!((o.executed, o.corpus), (Some(20), Some(4)));
    }
}
