//! The commander loop: each pending action brain signed is executed at most once and gets
//! exactly one outcome. The life of an action, chosen so that a crash never runs it twice:
//! verify brain's signature over the raw payload ([`crate::authority`]; refused → dead letter
//! `bad_signature`, no claim, no outcome), claim its id in `commander_actions`, execute the
//! plan, record the outcome, publish it, ack. The claim also makes a replayed copy of a signed
//! action harmless: it only re-publishes the stored outcome.
//! A redelivered action whose claim has no outcome was interrupted: it gets a `failed` outcome
//! saying so and is not run again.
//!
//! Each action's task runs through [`contracts::bus::isolate`]: a panic while handling one action
//! is caught, the action is handed back (its claim makes the retry report it `interrupted`
//! rather than run it twice) and, after its last delivery, dead-lettered as `handler_panicked`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::bus::{
    isolate, serve, Admission, AtMostOnce, Bus, BusError, ClaimLog, Delivery, Held,
    SubscribeOptions, WhenLost,
};
use contracts::generated::action_v1::ActionState;
use contracts::generated::dead_letter_v1::DeadLetterReasonCode;
use contracts::generated::incident_acknowledgement_v1::{
    IncidentAcknowledgementSource, IncidentAcknowledgementVersion,
};
use contracts::generated::notification_v1::{NotificationSource, NotificationVersion};
use contracts::generated::ops_command_v1::OpsCommandType;
use contracts::generated::ops_receipt_v1::OpsReceiptStatus;
use contracts::generated::outcome_v1::{
    OutcomeError, OutcomeSource, OutcomeStatus, OutcomeVersion,
};
use contracts::services::Commander;
use contracts::signing::{Verifier, SIGNATURE_HEADER};
use contracts::{
    Action, IncidentAcknowledgement, Notification, OpsCommand, OpsReceipt, Outcome, Timestamp,
};
use serde_json::{json, Map, Value};
use tokio_util::task::TaskTracker;

use crate::plan::{plan, Plan};
use ops_client::client::{self, CommandRequest};
use ops_client::signing::SigningKeys;
use ops_client::FailureCode;

/// The bucket of action records (see the inventory).
pub const ACTIONS_BUCKET: &str =
    <contracts::buckets::CommanderActions as contracts::Bucket>::INFO.name;
/// Namespace of the ids commander derives from an action id (outcome, notification,
/// acknowledgement), so a re-publish after a crash is dropped as a duplicate.
/// Delay before an action whose handler panicked is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(2);
const COMMANDER_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x636f_6d6d_616e_6465_722d_6964_7321_0001);

/// `orion action <id>: …` — approval-cli's trail finds the ops command of an action by it.
pub fn ops_reason(action: &Action) -> String {
    format!(
        "orion action {}: {} for decision {}",
        action.action_id, action.action_type, action.decision_id
    )
}

fn derived_id(action_id: &uuid::Uuid, kind: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &COMMANDER_NAMESPACE,
        format!("{action_id}:{kind}").as_bytes(),
    )
}

/// How an action ended.
#[derive(Debug, Clone)]
pub enum Ending {
    Succeeded(Map<String, Value>),
    Failed {
        code: String,
        message: String,
        details: Option<Map<String, Value>>,
    },
    RolledBack {
        message: String,
    },
}

struct Shared {
    bus: Bus<Commander>,
    /// Claims, heartbeats and outcomes: an action runs at most once.
    once: AtMostOnce<Commander, Outcome>,
    keys: SigningKeys,
    brain_keys: Verifier,
    receipt_timeout: Duration,
    reconcile_timeout: Duration,
}

/// The running commander.
pub struct CommanderService {
    shared: Arc<Shared>,
    options: SubscribeOptions,
}

