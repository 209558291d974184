//! Latency of the whole ORION flow for an action that does not touch Docker — event → guardian
//! → incident → brain → decision + action → commander → notification + outcome — with every
//! service as its own process, next to a raw NATS request/reply round trip on the same server in
//! the same run. Percentiles from an HDR histogram.
//!
//! Build the services optimized first, then run:
//! `cargo build --release --workspace --all-features --bins && cargo bench -p e2e --bench flow_latency`.
//! Figures are in BENCHMARKS.md.

use std::time::{Duration, Instant};

use contracts::bus::ReadFrom;
use contracts::services::ApprovalCli;
use contracts::Outcome;
use e2e::probe::Probe;
use e2e::stack::{Stack, StackOptions};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;

const FLOWS: usize = 200;
const ROUND_TRIPS: usize = 2000;

fn print(case: &str, histogram: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{case:<44} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  (n={})",
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.90)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max()),
        histogram.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let stack = Stack::start(StackOptions {
        dir: dir.path().to_path_buf(),
        allowlist: vec!["unused".into()],
        guardian_config: std::fs::read_to_string(root.join("../crates/guardian/guardian.toml"))?,
        brain_policy: std::fs::read_to_string(root.join("config/latency-policy.toml"))?,
        admin_identity: "bench".into(),
        receipt_timeout_s: 10,
    })
    .await?;

    // Baseline: a raw core NATS request/reply round trip on the same server.
    let admin = async_nats::ConnectOptions::new()
        .user_and_password(
            "admin".into(),
            stack.server.password("admin").unwrap().into(),
        )
        .connect(stack.server.url())
        .await?;
    let mut echo = admin.subscribe("bench.echo").await?;
    let responder = admin.clone();
    tokio::spawn(async move {
        while let Some(request) = echo.next().await {
            if let Some(reply) = request.reply {
                let _ = responder.publish(reply, request.payload).await;
            }
        }
    });
    let payload = bytes_of_event();
    let mut baseline = Histogram::<u64>::new(3)?;
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        admin.request("bench.echo", payload.clone().into()).await?;
        baseline.record(start.elapsed().as_micros() as u64)?;
    }

    // The flow: one outage per unique service, one outcome each.
    let probe = Probe::new(stack.bus().await?);
    let cli = stack.bus::<ApprovalCli>().await?;
    // approval-cli reads outcomes (an ordered reader); it has no durable of its own.
    let mut outcomes = cli.read::<Outcome>(ReadFrom::New).await?;
    let mut flow = Histogram::<u64>::new(3)?;
    for i in 0..FLOWS {
        let start = Instant::now();
        probe
            .emit(
                "service_down",
                "critical",
                json!({"service_name": format!("svc-{i}")}),
            )
            .await?;
        let (outcome, _) = tokio::time::timeout(Duration::from_secs(30), outcomes.next())
            .await
            .map_err(|_| anyhow::anyhow!("no outcome within 30 s:\n{}", stack.logs()))?
            .expect("reader open")?;
        flow.record(start.elapsed().as_micros() as u64)?;
        assert_eq!(outcome.status.to_string(), "succeeded");
    }

    println!("payload {} bytes; {FLOWS} flows one after another; services built with the same profile as this bench", payload.len());
    print("raw NATS request/reply round trip (baseline)", &baseline);
    print("event → outcome (4 services, 7 messages)", &flow);
    println!(
        "ratio at p50: {:.1}× the raw round trip",
        flow.value_at_quantile(0.5) as f64 / baseline.value_at_quantile(0.5).max(1) as f64
    );
    Ok(())
}

fn bytes_of_event() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/event/valid/full.json"
    ))
    .expect("fixture")
}
