//! Validated, deduplicated publishing.

use async_nats::HeaderMap;
use serde_json::Value;

use super::connection::Inner;
use super::{Bus, BusError};
use crate::{idempotency_key, metrics, Contract, ContractInfo, Produces, Service};

/// Header naming the schema (`$id`) a message was validated against.
pub const CONTRACT_HEADER: &str = "Orion-Contract";

/// JetStream's acknowledgement of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub stream: String,
    pub sequence: u64,
    /// The server already had a message with this id in its duplicate window and dropped it.
    pub duplicate: bool,
    /// The `Nats-Msg-Id` sent.
    pub message_id: String,
}

impl<S: Service> Bus<S> {
    /// Validates `message`, publishes it on its subject with `Nats-Msg-Id` set to its
    /// idempotency key, and waits for JetStream to store it. Invalid messages are not sent.
    pub async fn publish<T: Contract>(&self, message: &T) -> Result<Published, BusError>
    where
        S: Produces<T>,
    {
        self.publish_with_headers(message, HeaderMap::new()).await
    }

    /// [`Bus::publish`], tried up to `attempts` times with a growing pause between tries (200 ms,
    /// 400 ms, …). Safe to repeat: the server drops a copy that did arrive as a duplicate of its
    /// `Nats-Msg-Id`. An invalid message is not retried. Returns the last error.
    pub async fn publish_retrying<T: Contract>(
        &self,
        message: &T,
        attempts: u32,
    ) -> Result<Published, BusError>
    where
        S: Produces<T>,
    {
        let mut attempt = 1;
        loop {
            match self.publish(message).await {
                Ok(published) => return Ok(published),
                Err(e @ BusError::Contract(_)) => return Err(e),
                Err(e) if attempt >= attempts.max(1) => return Err(e),
                Err(e) => {
                    tracing::warn!(subject = T::INFO.subject, attempt, error = %e, "publish failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                        .await;
                    attempt += 1;
                }
            }
        }
    }

    /// Publishes `messages` in order with up to `in_flight` of them handed to the server and not
    /// yet confirmed (at least 1): the round trips overlap instead of adding up. Each message is
    /// validated and carries its `Nats-Msg-Id` as with [`Bus::publish`], every acknowledgement
    /// is checked, and the result at index `i` is the one of `messages[i]` — an invalid message,
    /// a refusal or a lost ack fails that message alone, and the others go on. Safe to repeat
    /// for the failed ones: the server drops a copy that did arrive as a duplicate.
    pub async fn publish_all<T: Contract>(
        &self,
        messages: &[T],
        in_flight: usize,
    ) -> Vec<Result<Published, BusError>>
    where
        S: Produces<T>,
    {
        use futures::stream::{FuturesOrdered, StreamExt};

        let in_flight = in_flight.max(1);
        let mut results = Vec::with_capacity(messages.len());
        let mut waiting = FuturesOrdered::new();
        for message in messages {
            if waiting.len() >= in_flight {
                if let Some(result) = waiting.next().await {
                    results.push(result);
                }
            }
            let sent = send_message(&self.inner, message, HeaderMap::new()).await;
            // A message that never left keeps its place in the order of the results.
            waiting.push_back(async move {
                match sent {
                    Ok(sent) => sent.stored().await,
                    Err(e) => Err(e),
                }
            });
        }
        while let Some(result) = waiting.next().await {
            results.push(result);
        }
        results
    }

    /// [`Bus::publish`] with one extra header (a signature, a trace id).
    pub async fn publish_with_header<T: Contract>(
        &self,
        message: &T,
        name: &'static str,
        value: &str,
    ) -> Result<Published, BusError>
    where
        S: Produces<T>,
    {
        self.send_with_header(message, name, value)
            .await?
            .stored()
            .await
    }

    /// The first half of [`Bus::publish_with_headers`]: validates `message` and hands it to the
    /// server, without waiting for JetStream to store it; [`Sent::stored`] waits. Messages
    /// handed over one after the other on one bus are stored in that order (one connection), so
    /// several can be sent before any is confirmed: their round trips overlap. Nothing is known
    /// to be stored until `stored` says so.
    pub async fn send_with_headers<T: Contract>(
        &self,
        message: &T,
        headers: HeaderMap,
    ) -> Result<Sent<'_>, BusError>
    where
        S: Produces<T>,
    {
        send_message(&self.inner, message, headers).await
    }

    /// [`Bus::send_with_headers`] without extra headers.
    pub async fn send<T: Contract>(&self, message: &T) -> Result<Sent<'_>, BusError>
    where
        S: Produces<T>,
    {
        self.send_with_headers(message, HeaderMap::new()).await
    }

    /// [`Bus::send_with_headers`] with one extra header (a signature, a trace id).
    pub async fn send_with_header<T: Contract>(
        &self,
        message: &T,
        name: &'static str,
        value: &str,
    ) -> Result<Sent<'_>, BusError>
    where
        S: Produces<T>,
    {
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        self.send_with_headers(message, headers).await
    }

    /// [`Bus::publish`] with extra headers (a signature, a trace id).
    pub async fn publish_with_headers<T: Contract>(
        &self,
        message: &T,
        headers: HeaderMap,
    ) -> Result<Published, BusError>
    where
        S: Produces<T>,
    {
        self.send_with_headers(message, headers)
            .await?
            .stored()
            .await
    }
}

/// Publishes an already validated value of the contract `info` on `inner`'s connection and
/// waits for JetStream to store it.
pub(super) async fn publish_value(
    inner: &Inner,
    info: &'static ContractInfo,
    value: &Value,
    headers: HeaderMap,
) -> Result<Published, BusError> {
    send_value(inner, info, value, headers)
        .await?
        .stored()
        .await
}

/// A message handed to the server whose storage is not confirmed yet ([`Bus::send_with_headers`]).
#[must_use = "a sent message is not known to be stored until `stored` confirms it"]
pub struct Sent<'a> {
    inner: &'a Inner,
    info: &'static ContractInfo,
    message_id: String,
    mark: usize,
    ack: async_nats::jetstream::context::PublishAckFuture,
    sent_at: std::time::Instant,
}

