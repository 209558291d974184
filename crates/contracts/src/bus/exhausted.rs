//! Messages whose deliveries ran out with no answer at all. A handler that panics or returns
//! errors is dead-lettered by the subscription itself on its last delivery; a process that dies
//! on the message (abort, out of memory, SIGKILL) answers nothing, and the server just stops
//! delivering it once `max_deliver` is used up. The server says so on a max-deliveries
//! advisory; each subscription listens to the one of its own consumer and dead-letters the
//! message as `delivery_exhausted`.
//!
//! The dead letter carries the stream and sequence but not the payload: reading a message by
//! sequence would let the service read every subject of the stream, more than its grants. The
//! message itself stays in its stream (limits retention). The dead letter's id is the one the
//! subscription would use for the same message, so several instances hearing the advisory
//! publish one dead letter.

use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;

use super::connection::Inner;
use super::dead_letter::{self, Origin, Rejection};
use super::BusError;
use crate::generated::dead_letter_v1::DeadLetterReasonCode;

/// The subject of the server's advisory for `consumer` of `stream`.
pub fn advisory_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
}

/// The fields of `io.nats.jetstream.advisory.v1.max_deliver` used here.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// Stops listening when dropped.
pub(super) struct ExhaustedWatch(tokio::task::AbortHandle);

impl Drop for ExhaustedWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the watch needs to name the consumer in its dead letters.
pub(super) struct Consumer {
    pub service: &'static str,
    pub name: String,
    pub stream: &'static str,
    pub subject: &'static str,
}

/// Listens to the advisory of `consumer` (subscribed before this returns, so none is missed
/// from then on) and dead-letters each exhausted message.
pub(super) async fn watch(
    inner: Arc<Inner>,
    consumer: Consumer,
) -> Result<ExhaustedWatch, BusError> {
    let subject = advisory_subject(consumer.stream, &consumer.name);
    let mut advisories =
        inner
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| BusError::JetStream {
                what: format!("subscribing to `{subject}`"),
                source: super::NatsError::other(e),
            })?;
    let task = tokio::spawn(async move {
        while let Some(message) = advisories.next().await {
            match serde_json::from_slice::<MaxDeliveries>(&message.payload) {
                Ok(advisory) => dead_letter_exhausted(&inner, &consumer, &advisory).await,
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "ignored an unreadable max-deliveries advisory")
                }
            }
        }
    });
    Ok(ExhaustedWatch(task.abort_handle()))
}

async fn dead_letter_exhausted(inner: &Inner, consumer: &Consumer, advisory: &MaxDeliveries) {
    let origin = Origin {
        service: consumer.service,
        consumer: &consumer.name,
        subject: consumer.subject,
        stream: consumer.stream,
        stream_sequence: advisory.stream_seq,
        delivery_attempt: advisory.deliveries,
        payload: b"",
        headers: None,
    };
    let rejection = Rejection::new(
        DeadLetterReasonCode::DeliveryExhausted,
        format!(
            "all {} deliveries were used up with no answer: the service died or hung while handling \
             it (a panic or a handler error is reported as such); the payload is not copied here, it \
             stays in stream {} at sequence {}",
            advisory.deliveries, consumer.stream, advisory.stream_seq
        ),
    );
    if let Err(e) = dead_letter::publish(inner, &origin, &rejection).await {
        tracing::error!(consumer = %consumer.name, stream_sequence = advisory.stream_seq, error = %e, "could not dead-letter an exhausted message");
    }
}
