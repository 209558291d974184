//! The at-most-once worker: the one way a service does work that must never happen twice for a
//! message id (ops-worker's commands, commander's actions) and answers it with exactly one result
//! message (a receipt, an outcome).
//!
//! The life of one message, chosen so that a crash at any point neither does the work twice nor
//! leaves it without its one result:
//! 1. [`AtMostOnce::admit`] claims the id in the service's claim bucket ([`ClaimLog`]). A new
//!    claim is [`Admission::Fresh`]: the work may start. An id whose result is recorded gets that
//!    result published again and is acknowledged ([`Admission::Settled`]). An id claimed by a
//!    holder that never renews its claim within the ack wait (a crash) is
//!    [`Admission::Interrupted`]: the caller records an "interrupted" result and never does the
//!    work again. An id another live holder works on is handed back for later.
//! 2. [`AtMostOnce::heartbeat`] drives the work, telling JetStream it is in progress and renewing
//!    the claim; when the claim is lost the caller chooses to hand the message back or to stop the
//!    work at its next safe point ([`WhenLost`]).
//! 3. [`AtMostOnce::finish`] records the result with the claim's revision, publishes it, then
//!    acknowledges. A result recorded but not published is published by the redelivery; one that
//!    cannot be recorded hands the message back.
//!
//! [`serve`] is the consume loop both services run: take messages until shutdown, then drain the
//! work in flight for a bounded time.
//!
//! Not here: what the work is, and what "interrupted" means to the service's result contract.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{
    Bus, BusError, CheckedSubscription, Claim, ClaimFenced, ClaimLog, ClaimRecord, Delivery,
    Incoming, Renewal, Subscription,
};
use crate::{Contract, Produces, Service};

/// How long a message whose claim or result could not be read or written waits before it is
/// delivered again.
const RETRY: Duration = Duration::from_secs(2);

/// Claims, heartbeats and results of one service's at-most-once work, whose result contract is
/// `R`.
pub struct AtMostOnce<S: Service, R> {
    bus: Bus<S>,
    log: ClaimLog,
    holder: String,
    ack_wait: Duration,
    _result: PhantomData<fn() -> R>,
}

impl<S: Service, R> Clone for AtMostOnce<S, R> {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
            log: self.log.clone(),
            holder: self.holder.clone(),
            ack_wait: self.ack_wait,
            _result: PhantomData,
        }
    }
}

/// What [`AtMostOnce::admit`] leaves to the caller.
pub enum Admission<T> {
    /// Claimed here: do the work, then [`AtMostOnce::finish`].
    Fresh(Held<T>),
    /// Its earlier holder stopped mid-way (no renewal for a whole ack wait): record a result
    /// saying so with [`AtMostOnce::finish`]; the work is never done again.
    Interrupted {
        held: Held<T>,
        /// Who held the claim.
        holder: String,
        /// When that holder claimed it (its own clock, for the operator only).
        since: String,
    },
    /// Nothing is left to do here: the recorded result was published again, or the message was
    /// handed back (another holder works on it, or the claim bucket could not be read).
    Settled,
}

/// A message whose id this instance holds the claim of.
pub struct Held<T> {
    delivery: Delivery<T>,
    id: uuid::Uuid,
    renewal: tokio::sync::Mutex<Renewal>,
}

impl<T> Held<T> {
    /// The delivery the claim covers.
    pub fn delivery(&self) -> &Delivery<T> {
        &self.delivery
    }

    /// The delivered message.
    pub fn message(&self) -> &T {
        self.delivery.message()
    }

    /// The claimed id.
    pub fn id(&self) -> uuid::Uuid {
        self.id
    }
}

/// What to do when the claim is lost while the work goes on (another instance may take it over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenLost {
    /// Stop waiting on the work and return [`Lost`]; the caller hands the message back with
    /// [`AtMostOnce::hand_back`] and records nothing.
    Abandon,
    /// Keep waiting: the caller has asked the work to stop at its next safe point (a restart half
    /// done is worse than a late result).
    Continue,
}

/// The work was abandoned because its claim was lost.
#[derive(Debug)]
pub struct Lost(pub ClaimFenced);

