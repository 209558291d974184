//! Receipt ids, derived from the command, so that a receipt sent again after a crash has the
//! same id (JetStream drops the copy) and a sender can tell a receipt ops-worker issued for its
//! command from any other.

/// Namespace of receipt ids (UUID v5 of `<command id>:<kind>`).
const RECEIPT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x7469_7461_6e2d_6f70_732d_7265_6365_6970);

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

/// The type a receipt mirrors for a command of type `command_type` (the two contracts list the
/// same types; a type added to one and not the other fails to compile here).
pub fn receipt_type(
    command_type: contracts::generated::ops_command_v1::OpsCommandType,
) -> contracts::generated::ops_receipt_v1::OpsReceiptType {
    use contracts::generated::ops_command_v1::OpsCommandType as C;
    use contracts::generated::ops_receipt_v1::OpsReceiptType as R;
    match command_type {
        C::Restart => R::Restart,
        C::Deploy => R::Deploy,
        C::CancelAll => R::CancelAll,
        C::SetRisk => R::SetRisk,
        C::Halt => R::Halt,
        C::Disarm => R::Disarm,
        C::Arm => R::Arm,
        C::ExportEvidence => R::ExportEvidence,
        C::Withdraw => R::Withdraw,
    }
}
