//! What a simulation found, as data (the `--json` shape) and as the table `brain simulate`
//! prints. Nothing here decides anything: [`super::simulate`] fills it in.
//!
//! The JSON shape (`format` = [`FORMAT`]; fields are only ever added under this name):
//!
//! ```text
//! { "format": "brain-simulation/1",
//!   "policy":  { "origin", "autonomy_level", "rules", "fallback" },
//!   "assumptions": [ "..." ],                     what the replay could not know
//!   "window":  { "incidents", "first_sequence", "last_sequence", "from", "to",
//!                "decisions", "actions", "outcomes" },  what was read (sequences of ORION_INCIDENTS)
//!   "summary": { "incidents", "unchanged", "changed", "without_recorded_decision",
//!                "actions_would_run", "actions_would_no_longer_run",
//!                "approvals_would_be_asked", "approvals_no_longer_asked",
//!                "outcomes_replayed", "outcomes_not_replayed",
//!                "approvals_replayed", "approvals_not_replayed" },
//!   "changes": [ { "incident_sequence", "incident_id", "incident_type", "severity", "state",
//!                  "at",                          the incident version's time (the replay's clock)
//!                  "recorded":  side | null,      null: brain recorded no decision for it
//!                  "simulated": side,
//!                  "differs_in": [ "decision_type" | "safety" | "rule" | "action" | "target" ],
//!                  "effects": [ "action_would_run" | "action_would_no_longer_run"
//!                             | "approval_would_be_asked" | "approval_no_longer_asked" ],
//!                  "reasoning": "..." } ] }       the simulated decision's reasoning
//! side = { "decision_type", "safety", "rule", "action", "target", "autonomy_level" }
//! ```
//!
//! Only incident versions whose decision would differ are listed under `changes`; ids of
//! messages the simulation would have made appear as `sim-action-N` / `sim-request-N` (they
//! never existed, and stable labels keep two runs comparable).

use contracts::generated::decision_v1::DecisionDecisionType;
use contracts::{Decision, Timestamp};
use serde::Serialize;
use uuid::Uuid;

/// The name and version of the JSON shape.
pub const FORMAT: &str = "brain-simulation/1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub policy: PolicyInfo,
    pub assumptions: Vec<String>,
    pub window: Window,
    pub summary: Summary,
    pub changes: Vec<Change>,
}

/// The policy simulated.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// The file (as given on the command line).
    pub origin: String,
    pub autonomy_level: String,
    pub rules: usize,
    pub fallback: bool,
}

/// What history was replayed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Incident versions replayed.
    pub incidents: usize,
    /// Their stream sequences in ORION_INCIDENTS.
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// The first and last incident version's time.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Recorded decisions, actions and outcomes read alongside.
    pub decisions: usize,
    pub actions: usize,
    pub outcomes: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub incidents: usize,
    pub unchanged: usize,
    pub changed: usize,
    /// Incident versions brain recorded no decision for (each is also a change).
    pub without_recorded_decision: usize,
    pub actions_would_run: usize,
    pub actions_would_no_longer_run: usize,
    pub approvals_would_be_asked: usize,
    pub approvals_no_longer_asked: usize,
    /// Recorded outcomes counted for the simulated breakers (the same action ran again).
    pub outcomes_replayed: usize,
    /// Recorded outcomes of actions the new policy would not run the same way.
    pub outcomes_not_replayed: usize,
    /// Recorded approvals taken over by the simulation (it asked the same).
    pub approvals_replayed: usize,
    /// Recorded approvals of requests the simulation would not make the same way.
    pub approvals_not_replayed: usize,
}

/// One incident version whose decision would differ.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub incident_sequence: u64,
    pub incident_id: Uuid,
    pub incident_type: String,
    pub severity: String,
    pub state: String,
    pub at: Timestamp,
    pub recorded: Option<Side>,
    pub simulated: Side,
    pub differs_in: Vec<&'static str>,
    pub effects: Vec<Effect>,
    pub reasoning: String,
}

/// A decision, as far as the comparison goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    pub decision_type: String,
    pub safety: String,
    /// The policy rule that proposed the action (`policy_rule` tag).
    pub rule: Option<String>,
    /// The proposed action type.
    pub action: Option<String>,
    pub target: Option<String>,
    pub autonomy_level: Option<String>,
}

impl Side {
    pub fn of(decision: &Decision) -> Self {
        Self {
            decision_type: decision.decision_type.to_string(),
            safety: decision.safety_classification.to_string(),
            rule: decision.tags.get("policy_rule").cloned(),
            action: decision
                .proposed_action
                .as_ref()
                .map(|p| p.action_type.clone()),
            target: decision.tags.get("target").cloned(),
            autonomy_level: decision.autonomy_level.map(|l| l.to_string()),
        }
    }

    fn runs(&self) -> bool {
        self.decision_type == DecisionDecisionType::ExecuteSafeAction.to_string()
    }

    fn asks(&self) -> bool {
        self.decision_type == DecisionDecisionType::RequestApproval.to_string()
    }

    fn what(&self) -> (&Option<String>, &Option<String>) {
        (&self.action, &self.target)
    }

    /// `EXECUTE_SAFE_ACTION SAFE restart-web`.
    fn short(&self) -> String {
        let mut text = format!("{} {}", self.decision_type, self.safety);
        if let Some(rule) = &self.rule {
            text.push(' ');
            text.push_str(rule);
        }
        text
    }
}

