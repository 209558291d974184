//! The raw async-nats baseline shared by the services' throughput benches (included with
//! `#[path]`: benches of different crates share no library). No service code: what the
//! transport alone does with the same bytes.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use uuid::Uuid;

/// Raw async-nats: `payloads` in a stream, drained in batches of `batch`: pull, publish one
/// message of each of `replies` per input with a msg id (all sent, then all confirmed),
/// confirm-ack the batch. The baseline of a service that turns each input into `replies`.
pub async fn drain(
    js: &jetstream::Context,
    payloads: &[Vec<u8>],
    replies: &[Vec<u8>],
    batch: usize,
) -> Duration {
    for name in ["RAW_IN", "RAW_OUT"] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("bench.{}", name.to_lowercase())],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for chunk in payloads.chunks(256) {
        let mut acks = Vec::with_capacity(chunk.len());
        for payload in chunk {
            acks.push(
                js.publish_with_headers("bench.raw_in", msg_id(), payload.clone().into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let consumer = js
        .get_stream("RAW_IN")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("drain".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let start = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await
        .unwrap()
        .ready_chunks(batch);
    let mut done = 0;
    while done < payloads.len() {
        let chunk = messages.next().await.unwrap();
        let mut sent = Vec::with_capacity(chunk.len());
        for message in &chunk {
            message.as_ref().unwrap();
            for reply in replies {
                sent.push(
                    js.publish_with_headers("bench.raw_out", msg_id(), reply.clone().into())
                        .await
                        .unwrap(),
                );
            }
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

pub fn msg_id() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    headers
}
