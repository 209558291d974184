//! The worker loop: takes commands off `titan.ops.command.v1`, decides whether each may run
//! (signature, replay window, idempotency), runs it on its target's lane, and answers with
//! receipts on `titan.ops.receipt.v1`.
//!
//! Admission, invalid payloads and each command's task run through
//! [`contracts::bus::isolate`]: a panic on one command is caught, the command is handed back and,
//! after its last delivery, dead-lettered as `handler_panicked`; the worker goes on.
//!
//! Ordering of a command's life, chosen so that a crash at any point neither runs a command
//! twice nor leaves it without exactly one final receipt:
//! 1. verify signature, clock skew and target (refusals get a failure receipt; nothing is
//!    recorded);
//! 2. wait for the target's lane (one command at a time per target; halt and cancel_all skip
//!    lanes), reporting progress so JetStream does not redeliver meanwhile;
//! 3. claim the id in the `ops_commands` bucket — only now, so a crash while queued leaves the
//!    command to the next worker — and an id seen before is never executed again;
//! 4. publish `pending` for long commands, execute, renewing the claim and reporting progress;
//! 5. record the final receipt in the bucket, publish it, then acknowledge the message.
//!
//! A redelivered command whose claim has no final receipt and no recent heartbeat was
//! interrupted by a crash: it gets a failure receipt saying so and is not run again. A claim
//! with a recent heartbeat belongs to another live worker: the copy is handed back for later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contracts::bus::{
    isolate, Bus, BusError, Delivery, Incoming, InvalidDelivery, SubscribeOptions,
};
use contracts::services::OpsWorker;
use contracts::target::{OpsTarget, TargetError};
use contracts::{OpsCommand, OpsReceipt, Timestamp};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::Executor;
use crate::receipts::{self, Status};
use crate::signing::SigningKeys;
use contracts::bus::{Claim, ClaimLog, ClaimRecord, Renewal};

/// How long a command whose receipt could not be published waits before it is redelivered.
const RETRY_PUBLISH: Duration = Duration::from_secs(2);
/// Command types that publish `pending` before they run.
/// Delay before a command whose handler panicked is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(2);
const LONG_COMMANDS: &[&str] = &["restart", "deploy", "halt", "export_evidence"];
/// Command types that wait for their target's lane (one at a time per target).
const LANED_COMMANDS: &[&str] = &["restart", "deploy", "export_evidence"];
/// Command types that `halt` and `cancel_all` cancel.
const CANCELLABLE: &[&str] = &["restart", "deploy", "export_evidence"];

/// A command being executed (or waiting for its lane).
struct InFlight {
    command_type: String,
    target: String,
    token: CancellationToken,
    cancelled_by: Arc<Mutex<Option<String>>>,
}

/// Everything a command task needs; shared by all of them.
struct Shared {
    bus: Bus<OpsWorker>,
    executor: Executor,
    log: ClaimLog,
    keys: SigningKeys,
    clock_skew: Duration,
    ack_wait: Duration,
    executor_id: String,
    in_flight: Mutex<HashMap<uuid::Uuid, InFlight>>,
    lanes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The running worker.
pub struct Worker {
    shared: Arc<Shared>,
    options: SubscribeOptions,
    tasks: TaskTracker,
}

/// Settings of the loop itself.
pub struct WorkerSettings {
    pub keys: SigningKeys,
    pub clock_skew: Duration,
    pub ack_wait: Duration,
    pub max_in_flight: usize,
    pub executor_id: String,
}

impl Worker {
    pub fn new(
        bus: Bus<OpsWorker>,
        executor: Executor,
        log: ClaimLog,
        settings: WorkerSettings,
    ) -> Self {
        let options = SubscribeOptions {
            batch: settings.max_in_flight.min(20),
        };
        Self {
            shared: Arc::new(Shared {
                bus,
                executor,
                log,
                keys: settings.keys,
                clock_skew: settings.clock_skew,
                ack_wait: settings.ack_wait,
                executor_id: settings.executor_id,
                in_flight: Mutex::new(HashMap::new()),
                lanes: Mutex::new(HashMap::new()),
            }),
            options,
            tasks: TaskTracker::new(),
        }
    }

