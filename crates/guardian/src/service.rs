//! The service loop: events and acknowledgements in, incidents out, state in the bucket.
//!
//! Messages are handled one at a time, in the order they arrive, so the engine never sees two
//! changes to one group at once. Each message is acknowledged only after its effects are done
//! (state stored, incident versions published); on a transient failure it is handed back with a
//! delay (`nak`). Memory follows the bucket: a change is applied in memory once it is stored,
//! never before, so a retry plans from what the bucket holds. The order of the effects of one change:
//!
//! - a group that opens or changes: store the group (which fixes the random incident id of a
//!   new incident), apply it in memory, then publish the version. A version is never published
//!   before the state that contains it is stored: otherwise a crash (or a failed write) between
//!   the two, followed by another event of the group before the redelivery, would publish a
//!   next version built on the older state — one that drops an event the previous version
//!   listed. If the publish fails or guardian dies before it, the redelivered message finds its
//!   change stored ("already applied") and publishes the version it caused again (the server
//!   drops a second copy as a duplicate); if another event changed the group first, that later
//!   version, which lists this event too, is the one published;
//! - a group that ends with a last version (resolved): record the closing, publish, then
//!   remember the group's event ids in the seen set and delete the record (see `close`);
//! - a group that ends silently (cleared, expired): remember its event ids, delete its record.
//!
//! Each message is handled through [`contracts::bus::isolate`]: a panic while handling one
//! message is logged, the message is handed back (and dead-lettered as `handler_panicked` after
//! its last delivery), and guardian goes on. Nothing of a panicked message is committed to the
//! engine unless its effects were made durable first, so its redelivery plans it again.
//!
//! A group's record is the durable proof that its events were handled; the seen set
//! (`seen.*`) takes over when the record goes, and also holds relevant events no group keeps
//! (a resolving event: remembered after its group is deleted). Then the message is
//! acknowledged. A redelivered message that the stored state already contains re-publishes the
//! version it caused (the crash may have come between storing and publishing).

use std::future::Future;
use std::time::Duration;

use contracts::bus::{isolate, Bus, BusError, Delivery, Either, SubscribeOptions};
use contracts::services::Guardian as GuardianIdentity;
use contracts::{metrics, Event, Incident, IncidentAcknowledgement};
use time::OffsetDateTime;

use crate::config::{ConsumerSettings, GuardianConfig};
use crate::engine::{AckPlan, Change, ChangeKind, Engine, Stats, Step};
use crate::lease::LeaseError;
use crate::partition::Partition;
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

/// Why one message could not be handled now (it is retried).
#[derive(Debug, thiserror::Error)]
enum Transient {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] BusError),
}

/// A running guardian partition: its bus connection, its keys in the bucket and its engine.
pub struct Guardian {
    bus: Bus<GuardianIdentity>,
    store: StateStore,
    engine: Engine,
    settings: ConsumerSettings,
    partition: Partition,
}

impl Guardian {
    /// Opens the bucket and restores the state of `partition` found there: open incidents
    /// continue, seen event ids stay duplicates. The bus must be provisioned
    /// (`cargo xtask provision`), and this instance must hold the partition's lease.
    pub async fn start(
        bus: Bus<GuardianIdentity>,
        config: &GuardianConfig,
        partition: Partition,
    ) -> Result<Self, ServiceError> {
        Self::start_since(bus, config, partition, 0).await
    }

    /// [`Guardian::start`] from a state at least as recent as bucket revision `written` (the
    /// lease this instance took; see [`StateStore::load_since`]).
    pub async fn start_since(
        bus: Bus<GuardianIdentity>,
        config: &GuardianConfig,
        partition: Partition,
        written: u64,
    ) -> Result<Self, ServiceError> {
        let store = StateStore::open(&bus, partition).await?;
        let snapshot = store.load_since(written).await?;
        for (key, why) in &snapshot.unreadable {
            tracing::warn!(key, %partition, reason = %why, "skipping a record of the state bucket guardian cannot read");
        }
        let now = OffsetDateTime::now_utc();
        let mut engine = Engine::for_partition(config.rules.clone(), config.limits, partition);
        let snapshot_closings = snapshot.closings;
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
        let mut service = Self {
            bus,
            store,
            engine,
            settings: config.consumer.clone(),
            partition,
        };
        for closing in &snapshot_closings {
            // Its last version may never have gone out: publish it (again) before anything else.
            service.publish(&closing.version).await?;
            service.finish_closing(closing).await?;
            tracing::info!(key = closing.key, incident_id = %closing.version.incident_id, "finished closing an incident left half done by the previous instance");
        }
        for orphan in &report.orphans {
            tracing::warn!(group = %orphan, "stored group of a rule that is no longer configured: kept for acknowledgements, no event will join it");
        }
        tracing::info!(
            %partition,
            groups = service.engine.group_count(),
            incidents = service.engine.incident_count(),
            seen_event_ids = service.engine.seen().len(),
            "state restored from the `guardian_state` bucket"
        );
        Ok(service)
    }

