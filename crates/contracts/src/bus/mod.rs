//! The typed bus: the one way a message gets on or off NATS JetStream.
//!
//! A service connects as its inventory identity ([`Bus::connect`]); it can then only
//! [`publish`](Bus::publish) the contracts it produces and [`subscribe`](Bus::subscribe) to the
//! ones it consumes — the compiler checks both against the inventory, and the NATS server checks
//! them again with the generated permissions.
//!
//! - Publish validates before a byte leaves, sets `Nats-Msg-Id` to the message's idempotency key
//!   (so the server drops duplicates) and waits for the JetStream ack.
//! - Subscribe binds a durable pull consumer with explicit acks and bounded redelivery; several
//!   instances of a service share it (each message goes to one of them). A payload that fails to
//!   parse or validate goes to `platform.dead_letter.v1` with the reason and the raw bytes, is
//!   terminated, and the consumer goes on.
//! - [`isolate`] runs a handler so that a panic in it does not take the service down: the
//!   message is handed back and, after its last allowed delivery, dead-lettered as
//!   `handler_panicked`; a handler that keeps failing naks, and its last nak dead-letters the
//!   message as `delivery_exhausted`. Either way the consumer goes on with the next message.
//! - The service registers as a NATS micro service (ping, info, stats per consumer).
//! - [`Bus::bucket`] opens a key-value bucket the service reads or writes as a typed
//!   [`BucketHandle`]: values are the generated types bound to the bucket's keys, validated on
//!   get and put, and only the bucket's writers have `put` (see `bucket.rs`).
//!
//! ```compile_fail
//! # async fn f(bus: contracts::bus::Bus<contracts::services::Guardian>, d: contracts::Decision) {
//! // guardian does not produce decisions: this does not compile.
//! bus.publish(&d).await;
//! # }
//! ```
//!
//! Not here: business logic, retries of a handler's own work (the caller naks with a delay).

mod at_most_once;
mod bucket;
mod claims;
mod config;
mod connection;
mod dead_letter;
mod error;
mod exhausted;
mod isolate;
mod objects;
mod provision;
mod publish;
mod reader;
mod records;
mod stats;
mod subscribe;
pub mod trace;

pub use crate::codec::idempotency_key;
pub use at_most_once::{serve, Admission, AtMostOnce, Held, Lost, Source, WhenLost};
pub use bucket::{BucketError, BucketErrorKind, BucketHandle, KeyChange};
pub use claims::{Claim, ClaimFenced, ClaimLog, ClaimRecord, Renewal};
pub use config::{BusConfig, DEFAULT_NATS_URL};
pub use connection::{Bus, MICRO_PREFIX};
pub use dead_letter::Rejection;
pub use error::{BusError, BusErrorKind, NatsError};
pub use exhausted::advisory_subject;
pub use isolate::{isolate, HandlerPanicked, Settleable};
pub use objects::{Objects, ObjectsError};
pub use provision::{
    provision_all, provision_consumer, seed_interlock, verify_provisioned, ConsumerSettings,
};
pub use publish::{Published, Sent, CONTRACT_HEADER};
pub use reader::{reader_name, ReadFrom, ReadMessage, Reader, TypedReader};
pub use records::{Entry, Records, RecordsError, RecordsErrorKind};
pub use stats::{ConsumerStats, StatsSnapshot};
pub use subscribe::{
    check_heartbeat_fits, CheckedSubscription, Delivery, Either, EitherSubscription, Incoming,
    InvalidDelivery, SubscribeOptions, Subscription,
};
pub use trace::{in_trace, Trace, TRACEPARENT};
