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
//! Before any of that, at every level: while a silence (a maintenance window an administrator
//! signed, [`crate::silences`]) is in force and matches an open incident — its incident type,
//! its tags, and the target the policy would act on — the decision is NO_ACTION naming the
//! silence, its author, its end and its reason. A silence ends on its own at its `ends_at`: at
//! or after that instant it no longer applies.
//!
//! Then, at every level: a rule whose rendered target (`service_name`,
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
use crate::policy::{Evaluation, Level, LimitKey, Proposal, Rule, Safety, TargetRefusal};
use crate::records::RequestRecord;
use crate::silences::{SilenceBook, SilenceEntry, Subject};

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
///
/// The steps, in order: an incident that is not open gets nothing; an incident a silence in
/// force matches gets nothing, naming the silence; an evaluation without a proposal (no rule, unrenderable parameters, a refused target) gets nothing, saying why;
/// then the effective level decides between observing, suggesting, refusing RISKY at N2, and
/// acting — which the limits or the action contract can stop, and which is an action for SAFE
/// and an approval request otherwise.
pub fn decide(
    incident: &Incident,
    evaluation: &Evaluation<'_>,
    limits: Option<&LimitState>,
    autonomy: &Autonomy,
    silences: &SilenceBook,
    approval_timeout_s: u64,
    now: Timestamp,
) -> Result<IncidentPlan, ContractError> {
    let deciding = Deciding::new(incident, autonomy, now);
    if incident.state != IncidentState::Open {
        return deciding.not_open(evaluation);
    }
    let target = match evaluation {
        Evaluation::Proposal(p) => Some(p.target.as_str()),
        _ => None,
    };
    let incident_type = incident.incident_type.to_string();
    let subject = Subject {
        target,
        incident_type: &incident_type,
        tags: &incident.tags,
    };
    let matching = silences.matching(&subject, now);
    if !matching.is_empty() {
        return deciding.silenced(evaluation, &matching);
    }
    let proposal = match evaluation {
        Evaluation::Proposal(p) => p,
        Evaluation::NoRule { near_misses } => return deciding.no_rule(near_misses),
        Evaluation::RenderFailed { rule, failures } => {
            return deciding.unrenderable(rule, failures)
        }
        Evaluation::TargetRefused { rule, refusal } => {
            return deciding.target_refused(rule, refusal)
        }
    };
    let intro = deciding.intro(proposal);
    match autonomy.effective {
        Level::N0 => deciding.observe(proposal, intro),
        Level::N1 => deciding.suggest(proposal, intro, limits),
        Level::N2 if proposal.safety().needs_approval() => deciding.refuse_at_n2(proposal, intro),
        Level::N2 | Level::N3 => deciding.act(proposal, intro, limits, approval_timeout_s),
    }
}

/// What every step of [`decide`] knows: the incident, the level in force, the time.
struct Deciding<'a> {
    incident: &'a Incident,
    autonomy: &'a Autonomy,
    now: Timestamp,
    /// How reasoning names the incident: `incident <id> (<type>, severity <s>)`.
    what: String,
}

impl<'a> Deciding<'a> {
    fn new(incident: &'a Incident, autonomy: &'a Autonomy, now: Timestamp) -> Self {
        let what = format!(
            "incident {} ({}, severity {})",
            incident.incident_id, incident.incident_type, incident.severity
        );
        Self {
            incident,
            autonomy,
            now,
            what,
        }
    }

    fn what_first(&self) -> String {
        capitalize(&self.what)
    }

    fn why(&self) -> String {
        self.autonomy.why.clone()
    }

    fn decision(
        &self,
        decision_type: DecisionDecisionType,
        safety: Safety,
        reasoning: String,
        proposal: Option<&Proposal<'_>>,
    ) -> DecisionDraft {
        DecisionDraft {
            incident_id: self.incident.incident_id,
            decision_type,
            safety,
            reasoning,
            proposed: proposal.map(proposed),
            level: self.autonomy.effective,
            tags: proposal.map(proposal_tags).unwrap_or_default(),
        }
    }

