//! Approval decisions, checked (pure): signature, request, timing, interlock and limits.
//!
//! An `ApprovalDecision` counts only when, in this order:
//! 1. its `Orion-Signature` header verifies over the raw JSON received, with the public key of
//!    its `admin_identity` from the policy's `[[admins]]` (forged, altered, unsigned or
//!    unknown-admin decisions never run anything);
//! 2. its request is one brain issued and has not been settled yet (each request is settled
//!    once: approved, denied or expired), its `decision_id` is the request's, and brain has not
//!    refused this same decision before (a signed decision is answered once: replaying a refused
//!    one after a re-arm, a raised ceiling or an expired cooldown changes nothing);
//! 3. it was issued at or before the request's `expires_at`, and it has not itself expired;
//! 4. for approve/force: the effective level is still N3 (a disarm or a lower risk ceiling since
//!    the request stops it), and the action + target's cooldown, rate limit and circuit breaker
//!    allow it — `force` passes the cooldown and rate limit with `override_cooldown`, and the
//!    breaker with `override_circuit_breaker`.
//!
//! A refusal answers with a NO_ACTION decision saying why and leaves the request as it was
//! (an approve stopped by a cooldown can still be forced before the request expires). A deny
//! settles the request and starts the cooldown. The legacy unsigned `Approval` is always
//! refused: approvals must be signed.

use contracts::generated::approval_decision_v1::ApprovalDecisionDecision;
use contracts::generated::decision_v1::DecisionDecisionType;
use contracts::generated::outcome_v1::OutcomeStatus;
use contracts::signing::{SignatureError, Verifier, APPROVAL_SIGNER_FIELD};
use contracts::{Action, Approval, ApprovalDecision, ContractError, Decision, Outcome, Timestamp};
use serde_json::Value;

use crate::decide::Autonomy;
use crate::limits::{assess, ActionMark, DenialMark, FailureMark, LimitState};
use crate::messages::{action_type, tags, ActionDraft, DecisionDraft, Proposed};
use crate::policy::Level;
use crate::records::{RequestRecord, Settlement};

/// What to do with an approval decision.
#[derive(Debug, Clone)]
pub enum Judgement {
    /// Approved in time: settle the request, emit the action, record it for the limits.
    Execute {
        action: Box<Action>,
        settlement: Settlement,
        mark: ActionMark,
    },
    /// Denied: settle the request, emit the decision, start the cooldown.
    Deny {
        decision: Box<Decision>,
        settlement: Settlement,
        denial: DenialMark,
    },
    /// Refused: emit the decision; the request stays as it was. `authentic` when the decision
    /// was signed by an administrator: brain records the refusal, so the same decision never
    /// counts later.
    Refuse {
        decision: Box<Decision>,
        authentic: bool,
    },
}

/// Everything the check needs.
pub struct ApprovalCheck<'a> {
    pub approval: &'a ApprovalDecision,
    /// The payload exactly as received.
    pub raw: &'a Value,
    /// The `Orion-Signature` header, if any.
    pub signature: Option<&'a str>,
    pub record: &'a RequestRecord,
    /// The stream message it arrived in (a redelivery of the same message is not a replay).
    pub stream_sequence: u64,
    pub keyring: &'a Verifier,
    /// The limits state of the request's action + target.
    pub limits: Option<&'a LimitState>,
    pub autonomy: &'a Autonomy,
    pub now: Timestamp,
}

fn signature_problem(e: &SignatureError, admin: &str) -> String {
    match e {
        SignatureError::Missing => format!(
            "it claims administrator `{admin}` but carries no Orion-Signature header: unsigned approvals are refused"
        ),
        SignatureError::Malformed => {
            "its Orion-Signature header is not `ed25519:<base64>`: refused".to_string()
        }
        SignatureError::UnknownSigner(who) => format!(
            "`{who}` is not an administrator of this policy ([[admins]]): refused"
        ),
        SignatureError::Mismatch(who) => format!(
            "its Orion-Signature does not verify against `{who}`'s public key: forged or altered, refused"
        ),
        SignatureError::NoIdentity(_) => "it names no admin_identity: refused".to_string(),
        SignatureError::NotJson(why) => format!("its payload is not JSON ({why}): refused"),
        SignatureError::BadKey(why) => format!("the administrator's key is unusable ({why}): refused"),
    }
}

fn verb(decision: ApprovalDecisionDecision) -> &'static str {
    match decision {
        ApprovalDecisionDecision::Approve => "approve",
        ApprovalDecisionDecision::Deny => "deny",
        ApprovalDecisionDecision::Force => "force",
    }
}

