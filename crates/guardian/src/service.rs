//! The service loop: events and acknowledgements in, incidents out, state in the bucket.
//!
//! Messages are handled in batches: what is ready (up to `consumer.batch` messages) is taken
//! at once, each message is planned and applied in memory in the order it arrived (so the
//! engine never sees two changes to one group at once), and its effects are collected in a
//! [`Batch`] — the last record of every key, the incident versions in order. Then the batch is
//! made durable as a whole: all records written at once, then the versions published in order
//! (sent together, confirmed together), then the records of closed groups deleted, and only then
//! are the batch's messages acknowledged. So a busy guardian pays a few round trips per batch,
//! not per message.
//!
//! Memory runs ahead of the bucket only within a batch: if any write or publish of a batch
//! fails, its messages are handed back with a delay (`nak`) and the engine is restored from the
//! bucket, exactly as a restart would (the same code), so the retries are planned from what is
//! stored. A version is never published before the state that contains it is stored: otherwise
//! a crash between the two, followed by another event of the group before the redelivery, would
//! publish a next version built on the older state, one that drops an event the previous version
//! listed. A redelivered message whose change is already stored publishes the version it caused
//! again (the server drops a second copy as a duplicate); if another event changed the group
//! first, the later version, which lists this event too, is the one published.
//!
//! A group that ends with a last version (resolved) leaves a *closing* record in its batch: the
//! version is published after the record is written, the record deleted after the version is
//! out; the next start finishes a closing left half done, and no event joins a closed incident
//! meanwhile. A change of a group closed in the current batch waits for the next batch (the
//! current one is flushed first). A group that ends silently (cleared, expired, evicted) has its
//! record deleted; its event ids move to the seen set in the same batch.
//!
//! Each message is planned through [`contracts::bus::isolate`]: a panic while planning one
//! message is logged, the message is handed back (and dead-lettered as `handler_panicked` after
//! its last delivery), the rest of its batch is handed back too, and the engine is restored from
//! the bucket, since the panic may have left half a change in memory. Then guardian goes on.
//!
//! A group's record is the durable proof that its events were handled; the seen set
//! (`seen.*`) takes over when the record goes, and also holds relevant events no group keeps
//! (a resolving event).

use std::future::Future;
use std::time::Duration;

use contracts::bus::{isolate, Bus, BusError, Delivery, Either, SubscribeOptions};
use contracts::services::Guardian as GuardianIdentity;
use contracts::{Event, IncidentAcknowledgement};
use futures::FutureExt;
use time::OffsetDateTime;

use crate::batch::{Batch, Write};
use crate::config::{ConsumerSettings, GuardianConfig};
use crate::engine::{AckPlan, Change, ChangeKind, Engine, EventPlan, Stats, Step};
use crate::lease::{self, Lease, LeaseError, LeaseRevision};
use crate::store::{Closing, StateStore, StoreError};

/// Longest delay before a failed message is retried.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the subscription to events and acknowledgements ended")]
    SubscriptionEnded,
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// Why a batch could not be made durable now (its messages are retried).
#[derive(Debug, thiserror::Error)]
enum Transient {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] BusError),
}

/// A message taken into the current batch, acknowledged once the batch is durable.
type Taken = Either<Event, IncidentAcknowledgement>;

/// A running guardian: its bus connection, its bucket and its engine.
pub struct Guardian {
    bus: Bus<GuardianIdentity>,
    store: StateStore,
    engine: Engine,
    config: GuardianConfig,
    /// The lease as this instance last wrote it: a restored state must hold it (see
    /// [`StateStore::load_since`]).
    lease: LeaseRevision,
    batch: Batch,
    taken: Vec<Taken>,
    /// Set when the state could not be restored after a failed batch: the loop stops with it.
    unrestorable: Option<ServiceError>,
}

impl Guardian {
    /// Opens the bucket and restores the state found there: open incidents continue, seen event
    /// ids stay duplicates. The bus must be provisioned (`cargo xtask provision`).
    pub async fn start(
        bus: Bus<GuardianIdentity>,
        config: &GuardianConfig,
    ) -> Result<Self, ServiceError> {
        Self::start_holding(bus, config, LeaseRevision::default()).await
    }

    /// [`Guardian::start`] for the holder of the lease `lease`: every state it restores (at
    /// start, and after a batch failed) is read from a bucket copy that holds its latest lease
    /// write (see [`StateStore::load_since`]).
    pub async fn start_holding(
        bus: Bus<GuardianIdentity>,
        config: &GuardianConfig,
        lease: LeaseRevision,
    ) -> Result<Self, ServiceError> {
        let store = StateStore::open(&bus).await?;
        let engine = restore(&bus, &store, config, &lease).await?;
        Ok(Self {
            bus,
            store,
            engine,
            config: config.clone(),
            lease,
            batch: Batch::default(),
            taken: Vec::new(),
            unrestorable: None,
        })
    }