    /// NO_ACTION, and nothing else to emit or record.
    fn no_action(
        &self,
        safety: Safety,
        reasoning: String,
        proposal: Option<&Proposal<'_>>,
    ) -> Result<IncidentPlan, ContractError> {
        let draft = self.decision(DecisionDecisionType::NoAction, safety, reasoning, proposal);
        Ok(IncidentPlan {
            decision: draft.build(self.now)?,
            action: None,
            request: None,
            change: None,
        })
    }

    /// Only open incidents can lead to anything; the others get NO_ACTION.
    fn not_open(&self, evaluation: &Evaluation<'_>) -> Result<IncidentPlan, ContractError> {
        let safety = match evaluation {
            Evaluation::Proposal(p) => p.safety(),
            Evaluation::RenderFailed { rule, .. } | Evaluation::TargetRefused { rule, .. } => {
                rule.safety
            }
            Evaluation::NoRule { .. } => Safety::Unknown,
        };
        self.no_action(
            safety,
            join(&[
                format!(
                    "{} is {}: brain acts only on open incidents, so nothing is done",
                    self.what_first(),
                    self.incident.state
                ),
                self.why(),
            ]),
            None,
        )
    }

    /// A silence in force matches: NO_ACTION naming every matching silence (its id, author, end
    /// and reason), and what the policy would have done.
    fn silenced(
        &self,
        evaluation: &Evaluation<'_>,
        silences: &[&SilenceEntry],
    ) -> Result<IncidentPlan, ContractError> {
        let (safety, proposal) = match evaluation {
            Evaluation::Proposal(p) => (p.safety(), Some(p)),
            Evaluation::RenderFailed { rule, .. } | Evaluation::TargetRefused { rule, .. } => {
                (rule.safety, None)
            }
            Evaluation::NoRule { .. } => (Safety::Unknown, None),
        };
        let named: Vec<String> = silences
            .iter()
            .map(|s| {
                format!(
                    "silence {} by {} until {} ({}): {:?}",
                    s.silence_id, s.created_by, s.ends_at, s.criteria, s.reason
                )
            })
            .collect();
        let first = silences[0];
        let mut parts = vec![format!(
            "{} is silenced by {}; nothing is done",
            self.what_first(),
            named.join("; ")
        )];
        if let Some(p) = proposal {
            parts.push(format!("Without it, {}", lowercase_first(&self.intro(p))));
        }
        parts.push(format!(
            "The silence ends on its own at {}; lift it earlier with `approval-cli unsilence {} --reason …`",
            first.ends_at, first.silence_id
        ));
        let mut draft = self.decision(
            DecisionDecisionType::NoAction,
            safety,
            join(&parts),
            proposal,
        );
        let ids: Vec<String> = silences.iter().map(|s| s.silence_id.to_string()).collect();
        draft.tags.insert(SILENCE_TAG.into(), ids.join(","));
        Ok(IncidentPlan {
            decision: draft.build(self.now)?,
            action: None,
            request: None,
            change: None,
        })
    }

    /// No rule covers the incident and there is no fallback: NO_ACTION, UNKNOWN.
    fn no_rule(&self, near_misses: &[String]) -> Result<IncidentPlan, ContractError> {
        let near = if near_misses.is_empty() {
            String::new()
        } else {
            format!(" ({})", near_misses.join("; "))
        };
        self.no_action(
            Safety::Unknown,
            join(&[
                format!("No policy rule covers {}{near} and no [fallback] is configured: safety UNKNOWN (treated as RISKY) and nothing to propose, so nothing is done", self.what),
                self.why(),
                format!("To act on such incidents, add a [[rules]] entry for {} (or a [fallback]) to the policy", self.incident.incident_type),
            ]),
            None,
        )
    }

    /// Rules cover the incident but none can render its parameters: NO_ACTION naming why.
    fn unrenderable(
        &self,
        rule: &Rule,
        failures: &[String],
    ) -> Result<IncidentPlan, ContractError> {
        self.no_action(
            rule.safety,
            join(&[
                format!("{} is covered by the policy, but no covering rule can build its parameters: {}; nothing is done", self.what_first(), failures.join("; ")),
                self.why(),
                "Fix the rule's templates, or the tags guardian puts on such incidents".to_string(),
            ]),
            None,
        )
    }