/// Judges one approval decision for `record`.
pub fn judge(check: &ApprovalCheck<'_>) -> Result<Judgement, ContractError> {
    let a = check.approval;
    let record = check.record;
    let request = &record.request;
    let now = check.now;
    let head = format!(
        "Approval decision {} ({} by {}) for request {} — {}",
        a.approval_id,
        verb(a.decision),
        a.admin_identity,
        request.approval_request_id,
        record.what()
    );
    let refusal = |why: String, authentic: bool| -> Result<Judgement, ContractError> {
        let decision = settlement_decision(
            record,
            check.autonomy,
            a.approval_id,
            &format!("{head}: {why}. Nothing runs."),
            now,
        )?;
        Ok(Judgement::Refuse {
            decision: Box::new(decision),
            authentic,
        })
    };

    if let Err(e) = check
        .keyring
        .verify_claimed(check.raw, APPROVAL_SIGNER_FIELD, check.signature)
    {
        return refusal(signature_problem(&e, &a.admin_identity), false);
    }
    let refuse = |why: String| refusal(why, true);
    if let Some(before) = record
        .refusal_of(a.approval_id)
        .filter(|r| r.stream_sequence != check.stream_sequence)
    {
        return refuse(format!(
            "brain refused this same decision at {} (stream message {}); a decision is answered once, so a replay changes nothing, even after a re-arm, a raised ceiling or an expired cooldown: send a new decision",
            before.at, before.stream_sequence
        ));
    }
    if let Some(settlement) = &record.settlement {
        return refuse(format!(
            "the request was already settled: {}; each request is settled once",
            settlement.describe()
        ));
    }
    if a.decision_id != request.decision_id {
        return refuse(format!(
            "it names decision {}, but the request belongs to decision {}",
            a.decision_id, request.decision_id
        ));
    }
    if a.issued_at > request.expires_at {
        return refuse(format!(
            "it was issued at {}, after the request expired at {}: too late",
            a.issued_at, request.expires_at
        ));
    }
    if now > a.expires_at {
        return refuse(format!(
            "the approval decision itself expired at {} (now {}); send a new one before the request expires at {}",
            a.expires_at, now, request.expires_at
        ));
    }
    let pending_note = format!("The request stays pending until {}", request.expires_at);

    if a.decision == ApprovalDecisionDecision::Deny {
        let settlement = Settlement::Denied {
            approval_id: a.approval_id,
            by: a.admin_identity.clone(),
            reason: a.reason.to_string(),
            at: now,
        };
        let reasoning = format!(
            "Request {} for {} denied by {} at {}: {:?}. Nothing runs; the cooldown of {}s starts now.",
            request.approval_request_id,
            record.what(),
            a.admin_identity,
            a.issued_at,
            a.reason.to_string(),
            record.limits.cooldown_s
        );
        let decision = settlement_decision(record, check.autonomy, a.approval_id, &reasoning, now)?;
        return Ok(Judgement::Deny {
            decision: Box::new(decision),
            settlement,
            denial: DenialMark {
                approval_request_id: request.approval_request_id,
                approval_id: a.approval_id,
                at: now,
                by: a.admin_identity.clone(),
            },
        });
    }

    if check.autonomy.effective < Level::N3 {
        return refuse(format!(
            "it approves, but {}; {} actions cannot run below N3. {pending_note}",
            lowercase_first(&check.autonomy.why),
            record.safety
        ));
    }

    let forced = a.decision == ApprovalDecisionDecision::Force;
    let assessment = assess(check.limits, &record.limits, now, false);
    let mut overridden = Vec::new();
    let mut remaining = Vec::new();
    for block in &assessment.blocks {
        let flag = block.force_override();
        let allowed = forced
            && match flag {
                Some("override_cooldown") => a.override_cooldown,
                Some("override_circuit_breaker") => a.override_circuit_breaker,
                _ => false,
            };
        if allowed {
            overridden.push(block.describe(&record.limit_key));
        } else {
            remaining.push((block.describe(&record.limit_key), flag));
        }
    }
    if !remaining.is_empty() {
        let hints: Vec<&str> = remaining.iter().filter_map(|(_, f)| *f).collect();
        let texts: Vec<String> = remaining.into_iter().map(|(t, _)| t).collect();
        return refuse(format!(
            "it approves, but {}; to run anyway send `force` with {}. {pending_note}",
            texts.join("; "),
            hints.join(" and ")
        ));
    }

    let mut action_tags = tags([
        ("policy_rule", record.policy_rule.clone()),
        ("target", record.limit_key.target.clone()),
        ("incident_id", record.incident_id().to_string()),
        (
            "approval_request_id",
            request.approval_request_id.to_string(),
        ),
        ("approved_by", a.admin_identity.clone()),
    ]);
    if !overridden.is_empty() {
        action_tags.insert("overrode".into(), overridden.join("; "));
    }
    let action = ActionDraft {
        decision_id: request.decision_id,
        action_type: action_type(&request.requested_action.action_type)?,
        safety: record.safety,
        parameters: &request.requested_action.parameters,
        approval_id: Some(a.approval_id),
        tags: action_tags,
    }
    .build(now)?;
    let settlement = Settlement::Approved {
        approval_id: a.approval_id,
        action_id: action.action_id,
        by: a.admin_identity.clone(),
        at: now,
        forced,
    };
    let mark = ActionMark {
        action_id: action.action_id,
        at: now,
        incident_id: record.incident_id(),
        approval_id: Some(a.approval_id),
    };
    Ok(Judgement::Execute {
        action: Box::new(action),
        settlement,
        mark,
    })
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A NO_ACTION decision about `record` (refusals, denials, expiry).
fn settlement_decision(
    record: &RequestRecord,
    autonomy: &Autonomy,
    approval_id: uuid::Uuid,
    reasoning: &str,
    now: Timestamp,
) -> Result<Decision, ContractError> {
    let mut decision_tags = tags([
        ("policy_rule", record.policy_rule.clone()),
        ("target", record.limit_key.target.clone()),
        (
            "approval_request_id",
            record.request.approval_request_id.to_string(),
        ),
    ]);
    if !approval_id.is_nil() {
        decision_tags.insert("approval_id".into(), approval_id.to_string());
    }
    DecisionDraft {
        incident_id: record.incident_id(),
        decision_type: DecisionDecisionType::NoAction,
        safety: record.safety,
        reasoning: reasoning.to_string(),
        proposed: Some(Proposed {
            action_type: record.request.requested_action.action_type.clone(),
            parameters: record.request.requested_action.parameters.clone(),
        }),
        level: autonomy.effective,
        tags: decision_tags,
    }
    .build(now)
}

/// The decision for a request nobody answered in time, and its settlement.
pub fn expire(
    record: &RequestRecord,
    autonomy: &Autonomy,
    now: Timestamp,
) -> Result<(Decision, Settlement), ContractError> {
    let reasoning = format!(
        "Approval request {} for {} expired at {} with no decision from an administrator: approval request expired, nothing runs. A later version of incident {} may request approval again.",
        record.request.approval_request_id,
        record.what(),
        record.request.expires_at,
        record.incident_id()
    );
    let decision = settlement_decision(record, autonomy, uuid::Uuid::nil(), &reasoning, now)?;
    let settlement = Settlement::Expired {
        at: now,
        decision_id: decision.decision_id,
    };
    Ok((decision, settlement))
}

/// The answer to a legacy, unsigned `Approval` (orion-approval-telegram) for `record`.
pub fn refuse_legacy(
    approval: &Approval,
    record: &RequestRecord,
    autonomy: &Autonomy,
    now: Timestamp,
) -> Result<Decision, ContractError> {
    let state = match &record.settlement {
        None => format!(
            "The request stays pending until {}; answer it with `approval-cli approve|deny|force`",
            record.request.expires_at
        ),
        Some(s) => format!("The request was already settled: {}", s.describe()),
    };
    let reasoning = format!(
        "Legacy approval {} ({} by {}) for request {} — {} — refused: orion.approval.v1 is deprecated and unsigned; approvals must be signed orion.approval_decision.v1 messages (Ed25519 signature in the Orion-Signature header, by an administrator listed in the policy). Nothing runs. {state}.",
        approval.approval_id,
        approval.status,
        approval.approved_by,
        record.request.approval_request_id,
        record.what(),
    );
    settlement_decision(record, autonomy, approval.approval_id, &reasoning, now)
}

/// A failed or rolled-back outcome, as the circuit breaker counts it.
pub fn failure_of(outcome: &Outcome) -> Option<FailureMark> {
    let status = match outcome.status {
        OutcomeStatus::Failed => "failed",
        OutcomeStatus::RolledBack => "rolled_back",
        OutcomeStatus::Succeeded => return None,
    };
    Some(FailureMark {
        action_id: outcome.action_id,
        outcome_id: outcome.outcome_id,
        at: outcome.timestamp,
        status: status.to_string(),
    })
}

#[cfg(test)]
mod tests;
