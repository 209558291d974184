//! Cost of verifying an ops command signature, split into its parts.
//!
//! For the SPEC §5 vector command and the largest signed fixture in
//! `fixtures/ops_command/valid/`:
//! - `raw HMAC over the same canonical bytes`: `ring::hmac::sign` over the pre-computed payload
//!   (the baseline: what the cryptography alone costs);
//! - `canonicalize only`: `signing_payload` on the parsed value (RFC 8785);
//! - `canonicalize + verify`: `SigningKeys::verify` on the parsed value;
//! - `parse + canonicalize + verify`: from the received bytes, as the worker does.
//!
//! Run with `cargo bench -p ops-worker --bench signing`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ops_client::signing::{signing_payload, SigningKeys};
use ring::hmac;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (label, raw bytes of a signed command)
fn commands(secret: &str) -> Vec<(String, Vec<u8>)> {
    let vector: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("fixtures/ops_signing/vector.json")).unwrap(),
    )
    .unwrap();
    let keys = SigningKeys::new(&[secret.to_owned()]).unwrap();
    let spec = serde_json::to_vec(&keys.signed(&vector["command"]).unwrap()).unwrap();

    let dir = repo_root().join("fixtures/ops_command/valid");
    let (largest_name, largest_bytes) = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .max_by_key(|(name, bytes)| (bytes.len(), name.clone()))
        .expect("no fixtures in fixtures/ops_command/valid");

    vec![
        ("spec_vector".to_owned(), spec),
        (
            format!("{largest_name} ({} bytes)", largest_bytes.len()),
            largest_bytes,
        ),
    ]
}

fn bench_signing(c: &mut Criterion) {
    let vector: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("fixtures/ops_signing/vector.json")).unwrap(),
    )
    .unwrap();
    let secret = vector["secret"].as_str().unwrap().to_owned();
    let keys = SigningKeys::new(std::slice::from_ref(&secret)).unwrap();
    let ring_key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());

    for (label, bytes) in commands(&secret) {
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(keys.verify(&value).unwrap(), 0, "{label} must verify");
        let payload = signing_payload(&value).unwrap();

        let mut group = c.benchmark_group(format!("signing/{label}"));
        group.bench_function("raw HMAC over the same canonical bytes", |b| {
            b.iter(|| hmac::sign(&ring_key, black_box(&payload)))
        });
        group.bench_function("canonicalize only", |b| {
            b.iter(|| signing_payload(black_box(&value)).unwrap())
        });
        group.bench_function("canonicalize + verify", |b| {
            b.iter(|| keys.verify(black_box(&value)).unwrap())
        });
        group.bench_function("parse + canonicalize + verify", |b| {
            b.iter(|| {
                let parsed: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
                keys.verify(&parsed).unwrap()
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_signing
}
criterion_main!(benches);
