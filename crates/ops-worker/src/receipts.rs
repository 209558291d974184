//! Building receipts. Receipt ids are derived from the command id, so a receipt sent again
//! after a crash has the same id and JetStream drops the copy.

use std::time::Instant;

use contracts::generated::ops_receipt_v1::{
    OpsReceiptError, OpsReceiptMeta, OpsReceiptStatus, OpsReceiptType, OpsReceiptV,
};
use contracts::{OpsReceipt, Timestamp};
use serde_json::{Map, Value};

/// The stable code of a failure receipt (`error_code`), generated from the schema.
pub use ops_client::FailureCode;
/// Receipt ids are derived from the command (shared with every sender, which checks them).
pub use ops_client::{receipt_id, receipt_type, refusal_id};

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

/// The receipt of the command `command_id` of type `command_type` that arrived at `arrived`.
pub fn receipt(
    command_id: &uuid::Uuid,
    command_type: OpsReceiptType,
    status: Status,
    executor_id: &str,
    arrived: Instant,
) -> OpsReceipt {
    let duration_ms = u64::try_from(arrived.elapsed().as_millis()).unwrap_or(u64::MAX);
    let kind = match status {
        Status::Pending(_) => "pending",
        Status::Success(_) | Status::Failure(_) => "final",
    };
    let (status, result, error, error_code) = match status {
        Status::Pending(result) => (
            OpsReceiptStatus::Pending,
            Some(result).filter(|result| !result.is_empty()),
            None,
            None,
        ),
        Status::Success(result) => (OpsReceiptStatus::Success, Some(result), None, None),
        Status::Failure(failure) => (
            OpsReceiptStatus::Failure,
            None,
            Some(error_text(&failure)),
            Some(failure.code),
        ),
    };
    OpsReceipt {
        command_id: *command_id,
        error,
        error_code,
        id: receipt_id(command_id, kind),
        meta: OpsReceiptMeta {
            duration_ms: duration_ms as f64,
            executor_id: executor_id.to_string(),
        },
        result,
        status,
        ts: Timestamp::now(),
        type_: command_type,
        v: OpsReceiptV::try_from(1).expect("1 is the receipt contract's version"),
    }
}

/// The schema wants a non-empty error text: a failure without a message is named by its code.
fn error_text(failure: &Failure) -> OpsReceiptError {
    failure
        .message
        .parse()
        .or_else(|_| failure.code.to_string().parse())
        .expect("a failure code is never empty")
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::OpsCommand;
    use serde_json::json;

    const RESTART: OpsReceiptType = OpsReceiptType::Restart;

    #[test]
    fn receipts_are_valid_and_their_ids_stable() {
        let id = uuid::Uuid::new_v4();
        let arrived = Instant::now();
        let ok = receipt(&id, RESTART, Status::Success(Map::new()), "host-1", arrived);
        let again = receipt(
            &id,
            RESTART,
            Status::Failure(Failure::new(FailureCode::ReplayWindow, "late")),
            "host-1",
            arrived,
        );
        assert_eq!(ok.id, again.id, "one final receipt id per command");
        let pending = receipt(&id, RESTART, Status::Pending(Map::new()), "host-1", arrived);
        assert_ne!(pending.id, ok.id);
        let text = serde_json::to_value(&ok).unwrap()["ts"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.ends_with('Z'), "{text}");
        let failed = receipt(
            &id,
            RESTART,
            Status::Failure(Failure::new(FailureCode::Engine, "")),
            "h",
            arrived,
        );
        assert_eq!(
            failed.error.as_deref().map(String::as_str),
            Some("engine"),
            "a failure always says why"
        );
        contracts::encode(&failed).expect("a failure receipt is valid");
    }

    /// Found by the `decode` fuzz target: a success with an empty result decoded, but the typed
    /// receipt encoded without `result`, which a success must carry, so it was never published.
    #[test]
    fn a_success_with_an_empty_result_encodes() {
        let id = uuid::Uuid::new_v4();
        let ok = receipt(
            &id,
            OpsReceiptType::Disarm,
            Status::Success(Map::new()),
            "h",
            Instant::now(),
        );
        assert_eq!(ok.result, Some(Map::new()));
        let bytes = contracts::encode(&ok).expect("a valid receipt encodes");
        assert_eq!(contracts::decode::<OpsReceipt>(&bytes).unwrap(), ok);
        let pending = receipt(
            &id,
            OpsReceiptType::Disarm,
            Status::Pending(Map::new()),
            "h",
            Instant::now(),
        );
        assert_eq!(pending.result, None);
    }

    fn command(command_type: &str) -> OpsCommand {
        contracts::decode_value(json!({
            "v": 1,
            "id": uuid::Uuid::new_v4(),
            "ts": Timestamp::now(),
            "type": command_type,
            "target": "web",
            "meta": {"initiator_id": "operator-1", "reason": "test", "signature": "0".repeat(64)},
        }))
        .unwrap()
    }

    #[test]
    fn only_the_receipts_ops_worker_derives_for_the_command_end_the_wait() {
        let restart = command("restart");
        let sent = contracts::encode(&restart).unwrap();
        let ok = |status| receipt(&restart.id, RESTART, status, "host", Instant::now());
        assert!(ops_client::issued_for(
            &ok(Status::Success(Map::new())),
            &restart,
            &sent
        ));
        assert!(ops_client::issued_for(
            &ok(Status::Pending(Map::new())),
            &restart,
            &sent
        ));
        assert!(ops_client::issued_for(
            &ok(Status::Failure(Failure::new(FailureCode::Engine, "no"))),
            &restart,
            &sent
        ));
        // The refusal of exactly what was sent (a stale or badly signed command).
        let mut refused = ok(Status::Failure(Failure::new(
            FailureCode::ReplayWindow,
            "outside the replay window",
        )));
        refused.id = refusal_id(&restart.id, &sent);
        assert!(ops_client::issued_for(&refused, &restart, &sent));
        // The refusal of a forged copy under the same id: the real command may still run.
        refused.id = refusal_id(&restart.id, b"{\"forged\":true}");
        assert!(!ops_client::issued_for(&refused, &restart, &sent));

        // Another command's receipt, relabelled for this one.
        let other = command("restart");
        let mut relabelled = receipt(
            &other.id,
            RESTART,
            Status::Success(Map::new()),
            "host",
            Instant::now(),
        );
        relabelled.command_id = restart.id;
        assert!(!ops_client::issued_for(&relabelled, &restart, &sent));
        // A final receipt under the pending receipt's id.
        let mut wrong_kind = ok(Status::Success(Map::new()));
        wrong_kind.id = receipt_id(&restart.id, "pending");
        assert!(!ops_client::issued_for(&wrong_kind, &restart, &sent));
        // A receipt of another type for the same id.
        let halt = receipt(
            &restart.id,
            OpsReceiptType::Halt,
            Status::Success(Map::new()),
            "host",
            Instant::now(),
        );
        assert!(!ops_client::issued_for(&halt, &restart, &sent));
    }
}
