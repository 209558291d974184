//! Durable, validated consumption: typed deliveries with explicit ack, nak and reject.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::{Stream, StreamExt};

use super::connection::{Inner, MICRO_PREFIX};
use super::dead_letter::{self, Origin, Rejection};
use super::stats::ConsumerStats;
use super::{Bus, BusError, NatsError};
use crate::generated::dead_letter_v1::DeadLetterReasonCode;
use crate::{Consumes, Contract, DeadLetter, Produces, Service};

/// How long one pull request waits on the server. A pull request that reaches no consumer leader
/// (during an election after a node stops) is lost without an answer; async-nats' default of 30 s
/// would stall the consumer that long, this bounds the stall to a few seconds.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Idle heartbeat the server sends while a pull request waits (at most half of
/// [`PULL_EXPIRES`]); two missed ones make async-nats issue a new pull request.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// How this instance pulls from its durable consumer. The consumer's server-side settings
/// (max deliveries, ack wait, max ack pending) are provisioned from the inventory, not chosen
/// here; [`Subscription::ack_wait`] tells what they are.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Messages one instance pulls at a time. Smaller spreads work more evenly across
    /// instances; larger is faster for a single instance.
    pub batch: usize,
    /// Which partition's durable to bind, for a service whose work is partitioned
    /// (`partitions` in the inventory; [`crate::Service::PARTITIONS`] > 1). It must be `None`
    /// for a service that is not partitioned and `Some(index)` for one that is.
    pub partition: Option<u32>,
}

impl SubscribeOptions {
    /// Pulls `batch` messages at a time from the service's one durable of the contract.
    pub fn batch(batch: usize) -> Self {
        Self {
            batch,
            partition: None,
        }
    }

    /// The same, binding partition `index`'s durable (see [`SubscribeOptions::partition`]).
    pub fn in_partition(self, index: u32) -> Self {
        Self {
            partition: Some(index),
            ..self
        }
    }
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::batch(20)
    }
}

/// A service that reports progress every `own_ack_wait / 3` must not use an ack wait longer
/// than the one its consumer was provisioned with, or the server redelivers work still running.
pub fn check_heartbeat_fits(
    consumer: &str,
    own_ack_wait: Duration,
    provisioned: Duration,
) -> Result<(), BusError> {
    if own_ack_wait > provisioned {
        return Err(BusError::NotProvisioned {
            what: format!("consumer `{consumer}`"),
            problem: format!(
                "waits {provisioned:?} for an ack, shorter than this service's ack_wait of \
                 {own_ack_wait:?} (lower the service's setting, or provision the consumer with a \
                 longer ack_wait_s in the inventory)"
            ),
        });
    }
    Ok(())
}

/// What one consumer needs to ack, reject and count.
struct ConsumerContext {
    inner: Arc<Inner>,
    consumer: String,
    stream: &'static str,
    max_deliver: i64,
    ack_wait: Duration,
    stats: Arc<ConsumerStats>,
    /// Dead-letters what the server gave up delivering with no answer; lives as long as the
    /// subscription and its deliveries.
    _exhausted: super::exhausted::ExhaustedWatch,
}

type DeliveryStream<T> = Pin<Box<dyn Stream<Item = Result<Delivery<T>, BusError>> + Send>>;

/// The deliveries of one durable consumer. Invalid payloads never come out of it: they are
/// dead-lettered on the way.
pub struct Subscription<S, T> {
    deliveries: DeliveryStream<T>,
    consumer: String,
    ack_wait: Duration,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Bus<S> {
    /// Binds (creating if needed) the durable consumer of `T` for this service and returns its
    /// validated deliveries; invalid payloads are dead-lettered on the way.
    pub async fn subscribe<T: Contract + Send + 'static>(
        &self,
        options: SubscribeOptions,
    ) -> Result<Subscription<S, T>, BusError>
    where
        S: Consumes<T> + Produces<DeadLetter>,
    {
        let (messages, context) = self.bind::<T>(&options).await?;
        let consumer = context.consumer.clone();
        let ack_wait = context.ack_wait;
        let deliveries =
            futures::stream::unfold((messages, context), |(mut messages, context)| async move {
                let item = next_delivery::<T>(&mut messages, &context).await?;
                Some((item, (messages, context)))
            });
        Ok(Subscription {
            deliveries: Box::pin(deliveries),
            consumer,
            ack_wait,
            _service: PhantomData,
        })
    }

