//! What an ORION action becomes (pure: no I/O). Every action type does something real:
//!
//! | action | does |
//! |---|---|
//! | `restart_service` | ops `restart` of `service_name` |
//! | `restart_edge_device` | ops `restart` of `device_id` |
//! | `scale_service` | ops `deploy` of `service_name` with `replicas` (and `image` if given) |
//! | `stop_edge_device` | ops `halt` of `device_id` |
//! | `run_diagnostic` | ops `export_evidence` of `service_name` (every allowlisted service if absent) |
//! | `acknowledge_incident` | an `IncidentAcknowledgement` to guardian for `incident_id` |
//! | `send_notification` | a `Notification` operators see in `approval-cli watch` |

use contracts::generated::action_v1::ActionActionType;
use contracts::generated::notification_v1::{
    NotificationChannel, NotificationMessage, NotificationSeverity,
};
use contracts::generated::ops_command_v1::OpsCommandType;
use serde_json::{json, Map, Value};

/// What to do for one action.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Send a signed ops command to ops-worker and wait for its receipt.
    Ops {
        command_type: OpsCommandType,
        target: String,
        params: Option<Map<String, Value>>,
    },
    /// Ask guardian to acknowledge an incident.
    Acknowledge { incident_id: uuid::Uuid },
    /// Tell the operators.
    Notify {
        message: NotificationMessage,
        severity: NotificationSeverity,
        channel: Option<NotificationChannel>,
        incident_id: Option<uuid::Uuid>,
    },
}

/// An action that cannot be carried out as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    /// Stable code for the outcome's error.
    pub code: &'static str,
    pub message: String,
}

/// A parameter the notification contract refuses (empty message, unknown severity, …).
fn invalid(action: ActionActionType, parameter: &str, e: impl std::fmt::Display) -> PlanError {
    PlanError {
        code: "invalid_parameters",
        message: format!("{action}: parameters.{parameter} is not valid: {e}"),
    }
}

fn missing(action: ActionActionType, parameter: &str) -> PlanError {
    PlanError {
        code: "invalid_parameters",
        message: format!("{action} needs parameters.{parameter}"),
    }
}

fn text<'a>(parameters: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    parameters
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The plan for an action of `action_type` with `parameters`.
pub fn plan(
    action_type: ActionActionType,
    parameters: &Map<String, Value>,
) -> Result<Plan, PlanError> {
    let service = || text(parameters, "service_name").map(str::to_string);
    let device = || text(parameters, "device_id").map(str::to_string);
    let passthrough = |keys: &[&str]| {
        let picked: Map<String, Value> = keys
            .iter()
            .filter_map(|k| Some((k.to_string(), parameters.get(*k)?.clone())))
            .collect();
        (!picked.is_empty()).then_some(picked)
    };
    match action_type {
        ActionActionType::RestartService => Ok(Plan::Ops {
            command_type: OpsCommandType::Restart,
            target: service().ok_or_else(|| missing(action_type, "service_name"))?,
            params: passthrough(&["timeout_s"]),
        }),
        ActionActionType::RestartEdgeDevice => Ok(Plan::Ops {
            command_type: OpsCommandType::Restart,
            target: device().ok_or_else(|| missing(action_type, "device_id"))?,
            params: passthrough(&["timeout_s"]),
        }),
        ActionActionType::ScaleService => {
            let target = service().ok_or_else(|| missing(action_type, "service_name"))?;
            if parameters.get("replicas").and_then(Value::as_u64).is_none() {
                return Err(missing(action_type, "replicas (a whole number)"));
            }
            Ok(Plan::Ops {
                command_type: OpsCommandType::Deploy,
                target,
                params: passthrough(&["replicas", "image", "timeout_s"]),
            })
        }
        ActionActionType::StopEdgeDevice => Ok(Plan::Ops {
            command_type: OpsCommandType::Halt,
            target: device().ok_or_else(|| missing(action_type, "device_id"))?,
            params: passthrough(&["timeout_s"]),
        }),
        ActionActionType::RunDiagnostic => Ok(Plan::Ops {
            command_type: OpsCommandType::ExportEvidence,
            target: service().unwrap_or_else(|| "all".to_string()),
            params: passthrough(&["log_lines"]),
        }),
        ActionActionType::AcknowledgeIncident => {
            let incident_id = text(parameters, "incident_id")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| missing(action_type, "incident_id (a UUID)"))?;
            Ok(Plan::Acknowledge { incident_id })
        }
        ActionActionType::SendNotification => Ok(Plan::Notify {
            message: text(parameters, "message")
                .ok_or_else(|| missing(action_type, "message"))?
                .parse()
                .map_err(|e| invalid(action_type, "message", e))?,
            severity: text(parameters, "severity")
                .unwrap_or("info")
                .parse()
                .map_err(|e| invalid(action_type, "severity", e))?,
            channel: text(parameters, "channel")
                .map(str::parse)
                .transpose()
                .map_err(|e| invalid(action_type, "channel", e))?,
            incident_id: text(parameters, "incident_id").and_then(|s| s.parse().ok()),
        }),
    }
}

