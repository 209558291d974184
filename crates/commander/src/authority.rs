//! Whether brain asked for an action (pure): its `Orion-Signature` header must verify, over the
//! payload exactly as received, against one of brain's trusted public keys.
//!
//! This is checked before anything else — before the claim, the plan or any ops command — so an
//! action that anyone else put on `orion.action.v1` (a deprecated producer, a stolen NATS
//! password, a tampered copy) never reaches ops-worker. brain signs only what its policy,
//! autonomy level, limits and, for RISKY actions, a verified administrator approval allowed; the
//! signature is commander's proof of all of that. A refused action is dead-lettered
//! (`bad_signature`) with the reason, and gets no outcome: brain's circuit breaker counts only
//! the outcomes of actions brain issued.

use contracts::signing::{SignatureError, Verifier, BRAIN_SIGNER};
use contracts::Action;

/// Why `action` (received as `payload` with signature `header`) must not run, or `None` if
/// brain signed exactly these contents.
pub fn refusal(
    action: &Action,
    payload: &[u8],
    header: Option<&str>,
    brain: &Verifier,
) -> Option<String> {
    let error = brain.verify_payload(BRAIN_SIGNER, payload, header).err()?;
    let what = format!(
        "action {} ({} {}, decision {}, source {})",
        action.action_id,
        action.safety_classification,
        action.action_type,
        action.decision_id,
        action.source.as_str()
    );
    let why = match &error {
        SignatureError::Missing => {
            "carries no Orion-Signature header: commander executes only actions signed by brain"
                .to_string()
        }
        SignatureError::Malformed => "its Orion-Signature header is not `ed25519:<base64>`".into(),
        SignatureError::Mismatch(_) => format!(
            "its Orion-Signature does not verify against brain's {} trusted key(s): signed by another key, or altered after brain signed it",
            brain.key_count(BRAIN_SIGNER)
        ),
        other => format!("its signature cannot be checked: {other}"),
    };
    Some(format!("{what} {why}; not executed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::signing::SigningKey;
    use serde_json::json;

    fn action() -> Action {
        contracts::decode_value(json!({
            "version": "1.0",
            "action_id": uuid::Uuid::new_v4(),
            "timestamp": contracts::Timestamp::now(),
            "source": "orion-brain",
            "decision_id": uuid::Uuid::new_v4(),
            "action_type": "scale_service",
            "safety_classification": "RISKY",
            "state": "pending",
            "parameters": {"service_name": "payments", "replicas": 3},
        }))
        .unwrap()
    }

    #[test]
    fn only_what_brain_signed_runs() {
        let (brain, _) = SigningKey::generate(BRAIN_SIGNER);
        let (next, _) = SigningKey::generate(BRAIN_SIGNER);
        let (stranger, _) = SigningKey::generate(BRAIN_SIGNER);
        let trusted = Verifier::for_signer(
            BRAIN_SIGNER,
            [
                brain.public_key_base64().as_str(),
                next.public_key_base64().as_str(),
            ],
        )
        .unwrap();
        let action = action();
        let value = contracts::to_value(&action).unwrap();
        let payload = contracts::encode(&action).unwrap();
        for key in [&brain, &next] {
            assert_eq!(
                refusal(&action, &payload, Some(&key.sign(&value)), &trusted),
                None
            );
        }

        let unsigned = refusal(&action, &payload, None, &trusted).unwrap();
        assert!(unsigned.contains("no Orion-Signature header"), "{unsigned}");
        assert!(unsigned.contains(&action.action_id.to_string()));
        assert!(unsigned.contains("RISKY scale_service"), "{unsigned}");
        assert!(unsigned.ends_with("not executed"));

        let forged = refusal(&action, &payload, Some(&stranger.sign(&value)), &trusted).unwrap();
        assert!(
            forged.contains("does not verify against brain's 2 trusted key(s)"),
            "{forged}"
        );

        let mut changed = value.clone();
        changed["parameters"]["replicas"] = json!(30);
        let altered = serde_json::to_vec(&changed).unwrap();
        let refused = refusal(&action, &altered, Some(&brain.sign(&value)), &trusted).unwrap();
        assert!(
            refused.contains("altered after brain signed it"),
            "{refused}"
        );

        let malformed = refusal(&action, &payload, Some("ed25519:???"), &trusted).unwrap();
        assert!(malformed.contains("not `ed25519:<base64>`"), "{malformed}");
    }
}