impl<S: Service, R> AtMostOnce<S, R>
where
    R: Contract + Send + Sync + 'static,
    S: Produces<R>,
{
    /// `holder` names this instance in the claims it makes (`<host>-<pid>`); `ack_wait` is the
    /// heartbeat period's bound: a claim not renewed for that long is judged abandoned.
    pub fn new(bus: Bus<S>, log: ClaimLog, holder: impl Into<String>, ack_wait: Duration) -> Self {
        Self {
            bus,
            log,
            holder: holder.into(),
            ack_wait,
            _result: PhantomData,
        }
    }

    /// The claim bucket.
    pub fn log(&self) -> &ClaimLog {
        &self.log
    }

    /// This instance's name in its claims.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The ack wait the heartbeat keeps within.
    pub fn ack_wait(&self) -> Duration {
        self.ack_wait
    }

    /// Refuses to run on a consumer provisioned with a shorter ack wait than this driver's: the
    /// server would redeliver work still running between two heartbeats.
    pub fn fits<Src: Source>(&self, source: &Src) -> Result<(), BusError> {
        super::check_heartbeat_fits(source.consumer_name(), self.ack_wait, source.ack_wait())
    }

    /// Claims `id` for the work `delivery` asks for (see the module docs).
    pub async fn admit<T>(&self, delivery: Delivery<T>, id: uuid::Uuid) -> Admission<T> {
        let held = |delivery, revision| Held {
            delivery,
            id,
            renewal: tokio::sync::Mutex::new(Renewal::new(revision, self.ack_wait)),
        };
        match self.log.claim(&id, &self.holder).await {
            Ok(Claim::New { revision }) => Admission::Fresh(held(delivery, revision)),
            Ok(Claim::Seen {
                record: ClaimRecord::Finished { result },
                ..
            }) => {
                tracing::info!(%id, "seen before: publishing its recorded result again, not doing the work again");
                self.answer_again(delivery, result).await;
                Admission::Settled
            }
            Ok(Claim::Seen {
                record: ClaimRecord::Claimed { worker, at },
                revision,
            }) => match self.holder_is_gone(&delivery, &id, revision).await {
                Ok(true) => Admission::Interrupted {
                    held: held(delivery, revision),
                    holder: worker,
                    since: at,
                },
                Ok(false) => {
                    tracing::info!(%id, holder = %worker, "another instance is at work on this id; checking back later");
                    let why = format!("being worked on by {worker}");
                    let _ = delivery.nak(Some(self.ack_wait / 2), &why).await;
                    Admission::Settled
                }
                Err(e) => {
                    let _ = delivery.nak(Some(RETRY), &e.to_string()).await;
                    Admission::Settled
                }
            },
            Err(e) => {
                tracing::error!(%id, error = %e, "cannot claim; the message will be redelivered");
                let _ = delivery.nak(Some(RETRY), &e.to_string()).await;
                Admission::Settled
            }
        }
    }

    /// Alive or not is judged by watching the claim's revision on this process's own clock.
    async fn holder_is_gone<T>(
        &self,
        delivery: &Delivery<T>,
        id: &uuid::Uuid,
        revision: u64,
    ) -> Result<bool, BusError> {
        self.log
            .holder_is_gone(id, revision, self.ack_wait, || async {
                let _ = delivery.in_progress().await;
            })
            .await
    }

    /// Publishes a recorded result again and acknowledges; hands the message back when the
    /// result cannot be published.
    async fn answer_again<T>(&self, delivery: Delivery<T>, result: serde_json::Value) {
        match crate::decode_value::<R>(result) {
            Ok(result) => {
                if !self.publish_result(&result).await {
                    let _ = delivery
                        .nak(Some(RETRY), "the recorded result could not be published")
                        .await;
                    return;
                }
            }
            Err(e) => {
                tracing::error!(contract = R::INFO.name, error = %e, "the recorded result is not a valid message; acknowledging without one")
            }
        }
        if let Err(e) = delivery.ack().await {
            tracing::warn!(error = %e, "could not acknowledge a message seen before");
        }
    }

    /// Tells JetStream the work is in progress and renews the claim every third of the ack wait
    /// while `work` runs; `Err(Lost)` when the claim was lost and `when_lost` said
    /// [`WhenLost::Abandon`].
    pub async fn heartbeat<T, F>(
        &self,
        held: &Held<T>,
        work: F,
        mut when_lost: impl FnMut(&ClaimFenced) -> WhenLost,
    ) -> Result<F::Output, Lost>
    where
        F: Future,
    {
        tokio::pin!(work);
        // The first beat one period from now: awaiting an interval's immediate first tick costs
        // a tick of the timer wheel (about 1 ms) on every message.
        let period = (self.ack_wait / 3).max(Duration::from_millis(1));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = beat.tick() => {
                    if let Err(e) = held.delivery.in_progress().await {
                        tracing::warn!(id = %held.id, error = %e, "could not report progress");
                    }
                    let renewed = held.renewal.lock().await.renew(&self.log, &held.id, &self.holder).await;
                    if let Err(fenced) = renewed {
                        tracing::error!(id = %held.id, reason = %fenced, "the claim is lost");
                        if when_lost(&fenced) == WhenLost::Abandon {
                            return Err(Lost(fenced));
                        }
                    }
                }
            }
        }
    }

    /// Hands back a message whose claim was lost; nothing is recorded (the instance that took the
    /// claim over, or the redelivery, answers it).
    pub async fn hand_back<T>(&self, held: Held<T>, lost: Lost) {
        let why = format!("claim lost: {}", lost.0);
        let _ = held.delivery.nak(Some(self.ack_wait / 2), &why).await;
    }

    /// Records `result` as the one result of the held id, publishes it, then acknowledges.
    /// Whether the message was acknowledged.
    pub async fn finish<T>(&self, held: Held<T>, result: &R) -> bool {
        let id = held.id;
        let revision = held.renewal.into_inner().revision();
        let value = match crate::to_value(result) {
            Ok(value) => value,
            Err(e) => {
                // A bug, not an input: the message is handed back and its retries dead-letter it.
                tracing::error!(%id, error = %e, "built an invalid result; handing the message back");
                let _ = held.delivery.nak(Some(RETRY), &e.to_string()).await;
                return false;
            }
        };
        if let Err(e) = self.log.finish(&id, &value, revision).await {
            tracing::error!(%id, error = %e, "cannot record the result; the message will be redelivered");
            let _ = held.delivery.nak(Some(RETRY), &e.to_string()).await;
            return false;
        }
        if !self.publish_result(result).await {
            // Recorded but not published: not acknowledged, so the redelivery publishes the
            // recorded result (the work is not done again).
            let _ = held
                .delivery
                .nak(
                    Some(RETRY),
                    "the result is recorded but could not be published",
                )
                .await;
            return false;
        }
        if let Err(e) = held.delivery.ack().await {
            tracing::warn!(%id, error = %e, "could not acknowledge; a redelivery publishes the recorded result again");
            return false;
        }
        true
    }

    /// Publishes `result` (a few tries: the server drops a copy that did arrive by its
    /// `Nats-Msg-Id`); whether the server stored it.
    pub async fn publish_result(&self, result: &R) -> bool {
        match self.bus.publish_retrying(result, 3).await {
            Ok(_) => true,
            Err(e) => {
                let message_id = crate::to_value(result)
                    .map(|value| super::idempotency_key(R::INFO, &value))
                    .unwrap_or_default();
                tracing::error!(contract = R::INFO.name, %message_id, error = %e, "gave up publishing a result");
                false
            }
        }
    }
}