    /// The engine (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Consumes events and acknowledgements until `shutdown` resolves; the batch being handled
    /// then is finished (its effects done and acknowledged) before this returns. Messages
    /// pulled but not started are redelivered after the ack wait.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<Stats, ServiceError> {
        let settings = self.config.consumer.clone();
        let options = subscribe_options(&settings);
        let mut incoming = self
            .bus
            .subscribe_either::<Event, IncidentAcknowledgement>(options.clone(), options)
            .await?;
        tracing::info!(
            rules = self.engine.rules().len(),
            "guardian consuming orion.event.v1 and orion.incident_acknowledgement.v1"
        );
        let mut tick = tokio::time::interval(settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tick.tick() => self.on_tick(OffsetDateTime::now_utc()).await,
                next = incoming.next() => match next {
                    None => return Err(ServiceError::SubscriptionEnded),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "receiving messages failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Some(Ok(first)) => {
                        self.take(first).await;
                        // Whatever else is ready joins the batch, without waiting for more.
                        while self.taken.len() < settings.batch {
                            match incoming.next().now_or_never() {
                                Some(Some(Ok(next))) => self.take(next).await,
                                Some(Some(Err(e))) => {
                                    tracing::error!(error = %e, "receiving messages failed; retrying");
                                    break;
                                }
                                Some(None) | None => break,
                            }
                        }
                        self.flush().await;
                    }
                }
            }
            if let Some(error) = self.unrestorable.take() {
                return Err(error);
            }
        }
        drop(incoming);
        let stats = self.engine.stats();
        tracing::info!(?stats, "guardian stopped consuming");
        Ok(stats)
    }

    /// Plans one message into the batch; a panic hands the whole batch back.
    async fn take(&mut self, message: Taken) {
        if self.unrestorable.is_some() {
            // Memory no longer follows the bucket: plan nothing more from it.
            let why = "guardian is stopping: its state could not be restored";
            hand_back(message, why, &self.config.consumer).await;
            return;
        }
        let retry = self.config.consumer.retry_delay;
        let planned = match message {
            Either::First(delivery) => isolate(delivery, retry, |d| self.take_event(d)).await,
            Either::Second(delivery) => {
                isolate(delivery, retry, |d| self.take_acknowledgement(d)).await
            }
        };
        if planned.is_err() {
            // The panic may have left half a change in memory: start again from the bucket.
            self.abandon("a message of the batch panicked its handler")
                .await;
        }
    }

    async fn take_event(&mut self, delivery: Delivery<Event>) {
        let now = OffsetDateTime::now_utc();
        let redelivered = delivery.delivery_attempt() > 1;
        let event = delivery.message();
        let event_id = event.event_id;
        if self.engine.is_duplicate(&event_id) {
            self.engine.note_duplicate();
            tracing::debug!(%event_id, redelivered, "duplicate event ignored");
            self.taken.push(Either::First(delivery));
            return;
        }
        let plan = self.engine.plan_event(event, now);
        if self.changes_a_closed_group(&plan.steps) && !self.flush().await {
            hand_back(
                Either::First(delivery),
                "the batch before it failed",
                &self.config.consumer,
            )
            .await;
            return;
        }
        self.stage_event(event_id, plan, redelivered, now);
        self.taken.push(Either::First(delivery));
    }

    /// Applies an event's plan in memory and collects its effects.
    fn stage_event(
        &mut self,
        event_id: uuid::Uuid,
        plan: EventPlan,
        redelivered: bool,
        now: OffsetDateTime,
    ) {
        if plan.is_duplicate() {
            self.engine.note_duplicate();
            tracing::debug!(%event_id, redelivered, "duplicate event ignored");
        }
        for step in plan.steps {
            match step {
                Step::MissingGroupKey { rule, field } => {
                    tracing::debug!(%event_id, rule, field, "event lacks a group_by field: the rule does not apply");
                }
                Step::AlreadyApplied { key, republish } => {
                    if let (true, Some(version)) = (redelivered, republish) {
                        tracing::info!(%event_id, group = %key, "redelivered event caused the current version: publishing it again");
                        self.batch.publish(version);
                    }
                }
                Step::Change(change) => self.stage(*change, now),
            }
        }
        if plan.remember {
            self.stage_remember(&[event_id], now);
        }
    }

    async fn take_acknowledgement(&mut self, delivery: Delivery<IncidentAcknowledgement>) {
        let redelivered = delivery.delivery_attempt() > 1;
        let ack = delivery.message();
        let incident_id = ack.incident_id;
        match self.engine.plan_acknowledgement(ack) {
            AckPlan::Unknown => {
                tracing::info!(%incident_id, acknowledgement_id = %ack.acknowledgement_id, "acknowledgement of an incident that is not open (unknown or resolved): nothing to do");
            }
            AckPlan::AlreadyAcknowledged => {
                tracing::info!(%incident_id, acknowledgement_id = %ack.acknowledgement_id, "incident already acknowledged");
            }
            AckPlan::AlreadyApplied { republish } => {
                if redelivered {
                    self.batch.publish(republish);
                }
            }
            AckPlan::Change(change) => {
                if self.batch.closes(&change.key.storage_key()) && !self.flush().await {
                    hand_back(
                        Either::Second(delivery),
                        "the batch before it failed",
                        &self.config.consumer,
                    )
                    .await;
                    return;
                }
                self.stage(*change, OffsetDateTime::now_utc());
            }
        }
        self.taken.push(Either::Second(delivery));
    }

    /// Whether a plan changes a group closed in the current batch.
    fn changes_a_closed_group(&self, steps: &[Step]) -> bool {
        steps.iter().any(|step| match step {
            Step::Change(change) => self.batch.closes(&change.key.storage_key()),
            _ => false,
        })
    }

    /// Quiet incidents resolve, counted events past their window and old seen ids go.
    async fn on_tick(&mut self, now: OffsetDateTime) {
        if self.unrestorable.is_some() || !self.flush().await {
            return;
        }
        let (keys, expired) = self.engine.expire_seen(now);
        if expired > 0 {
            tracing::debug!(expired, "seen event ids outlived limits.seen_ttl_s");
        }
        for key in keys {
            self.batch.write(key, Write::Delete);
        }
        for change in self.engine.plan_expiry(now) {
            self.stage(change, now);
        }
        self.flush().await;
    }

    /// Applies `change` in memory and collects what it must make durable (see the module docs).
    fn stage(&mut self, change: Change, now: OffsetDateTime) {
        let key = change.key.storage_key();
        match (&change.after, &change.emit) {
            (None, Some(last)) => {
                let closing = Closing {
                    key,
                    version: last.clone(),
                    forget: change.forget.clone(),
                };
                self.stage_remember(&closing.forget, now);
                self.batch.close(closing);
            }
            (Some(group), emit) => {
                self.batch.write(key, Write::Group(Box::new(group.clone())));
                if let Some(version) = emit {
                    self.batch.publish(version.clone());
                }
            }
            (None, None) => {
                self.stage_remember(&change.forget, now);
                self.batch.write(key, Write::Delete);
            }
        }
        self.commit(change, now);
    }

    /// Adds event ids to the seen set, in memory and in the batch.
    fn stage_remember(&mut self, ids: &[uuid::Uuid], now: OffsetDateTime) {
        if ids.is_empty() {
            return;
        }
        let mut forgotten = 0;
        for write in self.engine.plan_seen_many(ids, now) {
            forgotten += self.engine.commit_seen(write.clone());
            self.batch.remember(write);
        }
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                total = self.engine.seen().evicted(),
                "forgot the oldest seen event ids to stay within limits.max_seen_event_ids"
            );
        }
    }

    /// Applies `change` to the engine's memory; what its limits evict goes in the batch too.
    fn commit(&mut self, change: Change, now: OffsetDateTime) {
        log_change(&change);
        for evicted in self.engine.commit(change) {
            let stats = self.engine.stats();
            match evicted.incident_id {
                Some(incident_id) => {
                    tracing::warn!(group = %evicted.key, %incident_id, incidents_evicted = stats.incidents_evicted, "limits.max_groups reached: forgetting the least recently updated incident (it will not be updated again)")
                }
                None => {
                    tracing::warn!(group = %evicted.key, groups_evicted = stats.groups_evicted, "limits.max_groups reached: forgetting the least recently updated group below its threshold")
                }
            }
            self.stage_remember(&evicted.event_ids, now);
            self.batch.write(evicted.storage_key, Write::Delete);
        }
    }

    /// Makes the batch durable and acknowledges its messages; on failure hands them back and
    /// restores the engine from the bucket. Whether it was made durable.
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() && self.taken.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        let taken = std::mem::take(&mut self.taken);
        match self.make_durable(&batch).await {
            Ok(()) => {
                let acks = taken.into_iter().map(|message| async move {
                    let (subject, sequence) = describe(&message);
                    let acked = match message {
                        Either::First(delivery) => delivery.ack().await,
                        Either::Second(delivery) => delivery.ack().await,
                    };
                    if let Err(e) = acked {
                        tracing::warn!(subject, sequence, error = %e, "could not acknowledge; the redelivery will be recognised as a duplicate");
                    }
                });
                futures::future::join_all(acks).await;
                true
            }
            Err(error) => {
                tracing::warn!(messages = taken.len(), error = %error, "the batch could not be made durable; its messages will be retried");
                let why = error.to_string();
                let settings = &self.config.consumer;
                futures::future::join_all(
                    taken
                        .into_iter()
                        .map(|message| hand_back(message, &why, settings)),
                )
                .await;
                self.reload().await;
                false
            }
        }
    }

    /// Writes the records, then publishes the versions in order, then deletes closed records.
    async fn make_durable(&self, batch: &Batch) -> Result<(), Transient> {
        let writes = batch.writes().map(|(key, write)| self.write(key, write));
        futures::future::try_join_all(writes).await?;
        let mut sent = Vec::with_capacity(batch.versions().len());
        for version in batch.versions() {
            sent.push(self.bus.send(version).await?);
        }
        for sending in sent {
            let published = sending.stored().await?;
            tracing::debug!(
                sequence = published.sequence,
                duplicate = published.duplicate,
                "incident version published"
            );
        }
        let cleanups = batch.cleanups().map(|key| async move {
            if let Err(e) = self.store.delete(key).await {
                tracing::warn!(key, error = %e, "the incident is closed, but its clean-up failed; the next start finishes it");
            }
        });
        futures::future::join_all(cleanups).await;
        Ok(())
    }

    async fn write(&self, key: &str, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::Group(group) => self.store.put_group(group).await,
            Write::Closing(closing) => self.store.put_closing(closing).await,
            Write::Seen(seen) => self.store.put_seen(seen).await,
            Write::Delete => self.store.delete(key).await,
        }
    }

    /// Hands back what the current batch took and starts again from the bucket.
    async fn abandon(&mut self, why: &str) {
        self.batch = Batch::default();
        let settings = &self.config.consumer;
        let taken = std::mem::take(&mut self.taken);
        futures::future::join_all(taken.into_iter().map(|m| hand_back(m, why, settings))).await;
        self.reload().await;
    }

    /// Restores the engine from the bucket, as a start does. Tried again for twice the lease's
    /// time to live (at least 10 s); after that the loop stops with the error
    /// ([`Guardian::run`] returns it): a supervisor restarting guardian does the same, and the
    /// lease would be lost meanwhile anyway.
    async fn reload(&mut self) {
        self.batch = Batch::default();
        let deadline =
            tokio::time::Instant::now() + (self.config.lease_ttl * 2).max(Duration::from_secs(10));
        loop {
            match restore(&self.bus, &self.store, &self.config, &self.lease).await {
                Ok(engine) => {
                    self.engine = engine;
                    return;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::error!(error = %e, "could not restore the state from the bucket; stopping");
                    self.unrestorable = Some(e);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not restore the state from the bucket; trying again");
                    tokio::time::sleep(self.config.consumer.retry_delay).await;
                }
            }
        }
    }
}

