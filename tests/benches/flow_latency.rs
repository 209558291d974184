//! Latency of the whole ORION flow for an action that does not touch Docker — event → guardian
//! → incident → brain → decision + action → commander → notification + outcome — with every
//! service as its own process, next to a raw NATS request/reply round trip on the same server in
//! the same run. Percentiles from an HDR histogram.
//!
//! Build the services optimized first, then run:
//! `cargo build --release --workspace --all-features --bins && cargo bench -p e2e --bench flow_latency`.
//! Figures are in BENCHMARKS.md.
//!
//! With `FLOW_TIMELINE=1`, the administrator also watches every subject (`>`: messages, key-value
//! writes, JetStream API calls, acknowledgements, replies) and the bench prints, for each step of
//! a flow in order, the median time since the event was emitted: where the flow's time goes.

use std::time::{Duration, Instant};

use contracts::bus::ReadFrom;
use contracts::services::ApprovalCli;
use contracts::Outcome;
use e2e::probe::Probe;
use e2e::stack::{Stack, StackOptions};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;

/// Flows measured; `FLOWS=N` measures N instead (a longer run, to profile).
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

    let timeline = std::env::var_os("FLOW_TIMELINE").is_some();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    if timeline {
        let mut everything = admin.subscribe(">").await?;
        tokio::spawn(async move {
            while let Some(message) = everything.next().await {
                let _ = seen_tx.send((Instant::now(), step_of(&message.subject)));
            }
        });
    }
    let mut steps: Vec<Steps> = Vec::new();

    // The flow: one outage per unique service, one outcome each.
    let probe = Probe::new(stack.bus().await?);
    let cli = stack.bus::<ApprovalCli>().await?;
    // approval-cli reads outcomes (an ordered reader); it has no durable of its own.
    let mut outcomes = cli.read::<Outcome>(ReadFrom::New).await?;
    let mut flow = Histogram::<u64>::new(3)?;
    let flows = std::env::var("FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(FLOWS);
    for i in 0..flows {
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
        if timeline {
            steps.push(drain_steps(&mut seen, start).await);
        }
    }

    println!("payload {} bytes; {flows} flows one after another; services built with the same profile as this bench", payload.len());
    print("raw NATS request/reply round trip (baseline)", &baseline);
    print("event → outcome (4 services, 7 messages)", &flow);
    println!(
        "ratio at p50: {:.1}× the raw round trip",
        flow.value_at_quantile(0.5) as f64 / baseline.value_at_quantile(0.5).max(1) as f64
    );
    if timeline {
        print_timeline(&steps);
        for service in ["guardian", "brain", "commander"] {
            let address = stack.metrics_address(service).await?;
            let body = tokio::task::spawn_blocking(move || {
                ureq::get(&format!("http://{address}/metrics"))
                    .call()
                    .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
            })
            .await??;
            print_means(service, &body)?;
        }
    }
    Ok(())
}

/// The steps of one flow: what was seen on the wire, µs after the event was emitted.
type Steps = Vec<(String, u64)>;

/// A subject with its per-message parts (inbox ids, consumer sequences) left out.
fn step_of(subject: &str) -> String {
    let parts: Vec<&str> = subject.split('.').collect();
    match parts.as_slice() {
        [inbox, ..] if inbox.starts_with("_INBOX") => "_INBOX (reply)".into(),
        ["$JS", "ACK", stream, consumer, ..] => format!("$JS.ACK.{stream}.{consumer}"),
        ["$JS", "API", rest @ ..] => {
            let kept: Vec<&str> = rest.iter().take(3).copied().collect();
            format!("$JS.API.{}", kept.join("."))
        }
        ["$KV", bucket, ..] => format!("$KV.{bucket}.…"),
        _ => parts.iter().take(3).copied().collect::<Vec<_>>().join("."),
    }
}

/// The steps seen since `start`, waiting briefly for the last of them to arrive.
async fn drain_steps(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
    start: Instant,
) -> Steps {
    let mut steps = Vec::new();
    while let Ok(Some((at, step))) =
        tokio::time::timeout(Duration::from_millis(20), seen.recv()).await
    {
        if at >= start {
            steps.push((step, at.duration_since(start).as_micros() as u64));
        }
    }
    steps
}

/// For the k-th step of the flows that took the most common sequence of steps, its median
/// time since the event was emitted.
fn print_timeline(flows: &[Steps]) {
    let mut shapes: std::collections::HashMap<Vec<&str>, Vec<&Steps>> = Default::default();
    for flow in flows {
        let shape = flow.iter().map(|(step, _)| step.as_str()).collect();
        shapes.entry(shape).or_default().push(flow);
    }
    let Some((shape, alike)) = shapes.iter().max_by_key(|(_, alike)| alike.len()) else {
        return;
    };
    println!(
        "timeline: {} of {} flows took this sequence of {} steps (median µs since the event)",
        alike.len(),
        flows.len(),
        shape.len()
    );
    let mut previous = 0;
    for (k, step) in shape.iter().enumerate() {
        let mut times: Vec<u64> = alike.iter().map(|flow| flow[k].1).collect();
        times.sort_unstable();
        let median = times[times.len() / 2];
        println!(
            "{k:>3} {median:>7} µs (+{:>5}) {step}",
            median.saturating_sub(previous)
        );
        previous = median;
    }
}

/// Mean handling and publishing times from a service's `/metrics` (its histograms' sums and
/// counts): how much of a hop is the service's own work.
fn print_means(service: &str, exposition: &str) -> anyhow::Result<()> {
    let lines = exposition.lines().map(|line| Ok(line.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines)?;
    // A histogram's `_sum` and `_count` series come out as plain samples of those names.
    let value_of = |name: &str, labels: &prometheus_parse::Labels| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && *s.labels == **labels)
            .and_then(|s| match s.value {
                prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    for sample in &scrape.samples {
        let Some(histogram) = sample.metric.strip_suffix("_seconds_sum") else {
            continue;
        };
        let count = value_of(&format!("{histogram}_seconds_count"), &sample.labels);
        if let (prometheus_parse::Value::Untyped(sum), Some(count)) = (&sample.value, count) {
            if count > 0.0 {
                println!(
                    "{service:<10} mean {:>8.1} µs over {count:>6} {histogram}_seconds{{{}}}",
                    sum / count * 1e6,
                    sample.labels
                );
            }
        }
    }
    Ok(())
}

fn bytes_of_event() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/event/valid/full.json"
    ))
    .expect("fixture")
}
