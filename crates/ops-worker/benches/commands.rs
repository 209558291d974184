//! Ops commands per second end to end through NATS — signed `arm` commands, which touch the
//! interlock bucket but not Docker — next to a raw JetStream round trip over the same server in
//! the same run (publish to a stream, a raw consumer answers on a second stream, the sender
//! reads the answer): the transport floor under the worker.
//!
//! Run: `cargo bench -p ops-worker --bench commands` (needs nats-server and a Docker engine,
//! which the worker connects to at start). Figures are in BENCHMARKS.md.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use contracts::bus::Bus;
use contracts::local_server::NatsServer;
use contracts::services::{OpsConsole, OpsWorker};
use contracts::{OpsReceipt, Timestamp};
use futures::StreamExt;
use ops_client::client::{build_signed, CommandRequest};
use ops_client::signing::SigningKeys;
use ops_worker::docker::{DockerConfig, Engine};
use ops_worker::executor::Executor;
use ops_worker::state::{command_log, Interlock};
use ops_worker::worker::{Worker, WorkerSettings};

const SEQUENTIAL: usize = 200;
const PIPELINED: usize = 1000;
const TEST_SECRET: &str = "test-ops-secret-32chars!!!!!!!!";

fn report(case: &str, count: usize, took: Duration, baseline: Option<f64>) -> f64 {
    let rate = count as f64 / took.as_secs_f64();
    let per = took.as_secs_f64() * 1000.0 / count as f64;
    match baseline {
        Some(base) => println!(
            "{case:<58} {rate:>9.0} /s  {per:>7.3} ms each  {:>5.2}× of raw",
            rate / base
        ),
        None => println!("{case:<58} {rate:>9.0} /s  {per:>7.3} ms each  (baseline)"),
    }
    rate
}

