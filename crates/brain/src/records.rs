//! What brain keeps about an approval request (key `request.<approval_request_id>` in
//! `brain_state`): the request as published, what it was made under, and how it was settled.

use contracts::{ApprovalRequest, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::policy::{LimitKey, Limits, Safety};

/// One approval request brain issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request exactly as published.
    pub request: ApprovalRequest,
    /// The policy rule that proposed it (`fallback` for UNKNOWN).
    pub policy_rule: String,
    /// RISKY, or UNKNOWN for the fallback (runs as RISKY when approved).
    pub safety: Safety,
    /// The action type and target whose limits apply.
    pub limit_key: LimitKey,
    /// The limits in force when the request was made.
    pub limits: Limits,
    /// `None` while the request waits for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
    /// Authentic (signed) decisions brain refused for this request: each is answered once, so
    /// a replay of one never counts later, after a re-arm, a raised ceiling or a cooldown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedAnswer>,
}

/// A signed approval decision brain refused, and where it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedAnswer {
    pub approval_id: Uuid,
    /// The stream message it arrived in (a redelivery of that message is not a replay).
    pub stream_sequence: u64,
    pub at: Timestamp,
}

impl RequestRecord {
    pub fn id(&self) -> Uuid {
        self.request.approval_request_id
    }

    /// How brain answered `approval_id` before, if it refused it.
    pub fn refusal_of(&self, approval_id: Uuid) -> Option<&RefusedAnswer> {
        self.refused.iter().find(|r| r.approval_id == approval_id)
    }

    pub fn incident_id(&self) -> Uuid {
        // brain always sets it; older records without it fall back to the decision id.
        self.request.incident_id.unwrap_or(self.request.decision_id)
    }

    pub fn is_pending(&self) -> bool {
        self.settlement.is_none()
    }

    /// "scale_service on web (RISKY)".
    pub fn what(&self) -> String {
        format!("{} ({})", self.limit_key, self.safety)
    }
}

/// How a request was settled. Each request is settled once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Settlement {
    /// Approved (or forced) in time: the action was emitted.
    Approved {
        approval_id: Uuid,
        action_id: Uuid,
        by: String,
        at: Timestamp,
        forced: bool,
    },
    /// Denied by an administrator.
    Denied {
        approval_id: Uuid,
        by: String,
        reason: String,
        at: Timestamp,
    },
    /// Nobody answered before `expires_at`.
    Expired { at: Timestamp, decision_id: Uuid },
}

impl Settlement {
    /// In words: "approved by alice at … (approval …, action …)".
    pub fn describe(&self) -> String {
        match self {
            Settlement::Approved {
                approval_id,
                action_id,
                by,
                at,
                forced,
            } => format!(
                "{} by {by} at {at} (approval {approval_id}, action {action_id})",
                if *forced { "forced" } else { "approved" }
            ),
            Settlement::Denied {
                approval_id,
                by,
                reason,
                at,
            } => format!("denied by {by} at {at} (approval {approval_id}: {reason:?})"),
            Settlement::Expired { at, decision_id } => {
                format!("expired unanswered (settled at {at}, decision {decision_id})")
            }
        }
    }

    /// The approval decision that settled it, if one did.
    pub fn approval_id(&self) -> Option<Uuid> {
        match self {
            Settlement::Approved { approval_id, .. } | Settlement::Denied { approval_id, .. } => {
                Some(*approval_id)
            }
            Settlement::Expired { .. } => None,
        }
    }
}