    /// Like [`Bus::subscribe`], but hands invalid payloads to the caller too, for services that
    /// must answer them (ops-worker sends a failure receipt when it can read the command id).
    /// The caller settles each [`InvalidDelivery`] with `reject` (dead letter) or `settle`.
    pub async fn subscribe_checked<T: Contract + Send + 'static>(
        &self,
        options: SubscribeOptions,
    ) -> Result<CheckedSubscription<S, T>, BusError>
    where
        S: Consumes<T> + Produces<DeadLetter>,
    {
        let (messages, context) = self.bind::<T>(&options).await?;
        let consumer = context.consumer.clone();
        let ack_wait = context.ack_wait;
        let incoming =
            futures::stream::unfold((messages, context), |(mut messages, context)| async move {
                let item = next_incoming::<T>(&mut messages, &context).await?;
                Some((item, (messages, context)))
            });
        Ok(CheckedSubscription {
            incoming: Box::pin(incoming),
            consumer,
            ack_wait,
            _service: PhantomData,
        })
    }

    /// Binds this service's provisioned durable consumer of `T` (checking it is set up as the
    /// inventory says) and starts pulling.
    async fn bind<T: Contract>(
        &self,
        options: &SubscribeOptions,
    ) -> Result<(pull::Stream, Arc<ConsumerContext>), BusError> {
        let info = T::INFO;
        let declared = crate::DURABLE_CONSUMERS
            .iter()
            .find(|c| {
                c.service == S::NAME
                    && c.filter_subject == info.subject
                    && c.partition == options.partition
            })
            .ok_or_else(|| {
                let which = match (options.partition, S::PARTITIONS) {
                    (None, 1) => String::new(),
                    (None, n) => format!(
                        " without a partition (`{}` is split into {n}: choose one, 0 to {})",
                        S::NAME,
                        n - 1
                    ),
                    (Some(p), 1) => {
                        format!(" for partition {p} (`{}` is not partitioned)", S::NAME)
                    }
                    (Some(p), n) => format!(" for partition {p} (`{}` has {n})", S::NAME),
                };
                BusError::Config(format!(
                    "the inventory declares no durable consumer of `{}` for `{}`{which}",
                    info.subject,
                    S::NAME
                ))
            })?;
        let jetstream_error =
            |what: String, source: NatsError| BusError::JetStream { what, source };
        let consumer = super::provision::verify_consumer(&self.inner.jetstream, declared).await?;
        let consumer_name = declared.name.to_string();
        let server_config = &consumer.cached_info().config;
        let (max_deliver, ack_wait) = (server_config.max_deliver, server_config.ack_wait);
        let messages = consumer
            .stream()
            .max_messages_per_batch(options.batch.max(1))
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| {
                jetstream_error(format!("messages of consumer `{consumer_name}`"), e.into())
            })?;

        let stats = self.inner.stats.consumer(&consumer_name);
        self.serve_status_endpoint(&consumer_name, stats.clone())
            .await?;
        let exhausted = super::exhausted::watch(
            self.inner.clone(),
            super::exhausted::Consumer {
                service: S::NAME,
                name: consumer_name.clone(),
                stream: info.stream,
                subject: info.subject,
            },
        )
        .await?;
        let context = Arc::new(ConsumerContext {
            inner: self.inner.clone(),
            consumer: consumer_name,
            stream: info.stream,
            max_deliver,
            ack_wait,
            stats,
            _exhausted: exhausted,
        });
        Ok((messages, context))
    }

    /// Subscribes to two contracts at once — typically both major versions of one contract
    /// during a transition, or a deprecated contract and its replacement — and interleaves them.
    pub async fn subscribe_either<A, B>(
        &self,
        first: SubscribeOptions,
        second: SubscribeOptions,
    ) -> Result<EitherSubscription<S, A, B>, BusError>
    where
        A: Contract + Send + 'static,
        B: Contract + Send + 'static,
        S: Consumes<A> + Consumes<B> + Produces<DeadLetter>,
    {
        let a = self.subscribe::<A>(first).await?;
        let b = self.subscribe::<B>(second).await?;
        let merged = futures::stream::select(
            a.deliveries.map(|r| r.map(Either::First)),
            b.deliveries.map(|r| r.map(Either::Second)),
        );
        Ok(EitherSubscription {
            deliveries: Box::pin(merged),
            _service: PhantomData,
        })
    }

    /// Answers `orion.micro.<service>.<consumer>` with the consumer's counters, as an endpoint
    /// of the service's NATS micro registration (its stats carry the same counters).
    async fn serve_status_endpoint(
        &self,
        consumer: &str,
        stats: Arc<ConsumerStats>,
    ) -> Result<(), BusError> {
        let subject = format!("{MICRO_PREFIX}.{}.{consumer}", S::NAME);
        let mut endpoint = self
            .inner
            .micro
            .endpoint_builder()
            .name(consumer)
            .add(subject.clone())
            .await
            .map_err(|e| BusError::JetStream {
                what: format!("micro endpoint `{subject}`"),
                source: NatsError::other(e),
            })?;
        tokio::spawn(async move {
            while let Some(request) = endpoint.next().await {
                let body = serde_json::to_vec(&stats.snapshot()).expect("counters serialize");
                if let Err(e) = request.respond(Ok(body.into())).await {
                    tracing::debug!(error = %e, "could not answer a status request");
                }
            }
        });
        Ok(())
    }
}