    /// The rule's target is not canonical or not allowed: NO_ACTION naming it and the remedy.
    fn target_refused(
        &self,
        rule: &Rule,
        refusal: &TargetRefusal,
    ) -> Result<IncidentPlan, ContractError> {
        let remedy = match refusal {
            TargetRefusal::NotCanonical { .. } => "The target comes from the incident's tags, which the event source sets: fix the name there (brain acts on a name only as it is spelled)",
            TargetRefusal::NotAllowed { .. } => "If brain should act on it, add it to that `targets` list of the policy",
        };
        self.no_action(
            rule.safety,
            join(&[
                format!(
                    "{}: {} would {} on the target its parameters.{} names, but brain refuses it: {refusal}; nothing is done",
                    self.what_first(),
                    rule_label(rule),
                    rule.action,
                    refusal.parameter()
                ),
                self.why(),
                remedy.to_string(),
            ]),
            None,
        )
    }

    /// The reasoning's first sentence about a proposal: which rule proposes what, how safe.
    fn intro(&self, proposal: &Proposal<'_>) -> String {
        let rule = proposal.rule;
        let safety = proposal.safety();
        let mut intro = if safety == Safety::Unknown {
            let near = if proposal.near_misses.is_empty() {
                String::new()
            } else {
                format!(" ({})", proposal.near_misses.join("; "))
            };
            format!(
                "No policy rule covers {}{near}; the policy's [fallback] (line {}) proposes {} on {}, safety UNKNOWN (treated as RISKY)",
                self.what, rule.line, rule.action, proposal.target
            )
        } else {
            format!(
                "{}: policy rule `{}` (line {}) proposes {} on {}, classified {safety}",
                self.what_first(),
                rule.name,
                rule.line,
                rule.action,
                proposal.target
            )
        };
        if !proposal.skipped.is_empty() {
            intro.push_str(&format!(
                " (earlier covering rules skipped: {})",
                proposal.skipped.join("; ")
            ));
        }
        intro
    }

    /// N0: the proposal is recorded, nothing is done.
    fn observe(
        &self,
        proposal: &Proposal<'_>,
        intro: String,
    ) -> Result<IncidentPlan, ContractError> {
        self.no_action(
            proposal.safety(),
            join(&[
                intro,
                self.why(),
                "Observing only: nothing is done".to_string(),
            ]),
            Some(proposal),
        )
    }