/// A subscription [`serve`] can take messages from.
pub trait Source {
    /// What one message is.
    type Item;
    /// The next message; `None` when the subscription ended.
    fn next_item(&mut self) -> impl Future<Output = Option<Result<Self::Item, BusError>>> + Send;
    /// The consumer's name, for the logs.
    fn consumer_name(&self) -> &str;
    /// The ack wait the consumer was provisioned with.
    fn ack_wait(&self) -> Duration;
}

impl<S: Send, T: Send + 'static> Source for Subscription<S, T> {
    type Item = Delivery<T>;
    fn next_item(&mut self) -> impl Future<Output = Option<Result<Self::Item, BusError>>> + Send {
        self.next()
    }
    fn consumer_name(&self) -> &str {
        self.consumer()
    }
    fn ack_wait(&self) -> Duration {
        Subscription::ack_wait(self)
    }
}

impl<S: Send, T: Send + 'static> Source for CheckedSubscription<S, T> {
    type Item = Incoming<T>;
    fn next_item(&mut self) -> impl Future<Output = Option<Result<Self::Item, BusError>>> + Send {
        self.next()
    }
    fn consumer_name(&self) -> &str {
        self.consumer()
    }
    fn ack_wait(&self) -> Duration {
        CheckedSubscription::ack_wait(self)
    }
}

/// Takes messages from `source` and hands each to `handle` until `shutdown` resolves or the
/// subscription ends; then stops taking messages and waits up to `drain` for the work `handle`
/// spawned on `tasks`. Work still running after that is redelivered to the next instance (whose
/// claim check reports it interrupted). A receive error is logged and retried after a second.
pub async fn serve<Src, Handled>(
    mut source: Src,
    shutdown: impl Future<Output = ()>,
    tasks: TaskTracker,
    drain: Duration,
    mut handle: impl FnMut(Src::Item) -> Handled,
) where
    Src: Source,
    Handled: Future<Output = ()>,
{
    tracing::info!(consumer = source.consumer_name(), "consuming");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = source.next_item() => match next {
                None => break,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "receiving failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Some(Ok(item)) => handle(item).await,
            }
        }
    }
    drop(source);
    tasks.close();
    let waiting = tasks.len();
    if waiting > 0 {
        tracing::info!(waiting, "draining the work in flight");
    }
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!("work still running after the drain period; it will be redelivered");
    }
}
