//! The policy's action parameters (open JSON, as rendered) as the action contract's typed
//! [`ActionParameters`], so that actions are built as generated types and not as JSON.
//!
//! Nothing is repaired on the way: a well-known key moves to its typed field only when the
//! typed value serializes back to exactly the JSON the policy gave (after the integral-float
//! normalization `contracts::decode` applies); anything else stays in `extra` as it was, so the
//! schema validation of the built action refuses it with the same violation as the raw JSON.

use std::num::NonZeroU64;

use contracts::generated::action_v1::{
    ActionParameters, ActionParametersDeviceId, ActionParametersServiceName,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// `parameters` as the typed parameters of an action (see the module docs).
pub fn action_parameters(parameters: &Map<String, Value>) -> ActionParameters {
    let mut extra = normalized(parameters);
    ActionParameters {
        device_id: take::<ActionParametersDeviceId>(&mut extra, "device_id"),
        incident_id: take::<Uuid>(&mut extra, "incident_id"),
        message: take::<String>(&mut extra, "message"),
        replicas: take::<u64>(&mut extra, "replicas"),
        service_name: take::<ActionParametersServiceName>(&mut extra, "service_name"),
        timeout_s: take::<NonZeroU64>(&mut extra, "timeout_s"),
        extra,
    }
}

/// `parameters` as a decoded message carries them in an open JSON field (a decision's proposed
/// action, an approval request's requested action): whole floats as integers.
pub fn normalized(parameters: &Map<String, Value>) -> Map<String, Value> {
    let mut parameters = parameters.clone();
    parameters
        .values_mut()
        .for_each(contracts::integral_floats_to_integers);
    parameters
}

/// Removes `key` from `extra` as a `T`, if it is one exactly (same JSON both ways).
fn take<T: DeserializeOwned + Serialize>(extra: &mut Map<String, Value>, key: &str) -> Option<T> {
    let value = extra.get(key)?;
    let typed: T = serde_json::from_value(value.clone()).ok()?;
    if serde_json::to_value(&typed).ok()? != *value {
        return None;
    }
    extra.remove(key);
    Some(typed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn well_known_keys_become_typed_and_the_rest_stays_extra() {
        let p = action_parameters(&map(json!({
            "service_name": "web", "replicas": 3.0, "timeout_s": 30, "note": "x", "n": 2.0
        })));
        assert_eq!(p.service_name.as_deref().map(String::as_str), Some("web"));
        assert_eq!(p.replicas, Some(3));
        assert_eq!(p.timeout_s, NonZeroU64::new(30));
        assert_eq!(json!(p.extra), json!({"note": "x", "n": 2}));
    }

    #[test]
    fn values_that_do_not_fit_stay_as_given_for_the_schema_to_refuse() {
        let given = json!({
            "service_name": "",
            "incident_id": "e725c20ad5ea49849043b8e2be93a27c",
            "replicas": "three",
            "timeout_s": 0
        });
        let p = action_parameters(&map(given.clone()));
        assert!(p.service_name.is_none() && p.incident_id.is_none());
        assert!(p.replicas.is_none() && p.timeout_s.is_none());
        assert_eq!(serde_json::to_value(&p).unwrap(), given);
    }
}
