//! The sender's side: build and sign a command, send it, wait for its receipts.

use std::time::Duration;

use contracts::bus::{Bus, BusError, ReadFrom};
use contracts::{OpsCommand, OpsReceipt, Timestamp};
use serde_json::{json, Map, Value};

use crate::signing::{SignatureError, SigningKeys};

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub command_type: String,
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
    Receipts(String),
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
    let mut value = json!({
        "v": 1,
        "id": uuid::Uuid::new_v4(),
        "ts": Timestamp::now(),
        "type": request.command_type,
        "target": request.target,
        "meta": { "initiator_id": request.initiator_id, "reason": request.reason, "signature": "0".repeat(64) },
    });
    if let Some(params) = &request.params {
        value["params"] = Value::Object(params.clone());
    }
    sign(value, keys)
}

/// Signs a command given as JSON (its `meta.signature`, if any, is replaced). The signature
/// covers the command exactly as the bus will send it: the typed command re-serialized.
pub fn sign(mut command: Value, keys: &SigningKeys) -> Result<OpsCommand, ClientError> {
    if let Some(meta) = command.get_mut("meta").and_then(Value::as_object_mut) {
        meta.insert("signature".into(), json!("0".repeat(64)));
    }
    let unsigned: OpsCommand = contracts::decode_value(command)?;
    let wire = contracts::to_value(&unsigned)?;
    let signed = keys.signed(&wire)?;
    Ok(contracts::decode_value(signed)?)
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
        .map_err(|e| ClientError::Receipts(e.to_string()))?;
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
            Ok(Some(Err(e))) => return Err(ClientError::Receipts(e.to_string())),
            Ok(Some(Ok((receipt, _)))) => receipt,
        };
        if !issued_for(&receipt, command, &sent) {
            continue;
        }
        on_receipt(&receipt);
        if receipt.status.to_string() == "pending" {
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
    let expected = if receipt.status.to_string() == "pending" {
        vec![receipt_id(&command.id, "pending")]
    } else {
        vec![
            receipt_id(&command.id, "final"),
            refusal_id(&command.id, sent),
        ]
    };
    receipt.command_id == command.id
        && receipt.type_.to_string() == command.type_.to_string()
        && expected.contains(&receipt.id)
}