/// What would happen differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    ActionWouldRun,
    ActionWouldNoLongerRun,
    ApprovalWouldBeAsked,
    ApprovalNoLongerAsked,
}

impl Effect {
    fn words(self) -> &'static str {
        match self {
            Effect::ActionWouldRun => "action would run",
            Effect::ActionWouldNoLongerRun => "action would no longer run",
            Effect::ApprovalWouldBeAsked => "approval would be asked",
            Effect::ApprovalNoLongerAsked => "approval no longer asked",
        }
    }
}

/// The fields in which `simulated` differs from `recorded`.
pub fn differences(recorded: Option<&Side>, simulated: &Side) -> Vec<&'static str> {
    let Some(recorded) = recorded else {
        return vec!["no_recorded_decision"];
    };
    let mut differs = Vec::new();
    for (name, a, b) in [
        (
            "decision_type",
            Some(&recorded.decision_type),
            Some(&simulated.decision_type),
        ),
        ("safety", Some(&recorded.safety), Some(&simulated.safety)),
        ("rule", recorded.rule.as_ref(), simulated.rule.as_ref()),
        (
            "action",
            recorded.action.as_ref(),
            simulated.action.as_ref(),
        ),
        (
            "target",
            recorded.target.as_ref(),
            simulated.target.as_ref(),
        ),
    ] {
        if a != b {
            differs.push(name);
        }
    }
    differs
}

/// What changes in what runs and what is asked. An action (or request) for another action
/// type or target counts as one that no longer runs and one that would.
pub fn effects(recorded: Option<&Side>, simulated: &Side) -> Vec<Effect> {
    let mut effects = Vec::new();
    let (ran, asked) = recorded.map_or((false, false), |r| (r.runs(), r.asks()));
    let same = recorded.is_some_and(|r| r.what() == simulated.what());
    if ran && (!simulated.runs() || !same) {
        effects.push(Effect::ActionWouldNoLongerRun);
    }
    if simulated.runs() && (!ran || !same) {
        effects.push(Effect::ActionWouldRun);
    }
    if asked && (!simulated.asks() || !same) {
        effects.push(Effect::ApprovalNoLongerAsked);
    }
    if simulated.asks() && (!asked || !same) {
        effects.push(Effect::ApprovalWouldBeAsked);
    }
    effects
}

impl Report {
    /// The `--json` output.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// The table `brain simulate` prints.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let p = &self.policy;
        let w = &self.window;
        out.push_str(&format!(
            "Simulation of policy {} (level {}, {} rule{}{}) on {} recorded incident version{}",
            p.origin,
            p.autonomy_level,
            p.rules,
            if p.rules == 1 { "" } else { "s" },
            if p.fallback { ", fallback" } else { "" },
            w.incidents,
            if w.incidents == 1 { "" } else { "s" },
        ));
        if let (Some(first), Some(last), Some(from), Some(to)) =
            (w.first_sequence, w.last_sequence, w.from, w.to)
        {
            out.push_str(&format!(
                " (ORION_INCIDENTS seq {first}-{last}, {from} to {to})"
            ));
        }
        out.push_str(&format!(
            "; {} decision{}, {} action{} and {} outcome{} recorded alongside. Nothing was published.\n",
            w.decisions,
            if w.decisions == 1 { "" } else { "s" },
            w.actions,
            if w.actions == 1 { "" } else { "s" },
            w.outcomes,
            if w.outcomes == 1 { "" } else { "s" },
        ));
        for assumption in &self.assumptions {
            out.push_str(&format!("Assumed: {assumption}\n"));
        }
        let s = &self.summary;
        out.push_str(&format!(
            "\n{} unchanged, {} would change ({} without a recorded decision). Actions: {} would run, {} would no longer run. Approvals: {} would be asked, {} no longer asked. Recorded outcomes replayed: {} ({} not); recorded approvals replayed: {} ({} not).\n",
            s.unchanged,
            s.changed,
            s.without_recorded_decision,
            s.actions_would_run,
            s.actions_would_no_longer_run,
            s.approvals_would_be_asked,
            s.approvals_no_longer_asked,
            s.outcomes_replayed,
            s.outcomes_not_replayed,
            s.approvals_replayed,
            s.approvals_not_replayed,
        ));
        if self.changes.is_empty() {
            out.push_str("\nNo decision would change.\n");
            return out;
        }
        let header = ["SEQ", "INCIDENT", "TYPE", "RECORDED", "SIMULATED", "EFFECT"];
        let rows: Vec<[String; 6]> = self
            .changes
            .iter()
            .map(|c| {
                [
                    c.incident_sequence.to_string(),
                    c.incident_id.to_string()[..8].to_string(),
                    format!("{} {}", c.incident_type, c.severity),
                    c.recorded
                        .as_ref()
                        .map_or("(no decision recorded)".to_string(), Side::short),
                    c.simulated.short(),
                    if c.effects.is_empty() {
                        format!("differs in {}", c.differs_in.join(", "))
                    } else {
                        c.effects
                            .iter()
                            .map(|e| e.words())
                            .collect::<Vec<_>>()
                            .join("; ")
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            text.trim_end().to_string() + "\n"
        };
        out.push('\n');
        out.push_str(&line(&header.map(String::from)));
        for row in &rows {
            out.push_str(&line(row));
        }
        out.push_str("\nWhy, in the simulated decisions' words:\n");
        for c in &self.changes {
            out.push_str(&format!("  seq {}: {}\n", c.incident_sequence, c.reasoning));
        }
        out
    }
}
