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
const ACKS_IN_FLIGHT: usize = 64;

fn event(id: u64) -> Event {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/event/valid/full.json"
    ))
    .unwrap();
    let mut event: Event = contracts::decode(&bytes).unwrap();
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
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

    println!("\n-- JetStream publish, {PIPELINED_MESSAGES} messages, acks in flight --");
    for (round, window) in [64usize, 256, 1024].into_iter().enumerate() {
        let base = 10_000_000 * (round as u64 + 2);
        let raw_ids: Vec<Event> = (0..PIPELINED_MESSAGES).map(|i| event(base + i)).collect();
        let raw_payloads: Vec<Vec<u8>> = raw_ids.iter().map(|m| encode(m).unwrap()).collect();
        let typed: Vec<Event> = (0..PIPELINED_MESSAGES)
            .map(|i| event(base + 5_000_000 + i))
            .collect();
        purge(&js).await;
        let start = Instant::now();
        let mut acks: futures::stream::FuturesOrdered<
            <async_nats::jetstream::context::PublishAckFuture as std::future::IntoFuture>::IntoFuture,
        > = futures::stream::FuturesOrdered::new();
        for (message, payload) in raw_ids.iter().zip(&raw_payloads) {
            if acks.len() >= window {
                acks.next().await.unwrap().unwrap();
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", message.event_id.to_string().as_str());
            acks.push_back(std::future::IntoFuture::into_future(
                js.publish_with_headers(Event::INFO.subject, headers, payload.clone().into())
                    .await
                    .unwrap(),
            ));
        }
        while let Some(ack) = acks.next().await {
            ack.unwrap();
        }
        let raw = report(
            &format!("raw pipelined publish, {window} in flight"),
            PIPELINED_MESSAGES,
            start.elapsed(),
            None,
        );
        purge(&js).await;
        let start = Instant::now();
        let results = producer.publish_all(&typed, window).await;
        let took = start.elapsed();
        assert!(results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|p| !p.duplicate)));
        report(
            &format!("Bus::publish_all, {window} in flight"),
            PIPELINED_MESSAGES,
            took,
            Some(raw),
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
