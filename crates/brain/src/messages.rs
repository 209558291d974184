//! Builds the messages brain emits, each checked against its contract as it is built, with
//! new UUID v4 ids and `source = orion-brain`.

use std::collections::BTreeMap;

use contracts::generated::action_v1::{
    ActionActionType, ActionSafetyClassification, ActionSource, ActionState, ActionVersion,
};
use contracts::generated::approval_request_v1::{
    ApprovalRequestRequestedAction, ApprovalRequestRiskLevel, ApprovalRequestSource,
    ApprovalRequestVersion,
};
use contracts::generated::decision_v1::{
    DecisionDecisionType, DecisionProposedAction, DecisionSafetyClassification, DecisionSource,
    DecisionVersion,
};
use contracts::{Action, ApprovalRequest, Contract, ContractError, Decision, Timestamp};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::parameters::{action_parameters, normalized};
use crate::policy::{Level, Safety};

/// The source every message of brain carries.
pub const SOURCE: &str = "orion-brain";

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
    pub decision_type: DecisionDecisionType,
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
        validated(Decision {
            autonomy_level: Some(self.level.to_decision()),
            decision_id: id,
            decision_type: self.decision_type,
            incident_id: self.incident_id,
            proposed_action: self.proposed.as_ref().map(|p| DecisionProposedAction {
                action_type: p.action_type.clone(),
                parameters: normalized(&p.parameters),
            }),
            reasoning: contracts::parse_field::<Decision, _>(
                "/reasoning",
                "minLength",
                &self.reasoning,
            )?,
            requires_approval: self.decision_type == DecisionDecisionType::RequestApproval,
            safety_classification: match self.safety {
                Safety::Safe => DecisionSafetyClassification::Safe,
                Safety::Risky => DecisionSafetyClassification::Risky,
                Safety::Unknown => DecisionSafetyClassification::Unknown,
            },
            source: DecisionSource::OrionBrain,
            tags: self.tags.clone(),
            timestamp: now,
            version: DecisionVersion::X10,
        })
    }
}

/// An action in state `pending`, with a new id.
pub struct ActionDraft<'a> {
    pub decision_id: Uuid,
    pub action_type: ActionActionType,
    pub safety: Safety,
    pub parameters: &'a Map<String, Value>,
    pub approval_id: Option<Uuid>,
    pub tags: BTreeMap<String, String>,
}

impl ActionDraft<'_> {
    /// Fails when the parameters break the action contract (a policy problem).
    pub fn build(&self, now: Timestamp) -> Result<Action, ContractError> {
        validated(Action {
            action_id: Uuid::new_v4(),
            action_type: self.action_type,
            approval_id: self.approval_id,
            decision_id: self.decision_id,
            dry_run: false,
            parameters: action_parameters(self.parameters),
            rollback_enabled: false,
            // An action is never UNKNOWN: what no rule covers needs an approval, and runs as
            // RISKY.
            safety_classification: match self.safety {
                Safety::Safe => ActionSafetyClassification::Safe,
                Safety::Risky | Safety::Unknown => ActionSafetyClassification::Risky,
            },
            source: contracts::parse_field::<Action, ActionSource>("/source", "pattern", SOURCE)?,
            state: ActionState::Pending,
            tags: self.tags.clone(),
            timestamp: now,
            version: ActionVersion::X10,
        })
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
        validated(ApprovalRequest {
            action_type: self.action_type.to_string(),
            approval_request_id: Uuid::new_v4(),
            decision_id: self.decision_id,
            expires_at,
            incident_id: Some(self.incident_id),
            requested_action: ApprovalRequestRequestedAction {
                action_type: self.action_type.to_string(),
                parameters: normalized(self.parameters),
                reasoning: Some(contracts::parse_field::<ApprovalRequest, _>(
                    "/requested_action/reasoning",
                    "minLength",
                    self.reasoning,
                )?),
            },
            risk_level: ApprovalRequestRiskLevel::Risky,
            source: ApprovalRequestSource::OrionBrain,
            tags: self.tags.clone(),
            timestamp: now,
            version: ApprovalRequestVersion::X10,
        })
    }
}