/// The engine as the bucket holds it, with what a previous instance left half done finished:
/// stale seen chunks dropped, groups above `limits.max_groups` forgotten, and every closing
/// record's last version published (again) and cleaned up.
async fn restore(
    bus: &Bus<GuardianIdentity>,
    store: &StateStore,
    config: &GuardianConfig,
    lease: &LeaseRevision,
) -> Result<Engine, ServiceError> {
    let snapshot = store.load_since(lease).await?;
    for (key, why) in &snapshot.unreadable {
        tracing::warn!(key, reason = %why, "skipping a record of the state bucket guardian cannot read");
    }
    let now = OffsetDateTime::now_utc();
    let mut engine = Engine::new(config.rules.clone(), config.limits);
    let report = engine.restore(snapshot.groups, snapshot.seen, now);
    for key in &report.seen.stale_keys {
        store.delete(key).await?;
    }
    for (id, at_ms) in report.seen.reinsert {
        let write = engine.plan_seen_at(id, at_ms);
        store.put_seen(&write).await?;
        engine.commit_seen(write);
    }
    for evicted in &report.evicted {
        tracing::warn!(group = %evicted.key, incident_id = ?evicted.incident_id, "limits.max_groups is lower than the stored state: forgetting the least recently updated group");
        store.delete(&evicted.storage_key).await?;
    }
    for closing in &snapshot.closings {
        // Its last version may never have gone out: publish it (again) before anything else.
        bus.publish(&closing.version).await?;
        for write in engine.plan_seen_many(&closing.forget, now) {
            store.put_seen(&write).await?;
            engine.commit_seen(write);
        }
        store.delete(&closing.key).await?;
        tracing::info!(key = closing.key, incident_id = %closing.version.incident_id, "finished closing an incident left half done by the previous instance");
    }
    for orphan in &report.orphans {
        tracing::warn!(group = %orphan, "stored group of a rule that is no longer configured: kept for acknowledgements, no event will join it");
    }
    tracing::info!(
        groups = engine.group_count(),
        incidents = engine.incident_count(),
        seen_event_ids = engine.seen().len(),
        "state restored from the `guardian_state` bucket"
    );
    Ok(engine)
}

