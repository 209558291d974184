//! Building receipts. Receipt ids are derived from the command id, so a receipt sent again
//! after a crash has the same id and JetStream drops the copy.

use std::time::Instant;

use contracts::{ContractError, OpsReceipt, Timestamp};
use serde_json::{json, Map, Value};

/// Namespace of receipt ids (UUID v5 of `<command id>:<kind>`).
const RECEIPT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x7469_7461_6e2d_6f70_732d_7265_6365_6970);

/// The stable code of a failure receipt (`error_code`), generated from the schema.
pub use contracts::generated::ops_receipt_v1::OpsReceiptErrorCode as FailureCode;

/// Why a command failed: the code programs match on, and the text an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The same code, the message prefixed with `context`.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self {
            code: self.code,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the receipt says.
#[derive(Debug, Clone)]
pub enum Status {
    /// Accepted; the final receipt follows.
    Pending(Map<String, Value>),
    Success(Map<String, Value>),
    Failure(Failure),
}

/// The id of the pending or final receipt of `command_id`.
pub fn receipt_id(command_id: &uuid::Uuid, kind: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &RECEIPT_NAMESPACE,
        format!("{command_id}:{kind}").as_bytes(),
    )
}

/// The id of the failure receipt refusing the command message `payload` (exactly as received)
/// with id `command_id`: derived from both, so the sender of that very message can tell it is
/// the answer to what it sent, while a refusal of a forged or stale copy under the same id is
/// not (and never collides with the real command's final receipt).
pub fn refusal_id(command_id: &uuid::Uuid, payload: &[u8]) -> uuid::Uuid {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(payload));
    receipt_id(command_id, &format!("refused:{digest}"))
}

/// Builds a valid receipt for the command `command_id` of type `command_type` that arrived at
/// `arrived`.
pub fn receipt(
    command_id: &uuid::Uuid,
    command_type: &str,
    status: Status,
    executor_id: &str,
    arrived: Instant,
) -> Result<OpsReceipt, ContractError> {
    let duration_ms = u64::try_from(arrived.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (kind, status_text) = match &status {
        Status::Pending(_) => ("pending", "pending"),
        Status::Success(_) => ("final", "success"),
        Status::Failure(_) => ("final", "failure"),
    };
    let mut value = json!({
        "v": 1,
        "id": receipt_id(command_id, kind),
        "command_id": command_id,
        "ts": Timestamp::now(),
        "type": command_type,
        "status": status_text,
        "meta": { "executor_id": executor_id, "duration_ms": duration_ms },
    });
    match status {
        Status::Pending(result) if !result.is_empty() => value["result"] = Value::Object(result),
        Status::Pending(_) => {}
        Status::Success(result) => value["result"] = Value::Object(result),
        Status::Failure(failure) => {
            value["error"] = json!(failure.message);
            value["error_code"] = json!(failure.code);
        }
    }
    contracts::decode_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_valid_and_their_ids_stable() {
        let id = uuid::Uuid::new_v4();
        let arrived = Instant::now();
        let ok = receipt(
            &id,
            "restart",
            Status::Success(Map::new()),
            "host-1",
            arrived,
        )
        .unwrap();
        let again = receipt(
            &id,
            "restart",
            Status::Failure(Failure::new(FailureCode::ReplayWindow, "late")),
            "host-1",
            arrived,
        )
        .unwrap();
        assert_eq!(ok.id, again.id, "one final receipt id per command");
        let pending = receipt(
            &id,
            "restart",
            Status::Pending(Map::new()),
            "host-1",
            arrived,
        )
        .unwrap();
        assert_ne!(pending.id, ok.id);
        let text = serde_json::to_value(&ok).unwrap()["ts"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.ends_with('Z'), "{text}");
        assert!(receipt(&id, "reboot", Status::Success(Map::new()), "h", arrived).is_err());
    }

    /// Found by the `decode` fuzz target: a success with an empty result decoded, but the typed
    /// receipt encoded without `result`, which a success must carry, so it was never published.
    #[test]
    fn a_success_with_an_empty_result_encodes() {
        let id = uuid::Uuid::new_v4();
        let ok = receipt(
            &id,
            "disarm",
            Status::Success(Map::new()),
            "h",
            Instant::now(),
        )
        .unwrap();
        assert_eq!(ok.result, Some(Map::new()));
        let bytes = contracts::encode(&ok).expect("a valid receipt encodes");
        assert_eq!(contracts::decode::<OpsReceipt>(&bytes).unwrap(), ok);
        let pending = receipt(
            &id,
            "disarm",
            Status::Pending(Map::new()),
            "h",
            Instant::now(),
        );
        assert_eq!(pending.unwrap().result, None);
    }
}
