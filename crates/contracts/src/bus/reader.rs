//! Ordered readers: how a service reads a stream without taking anything from its consumers.
//!
//! A reader is a short-lived, unacknowledged JetStream consumer that the service names itself
//! (`<service>-reader-<random>`), filtered to one contract's subject (or a whole stream, when the
//! service may read every subject in it). The generated permissions let a service create
//! readers only on the subjects the inventory lists it as a reader of, and never under a durable
//! consumer's name; the random name keeps other identities from pulling from it.

use std::marker::PhantomData;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::context::GetStreamErrorKind;
use futures::StreamExt;
use time::OffsetDateTime;

use super::{Bus, BusError, NatsError};
use crate::{Contract, Produces, Reads, Service, STREAMS};
use serde_json::Value;

/// Where a reader starts.
#[derive(Debug, Clone, Copy)]
pub enum ReadFrom {
    /// The first message the stream still holds.
    Start,
    /// Only messages stored after the reader was opened.
    New,
    /// Messages the server stored at or after this time.
    Time(OffsetDateTime),
    /// Messages from this stream sequence on (a sequence the stream no longer holds starts at
    /// the first one it does).
    Sequence(u64),
}

impl ReadFrom {
    fn deliver_policy(self) -> DeliverPolicy {
        match self {
            Self::Start => DeliverPolicy::All,
            Self::New => DeliverPolicy::New,
            Self::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
            Self::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        }
    }
}

/// One message as a reader sees it: stored bytes, headers and position.
#[derive(Debug, Clone)]
pub struct ReadMessage {
    pub stream: &'static str,
    pub subject: String,
    pub stream_sequence: u64,
    /// When the server stored it.
    pub stored_at: OffsetDateTime,
    pub payload: bytes::Bytes,
    pub headers: Option<async_nats::HeaderMap>,
}

impl ReadMessage {
    /// A header's value, if the message has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    }

    /// The trace of its `traceparent` header, if valid.
    pub fn trace(&self) -> Option<super::Trace> {
        super::Trace::from_headers(self.headers.as_ref())
    }
}

/// The messages of one ordered reader, in stream order.
pub struct Reader {
    stream: &'static str,
    pending_at_open: u64,
    messages: pull::Ordered,
}

impl Reader {
    /// Messages the stream held for this reader when it was opened (a read-to-the-end stops
    /// after these).
    pub fn pending_at_open(&self) -> u64 {
        self.pending_at_open
    }

    /// The next message; waits for one to arrive. `None` when the reader ends.
    pub async fn next(&mut self) -> Option<Result<ReadMessage, BusError>> {
        let stream = self.stream;
        let failed = |source: NatsError| BusError::Consume {
            subject: stream.to_string(),
            source,
        };
        Some(match self.messages.next().await? {
            Err(e) => Err(failed(e.into())),
            Ok(message) => match message.info() {
                Err(e) => Err(failed(NatsError::other(e))),
                Ok(info) => Ok(ReadMessage {
                    stream,
                    subject: message.subject.to_string(),
                    stream_sequence: info.stream_sequence,
                    stored_at: info.published,
                    payload: message.payload.clone(),
                    headers: message.headers.clone(),
                }),
            },
        })
    }
}

/// Decoded messages of one contract, from an ordered reader.
pub struct TypedReader<T> {
    reader: Reader,
    _contract: PhantomData<fn() -> T>,
}

impl<T: Contract> TypedReader<T> {
    /// The next message, validated and decoded (a message that breaks the contract is an error
    /// and the reader goes on); `None` when the reader ends.
    pub async fn next(&mut self) -> Option<Result<(T, ReadMessage), BusError>> {
        let message = match self.reader.next().await? {
            Ok(message) => message,
            Err(e) => return Some(Err(e)),
        };
        Some(
            crate::decode::<T>(&message.payload)
                .map(|decoded| (decoded, message))
                .map_err(BusError::from),
        )
    }

    pub fn pending_at_open(&self) -> u64 {
        self.reader.pending_at_open()
    }
}