/// The next message of the consumer, decoded: a valid delivery, or an invalid one with its error.
async fn next_incoming<T: Contract>(
    messages: &mut pull::Stream,
    context: &Arc<ConsumerContext>,
) -> Option<Result<Incoming<T>, BusError>> {
    let message = match messages.next().await? {
        Ok(message) => message,
        Err(e) => {
            return Some(Err(BusError::Consume {
                subject: T::INFO.subject.to_string(),
                source: e.into(),
            }))
        }
    };
    let (stream_sequence, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(_) => (0, 1),
    };
    let raw = RawDelivery {
        message,
        stream_sequence,
        delivered,
        received_at: Instant::now(),
        context: context.clone(),
        settled: Arc::new(AtomicBool::new(false)),
    };
    Some(Ok(match crate::decode::<T>(&raw.message.payload) {
        Ok(decoded) => {
            context.stats.received(delivered);
            Incoming::Valid(Delivery {
                message: decoded,
                raw,
            })
        }
        Err(error) => Incoming::Invalid(InvalidDelivery { error, raw }),
    }))
}

/// Pulls until a valid message arrives, dead-lettering invalid ones on the way.
async fn next_delivery<T: Contract>(
    messages: &mut pull::Stream,
    context: &Arc<ConsumerContext>,
) -> Option<Result<Delivery<T>, BusError>> {
    loop {
        match next_incoming::<T>(messages, context).await? {
            Err(e) => return Some(Err(e)),
            Ok(Incoming::Valid(delivery)) => return Some(Ok(delivery)),
            Ok(Incoming::Invalid(invalid)) => {
                if let Err(e) = invalid.reject().await {
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Dead-letters `message` and terminates it. If the dead letter cannot be stored, the message
/// is handed back for redelivery instead, so it is never lost.
async fn reject(
    context: &ConsumerContext,
    message: &jetstream::Message,
    stream_sequence: u64,
    delivered: i64,
    rejection: &Rejection,
) -> Result<(), BusError> {
    let origin = Origin {
        service: context.inner.service,
        consumer: &context.consumer,
        subject: message.subject.as_str(),
        stream: context.stream,
        stream_sequence,
        delivery_attempt: u64::try_from(delivered).unwrap_or(0),
        payload: &message.payload,
        headers: message.headers.as_ref(),
    };
    let ack_error = |e: async_nats::Error| BusError::Ack {
        subject: message.subject.to_string(),
        stream_sequence,
        source: e.into(),
    };
    if let Err(e) = dead_letter::publish(&context.inner, &origin, rejection).await {
        message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await
            .map_err(ack_error)?;
        return Err(e);
    }
    context.stats.dead_lettered();
    message.ack_with(AckKind::Term).await.map_err(ack_error)
}

impl<S, T> Subscription<S, T> {
    /// The next valid delivery; `None` when the subscription ends.
    pub async fn next(&mut self) -> Option<Result<Delivery<T>, BusError>> {
        self.deliveries.next().await
    }

    /// The durable consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// How long the server waits for an ack before redelivering (as provisioned).
    pub fn ack_wait(&self) -> Duration {
        self.ack_wait
    }
}

/// One of two contracts' deliveries.
pub enum Either<A, B> {
    First(Delivery<A>),
    Second(Delivery<B>),
}

type EitherStream<A, B> = Pin<Box<dyn Stream<Item = Result<Either<A, B>, BusError>> + Send>>;

/// Deliveries of two contracts, interleaved as they arrive.
pub struct EitherSubscription<S, A, B> {
    deliveries: EitherStream<A, B>,
    _service: PhantomData<fn() -> S>,
}

impl<S, A, B> EitherSubscription<S, A, B> {
    pub async fn next(&mut self) -> Option<Result<Either<A, B>, BusError>> {
        self.deliveries.next().await
    }
}

/// The JetStream message behind a delivery, and what settling it needs. A clone shares the
/// `settled` flag, so [`isolate`](super::isolate) can tell whether a handler that panicked had
/// settled its message already.
#[derive(Clone)]
pub struct RawDelivery {
    message: jetstream::Message,
    stream_sequence: u64,
    delivered: i64,
    received_at: Instant,
    context: Arc<ConsumerContext>,
    settled: Arc<AtomicBool>,
}

impl RawDelivery {
    pub(super) fn is_settled(&self) -> bool {
        self.settled.load(Ordering::SeqCst)
    }

    fn mark_settled(&self) {
        self.settled.store(true, Ordering::SeqCst);
    }

    pub(super) fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    pub(super) fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// Settles the message of a handler that panicked: handed back after `delay`, or, on its
    /// last allowed delivery, dead-lettered as `handler_panicked`.
    pub(super) async fn after_panic(&self, delay: Duration, what: &str) -> Result<(), BusError> {
        self.context.stats.panicked();
        if self.is_last_attempt() {
            let rejection = Rejection::new(
                DeadLetterReasonCode::HandlerPanicked,
                format!(
                    "the handler panicked on delivery {} of {}: {what}",
                    self.delivered, self.context.max_deliver
                ),
            );
            self.reject(&rejection).await?;
            self.context.stats.terminated();
            return Ok(());
        }
        self.nak(Some(delay)).await
    }

    async fn nak(&self, delay: Option<Duration>) -> Result<(), BusError> {
        self.message
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(|e| self.ack_error(e))?;
        self.mark_settled();
        self.context.stats.naked();
        Ok(())
    }

    fn ack_error(&self, e: async_nats::Error) -> BusError {
        BusError::Ack {
            subject: self.message.subject.to_string(),
            stream_sequence: self.stream_sequence,
            source: e.into(),
        }
    }

    fn is_last_attempt(&self) -> bool {
        self.context.max_deliver > 0 && self.delivered >= self.context.max_deliver
    }

    async fn confirmed_ack(&self) -> Result<(), BusError> {
        self.message
            .double_ack()
            .await
            .map_err(|e| self.ack_error(e))?;
        self.mark_settled();
        Ok(())
    }

    async fn reject(&self, rejection: &Rejection) -> Result<(), BusError> {
        reject(
            &self.context,
            &self.message,
            self.stream_sequence,
            self.delivered,
            rejection,
        )
        .await?;
        self.mark_settled();
        Ok(())
    }
}

/// A valid message and the handle to settle it: exactly one of [`ack`](Delivery::ack),
/// [`nak`](Delivery::nak) or [`reject`](Delivery::reject). Dropping it unsettled leaves the
/// message to be redelivered after the ack wait.
pub struct Delivery<T> {
    message: T,
    raw: RawDelivery,
}

impl<T> Delivery<T> {
    pub(super) fn raw(&self) -> &RawDelivery {
        &self.raw
    }

    pub fn message(&self) -> &T {
        &self.message
    }

    /// The payload exactly as received (signatures are checked over these bytes).
    pub fn payload(&self) -> &[u8] {
        &self.raw.message.payload
    }

    /// The value of header `name` (a signature, a trace id), if the message carries it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw
            .message
            .headers
            .as_ref()?
            .get(name)
            .map(|value| value.as_str())
    }

    pub fn subject(&self) -> &str {
        self.raw.message.subject.as_str()
    }

    pub fn stream_sequence(&self) -> u64 {
        self.raw.stream_sequence
    }

    /// 1 for the first delivery, 2 for the first redelivery, …
    pub fn delivery_attempt(&self) -> i64 {
        self.raw.delivered
    }

    /// Whether the server will not deliver this message again.
    pub fn is_last_attempt(&self) -> bool {
        self.raw.is_last_attempt()
    }

    /// The message is handled; waits until the server has recorded the ack, so it is not
    /// delivered again.
    pub async fn ack(self) -> Result<(), BusError> {
        self.raw.confirmed_ack().await?;
        self.raw.context.stats.acked(self.raw.received_at.elapsed());
        Ok(())
    }

    /// The message is handled, for a consumer that recognises a message it handled if it comes
    /// again (its effects are in its own state, as guardian's are): the ack is sent, not waited
    /// for — one round trip less per message. If it is lost (a dropped connection, a node lost
    /// before it applied it), the server delivers the message again after the ack wait. Never
    /// for work that must run at most once: use [`Delivery::ack`].
    pub async fn ack_unconfirmed(self) -> Result<(), BusError> {
        self.raw
            .message
            .ack()
            .await
            .map_err(|e| self.raw.ack_error(e))?;
        self.raw.mark_settled();
        self.raw.context.stats.acked(self.raw.received_at.elapsed());
        Ok(())
    }

    /// Tells the server the work is still going on, resetting the ack wait.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        self.raw
            .message
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| self.raw.ack_error(e))
    }

    /// Hands the message back for redelivery after `delay`. On the last allowed delivery the
    /// message is dead-lettered instead (`delivery_exhausted`), so it is never silently dropped.
    pub async fn nak(self, delay: Option<Duration>, why: &str) -> Result<(), BusError> {
        if self.is_last_attempt() {
            let rejection = Rejection::new(
                DeadLetterReasonCode::DeliveryExhausted,
                format!(
                    "gave up after delivery {} of {}: {why}",
                    self.raw.delivered, self.raw.context.max_deliver
                ),
            );
            return self.raw.reject(&rejection).await;
        }
        self.raw.nak(delay).await
    }

    /// The message can never be handled (a bad signature, say): dead-letter it with `code` and
    /// `why`, and terminate it.
    pub async fn reject(
        self,
        code: DeadLetterReasonCode,
        why: impl Into<String>,
    ) -> Result<(), BusError> {
        self.raw.reject(&Rejection::new(code, why)).await?;
        self.raw.context.stats.terminated();
        Ok(())
    }
}

/// A message that did not decode as its contract, handed to a checked subscription's caller.
pub struct InvalidDelivery {
    error: crate::ContractError,
    raw: RawDelivery,
}

impl InvalidDelivery {
    pub(super) fn raw(&self) -> &RawDelivery {
        &self.raw
    }

    /// Why it did not decode.
    pub fn error(&self) -> &crate::ContractError {
        &self.error
    }

    /// The payload exactly as received.
    pub fn payload(&self) -> &[u8] {
        &self.raw.message.payload
    }

    pub fn subject(&self) -> &str {
        self.raw.message.subject.as_str()
    }

    pub fn stream_sequence(&self) -> u64 {
        self.raw.stream_sequence
    }

    /// Dead-letters it with the decoding error as the reason, and terminates it.
    pub async fn reject(self) -> Result<(), BusError> {
        self.raw
            .reject(&Rejection::from_contract_error(&self.error))
            .await
    }

    /// The caller answered it another way (a failure receipt, say): acknowledge it so it is not
    /// delivered again.
    pub async fn settle(self) -> Result<(), BusError> {
        self.raw.confirmed_ack().await?;
        self.raw.context.stats.terminated();
        Ok(())
    }
}

/// A valid or an invalid message of a checked subscription.
pub enum Incoming<T> {
    Valid(Delivery<T>),
    Invalid(InvalidDelivery),
}

/// Deliveries of a [`Bus::subscribe_checked`] subscription: valid and invalid messages.
pub struct CheckedSubscription<S, T> {
    incoming: Pin<Box<dyn Stream<Item = Result<Incoming<T>, BusError>> + Send>>,
    consumer: String,
    ack_wait: Duration,
    _service: PhantomData<fn() -> S>,
}

impl<S, T> CheckedSubscription<S, T> {
    pub async fn next(&mut self) -> Option<Result<Incoming<T>, BusError>> {
        self.incoming.next().await
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// How long the server waits for an ack before redelivering (as provisioned).
    pub fn ack_wait(&self) -> Duration {
        self.ack_wait
    }
}
