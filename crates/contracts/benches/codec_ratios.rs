//! `encode` and `decode` of every contract as a ratio to plain serde_json, measured in
//! alternating rounds: each round times serde, then ours, on the same message, and the figure is
//! the median of the rounds' ratios (with the quartiles). The reference paths
//! (`decode_reference`, `encode_reference`: parse to a `Value`, validate, deserialize; build the
//! `Value`, validate, serialize — what `decode` and `encode` were before their fast paths, and
//! what still decides every refusal) are measured in the same rounds.
//!
//! Why next to `benches/codec.rs`: criterion measures each function in its own window, so on a
//! machine shared with other work a change of load between two windows shows up as a change of
//! ratio. Alternating short rounds put both sides under the same load. Run:
//! `cargo bench -p contracts --bench codec_ratios`. Figures are in BENCHMARKS.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use contracts::Contract;

const ROUNDS: usize = 41;
const CALLS: usize = 3_000;

fn largest_valid_fixture(contract: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(contract)
        .join("valid");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .max_by_key(Vec::len)
        .unwrap_or_else(|| panic!("no valid fixture in {}", dir.display()))
}

/// Nanoseconds per call of `f`, over `CALLS` calls.
fn per_call(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS {
        f();
    }
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

/// Median and quartiles of `ratios`.
fn spread(mut ratios: Vec<f64>) -> (f64, f64, f64) {
    ratios.sort_by(f64::total_cmp);
    let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    (at(2), at(1), at(3))
}

fn bench_contract<T: Contract>() -> (f64, f64) {
    let bytes = largest_valid_fixture(T::INFO.name);
    let typed: T = contracts::decode(&bytes).expect("the fixture is valid");
    let (mut decode_ref, mut encode_ref) = (Vec::new(), Vec::new());
    let (mut decode, mut encode) = (Vec::new(), Vec::new());
    let (mut decode_ns, mut encode_ns) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let serde = per_call(|| {
            black_box(serde_json::from_slice::<T>(black_box(&bytes)).unwrap());
        });
        let ours = per_call(|| {
            black_box(contracts::decode::<T>(black_box(&bytes)).unwrap());
        });
        decode.push(ours / serde);
        decode_ns.push(ours);
        let reference = per_call(|| {
            black_box(contracts::decode_reference::<T>(black_box(&bytes)).unwrap());
        });
        decode_ref.push(reference / serde);
        let serde = per_call(|| {
            black_box(serde_json::to_vec(black_box(&typed)).unwrap());
        });
        let ours = per_call(|| {
            black_box(contracts::encode(black_box(&typed)).unwrap());
        });
        encode.push(ours / serde);
        encode_ns.push(ours);
        let reference = per_call(|| {
            black_box(contracts::encode_reference(black_box(&typed)).unwrap());
        });
        encode_ref.push(reference / serde);
    }
    let (d, d1, d3) = spread(decode);
    let (e, e1, e3) = spread(encode);
    println!(
        "{:<26} decode {:>5.2}× ({d1:.2}–{d3:.2}, {:>5.2} µs; reference {:>5.2}×)   encode {:>5.2}× ({e1:.2}–{e3:.2}, {:>5.2} µs; reference {:>5.2}×)",
        T::INFO.name,
        d,
        spread(decode_ns).0 / 1000.0,
        spread(decode_ref).0,
        e,
        spread(encode_ns).0 / 1000.0,
        spread(encode_ref).0,
    );
    (d, e)
}

fn main() {
    use contracts::*;
    println!("ours / plain serde_json, median of {ROUNDS} alternating rounds of {CALLS} calls (quartiles, our median time)\n");
    let results = [
        bench_contract::<Event>(),
        bench_contract::<Incident>(),
        bench_contract::<Decision>(),
        bench_contract::<Action>(),
        bench_contract::<ApprovalRequest>(),
        bench_contract::<ApprovalDecision>(),
        bench_contract::<Approval>(),
        bench_contract::<Outcome>(),
        bench_contract::<OpsCommand>(),
        bench_contract::<OpsReceipt>(),
        bench_contract::<DeadLetter>(),
        bench_contract::<Notification>(),
        bench_contract::<IncidentAcknowledgement>(),
        bench_contract::<Silence>(),
    ];
    assert_eq!(results.len(), CONTRACTS.len(), "a contract has no ratio");
    let geomean = |pick: fn(&(f64, f64)) -> f64| {
        (results.iter().map(|r| pick(r).ln()).sum::<f64>() / results.len() as f64).exp()
    };
    println!(
        "\ngeometric mean: decode {:.2}×, encode {:.2}×",
        geomean(|r| r.0),
        geomean(|r| r.1)
    );
}