    /// Consumes commands until `shutdown` resolves, then waits up to `drain` for the commands
    /// in flight. Commands still running after that are redelivered to the next worker, which
    /// reports them as interrupted.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> Result<(), BusError> {
        let mut commands = self
            .shared
            .bus
            .subscribe_checked::<OpsCommand>(self.options.clone())
            .await?;
        contracts::bus::check_heartbeat_fits(
            commands.consumer(),
            self.shared.ack_wait,
            commands.ack_wait(),
        )?;
        tracing::info!(
            consumer = commands.consumer(),
            "ops-worker consuming titan.ops.command.v1"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                next = commands.next() => match next {
                    None => break,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "receiving commands failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Some(Ok(Incoming::Invalid(invalid))) => {
                        let shared = &self.shared;
                        let _ = isolate(invalid, RETRY_DELAY, |i| shared.answer_invalid(i)).await;
                    }
                    Some(Ok(Incoming::Valid(delivery))) => {
                        let _ = isolate(delivery, RETRY_DELAY, |d| self.admit(d)).await;
                    }
                }
            }
        }
        drop(commands);
        self.tasks.close();
        let waiting = self.tasks.len();
        if waiting > 0 {
            tracing::info!(waiting, "draining commands in flight");
        }
        if tokio::time::timeout(drain, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "commands still running after the drain period; they will be redelivered"
            );
        }
        Ok(())
    }

    /// Checks a command and, if it may run, starts it in its own task.
    async fn admit(&self, delivery: Delivery<OpsCommand>) {
        let arrived = Instant::now();
        let shared = self.shared.clone();
        let command = delivery.message().clone();
        let command_type = command.type_.to_string();
        let raw: Value = match serde_json::from_slice(delivery.payload()) {
            Ok(raw) => raw,
            Err(e) => {
                return shared
                    .refuse(
                        delivery,
                        &command_type,
                        format!("unreadable payload: {e}"),
                        arrived,
                    )
                    .await
            }
        };
        if let Err(e) = shared.keys.verify(&raw) {
            return shared
                .refuse(delivery, &command_type, format!("refused: {e}"), arrived)
                .await;
        }
        if let Err(why) = shared.within_skew(&command.ts) {
            return shared.refuse(delivery, &command_type, why, arrived).await;
        }
        if let Err(e) = check_target(&command.target) {
            let why = format!("refused: {e}; name an allowlisted service exactly, `all`, or nothing for a platform-wide command; nothing was done");
            return shared.refuse(delivery, &command_type, why, arrived).await;
        }
        if command_type == "cancel_all" {
            let Some((delivery, revision)) = shared.claim(delivery, arrived).await else {
                return;
            };
            let cancelled =
                shared.cancel_in_flight(&format!("cancel_all {}", command.id), |_| true);
            let result = Map::from_iter([("cancelled".to_string(), json!(cancelled))]);
            return shared
                .finish(delivery, revision, Status::Success(result), arrived)
                .await;
        }
        if command_type == "halt" {
            let target = command.target.clone();
            shared.cancel_in_flight(&format!("halt {}", command.id), |f| {
                overlaps(&f.target, &target)
            });
        }
        let token = CancellationToken::new();
        let cancelled_by = Arc::new(Mutex::new(None));
        shared
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                command.id,
                InFlight {
                    command_type: command_type.clone(),
                    target: command.target.clone(),
                    token: token.clone(),
                    cancelled_by: cancelled_by.clone(),
                },
            );
        self.tasks.spawn(async move {
            let _ = isolate(delivery, RETRY_DELAY, |d| {
                shared.run_command(d, token, cancelled_by, arrived)
            })
            .await;
            shared
                .in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&command.id);
        });
    }
}

/// A target is empty (platform-wide commands; every service for export_evidence), `all`, or a
/// canonical name. Checked before anything else happens because lanes and halt's cancellations
/// compare targets as text: `"web "` must not get a lane of its own beside `"web"`.
fn check_target(target: &str) -> Result<(), TargetError> {
    if target.is_empty() {
        Ok(())
    } else {
        OpsTarget::parse(target).map(drop)
    }
}

/// Whether a command on `a` and one on `b` touch the same services.
fn overlaps(a: &str, b: &str) -> bool {
    a == b || a == "all" || b == "all"
}

impl Shared {
    fn within_skew(&self, ts: &Timestamp) -> Result<(), String> {
        let now = Timestamp::now();
        let issued = *ts;
        // Saturating: a window wider than the supported range accepts every supported instant.
        if issued < now.saturating_sub_std(self.clock_skew) {
            Err(format!(
                "refused: issued at {ts}, older than the {}s replay window (now {})",
                self.clock_skew.as_secs(),
                now
            ))
        } else if issued > now.saturating_add_std(self.clock_skew) {
            Err(format!("refused: issued at {ts}, more than {}s in the future (now {}); check the sender's clock", self.clock_skew.as_secs(), now))
        } else {
            Ok(())
        }
    }

