//! The service loop: consumes incidents, approval decisions (and the deprecated approvals) and
//! outcomes, one message at a time, and checks waiting approval requests for expiry.
//!
//! Each message is handled through an outbox (see [`crate::state`]): effects are decided, stored,
//! applied to the state, published, and only then is the message acknowledged. A failure on the
//! way (the bucket or the stream unreachable) naks the message with a delay; its redelivery
//! replays the stored effects with the same ids.
//!
//! Every message is handled through [`contracts::bus::isolate`]: a handler that panics does not
//! stop brain; its message is handed back and dead-lettered (`handler_panicked`) after its last
//! delivery, and its redelivery replays its stored outbox if it had one.
//!
//! Actions are published signed with brain's key (`Orion-Signature` over the canonical JSON of
//! the action as published); the signature is made when the effect is published, so a replayed
//! outbox signs the same bytes again and gets the same header.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::bus::{in_trace, isolate, Bus, BusError, Delivery, Either, SubscribeOptions, Trace};
use contracts::generated::dead_letter_v1::DeadLetterReasonCode;
use contracts::services;
use contracts::signing::{SigningKey, APPROVAL_SIGNER_FIELD, SIGNATURE_HEADER};
use contracts::{
    metrics, Action, Approval, ApprovalDecision, ContractError, Incident, Outcome, Timestamp,
};
use serde_json::Value;
use uuid::Uuid;

use crate::approvals::{self, ApprovalCheck, Judgement};
use crate::decide::{self, autonomy, Autonomy, LimitChange};
use crate::interlock::InterlockWatch;
use crate::limits::LimitState;
use crate::policy::{BreakerConfig, Evaluation, LimitKey, Policy};
use crate::records::{RefusedAnswer, RequestRecord, Settlement};
use crate::silence_watch::{SilenceWatch, SilenceWatchError};
use crate::state::{
    outbox_key, request_key, Effect, Expect, Mutation, Outbox, OutcomeEffect, StateError,
    StateStore, Versioned, RETENTION,
};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often waiting approval requests are checked for expiry.
    pub expiry_check: Duration,
    /// How often the list of waiting requests is rebuilt from the bucket (other instances'
    /// requests, left-over outboxes, pruning).
    pub rescan: Duration,
    /// Delay before a message whose handling failed is redelivered.
    pub retry_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            expiry_check: Duration::from_secs(5),
            rescan: Duration::from_secs(60),
            retry_delay: Duration::from_secs(2),
        }
    }
}

/// Why brain could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum BrainError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Silences(#[from] SilenceWatchError),
}

/// Why one message could not be handled now.
enum Failure {
    /// The state changed since brain decided: decide again (soon).
    Conflict(String),
    /// The bucket or the stream failed, or brain built an invalid message: retry later.
    Retry(String),
    /// The message can never be handled: dead-letter it.
    Reject(DeadLetterReasonCode, String),
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Conflict { .. } => Failure::Conflict(e.to_string()),
            StateError::Store { .. } => Failure::Retry(e.to_string()),
        }
    }
}

impl From<ContractError> for Failure {
    fn from(e: ContractError) -> Self {
        Failure::Retry(format!(
            "brain built a message that breaks its contract (a defect): {e}"
        ))
    }
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        Failure::Retry(e.to_string())
    }
}

/// The running service.
pub struct Brain {
    bus: Bus<services::Brain>,
    policy: Arc<Policy>,
    /// Signs every action brain publishes (commander executes nothing else).
    signer: SigningKey,
    store: StateStore,
    interlock: InterlockWatch,
    /// The administrators' signed silences, followed live.
    silences: SilenceWatch,
    settings: Settings,
    /// Waiting requests this instance knows of → when they expire.
    pending: BTreeMap<Uuid, Timestamp>,
    last_rescan: Option<Instant>,
}

