//! Builds the messages brain emits, each checked against its contract as it is built, with
//! new UUID v4 ids and `source = orion-brain`.

use std::collections::BTreeMap;

use contracts::{Action, ApprovalRequest, ContractError, Decision, Timestamp};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::policy::{Level, Safety};

/// The source every message of brain carries.
pub const SOURCE: &str = "orion-brain";

/// The four decision types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionType {
    NoAction,
    SuggestAction,
    ExecuteSafeAction,
    RequestApproval,
}

impl DecisionType {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionType::NoAction => "NO_ACTION",
            DecisionType::SuggestAction => "SUGGEST_ACTION",
            DecisionType::ExecuteSafeAction => "EXECUTE_SAFE_ACTION",
            DecisionType::RequestApproval => "REQUEST_APPROVAL",
        }
    }
}

/// An action brain proposes: type and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    pub action_type: String,
    pub parameters: Map<String, Value>,
}

/// Everything a decision says.
#[derive(Debug, Clone)]
pub struct DecisionDraft {
    pub incident_id: Uuid,
    pub decision_type: DecisionType,
    pub safety: Safety,
    pub reasoning: String,
    pub proposed: Option<Proposed>,
    pub level: Level,
    pub tags: BTreeMap<String, String>,
}

impl DecisionDraft {
    /// The decision, with a new id. Drafts are built by brain's own code, so a contract
    /// violation here is a defect, reported as an error rather than sent.
    pub fn build(&self, now: Timestamp) -> Result<Decision, ContractError> {
        self.build_with_id(Uuid::new_v4(), now)
    }

    pub fn build_with_id(&self, id: Uuid, now: Timestamp) -> Result<Decision, ContractError> {
        let mut value = json!({
            "version": "1.0",
            "decision_id": id,
            "timestamp": now.to_string(),
            "source": SOURCE,
            "incident_id": self.incident_id,
            "decision_type": self.decision_type.as_str(),
            "safety_classification": self.safety.as_str(),
            "requires_approval": self.decision_type == DecisionType::RequestApproval,
            "reasoning": self.reasoning,
            "autonomy_level": self.level.as_str(),
        });
        if let Some(proposed) = &self.proposed {
            value["proposed_action"] = json!({
                "action_type": proposed.action_type,
                "parameters": proposed.parameters,
            });
        }
        if !self.tags.is_empty() {
            value["tags"] = json!(self.tags);
        }
        contracts::decode_value(value)
    }
}

/// An action in state `pending`, with a new id.
pub struct ActionDraft<'a> {
    pub decision_id: Uuid,
    pub action_type: &'a str,
    pub safety: Safety,
    pub parameters: &'a Map<String, Value>,
    pub approval_id: Option<Uuid>,
    pub tags: BTreeMap<String, String>,
}

impl ActionDraft<'_> {
    /// Fails when the parameters break the action contract (a policy problem).
    pub fn build(&self, now: Timestamp) -> Result<Action, ContractError> {
        // An action is never UNKNOWN: what no rule covers needs an approval, and runs as RISKY.
        let safety = match self.safety {
            Safety::Safe => "SAFE",
            Safety::Risky | Safety::Unknown => "RISKY",
        };
        let mut value = json!({
            "version": "1.0",
            "action_id": Uuid::new_v4(),
            "timestamp": now.to_string(),
            "source": SOURCE,
            "decision_id": self.decision_id,
            "action_type": self.action_type,
            "safety_classification": safety,
            "state": "pending",
            "parameters": self.parameters,
        });
        if let Some(approval_id) = self.approval_id {
            value["approval_id"] = json!(approval_id);
        }
        if !self.tags.is_empty() {
            value["tags"] = json!(self.tags);
        }
        contracts::decode_value(value)
    }
}

/// An approval request for a RISKY (or UNKNOWN) action, expiring `timeout_s` after `now`.
pub struct RequestDraft<'a> {
    pub decision_id: Uuid,
    pub incident_id: Uuid,
    pub action_type: &'a str,
    pub parameters: &'a Map<String, Value>,
    pub reasoning: &'a str,
    pub timeout_s: u64,
    pub tags: BTreeMap<String, String>,
}

impl RequestDraft<'_> {
    pub fn build(&self, now: Timestamp) -> Result<ApprovalRequest, ContractError> {
        // Saturating: a timeout past the supported range expires at its end.
        let expires_at = now.saturating_add(time::Duration::seconds(
            i64::try_from(self.timeout_s).unwrap_or(i64::MAX),
        ));
        let mut value = json!({
            "version": "1.0",
            "approval_request_id": Uuid::new_v4(),
            "timestamp": now.to_string(),
            "source": SOURCE,
            "decision_id": self.decision_id,
            "action_type": self.action_type,
            "risk_level": "RISKY",
            "requested_action": {
                "action_type": self.action_type,
                "parameters": self.parameters,
                "reasoning": self.reasoning,
            },
            "expires_at": expires_at.to_string(),
            "incident_id": self.incident_id,
        });
        if !self.tags.is_empty() {
            value["tags"] = json!(self.tags);
        }
        contracts::decode_value(value)
    }
}

/// Tags from `(key, value)` pairs.
pub fn tags<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
