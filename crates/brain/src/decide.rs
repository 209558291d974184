//! The decision for one incident (pure): incident + policy evaluation + limits state +
//! interlock → a decision, and possibly an action or an approval request, plus what to record.
//!
//! | effective level | SAFE | RISKY / UNKNOWN |
//! | --- | --- | --- |
//! | N0 observe | NO_ACTION | NO_ACTION |
//! | N1 suggest | SUGGEST_ACTION (proposed_action) | SUGGEST_ACTION (proposed_action) |
//! | N2 | EXECUTE_SAFE_ACTION + Action | NO_ACTION (blocked: needs N3 and an approval) |
//! | N3 | EXECUTE_SAFE_ACTION + Action | REQUEST_APPROVAL + ApprovalRequest |
//!
//! At N2/N3 the cooldown, rate limit and circuit breaker of the action + target come first: if
//! one blocks, the decision is NO_ACTION saying which and for how long. At N3 a second request
//! for an action + target whose request is still waiting is NO_ACTION too. Only incidents in
//! state `open` can lead to an action; guardian re-emits an incident as it grows, and the
//! cooldown (started by the first action, or by a denial) keeps those versions from acting again.
//!
//! The effective level is the policy's level capped by the ops risk ceiling, and N0 while the
//! ops interlock is disarmed (or cannot be read).
//!
//! Before any of that, at every level: a rule whose rendered target (`service_name`,
//! `device_id`) is not a canonical name, or not in the rule's `targets`, gets NO_ACTION naming
//! the target and the rule it breaks ([`crate::policy::target_of`]). Targets come from event
//! data, and the platform acts on a name only as it is spelled and only where the policy lets
//! it.

use contracts::generated::decision_v1::DecisionDecisionType;
use contracts::generated::incident_v1::IncidentState;
use contracts::{Action, ApprovalRequest, ContractError, Decision, Incident, Timestamp};
use uuid::Uuid;

use crate::interlock::{Armed, InterlockState};
use crate::limits::{assess, ActionMark, LimitState, RequestMark};
use crate::messages::{tags, ActionDraft, DecisionDraft, Proposed, RequestDraft};
use crate::policy::{Evaluation, Level, LimitKey, Proposal, Safety, TargetRefusal};
use crate::records::RequestRecord;

/// The level in force and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autonomy {
    pub configured: Level,
    pub effective: Level,
    /// One sentence an operator can act on.
    pub why: String,
}

/// The effective level: the policy's, capped by the risk ceiling; N0 while disarmed.
pub fn autonomy(configured: Level, interlock: &InterlockState) -> Autonomy {
    match &interlock.armed {
        Armed::Disarmed { detail } => {
            return Autonomy {
                configured,
                effective: Level::N0,
                why: format!(
                    "Level N0 (observe only) is in force: the ops interlock is disarmed ({detail}); the policy's {configured} applies again after an ops `arm`"
                ),
            }
        }
        Armed::Missing => {
            return Autonomy {
                configured,
                effective: Level::N0,
                why: format!(
                    "Level N0 (observe only) is in force: the ops interlock has no `armed` record in bucket `ops_interlock`, and a missing record means disarmed (fail closed); the policy's {configured} applies after an ops `arm` writes it"
                ),
            }
        }
        Armed::Unreadable { why } => {
            return Autonomy {
                configured,
                effective: Level::N0,
                why: format!(
                    "Level N0 (observe only) is in force: the ops interlock cannot be read ({why}); brain fails closed until it can"
                ),
            }
        }
        Armed::Armed { .. } => {}
    }
    match &interlock.ceiling {
        Some(ceiling) if ceiling.level < configured => Autonomy {
            configured,
            effective: ceiling.level,
            why: format!(
                "Level {} ({}) is in force: the policy says {configured} but the ops risk ceiling is {} ({})",
                ceiling.level,
                ceiling.level.meaning(),
                ceiling.level,
                ceiling.detail
            ),
        },
        ceiling => Autonomy {
            configured,
            effective: configured,
            why: format!(
                "Level {configured} ({}) is in force: the policy's level; the ops interlock is armed{}",
                configured.meaning(),
                match ceiling {
                    Some(c) => format!(" and the risk ceiling {} does not lower it", c.level),
                    None => " with no risk ceiling".to_string(),
                }
            ),
        },
    }
}

