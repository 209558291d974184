//! One guardian process: it joins the other instances, holds an even share of the partitions
//! (a lease each, see [`crate::lease`] and [`crate::partition`]) and runs a [`Guardian`] per
//! partition it holds.
//!
//! Every `ttl / 4` the instance renews its member key, counts the live members and compares
//! what it holds with its fair share (the partition count divided by the live members, rounded
//! up). Below it, it takes partitions that are free or whose holder stopped renewing for a
//! whole `ttl`; above it (a new instance joined), it hands the extra ones back: their message in
//! hand is finished, then the lease is deleted so that the newcomer takes them at its next look.
//! A partition lost against the rules (its lease taken over or not renewed in time) stops the
//! whole instance with an error: the supervisor restarts it and it comes back as a member.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use contracts::buckets::GuardianState;
use contracts::bus::Bus;
use contracts::services::Guardian as GuardianIdentity;
use contracts::Service;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::GuardianConfig;
use crate::lease::{self, Bucket, Lease, Standby};
use crate::members::{fair_share, Members};
use crate::partition::Partition;
use crate::service::{Guardian, ServiceError};
use crate::store::StoreError;

/// First pause before a failed restore is tried again (doubling up to [`MAX_RESTORE_PAUSE`]).
const RESTORE_PAUSE: Duration = Duration::from_millis(500);
const MAX_RESTORE_PAUSE: Duration = Duration::from_secs(8);

/// What `guardian run` does once the bootstrap (`contracts::runtime::ServiceMain`) has
/// connected and checked provisioning: hold a fair share of the partitions and consume them
/// until `shutdown`, then hand them back. The bootstrap closes the bus.
pub async fn run(
    bus: Bus<GuardianIdentity>,
    config: &GuardianConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let bucket = bus
        .records::<GuardianState>()
        .await
        .map_err(|source| StoreError {
            what: "opening the bucket".into(),
            source,
        })?;
    let holder = lease::instance_name();
    let members = Members::new(
        bucket.clone(),
        GuardianIdentity::PARTITIONS,
        &holder,
        config.lease_ttl,
    );
    let mut instance = Instance {
        bus,
        config: config.clone(),
        bucket,
        holder,
        members,
        held: BTreeMap::new(),
        releasing: BTreeSet::new(),
        standbys: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let outcome = instance.hold_partitions(shutdown).await;
    instance.stop_all().await;
    instance.members.leave().await;
    outcome
}

/// The partitions this process holds and how it decides.
struct Instance {
    bus: Bus<GuardianIdentity>,
    config: GuardianConfig,
    bucket: Bucket,
    holder: String,
    members: Members,
    /// Held partitions and the token that stops each one's consumer.
    held: BTreeMap<u32, CancellationToken>,
    /// Held partitions being handed back (stopping).
    releasing: BTreeSet<u32>,
    /// What this instance has seen of the leases of partitions it does not hold.
    standbys: HashMap<u32, Standby>,
    tasks: JoinSet<(u32, Result<(), ServiceError>)>,
}

impl Instance {
    async fn hold_partitions(
        &mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        tokio::pin!(shutdown);
        let mut look = tokio::time::interval(self.config.lease_ttl / 4);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                Some(finished) = self.tasks.join_next() => {
                    let (index, outcome) = finished.expect("a partition task does not panic");
                    self.held.remove(&index);
                    if self.releasing.remove(&index) {
                        outcome?;
                        tracing::info!(partition = index, "partition handed back");
                    } else {
                        // A partition ends on its own only when its lease is lost or it failed.
                        outcome?;
                        return Err(ServiceError::SubscriptionEnded);
                    }
                }
                _ = look.tick() => self.rebalance().await,
            }
        }
    }

    /// Takes or hands back partitions until this instance holds its fair share.
    async fn rebalance(&mut self) {
        let live = self.members.renew_and_count().await;
        let share = fair_share(GuardianIdentity::PARTITIONS, live);
        let holding = self.held.len() - self.releasing.len();
        if holding > share {
            let extra: Vec<u32> = self
                .held
                .keys()
                .filter(|i| !self.releasing.contains(i))
                .rev()
                .take(holding - share)
                .copied()
                .collect();
            for index in extra {
                tracing::info!(
                    partition = index,
                    live,
                    share,
                    "handing a partition back for another instance"
                );
                self.releasing.insert(index);
                self.held[&index].cancel();
            }
            return;
        }
        let ttl = self.config.lease_ttl;
        let mut holding = holding;
        for partition in Partition::all() {
            if self.held.contains_key(&partition.index) {
                continue;
            }
            let key = partition.lease_key();
            let standby = self.standbys.entry(partition.index).or_default();
            if holding >= share {
                standby.observe(&self.bucket, &key, ttl).await;
                continue;
            }
            let Some(taken) =
                Lease::try_acquire(&self.bucket, &key, &self.holder, ttl, standby).await
            else {
                continue;
            };
            self.standbys.remove(&partition.index);
            holding += 1;
            self.start(partition, taken);
        }
    }

    /// Runs `partition`'s guardian under its lease until told to stop or the lease is lost.
    fn start(&mut self, partition: Partition, lease: Lease) {
        let stop = CancellationToken::new();
        self.held.insert(partition.index, stop.clone());
        let bus = self.bus.clone();
        let mut config = self.config.clone();
        config.limits = config.limits.shared_by(partition.count);
        self.tasks.spawn(async move {
            let taken_at = lease.revision();
            let keeper = lease.keep();
            let lost = keeper.lost();
            let ended = async {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = lost.cancelled() => {}
                }
            };
            tokio::pin!(ended);
            let consumed = match restore(&bus, &config, partition, taken_at, &mut ended).await {
                Some(guardian) => guardian.run(ended).await.map(drop),
                None => Ok(()),
            };
            let released = keeper.release().await.map_err(ServiceError::from);
            (partition.index, consumed.and(released))
        });
    }

    /// Stops every partition (each finishes its message in hand) and releases their leases.
    async fn stop_all(&mut self) {
        for stop in self.held.values() {
            stop.cancel();
        }
        while let Some(finished) = self.tasks.join_next().await {
            if let Ok((index, Err(e))) = finished {
                tracing::warn!(partition = index, error = %e, "partition stopped with an error");
            }
        }
        self.held.clear();
    }
}

/// Restores `partition`'s state, trying again while it cannot be read (on a cluster that just
/// lost a node, a read may time out for a while), until `ended` (then `None`). The lease stays
/// held meanwhile, so nobody else handles the partition either.
async fn restore(
    bus: &Bus<GuardianIdentity>,
    config: &GuardianConfig,
    partition: Partition,
    taken_at: u64,
    ended: &mut (impl Future<Output = ()> + Unpin),
) -> Option<Guardian> {
    let mut pause = RESTORE_PAUSE;
    loop {
        match Guardian::start_since(bus.clone(), config, partition, taken_at).await {
            Ok(guardian) => return Some(guardian),
            Err(e) => {
                tracing::warn!(%partition, error = %e, retry_in = ?pause, "could not restore the partition's state; trying again");
            }
        }
        tokio::select! {
            () = &mut *ended => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RESTORE_PAUSE);
    }
}
