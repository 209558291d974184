//! Correlation throughput, in process and through NATS, each next to a baseline measured in
//! the same run.
//!
//! In process (the pure engine: plan + commit + remember the id, as the service does):
//! - baseline: `contracts::decode::<Event>` of the same event bytes (what the bus does for
//!   every message before guardian sees it), and plain `serde_json::from_slice`;
//! - new incidents (threshold 1, every event a new group), growth (events joining open
//!   incidents), counting below a threshold (threshold 3), duplicates.
//!
//! Through NATS (a local nats-server with the generated permissions, guardian in process as the
//! `guardian` identity, events published as `event-source`):
//! - baseline: raw JetStream — publish the same event bytes to a stream, a raw pull consumer
//!   republishes each to a second stream and acks it (confirmed), the sender reads them back:
//!   the transport floor of "one message in, one message out";
//! - guardian: events published → incident versions consumed (threshold 1, so one version per
//!   event), the producer waiting for each event's acknowledgement (so bound by the producer);
//! - backlog: the events are in the stream before guardian starts, and the clock runs from its
//!   start until every version is read back: guardian's own sustained rate. Baseline in the same
//!   run: raw async-nats doing the same in batches of the same size — pull a batch, publish one
//!   message per input without waiting, confirm them, then confirm-ack the batch.
//!
//! Run: `cargo bench -p guardian --bench correlation` (needs nats-server on PATH).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use contracts::bus::Bus;
use contracts::local_server::NatsServer;
use contracts::services::{EventSource, Guardian as GuardianIdentity};
use contracts::{Event, Timestamp};
use futures::StreamExt;
use guardian::config::GuardianConfigFile;
use guardian::engine::{Engine, Limits, Step};
use serde_json::json;
use uuid::Uuid;

const RUNS: usize = 5;

fn config() -> guardian::GuardianConfig {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/guardian.toml"))
        .expect("the example config");
    let file: GuardianConfigFile = toml::from_str(&text).unwrap();
    file.validate().unwrap()
}

fn event(event_type: &str, data: serde_json::Value, offset_ms: i64) -> Event {
    let at = Timestamp::now().0 + time::Duration::milliseconds(offset_ms);
    contracts::decode_value(json!({
        "version": "1.0",
        "event_id": Uuid::new_v4(),
        "timestamp": Timestamp(at),
        "source": "orion-watcher",
        "event_type": event_type,
        "severity": "critical",
        "data": data,
    }))
    .unwrap()
}

fn service_down(service: usize, offset_ms: i64) -> Event {
    event(
        "service_down",
        json!({"service_name": format!("svc-{service}")}),
        offset_ms,
    )
}

fn metric(service: usize, offset_ms: i64) -> Event {
    event(
        "metric_threshold_exceeded",
        json!({"service_name": format!("svc-{service}"), "metric": "cpu", "value": 97}),
        offset_ms,
    )
}

/// What the service does per event when storing and publishing succeed.
fn handle(engine: &mut Engine, event: &Event, now: time::OffsetDateTime) -> usize {
    if engine.is_duplicate(&event.event_id) {
        engine.note_duplicate();
        return 0;
    }
    let plan = engine.plan_event(event, now);
    if plan.is_duplicate() {
        engine.note_duplicate();
    }
    let mut emitted = 0;
    for step in plan.steps {
        if let Step::Change(change) = step {
            emitted += usize::from(change.emit.is_some());
            let forget = change.forget.clone();
            remember(engine, &forget, now);
            for evicted in engine.commit(*change) {
                remember(engine, &evicted.event_ids, now);
            }
        }
    }
    if plan.remember {
        remember(engine, &[event.event_id], now);
    }
    emitted
}

fn remember(engine: &mut Engine, ids: &[Uuid], now: time::OffsetDateTime) {
    for write in engine.plan_seen_many(ids, now) {
        engine.commit_seen(write);
    }
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rates[rates.len() / 2]
}

fn report(case: &str, rate: f64, baseline: Option<f64>) {
    let per = 1e6 / rate;
    match baseline {
        Some(base) => println!(
            "{case:<62} {rate:>11.0} /s {per:>9.2} µs  {:>6.3}× of baseline",
            rate / base
        ),
        None => println!("{case:<62} {rate:>11.0} /s {per:>9.2} µs  (baseline)"),
    }
}