impl CommanderService {
    /// `keys` sign the ops commands; `brain_keys` are brain's trusted public keys, which every
    /// action's signature must verify against.
    pub fn new(
        bus: Bus<Commander>,
        log: ClaimLog,
        keys: SigningKeys,
        brain_keys: Verifier,
        receipt_timeout: Duration,
        ack_wait: Duration,
        max_in_flight: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                once: AtMostOnce::new(bus.clone(), log, gethostname(), ack_wait),
                bus,
                keys,
                brain_keys,
                receipt_timeout,
                reconcile_timeout: receipt_timeout * 5,
            }),
            options: SubscribeOptions::batch(max_in_flight.min(20)),
        }
    }

    /// How long, after the receipt timeout, commander keeps withdrawing an unanswered ops
    /// command before it reports `ops_unreachable` (default: 5 receipt timeouts). Keep it above
    /// ops-worker's replay window (`clock_skew_s`): past that window the command can no longer
    /// start, so the outcome cannot be contradicted by a late run.
    pub fn with_reconcile_timeout(mut self, reconcile_timeout: Duration) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("configured before it runs")
            .reconcile_timeout = reconcile_timeout;
        self
    }

    /// Consumes actions until `shutdown`, then waits up to `drain` for those in flight.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> Result<(), BusError> {
        let actions = self
            .shared
            .bus
            .subscribe::<Action>(self.options.clone())
            .await?;
        self.shared.once.fits(&actions)?;
        let tasks = TaskTracker::new();
        serve(actions, shutdown, tasks.clone(), drain, |delivery| {
            let shared = self.shared.clone();
            tasks.spawn(async move {
                let _ = isolate(delivery, RETRY_DELAY, |d| shared.handle(d)).await;
            });
            std::future::ready(())
        })
        .await;
        Ok(())
    }
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "commander".into())
}

impl Shared {
    async fn handle(&self, delivery: Delivery<Action>) {
        let action = delivery.message().clone();
        let started = Instant::now();
        // First of all: did brain ask for exactly this? Nothing else is looked at before.
        let header = delivery.header(SIGNATURE_HEADER);
        if let Some(why) =
            crate::authority::refusal(&action, delivery.payload(), header, &self.brain_keys)
        {
            tracing::warn!(action_id = %action.action_id, action_type = %action.action_type, safety = %action.safety_classification, %why, "refused an action brain did not sign: dead-lettered, not executed");
            if let Err(e) = delivery
                .reject(DeadLetterReasonCode::BadSignature, why)
                .await
            {
                tracing::warn!(action_id = %action.action_id, error = %e, "could not dead-letter a refused action; it will be redelivered and refused again");
            }
            return;
        }
        if action.state != ActionState::Pending {
            tracing::info!(action_id = %action.action_id, state = %action.state, "not a pending action; nothing to execute");
            let _ = delivery.ack().await;
            return;
        }
        let held = match self.once.admit(delivery, action.action_id).await {
            Admission::Fresh(held) => held,
            Admission::Settled => return,
            Admission::Interrupted {
                held,
                holder,
                since,
            } => {
                let ending = Ending::Failed {
                    code: "interrupted".into(),
                    message: format!("commander {holder} stopped while executing this action (started {since}); it is not run again — check the target"),
                    details: None,
                };
                return self.finish(held, ending, started).await;
            }
        };
        // Another instance may take the action over once the claim is lost: stop waiting on it
        // here and record nothing; the redelivery reports it interrupted.
        let work = self.execute(&action);
        match self
            .once
            .heartbeat(&held, work, |_| WhenLost::Abandon)
            .await
        {
            Ok(ending) => self.finish(held, ending, started).await,
            Err(lost) => self.once.hand_back(held, lost).await,
        }
    }

