//! Throughput of the typed bus next to raw async-nats doing the same work with the same bytes,
//! in the same run, against a real local nats-server (JetStream, file storage).
//!
//! Run: `cargo bench -p contracts --features bus,local-server --bench bus`.
//! Prints one line per case: messages per second and the ratio to its raw baseline.
//! Figures are in BENCHMARKS.md.

use std::time::{Duration, Instant};

use contracts::bus::{Bus, SubscribeOptions};
use contracts::local_server::NatsServer;
use contracts::services::{EventSource, Guardian};
use contracts::{encode, Contract, Event};
use futures::StreamExt;

const CORE_MESSAGES: u64 = 50_000;
const JETSTREAM_MESSAGES: u64 = 5_000;
const PIPELINED_MESSAGES: u64 = 20_000;
const PIPELINED_ROUNDS: usize = 5;
const ACKS_IN_FLIGHT: usize = 64;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn event(id: u64) -> Event {
    static TEMPLATE: std::sync::OnceLock<Event> = std::sync::OnceLock::new();
    let mut event = TEMPLATE
        .get_or_init(|| {
            let bytes = std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/event/valid/full.json"
            ))
            .unwrap();
            contracts::decode(&bytes).unwrap()
        })
        .clone();
    event.event_id = uuid::Uuid::from_u64_pair(0, id);
    event
}

fn report(case: &str, messages: u64, took: Duration, baseline: Option<f64>) -> f64 {
    let rate = messages as f64 / took.as_secs_f64();
    match baseline {
        Some(base) => println!(
            "{case:<48} {rate:>12.0} msg/s   {:>5.2}× of raw",
            rate / base
        ),
        None => println!("{case:<48} {rate:>12.0} msg/s   (baseline)"),
    }
    rate
}

async fn purge(js: &async_nats::jetstream::Context) {
    let mut stream = js.get_stream("ORION_EVENTS").await.unwrap();
    stream.purge().await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    let _ = js.delete_consumer_from_stream("raw", "ORION_EVENTS").await;
    let _ = js
        .delete_consumer_from_stream("guardian-event-v1", "ORION_EVENTS")
        .await;
}

/// What the bus adds per message in CPU before anything reaches the wire, next to what a raw
/// producer does: the bounds of the pipelined rows below on a machine whose other core runs
/// the server.
fn cpu_per_message() {
    const N: u32 = 20_000;
    let messages: Vec<Event> = (0..u64::from(N)).map(event).collect();
    let time = |case: &str, work: &dyn Fn(&Event)| {
        let start = Instant::now();
        for message in &messages {
            work(message);
        }
        println!(
            "{case:<48} {:>9.2} µs/msg",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
    };
    println!("-- CPU per message, {N} messages --");
    time("serde_json::to_vec (raw)", &|m| {
        std::hint::black_box(serde_json::to_vec(m).unwrap());
    });
    time("contracts::encode_keyed (validate + key)", &|m| {
        std::hint::black_box(contracts::encode_keyed(m).unwrap());
    });
    time("Nats-Msg-Id header (raw)", &|m| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", m.event_id.to_string().as_str());
        std::hint::black_box(headers);
    });
    time("traceparent (new trace)", &|_| {
        std::hint::black_box(contracts::bus::Trace::new_root().traceparent());
    });
}

/// What a raw pipelined publisher sends, from the least to all the bus does.
#[derive(Clone, Copy)]
enum Raw {
    /// The payload encoded beforehand (outside the timing), only `Nats-Msg-Id`.
    Minimal,
    /// The same, with every header the bus sends (`Orion-Contract`, `traceparent`).
    BusHeaders,
    /// The bus's headers, and each payload encoded and validated inline with
    /// `contracts::encode_keyed`, as the bus does: raw async-nats doing all the bus's work.
    BusWork,
}

