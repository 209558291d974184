//! Reading the audit streams through the platform's ordered readers (ephemeral, no acks,
//! nothing left behind on the server): read a stream to its end, or follow what arrives next.

use std::time::Duration;

use contracts::bus::{Bus, BusError, BusErrorKind, ReadFrom, ReadMessage, Reader};
use contracts::services::ApprovalCli;
use contracts::Contract;
use futures::Stream;
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
    /// The server did not answer in time, or could not be reached.
    #[error("reading stream `{stream}`: NATS did not answer in time ({source})")]
    Timeout {
        stream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else the server or client reported.
    #[error("reading stream `{stream}`: {source}")]
    Failed {
        stream: String,
        #[source]
        source: BusError,
    },
}

impl ReadError {
    fn of(stream: &str, e: BusError) -> Self {
        match e.kind() {
            BusErrorKind::NotProvisioned => Self::NoStream(stream.to_string()),
            BusErrorKind::Unreachable => Self::Timeout {
                stream: stream.to_string(),
                source: Box::new(e),
            },
            _ => Self::Failed {
                stream: stream.to_string(),
                source: e,
            },
        }
    }
}

/// No message arrived while more were pending.
#[derive(Debug, thiserror::Error)]
#[error("no message for {0:?} while more were pending")]
struct Stalled(Duration);

fn raw_record(message: ReadMessage) -> RawRecord {
    RawRecord {
        signature: message.header(SIGNATURE_HEADER).map(str::to_string),
        trace: message.trace(),
        stream: message.stream.to_string(),
        sequence: message.stream_sequence,
        subject: message.subject,
        stored_at: message.stored_at,
        payload: message.payload.to_vec(),
    }
}

fn from(since: Option<OffsetDateTime>) -> ReadFrom {
    since.map_or(ReadFrom::Start, ReadFrom::Time)
}

/// Reads `reader` to the end it had when it was opened.
async fn to_the_end(stream: &str, mut reader: Reader) -> Result<Vec<RawRecord>, ReadError> {
    let mut records = Vec::new();
    for _ in 0..reader.pending_at_open() {
        match tokio::time::timeout(NEXT_MESSAGE_TIMEOUT, reader.next()).await {
            Err(_) => {
                return Err(ReadError::Timeout {
                    stream: stream.to_string(),
                    source: Box::new(Stalled(NEXT_MESSAGE_TIMEOUT)),
                })
            }
            Ok(None) => break,
            Ok(Some(message)) => {
                records.push(raw_record(message.map_err(|e| ReadError::of(stream, e))?))
            }
        }
    }
    Ok(records)
}

/// Reads the whole stream `stream_name` from its start (or from `since`, by the time the server
/// stored messages) to its end as of now.
pub async fn read_stream(
    bus: &Bus<ApprovalCli>,
    stream_name: &str,
    since: Option<OffsetDateTime>,
) -> Result<Vec<RawRecord>, ReadError> {
    let reader = bus
        .read_stream(stream_name, from(since))
        .await
        .map_err(|e| ReadError::of(stream_name, e))?;
    to_the_end(stream_name, reader).await
}

/// Reads the messages of `T`'s subject, from the start to the end as of now.
pub async fn read_subject<T: Contract>(bus: &Bus<ApprovalCli>) -> Result<Vec<RawRecord>, ReadError>
where
    ApprovalCli: contracts::Reads<T>,
{
    let stream = T::INFO.stream;
    let reader = bus
        .read_raw::<T>(ReadFrom::Start)
        .await
        .map_err(|e| ReadError::of(stream, e))?;
    to_the_end(stream, reader).await
}

/// Follows `stream_name` from now on: every message stored after this returns. The reader
/// exists on the server when this returns, so nothing published afterwards is missed.
pub async fn follow_stream(
    bus: &Bus<ApprovalCli>,
    stream_name: &'static str,
) -> Result<impl Stream<Item = Result<RawRecord, ReadError>> + Send + Unpin + 'static, ReadError> {
    let reader = bus
        .read_stream(stream_name, ReadFrom::New)
        .await
        .map_err(|e| ReadError::of(stream_name, e))?;
    Ok(Box::pin(futures::stream::unfold(
        reader,
        move |mut reader| async move {
            let next = reader.next().await?;
            let record = next
                .map(raw_record)
                .map_err(|e| ReadError::of(stream_name, e));
            Some((record, reader))
        },
    )))
}