/// What to record in brain's state when the plan is carried out.
#[derive(Debug, Clone)]
pub enum LimitChange {
    /// An action was emitted: starts the cooldown and counts for the rate limit.
    Action { key: LimitKey, mark: ActionMark },
    /// An approval request was made: it waits, and blocks a second one.
    Request {
        key: LimitKey,
        mark: RequestMark,
        record: Box<RequestRecord>,
    },
}

/// The response to one incident.
#[derive(Debug, Clone)]
pub struct IncidentPlan {
    pub decision: Decision,
    pub action: Option<Action>,
    pub request: Option<ApprovalRequest>,
    pub change: Option<LimitChange>,
}

fn sentence(text: impl AsRef<str>) -> String {
    let text = text.as_ref().trim_end();
    if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

fn join(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(sentence)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decides what to do about `incident`.
///
/// `limits` is the state of the proposal's action + target (if any); `approval_timeout_s`
/// sets the request's expiry.
pub fn decide(
    incident: &Incident,
    evaluation: &Evaluation<'_>,
    limits: Option<&LimitState>,
    autonomy: &Autonomy,
    approval_timeout_s: u64,
    now: Timestamp,
) -> Result<IncidentPlan, ContractError> {
    let level = autonomy.effective;
    let what = format!(
        "incident {} ({}, severity {})",
        incident.incident_id, incident.incident_type, incident.severity
    );
    let what_first = capitalize(&what);
    let no_action = |safety: Safety, reasoning: String, proposal: Option<&Proposal<'_>>| {
        let draft = DecisionDraft {
            incident_id: incident.incident_id,
            decision_type: DecisionDecisionType::NoAction,
            safety,
            reasoning,
            proposed: proposal.map(proposed),
            level,
            tags: proposal.map(proposal_tags).unwrap_or_default(),
        };
        Ok(IncidentPlan {
            decision: draft.build(now)?,
            action: None,
            request: None,
            change: None,
        })
    };

    if incident.state != IncidentState::Open {
        let safety = match evaluation {
            Evaluation::Proposal(p) => p.safety(),
            Evaluation::RenderFailed { rule, .. } | Evaluation::TargetRefused { rule, .. } => {
                rule.safety
            }
            Evaluation::NoRule { .. } => Safety::Unknown,
        };
        return no_action(
            safety,
            join(&[
                format!(
                    "{what_first} is {}: brain acts only on open incidents, so nothing is done",
                    incident.state
                ),
                autonomy.why.clone(),
            ]),
            None,
        );
    }

    let proposal = match evaluation {
        Evaluation::NoRule { near_misses } => {
            let near = if near_misses.is_empty() {
                String::new()
            } else {
                format!(" ({})", near_misses.join("; "))
            };
            return no_action(
                Safety::Unknown,
                join(&[
                    format!("No policy rule covers {what}{near} and no [fallback] is configured: safety UNKNOWN (treated as RISKY) and nothing to propose, so nothing is done"),
                    autonomy.why.clone(),
                    format!("To act on such incidents, add a [[rules]] entry for {} (or a [fallback]) to the policy", incident.incident_type),
                ]),
                None,
            );
        }
        Evaluation::RenderFailed { rule, failures } => {
            return no_action(
                rule.safety,
                join(&[
                    format!("{what_first} is covered by the policy, but no covering rule can build its parameters: {}; nothing is done", failures.join("; ")),
                    autonomy.why.clone(),
                    "Fix the rule's templates, or the tags guardian puts on such incidents".to_string(),
                ]),
                None,
            );
        }
        Evaluation::TargetRefused { rule, refusal } => {
            let remedy = match refusal {
                TargetRefusal::NotCanonical { .. } => "The target comes from the incident's tags, which the event source sets: fix the name there (brain acts on a name only as it is spelled)",
                TargetRefusal::NotAllowed { .. } => "If brain should act on it, add it to that `targets` list of the policy",
            };
            return no_action(
                rule.safety,
                join(&[
                    format!(
                        "{what_first}: {} would {} on the target its parameters.{} names, but brain refuses it: {refusal}; nothing is done",
                        rule_label(rule),
                        rule.action,
                        refusal.parameter()
                    ),
                    autonomy.why.clone(),
                    remedy.to_string(),
                ]),
                None,
            );
        }
        Evaluation::Proposal(p) => p,
    };

    let rule = proposal.rule;
    let safety = proposal.safety();
    let key = proposal.limit_key();
    let mut intro = if safety == Safety::Unknown {
        let near = if proposal.near_misses.is_empty() {
            String::new()
        } else {
            format!(" ({})", proposal.near_misses.join("; "))
        };
        format!(
            "No policy rule covers {what}{near}; the policy's [fallback] (line {}) proposes {} on {}, safety UNKNOWN (treated as RISKY)",
            rule.line, rule.action, proposal.target
        )
    } else {
        format!(
            "{what_first}: policy rule `{}` (line {}) proposes {} on {}, classified {safety}",
            rule.name, rule.line, rule.action, proposal.target
        )
    };
    if !proposal.skipped.is_empty() {
        intro.push_str(&format!(
            " (earlier covering rules skipped: {})",
            proposal.skipped.join("; ")
        ));
    }

    match level {
        Level::N0 => no_action(
            safety,
            join(&[intro, autonomy.why.clone(), "Observing only: nothing is done".to_string()]),
            Some(proposal),
        ),
        Level::N1 => {
            let check = assess(limits, &rule.limits, now, false);
            let mut notes = vec![
                intro,
                autonomy.why.clone(),
                format!(
                    "Suggested for an operator to carry out by hand; brain emits no action"
                ),
            ];
            if !check.blocks.is_empty() {
                notes.push(format!(
                    "Note: {}",
                    check
                        .blocks
                        .iter()
                        .map(|b| b.describe(&key))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            let draft = DecisionDraft {
                incident_id: incident.incident_id,
                decision_type: DecisionDecisionType::SuggestAction,
                safety,
                reasoning: join(&notes),
                proposed: Some(proposed(proposal)),
                level,
                tags: proposal_tags(proposal),
            };
            Ok(IncidentPlan {
                decision: draft.build(now)?,
                action: None,
                request: None,
                change: None,
            })
        }
        Level::N2 if safety.needs_approval() => no_action(
            safety,
            join(&[
                intro,
                autonomy.why.clone(),
                format!("{safety} actions are blocked at N2: they need level N3 and a signed approval, so nothing is done"),
            ]),
            Some(proposal),
        ),
        Level::N2 | Level::N3 => {
            let check = assess(limits, &rule.limits, now, safety.needs_approval());
            if !check.blocks.is_empty() {
                let blocks: Vec<String> = check.blocks.iter().map(|b| b.describe(&key)).collect();
                return no_action(
                    safety,
                    join(&[
                        intro,
                        autonomy.why.clone(),
                        format!("Blocked: {}; nothing is done", blocks.join("; ")),
                    ]),
                    Some(proposal),
                );
            }
            let decision_id = Uuid::new_v4();
            let mut action_tags = proposal_tags(proposal);
            action_tags.insert("incident_id".into(), incident.incident_id.to_string());
            // Built even when only an approval is requested: the parameters must make a valid
            // action before anyone is asked to approve it.
            let action = ActionDraft {
                decision_id,
                action_type: rule.action,
                safety,
                parameters: &proposal.parameters,
                approval_id: None,
                tags: action_tags,
            }
            .build(now);
            let action = match action {
                Ok(action) => action,
                Err(e) => {
                    return no_action(
                        safety,
                        join(&[
                            intro,
                            autonomy.why.clone(),
                            format!("The rendered parameters break the action contract ({e}); nothing is done — fix rule `{}`", rule.name),
                        ]),
                        Some(proposal),
                    )
                }
            };
            if safety == Safety::Safe {
                let reasoning = join(&[
                    intro,
                    autonomy.why.clone(),
                    format!("Limits clear ({}): executing action {}", check.summary, action.action_id),
                ]);
                let mut decision_tags = proposal_tags(proposal);
                decision_tags.insert("action_id".into(), action.action_id.to_string());
                let decision = DecisionDraft {
                    incident_id: incident.incident_id,
                    decision_type: DecisionDecisionType::ExecuteSafeAction,
                    safety,
                    reasoning,
                    proposed: Some(proposed(proposal)),
                    level,
                    tags: decision_tags,
                }
                .build_with_id(decision_id, now)?;
                let mark = ActionMark {
                    action_id: action.action_id,
                    at: now,
                    incident_id: incident.incident_id,
                    approval_id: None,
                };
                Ok(IncidentPlan {
                    decision,
                    action: Some(action),
                    request: None,
                    change: Some(LimitChange::Action { key, mark }),
                })
            } else {
                let reasoning = join(&[
                    intro,
                    autonomy.why.clone(),
                    format!(
                        "Limits clear ({}): an administrator must approve within {}s (approval-cli approve|deny|force); nothing runs until a signed approval arrives",
                        check.summary, approval_timeout_s
                    ),
                ]);
                let request = RequestDraft {
                    decision_id,
                    incident_id: incident.incident_id,
                    action_type: &rule.action.to_string(),
                    parameters: &proposal.parameters,
                    reasoning: &reasoning,
                    timeout_s: approval_timeout_s,
                    tags: proposal_tags(proposal),
                }
                .build(now)?;
                let mut decision_tags = proposal_tags(proposal);
                decision_tags.insert(
                    "approval_request_id".into(),
                    request.approval_request_id.to_string(),
                );
                let decision = DecisionDraft {
                    incident_id: incident.incident_id,
                    decision_type: DecisionDecisionType::RequestApproval,
                    safety,
                    reasoning,
                    proposed: Some(proposed(proposal)),
                    level,
                    tags: decision_tags,
                }
                .build_with_id(decision_id, now)?;
                let mark = RequestMark {
                    approval_request_id: request.approval_request_id,
                    expires_at: request.expires_at,
                    incident_id: incident.incident_id,
                };
                let record = RequestRecord {
                    request: request.clone(),
                    policy_rule: rule.name.clone(),
                    safety,
                    limit_key: key.clone(),
                    limits: rule.limits,
                    settlement: None,
                    refused: Vec::new(),
                };
                Ok(IncidentPlan {
                    decision,
                    action: None,
                    request: Some(request),
                    change: Some(LimitChange::Request {
                        key,
                        mark,
                        record: Box::new(record),
                    }),
                })
            }
        }
    }
}

/// How reasoning names a rule.
fn rule_label(rule: &crate::policy::Rule) -> String {
    if rule.safety == Safety::Unknown {
        format!("the policy's [fallback] (line {})", rule.line)
    } else {
        format!("policy rule `{}` (line {})", rule.name, rule.line)
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn proposed(proposal: &Proposal<'_>) -> Proposed {
    Proposed {
        action_type: proposal.rule.action.to_string(),
        parameters: proposal.parameters.clone(),
    }
}

fn proposal_tags(proposal: &Proposal<'_>) -> std::collections::BTreeMap<String, String> {
    tags([
        ("policy_rule", proposal.rule.name.clone()),
        ("target", proposal.target.to_string()),
    ])
}

#[cfg(test)]
mod tests;