/// Publishes `messages` with `window` acks in flight through raw async-nats, every ack
/// checked. Returns the time taken.
async fn raw_pipelined(
    js: &async_nats::jetstream::Context,
    messages: &[Event],
    window: usize,
    raw: Raw,
) -> Duration {
    let payloads: Vec<Vec<u8>> = messages.iter().map(|m| encode(m).unwrap()).collect();
    let traceparent = contracts::bus::Trace::new_root().traceparent();
    let start = Instant::now();
    let mut acks: futures::stream::FuturesOrdered<
        <async_nats::jetstream::context::PublishAckFuture as std::future::IntoFuture>::IntoFuture,
    > = futures::stream::FuturesOrdered::new();
    for (message, payload) in messages.iter().zip(&payloads) {
        if acks.len() >= window {
            acks.next().await.unwrap().unwrap();
        }
        let (payload, message_id) = match raw {
            Raw::BusWork => contracts::encode_keyed(message).unwrap(),
            Raw::Minimal | Raw::BusHeaders => (payload.clone(), message.event_id.to_string()),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id.as_str());
        if !matches!(raw, Raw::Minimal) {
            headers.insert(contracts::bus::CONTRACT_HEADER, Event::INFO.schema_id);
            headers.insert(contracts::bus::TRACEPARENT, traceparent.as_str());
        }
        acks.push_back(std::future::IntoFuture::into_future(
            js.publish_with_headers(Event::INFO.subject, headers, payload.into())
                .await
                .unwrap(),
        ));
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    cpu_per_message();
    let server = NatsServer::start().expect("nats-server");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    contracts::bus::provision_all(&js, 1).await.unwrap();
    let producer = Bus::<EventSource>::connect(server.bus_config::<EventSource>())
        .await
        .unwrap();
    let guardian = Bus::<Guardian>::connect(server.bus_config::<Guardian>())
        .await
        .unwrap();
    // Each JetStream phase uses its own ids: the server would drop repeats as duplicates.
    let messages: Vec<Event> = (0..JETSTREAM_MESSAGES.max(CORE_MESSAGES))
        .map(event)
        .collect();
    let payloads: Vec<Vec<u8>> = messages.iter().map(|m| encode(m).unwrap()).collect();
    let typed_messages: Vec<Event> = (0..JETSTREAM_MESSAGES)
        .map(|i| event(1_000_000 + i))
        .collect();
    println!(
        "payload: {} bytes (fixtures/event/valid/full.json)",
        payloads[0].len()
    );

    println!("\n-- core NATS publish, {CORE_MESSAGES} messages --");
    let start = Instant::now();
    for payload in &payloads[..CORE_MESSAGES as usize] {
        client
            .publish("bench.core", payload.clone().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let raw = report(
        "raw client.publish (same bytes)",
        CORE_MESSAGES,
        start.elapsed(),
        None,
    );
    let start = Instant::now();
    for message in &messages[..CORE_MESSAGES as usize] {
        client
            .publish("bench.core", encode(message).unwrap().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    report(
        "contracts::encode + client.publish",
        CORE_MESSAGES,
        start.elapsed(),
        Some(raw),
    );

    println!("\n-- JetStream publish, {JETSTREAM_MESSAGES} messages, waiting for each ack --");
    purge(&js).await;
    let start = Instant::now();
    for (message, payload) in messages
        .iter()
        .zip(&payloads)
        .take(JETSTREAM_MESSAGES as usize)
    {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.event_id.to_string().as_str());
        js.publish_with_headers(Event::INFO.subject, headers, payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let raw = report(
        "raw jetstream.publish + ack (same bytes, msg id)",
        JETSTREAM_MESSAGES,
        start.elapsed(),
        None,
    );
    purge(&js).await;
    let start = Instant::now();
    for message in &typed_messages {
        let published = producer.publish(message).await.unwrap();
        assert!(!published.duplicate);
    }
    report(
        "Bus::publish (validate + msg id + ack)",
        JETSTREAM_MESSAGES,
        start.elapsed(),
        Some(raw),
    );

    println!(
        "\n-- JetStream publish, {PIPELINED_MESSAGES} messages, acks in flight, median of {PIPELINED_ROUNDS} rounds --"
    );
    // Three raw baselines (see `Raw`), so the gap splits into what the bytes of our headers cost
    // the server, what encoding with validation costs, and what the bus's own machinery costs.
    // The cases take turns within each round (the order rotates), so a slow spell of this
    // 2-core machine falls on all of them; a ratio is the median of the rounds' ratios.
    const CASES: usize = 4;
    const RAW: [(Raw, &str); 3] = [
        (Raw::Minimal, "raw pipelined publish"),
        (Raw::BusHeaders, "  raw, with the bus's headers"),
        (
            Raw::BusWork,
            "  raw, with the bus's headers and encode_keyed",
        ),
    ];
    for window in [64usize, 256, 1024] {
        let mut rates: [Vec<f64>; CASES] = Default::default();
        for round in 0..PIPELINED_ROUNDS {
            for turn in 0..CASES {
                let case = (turn + round) % CASES;
                let first_id =
                    100_000_000 * (window as u64) + 1_000_000 * (CASES * round + case) as u64;
                let messages: Vec<Event> = (0..PIPELINED_MESSAGES)
                    .map(|i| event(first_id + i))
                    .collect();
                purge(&js).await;
                let took = match RAW.get(case) {
                    Some(&(raw, _)) => raw_pipelined(&js, &messages, window, raw).await,
                    None => {
                        let start = Instant::now();
                        let results = producer.publish_all(&messages, window).await;
                        let took = start.elapsed();
                        assert!(results
                            .iter()
                            .all(|r| r.as_ref().is_ok_and(|p| !p.duplicate)));
                        took
                    }
                };
                rates[case].push(PIPELINED_MESSAGES as f64 / took.as_secs_f64());
            }
        }
        let ours = &rates[CASES - 1];
        let ratio_to =
            |baseline: &[f64]| median(ours.iter().zip(baseline).map(|(o, b)| o / b).collect());
        for (case, (_, name)) in RAW.iter().enumerate() {
            println!(
                "{:<48} {:>12.0} msg/s   ours {:.2}× of it",
                if case == 0 {
                    format!("{name}, {window} in flight")
                } else {
                    name.to_string()
                },
                median(rates[case].clone()),
                ratio_to(&rates[case])
            );
        }
        println!(
            "{:<48} {:>12.0} msg/s",
            format!("Bus::publish_all, {window} in flight"),
            median(ours.clone())
        );
    }
    // The consume phases read a fresh 5,000; purging dropped guardian's durable: provision it
    // again (it starts at the first message the stream holds).
    purge(&js).await;
    contracts::bus::provision_all(&js, 1).await.unwrap();
    let refill: Vec<Event> = (0..JETSTREAM_MESSAGES)
        .map(|i| event(90_000_000 + i))
        .collect();
    assert!(producer
        .publish_all(&refill, 256)
        .await
        .iter()
        .all(Result::is_ok));

    println!("\n-- JetStream consume, {JETSTREAM_MESSAGES} messages, explicit ack --");
    let mut stream = js.get_stream("ORION_EVENTS").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        JETSTREAM_MESSAGES,
        "the consume phases read what was stored for them"
    );
    let config = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some("raw".into()),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    for (case, double) in [
        ("raw pull + ack (fire and forget)", false),
        ("raw pull + double_ack (confirmed)", true),
    ] {
        let _ = js.delete_consumer_from_stream("raw", "ORION_EVENTS").await;
        let consumer = stream.create_consumer(config.clone()).await.unwrap();
        let mut raw_messages = consumer
            .stream()
            .max_messages_per_batch(20)
            .messages()
            .await
            .unwrap();
        let start = Instant::now();
        for _ in 0..JETSTREAM_MESSAGES {
            let message = raw_messages.next().await.unwrap().unwrap();
            let _: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            if double {
                message.double_ack().await.unwrap();
            } else {
                message.ack().await.unwrap();
            }
        }
        let took = start.elapsed();
        if double {
            let raw = report(case, JETSTREAM_MESSAGES, took, None);
            let mut sub = guardian
                .subscribe::<Event>(SubscribeOptions::default())
                .await
                .unwrap();
            let start = Instant::now();
            for _ in 0..JETSTREAM_MESSAGES {
                sub.next().await.unwrap().unwrap().ack().await.unwrap();
            }
            report(
                "Bus::subscribe (decode + validate) + ack (confirmed)",
                JETSTREAM_MESSAGES,
                start.elapsed(),
                Some(raw),
            );
        } else {
            report(case, JETSTREAM_MESSAGES, took, None);
        }
    }

    println!(
        "\n-- JetStream consume, {JETSTREAM_MESSAGES} messages, {ACKS_IN_FLIGHT} confirmed acks in flight --"
    );
    let first_new = stream.info().await.unwrap().state.last_sequence + 1;
    let refill: Vec<Event> = (0..JETSTREAM_MESSAGES)
        .map(|i| event(95_000_000 + i))
        .collect();
    assert!(producer
        .publish_all(&refill, 256)
        .await
        .iter()
        .all(Result::is_ok));
    let _ = js.delete_consumer_from_stream("raw", "ORION_EVENTS").await;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first_new,
            },
            ..config.clone()
        })
        .await
        .unwrap();
    let mut raw_messages = consumer
        .stream()
        .max_messages_per_batch(100)
        .messages()
        .await
        .unwrap();
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..JETSTREAM_MESSAGES {
        let message = raw_messages.next().await.unwrap().unwrap();
        let _: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        acks.push(async move { message.double_ack().await });
        if acks.len() > ACKS_IN_FLIGHT {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
    let raw = report(
        "raw pull + double_ack, acks in flight",
        JETSTREAM_MESSAGES,
        start.elapsed(),
        None,
    );
    // guardian's durable goes on after the 5,000 it acknowledged: the refill.
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::batch(100))
        .await
        .unwrap();
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..JETSTREAM_MESSAGES {
        let delivery = sub.next().await.unwrap().unwrap();
        acks.push(delivery.ack());
        if acks.len() > ACKS_IN_FLIGHT {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
    report(
        "Bus::subscribe (decode + validate) + ack, in flight",
        JETSTREAM_MESSAGES,
        start.elapsed(),
        Some(raw),
    );
}
