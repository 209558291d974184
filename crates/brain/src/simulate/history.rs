//! The recorded history a simulation replays (pure): incidents, brain's decisions and
//! commander's outcomes as they were stored, and which decision answered which incident.

use std::collections::{HashMap, VecDeque};

use contracts::generated::decision_v1::DecisionDecisionType;
use contracts::{Action, Contract, Decision, Incident, Outcome};
use serde_json::Value;
use uuid::Uuid;

/// One stored message and its position in its stream.
#[derive(Debug, Clone)]
pub struct Recorded<T> {
    pub sequence: u64,
    pub message: T,
}

/// What the streams hold, each list in stream order.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `orion.incident.v1`: every version guardian emitted.
    pub incidents: Vec<Recorded<Incident>>,
    /// `orion.decision.v1`: every decision brain published (also those that settle approval
    /// requests, which answer no incident).
    pub decisions: Vec<Recorded<Decision>>,
    /// `orion.action.v1`: the actions brain emitted (those with an `approval_id` ran after an
    /// administrator approved a request; the others answer their decision directly).
    pub actions: Vec<Recorded<Action>>,
    /// `orion.outcome.v1`: the outcome of every action commander ran.
    pub outcomes: Vec<Recorded<Outcome>>,
}

/// One incident version and the decision brain recorded for it, if it did.
#[derive(Debug, Clone, Copy)]
pub struct Case<'h> {
    pub incident: &'h Recorded<Incident>,
    pub recorded: Option<&'h Recorded<Decision>>,
}

/// Why a history file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

/// Whether `decision` is brain's answer to an incident version, rather than the settlement of
/// an approval request (a refusal, denial or expiry: NO_ACTION naming the request).
pub fn answers_incident(decision: &Decision) -> bool {
    !(decision.decision_type == DecisionDecisionType::NoAction
        && decision.tags.contains_key("approval_request_id"))
}

impl History {
    /// A history written one message a line: `{"subject": "orion.incident.v1", "message":
    /// {..}}` (or `orion.decision.v1`, `orion.action.v1`, `orion.outcome.v1`), each message
    /// valid against its contract. Sequences count from 1 per subject in file order (what the
    /// report shows are incidents' sequences, and incidents are alone in their stream).
    pub fn from_jsonl(text: &str) -> Result<Self, HistoryError> {
        let mut history = History::default();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fail = |why: String| HistoryError::Line { line: line_no, why };
            let value: Value = serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
            let subject = value["subject"].as_str().unwrap_or_default();
            let payload = serde_json::to_vec(&value["message"]).expect("values serialize");
            let next = |n: usize| n as u64 + 1;
            match subject {
                s if s == Incident::INFO.subject => history.incidents.push(Recorded {
                    sequence: next(history.incidents.len()),
                    message: contracts::decode(&payload).map_err(|e| fail(e.to_string()))?,
                }),
                s if s == Decision::INFO.subject => history.decisions.push(Recorded {
                    sequence: next(history.decisions.len()),
                    message: contracts::decode(&payload).map_err(|e| fail(e.to_string()))?,
                }),
                s if s == Action::INFO.subject => history.actions.push(Recorded {
                    sequence: next(history.actions.len()),
                    message: contracts::decode(&payload).map_err(|e| fail(e.to_string()))?,
                }),
                s if s == Outcome::INFO.subject => history.outcomes.push(Recorded {
                    sequence: next(history.outcomes.len()),
                    message: contracts::decode(&payload).map_err(|e| fail(e.to_string()))?,
                }),
                other => return Err(fail(format!("unexpected subject {other:?}"))),
            }
        }
        Ok(history)
    }

    /// Every incident version with the decision that answered it.
    ///
    /// brain decides every version of an incident once, in stream order, so the k-th recorded
    /// answer for an incident id belongs to its k-th version. The history may start in the
    /// middle of an incident's life: answers for versions before the window come first and are
    /// left out (when an incident has more answers than versions in the window, the earliest
    /// extra ones). A version brain had not answered yet has none.
    pub fn cases(&self) -> Vec<Case<'_>> {
        let mut versions: HashMap<Uuid, usize> = HashMap::new();
        for incident in &self.incidents {
            *versions.entry(incident.message.incident_id).or_default() += 1;
        }
        let mut answers: HashMap<Uuid, VecDeque<&Recorded<Decision>>> = HashMap::new();
        for decision in &self.decisions {
            let id = decision.message.incident_id;
            if versions.contains_key(&id) && answers_incident(&decision.message) {
                answers.entry(id).or_default().push_back(decision);
            }
        }
        for (id, queue) in answers.iter_mut() {
            let extra = queue.len().saturating_sub(versions[id]);
            queue.drain(..extra);
        }
        self.incidents
            .iter()
            .map(|incident| Case {
                incident,
                recorded: answers
                    .get_mut(&incident.message.incident_id)
                    .and_then(VecDeque::pop_front),
            })
            .collect()
    }
}
