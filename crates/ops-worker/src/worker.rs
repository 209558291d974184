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
//! 2. register a cancellable command (restart, deploy, export_evidence) on the control board
//!    ([`crate::control`]), so that a halt or cancel_all handled by any instance reaches it;
//! 3. wait for the target's lane (one command at a time per target; halt, cancel_all and
//!    withdraw skip lanes), reporting progress so JetStream does not redeliver meanwhile;
//! 4. claim the id in the `ops_commands` bucket — only now, so a crash while queued leaves the
//!    command to the next worker — and an id seen before is never executed again; a command
//!    whose turn came after its replay window is answered, never started;
//! 5. publish `pending` for long commands, execute, renewing the claim and reporting progress;
//!    a cancellation is honoured by the executor at its next safe point, never by dropping the
//!    work mid-step;
//! 6. record the final receipt in the bucket, publish it, acknowledge the message, and take the
//!    command off the board.
//!
//! halt and cancel_all are claimed before they cancel anything (a replay cancels nothing), and
//! answer only once the work they cancelled has ended on every instance.
//!
//! A redelivered command whose claim has no final receipt and no recent heartbeat was
//! interrupted by a crash: it gets a failure receipt saying so and is not run again. A claim
//! with a recent heartbeat belongs to another live worker: the copy is handed back for later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contracts::bus::{
    isolate, serve, Admission, AtMostOnce, Bus, BusError, Claim, ClaimLog, ClaimRecord, Delivery,
    Held, Incoming, InvalidDelivery, SubscribeOptions, WhenLost,
};
use contracts::generated::ops_command_v1::OpsCommandType;
use contracts::generated::ops_receipt_v1::OpsReceiptType;
use contracts::services::OpsWorker;
use contracts::target::{OpsTarget, TargetError};
use contracts::{metrics, OpsCommand, OpsReceipt, Timestamp};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{Cancellation, ControlBoard, Running, Scope};
use crate::executor::Executor;
use crate::receipts::{self, Failure, FailureCode, Status};
use ops_client::{receipt_type, SigningKeys};

/// How long a command whose refusal could not be published waits before it is redelivered.
const RETRY_PUBLISH: Duration = Duration::from_secs(2);
/// Delay before a command whose handler panicked is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Commands that publish `pending` before they run.
fn is_long(kind: OpsCommandType) -> bool {
    matches!(
        kind,
        OpsCommandType::Restart
            | OpsCommandType::Deploy
            | OpsCommandType::Halt
            | OpsCommandType::ExportEvidence
    )
}

/// Commands that wait for their target's lane (one at a time per target).
fn is_laned(kind: OpsCommandType) -> bool {
    is_cancellable(kind)
}

/// Commands that `halt`, `cancel_all` and `withdraw` act on; each is registered on the control
/// board while it is in flight.
fn is_cancellable(kind: OpsCommandType) -> bool {
    matches!(
        kind,
        OpsCommandType::Restart | OpsCommandType::Deploy | OpsCommandType::ExportEvidence
    )
}

/// The cancellable types, as `withdraw`'s error names them.
const CANCELLABLE_NAMES: &str = "restart, deploy, export_evidence";

/// A command being executed (or waiting for its lane).
struct InFlight {
    command_type: OpsCommandType,
    target: String,
    token: CancellationToken,
    cancelled_by: Arc<Mutex<Option<String>>>,
}

/// Everything a command task needs; shared by all of them.
struct Shared {
    bus: Bus<OpsWorker>,
    /// Claims, heartbeats and final receipts: a command runs at most once.
    once: AtMostOnce<OpsWorker, OpsReceipt>,
    executor: Executor,
    board: ControlBoard,
    keys: SigningKeys,
    clock_skew: Duration,
    cancel_wait: Duration,
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
    /// How long `halt`, `cancel_all` and `withdraw` wait for the work they cancel to end.
    pub cancel_wait: Duration,
    pub max_in_flight: usize,
    pub executor_id: String,
}

