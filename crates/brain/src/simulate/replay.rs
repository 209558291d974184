//! The replay engine (pure): brain's own decision code driven by a recorded clock.
//!
//! [`Replay`] holds what the service keeps in `brain_state` — the limits of every action type
//! and target — in memory, and moves it forward exactly as the service does: each incident goes
//! through [`Policy::evaluate`] and [`decide::decide`], and the plan's change is recorded with
//! the same [`LimitState`] methods the service's state store uses. Time is whatever the caller
//! says (the recorded messages' times), never the wall clock, so cooldowns, rate windows and
//! breakers see the history as it happened.

use std::collections::HashMap;

use contracts::{Action, ContractError, Incident, Outcome, Timestamp};
use uuid::Uuid;

use crate::silences::SilenceBook;

use crate::decide::{self, Autonomy, IncidentPlan, LimitChange};
use crate::interlock::InterlockState;
use crate::limits::{ActionMark, LimitState};
use crate::policy::{Evaluation, LimitKey, Policy};

/// brain's decision state, replayed.
pub struct Replay<'p> {
    policy: &'p Policy,
    autonomy: Autonomy,
    limits: HashMap<LimitKey, LimitState>,
    /// The replay's own actions → the limits their outcomes count against.
    actions: HashMap<Uuid, LimitKey>,
    /// The replay's approval requests → the limits they wait on, and when they expire.
    requests: HashMap<Uuid, (LimitKey, Timestamp)>,
}

impl<'p> Replay<'p> {
    /// Nothing recorded yet; `interlock` is the interlock the whole replay assumes (the level
    /// in force is the policy's, capped by it, as in the service).
    pub fn new(policy: &'p Policy, interlock: &InterlockState) -> Self {
        Self {
            policy,
            autonomy: decide::autonomy(policy.autonomy_level, interlock),
            limits: HashMap::new(),
            actions: HashMap::new(),
            requests: HashMap::new(),
        }
    }

    /// The level in force and why (the same for every incident of the replay).
    pub fn autonomy(&self) -> &Autonomy {
        &self.autonomy
    }

    /// What the service would do about `incident` at `now`, and its state changed as the
    /// service's would be.
    pub fn incident(
        &mut self,
        incident: &Incident,
        now: Timestamp,
    ) -> Result<IncidentPlan, ContractError> {
        let evaluation = self.policy.evaluate(incident);
        let limits = match &evaluation {
            Evaluation::Proposal(p) => self.limits.get(&p.limit_key()),
            _ => None,
        };
        let plan = decide::decide(
            incident,
            &evaluation,
            limits,
            &self.autonomy,
            // Silences are not replayed (see the report's assumptions).
            &SilenceBook::default(),
            self.policy.approval_timeout_s,
            now,
        )?;
        match &plan.change {
            Some(LimitChange::Action { key, mark }) => {
                self.limits
                    .entry(key.clone())
                    .or_default()
                    .note_action(mark.clone(), None, now);
                self.actions.insert(mark.action_id, key.clone());
            }
            Some(LimitChange::Request { key, mark, .. }) => {
                self.limits
                    .entry(key.clone())
                    .or_default()
                    .note_request(mark.clone(), now);
                self.requests
                    .insert(mark.approval_request_id, (key.clone(), mark.expires_at));
            }
            None => {}
        }
        Ok(plan)
    }

    /// The replay's request `request_id` approved with `action` (an approved action of the
    /// recorded history, at its time): recorded as the service records an approved action —
    /// the request no longer waits, the cooldown starts, the rate counts it — under the
    /// recorded action's id, so its recorded outcome counts too. Returns the limits it counted
    /// against (`None`: not a waiting request of this replay, or one that had expired by then —
    /// the service refuses a late answer, and the new policy's timeout may be shorter).
    pub fn approved(&mut self, request_id: Uuid, action: &Action) -> Option<LimitKey> {
        let (key, expires_at) = self.requests.remove(&request_id)?;
        if action.timestamp > expires_at {
            return None;
        }
        let mark = ActionMark {
            action_id: action.action_id,
            at: action.timestamp,
            incident_id: action
                .tags
                .get("incident_id")
                .and_then(|id| id.parse().ok())
                .unwrap_or(action.decision_id),
            approval_id: action.approval_id,
        };
        self.limits.entry(key.clone()).or_default().note_action(
            mark,
            Some(request_id),
            action.timestamp,
        );
        self.actions.insert(action.action_id, key.clone());
        Some(key)
    }

    /// `outcome`, taken as the outcome of the replay's action `action_id`: a failure counts for
    /// that action's breaker as the service counts it (at the outcome's time). Returns the
    /// limits it counted against (`None`: not an action of this replay, or counted before).
    pub fn outcome(&mut self, action_id: Uuid, outcome: &Outcome) -> Option<LimitKey> {
        let key = self.actions.remove(&action_id)?;
        if let Some(mut mark) = crate::approvals::failure_of(outcome) {
            mark.action_id = action_id;
            self.limits
                .entry(key.clone())
                .or_default()
                .note_failure(mark, outcome.timestamp);
        }
        Some(key)
    }
}
