//! Reading the audit streams: ordered pull consumers (ephemeral, no acks, nothing left behind
//! on the server) that either read a stream to its end or follow what arrives next.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::records::RawRecord;

/// The header carrying an approval decision's signature.
pub use contracts::signing::SIGNATURE_HEADER;

/// How long a read may wait for the next message of a stream it knows is not finished.
const NEXT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream does not exist (the platform is not provisioned yet).
    #[error("stream `{0}` does not exist (provision the platform: `cargo xtask provision` or `orion-bus provision`)")]
    NoStream(String),
    /// The server did not answer in time.
    #[error("reading stream `{stream}`: NATS did not answer in time ({reason})")]
    Timeout { stream: String, reason: String },
    /// Anything else the server or client reported.
    #[error("reading stream `{stream}`: {reason}")]
    Failed { stream: String, reason: String },
}

impl ReadError {
    fn failed(stream: &str, e: impl std::fmt::Display) -> Self {
        let reason = e.to_string();
        if reason.to_lowercase().contains("timed out") || reason.to_lowercase().contains("timeout")
        {
            Self::Timeout {
                stream: stream.to_string(),
                reason,
            }
        } else {
            Self::Failed {
                stream: stream.to_string(),
                reason,
            }
        }
    }
}

/// approval-cli's readers are named (the server refuses unnamed ones for this identity).
fn reader_name() -> String {
    contracts::bus::reader_name(<contracts::services::ApprovalCli as contracts::Service>::NAME)
}

async fn open_stream(js: &jetstream::Context, name: &str) -> Result<stream::Stream, ReadError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(stream),
        Err(e) => {
            if let jetstream::context::GetStreamErrorKind::JetStream(inner) = e.kind() {
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                    return Err(ReadError::NoStream(name.to_string()));
                }
            }
            Err(ReadError::failed(name, e))
        }
    }
}

fn raw_record(stream: &str, message: &jetstream::Message) -> Result<RawRecord, ReadError> {
    let info = message.info().map_err(|e| ReadError::failed(stream, e))?;
    Ok(RawRecord {
        stream: stream.to_string(),
        sequence: info.stream_sequence,
        subject: message.subject.to_string(),
        stored_at: info.published,
        payload: message.payload.to_vec(),
        signature: message
            .headers
            .as_ref()
            .and_then(|h| h.get(SIGNATURE_HEADER))
            .map(|v| v.as_str().to_string()),
    })
}

/// Reads `stream` from its start (or from `since`, by the time the server stored messages) to
/// its end as of now, optionally only `filter_subject`, with an ordered pull consumer.
pub async fn read_stream(
    js: &jetstream::Context,
    stream_name: &str,
    filter_subject: Option<&str>,
    since: Option<OffsetDateTime>,
) -> Result<Vec<RawRecord>, ReadError> {
    let stream = open_stream(js, stream_name).await?;
    let deliver_policy = match since {
        Some(start_time) => DeliverPolicy::ByStartTime { start_time },
        None => DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            name: Some(reader_name()),
            filter_subject: filter_subject.unwrap_or_default().to_string(),
            deliver_policy,
            description: Some("approval-cli: read to the end".to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| ReadError::failed(stream_name, e))?;
    let mut records = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(records);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| ReadError::failed(stream_name, e))?;
    loop {
        let message = match tokio::time::timeout(NEXT_MESSAGE_TIMEOUT, messages.next()).await {
            Err(_) => {
                return Err(ReadError::Timeout {
                    stream: stream_name.to_string(),
                    reason: format!(
                        "no message for {NEXT_MESSAGE_TIMEOUT:?} while more were pending"
                    ),
                })
            }
            Ok(None) => break,
            Ok(Some(message)) => message.map_err(|e| ReadError::failed(stream_name, e))?,
        };
        let pending = message
            .info()
            .map_err(|e| ReadError::failed(stream_name, e))?
            .pending;
        records.push(raw_record(stream_name, &message)?);
        if pending == 0 {
            break;
        }
    }
    Ok(records)
}

/// Follows `stream` from now on (DeliverPolicy::New): every message stored after this returns.
/// The consumer exists on the server when this returns, so nothing published afterwards is
/// missed.
pub async fn follow_stream(
    js: &jetstream::Context,
    stream_name: &str,
) -> Result<impl Stream<Item = Result<RawRecord, ReadError>> + Send + Unpin + 'static, ReadError> {
    let stream = open_stream(js, stream_name).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            name: Some(reader_name()),
            deliver_policy: DeliverPolicy::New,
            description: Some("approval-cli watch".to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| ReadError::failed(stream_name, e))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| ReadError::failed(stream_name, e))?;
    let name = stream_name.to_string();
    Ok(Box::pin(messages.map(move |message| {
        let message = message.map_err(|e| ReadError::failed(&name, e))?;
        raw_record(&name, &message)
    })))
}
