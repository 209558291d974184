//! Per-consumer counters, reported through the NATS micro-service stats of the service and, as
//! the same events, to Prometheus ([`crate::metrics`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::metrics;

/// Counters of one consumer.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// The durable consumer's name: the `consumer` label of its metrics.
    name: String,
    received: AtomicU64,
    acked: AtomicU64,
    naked: AtomicU64,
    terminated: AtomicU64,
    dead_lettered: AtomicU64,
    panicked: AtomicU64,
    processing_ns: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Deliveries handed to the service (valid messages).
    pub received: u64,
    /// Messages handled successfully.
    pub acked: u64,
    /// Messages handed back for redelivery (handler errors).
    pub naked: u64,
    /// Messages given up on by the handler.
    pub terminated: u64,
    /// Messages sent to the dead-letter subject (invalid, or out of deliveries).
    pub dead_lettered: u64,
    /// Deliveries whose handler panicked (caught by [`isolate`](super::isolate)).
    pub panicked: u64,
    /// Total handler time of acked messages, in nanoseconds.
    pub processing_ns: u64,
}

impl ConsumerStats {
    pub(super) fn received(&self, delivery_attempt: i64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        metrics::CONSUMER_RECEIVED.increment(&[&self.name]);
        if delivery_attempt > 1 {
            metrics::CONSUMER_REDELIVERED.increment(&[&self.name]);
        }
    }
    pub(super) fn acked(&self, took: Duration) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.processing_ns.fetch_add(nanos, Ordering::Relaxed);
        metrics::CONSUMER_ACKED.increment(&[&self.name]);
        metrics::CONSUMER_HANDLING.observe_duration(&[&self.name], took);
    }
    pub(super) fn naked(&self) {
        self.naked.fetch_add(1, Ordering::Relaxed);
        metrics::CONSUMER_NAKED.increment(&[&self.name]);
    }
    pub(super) fn terminated(&self) {
        self.terminated.fetch_add(1, Ordering::Relaxed);
        metrics::CONSUMER_TERMINATED.increment(&[&self.name]);
    }
    /// The Prometheus side is counted where dead letters are published (with their reason).
    pub(super) fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn panicked(&self) {
        self.panicked.fetch_add(1, Ordering::Relaxed);
        metrics::CONSUMER_PANICKED.increment(&[&self.name]);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            naked: self.naked.load(Ordering::Relaxed),
            terminated: self.terminated.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            panicked: self.panicked.load(Ordering::Relaxed),
            processing_ns: self.processing_ns.load(Ordering::Relaxed),
        }
    }
}

/// The counters of every consumer of one connection, by consumer (endpoint) name.
#[derive(Debug, Default)]
pub(super) struct StatsRegistry {
    consumers: Mutex<BTreeMap<String, Arc<ConsumerStats>>>,
}

impl StatsRegistry {
    pub fn consumer(&self, name: &str) -> Arc<ConsumerStats> {
        self.consumers
            .lock()
            .expect("stats registry poisoned")
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(ConsumerStats {
                    name: name.to_string(),
                    ..ConsumerStats::default()
                })
            })
            .clone()
    }

    pub fn snapshot_json(&self, name: &str) -> serde_json::Value {
        let snapshot = self
            .consumers
            .lock()
            .expect("stats registry poisoned")
            .get(name)
            .map(|c| c.snapshot())
            .unwrap_or_default();
        serde_json::to_value(snapshot).expect("counters serialize")
    }
}
