//! Reading what the broker holds, as the admin: one contract's stored messages with their
//! stream sequence, from where the last read stopped; and whether the platform is still busy.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::Context as JetStream;
use contracts::Contract;
use futures::StreamExt;

/// A stored message and its place in its stream (the order in which the server stored it).
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub seq: u64,
    pub message: T,
}

/// The messages of contract `T`, read in order, each read going on where the last stopped.
pub struct Tail<T> {
    js: JetStream,
    next: u64,
    idle: Duration,
    _contract: PhantomData<fn() -> T>,
}

impl<T: Contract> Tail<T> {
    /// Reads end when nothing arrives for `idle`.
    pub fn new(js: JetStream, idle: Duration) -> Self {
        Self {
            js,
            next: 1,
            idle,
            _contract: PhantomData,
        }
    }

    /// The messages stored since the last read. A message that breaks its contract is an
    /// error: every producer on the bus validates what it publishes. A read that fails part
    /// way returns the error and leaves the position where it was, so the next read delivers
    /// those messages again rather than skipping them.
    pub async fn read(&mut self) -> Result<Vec<Stored<T>>> {
        let from = self.next;
        let what = move || format!("reading {} from sequence {from}", T::INFO.subject);
        let consumer = self
            .js
            .get_stream(T::INFO.stream)
            .await
            .with_context(what)?
            .create_consumer(pull::OrderedConfig {
                filter_subject: T::INFO.subject.to_string(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.next,
                },
                ..Default::default()
            })
            .await
            .with_context(what)?;
        let mut messages = consumer.messages().await.with_context(what)?;
        let mut out = Vec::new();
        while let Ok(Some(message)) = tokio::time::timeout(self.idle, messages.next()).await {
            let message = message.with_context(what)?;
            let seq = message
                .info()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(what)?
                .stream_sequence;
            let decoded = contracts::decode::<T>(&message.payload)
                .with_context(|| format!("stored {} #{seq}", T::INFO.subject))?;
            out.push(Stored {
                seq,
                message: decoded,
            });
        }
        if let Some(last) = out.last() {
            self.next = last.seq + 1;
        }
        Ok(out)
    }
}

/// Every stored message of `T`, oldest first. A failed read is tried again a few times, each
/// with a short timeout: on a cluster that lost a node, creating the reader (an R1 consumer)
/// times out whenever the server places it on the lost peer.
pub async fn all<T: Contract>(js: &JetStream) -> Result<Vec<Stored<T>>> {
    let mut js = js.clone();
    js.set_timeout(Duration::from_secs(2));
    let mut attempt = 1;
    loop {
        let read = Tail::<T>::new(js.clone(), Duration::from_millis(500))
            .read()
            .await;
        match read {
            Err(e) if attempt < 20 => {
                println!("chaos: {e:#}; reading again");
                attempt += 1;
                // A pause between retries of a failed read, bounded by attempts (not by time:
                // each read's own timeout decides how long an attempt takes).
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            read => return read,
        }
    }
}

/// What is still moving: the durable consumers of `services` with messages waiting or
/// unacknowledged, and every stream's last sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub busy: Vec<String>,
    pub last_sequences: BTreeMap<&'static str, u64>,
}

impl Activity {
    pub async fn read(js: &JetStream, services: &[&str]) -> Result<Self> {
        let mut busy = Vec::new();
        for consumer in contracts::DURABLE_CONSUMERS
            .iter()
            .filter(|c| services.contains(&c.service))
        {
            let info = js
                .get_stream(consumer.stream)
                .await?
                .consumer_info(consumer.name)
                .await?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                busy.push(format!(
                    "{}: {} waiting, {} unacknowledged",
                    consumer.name, info.num_pending, info.num_ack_pending
                ));
            }
        }
        let mut last_sequences = BTreeMap::new();
        for stream in contracts::STREAMS {
            let mut handle = js.get_stream(stream.name).await?;
            last_sequences.insert(stream.name, handle.info().await?.state.last_sequence);
        }
        Ok(Self {
            busy,
            last_sequences,
        })
    }
}

/// Whether the platform has settled: on two looks in a row nothing is waiting or
/// unacknowledged and no stream grew in between.
#[derive(Default)]
pub struct Settled {
    previous: Option<Activity>,
    /// The last look, for a failure message.
    pub last: Option<Activity>,
}

impl Settled {
    pub async fn look(&mut self, js: &JetStream, services: &[&str]) -> bool {
        let Ok(now) = Activity::read(js, services).await else {
            self.previous = None;
            return false;
        };
        let settled = now.busy.is_empty() && self.previous.as_ref() == Some(&now);
        self.last = Some(now.clone());
        self.previous = Some(now);
        settled
    }
}