    /// The engine (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Consumes events and acknowledgements until `shutdown` resolves; the message being
    /// handled then is finished (its effects done and acknowledged) before this returns.
    /// Messages pulled but not started are redelivered after the ack wait.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<Stats, ServiceError> {
        let options = subscribe_options(&self.settings, self.partition);
        let mut incoming = self
            .bus
            .subscribe_either::<Event, IncidentAcknowledgement>(options.clone(), options)
            .await?;
        tracing::info!(
            rules = self.engine.rules().len(),
            partition = %self.partition,
            "guardian consuming orion.event.v1 and orion.incident_acknowledgement.v1"
        );
        let mut tick = tokio::time::interval(self.settings.tick);
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
                    Some(Ok(Either::First(delivery))) => {
                        let retry = self.settings.retry_delay;
                        let _ = isolate(delivery, retry, |d| self.on_event(d)).await;
                    }
                    Some(Ok(Either::Second(delivery))) => {
                        let retry = self.settings.retry_delay;
                        let _ = isolate(delivery, retry, |d| self.on_acknowledgement(d)).await;
                    }
                }
            }
        }
        drop(incoming);
        let stats = self.engine.stats();
        tracing::info!(partition = %self.partition, ?stats, "guardian stopped consuming");
        Ok(stats)
    }

    async fn on_event(&mut self, delivery: Delivery<Event>) {
        let redelivered = delivery.delivery_attempt() > 1;
        let outcome = self
            .handle_event(delivery.message(), redelivered, OffsetDateTime::now_utc())
            .await;
        settle(delivery, outcome, &self.settings).await;
    }

    async fn handle_event(
        &mut self,
        event: &Event,
        redelivered: bool,
        now: OffsetDateTime,
    ) -> Result<(), Transient> {
        let event_id = event.event_id;
        if self.engine.is_duplicate(&event_id) {
            self.engine.note_duplicate();
            tracing::debug!(%event_id, redelivered, "duplicate event ignored");
            return Ok(());
        }
        let plan = self.engine.plan_event(event, now);
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
                        self.publish(&version).await?;
                    }
                }
                Step::Change(change) => self.apply(*change).await?,
            }
        }
        if plan.remember {
            self.remember(&[event_id], now).await?;
        }
        Ok(())
    }

    /// Adds event ids to the seen set: written to the bucket first, then applied.
    async fn remember(
        &mut self,
        ids: &[uuid::Uuid],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let writes = self.engine.plan_seen_many(ids, now);
        for write in &writes {
            self.store.put_seen(write).await?;
        }
        let forgotten: usize = writes
            .into_iter()
            .map(|write| self.engine.commit_seen(write))
            .sum();
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                total = self.engine.seen().evicted(),
                "forgot the oldest seen event ids to stay within limits.max_seen_event_ids"
            );
        }
        Ok(())
    }

    async fn on_acknowledgement(&mut self, delivery: Delivery<IncidentAcknowledgement>) {
        let redelivered = delivery.delivery_attempt() > 1;
        let ack = delivery.message();
        let incident_id = ack.incident_id;
        let outcome = match self.engine.plan_acknowledgement(ack) {
            AckPlan::Unknown => {
                // Every partition sees every acknowledgement; only the incident's own knows it.
                tracing::debug!(%incident_id, acknowledgement_id = %ack.acknowledgement_id, partition = %self.partition, "acknowledgement of an incident this partition does not hold open (another's, unknown or resolved): nothing to do");
                Ok(())
            }
            AckPlan::AlreadyAcknowledged => {
                tracing::info!(%incident_id, acknowledgement_id = %ack.acknowledgement_id, "incident already acknowledged");
                Ok(())
            }
            AckPlan::AlreadyApplied { republish } => {
                if redelivered {
                    self.publish(&republish).await.map_err(Transient::from)
                } else {
                    Ok(())
                }
            }
            AckPlan::Change(change) => self.apply(*change).await,
        };
        settle(delivery, outcome, &self.settings).await;
    }

    async fn on_tick(&mut self, now: OffsetDateTime) {
        for change in self.engine.plan_expiry(now) {
            if let Err(e) = self.apply(change).await {
                tracing::warn!(error = %e, "could not apply an expiry; retrying at the next tick");
                break;
            }
        }
        let (keys, expired) = self.engine.expire_seen(now);
        if expired > 0 {
            tracing::debug!(expired, "seen event ids outlived limits.seen_ttl_s");
        }
        for key in keys {
            if let Err(e) = self.store.delete(&key).await {
                tracing::warn!(key, error = %e, "could not delete an expired chunk of seen ids; it is dropped at the next start");
            }
        }
    }

    /// Makes one change durable in the order described in the module docs, then applies it.
    async fn apply(&mut self, change: Change) -> Result<(), Transient> {
        if let (None, Some(last)) = (&change.after, &change.emit) {
            let closing = Closing {
                key: change.key.storage_key(),
                version: last.clone(),
                forget: change.forget.clone(),
            };
            return self.close(change, closing).await;
        }
        match &change.after {
            Some(group) => self.store.put_group(group).await?,
            None => {
                self.remember(&change.forget, OffsetDateTime::now_utc())
                    .await?;
                self.store.delete(&change.key.storage_key()).await?
            }
        }
        let version = change.emit.clone();
        self.commit(change).await;
        if let Some(version) = &version {
            self.publish(version).await?;
        }
        Ok(())
    }

    /// Ends a group with its last version. The end is on record before the version is
    /// published; once it is published the group is over in memory too, whatever happens to the
    /// clean-up after it (a failed clean-up is left on record for the next start): no event
    /// may join an incident someone has seen resolved.
    async fn close(&mut self, change: Change, closing: Closing) -> Result<(), Transient> {
        self.store.put_closing(&closing).await?;
        self.publish(&closing.version).await?;
        self.commit(change).await;
        if let Err(e) = self.finish_closing(&closing).await {
            tracing::warn!(key = closing.key, error = %e, "the incident is closed, but its clean-up failed; the next start finishes it");
        }
        Ok(())
    }

    /// Remembers a closed group's events as seen and deletes its record.
    async fn finish_closing(&mut self, closing: &Closing) -> Result<(), StoreError> {
        self.remember(&closing.forget, OffsetDateTime::now_utc())
            .await?;
        self.store.delete(&closing.key).await
    }

    /// Applies `change` to the engine's memory (and forgets what its limits evict).
    async fn commit(&mut self, change: Change) {
        log_change(&change);
        count_change(&change);
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
            if let Err(e) = self
                .remember(&evicted.event_ids, OffsetDateTime::now_utc())
                .await
            {
                tracing::warn!(group = %evicted.key, error = %e, "could not remember the event ids of a forgotten group");
            }
            if let Err(e) = self.store.delete(&evicted.storage_key).await {
                tracing::warn!(key = evicted.storage_key, error = %e, "could not delete the record of a forgotten group; it is dropped at the next start");
            }
        }
    }

    async fn publish(&self, incident: &Incident) -> Result<(), BusError> {
        let published = self.bus.publish(incident).await?;
        tracing::debug!(
            partition = %self.partition,
            incident_id = %incident.incident_id,
            state = %incident.state,
            duplicate = published.duplicate,
            sequence = published.sequence,
            "incident version published"
        );
        Ok(())
    }
}