impl Brain {
    /// Opens the state bucket, starts watching the ops interlock and reads the silences (to the
    /// end of their stream before it returns, then live). `signer` signs every action brain
    /// publishes.
    pub async fn start(
        bus: Bus<services::Brain>,
        policy: Policy,
        signer: SigningKey,
        settings: Settings,
    ) -> Result<Self, BrainError> {
        let store = StateStore::open(&bus).await?;
        store.learn_limit_keys().await?;
        let interlock = InterlockWatch::watch(bus.clone()).await;
        let silences = SilenceWatch::follow(bus.clone(), policy.keyring.clone()).await?;
        Ok(Self::with_interlock(
            bus, policy, signer, settings, store, interlock, silences,
        ))
    }

    /// With a given interlock and silences (tests).
    pub fn with_interlock(
        bus: Bus<services::Brain>,
        policy: Policy,
        signer: SigningKey,
        settings: Settings,
        store: StateStore,
        interlock: InterlockWatch,
        silences: SilenceWatch,
    ) -> Self {
        Self {
            bus,
            policy: Arc::new(policy),
            signer,
            store,
            interlock,
            silences,
            settings,
            pending: BTreeMap::new(),
            last_rescan: None,
        }
    }

    /// The live interlock (tests wait on its changes).
    pub fn interlock(&self) -> &InterlockWatch {
        &self.interlock
    }

    /// The live silences (tests wait on their changes).
    pub fn silences(&self) -> &SilenceWatch {
        &self.silences
    }

    fn options(&self) -> SubscribeOptions {
        SubscribeOptions::batch(10)
    }