impl Sent<'_> {
    /// Waits for JetStream's acknowledgement, or the server's permission refusal.
    pub async fn stored(self) -> Result<Published, BusError> {
        let Sent {
            inner,
            info,
            message_id,
            mark,
            ack,
            sent_at,
        } = self;
        let stored = tokio::select! {
            ack = ack => ack
                .map(|ack| Published { stream: ack.stream, sequence: ack.sequence, duplicate: ack.duplicate, message_id })
                .map_err(|e| BusError::Publish { subject: info.subject.to_string(), source: e.into() }),
            server_message = inner.permission_errors.wait_for(info.subject, mark) => {
                Err(BusError::PermissionDenied {
                    operation: "publish",
                    subject: info.subject.to_string(),
                    user: inner.user.clone(),
                    server_message,
                })
            }
        };
        match &stored {
            Ok(_) => metrics::PUBLISH_LATENCY.observe_duration(&[info.subject], sent_at.elapsed()),
            Err(_) => metrics::PUBLISH_FAILURES.increment(&[info.subject]),
        }
        stored
    }
}

/// Encodes (validating) a typed message and hands it to the server ([`send_payload`]).
async fn send_message<'a, T: Contract>(
    inner: &'a Inner,
    message: &T,
    headers: HeaderMap,
) -> Result<Sent<'a>, BusError> {
    let (payload, message_id) = crate::encode_keyed(message)?;
    send_payload(inner, T::INFO, payload, message_id, headers).await
}

/// Hands an already validated value to the server ([`send_payload`]).
async fn send_value<'a>(
    inner: &'a Inner,
    info: &'static ContractInfo,
    value: &Value,
    headers: HeaderMap,
) -> Result<Sent<'a>, BusError> {
    let message_id = idempotency_key(info, value);
    let payload = serde_json::to_vec(value).expect("a JSON value always serializes");
    send_payload(inner, info, payload, message_id, headers).await
}

/// Hands a validated message to the server with its `Nats-Msg-Id`, contract header and
/// `traceparent`; the storage is confirmed by [`Sent::stored`].
async fn send_payload<'a>(
    inner: &'a Inner,
    info: &'static ContractInfo,
    payload: Vec<u8>,
    message_id: String,
    mut headers: HeaderMap,
) -> Result<Sent<'a>, BusError> {
    headers.insert("Nats-Msg-Id", message_id.as_str());
    headers.insert(CONTRACT_HEADER, info.schema_id);
    super::trace::stamp(&mut headers);
    let mark = inner.permission_errors.mark();
    let sent_at = std::time::Instant::now();
    let ack = inner
        .jetstream
        .publish_with_headers(info.subject, headers, payload.into())
        .await
        .map_err(|e| {
            metrics::PUBLISH_FAILURES.increment(&[info.subject]);
            BusError::Publish {
                subject: info.subject.to_string(),
                source: e.into(),
            }
        })?;
    Ok(Sent {
        inner,
        info,
        message_id,
        mark,
        ack,
        sent_at,
    })
}