/// Acknowledges a handled message, or hands it back after a delay.
async fn settle<T>(
    delivery: Delivery<T>,
    outcome: Result<(), Transient>,
    settings: &ConsumerSettings,
) {
    let subject = delivery.subject().to_string();
    let sequence = delivery.stream_sequence();
    match outcome {
        Ok(()) => {
            // Not waited for: a message that comes again is recognised (its effects are in the
            // state), so the round trip of a confirmed ack buys nothing here.
            if let Err(e) = delivery.ack_unconfirmed().await {
                tracing::warn!(subject, sequence, error = %e, "could not acknowledge; the redelivery will be recognised as a duplicate");
            }
        }
        Err(error) => {
            let attempt = delivery.delivery_attempt().max(1) as u32;
            let delay = settings
                .retry_delay
                .saturating_mul(attempt)
                .min(MAX_RETRY_DELAY);
            tracing::warn!(subject, sequence, attempt, ?delay, error = %error, "handling failed; the message will be retried");
            if let Err(e) = delivery.nak(Some(delay), &error.to_string()).await {
                tracing::warn!(subject, sequence, error = %e, "could not hand the message back; it is redelivered after the ack wait");
            }
        }
    }
}

/// The incident counters: committed once per change (a redelivery finds it applied).
fn count_change(change: &Change) {
    let metric = match change.kind {
        ChangeKind::Opened => &metrics::INCIDENTS_OPENED,
        ChangeKind::Grew | ChangeKind::Acknowledged => &metrics::INCIDENTS_UPDATED,
        ChangeKind::ResolvedByEvent | ChangeKind::ResolvedQuietly => &metrics::INCIDENTS_RESOLVED,
        ChangeKind::Counted | ChangeKind::Cleared | ChangeKind::Expired => return,
    };
    if let Some(version) = &change.emit {
        metric.increment(&[&version.incident_type.to_string()]);
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

/// The consumer options guardian uses for both subjects of `partition`.
pub fn subscribe_options(settings: &ConsumerSettings, partition: Partition) -> SubscribeOptions {
    SubscribeOptions {
        batch: settings.batch,
        partition: partition.durable(),
    }
}