    /// Consumes until `shutdown` resolves; the message being handled is finished first.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), BrainError> {
        let mut incidents = self.bus.subscribe::<Incident>(self.options()).await?;
        let mut approvals = self
            .bus
            .subscribe_either::<Approval, ApprovalDecision>(self.options(), self.options())
            .await?;
        let mut outcomes = self.bus.subscribe::<Outcome>(self.options()).await?;
        tracing::info!(
            level = %self.policy.autonomy_level,
            rules = self.policy.rules.len(),
            admins = self.policy.admins.len(),
            "brain consuming orion.incident.v1, orion.approval_decision.v1, orion.approval.v1 (deprecated), orion.outcome.v1"
        );
        self.sweep().await;
        let mut tick = tokio::time::interval(self.settings.expiry_check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let retry = self.settings.retry_delay;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                next = incidents.next() => match next {
                    Some(Ok(delivery)) => {
                        let _ = isolate(delivery, retry, |d| self.on_incident(d)).await;
                    }
                    Some(Err(e)) => receive_failed(e).await,
                    None => break,
                },
                next = approvals.next() => match next {
                    Some(Ok(Either::First(legacy))) => {
                        let _ = isolate(legacy, retry, |d| self.on_legacy_approval(d)).await;
                    }
                    Some(Ok(Either::Second(decision))) => {
                        let _ = isolate(decision, retry, |d| self.on_approval(d)).await;
                    }
                    Some(Err(e)) => receive_failed(e).await,
                    None => break,
                },
                next = outcomes.next() => match next {
                    Some(Ok(delivery)) => {
                        let _ = isolate(delivery, retry, |d| self.on_outcome(d)).await;
                    }
                    Some(Err(e)) => receive_failed(e).await,
                    None => break,
                },
                _ = tick.tick() => self.sweep().await,
            }
        }
        tracing::info!("brain stopping");
        Ok(())
    }

    fn autonomy(&self) -> Autonomy {
        autonomy(self.policy.autonomy_level, &self.interlock.current())
    }

    // ---- incidents -------------------------------------------------------------------------

    async fn on_incident(&mut self, delivery: Delivery<Incident>) {
        let key = outbox_key("incident", delivery.stream_sequence());
        let result = self.decide_incident(&delivery, &key).await;
        self.finish(delivery, &key, result).await;
    }

    async fn decide_incident(
        &mut self,
        delivery: &Delivery<Incident>,
        key: &str,
    ) -> Result<Outbox, Failure> {
        if let Some(outbox) = self.replay_redelivered(delivery, key).await? {
            return Ok(outbox);
        }
        let incident = delivery.message();
        let now = Timestamp::now();
        let evaluation = self.policy.evaluate(incident);
        let limit_key = match &evaluation {
            Evaluation::Proposal(p) => Some(p.limit_key()),
            _ => None,
        };
        let remembered = limit_key.as_ref().and_then(|k| self.store.last_limits(k));
        let from_memory = remembered.is_some();
        let mut limits = match (&limit_key, remembered) {
            (_, Some(remembered)) => Some(remembered),
            (Some(k), None) => Some(self.store.limits(k).await?),
            (None, None) => None,
        };
        let mut plan = self.plan(incident, &evaluation, limits.as_ref(), now)?;
        // A plan that changes the limits is stored only if they are still at the revision it
        // started from, so it may start from memory (no read); a plan that changes nothing
        // (held back by a cooldown, a breaker, a waiting request) has no such check and must
        // rest on what is stored now: another instance may have written since.
        if let (true, None, Some(k)) = (from_memory, &plan.change, &limit_key) {
            limits = Some(self.store.limits(k).await?);
            plan = self.plan(incident, &evaluation, limits.as_ref(), now)?;
        }
        if let Evaluation::Proposal(proposal) = &evaluation {
            let state = limits.as_ref().and_then(|l| l.value.as_ref());
            export_breaker(
                &proposal.limit_key(),
                state,
                proposal.rule.limits.circuit_breaker,
                now,
            );
        }
        let expect = limits
            .as_ref()
            .map(Versioned::expect)
            .unwrap_or(Expect::Any);
        let mut mutations = Vec::new();
        match plan.change {
            Some(LimitChange::Action { key, mark }) => mutations.push(Mutation::RecordAction {
                key,
                mark,
                answers_request: None,
                expect,
            }),
            Some(LimitChange::Request { key, mark, record }) => {
                mutations.push(Mutation::OpenRequest {
                    key,
                    mark,
                    record,
                    expect,
                })
            }
            None => {}
        }
        let mut effects = vec![Effect::Decision(Box::new(plan.decision))];
        if let Some(request) = plan.request {
            effects.push(Effect::ApprovalRequest(Box::new(request)));
        }
        if let Some(action) = plan.action {
            effects.push(Effect::Action(Box::new(action)));
        }
        self.carry_out(
            key,
            Outbox {
                created_at: now,
                mutations,
                effects,
            },
            limits,
        )
        .await
    }

    /// What brain does about `incident` given `limits` (its policy's decision, pure).
    fn plan(
        &self,
        incident: &Incident,
        evaluation: &Evaluation<'_>,
        limits: Option<&Versioned<LimitState>>,
        now: Timestamp,
    ) -> Result<decide::IncidentPlan, ContractError> {
        let autonomy = self.autonomy();
        self.silences.with(|silences| {
            decide::decide(
                incident,
                evaluation,
                limits.and_then(|l| l.value.as_ref()),
                &autonomy,
                silences,
                self.policy.approval_timeout_s,
                now,
            )
        })
    }

    // ---- approvals -------------------------------------------------------------------------

    async fn on_approval(&mut self, delivery: Delivery<ApprovalDecision>) {
        let key = outbox_key("approval_decision", delivery.stream_sequence());
        let result = self.judge_approval(&delivery, &key).await;
        self.finish(delivery, &key, result).await;
    }

    async fn judge_approval(
        &mut self,
        delivery: &Delivery<ApprovalDecision>,
        key: &str,
    ) -> Result<Outbox, Failure> {
        if let Some(outbox) = self.replay_redelivered(delivery, key).await? {
            return Ok(outbox);
        }
        let approval = delivery.message();
        let now = Timestamp::now();
        let raw: Value = serde_json::from_slice(delivery.payload())
            .map_err(|e| Failure::Reject(DeadLetterReasonCode::NotJson, e.to_string()))?;
        let signature = delivery.header(SIGNATURE_HEADER);
        let request = self.store.request(approval.approval_request_id).await?;
        let Some(record) = &request.value else {
            let signed = self
                .policy
                .keyring
                .verify_claimed(&raw, APPROVAL_SIGNER_FIELD, signature);
            let (code, why) = match signed {
                Err(e) => (
                    DeadLetterReasonCode::BadSignature,
                    format!("approval decision {} answers request {}, which brain never issued, and its signature does not verify ({e}): ignored", approval.approval_id, approval.approval_request_id),
                ),
                Ok(_) => (
                    DeadLetterReasonCode::UnknownReference,
                    format!("approval decision {} by {} answers request {}, which brain never issued (or forgot after {} days): ignored", approval.approval_id, approval.admin_identity, approval.approval_request_id, RETENTION.as_secs() / 86400),
                ),
            };
            tracing::warn!(approval_id = %approval.approval_id, %why, "approval decision for an unknown request");
            return Err(Failure::Reject(code, why));
        };
        let limits = self.store.limits(&record.limit_key).await?;
        let autonomy = self.autonomy();
        let judgement = approvals::judge(&ApprovalCheck {
            approval,
            raw: &raw,
            signature,
            record,
            stream_sequence: delivery.stream_sequence(),
            keyring: &self.policy.keyring,
            limits: limits.value.as_ref(),
            autonomy: &autonomy,
            now,
        })?;
        let request_id = record.id();
        let limit_key = record.limit_key.clone();
        let (mutations, effects) = match judgement {
            Judgement::Execute {
                action,
                settlement,
                mark,
            } => (
                vec![
                    Mutation::SettleRequest {
                        request_id,
                        key: limit_key.clone(),
                        settlement,
                        denial: None,
                        expect: request.expect(),
                    },
                    Mutation::RecordAction {
                        key: limit_key,
                        mark,
                        answers_request: Some(request_id),
                        expect: Expect::Any,
                    },
                ],
                vec![Effect::Action(action)],
            ),
            Judgement::Deny {
                decision,
                settlement,
                denial,
            } => (
                vec![Mutation::SettleRequest {
                    request_id,
                    key: limit_key,
                    settlement,
                    denial: Some(denial),
                    expect: request.expect(),
                }],
                vec![Effect::Decision(decision)],
            ),
            Judgement::Refuse {
                decision,
                authentic,
            } => {
                let remember = authentic.then(|| Mutation::RecordRefusal {
                    request_id,
                    refusal: RefusedAnswer {
                        approval_id: approval.approval_id,
                        stream_sequence: delivery.stream_sequence(),
                        at: now,
                    },
                });
                (
                    remember.into_iter().collect(),
                    vec![Effect::Decision(decision)],
                )
            }
        };
        self.carry_out(
            key,
            Outbox {
                created_at: now,
                mutations,
                effects,
            },
            None,
        )
        .await
    }

    async fn on_legacy_approval(&mut self, delivery: Delivery<Approval>) {
        let key = outbox_key("approval", delivery.stream_sequence());
        let result = self.refuse_legacy(&delivery, &key).await;
        self.finish(delivery, &key, result).await;
    }

    async fn refuse_legacy(
        &mut self,
        delivery: &Delivery<Approval>,
        key: &str,
    ) -> Result<Outbox, Failure> {
        if let Some(outbox) = self.replay_redelivered(delivery, key).await? {
            return Ok(outbox);
        }
        let approval = delivery.message();
        let now = Timestamp::now();
        let Some(record) = self.request_for_decision(approval.decision_id).await? else {
            return Err(Failure::Reject(
                DeadLetterReasonCode::BadSignature,
                format!(
                    "legacy unsigned approval {} ({} by {}) refused: approvals must be signed orion.approval_decision.v1 messages; and no approval request of brain belongs to decision {}",
                    approval.approval_id, approval.status, approval.approved_by, approval.decision_id
                ),
            ));
        };
        let decision = approvals::refuse_legacy(approval, &record, &self.autonomy(), now)?;
        self.carry_out(
            key,
            Outbox {
                created_at: now,
                mutations: Vec::new(),
                effects: vec![Effect::Decision(Box::new(decision))],
            },
            None,
        )
        .await
    }

    /// The request made by decision `decision_id`, if brain still has it.
    async fn request_for_decision(
        &self,
        decision_id: Uuid,
    ) -> Result<Option<RequestRecord>, StateError> {
        for key in self.store.keys("request.").await? {
            let Some(id) = key.strip_prefix("request.").and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(record) = self.store.request(id).await?.value {
                if record.request.decision_id == decision_id {
                    return Ok(Some(record));
                }
            }
        }
        Ok(None)
    }

    // ---- outcomes --------------------------------------------------------------------------

    async fn on_outcome(&mut self, delivery: Delivery<Outcome>) {
        let outcome = delivery.message();
        match self.store.record_outcome(outcome).await {
            Ok(effect) => {
                if let OutcomeEffect::Counted { key, failure: true } = &effect {
                    tracing::warn!(action_id = %outcome.action_id, status = %outcome.status, %key, "action failed: counted for the circuit breaker");
                } else {
                    tracing::debug!(action_id = %outcome.action_id, status = %outcome.status, ?effect, "outcome");
                }
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %e, "could not acknowledge an outcome; its redelivery is harmless");
                }
            }
            Err(e) => {
                tracing::warn!(action_id = %outcome.action_id, error = %e, "could not record an outcome; retrying");
                let _ = delivery
                    .nak(Some(self.settings.retry_delay), &e.to_string())
                    .await;
            }
        }
    }

    // ---- expiry ----------------------------------------------------------------------------

    async fn sweep(&mut self) {
        if self
            .last_rescan
            .is_none_or(|t| t.elapsed() >= self.settings.rescan)
        {
            match self.rescan().await {
                Ok(()) => self.last_rescan = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "could not rescan brain_state; retrying"),
            }
        }
        let now = Timestamp::now();
        let due: Vec<Uuid> = self
            .pending
            .iter()
            .filter(|(_, expires_at)| **expires_at < now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.expire(id).await;
        }
    }

    /// Rebuilds the waiting requests from the bucket, replays left-over expiry outboxes, and
    /// prunes settled requests and stale outboxes.
    async fn rescan(&mut self) -> Result<(), StateError> {
        let now = Timestamp::now();
        let retention = time::Duration::try_from(RETENTION).unwrap_or(time::Duration::WEEK);
        let mut pending = BTreeMap::new();
        for key in self.store.keys("request.").await? {
            let Some(id) = key
                .strip_prefix("request.")
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                continue;
            };
            let Some(record) = self.store.request(id).await?.value else {
                continue;
            };
            match &record.settlement {
                None => {
                    pending.insert(id, record.request.expires_at);
                }
                Some(settlement) => {
                    let at = match settlement {
                        crate::records::Settlement::Approved { at, .. }
                        | crate::records::Settlement::Denied { at, .. }
                        | crate::records::Settlement::Expired { at, .. } => *at,
                    };
                    if at.saturating_add(retention) < now {
                        self.store.delete(&request_key(id)).await?;
                    }
                }
            }
        }
        self.pending = pending;
        for key in self.store.keys("outbox.").await? {
            let Some(outbox) = self.store.outbox(&key).await? else {
                continue;
            };
            if key.starts_with("outbox.expiry.") {
                match self.replay(&key, &outbox, false, None).await {
                    Ok(()) => {
                        self.note(&outbox);
                        self.store.delete(&key).await?;
                    }
                    Err(Failure::Conflict(_)) => {}
                    Err(Failure::Retry(why) | Failure::Reject(_, why)) => {
                        tracing::warn!(%key, %why, "could not replay an expiry")
                    }
                }
            } else if outbox.created_at.saturating_add(OUTBOX_KEPT) < now {
                // Its message was acknowledged long ago: no delivery of it can come any more.
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }

    async fn expire(&mut self, id: Uuid) {
        let key = outbox_key("expiry", id);
        match self.settle_expired(id, &key).await {
            Ok(Some(outbox)) => {
                self.note(&outbox);
                if let Err(e) = self.store.delete(&key).await {
                    tracing::warn!(%key, error = %e, "could not delete a finished outbox");
                }
                self.pending.remove(&id);
            }
            Ok(None) => {}
            Err(Failure::Conflict(why)) => {
                tracing::debug!(%id, %why, "request changed while expiring it; checking again")
            }
            Err(Failure::Retry(why) | Failure::Reject(_, why)) => {
                tracing::warn!(%id, %why, "could not expire an approval request; retrying")
            }
        }
    }

    async fn settle_expired(&mut self, id: Uuid, key: &str) -> Result<Option<Outbox>, Failure> {
        if let Some(outbox) = self.replay_stored(key).await? {
            return Ok(Some(outbox));
        }
        let now = Timestamp::now();
        let request = self.store.request(id).await?;
        let record = match &request.value {
            Some(record) if record.is_pending() => record,
            _ => {
                self.pending.remove(&id);
                return Ok(None);
            }
        };
        if record.request.expires_at >= now {
            self.pending.insert(id, record.request.expires_at);
            return Ok(None);
        }
        let (decision, settlement) = approvals::expire(record, &self.autonomy(), now)?;
        let outbox = Outbox {
            created_at: now,
            mutations: vec![Mutation::SettleRequest {
                request_id: id,
                key: record.limit_key.clone(),
                settlement,
                denial: None,
                expect: request.expect(),
            }],
            effects: vec![Effect::Decision(Box::new(decision))],
        };
        self.carry_out(key, outbox, None).await.map(Some)
    }

    // ---- the outbox ------------------------------------------------------------------------

    /// [`Self::replay_stored`] for a message delivered before. A first delivery skips the
    /// lookup (one round trip less on every message): nothing can be stored for it yet, and if
    /// something is (a consumer reset), storing the new outbox finds it and carries that out.
    async fn replay_redelivered<T>(
        &mut self,
        delivery: &Delivery<T>,
        key: &str,
    ) -> Result<Option<Outbox>, Failure> {
        if delivery.delivery_attempt() <= 1 {
            return Ok(None);
        }
        self.replay_stored(key).await
    }

    /// If an outbox is stored under `key` (a redelivery after a crash), carries it out again.
    async fn replay_stored(&mut self, key: &str) -> Result<Option<Outbox>, Failure> {
        match self.store.outbox(key).await? {
            Some(outbox) => {
                tracing::info!(%key, "replaying the stored effects of a redelivered message");
                self.replay(key, &outbox, false, None).await?;
                Ok(Some(outbox))
            }
            None => Ok(None),
        }
    }

    /// Stores `outbox` (or finds the one stored first), applies its state changes and
    /// publishes its messages. `limits` is the limit state the outbox was decided on, if any:
    /// its first change starts from it.
    async fn carry_out(
        &mut self,
        key: &str,
        outbox: Outbox,
        limits: Option<Versioned<LimitState>>,
    ) -> Result<Outbox, Failure> {
        let (outbox, first) = match self.store.claim_outbox(key, &outbox).await? {
            None => (outbox, true),
            Some(existing) => (existing, false),
        };
        let limits = if first { limits } else { None };
        self.replay(key, &outbox, first, limits).await?;
        Ok(outbox)
    }

    /// Applies `outbox`'s state changes and publishes its messages; `first` when it was just
    /// stored (its first change's expectation then holds), `limits` the limit state its first
    /// change starts from.
    async fn replay(
        &self,
        key: &str,
        outbox: &Outbox,
        first: bool,
        mut limits: Option<Versioned<LimitState>>,
    ) -> Result<(), Failure> {
        for (i, mutation) in outbox.mutations.iter().enumerate() {
            match self
                .store
                .apply(mutation, first && i == 0, limits.take())
                .await
            {
                Ok(()) => {}
                // The first change failed its condition, so nothing of this outbox was applied or
                // published yet: forget it and decide again. (On a replay only a settlement can
                // fail that way — another answer settled the request first; other changes are
                // unconditional then, and a conflict is just retried.)
                Err(StateError::Conflict { key: changed })
                    if i == 0 && (first || matches!(mutation, Mutation::SettleRequest { .. })) =>
                {
                    if let Err(e) = self.store.delete(key).await {
                        return Err(Failure::Retry(e.to_string()));
                    }
                    return Err(Failure::Conflict(format!(
                        "`{changed}` changed since brain decided"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // All effects are handed to the server before any is confirmed: one round trip for
        // them all, stored in this order (one connection). A failure retries the whole outbox;
        // a copy that did arrive is dropped as a duplicate of its id.
        let failed = |effect: &Effect, e: BusError| {
            Failure::Retry(format!("publishing {}: {e}", effect.describe()))
        };
        // Everything brain publishes answers one incident and goes out on its trace, whether
        // an incident, an approval or the expiry timer led to it.
        let publish = async {
            // Actions are signed first, so that nothing slow sits between the sends and they
            // leave in one write.
            let mut ready = Vec::with_capacity(outbox.effects.len());
            for effect in &outbox.effects {
                ready.push(match effect {
                    Effect::Decision(d) => (effect, Ready::Decision(d)),
                    Effect::ApprovalRequest(r) => (effect, Ready::Request(r)),
                    Effect::Action(a) => {
                        let signature = self.sign(a).map_err(|e| failed(effect, e))?;
                        (effect, Ready::Action(a, signature))
                    }
                });
            }
            let mut sent = Vec::with_capacity(ready.len());
            for (effect, message) in ready {
                let sending = match message {
                    Ready::Decision(d) => self.bus.send(d).await,
                    Ready::Request(r) => self.bus.send(r).await,
                    Ready::Action(a, signature) => {
                        self.bus
                            .send_with_header(a, SIGNATURE_HEADER, &signature)
                            .await
                    }
                };
                sent.push((effect, sending.map_err(|e| failed(effect, e))?));
            }
            for (effect, sending) in sent {
                sending.stored().await.map_err(|e| failed(effect, e))?;
            }
            Ok(())
        };
        match outbox.effects.iter().find_map(Effect::incident_id) {
            Some(incident_id) => in_trace(Trace::for_incident(incident_id), publish).await,
            None => publish.await,
        }
    }

    /// brain's signature over `action` exactly as published, for the `Orion-Signature`
    /// header. Ed25519 is deterministic: a replayed outbox sends the same header, and the
    /// server drops the copy as a duplicate of its action id anyway.
    fn sign(&self, action: &Action) -> Result<String, BusError> {
        let value = contracts::to_value(action)?;
        Ok(self.signer.sign(&value))
    }

    /// Logs and counts what an outbox did and keeps the waiting requests current.
    fn note(&mut self, outbox: &Outbox) {
        for effect in &outbox.effects {
            match effect {
                Effect::Decision(d) => {
                    metrics::DECISIONS.increment(&[
                        &d.decision_type.to_string(),
                        &d.safety_classification.to_string(),
                    ]);
                    tracing::info!(
                    incident_id = %d.incident_id,
                    decision_id = %d.decision_id,
                    decision_type = %d.decision_type,
                    safety = %d.safety_classification,
                    reasoning = %d.reasoning.as_str(),
                    "decision"
                    )
                }
                Effect::Action(a) => tracing::info!(
                    action_id = %a.action_id,
                    action_type = %a.action_type,
                    safety = %a.safety_classification,
                    approval_id = ?a.approval_id,
                    "action emitted"
                ),
                Effect::ApprovalRequest(r) => {
                    tracing::info!(
                        approval_request_id = %r.approval_request_id,
                        action_type = %r.action_type,
                        expires_at = %r.expires_at,
                        "approval requested"
                    );
                    self.pending.insert(r.approval_request_id, r.expires_at);
                    metrics::APPROVALS_REQUESTED.increment(&[]);
                }
            }
        }
        for mutation in &outbox.mutations {
            if let Mutation::SettleRequest {
                request_id,
                settlement,
                ..
            } = mutation
            {
                self.pending.remove(request_id);
                count_settlement(settlement);
            }
        }
        metrics::APPROVALS_PENDING.set(&[], self.pending.len() as f64);
    }

    /// Settles `delivery` after its handling: ack (the outbox stays, see `OUTBOX_KEPT`), nak or
    /// reject.
    async fn finish<T>(
        &mut self,
        delivery: Delivery<T>,
        key: &str,
        result: Result<Outbox, Failure>,
    ) {
        let subject = delivery.subject().to_string();
        let sequence = delivery.stream_sequence();
        match result {
            Ok(outbox) => {
                self.note(&outbox);
                // The outbox stays after the ack (pruned by the rescan after OUTBOX_KEPT): on a
                // cluster a confirmed ack can still be lost with the node that confirmed it, and
                // the message then comes again. It must replay these effects, same ids, not
                // decide again (a new decision would carry a new action: a second restart).
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(%subject, sequence, %key, error = %e, "could not acknowledge; the redelivery replays the same effects")
                }
            }
            Err(Failure::Conflict(why)) => {
                tracing::info!(%subject, sequence, %why, "deciding again");
                let _ = delivery.nak(Some(Duration::from_millis(100)), &why).await;
            }
            Err(Failure::Retry(why)) => {
                tracing::warn!(%subject, sequence, %why, "handling failed; retrying after a delay");
                let _ = delivery.nak(Some(self.settings.retry_delay), &why).await;
            }
            Err(Failure::Reject(code, why)) => {
                if let Err(e) = delivery.reject(code, why).await {
                    tracing::warn!(%subject, sequence, error = %e, "could not dead-letter a message");
                }
            }
        }
    }
}

/// An effect of an outbox ready to be sent: an action with its signature.
enum Ready<'a> {
    Decision(&'a contracts::Decision),
    Request(&'a contracts::ApprovalRequest),
    Action(&'a Action, String),
}

/// `orion_approvals_answered_total` / `orion_approvals_expired_total`.
fn count_settlement(settlement: &Settlement) {
    match settlement {
        Settlement::Approved { forced: true, .. } => {
            metrics::APPROVALS_ANSWERED.increment(&["forced"])
        }
        Settlement::Approved { .. } => metrics::APPROVALS_ANSWERED.increment(&["approved"]),
        Settlement::Denied { .. } => metrics::APPROVALS_ANSWERED.increment(&["denied"]),
        Settlement::Expired { .. } => metrics::APPROVALS_EXPIRED.increment(&[]),
    }
}

/// `orion_circuit_breaker_open` of `key` as brain just judged it for a decision.
fn export_breaker(
    key: &LimitKey,
    state: Option<&LimitState>,
    config: BreakerConfig,
    now: Timestamp,
) {
    let open = state.is_some_and(|s| s.breaker_open_until(config, now.0).is_some());
    metrics::BREAKER_OPEN.set(
        &[&key.action_type, &key.target],
        if open { 1.0 } else { 0.0 },
    );
}

/// How long a handled message's outbox is kept: longer than the message could still be
/// delivered again (ack wait × deliveries, with the retry delays), so a delivery after a lost
/// acknowledgement replays the stored effects instead of deciding again.
const OUTBOX_KEPT: time::Duration = time::Duration::HOUR;

async fn receive_failed(e: BusError) {
    tracing::error!(error = %e, "receiving failed; retrying");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