/// A fresh reader name: the service's, and random so no other identity can guess it. Every
/// ordered consumer a service creates needs one: the server refuses unnamed ones.
pub fn reader_name(service: &str) -> String {
    format!("{service}-reader-{}", uuid::Uuid::new_v4().simple())
}

impl<S: Service> Bus<S> {
    /// An ordered reader on the subject of `T` (which the inventory lets `S` read).
    pub async fn read<T: Contract>(&self, from: ReadFrom) -> Result<TypedReader<T>, BusError>
    where
        S: Reads<T>,
    {
        let info = T::INFO;
        let reader = self
            .open_reader(info.stream, Some(info.subject), from)
            .await?;
        Ok(TypedReader {
            reader,
            _contract: PhantomData,
        })
    }

    /// An ordered reader on the subject of `T`, handing out the stored messages as they are
    /// (for an audit trail that shows what does not decode too).
    pub async fn read_raw<T: Contract>(&self, from: ReadFrom) -> Result<Reader, BusError>
    where
        S: Reads<T>,
    {
        self.open_reader(T::INFO.stream, Some(T::INFO.subject), from)
            .await
    }

    /// The last `limit` messages of `T`'s subject that `S` published, oldest first, looking back
    /// at most `look_back` messages of the stream (streams hold other subjects too). Best effort:
    /// what cannot be read is left out.
    pub async fn last_published<T: Contract>(&self, limit: usize, look_back: u64) -> Vec<Value>
    where
        S: Produces<T>,
    {
        let Ok(mut stream) = self.inner.jetstream.get_stream(T::INFO.stream).await else {
            return Vec::new();
        };
        let Ok(info) = stream.info().await else {
            return Vec::new();
        };
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let oldest = last.saturating_sub(look_back).max(first).max(1);
        let mut found = Vec::new();
        let mut sequence = last;
        while sequence >= oldest && found.len() < limit {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                if message.subject.as_str() == T::INFO.subject {
                    if let Ok(value) = serde_json::from_slice::<Value>(&message.payload) {
                        found.push(value);
                    }
                }
            }
            sequence -= 1;
        }
        found.reverse();
        found
    }

    /// An ordered reader on a whole stream, which `S` may open only when the inventory lets it
    /// read every subject the stream holds (approval-cli's audit trail does).
    pub async fn read_stream(&self, stream: &str, from: ReadFrom) -> Result<Reader, BusError> {
        let info = STREAMS.iter().find(|s| s.name == stream).ok_or_else(|| {
            BusError::Config(format!("`{stream}` is not a stream of the inventory"))
        })?;
        if let Some(unreadable) = info.subjects.iter().find(|s| !S::READS.contains(s)) {
            return Err(BusError::Config(format!(
                "`{}` may not read `{unreadable}`, so it cannot read the whole stream `{stream}`",
                S::NAME
            )));
        }
        self.open_reader(info.name, None, from).await
    }

    async fn open_reader(
        &self,
        stream: &'static str,
        subject: Option<&'static str>,
        from: ReadFrom,
    ) -> Result<Reader, BusError> {
        let failed = |what: &str, source: NatsError| BusError::JetStream {
            what: format!("{what} a reader on `{}`", subject.unwrap_or(stream)),
            source,
        };
        let handle = self
            .inner
            .jetstream
            .get_stream(stream)
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    BusError::NotProvisioned {
                        what: format!("stream `{stream}`"),
                        problem: "does not exist".to_string(),
                    }
                }
                _ => failed("finding the stream of", e.into()),
            })?;
        let consumer = handle
            .create_consumer(pull::OrderedConfig {
                name: Some(reader_name(S::NAME)),
                filter_subject: subject.unwrap_or_default().to_string(),
                deliver_policy: from.deliver_policy(),
                description: Some(format!("{} reads {}", S::NAME, subject.unwrap_or(stream))),
                ..Default::default()
            })
            .await
            .map_err(|e| failed("opening", e.into()))?;
        let pending_at_open = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| failed("starting", e.into()))?;
        Ok(Reader {
            stream,
            pending_at_open,
            messages,
        })
    }
}