fn describe(message: &Taken) -> (String, u64) {
    match message {
        Either::First(delivery) => (delivery.subject().to_string(), delivery.stream_sequence()),
        Either::Second(delivery) => (delivery.subject().to_string(), delivery.stream_sequence()),
    }
}

/// Hands a message back to be redelivered after a delay that grows with its attempts.
async fn hand_back(message: Taken, why: &str, settings: &ConsumerSettings) {
    let (subject, sequence) = describe(&message);
    let attempt = match &message {
        Either::First(delivery) => delivery.delivery_attempt(),
        Either::Second(delivery) => delivery.delivery_attempt(),
    };
    let delay = settings
        .retry_delay
        .saturating_mul(attempt.max(1) as u32)
        .min(MAX_RETRY_DELAY);
    tracing::warn!(
        subject,
        sequence,
        attempt,
        ?delay,
        why,
        "handling failed; the message will be retried"
    );
    let handed = match message {
        Either::First(delivery) => delivery.nak(Some(delay), why).await,
        Either::Second(delivery) => delivery.nak(Some(delay), why).await,
    };
    if let Err(e) = handed {
        tracing::warn!(subject, sequence, error = %e, "could not hand the message back; it is redelivered after the ack wait");
    }
}

fn log_change(change: &Change) {
    let group = &change.key;
    let version = change.emit.as_ref();
    let incident_id = version.map(|i| i.incident_id.to_string());
    let events = version.map(|i| i.event_ids.len());
    match change.kind {
        ChangeKind::Opened => {
            tracing::info!(%group, incident_id, events, "incident opened")
        }
        ChangeKind::Acknowledged => {
            tracing::info!(%group, incident_id, "incident acknowledged")
        }
        ChangeKind::ResolvedByEvent | ChangeKind::ResolvedQuietly => {
            tracing::info!(%group, incident_id, kind = ?change.kind, "incident resolved")
        }
        ChangeKind::Grew => tracing::debug!(%group, incident_id, events, "incident grew"),
        ChangeKind::Counted | ChangeKind::Cleared | ChangeKind::Expired => {
            tracing::debug!(%group, kind = ?change.kind, "group updated")
        }
    }
}

