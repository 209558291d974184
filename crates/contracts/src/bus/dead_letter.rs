//! Dead letters: a rejected message, kept with the reason and its raw bytes.

use async_nats::HeaderMap;
use base64::Engine;
use serde_json::{json, Value};

use super::connection::Inner;
use super::publish::publish_value;
use super::BusError;
use crate::generated::dead_letter_v1::DeadLetterReasonCode;
use crate::{Contract, ContractError, DeadLetter, Timestamp};

/// Stable namespace of dead-letter ids: the id of the dead letter of one delivery is the same
/// every time, so a retried dead-lettering is dropped by the server as a duplicate.
const DEAD_LETTER_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f72696f6e2d646561642d6c65747472);

/// Why a message is being dead-lettered.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: DeadLetterReasonCode,
    pub message: String,
    pub instance_path: Option<String>,
    pub rule: Option<String>,
}

impl Rejection {
    pub fn new(code: DeadLetterReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            instance_path: None,
            rule: None,
        }
    }

    /// The rejection for a payload that failed to decode.
    pub fn from_contract_error(error: &ContractError) -> Self {
        let code = match error {
            ContractError::NotJson { .. } => DeadLetterReasonCode::NotJson,
            ContractError::UnsupportedVersion { .. } => DeadLetterReasonCode::UnsupportedVersion,
            ContractError::UnknownSubject { .. } => DeadLetterReasonCode::UnknownSubject,
            ContractError::Invalid { .. } | ContractError::Type { .. } => {
                DeadLetterReasonCode::SchemaViolation
            }
        };
        let first = error.violations().first();
        Self {
            code,
            message: error.to_string(),
            instance_path: first.map(|v| v.instance_path.clone()),
            rule: first.map(|v| v.rule.clone()),
        }
    }
}

/// Where a rejected message came from.
pub(super) struct Origin<'a> {
    pub service: &'static str,
    pub consumer: &'a str,
    pub subject: &'a str,
    pub stream: &'a str,
    pub stream_sequence: u64,
    pub delivery_attempt: u64,
    pub payload: &'a [u8],
    pub headers: Option<&'a HeaderMap>,
}

pub(super) fn record(origin: &Origin<'_>, rejection: &Rejection) -> Value {
    let id = uuid::Uuid::new_v5(
        &DEAD_LETTER_NAMESPACE,
        format!(
            "{}:{}:{}",
            origin.consumer, origin.stream, origin.stream_sequence
        )
        .as_bytes(),
    );
    let mut reason = json!({ "code": rejection.code, "message": rejection.message });
    if let Some(path) = &rejection.instance_path {
        reason["instance_path"] = json!(path);
    }
    if let Some(rule) = &rejection.rule {
        reason["rule"] = json!(rule);
    }
    let mut record = json!({
        "version": "1.0",
        "dead_letter_id": id,
        "timestamp": Timestamp::now(),
        "service": origin.service,
        "consumer": origin.consumer,
        "subject": origin.subject,
        "reason": reason,
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(origin.payload),
    });
    if origin.stream_sequence > 0 {
        record["stream_sequence"] = json!(origin.stream_sequence);
    }
    if origin.delivery_attempt > 0 {
        record["delivery_attempt"] = json!(origin.delivery_attempt);
    }
    if let Some(headers) = origin.headers {
        let map: serde_json::Map<String, Value> = headers
            .iter()
            .filter_map(|(name, values)| Some((name.to_string(), json!(values.first()?.as_str()))))
            .collect();
        if !map.is_empty() {
            record["headers"] = Value::Object(map);
        }
    }
    record
}

/// Publishes the dead letter of `origin` to `platform.dead_letter.v1`.
pub(super) async fn publish(
    inner: &Inner,
    origin: &Origin<'_>,
    rejection: &Rejection,
) -> Result<(), BusError> {
    let value = record(origin, rejection);
    DeadLetter::validator().validate(&value)?;
    tracing::warn!(
        service = origin.service,
        subject = origin.subject,
        stream_sequence = origin.stream_sequence,
        reason = %rejection.message,
        "dead-lettered a message"
    );
    publish_value(inner, DeadLetter::INFO, &value, HeaderMap::new()).await?;
    crate::metrics::DEAD_LETTERED.increment(&[origin.consumer, &rejection.code.to_string()]);
    Ok(())
}