    /// Carries the action out.
    async fn execute(&self, action: &Action) -> Ending {
        let parameters = match serde_json::to_value(&action.parameters) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let plan = match plan(action.action_type, &parameters) {
            Ok(plan) => plan,
            Err(e) => {
                return Ending::Failed {
                    code: e.code.into(),
                    message: e.message,
                    details: None,
                }
            }
        };
        if action.dry_run {
            return Ending::Succeeded(Map::from_iter([
                ("dry_run".to_string(), json!(true)),
                ("plan".to_string(), plan.describe()),
            ]));
        }
        match plan {
            Plan::Ops {
                command_type,
                target,
                params,
            } => self.run_ops(action, command_type, target, params).await,
            Plan::Acknowledge { incident_id } => {
                let acknowledgement = IncidentAcknowledgement {
                    acknowledged_by: "orion-commander".parse().expect("a valid name"),
                    acknowledgement_id: derived_id(&action.action_id, "acknowledgement"),
                    action_id: Some(action.action_id),
                    incident_id,
                    note: Some(format!("acknowledge_incident action {}", action.action_id)),
                    source: IncidentAcknowledgementSource::OrionCommander,
                    tags: Default::default(),
                    timestamp: Timestamp::now(),
                    version: IncidentAcknowledgementVersion::X10,
                };
                match self.bus.publish(&acknowledgement).await {
                    Ok(_) => Ending::Succeeded(Map::from_iter([(
                        "acknowledged_incident".to_string(),
                        json!(incident_id),
                    )])),
                    Err(e) => Ending::Failed {
                        code: "publish_failed".into(),
                        message: e.to_string(),
                        details: None,
                    },
                }
            }
            Plan::Notify {
                message,
                severity,
                channel,
                incident_id,
            } => {
                let notification = Notification {
                    action_id: Some(action.action_id),
                    channel,
                    incident_id,
                    message,
                    notification_id: derived_id(&action.action_id, "notification"),
                    severity,
                    source: NotificationSource::OrionCommander,
                    tags: Default::default(),
                    timestamp: Timestamp::now(),
                    version: NotificationVersion::X10,
                };
                match self.bus.publish(&notification).await {
                    Ok(_) => {
                        Ending::Succeeded(Map::from_iter([("notified".to_string(), json!(true))]))
                    }
                    Err(e) => Ending::Failed {
                        code: "publish_failed".into(),
                        message: e.to_string(),
                        details: None,
                    },
                }
            }
        }
    }

    async fn run_ops(
        &self,
        action: &Action,
        command_type: OpsCommandType,
        target: String,
        params: Option<Map<String, Value>>,
    ) -> Ending {
        let request = CommandRequest {
            command_type,
            target,
            params,
            initiator_id: "orion-commander".into(),
            reason: ops_reason(action),
        };
        let command = match client::build_signed(&request, &self.keys) {
            Ok(command) => command,
            Err(e) => {
                return Ending::Failed {
                    code: "invalid_ops_command".into(),
                    message: e.to_string(),
                    details: None,
                }
            }
        };
        let details = Map::from_iter([
            ("ops_command_id".to_string(), json!(command.id)),
            ("ops_command".to_string(), json!(command_type)),
        ]);
        let last = match client::send_and_wait(&self.bus, &command, self.receipt_timeout, |_| {})
            .await
        {
            Ok(receipts) => receipts.last,
            Err(e) => {
                // Sent or not, the command may run: only ops-worker can say.
                tracing::warn!(command_id = %command.id, error = %e, "waiting for the final receipt failed; withdrawing the command to learn what ran");
                None
            }
        };
        let last = match last {
            Some(last) => last,
            // Not "failed" yet: the command may still be queued or running.
            None => match self.withdraw(&command).await {
                Some(last) => last,
                None => {
                    return Ending::Failed {
                        code: "ops_unreachable".into(),
                        message: format!(
                            "ops-worker answered neither command {} nor its withdrawal within {} s; \
                             nothing ran so far, and once ops-worker's replay window after {} has passed it never will",
                            command.id,
                            (self.receipt_timeout + self.reconcile_timeout).as_secs(),
                            command.ts
                        ),
                        details: Some(details),
                    }
                }
            },
        };
        ending_of(&last, details, self.receipt_timeout)
    }