/// The consumer options guardian uses for both subjects.
pub fn subscribe_options(settings: &ConsumerSettings) -> SubscribeOptions {
    SubscribeOptions {
        batch: settings.batch,
    }
}

/// What `guardian run` does once the bootstrap (`contracts::runtime::ServiceMain`) has
/// connected and checked provisioning: wait for the lease (a standby waits here), restore,
/// consume until `shutdown` or until the lease is lost, release the lease. The bootstrap closes
/// the bus.
pub async fn run(
    bus: Bus<GuardianIdentity>,
    config: &GuardianConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ServiceError> {
    tokio::pin!(shutdown);
    let bucket = StateStore::open(&bus).await?.bucket().clone();
    let acquiring = Lease::acquire(bucket, lease::instance_name(), config.lease_ttl);
    let lease = tokio::select! {
        lease = acquiring => lease,
        () = &mut shutdown => return Ok(Stats::default()),
    };
    let revision = lease.revision();
    let keeper = lease.keep();
    let lost = keeper.lost();
    let stats = match Guardian::start_holding(bus, config, revision).await {
        Ok(guardian) => {
            guardian
                .run(async {
                    tokio::select! {
                        () = &mut shutdown => {}
                        () = lost.cancelled() => {}
                    }
                })
                .await
        }
        Err(e) => Err(e),
    };
    keeper.release().await?;
    stats
}