    /// Cancels the commands in flight that `which` selects; returns their ids.
    fn cancel_in_flight(&self, by: &str, which: impl Fn(&InFlight) -> bool) -> Vec<String> {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut cancelled = Vec::new();
        for (id, flight) in in_flight.iter() {
            if CANCELLABLE.contains(&flight.command_type.as_str())
                && which(flight)
                && !flight.token.is_cancelled()
            {
                *flight.cancelled_by.lock().expect("cancel reason poisoned") = Some(by.to_string());
                flight.token.cancel();
                cancelled.push(id.to_string());
            }
        }
        cancelled.sort();
        cancelled
    }

    /// Claims the command's id when its execution is about to start. `None` when it must not
    /// run here: seen before (answered), being executed by another live instance (handed back
    /// for later), or the claim failed (handed back).
    async fn claim(
        &self,
        delivery: Delivery<OpsCommand>,
        arrived: Instant,
    ) -> Option<(Delivery<OpsCommand>, u64)> {
        let command_id = delivery.message().id;
        match self.log.claim(&command_id, &self.executor_id).await {
            Ok(Claim::New { revision }) => Some((delivery, revision)),
            Ok(Claim::Seen {
                record: record @ ClaimRecord::Claimed { .. },
                revision,
            }) => {
                // Alive or not is judged by watching the claim's revision on our own clock.
                match self
                    .log
                    .holder_is_gone(&command_id, revision, self.ack_wait, || {
                        let delivery = &delivery;
                        async move {
                            let _ = delivery.in_progress().await;
                        }
                    })
                    .await
                {
                    Ok(false) => {
                        tracing::info!(%command_id, "another worker is executing this command; checking back later");
                        let _ = delivery
                            .nak(Some(self.ack_wait / 2), "being executed by another worker")
                            .await;
                    }
                    Ok(true) => self.answer_seen(delivery, record, revision, arrived).await,
                    Err(e) => {
                        let _ = delivery
                            .nak(Some(Duration::from_secs(2)), &e.to_string())
                            .await;
                    }
                }
                None
            }
            Ok(Claim::Seen { record, revision }) => {
                self.answer_seen(delivery, record, revision, arrived).await;
                None
            }
            Err(e) => {
                tracing::error!(%command_id, error = %e, "cannot claim the command; it will be redelivered");
                let _ = delivery
                    .nak(Some(Duration::from_secs(2)), &e.to_string())
                    .await;
                None
            }
        }
    }