/// The action type an approval request names (brain wrote it from a rule's action), refused
/// like a message with that `action_type` if it is not one.
pub fn action_type(text: &str) -> Result<ActionActionType, ContractError> {
    contracts::parse_field::<Action, _>("/action_type", "enum", text)
}

/// `message` once its schema accepts it: typify does not enforce every rule (constants,
/// bounds, conditionals), the validator does.
fn validated<T: Contract>(message: T) -> Result<T, ContractError> {
    contracts::to_value(&message)?;
    Ok(message)
}

/// Tags from `(key, value)` pairs.
pub fn tags<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-02-14T12:05:30.123456789Z".parse().unwrap()
    }

    fn parameters(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// What decoding the message's own wire form gives: what brain built as JSON before.
    fn decoded<T: Contract + serde::de::DeserializeOwned>(message: &T) -> T {
        contracts::decode_value(contracts::to_value(message).unwrap()).unwrap()
    }

    #[test]
    fn built_messages_are_what_their_wire_form_decodes_to() {
        let params = parameters(json!({"service_name": "web", "replicas": 3.0, "note": 1.0}));
        let decision = DecisionDraft {
            incident_id: Uuid::new_v4(),
            decision_type: DecisionDecisionType::RequestApproval,
            safety: Safety::Unknown,
            reasoning: "Long enough to be a reason.".into(),
            proposed: Some(Proposed {
                action_type: "scale_service".into(),
                parameters: params.clone(),
            }),
            level: Level::N3,
            tags: tags([("policy_rule", "r".to_string())]),
        }
        .build(now())
        .unwrap();
        assert!(decision.requires_approval);
        assert_eq!(decoded(&decision), decision);
        let action = ActionDraft {
            decision_id: decision.decision_id,
            action_type: ActionActionType::ScaleService,
            safety: Safety::Unknown,
            parameters: &params,
            approval_id: Some(Uuid::new_v4()),
            tags: BTreeMap::new(),
        }
        .build(now())
        .unwrap();
        assert_eq!(
            action.safety_classification,
            ActionSafetyClassification::Risky
        );
        assert_eq!(action.parameters.replicas, Some(3));
        assert_eq!(decoded(&action), action);
        let request = RequestDraft {
            decision_id: decision.decision_id,
            incident_id: decision.incident_id,
            action_type: "scale_service",
            parameters: &params,
            reasoning: "Long enough to be a reason.",
            timeout_s: u64::MAX,
            tags: BTreeMap::new(),
        }
        .build(now())
        .unwrap();
        assert_eq!(request.expires_at, Timestamp::MAX);
        assert_eq!(decoded(&request), request);
    }

    #[test]
    fn what_breaks_a_contract_is_refused_as_a_schema_violation() {
        let draft = DecisionDraft {
            incident_id: Uuid::new_v4(),
            decision_type: DecisionDecisionType::NoAction,
            safety: Safety::Safe,
            reasoning: "short".into(),
            proposed: None,
            level: Level::N0,
            tags: BTreeMap::new(),
        };
        let e = draft.build(now()).unwrap_err();
        assert_eq!(e.violations()[0].instance_path, "/reasoning");
        assert_eq!(e.violations()[0].rule, "minLength");

        let bad = parameters(json!({"incident_id": "web"}));
        let e = ActionDraft {
            decision_id: Uuid::new_v4(),
            action_type: ActionActionType::AcknowledgeIncident,
            safety: Safety::Safe,
            parameters: &bad,
            approval_id: None,
            tags: BTreeMap::new(),
        }
        .build(now())
        .unwrap_err();
        assert!(matches!(e, ContractError::Invalid { .. }), "{e}");
        assert_eq!(e.violations()[0].instance_path, "/parameters/incident_id");

        assert_eq!(
            action_type("page_everyone").unwrap_err().violations()[0].rule,
            "enum"
        );
    }
}
