//! Our decode next to the stacks we replace, on the same bytes in the same run: Zod 3 on Node
//! (the titan console's `OpsCommandSchemaV1`) and python-jsonschema (draft 2020-12, format
//! checks on), with plain `serde_json` as the floor.
//!
//! Run: `cargo bench -p contracts --bench anchors` (installs Zod into `bench/anchors/` with npm
//! when it is missing; needs `node`, and `python3` with `jsonschema` and `rfc3339-validator`).
//! Prints one row per message and decoder: the median time per message and how many times
//! faster ours is. Figures are in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use contracts::{Contract, Decision, OpsCommand};

const ROUNDS: usize = 21;
const ITERATIONS: usize = 20_000;
/// The anchors are slower; fewer iterations keep the run short with the same rounds.
const ANCHOR_ITERATIONS: usize = 2_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture as the bus sends it: compact JSON, exactly what every decoder here reads.
fn wire<T: Contract>(name: &str) -> Vec<u8> {
    let path = root()
        .join("fixtures")
        .join(T::INFO.name)
        .join("valid")
        .join(name);
    let message: T = contracts::decode(&std::fs::read(&path).unwrap()).unwrap();
    contracts::encode(&message).unwrap()
}

/// Median nanoseconds per call of `decode` over `ROUNDS` rounds.
fn median_ns(mut decode: impl FnMut() -> bool) -> f64 {
    let mut per_call: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                assert!(std::hint::black_box(decode()));
            }
            start.elapsed().as_nanos() as f64 / ITERATIONS as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[ROUNDS / 2]
}

/// Runs an anchor script that prints `{"median_ns": …}`.
fn anchor(program: &str, args: &[&str]) -> f64 {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{program} printed no result ({e})"));
    printed["median_ns"].as_f64().expect("a median")
}

/// python-jsonschema on `message` against the schema at `schema` (relative to the repository).
fn python_anchor(schema: &str, message: &Path, iterations: &str, rounds: &str) -> f64 {
    let script = root().join("bench/anchors/jsonschema_decode.py");
    let schema = root().join(schema);
    anchor(
        "python3",
        &[
            script.to_str().unwrap(),
            schema.to_str().unwrap(),
            message.to_str().unwrap(),
            iterations,
            rounds,
        ],
    )
}

fn install_zod(dir: &Path) {
    if dir.join("node_modules/zod").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .status()
        .expect("npm (Node 20) is needed for the Zod anchor");
    assert!(status.success(), "npm install of zod failed");
}

/// Our row and the plain-serde floor's, which ours is slower than.
fn ours_and_floor(message: &str, ours: f64, serde: f64) {
    row(message, "contracts::decode (ours)", ours, ours);
    println!(
        "{message:<34} {:<40} {:>9.2} µs   ours costs {:.2}× of it",
        "serde_json::from_slice (no validation)",
        serde / 1000.0,
        ours / serde
    );
}

fn row(message: &str, decoder: &str, ns: f64, ours: f64) {
    println!(
        "{message:<34} {decoder:<40} {:>9.2} µs   ours is {:>6.1}× faster",
        ns / 1000.0,
        ns / ours
    );
}

fn main() {
    let anchors = root().join("bench/anchors");
    install_zod(&anchors);
    let scratch = tempfile::tempdir().unwrap();

    let command = wire::<OpsCommand>("restart_with_timeout.json");
    let decision = wire::<Decision>("execute_safe_action_n2.json");
    let command_file = scratch.path().join("ops_command.json");
    let decision_file = scratch.path().join("decision.json");
    std::fs::write(&command_file, &command).unwrap();
    std::fs::write(&decision_file, &decision).unwrap();
    let iterations = ANCHOR_ITERATIONS.to_string();
    let rounds = ROUNDS.to_string();

    println!(
        "medians of {ROUNDS} rounds; ours and serde {ITERATIONS} calls a round, anchors {ANCHOR_ITERATIONS}\n"
    );
    let label = format!("ops_command restart ({} B)", command.len());
    let ours = median_ns(|| contracts::decode::<OpsCommand>(&command).is_ok());
    let serde = median_ns(|| serde_json::from_slice::<OpsCommand>(&command).is_ok());
    let zod = anchor(
        "node",
        &[
            anchors.join("zod_ops_command.mjs").to_str().unwrap(),
            command_file.to_str().unwrap(),
            &iterations,
            &rounds,
        ],
    );
    let python = python_anchor(
        "schemas/titan/ops_command.v1.schema.json",
        &command_file,
        &iterations,
        &rounds,
    );
    ours_and_floor(&label, ours, serde);
    row(&label, "Zod 3, Node 20 (JSON.parse + parse)", zod, ours);
    row(&label, "python-jsonschema 2020-12 + formats", python, ours);

    let label = format!("decision ({} B)", decision.len());
    let ours = median_ns(|| contracts::decode::<Decision>(&decision).is_ok());
    let serde = median_ns(|| serde_json::from_slice::<Decision>(&decision).is_ok());
    let python = python_anchor(
        "schemas/orion/decision.v1.schema.json",
        &decision_file,
        &iterations,
        &rounds,
    );
    ours_and_floor(&label, ours, serde);
    row(&label, "python-jsonschema 2020-12 + formats", python, ours);
}
