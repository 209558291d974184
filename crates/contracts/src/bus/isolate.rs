//! Panic isolation: one message whose handler panics does not take the service down.
//!
//! Every service runs each delivery's handler through [`isolate`]. A panic in the handler is
//! caught (`catch_unwind`), logged with the message's subject and stream sequence, and the
//! message is settled as the bus settles a failure: handed back for redelivery after
//! `retry_delay`, or, on its last allowed delivery, sent to `platform.dead_letter.v1` with reason
//! `handler_panicked` and terminated. The consumer then goes on with the next message.
//!
//! A handler that had settled its message before it panicked (acked, naked, rejected) is only
//! logged: the message is not settled twice.
//!
//! What a panic leaves behind in the service's own memory is the service's business: the
//! services keep their state in their buckets and plan before they commit, so a redelivery
//! plans again from the stored state. A process that dies (abort, out of memory, SIGKILL) is a
//! different fault: its messages are redelivered after the ack wait.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

use super::subscribe::{Delivery, Incoming, InvalidDelivery, RawDelivery};

/// A delivery that [`isolate`] can settle if its handler panicked: [`Delivery`],
/// [`InvalidDelivery`] and [`Incoming`].
pub trait Settleable: sealed::Sealed {}

mod sealed {
    use super::RawDelivery;

    pub trait Sealed {
        fn raw_delivery(&self) -> &RawDelivery;
    }
}

impl<T> sealed::Sealed for Delivery<T> {
    fn raw_delivery(&self) -> &RawDelivery {
        self.raw()
    }
}
impl<T> Settleable for Delivery<T> {}

impl sealed::Sealed for InvalidDelivery {
    fn raw_delivery(&self) -> &RawDelivery {
        self.raw()
    }
}
impl Settleable for InvalidDelivery {}

impl<T> sealed::Sealed for Incoming<T> {
    fn raw_delivery(&self) -> &RawDelivery {
        match self {
            Incoming::Valid(delivery) => delivery.raw(),
            Incoming::Invalid(invalid) => invalid.raw(),
        }
    }
}
impl<T> Settleable for Incoming<T> {}

/// The handler of one delivery panicked; its message was handed back or dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerPanicked {
    /// The panic's message (`"<not a string>"` when the payload is not text).
    pub message: String,
    pub subject: String,
    pub stream_sequence: u64,
}

impl std::fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the handler of {} #{} panicked: {}",
            self.subject, self.stream_sequence, self.message
        )
    }
}

impl std::error::Error for HandlerPanicked {}

/// Runs `handler` on `delivery` under the message's trace (`bus::trace`: what the handler
/// publishes and logs carries it), catching a panic: the message is then handed back after
/// `retry_delay` or, on its last delivery, dead-lettered as `handler_panicked` (see the module
/// docs). Returns the panic, already logged and settled, for the caller's counters.
pub async fn isolate<D, F, Fut>(
    delivery: D,
    retry_delay: Duration,
    handler: F,
) -> Result<(), HandlerPanicked>
where
    D: Settleable,
    F: FnOnce(D) -> Fut,
    Fut: Future<Output = ()>,
{
    let raw = sealed::Sealed::raw_delivery(&delivery).clone();
    // On the heap: a handler's future can be large (ops-worker's deploy), and the trace's
    // wrappers would otherwise move it across the stack again (a debug build overflowed).
    let handled = Box::pin(AssertUnwindSafe(handler(delivery)).catch_unwind());
    let Err(payload) = super::trace::in_message_trace(raw.headers(), handled).await else {
        return Ok(());
    };
    let message = panic_message(payload.as_ref());
    let panicked = HandlerPanicked {
        message,
        subject: raw.subject().to_string(),
        stream_sequence: raw.stream_sequence(),
    };
    if raw.is_settled() {
        tracing::error!(subject = %panicked.subject, stream_sequence = panicked.stream_sequence, panic = %panicked.message, "a handler panicked after settling its message; going on");
        return Err(panicked);
    }
    tracing::error!(subject = %panicked.subject, stream_sequence = panicked.stream_sequence, panic = %panicked.message, "a handler panicked; the message is handed back (dead-lettered after its last delivery) and the consumer goes on");
    if let Err(e) = raw.after_panic(retry_delay, &panicked.message).await {
        tracing::warn!(subject = %panicked.subject, stream_sequence = panicked.stream_sequence, error = %e, "could not settle the message of a panicked handler; it is redelivered after the ack wait");
    }
    Err(panicked)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "<not a string>".to_string()
    }
}
