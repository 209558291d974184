//! The policy simulator (pure): recorded history + a new policy → what would have changed.
//!
//! `brain simulate` reads the history from the streams ([`streams`], read-only: incidents,
//! decisions, actions, outcomes) and hands it
//! here; nothing in this module does I/O, so what the command prints is exactly what the golden
//! tests check. The replay ([`replay::Replay`]) runs brain's own decision code
//! ([`crate::decide`], [`crate::limits`]) over the incident versions in time order, with the
//! recorded times as the clock, and each simulated decision is compared with the one brain
//! recorded for the same incident version ([`history::History::cases`]).
//!
//! What a replay cannot know is said in every report ([`Report::assumptions`]):
//! - the ops interlock is taken as armed with no risk ceiling throughout (recorded decisions do
//!   not carry it), so the level in force is the new policy's;
//! - the clock is each incident version's own `timestamp`, and the limits start empty at the
//!   first incident of the window;
//! - an approval request the replay makes is approved as recorded when brain asked the same
//!   (same incident version, action and target) and an administrator approved it: the approved
//!   action counts from its recorded time; any other request is never answered (it waits until
//!   it expires, blocking a second request for the same action and target); denials are not
//!   replayed;
//! - a recorded outcome counts for a simulated breaker only when the replay runs the same action
//!   type on the same target for the same incident version; an action only the new policy runs
//!   has no known outcome and does not count as a failure.

pub mod history;
pub mod replay;
pub mod report;
pub mod streams;

use std::collections::HashMap;

use contracts::{ContractError, Decision, Timestamp};
use uuid::Uuid;

pub use history::{Case, History, Recorded};
pub use replay::Replay;
pub use report::{Change, Effect, Report, Side};

use crate::interlock::InterlockState;
use crate::policy::Policy;

/// Why a simulation could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// brain's decision code built a message that breaks its contract (a defect the service
    /// would have hit on the same incident).
    #[error("deciding incident version {sequence} ({incident_id}): {source}")]
    Decide {
        sequence: u64,
        incident_id: Uuid,
        #[source]
        source: ContractError,
    },
}