    /// N1: SUGGEST_ACTION for a person to carry out; limits that would block are only noted.
    fn suggest(
        &self,
        proposal: &Proposal<'_>,
        intro: String,
        limits: Option<&LimitState>,
    ) -> Result<IncidentPlan, ContractError> {
        let check = assess(limits, &proposal.rule.limits, self.now, false);
        let mut notes = vec![
            intro,
            self.why(),
            "Suggested for an operator to carry out by hand; brain emits no action".to_string(),
        ];
        if !check.blocks.is_empty() {
            let key = proposal.limit_key();
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
        let draft = self.decision(
            DecisionDecisionType::SuggestAction,
            proposal.safety(),
            join(&notes),
            Some(proposal),
        );
        Ok(IncidentPlan {
            decision: draft.build(self.now)?,
            action: None,
            request: None,
            change: None,
        })
    }

    /// N2 and a RISKY (or UNKNOWN) proposal: blocked, it needs N3 and an approval.
    fn refuse_at_n2(
        &self,
        proposal: &Proposal<'_>,
        intro: String,
    ) -> Result<IncidentPlan, ContractError> {
        let safety = proposal.safety();
        self.no_action(
            safety,
            join(&[
                intro,
                self.why(),
                format!("{safety} actions are blocked at N2: they need level N3 and a signed approval, so nothing is done"),
            ]),
            Some(proposal),
        )
    }

    /// N2/N3: the limits first, then the action's contract; then SAFE executes and the rest
    /// asks for an approval.
    fn act(
        &self,
        proposal: &Proposal<'_>,
        intro: String,
        limits: Option<&LimitState>,
        approval_timeout_s: u64,
    ) -> Result<IncidentPlan, ContractError> {
        let rule = proposal.rule;
        let safety = proposal.safety();
        let key = proposal.limit_key();
        let check = assess(limits, &rule.limits, self.now, safety.needs_approval());
        if !check.blocks.is_empty() {
            let blocks: Vec<String> = check.blocks.iter().map(|b| b.describe(&key)).collect();
            return self.no_action(
                safety,
                join(&[
                    intro,
                    self.why(),
                    format!("Blocked: {}; nothing is done", blocks.join("; ")),
                ]),
                Some(proposal),
            );
        }
        let decision_id = Uuid::new_v4();
        let mut action_tags = proposal_tags(proposal);
        action_tags.insert("incident_id".into(), self.incident.incident_id.to_string());
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
        .build(self.now);
        let action = match action {
            Ok(action) => action,
            Err(e) => {
                return self.no_action(
                    safety,
                    join(&[
                        intro,
                        self.why(),
                        format!("The rendered parameters break the action contract ({e}); nothing is done — fix rule `{}`", rule.name),
                    ]),
                    Some(proposal),
                )
            }
        };
        if safety == Safety::Safe {
            self.execute_safe(proposal, intro, &check.summary, decision_id, action)
        } else {
            self.request_approval(
                proposal,
                intro,
                &check.summary,
                decision_id,
                approval_timeout_s,
            )
        }
    }

    /// SAFE with limits clear: EXECUTE_SAFE_ACTION and the action, which starts the cooldown.
    fn execute_safe(
        &self,
        proposal: &Proposal<'_>,
        intro: String,
        limits_summary: &str,
        decision_id: Uuid,
        action: Action,
    ) -> Result<IncidentPlan, ContractError> {
        let reasoning = join(&[
            intro,
            self.why(),
            format!(
                "Limits clear ({limits_summary}): executing action {}",
                action.action_id
            ),
        ]);
        let mut draft = self.decision(
            DecisionDecisionType::ExecuteSafeAction,
            proposal.safety(),
            reasoning,
            Some(proposal),
        );
        draft
            .tags
            .insert("action_id".into(), action.action_id.to_string());
        let decision = draft.build_with_id(decision_id, self.now)?;
        let mark = ActionMark {
            action_id: action.action_id,
            at: self.now,
            incident_id: self.incident.incident_id,
            approval_id: None,
        };
        Ok(IncidentPlan {
            decision,
            action: Some(action),
            request: None,
            change: Some(LimitChange::Action {
                key: proposal.limit_key(),
                mark,
            }),
        })
    }

    /// RISKY or UNKNOWN at N3 with limits clear: REQUEST_APPROVAL and the request, which waits
    /// (and blocks a second one) until it is answered or expires.
    fn request_approval(
        &self,
        proposal: &Proposal<'_>,
        intro: String,
        limits_summary: &str,
        decision_id: Uuid,
        approval_timeout_s: u64,
    ) -> Result<IncidentPlan, ContractError> {
        let rule = proposal.rule;
        let safety = proposal.safety();
        let key = proposal.limit_key();
        let reasoning = join(&[
            intro,
            self.why(),
            format!(
                "Limits clear ({limits_summary}): an administrator must approve within {approval_timeout_s}s (approval-cli approve|deny|force); nothing runs until a signed approval arrives"
            ),
        ]);
        let request = RequestDraft {
            decision_id,
            incident_id: self.incident.incident_id,
            action_type: &rule.action.to_string(),
            parameters: &proposal.parameters,
            reasoning: &reasoning,
            timeout_s: approval_timeout_s,
            tags: proposal_tags(proposal),
        }
        .build(self.now)?;
        let mut draft = self.decision(
            DecisionDecisionType::RequestApproval,
            safety,
            reasoning,
            Some(proposal),
        );
        draft.tags.insert(
            "approval_request_id".into(),
            request.approval_request_id.to_string(),
        );
        let decision = draft.build_with_id(decision_id, self.now)?;
        let mark = RequestMark {
            approval_request_id: request.approval_request_id,
            expires_at: request.expires_at,
            incident_id: self.incident.incident_id,
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

/// The decision tag naming the silences that kept brain from acting (comma-separated ids):
/// `approval-cli trail` links the silences into the incident's chain by it.
pub const SILENCE_TAG: &str = "silence_id";

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How reasoning names a rule.
fn rule_label(rule: &Rule) -> String {
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