impl Worker {
    pub fn new(
        bus: Bus<OpsWorker>,
        executor: Executor,
        log: ClaimLog,
        board: ControlBoard,
        settings: WorkerSettings,
    ) -> Self {
        let options = SubscribeOptions::batch(settings.max_in_flight.min(20));
        Self {
            shared: Arc::new(Shared {
                once: AtMostOnce::new(bus.clone(), log, settings.executor_id, settings.ack_wait),
                bus,
                executor,
                board,
                keys: settings.keys,
                clock_skew: settings.clock_skew,
                cancel_wait: settings.cancel_wait,
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
        // Watching before consuming: a cancellation announced after this is never missed.
        let watcher = {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let board = shared.board.clone();
                board
                    .follow_cancellations(|announced| {
                        shared.cancel_local(&announced.cancellation);
                    })
                    .await
            })
        };
        let commands = self
            .shared
            .bus
            .subscribe_checked::<OpsCommand>(self.options.clone())
            .await?;
        self.shared.once.fits(&commands)?;
        serve(commands, shutdown, self.tasks.clone(), drain, |incoming| {
            let worker = &self;
            async move {
                match incoming {
                    Incoming::Invalid(invalid) => {
                        let shared = &worker.shared;
                        let _ = isolate(invalid, RETRY_DELAY, |i| shared.answer_invalid(i)).await;
                    }
                    Incoming::Valid(delivery) => {
                        let _ = isolate(delivery, RETRY_DELAY, |d| worker.admit(d)).await;
                    }
                }
            }
        })
        .await;
        // Only now: a halt seen while draining still stops the work in flight here.
        watcher.abort();
        Ok(())
    }

    /// Checks a command and, if it may run, starts it in its own task.
    async fn admit(&self, delivery: Delivery<OpsCommand>) {
        let arrived = Instant::now();
        let shared = self.shared.clone();
        let command = delivery.message().clone();
        let command_type = receipt_type(command.type_);
        let raw: Value = match serde_json::from_slice(delivery.payload()) {
            Ok(raw) => raw,
            Err(e) => {
                let why = Failure::new(
                    FailureCode::InvalidCommand,
                    format!("unreadable payload: {e}"),
                );
                return shared.refuse(delivery, command_type, why, arrived).await;
            }
        };
        if let Err(e) = shared.keys.verify(&raw) {
            let why = Failure::new(FailureCode::Signature, format!("refused: {e}"));
            return shared.refuse(delivery, command_type, why, arrived).await;
        }
        if let Err(why) = shared.within_skew(&command.ts) {
            return shared.refuse(delivery, command_type, why, arrived).await;
        }
        if let Err(e) = check_target(&command.target) {
            let why = Failure::new(FailureCode::InvalidTarget, format!("refused: {e}; name an allowlisted service exactly, `all`, or nothing for a platform-wide command; nothing was done"));
            return shared.refuse(delivery, command_type, why, arrived).await;
        }
        if matches!(
            command.type_,
            OpsCommandType::CancelAll | OpsCommandType::Withdraw
        ) {
            // Claimed first: a replayed copy is answered "seen before" and cancels nothing.
            let Some(held) = shared.claim(delivery, arrived).await else {
                return;
            };
            let work = async {
                if command.type_ == OpsCommandType::CancelAll {
                    match shared.cancel_everywhere(&command, Scope::Everything).await {
                        Ok(cancelled) => Status::Success(Map::from_iter([(
                            "cancelled".to_string(),
                            json!(cancelled),
                        )])),
                        Err(why) => Status::Failure(why),
                    }
                } else {
                    shared.withdraw(&command, arrived).await
                }
            };
            // Nothing to stop when its claim is lost: the waiting ends by itself, and the
            // receipt is then refused by the claim's new revision.
            let status = match shared
                .once
                .heartbeat(&held, work, |_| WhenLost::Continue)
                .await
            {
                Ok(status) => status,
                Err(lost) => return shared.once.hand_back(held, lost).await,
            };
            return shared.finish(held, status, arrived).await;
        }
        let token = CancellationToken::new();
        let cancelled_by = Arc::new(Mutex::new(None));
        let cancellable = is_cancellable(command.type_);
        // In the table before it is on the board: a cancellation seen in between finds it.
        shared
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                command.id,
                InFlight {
                    command_type: command.type_,
                    target: command.target.clone(),
                    token: token.clone(),
                    cancelled_by: cancelled_by.clone(),
                },
            );
        if cancellable {
            if let Err(why) = shared.register(&command, &token, &cancelled_by).await {
                shared.forget(&command.id);
                tracing::error!(command_id = %command.id, error = %why, "cannot register the command on the control board; it will be redelivered");
                let _ = delivery.nak(Some(Duration::from_secs(2)), &why).await;
                return;
            }
        }
        self.tasks.spawn(async move {
            let _ = isolate(delivery, RETRY_DELAY, |d| {
                shared.run_command(d, token, cancelled_by, arrived)
            })
            .await;
            shared.forget(&command.id);
            if cancellable {
                shared.release(&command.id).await;
            }
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

impl Shared {
    fn within_skew(&self, ts: &Timestamp) -> Result<(), Failure> {
        let now = Timestamp::now();
        let issued = *ts;
        // Saturating: a window wider than the supported range accepts every supported instant.
        if issued < now.saturating_sub_std(self.clock_skew) {
            Err(Failure::new(
                FailureCode::ReplayWindow,
                format!(
                    "refused: issued at {ts}, older than the {}s replay window (now {})",
                    self.clock_skew.as_secs(),
                    now
                ),
            ))
        } else if issued > now.saturating_add_std(self.clock_skew) {
            Err(Failure::new(FailureCode::ReplayWindow, format!("refused: issued at {ts}, more than {}s in the future (now {}); check the sender's clock", self.clock_skew.as_secs(), now)))
        } else {
            Ok(())
        }
    }

    /// Cancels the commands this instance has in flight that `cancellation` covers; returns
    /// their ids. Every instance calls it for every cancellation it sees on the board.
    fn cancel_local(&self, cancellation: &Cancellation) -> Vec<uuid::Uuid> {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut cancelled = Vec::new();
        for (id, flight) in in_flight.iter() {
            if is_cancellable(flight.command_type)
                && cancellation.scope.covers(&flight.target)
                && !flight.token.is_cancelled()
            {
                *flight.cancelled_by.lock().expect("cancel reason poisoned") =
                    Some(cancellation.by.clone());
                flight.token.cancel();
                cancelled.push(*id);
            }
        }
        if !cancelled.is_empty() {
            tracing::info!(by = %cancellation.by, ?cancelled, "cancelled commands in flight here");
        }
        cancelled
    }

    /// Puts a cancellable command on the board. If an earlier holder registered it and a
    /// cancellation covering it came after, it starts out cancelled: its first holder may have
    /// died before it could stop it.
    async fn register(
        &self,
        command: &OpsCommand,
        token: &CancellationToken,
        cancelled_by: &Mutex<Option<String>>,
    ) -> Result<(), String> {
        let running = Running {
            command_type: command.type_.to_string(),
            target: command.target.clone(),
            worker: self.once.holder().to_string(),
        };
        let earlier = self
            .board
            .register(&command.id, &running)
            .await
            .map_err(|e| e.to_string())?;
        let Some(earlier) = earlier else {
            return Ok(());
        };
        let covering = self
            .board
            .cancelled_since(&command.target, earlier)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(cancellation) = covering {
            *cancelled_by.lock().expect("cancel reason poisoned") = Some(cancellation.by);
            token.cancel();
        }
        Ok(())
    }

    fn forget(&self, id: &uuid::Uuid) {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Takes a command off the board once it has its final receipt. One handed back (to be
    /// redelivered) stays on it: the next holder registers it again.
    async fn release(&self, id: &uuid::Uuid) {
        if !matches!(
            self.once.log().get(id).await,
            Ok(Some(ClaimRecord::Finished { .. }))
        ) {
            return;
        }
        if let Err(e) = self.board.unregister(id).await {
            tracing::warn!(command_id = %id, error = %e, "could not take a finished command off the control board; cancellations treat it as ended by its receipt");
        }
    }

    /// Whether `id` is still at work somewhere: on the board and without a final receipt. An
    /// unreadable board or log counts as still at work, so no end is reported that was not seen.
    async fn still_at_work(&self, id: &uuid::Uuid) -> bool {
        if !self.board.is_running(id).await.unwrap_or(true) {
            return false;
        }
        !matches!(
            self.once.log().get(id).await,
            Ok(Some(ClaimRecord::Finished { .. }))
        )
    }

    /// Broadcasts the cancellation `command` asks for, cancels what this instance runs, and waits
    /// (up to `cancel_wait`) until every covered command on every instance has ended. Returns
    /// their ids; an error names those still at work.
    async fn cancel_everywhere(
        &self,
        command: &OpsCommand,
        scope: Scope,
    ) -> Result<Vec<String>, Failure> {
        let cancellation = Cancellation {
            by: format!("{} {}", command.type_, command.id),
            scope,
        };
        // Listed before the broadcast too: a covered command cancelled and ended by its own
        // instance before the listing after the broadcast would not be in that one.
        let before = self.board.covered(&cancellation.scope, u64::MAX).await;
        let revision = self
            .board
            .announce(&command.id, &cancellation)
            .await
            .map_err(|e| {
                Failure::new(
                    FailureCode::Internal,
                    format!("the cancellation could not be broadcast, nothing was cancelled: {e}"),
                )
            })?;
        self.cancel_local(&cancellation);
        let after = self.board.covered(&cancellation.scope, revision).await;
        let mut covered: Vec<uuid::Uuid> = before
            .into_iter()
            .chain(after.map_err(|e| {
                Failure::new(
                    FailureCode::Internal,
                    format!("cancelled, but the commands covered cannot be listed: {e}"),
                )
            }))
            .flatten()
            .map(|(id, _)| id)
            .filter(|id| *id != command.id)
            .collect();
        covered.sort();
        covered.dedup();
        let deadline = tokio::time::Instant::now() + self.cancel_wait;
        let mut left = covered.clone();
        let every = Duration::from_millis(100);
        let mut look = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let mut still = Vec::new();
            for id in left {
                if self.still_at_work(&id).await {
                    still.push(id);
                }
            }
            left = still;
            if left.is_empty() {
                return Ok(covered.iter().map(ToString::to_string).collect());
            }
            if tokio::time::Instant::now() >= deadline {
                let left: Vec<String> = left.iter().map(ToString::to_string).collect();
                return Err(Failure::new(
                    FailureCode::StillRunning,
                    format!(
                        "cancelled {} command(s), but {} still ran after {} s: {}",
                        covered.len(),
                        left.len(),
                        self.cancel_wait.as_secs(),
                        left.join(", ")
                    ),
                ));
            }
            look.tick().await;
        }
    }

    /// Claims the command's id when its execution is about to start. `None` when it must not
    /// run here: seen before (its receipt published again), interrupted on an instance that
    /// stopped (answered so, never run again), being executed by another live instance or the
    /// claim failed (handed back for later).
    async fn claim(
        &self,
        delivery: Delivery<OpsCommand>,
        arrived: Instant,
    ) -> Option<Held<OpsCommand>> {
        let command_id = delivery.message().id;
        match self.once.admit(delivery, command_id).await {
            Admission::Fresh(held) => Some(held),
            Admission::Settled => None,
            Admission::Interrupted {
                held,
                holder,
                since,
            } => {
                let why = format!(
                    "interrupted: worker {holder} stopped while executing this command (started {since}); \
                     it is not run again, to never run twice — check the target's state and send a new command if needed"
                );
                let why = Failure::new(FailureCode::Interrupted, why);
                self.finish(held, Status::Failure(why), arrived).await;
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
        let mut heartbeat = {
            // The first beat one period from now (an immediate first tick costs ~1 ms).
            let period = (self.once.ack_wait() / 3).max(Duration::from_millis(1));
            tokio::time::interval_at(tokio::time::Instant::now() + period, period)
        };

        // Wait for the target's lane (reporting progress, so JetStream does not redeliver).
        let lane = is_laned(command.type_).then(|| self.lane(&command.target));
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
        let Some(held) = self.claim(delivery, arrived).await else {
            return;
        };
        let _turn = match waited {
            Ok(guard) => guard,
            Err(()) => {
                let by = cancelled_by
                    .lock()
                    .expect("cancel reason poisoned")
                    .clone()
                    .unwrap_or_default();
                let status = Status::Failure(Failure::new(
                    FailureCode::Cancelled,
                    format!("cancelled by {by} while waiting for its target"),
                ));
                return self.finish(held, status, arrived).await;
            }
        };
        // A command whose turn came after its replay window never starts: whoever sent it
        // may have stopped waiting, and a withdrawal must stay true.
        if let Err(why) = self.within_skew(&command.ts) {
            let status = Status::Failure(why.context("not started: its turn came too late"));
            return self.finish(held, status, arrived).await;
        }
        if is_long(command.type_) {
            let accepted = Map::from_iter([("accepted".to_string(), json!(true))]);
            self.publish_pending(&command, accepted, arrived).await;
        }
        let work = async {
            let halted = match command.type_ {
                OpsCommandType::Halt => Some(self.halt_everywhere(&command).await),
                _ => None,
            };
            (halted, self.executor.execute(&command, &token).await)
        };
        // Never dropped when its claim is lost or it is cancelled: the executor stops at its
        // next safe point (a restart never starts a container after the cancel, a deploy rolls
        // back), and only then is the command over — what halt waits for.
        let stop_when_lost = |fenced: &contracts::bus::ClaimFenced| {
            *cancelled_by.lock().expect("cancel reason poisoned") =
                Some(format!("the loss of its claim ({fenced})"));
            token.cancel();
            WhenLost::Continue
        };
        let (halted, outcome) = match self.once.heartbeat(&held, work, stop_when_lost).await {
            Ok(done) => done,
            Err(lost) => return self.once.hand_back(held, lost).await,
        };
        let status = match outcome {
            Ok(result) => Status::Success(result),
            Err(error) => match cancelled_by.lock().expect("cancel reason poisoned").clone() {
                Some(by) => Status::Failure(Failure::new(
                    FailureCode::Cancelled,
                    format!("cancelled by {by}: {error}"),
                )),
                None => Status::Failure(error),
            },
        };
        let status = match (status, halted) {
            (Status::Success(mut result), Some(Ok(cancelled))) => {
                result.insert("cancelled".into(), json!(cancelled));
                Status::Success(result)
            }
            (Status::Success(result), Some(Err(why))) => Status::Failure(Failure::new(
                why.code,
                format!(
                    "{why}; the platform is disarmed and this was stopped anyway: {}",
                    Value::Object(result)
                ),
            )),
            (status, _) => status,
        };
        self.finish(held, status, arrived).await;
    }

    /// What `halt` does before it stops its target's containers: disarm, so nothing automated
    /// starts meanwhile, then cancel the work on its target on every instance and wait for it
    /// to end — a cancelled deploy rolls back, and must not start a container after halt
    /// stopped them.
    async fn halt_everywhere(&self, command: &OpsCommand) -> Result<Vec<String>, Failure> {
        if command.target.is_empty() {
            // The executor refuses it, naming the fix; nothing to cancel.
            return Ok(Vec::new());
        }
        if let Err(e) = self.executor.interlock.set_armed(false, command.id).await {
            tracing::error!(command_id = %command.id, error = %e, "halt could not disarm before cancelling; cancelling anyway");
        }
        self.cancel_everywhere(
            command,
            Scope::Target {
                target: command.target.clone(),
            },
        )
        .await
    }

    /// `withdraw`: takes back the command named in `params` if it has not started — it is
    /// recorded as finished, so it never will — or, if it runs, waits (up to `cancel_wait`) for
    /// it to end without cancelling it: a restart half done is worse than a late answer. Its
    /// final receipt is published either way, and is this receipt's `result.receipt`.
    async fn withdraw(&self, command: &OpsCommand, arrived: Instant) -> Status {
        let (id, kind) = match withdrawn_command(&command.params) {
            Ok(named) => named,
            Err(why) => return Status::Failure(why),
        };
        let withdrawn = receipts::receipt(
            &id,
            receipt_type(kind),
            Status::Failure(Failure::new(
                FailureCode::Withdrawn,
                format!(
                    "withdrawn by withdraw {}: it had not started and never will",
                    command.id
                ),
            )),
            self.once.holder(),
            arrived,
        );
        let withdrawn = serde_json::to_value(&withdrawn).expect("receipts serialize");
        let deadline = tokio::time::Instant::now() + self.cancel_wait;
        let (receipt, withdrew) = loop {
            match self.once.log().settle_unclaimed(&id, &withdrawn).await {
                Ok(Claim::New { .. }) => break (withdrawn, true),
                Ok(Claim::Seen {
                    record: ClaimRecord::Finished { result },
                    ..
                }) => break (result, false),
                Ok(Claim::Seen {
                    record: ClaimRecord::Claimed { worker, .. },
                    ..
                }) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Status::Failure(Failure::new(
                            FailureCode::StillRunning,
                            format!(
                                "{id} is still running on {worker} after {} s; withdraw again later",
                                self.cancel_wait.as_secs()
                            ),
                        ));
                    }
                }
                Err(e) => {
                    return Status::Failure(Failure::new(
                        FailureCode::Internal,
                        format!("cannot read or record {id}: {e}"),
                    ))
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match contracts::decode_value::<OpsReceipt>(receipt.clone()) {
            Ok(final_receipt) if self.once.publish_result(&final_receipt).await => {}
            Ok(_) => {
                return Status::Failure(Failure::new(
                    FailureCode::Internal,
                    format!("the final receipt of {id} is recorded but could not be published; withdraw again"),
                ))
            }
            Err(e) => {
                tracing::error!(command_id = %id, error = %e, "the stored receipt is invalid")
            }
        }
        Status::Success(Map::from_iter([
            ("command_id".to_string(), json!(id)),
            ("withdrawn".to_string(), json!(withdrew)),
            ("receipt".to_string(), receipt),
        ]))
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
    async fn finish(&self, held: Held<OpsCommand>, status: Status, arrived: Instant) {
        let command = held.message().clone();
        let receipt = receipts::receipt(
            &command.id,
            receipt_type(command.type_),
            status,
            self.once.holder(),
            arrived,
        );
        if self.once.finish(held, &receipt).await {
            log_final(&command, &receipt);
            count_final(&receipt, arrived);
        }
    }

    /// A command that may not run: a failure receipt, nothing recorded (so a forged or stale
    /// copy cannot block the real command's id).
    async fn refuse(
        &self,
        delivery: Delivery<OpsCommand>,
        command_type: OpsReceiptType,
        why: Failure,
        arrived: Instant,
    ) {
        let command_id = delivery.message().id;
        tracing::warn!(%command_id, reason = %why, "command refused");
        match why.code {
            FailureCode::Signature => metrics::OPS_HMAC_FAILURES.increment(&[]),
            FailureCode::ReplayWindow => metrics::OPS_REPLAY_REFUSALS.increment(&[]),
            _ => {}
        }
        let receipt = refusal(
            &command_id,
            delivery.payload(),
            command_type,
            why,
            self.once.holder(),
            arrived,
        );
        if !self.once.publish_result(&receipt).await {
            let _ = delivery
                .nak(Some(RETRY_PUBLISH), "the refusal could not be published")
                .await;
            return;
        }
        count_final(&receipt, arrived);
        if let Err(e) = delivery.ack().await {
            tracing::warn!(%command_id, error = %e, "could not acknowledge a refused command");
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
            .and_then(|r| r.get("type")?.as_str()?.parse::<OpsReceiptType>().ok());
        let receipt = match (id, command_type) {
            (Some(id), Some(command_type)) => Some(refusal(
                &id,
                invalid.payload(),
                command_type,
                Failure::new(
                    FailureCode::InvalidCommand,
                    format!("invalid command: {}", invalid.error()),
                ),
                self.once.holder(),
                arrived,
            )),
            _ => None,
        };
        let settled = match receipt {
            Some(receipt) => {
                tracing::warn!(command_id = %receipt.command_id, error = %invalid.error(), "invalid command answered with a failure receipt");
                if !self.once.publish_result(&receipt).await {
                    // Left unsettled: the server delivers it again after the ack wait.
                    return;
                }
                count_final(&receipt, arrived);
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

    /// Announces a long command: a pending receipt that is lost only means the final one comes
    /// unannounced.
    async fn publish_pending(
        &self,
        command: &OpsCommand,
        accepted: Map<String, Value>,
        arrived: Instant,
    ) {
        let receipt = receipts::receipt(
            &command.id,
            receipt_type(command.type_),
            Status::Pending(accepted),
            self.once.holder(),
            arrived,
        );
        self.once.publish_result(&receipt).await;
    }
}

/// A failure receipt for a command message that did not run. Its id is derived from the
/// message's bytes (`receipts::refusal_id`): it never collides with the final receipt of the
/// real command with the same id, and only the sender of those bytes takes it as its answer.
fn refusal(
    command_id: &uuid::Uuid,
    payload: &[u8],
    command_type: OpsReceiptType,
    why: Failure,
    executor_id: &str,
    arrived: Instant,
) -> OpsReceipt {
    let mut receipt = receipts::receipt(
        command_id,
        command_type,
        Status::Failure(why),
        executor_id,
        arrived,
    );
    receipt.id = receipts::refusal_id(command_id, payload);
    receipt
}

/// The command a `withdraw` names: `params.command_id` and `params.command_type`, a type that
/// can be cancelled.
fn withdrawn_command(params: &Map<String, Value>) -> Result<(uuid::Uuid, OpsCommandType), Failure> {
    let id = params
        .get("command_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<uuid::Uuid>().ok())
        .ok_or_else(|| {
            Failure::new(
                FailureCode::BadParams,
                "withdraw needs params.command_id: the UUID of the command to take back",
            )
        })?;
    let kind = params
        .get("command_type")
        .and_then(Value::as_str)
        .and_then(|kind| kind.parse::<OpsCommandType>().ok())
        .filter(|kind| is_cancellable(*kind))
        .ok_or_else(|| {
            Failure::new(
                FailureCode::BadParams,
                format!(
                    "withdraw needs params.command_type: the type of {id}, one of {CANCELLABLE_NAMES}"
                ),
            )
        })?;
    Ok((id, kind))
}

/// `opsd_commands_total` and `opsd_command_duration_ms` of a final receipt, once it is out.
fn count_final(receipt: &OpsReceipt, arrived: Instant) {
    let command_type = receipt.type_.to_string();
    metrics::OPS_COMMANDS.increment(&[&command_type, &receipt.status.to_string()]);
    metrics::OPS_COMMAND_DURATION.observe_duration(&[&command_type], arrived.elapsed());
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
