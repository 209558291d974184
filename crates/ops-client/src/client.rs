//! The sender's side: build and sign a command, send it, wait for its receipts.

use std::time::Duration;

use contracts::bus::{Bus, BusError, ReadFrom};
use contracts::generated::ops_command_v1::{
    OpsCommandMeta, OpsCommandMetaSignature, OpsCommandType, OpsCommandV,
};
use contracts::generated::ops_receipt_v1::OpsReceiptStatus;
use contracts::{OpsCommand, OpsReceipt, Timestamp};
use serde_json::{Map, Value};

use crate::signing::{SignatureError, SigningKeys};

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub command_type: OpsCommandType,
    pub target: String,
    /// `None` sends no `params` at all.
    pub params: Option<Map<String, Value>>,
    pub initiator_id: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the command is not valid: {0}")]
    Invalid(#[from] contracts::ContractError),
    #[error("signing: {0}")]
    Signing(#[from] SignatureError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("reading receipts: {0}")]
    Receipts(#[source] BusError),
}

/// The receipts of one command, as far as they arrived.
#[derive(Debug, Default)]
pub struct Receipts {
    pub pending: Vec<OpsReceipt>,
    /// The final receipt (`success` or `failure`), if it arrived in time.
    pub last: Option<OpsReceipt>,
}

/// Builds the command and signs it. The signature covers the JSON exactly as the bus will send
/// it (the typed command re-serialized), so what the worker verifies is what was signed.
pub fn build_signed(
    request: &CommandRequest,
    keys: &SigningKeys,
) -> Result<OpsCommand, ClientError> {
    let command = OpsCommand {
        id: uuid::Uuid::new_v4(),
        meta: OpsCommandMeta {
            initiator_id: request.initiator_id.clone(),
            reason: request.reason.clone(),
            signature: unsigned(),
        },
        params: request.params.clone().unwrap_or_default(),
        target: request.target.clone(),
        ts: Timestamp::now(),
        type_: request.command_type,
        v: OpsCommandV::try_from(1).expect("1 is the command contract's version"),
    };
    sign_typed(command, keys)
}

/// The placeholder a command carries before it is signed (the signature never covers itself).
fn unsigned() -> OpsCommandMetaSignature {
    "0".repeat(64)
        .parse()
        .expect("64 hex digits fit the signature field")
}

/// Signs `command` over its JSON exactly as the bus will send it.
fn sign_typed(mut command: OpsCommand, keys: &SigningKeys) -> Result<OpsCommand, ClientError> {
    command.meta.signature = unsigned();
    let wire = contracts::to_value(&command)?;
    let signature = keys.sign(&wire)?;
    command.meta.signature =
        contracts::parse_field::<OpsCommand, _>("/meta/signature", "pattern", &signature)?;
    Ok(command)
}

/// Signs a command given as JSON (its `meta.signature`, if any, is replaced). The signature
/// covers the command exactly as the bus will send it: the typed command re-serialized.
pub fn sign(mut command: Value, keys: &SigningKeys) -> Result<OpsCommand, ClientError> {
    // Given as JSON (an operator's file): read through the contract like any received message.
    if let Some(meta) = command.get_mut("meta").and_then(Value::as_object_mut) {
        meta.insert("signature".into(), Value::String(unsigned().to_string()));
    }
    sign_typed(contracts::decode_value(command)?, keys)
}

/// Publishes `command` as `S` (the operator's ops-console, or commander) and waits up to `wait`
/// for its final receipt; `on_receipt` sees each
/// receipt (pending ones included) as it arrives.
pub async fn send_and_wait<S>(
    bus: &Bus<S>,
    command: &OpsCommand,
    wait: Duration,
    mut on_receipt: impl FnMut(&OpsReceipt),
) -> Result<Receipts, ClientError>
where
    S: contracts::Service + contracts::Produces<OpsCommand> + contracts::Reads<OpsReceipt>,
{
    // Read receipts from just before the command's time, so a receipt re-published for a
    // repeated command id (or sent before we subscribed) is seen too.
    let start = command
        .ts
        .saturating_sub(time::Duration::seconds(2))
        .as_offset_date_time();
    let mut reader = bus
        .read::<OpsReceipt>(ReadFrom::Time(start))
        .await
        .map_err(ClientError::Receipts)?;
    // What the bus sends: the command encoded, exactly as a refusal would digest it.
    let sent = contracts::encode(command)?;
    bus.publish(command).await?;

    let mut receipts = Receipts::default();
    let deadline = tokio::time::Instant::now() + wait;
    while receipts.last.is_none() {
        let receipt = match tokio::time::timeout_at(deadline, reader.next()).await {
            Err(_) | Ok(None) => break,
            // A receipt that breaks its contract cannot be ours to wait for.
            Ok(Some(Err(BusError::Contract(_)))) => continue,
            Ok(Some(Err(e))) => return Err(ClientError::Receipts(e)),
            Ok(Some(Ok((receipt, _)))) => receipt,
        };
        if !issued_for(&receipt, command, &sent) {
            continue;
        }
        on_receipt(&receipt);
        if receipt.status == OpsReceiptStatus::Pending {
            receipts.pending.push(receipt);
        } else {
            receipts.last = Some(receipt);
        }
    }
    Ok(receipts)
}

/// Whether `receipt` is one ops-worker issued for `command` as sent in `sent` (its bytes on
/// the wire): it names the command and carries an id ops-worker derives from it — the pending
/// or final receipt of the command id, or the refusal of exactly these bytes. Only ops-worker's
/// identity may publish receipts (the generated permissions); the ids also keep a receipt of
/// another command, a refusal of a forged copy under the same id (the real command may still
/// run), or a receipt relabelled for this command from ending the wait.
pub fn issued_for(receipt: &OpsReceipt, command: &OpsCommand, sent: &[u8]) -> bool {
    use crate::ids::{receipt_id, refusal_id};
    let expected = if receipt.status == OpsReceiptStatus::Pending {
        vec![receipt_id(&command.id, "pending")]
    } else {
        vec![
            receipt_id(&command.id, "final"),
            refusal_id(&command.id, sent),
        ]
    };
    receipt.command_id == command.id
        && receipt.type_ == crate::ids::receipt_type(command.type_)
        && expected.contains(&receipt.id)
}