impl Plan {
    /// The plan as JSON, for dry runs and outcomes.
    pub fn describe(&self) -> Value {
        match self {
            Plan::Ops {
                command_type,
                target,
                params,
            } => json!({ "ops_command": command_type, "target": target, "params": params }),
            Plan::Acknowledge { incident_id } => json!({ "acknowledge_incident": incident_id }),
            Plan::Notify {
                message,
                severity,
                channel,
                incident_id,
            } => {
                json!({ "notification": message, "severity": severity, "channel": channel, "incident_id": incident_id })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_action_type_maps_to_real_work() {
        assert_eq!(
            plan(
                ActionActionType::RestartService,
                &params(json!({"service_name": "web", "timeout_s": 5}))
            ),
            Ok(Plan::Ops {
                command_type: OpsCommandType::Restart,
                target: "web".into(),
                params: Some(params(json!({"timeout_s": 5})))
            })
        );
        assert!(matches!(
            plan(
                ActionActionType::RestartEdgeDevice,
                &params(json!({"device_id": "gw-7"}))
            ),
            Ok(Plan::Ops {
                command_type: OpsCommandType::Restart,
                ..
            })
        ));
        assert!(matches!(
            plan(
                ActionActionType::ScaleService,
                &params(json!({"service_name": "web", "replicas": 3}))
            ),
            Ok(Plan::Ops {
                command_type: OpsCommandType::Deploy,
                ..
            })
        ));
        assert!(matches!(
            plan(
                ActionActionType::StopEdgeDevice,
                &params(json!({"device_id": "gw-7"}))
            ),
            Ok(Plan::Ops {
                command_type: OpsCommandType::Halt,
                ..
            })
        ));
        assert!(
            matches!(plan(ActionActionType::RunDiagnostic, &params(json!({}))), Ok(Plan::Ops { command_type: OpsCommandType::ExportEvidence, ref target, .. }) if target == "all")
        );
        let incident = uuid::Uuid::new_v4();
        assert_eq!(
            plan(
                ActionActionType::AcknowledgeIncident,
                &params(json!({"incident_id": incident.to_string()}))
            ),
            Ok(Plan::Acknowledge {
                incident_id: incident
            })
        );
        assert!(matches!(
            plan(
                ActionActionType::SendNotification,
                &params(json!({"message": "hi"}))
            ),
            Ok(Plan::Notify {
                severity: NotificationSeverity::Info,
                ..
            })
        ));
    }

    #[test]
    fn missing_parameters_name_what_is_missing() {
        let err = plan(ActionActionType::RestartService, &Map::new()).unwrap_err();
        assert_eq!(err.code, "invalid_parameters");
        assert!(err.message.contains("service_name"));
        assert!(plan(
            ActionActionType::ScaleService,
            &params(json!({"service_name": "web"}))
        )
        .unwrap_err()
        .message
        .contains("replicas"));
        assert!(plan(
            ActionActionType::AcknowledgeIncident,
            &params(json!({"incident_id": "INC-1"}))
        )
        .is_err());
    }
}