/// What happens at one moment of the replay.
enum Step<'h> {
    Outcome(&'h Recorded<contracts::Outcome>),
    Approved(&'h Recorded<contracts::Action>),
    Incident(usize, Case<'h>),
}

/// What the replay decided for one case.
struct Simulated {
    decision: Decision,
    action_id: Option<Uuid>,
    request_id: Option<Uuid>,
}

impl Simulated {
    /// Whether the replay proposes what `recorded` proposed (the same action on the same
    /// target), so what followed the recorded decision can follow the simulated one.
    fn proposes_as(&self, recorded: &Decision) -> bool {
        let (a, b) = (Side::of(&self.decision), Side::of(recorded));
        a.action == b.action && a.target == b.target
    }
}

/// Replays `history` through `policy` (named `origin` in the report).
pub fn simulate(history: &History, policy: &Policy, origin: &str) -> Result<Report, SimulateError> {
    let interlock = InterlockState::armed();
    let mut replay = Replay::new(policy, &interlock);
    let cases = history.cases();

    // The recorded actions brain ran for each case (so their outcomes can follow them), and
    // the case of each recorded decision (so its approval can).
    let mut recorded_action: HashMap<Uuid, usize> = HashMap::new();
    let mut recorded_decision: HashMap<Uuid, usize> = HashMap::new();
    for (index, case) in cases.iter().enumerate() {
        let Some(decision) = case.recorded else {
            continue;
        };
        recorded_decision.insert(decision.message.decision_id, index);
        if let Some(id) = decision
            .message
            .tags
            .get("action_id")
            .and_then(|id| id.parse().ok())
        {
            recorded_action.insert(id, index);
        }
    }

    // Time order, with the streams' order among equal times; an outcome or approval stored at
    // the same time as an incident version counts before it (it was in brain's state first).
    let approved = history
        .actions
        .iter()
        .filter(|a| a.message.approval_id.is_some());
    let mut steps: Vec<(Timestamp, u8, u64, Step<'_>)> = history
        .outcomes
        .iter()
        .map(|o| (o.message.timestamp, 0, o.sequence, Step::Outcome(o)))
        .chain(approved.map(|a| (a.message.timestamp, 1, a.sequence, Step::Approved(a))))
        .chain(cases.iter().enumerate().map(|(index, case)| {
            let incident = case.incident;
            (
                incident.message.timestamp,
                2,
                incident.sequence,
                Step::Incident(index, *case),
            )
        }))
        .collect();
    steps.sort_by_key(|(at, rank, sequence, _)| (*at, *rank, *sequence));

    let mut simulated: Vec<Option<Simulated>> = (0..cases.len()).map(|_| None).collect();
    let mut labels = Labels::default();
    let mut summary = report::Summary::default();
    for (_, _, _, step) in steps {
        match step {
            Step::Incident(index, case) => {
                let incident = &case.incident.message;
                let plan = replay
                    .incident(incident, incident.timestamp)
                    .map_err(|source| SimulateError::Decide {
                        sequence: case.incident.sequence,
                        incident_id: incident.incident_id,
                        source,
                    })?;
                if let Some(action) = &plan.action {
                    labels.add(action.action_id, "action");
                }
                if let Some(request) = &plan.request {
                    labels.add(request.approval_request_id, "request");
                }
                simulated[index] = Some(Simulated {
                    action_id: plan.action.as_ref().map(|a| a.action_id),
                    request_id: plan.request.as_ref().map(|r| r.approval_request_id),
                    decision: plan.decision,
                });
            }
            Step::Approved(action) => {
                // The administrator approved the recorded request: if the replay asked the same,
                // it is taken as approved the same way at the same time.
                let replayed = recorded_decision
                    .get(&action.message.decision_id)
                    .and_then(|&index| {
                        let sim = simulated[index].as_ref()?;
                        sim.proposes_as(&cases[index].recorded?.message)
                            .then_some(sim.request_id?)
                    })
                    .and_then(|request_id| replay.approved(request_id, &action.message));
                if replayed.is_some() {
                    summary.approvals_replayed += 1;
                } else {
                    summary.approvals_not_replayed += 1;
                }
            }
            Step::Outcome(outcome) => {
                let action_id = outcome.message.action_id;
                let simulated_action = match recorded_action.get(&action_id) {
                    Some(&index) => simulated[index].as_ref().and_then(|sim| {
                        sim.proposes_as(&cases[index].recorded?.message)
                            .then_some(sim.action_id?)
                    }),
                    // An approved action the replay took over keeps its recorded id.
                    None => Some(action_id),
                };
                let replayed = simulated_action
                    .and_then(|action_id| replay.outcome(action_id, &outcome.message));
                if replayed.is_some() {
                    summary.outcomes_replayed += 1;
                } else {
                    summary.outcomes_not_replayed += 1;
                }
            }
        }
    }

    let mut changes = Vec::new();
    for (case, sim) in cases.iter().zip(simulated) {
        let sim = sim.expect("every case is replayed");
        let incident = &case.incident.message;
        let recorded = case.recorded.map(|d| Side::of(&d.message));
        let side = Side::of(&sim.decision);
        let differs_in = report::differences(recorded.as_ref(), &side);
        let effects = report::effects(recorded.as_ref(), &side);
        summary.incidents += 1;
        if differs_in.is_empty() && effects.is_empty() {
            summary.unchanged += 1;
            continue;
        }
        summary.changed += 1;
        if recorded.is_none() {
            summary.without_recorded_decision += 1;
        }
        for effect in &effects {
            match effect {
                Effect::ActionWouldRun => summary.actions_would_run += 1,
                Effect::ActionWouldNoLongerRun => summary.actions_would_no_longer_run += 1,
                Effect::ApprovalWouldBeAsked => summary.approvals_would_be_asked += 1,
                Effect::ApprovalNoLongerAsked => summary.approvals_no_longer_asked += 1,
            }
        }
        changes.push(Change {
            incident_sequence: case.incident.sequence,
            incident_id: incident.incident_id,
            incident_type: incident.incident_type.to_string(),
            severity: incident.severity.to_string(),
            state: incident.state.to_string(),
            at: incident.timestamp,
            recorded,
            simulated: side,
            differs_in,
            effects,
            reasoning: labels.apply(sim.decision.reasoning.as_str()),
        });
    }

    let first = history.incidents.first();
    let last = history.incidents.last();
    Ok(Report {
        format: report::FORMAT,
        policy: report::PolicyInfo {
            origin: origin.to_string(),
            autonomy_level: policy.autonomy_level.to_string(),
            rules: policy.rules.len(),
            fallback: policy.fallback.is_some(),
        },
        assumptions: assumptions(&replay),
        window: report::Window {
            incidents: history.incidents.len(),
            first_sequence: first.map(|r| r.sequence),
            last_sequence: last.map(|r| r.sequence),
            from: history.incidents.iter().map(|r| r.message.timestamp).min(),
            to: history.incidents.iter().map(|r| r.message.timestamp).max(),
            decisions: history.decisions.len(),
            actions: history.actions.len(),
            outcomes: history.outcomes.len(),
        },
        summary,
        changes,
    })
}

fn assumptions(replay: &Replay<'_>) -> Vec<String> {
    vec![
        format!(
            "the ops interlock armed with no risk ceiling throughout (recorded decisions do not say how it stood), so {}",
            lowercase_first(&replay.autonomy().why)
        ),
        "time is each incident version's own timestamp; cooldowns, rate limits and breakers start empty at the first incident of the window".to_string(),
        "an approval request the simulation makes is approved as recorded where brain asked the same (same incident version, action and target) and an administrator approved it: the approved action counts at its recorded time; any other request is never answered and waits until it expires (denials are not replayed)".to_string(),
        "no silence holds brain back: recorded silences (ORION_SILENCES) are not replayed, so an incident a silence kept from acting shows as a change".to_string(),
        "a recorded outcome counts for a breaker only where the new policy runs the same action on the same target for the same incident version (or takes over its approval); actions only the new policy runs do not fail".to_string(),
    ]
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Stable names for the ids of messages the simulation would have made: random ids would make
/// two runs on the same history differ, and these never existed.
#[derive(Default)]
struct Labels {
    names: Vec<(String, String)>,
    counts: HashMap<&'static str, usize>,
}

impl Labels {
    fn add(&mut self, id: Uuid, kind: &'static str) {
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        self.names.push((id.to_string(), format!("sim-{kind}-{n}")));
    }

    fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (id, name) in &self.names {
            if text.contains(id.as_str()) {
                text = text.replace(id.as_str(), name);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests;