async fn raw_round_trips(
    js: &jetstream::Context,
    payload: &[u8],
    count: usize,
    pipelined: bool,
) -> Duration {
    for name in ["BENCH_IN", "BENCH_OUT"] {
        let _ = js.delete_stream(name).await;
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("bench.{}", name.to_lowercase())],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // The responder: what the worker does at the transport level, without any of its work.
    let responder = {
        let js = js.clone();
        let consumer = js
            .get_stream("BENCH_IN")
            .await
            .unwrap()
            .create_consumer(pull::Config {
                durable_name: Some("responder".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            while let Some(Ok(message)) = messages.next().await {
                js.publish("bench.bench_out", message.payload.clone())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                message.double_ack().await.unwrap();
            }
        })
    };
    let answers = js
        .get_stream("BENCH_OUT")
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut answers = answers.messages().await.unwrap();
    let start = Instant::now();
    if pipelined {
        for _ in 0..count {
            js.publish("bench.bench_in", payload.to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        for _ in 0..count {
            answers.next().await.unwrap().unwrap();
        }
    } else {
        for _ in 0..count {
            js.publish("bench.bench_in", payload.to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
            answers.next().await.unwrap().unwrap();
        }
    }
    let took = start.elapsed();
    responder.abort();
    took
}

async fn typed_round_trips(
    console: &Bus<OpsConsole>,
    keys: &SigningKeys,
    count: usize,
    pipelined: bool,
) -> Duration {
    // The console's own reader (the generated permissions let it open no other consumer).
    let mut receipts = console
        .read::<OpsReceipt>(contracts::bus::ReadFrom::New)
        .await
        .unwrap();
    let request = CommandRequest {
        command_type: contracts::generated::ops_command_v1::OpsCommandType::Arm,
        target: String::new(),
        params: None,
        initiator_id: "bench".into(),
        reason: "benchmark".into(),
    };
    let commands: Vec<_> = (0..count)
        .map(|_| build_signed(&request, keys).unwrap())
        .collect();
    let start = Instant::now();
    if pipelined {
        let mut wanted: HashSet<_> = commands.iter().map(|c| c.id).collect();
        for command in &commands {
            console.publish(command).await.unwrap();
        }
        wait_final(&mut receipts, &mut wanted).await;
    } else {
        for command in &commands {
            console.publish(command).await.unwrap();
            wait_final(&mut receipts, &mut HashSet::from([command.id])).await;
        }
    }
    start.elapsed()
}

/// Reads receipts until every command in `wanted` has its final one.
async fn wait_final(
    receipts: &mut contracts::bus::TypedReader<OpsReceipt>,
    wanted: &mut HashSet<uuid::Uuid>,
) {
    while !wanted.is_empty() {
        let (receipt, _) = receipts.next().await.unwrap().unwrap();
        if receipt.status == contracts::generated::ops_receipt_v1::OpsReceiptStatus::Pending {
            continue;
        }
        assert_eq!(
            receipt.status,
            contracts::generated::ops_receipt_v1::OpsReceiptStatus::Success,
            "{:?}",
            receipt.error
        );
        wanted.remove(&receipt.command_id);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start_with_auth().expect("nats-server");
    let admin = async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap();
    let admin_js = jetstream::new(admin);
    contracts::bus::provision_all(&admin_js, 1).await.unwrap();

    let keys = SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap();
    let worker_bus = Bus::<OpsWorker>::connect(server.bus_config::<OpsWorker>())
        .await
        .unwrap();
    let engine = Engine::connect(DockerConfig::new(["bench-target"]).unwrap())
        .await
        .expect("a Docker engine");
    let executor = Executor {
        engine,
        interlock: Interlock::open(&worker_bus).await.unwrap(),
        bus: worker_bus.clone(),
        stop_timeout: Duration::from_secs(1),
        deploy_ready_timeout: Duration::from_secs(10),
        evidence_log_lines: 10,
        evidence_receipts: 10,
    };
    let settings = WorkerSettings {
        keys: SigningKeys::new(&[TEST_SECRET.to_string()]).unwrap(),
        clock_skew: Duration::from_secs(300),
        ack_wait: Duration::from_secs(30),
        max_in_flight: 64,
        cancel_wait: Duration::from_secs(60),
        executor_id: "bench".into(),
    };
    let worker = Worker::new(
        worker_bus.clone(),
        executor,
        command_log(&worker_bus).await.unwrap(),
        ops_worker::control::ControlBoard::open(&worker_bus)
            .await
            .unwrap(),
        settings,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let console = Bus::<OpsConsole>::connect(server.bus_config::<OpsConsole>())
        .await
        .unwrap();

    let sample = build_signed(
        &CommandRequest {
            command_type: contracts::generated::ops_command_v1::OpsCommandType::Arm,
            target: String::new(),
            params: None,
            initiator_id: "bench".into(),
            reason: "benchmark".into(),
        },
        &keys,
    )
    .unwrap();
    let payload = contracts::encode(&sample).unwrap();
    println!(
        "command: {} bytes, `arm` (interlock bucket write, no Docker); {}",
        payload.len(),
        Timestamp::now()
    );

    // Warm up both paths once.
    raw_round_trips(&admin_js, &payload, 20, false).await;
    typed_round_trips(&console, &keys, 20, false).await;

    println!("\n-- one at a time: send, wait for the final receipt ({SEQUENTIAL}) --");
    let raw = report(
        "raw JetStream round trip (publish, consume, answer, read)",
        SEQUENTIAL,
        raw_round_trips(&admin_js, &payload, SEQUENTIAL, false).await,
        None,
    );
    report(
        "signed command → ops-worker → final receipt",
        SEQUENTIAL,
        typed_round_trips(&console, &keys, SEQUENTIAL, false).await,
        Some(raw),
    );

    println!("\n-- pipelined: send all, then wait for every final receipt ({PIPELINED}) --");
    let raw = report(
        "raw JetStream round trip (publish, consume, answer, read)",
        PIPELINED,
        raw_round_trips(&admin_js, &payload, PIPELINED, true).await,
        None,
    );
    report(
        "signed command → ops-worker → final receipt",
        PIPELINED,
        typed_round_trips(&console, &keys, PIPELINED, true).await,
        Some(raw),
    );

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