/// Events per second through the engine, median of RUNS fresh engines.
fn engine_rate(events: &[Event], prime: &[Event], limits: Limits) -> f64 {
    let rules = config().rules;
    median(
        (0..RUNS)
            .map(|_| {
                let mut engine = Engine::new(rules.clone(), limits);
                let now = time::OffsetDateTime::now_utc();
                for event in prime {
                    handle(&mut engine, event, now);
                }
                let start = Instant::now();
                for event in events {
                    std::hint::black_box(handle(&mut engine, event, now));
                }
                events.len() as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn in_process() {
    const N: usize = 50_000;
    println!("\n== in process: the pure engine (median of {RUNS} runs, {N} events) ==");
    let opening: Vec<Event> = (0..N).map(|n| service_down(n, 0)).collect();
    let bytes: Vec<Vec<u8>> = opening
        .iter()
        .map(|e| contracts::encode(e).unwrap())
        .collect();
    let decode = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                for b in &bytes {
                    std::hint::black_box(contracts::decode::<Event>(b).unwrap());
                }
                N as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    report(
        "baseline: contracts::decode::<Event> of the same bytes",
        decode,
        None,
    );
    let serde = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                for b in &bytes {
                    std::hint::black_box(serde_json::from_slice::<Event>(b).unwrap());
                }
                N as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    report("plain serde_json::from_slice::<Event>", serde, Some(decode));

    let limits = Limits {
        max_groups: N + 10,
        max_seen_event_ids: 4 * N,
        ..Limits::default()
    };
    report(
        "engine: new incident per event (threshold 1, 50k groups)",
        engine_rate(&opening, &[], limits),
        Some(decode),
    );
    // 100 open incidents, each event joins one (incidents reach 500 listed ids).
    let prime: Vec<Event> = (0..100).map(|s| service_down(s, 0)).collect();
    let growing: Vec<Event> = (0..N).map(|n| service_down(n % 100, n as i64)).collect();
    report(
        "engine: event joins an open incident (100 incidents)",
        engine_rate(&growing, &prime, limits),
        Some(decode),
    );
    // Small incidents: 10 000 open incidents, 5 events each.
    let prime: Vec<Event> = (0..10_000).map(|s| service_down(s, 0)).collect();
    let small: Vec<Event> = (0..N).map(|n| service_down(n % 10_000, n as i64)).collect();
    report(
        "engine: event joins an open incident (10k incidents, ≤6 events)",
        engine_rate(&small, &prime, limits),
        Some(decode),
    );
    // Threshold 3: mostly counting, every third event of a group opens an incident.
    let counting: Vec<Event> = (0..N).map(|n| metric(n / 3, n as i64)).collect();
    report(
        "engine: metric threshold 3 (count, count, open)",
        engine_rate(&counting, &[], limits),
        Some(decode),
    );
    report(
        "engine: duplicate event ids (all seen before)",
        engine_rate(&growing, &growing, limits),
        Some(decode),
    );
    let bounded = Limits {
        max_groups: 1000,
        max_seen_event_ids: 10_000,
        ..Limits::default()
    };
    report(
        "engine: 50k distinct groups through max_groups = 1000 (evicting)",
        engine_rate(&opening, &[], bounded),
        Some(decode),
    );
}

async fn admin(server: &NatsServer) -> jetstream::Context {
    jetstream::new(
        async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), server.password("admin").unwrap().into())
            .connect(server.url())
            .await
            .unwrap(),
    )
}

/// Two file-storage streams `<prefix>_IN_<run>` and `<prefix>_OUT_<run>`: their names, then their
/// subjects.
async fn in_and_out(
    js: &jetstream::Context,
    prefix: &str,
    run: usize,
) -> (String, String, String, String) {
    let (input, output) = (format!("{prefix}_IN_{run}"), format!("{prefix}_OUT_{run}"));
    for name in [&input, &output] {
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("bench.{}", name.to_lowercase())],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let in_subject = format!("bench.{}", input.to_lowercase());
    let out_subject = format!("bench.{}", output.to_lowercase());
    (input, output, in_subject, out_subject)
}

/// Raw JetStream: publish N payloads, a responder republishes each and acks it (confirmed),
/// the sender reads N answers.
async fn raw_round_trips(js: &jetstream::Context, payloads: &[Vec<u8>], run: usize) -> Duration {
    let (input, output, in_subject, out_subject) = in_and_out(js, "BENCH", run).await;
    let responder = {
        let js = js.clone();
        let consumer = js
            .get_stream(&input)
            .await
            .unwrap()
            .create_consumer(pull::Config {
                durable_name: Some("responder".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let out_subject = out_subject.clone();
        tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            while let Some(Ok(message)) = messages.next().await {
                js.publish(out_subject.clone(), message.payload.clone())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                message.double_ack().await.unwrap();
            }
        })
    };
    let answers = js
        .get_stream(&output)
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut answers = answers.messages().await.unwrap();
    let start = Instant::now();
    for payload in payloads {
        js.publish(in_subject.clone(), payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for _ in payloads {
        answers.next().await.unwrap().unwrap();
    }
    let took = start.elapsed();
    responder.abort();
    took
}

/// Runs a guardian instance in process (it takes every partition at once, being alone) until
/// the sender is used.
fn run_guardian(
    bus: &Bus<GuardianIdentity>,
    config: &guardian::GuardianConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), guardian::service::ServiceError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bus = bus.clone();
    let config = config.clone();
    let running = tokio::spawn(async move {
        guardian::instance::run(bus, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    (stop, running)
}

/// Events published as event-source → incident versions read back, guardian in process.
async fn guardian_round_trips(
    server: &NatsServer,
    producer: &Bus<EventSource>,
    js: &jetstream::Context,
    events: &[Event],
) -> Duration {
    let config = config();
    let bus = Bus::<GuardianIdentity>::connect(server.bus_config::<GuardianIdentity>())
        .await
        .unwrap();
    bus.verify_provisioned().await.unwrap();
    let (stop, running) = run_guardian(&bus, &config);
    let mut versions = new_versions(js).await;
    let start = Instant::now();
    for event in events {
        producer.publish(event).await.unwrap();
    }
    read_versions(&mut versions, events.len()).await;
    let took = start.elapsed();
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    bus.close().await.unwrap();
    took
}

/// Publishes `payloads` to `subject`, 256 in flight at a time (the client bounds the acks it
/// waits for).
async fn load(js: &jetstream::Context, subject: &str, payloads: &[Vec<u8>]) {
    for chunk in payloads.chunks(256) {
        let mut acks = Vec::with_capacity(chunk.len());
        for payload in chunk {
            acks.push(
                js.publish(subject.to_owned(), payload.clone().into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
}

/// Raw JetStream draining a backlog in batches: pull up to `batch`, republish each (all sent,
/// then all confirmed), confirm-ack them all; the floor of guardian's batched loop.
async fn raw_backlog(
    js: &jetstream::Context,
    payloads: &[Vec<u8>],
    run: usize,
    batch: usize,
) -> Duration {
    let (input, _, in_subject, out_subject) = in_and_out(js, "BACKLOG", run).await;
    load(js, &in_subject, payloads).await;
    let consumer = js
        .get_stream(&input)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("drain".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await
        .unwrap()
        .ready_chunks(batch);
    let start = Instant::now();
    let mut done = 0;
    while done < payloads.len() {
        let chunk = messages.next().await.unwrap();
        let mut sent = Vec::with_capacity(chunk.len());
        for message in &chunk {
            let message = message.as_ref().unwrap();
            sent.push(
                js.publish(out_subject.clone(), message.payload.clone())
                    .await
                    .unwrap(),
            );
        }
        for ack in sent {
            ack.await.unwrap();
        }
        let confirmations = chunk
            .iter()
            .map(|message| message.as_ref().unwrap().double_ack());
        for confirmed in futures::future::join_all(confirmations).await {
            confirmed.unwrap();
        }
        done += chunk.len();
    }
    start.elapsed()
}

/// What delivering every event to `consumers` durables costs the server (as guardian's
/// partitions each get every event): the backlog is loaded, then each durable pulls it in
/// batches of `batch` and acknowledges every message (unconfirmed, as guardian does), all
/// durables at once; the clock stops when the last one has every message.
async fn raw_fan_out(
    js: &jetstream::Context,
    payloads: &[Vec<u8>],
    run: usize,
    batch: usize,
    consumers: usize,
) -> Duration {
    let (input, _, in_subject, _) = in_and_out(js, &format!("FANOUT{consumers}"), run).await;
    load(js, &in_subject, payloads).await;
    let stream = js.get_stream(&input).await.unwrap();
    let mut pulls = Vec::new();
    for n in 0..consumers {
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("fan{n}")),
                ..Default::default()
            })
            .await
            .unwrap();
        pulls.push(
            consumer
                .stream()
                .max_messages_per_batch(batch)
                .messages()
                .await
                .unwrap(),
        );
    }
    let count = payloads.len();
    let start = Instant::now();
    let drains = pulls.into_iter().map(|mut messages| async move {
        for _ in 0..count {
            let message = messages.next().await.unwrap().unwrap();
            message.ack().await.unwrap();
        }
    });
    futures::future::join_all(drains).await;
    start.elapsed()
}

/// Raw key-value writes to a bucket configured as `guardian_state` (history 1, file storage):
/// `count` puts of `size` bytes over `keys` keys, `batch` in flight at a time. What one of
/// guardian's batches costs the server, without guardian.
async fn raw_puts(
    js: &jetstream::Context,
    run: usize,
    size: usize,
    keys: usize,
    count: usize,
    batch: usize,
) -> Duration {
    let name = format!("bench_{run}_{size}");
    js.create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .unwrap();
    let kv = js.get_key_value(&name).await.unwrap();
    let value = vec![b'x'; size];
    let start = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(batch) {
        let puts = chunk
            .iter()
            .map(|n| kv.put(format!("group.{}", n % keys), value.clone().into()));
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
    }
    start.elapsed()
}

/// Reads `count` incident versions, each within 60 s.
async fn read_versions(versions: &mut pull::Ordered, count: usize) {
    for _ in 0..count {
        tokio::time::timeout(Duration::from_secs(60), versions.next())
            .await
            .expect("an incident version within 60 s")
            .unwrap()
            .unwrap();
    }
}

/// `count` service_down events over 500 services numbered from `first` (each growing to
/// count / 500 events), and their bytes.
fn growing_outages(count: usize, first: usize) -> (Vec<Event>, Vec<Vec<u8>>) {
    let events: Vec<Event> = (0..count)
        .map(|n| service_down(first + n % 500, n as i64))
        .collect();
    let payloads = events
        .iter()
        .map(|e| contracts::encode(e).unwrap())
        .collect();
    (events, payloads)
}

/// The incident versions published from now on.
async fn new_versions(js: &jetstream::Context) -> pull::Ordered {
    js.get_stream("ORION_INCIDENTS")
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig {
            filter_subject: "orion.incident.v1".into(),
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap()
        .messages()
        .await
        .unwrap()
}

/// guardian draining a backlog: the events are stored before it starts; from the end of its
/// start (state restored) until every incident version is read back.
async fn guardian_backlog(
    server: &NatsServer,
    producer: &Bus<EventSource>,
    js: &jetstream::Context,
    events: &[Event],
) -> Duration {
    for result in producer.publish_all(events, 256).await {
        result.unwrap();
    }
    let config = config();
    let bus = Bus::<GuardianIdentity>::connect(server.bus_config::<GuardianIdentity>())
        .await
        .unwrap();
    let mut versions = new_versions(js).await;
    let start = Instant::now();
    let (stop, running) = run_guardian(&bus, &config);
    read_versions(&mut versions, events.len()).await;
    let took = start.elapsed();
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    bus.close().await.unwrap();
    took
}

/// `instances` guardians in this process, each on its own connection, sharing the partitions
/// evenly before the clock starts; then `events` are published (256 acks in flight) and the
/// clock stops when every incident version is read back.
async fn guardian_instances(
    server: &NatsServer,
    producer: &Bus<EventSource>,
    js: &jetstream::Context,
    events: &[Event],
    instances: usize,
) -> Duration {
    let mut config = config();
    // Short leases, so that a newcomer gets its share within a second or two.
    config.lease_ttl = Duration::from_secs(2);
    let mut running = Vec::new();
    for _ in 0..instances {
        let bus = Bus::<GuardianIdentity>::connect(server.bus_config::<GuardianIdentity>())
            .await
            .unwrap();
        let (stop, task) = run_guardian(&bus, &config);
        running.push((bus, stop, task));
    }
    wait_for_even_share(js, instances).await;
    let mut versions = new_versions(js).await;
    let start = Instant::now();
    for result in producer.publish_all(events, 256).await {
        result.unwrap();
    }
    read_versions(&mut versions, events.len()).await;
    let took = start.elapsed();
    for (bus, stop, task) in running {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
        bus.close().await.unwrap();
    }
    took
}

/// Waits until every partition's lease is held, in equal shares, by as many distinct holders
/// as there can be (`instances`, at most one per partition: with one partition the others
/// stand by).
async fn wait_for_even_share(js: &jetstream::Context, instances: usize) {
    let kv = js.get_key_value("guardian_state").await.unwrap();
    let partitions = guardian::partition::Partition::all().count();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut holders: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        for partition in guardian::partition::Partition::all() {
            if let Ok(Some(holder)) = kv.get(partition.lease_key()).await {
                *holders.entry(holder.to_vec()).or_default() += 1;
            }
        }
        let held: usize = holders.values().sum();
        let sharing = instances.min(partitions);
        if held == partitions
            && holders.len() == sharing
            && holders.values().all(|&n| n == partitions / sharing)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {instances} instances did not share the {partitions} partitions within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn through_nats() {
    const N: usize = 2_000;
    const SERVICES: usize = 50;
    println!(
        "\n== through NATS: {} (file storage), median of 3 runs, {N} events ==",
        nats_version()
    );
    let server = NatsServer::start_with_auth().expect("nats-server on PATH");
    let js = admin(&server).await;
    contracts::bus::provision_all(&js, 1).await.unwrap();
    let producer = Bus::<EventSource>::connect(server.bus_config::<EventSource>())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut typed = Vec::new();
    for run in 0..3 {
        // Distinct services per run: each run opens 50 incidents and grows them to 40 events.
        let events: Vec<Event> = (0..N)
            .map(|n| service_down(run * 1000 + n % SERVICES, n as i64))
            .collect();
        let payloads: Vec<Vec<u8>> = events
            .iter()
            .map(|e| contracts::encode(e).unwrap())
            .collect();
        raw.push(N as f64 / raw_round_trips(&js, &payloads, run).await.as_secs_f64());
        typed.push(
            N as f64
                / guardian_round_trips(&server, &producer, &js, &events)
                    .await
                    .as_secs_f64(),
        );
    }
    let raw = median(raw);
    report(
        "baseline: raw JetStream publish → consume+ack+republish → read",
        raw,
        None,
    );
    report(
        "guardian: Bus::publish(event) → incident version read back",
        median(typed),
        Some(raw),
    );

    const BACKLOG: usize = 20_000;
    println!("\n== a backlog of {BACKLOG} events (file storage), median of 3 runs ==");
    let batch = config().consumer.batch;
    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for run in 0..3 {
        // 500 services a run, each growing to 40 events (every event a version).
        let (events, payloads) = growing_outages(BACKLOG, 10_000 + run * 1000);
        raw.push(BACKLOG as f64 / raw_backlog(&js, &payloads, run, batch).await.as_secs_f64());
        ours.push(
            BACKLOG as f64
                / guardian_backlog(&server, &producer, &js, &events)
                    .await
                    .as_secs_f64(),
        );
    }
    let raw = median(raw);
    report(
        &format!("baseline: raw async-nats, batches of {batch}: pull, republish, confirm, ack"),
        raw,
        None,
    );
    report(
        "guardian: backlog → every incident version read back",
        median(ours),
        Some(raw),
    );
    for consumers in [1, 4] {
        let mut rates = Vec::new();
        for run in 0..3 {
            let (_, payloads) = growing_outages(BACKLOG, 50_000 + run * 1000);
            let took = raw_fan_out(&js, &payloads, run, batch, consumers).await;
            rates.push(BACKLOG as f64 / took.as_secs_f64());
        }
        report(
            &format!("raw: every event to {consumers} durable(s), pulled and acked"),
            median(rates),
            Some(raw),
        );
    }
    println!(
        "\n== 1 → 2 instances: {BACKLOG} events published (256 acks in flight) while guardian consumes, median of 3 runs =="
    );
    let mut by_instances = Vec::new();
    for instances in [1, 2] {
        let mut rates = Vec::new();
        for run in 0..3 {
            let events: Vec<Event> = (0..BACKLOG)
                .map(|n| service_down(100_000 * instances + run * 1000 + n % 500, n as i64))
                .collect();
            let took = guardian_instances(&server, &producer, &js, &events, instances).await;
            rates.push(BACKLOG as f64 / took.as_secs_f64());
        }
        by_instances.push(median(rates));
    }
    let partitions = guardian::partition::Partition::all().count();
    report(
        &format!("guardian, 1 instance ({partitions} partition(s))"),
        by_instances[0],
        Some(raw),
    );
    report(
        &format!("guardian, 2 instances ({partitions} partition(s) shared)"),
        by_instances[1],
        Some(raw),
    );
    println!(
        "  2 instances vs 1: {:.2}×",
        by_instances[1] / by_instances[0]
    );
    // The bucket writes alone, as guardian makes them (one per group a batch changes).
    for size in [500, 6_000] {
        let mut rates = Vec::new();
        for run in 0..3 {
            let took = raw_puts(&js, run, size, 500, BACKLOG, batch).await;
            rates.push(BACKLOG as f64 / took.as_secs_f64());
        }
        report(
            &format!("raw key-value puts, {size} B over 500 keys, {batch} in flight"),
            median(rates),
            Some(raw),
        );
    }
}

fn nats_version() -> String {
    std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    // `RUST_LOG=guardian=info cargo bench …` shows what guardian does during the runs.
    if std::env::var_os("RUST_LOG").is_some() {
        contracts::runtime::init_tracing(contracts::runtime::LogFormat::Text);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    in_process();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(through_nats());
}