    /// Takes back `command` after its receipt timeout, so the outcome says what really happened:
    /// a signed `withdraw` makes ops-worker record it as never to start if it has not, or wait
    /// for its end if it runs; its answer carries the command's final receipt. Sent again until answered, for up to
    /// `reconcile_timeout`; `None` if ops-worker never answered.
    async fn withdraw(&self, command: &OpsCommand) -> Option<OpsReceipt> {
        let sent = contracts::encode(command).ok()?;
        let deadline = tokio::time::Instant::now() + self.reconcile_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            tracing::warn!(command_id = %command.id, "no final receipt in time: withdrawing the ops command");
            let request = CommandRequest {
                command_type: OpsCommandType::Withdraw,
                target: String::new(),
                params: Some(Map::from_iter([
                    ("command_id".to_string(), json!(command.id)),
                    ("command_type".to_string(), json!(command.type_)),
                ])),
                initiator_id: "orion-commander".into(),
                reason: format!("withdraw {}: no final receipt in time", command.id),
            };
            let withdrawal = client::build_signed(&request, &self.keys).ok()?;
            let answer = client::send_and_wait(
                &self.bus,
                &withdrawal,
                left.min(self.receipt_timeout),
                |_| {},
            )
            .await
            .ok()
            .and_then(|receipts| receipts.last);
            let final_receipt = answer
                .and_then(|answer| answer.result)
                .and_then(|result| result.get("receipt").cloned())
                .and_then(|receipt| contracts::decode_value::<OpsReceipt>(receipt).ok())
                .filter(|receipt| client::issued_for(receipt, command, &sent));
            if final_receipt.is_some() {
                return final_receipt;
            }
        }
    }

    /// Records the outcome, publishes it, then acknowledges the action.
    async fn finish(&self, held: Held<Action>, ending: Ending, started: Instant) {
        let action = held.message().clone();
        let outcome = match outcome(&action, ending, started) {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(action_id = %action.action_id, error = %e, "built an invalid outcome");
                return;
            }
        };
        if self.once.finish(held, &outcome).await {
            tracing::info!(action_id = %action.action_id, action_type = %action.action_type, status = %outcome.status, "action finished");
            contracts::metrics::ACTIONS
                .increment(&[&action.action_type.to_string(), &outcome.status.to_string()]);
        }
    }
}

/// How an action ends, from its ops command's final receipt: matched on the receipt's
/// `error_code`, never on its text.
fn ending_of(last: &OpsReceipt, details: Map<String, Value>, waited: Duration) -> Ending {
    let message = last
        .error
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "ops-worker reported a failure without a reason".into());
    if last.status == OpsReceiptStatus::Success {
        let mut result = details;
        result.insert(
            "receipt".into(),
            Value::Object(last.result.clone().unwrap_or_default()),
        );
        return Ending::Succeeded(result);
    }
    let (code, message) = match last.error_code {
        Some(FailureCode::RolledBack) => return Ending::RolledBack { message },
        Some(FailureCode::Withdrawn) => (
            "ops_timeout",
            format!(
                "no final receipt from ops-worker within {} s: withdrawn before it started, nothing ran ({message})",
                waited.as_secs()
            ),
        ),
        Some(FailureCode::Cancelled) => ("cancelled", message),
        _ => ("ops_failure", message),
    };
    Ending::Failed {
        code: code.into(),
        message,
        details: Some(details),
    }
}

/// The one outcome of `action`. Its id is derived from the action id.
pub fn outcome(
    action: &Action,
    ending: Ending,
    started: Instant,
) -> Result<Outcome, contracts::ContractError> {
    let (status, result, error, rollback_executed) = match ending {
        Ending::Succeeded(result) => (OutcomeStatus::Succeeded, result, None, false),
        Ending::Failed {
            code,
            message,
            details,
        } => (
            OutcomeStatus::Failed,
            Map::new(),
            Some(OutcomeError {
                code,
                details: details.unwrap_or_default(),
                message,
            }),
            false,
        ),
        Ending::RolledBack { message } => (
            OutcomeStatus::RolledBack,
            Map::new(),
            Some(OutcomeError {
                code: "rolled_back".into(),
                details: Map::new(),
                message,
            }),
            true,
        ),
    };
    let outcome = Outcome {
        action_id: action.action_id,
        error,
        execution_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        outcome_id: derived_id(&action.action_id, "outcome"),
        result,
        rollback_executed,
        source: OutcomeSource::OrionCommander,
        status,
        tags: Default::default(),
        timestamp: Timestamp::now(),
        version: OutcomeVersion::X10,
    };
    // The schema's own checks (an error when failed, …): refused here rather than at publish.
    contracts::encode(&outcome)?;
    Ok(outcome)
}
