//! encode / decode / validate of every contract, each next to plain serde_json doing the same
//! serialization or parse without validation, in the same run.
//!
//! Run: `cargo bench -p contracts --bench codec`. The message of each contract is the largest
//! valid fixture in `fixtures/<contract>/valid/`. Figures are in BENCHMARKS.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use contracts::Contract;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

fn bench_contract<T: Contract>(c: &mut Criterion) {
    let name = T::INFO.name;
    let bytes = largest_valid_fixture(name);
    let typed: T = contracts::decode(&bytes).expect("the fixture is valid");
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde_json::to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&typed)).unwrap())
    });
    // What `encode` builds before validating: the floor of any encode that validates a `Value`.
    group.bench_function("serde_json::to_value", |b| {
        b.iter(|| serde_json::to_value(black_box(&typed)).unwrap())
    });
    group.bench_function("contracts::encode", |b| {
        b.iter(|| contracts::encode(black_box(&typed)).unwrap())
    });
    group.bench_function("serde_json::from_slice", |b| {
        b.iter(|| serde_json::from_slice::<T>(black_box(&bytes)).unwrap())
    });
    group.bench_function("contracts::decode", |b| {
        b.iter(|| contracts::decode::<T>(black_box(&bytes)).unwrap())
    });
    group.bench_function("validate", |b| {
        b.iter(|| T::validator().validate(black_box(&value)).unwrap())
    });
    group.finish();
}

fn all_contracts(c: &mut Criterion) {
    use contracts::*;
    type Bench = fn(&mut Criterion);
    let benches: &[(&str, Bench)] = &[
        ("event", bench_contract::<Event>),
        ("incident", bench_contract::<Incident>),
        ("decision", bench_contract::<Decision>),
        ("action", bench_contract::<Action>),
        ("approval_request", bench_contract::<ApprovalRequest>),
        ("approval_decision", bench_contract::<ApprovalDecision>),
        ("approval", bench_contract::<Approval>),
        ("outcome", bench_contract::<Outcome>),
        ("ops_command", bench_contract::<OpsCommand>),
        ("ops_receipt", bench_contract::<OpsReceipt>),
        ("dead_letter", bench_contract::<DeadLetter>),
        ("notification", bench_contract::<Notification>),
        (
            "incident_acknowledgement",
            bench_contract::<IncidentAcknowledgement>,
        ),
        ("silence", bench_contract::<Silence>),
    ];
    for info in CONTRACTS {
        assert!(
            benches.iter().any(|(name, _)| *name == info.name),
            "contract {} has no benchmark",
            info.name
        );
    }
    for (_, bench) in benches {
        bench(c);
    }
}

criterion_group! {
    name = codec;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = all_contracts
}
criterion_main!(codec);