    async fn run_command(
        self: &Arc<Self>,
        delivery: Delivery<OpsCommand>,
        token: CancellationToken,
        cancelled_by: Arc<Mutex<Option<String>>>,
        arrived: Instant,
    ) {
        let command = delivery.message().clone();
        let command_type = command.type_.to_string();
        let mut heartbeat =
            tokio::time::interval((self.ack_wait / 3).max(Duration::from_millis(1)));
        heartbeat.tick().await;

        // Wait for the target's lane (reporting progress, so JetStream does not redeliver).
        let lane = LANED_COMMANDS
            .contains(&command_type.as_str())
            .then(|| self.lane(&command.target));
        let turn = async {
            match &lane {
                Some(lane) => Some(lane.lock().await),
                None => None,
            }
        };
        tokio::pin!(turn);
        let waited = loop {
            tokio::select! {
                guard = &mut turn => break Ok(guard),
                _ = token.cancelled() => break Err(()),
                _ = heartbeat.tick() => { let _ = delivery.in_progress().await; }
            }
        };
        // Claimed only now: a crash before this leaves the command to be run by the next worker.
        let Some((delivery, revision)) = self.claim(delivery, arrived).await else {
            return;
        };
        let mut renewal = Renewal::new(revision, self.ack_wait);
        let _turn = match waited {
            Ok(guard) => guard,
            Err(()) => {
                let by = cancelled_by
                    .lock()
                    .expect("cancel reason poisoned")
                    .clone()
                    .unwrap_or_default();
                let status =
                    Status::Failure(format!("cancelled by {by} while waiting for its target"));
                return self
                    .finish(delivery, renewal.revision(), status, arrived)
                    .await;
            }
        };
        if LONG_COMMANDS.contains(&command_type.as_str()) {
            let accepted = Map::from_iter([("accepted".to_string(), json!(true))]);
            self.publish(&command, Status::Pending(accepted), arrived)
                .await;
        }
        let outcome = {
            let work = self.executor.execute(&command, &token);
            tokio::pin!(work);
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = token.cancelled() => break Err("cancelled".to_string()),
                    _ = heartbeat.tick() => {
                        if let Err(e) = delivery.in_progress().await {
                            tracing::warn!(command_id = %command.id, error = %e, "could not report progress");
                        }
                        if let Err(fenced) = renewal.renew(&self.log, &command.id, &self.executor_id).await {
                            // Another instance may now take the command over: stop it here.
                            tracing::error!(command_id = %command.id, reason = %fenced, "stopping the command: its claim is lost");
                            *cancelled_by.lock().expect("cancel reason poisoned") =
                                Some(format!("the loss of its claim ({fenced})"));
                            token.cancel();
                        }
                    }
                }
            }
        };
        let status = match outcome {
            Ok(result) => Status::Success(result),
            Err(error) => match cancelled_by.lock().expect("cancel reason poisoned").clone() {
                Some(by) => Status::Failure(format!("cancelled by {by}: {error}")),
                None => Status::Failure(error),
            },
        };
        self.finish(delivery, renewal.revision(), status, arrived)
            .await;
    }

    fn lane(&self, target: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.lanes
            .lock()
            .expect("lanes poisoned")
            .entry(target.to_string())
            .or_default()
            .clone()
    }

    /// Records the final receipt, publishes it, then acknowledges the command.
    async fn finish(
        &self,
        delivery: Delivery<OpsCommand>,
        revision: u64,
        status: Status,
        arrived: Instant,
    ) {
        let command = delivery.message().clone();
        let receipt = match receipts::receipt(
            &command.id,
            &command.type_.to_string(),
            status,
            &self.executor_id,
            arrived,
        ) {
            Ok(receipt) => receipt,
            Err(e) => {
                tracing::error!(command_id = %command.id, error = %e, "built an invalid receipt");
                return;
            }
        };
        let value = serde_json::to_value(&receipt).expect("receipts serialize");
        if let Err(e) = self.log.finish(&command.id, &value, revision).await {
            tracing::error!(command_id = %command.id, error = %e, "cannot record the final receipt; the command will be redelivered");
            let _ = delivery
                .nak(Some(Duration::from_secs(2)), &e.to_string())
                .await;
            return;
        }
        if !self.publish_receipt(&receipt).await {
            // Recorded but not published: not acknowledged, so the redelivery publishes the
            // stored receipt (the command is not run again).
            let _ = delivery
                .nak(
                    Some(RETRY_PUBLISH),
                    "the final receipt is recorded but could not be published",
                )
                .await;
            return;
        }
        log_final(&command, &receipt);
        if let Err(e) = delivery.ack().await {
            tracing::warn!(command_id = %command.id, error = %e, "could not acknowledge; a redelivery will re-publish the stored receipt");
        }
    }

    /// A command that may not run: a failure receipt, nothing recorded (so a forged or stale
    /// copy cannot block the real command's id).
    async fn refuse(
        &self,
        delivery: Delivery<OpsCommand>,
        command_type: &str,
        why: String,
        arrived: Instant,
    ) {
        let command_id = delivery.message().id;
        tracing::warn!(%command_id, reason = %why, "command refused");
        let payload = delivery.payload().to_vec();
        match refusal(
            &command_id,
            &payload,
            command_type,
            why,
            &self.executor_id,
            arrived,
        ) {
            Ok(receipt) => {
                if !self.publish_receipt(&receipt).await {
                    let _ = delivery
                        .nak(Some(RETRY_PUBLISH), "the refusal could not be published")
                        .await;
                    return;
                }
            }
            Err(e) => tracing::error!(%command_id, error = %e, "built an invalid refusal receipt"),
        }
        if let Err(e) = delivery.ack().await {
            tracing::warn!(%command_id, error = %e, "could not acknowledge a refused command");
        }
    }

    /// A command id seen before: re-publish its receipt, or report the interrupted execution.
    async fn answer_seen(
        &self,
        delivery: Delivery<OpsCommand>,
        record: ClaimRecord,
        revision: u64,
        arrived: Instant,
    ) {
        let command = delivery.message().clone();
        match record {
            ClaimRecord::Finished { result: receipt } => {
                tracing::info!(command_id = %command.id, "command seen before: re-publishing its receipt, not executing it again");
                match contracts::decode_value::<OpsReceipt>(receipt) {
                    Ok(receipt) => {
                        if !self.publish_receipt(&receipt).await {
                            let _ = delivery
                                .nak(
                                    Some(RETRY_PUBLISH),
                                    "the stored receipt could not be published",
                                )
                                .await;
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(command_id = %command.id, error = %e, "the stored receipt is invalid")
                    }
                }
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(command_id = %command.id, error = %e, "could not acknowledge a repeated command");
                }
            }
            ClaimRecord::Claimed {
                worker: executor,
                at,
            } => {
                let why = format!(
                    "interrupted: worker {executor} stopped while executing this command (started {at}); \
                     it is not run again, to never run twice — check the target's state and send a new command if needed"
                );
                self.finish(delivery, revision, Status::Failure(why), arrived)
                    .await;
            }
        }
    }

    /// A message that is not a valid command: a failure receipt when its id and type can be
    /// read, otherwise a dead letter.
    async fn answer_invalid(&self, invalid: InvalidDelivery) {
        let arrived = Instant::now();
        let raw: Option<Value> = serde_json::from_slice(invalid.payload()).ok();
        let id = raw
            .as_ref()
            .and_then(|r| r.get("id")?.as_str()?.parse::<uuid::Uuid>().ok());
        let command_type = raw
            .as_ref()
            .and_then(|r| r.get("type")?.as_str().map(str::to_string));
        let receipt = match (id, command_type) {
            (Some(id), Some(command_type)) => refusal(
                &id,
                invalid.payload(),
                &command_type,
                format!("invalid command: {}", invalid.error()),
                &self.executor_id,
                arrived,
            )
            .ok(),
            _ => None,
        };
        let settled = match receipt {
            Some(receipt) => {
                tracing::warn!(command_id = %receipt.command_id, error = %invalid.error(), "invalid command answered with a failure receipt");
                if !self.publish_receipt(&receipt).await {
                    // Left unsettled: the server delivers it again after the ack wait.
                    return;
                }
                invalid.settle().await
            }
            None => {
                tracing::warn!(error = %invalid.error(), "unreadable command dead-lettered");
                invalid.reject().await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "could not settle an invalid command");
        }
    }

    async fn publish(&self, command: &OpsCommand, status: Status, arrived: Instant) {
        match receipts::receipt(
            &command.id,
            &command.type_.to_string(),
            status,
            &self.executor_id,
            arrived,
        ) {
            Ok(receipt) => {
                // A pending receipt that is lost only means the final one comes unannounced.
                self.publish_receipt(&receipt).await;
            }
            Err(e) => {
                tracing::error!(command_id = %command.id, error = %e, "built an invalid receipt")
            }
        }
    }

    /// Publishes `receipt` (a few tries); whether the server stored it.
    async fn publish_receipt(&self, receipt: &OpsReceipt) -> bool {
        match self.bus.publish_retrying(receipt, 3).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(receipt_id = %receipt.id, command_id = %receipt.command_id, error = %e, "gave up publishing a receipt; the command is handed back");
                false
            }
        }
    }
}

/// A failure receipt for a command message that did not run. Its id is derived from the
/// message's bytes (`receipts::refusal_id`): it never collides with the final receipt of the
/// real command with the same id, and only the sender of those bytes takes it as its answer.
fn refusal(
    command_id: &uuid::Uuid,
    payload: &[u8],
    command_type: &str,
    why: String,
    executor_id: &str,
    arrived: Instant,
) -> Result<OpsReceipt, contracts::ContractError> {
    let mut receipt = receipts::receipt(
        command_id,
        command_type,
        Status::Failure(why),
        executor_id,
        arrived,
    )?;
    receipt.id = receipts::refusal_id(command_id, payload);
    Ok(receipt)
}

fn log_final(command: &OpsCommand, receipt: &OpsReceipt) {
    let status = receipt.status.to_string();
    match &receipt.error {
        Some(error) => {
            tracing::warn!(command_id = %command.id, command_type = %command.type_, target = %command.target, %status, error = %error.as_str(), "command finished")
        }
        None => {
            tracing::info!(command_id = %command.id, command_type = %command.type_, target = %command.target, %status, "command finished")
        }
    }
}
