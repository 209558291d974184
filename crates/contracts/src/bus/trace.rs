//! One trace per incident: W3C trace context (`traceparent`) in the NATS headers of every
//! message, from the incident through decision, approval, action, ops command, receipt and
//! outcome.
//!
//! ```text
//! delivery (traceparent T-P) ──isolate──▶ handler runs in Trace{T, new span S}  (task-local, and a
//!                                          │                                    `message{trace_id=T}` log span)
//!                                          └─ every publish inside ──▶ traceparent 00-T-S-01
//! no delivery (a timer, a CLI)  ──▶ `in_trace(Trace::for_incident(id), …)`, or a new trace per publish
//! ```
//!
//! The trace id of an incident is its `incident_id` (the UUID's 16 bytes are exactly a trace
//! id): guardian publishes every version under it, so everything that follows one incident —
//! whoever handles it, after any crash or redelivery, from a timer — shares one id that an
//! operator can also compute from the incident id alone. An event keeps its producer's trace;
//! guardian's log line about it carries that trace id, and the incident it opens or grows is
//! logged with both. A `traceparent` that does not parse (anything a producer may send) is
//! ignored: the handling starts a trace of its own, never fails.
//!
//! Parsing is OpenTelemetry's (`TraceContextPropagator`), and so are the ids; the one header
//! line written is formatted here (see [`Trace::traceparent`]). Nothing is exported.

use std::future::Future;

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Instrument;

/// The W3C header every message carries.
pub const TRACEPARENT: &str = "traceparent";

/// Where a piece of work is in a trace: the trace and the span this process works under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    trace_id: TraceId,
    span_id: SpanId,
}

tokio::task_local! {
    static CURRENT: Trace;
}

impl Trace {
    /// A new trace (a message nobody traced before).
    pub fn new_root() -> Self {
        let ids = RandomIdGenerator::default();
        Self {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
        }
    }

    /// The trace of incident `incident_id`: its 16 bytes as the trace id, a new span.
    pub fn for_incident(incident_id: uuid::Uuid) -> Self {
        Self {
            trace_id: TraceId::from_bytes(*incident_id.as_bytes()),
            span_id: RandomIdGenerator::default().new_span_id(),
        }
    }

    /// The same trace, a new span: work that follows from this one.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: RandomIdGenerator::default().new_span_id(),
        }
    }

    /// The trace of a message's headers, if it has a valid `traceparent`.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Option<Self> {
        let context = TraceContextPropagator::new().extract(&Headers(headers?));
        let span = context.span();
        let remote = span.span_context();
        remote.is_valid().then(|| Self {
            trace_id: remote.trace_id(),
            span_id: remote.span_id(),
        })
    }

    /// The trace of a `traceparent` value, if valid.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, traceparent);
        Self::from_headers(Some(&headers))
    }

    /// The trace id as 32 lowercase hex digits (what logs, `approval-cli trail` and tracing
    /// back-ends show).
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        self.span_id.to_string()
    }

    /// `00-<trace id>-<span id>-01`: version 00, sampled. Written directly rather than through
    /// the propagator's injector, which is built for a whole `Context` and also writes an empty
    /// `tracestate` header; on the publish path that cost most of a microsecond per message.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// The trace the current task works under, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|trace| *trace).ok()
    }
}

/// Runs `work` under `trace`: messages it publishes carry it, and its log lines are inside a
/// `message{trace_id=…}` span.
pub async fn in_trace<F: Future>(trace: Trace, work: F) -> F::Output {
    let span = tracing::info_span!("message", trace_id = %trace.trace_id());
    CURRENT.scope(trace, work.instrument(span)).await
}

/// Runs the handling of a message whose headers are `headers` under its trace (a child span of
/// the sender's), or a new trace if it has none.
pub(super) async fn in_message_trace<F: Future>(headers: Option<&HeaderMap>, work: F) -> F::Output {
    let trace = Trace::from_headers(headers)
        .map(|sender| sender.child())
        .unwrap_or_else(Trace::new_root);
    in_trace(trace, work).await
}

/// Gives an outgoing message its `traceparent`: one set by the caller stays, else the current
/// trace's, else a new trace.
pub(super) fn stamp(headers: &mut HeaderMap) {
    if headers.get(TRACEPARENT).is_some() {
        return;
    }
    let trace = Trace::current().unwrap_or_else(Trace::new_root);
    headers.insert(TRACEPARENT, trace.traceparent().as_str());
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_is_its_own_trace() {
        let incident = uuid::Uuid::parse_str("0af76519-16cd-43dd-8448-eb211c80319c").unwrap();
        let trace = Trace::for_incident(incident);
        assert_eq!(trace.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        let header = trace.traceparent();
        assert!(
            header.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && header.ends_with("-01"),
            "{header}"
        );
        assert_eq!(Trace::parse(&header), Some(trace));
        let child = trace.child();
        assert_eq!(child.trace_id(), trace.trace_id());
        assert_ne!(child.span_id(), trace.span_id());
    }

    /// The header written by hand is the one OpenTelemetry's propagator writes for the same
    /// span (less its empty `tracestate`).
    #[test]
    fn the_traceparent_is_the_propagators() {
        use opentelemetry::propagation::Injector;
        use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
        struct Written(Vec<(String, String)>);
        impl Injector for Written {
            fn set(&mut self, key: &str, value: String) {
                self.0.push((key.to_string(), value));
            }
        }
        for _ in 0..100 {
            let trace = Trace::new_root();
            let span = SpanContext::new(
                trace.trace_id,
                trace.span_id,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            );
            let mut written = Written(Vec::new());
            TraceContextPropagator::new().inject_context(
                &opentelemetry::Context::new().with_remote_span_context(span),
                &mut written,
            );
            assert_eq!(
                written.0,
                [
                    (TRACEPARENT.to_string(), trace.traceparent()),
                    ("tracestate".to_string(), String::new())
                ]
            );
        }
    }

    #[test]
    fn what_a_producer_may_send_never_fails() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra-\u{1F600}",
        ] {
            assert_eq!(Trace::parse(bad), None, "{bad:?}");
        }
        assert!(Trace::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    }

    #[tokio::test]
    async fn publishing_inside_a_trace_carries_it() {
        let trace = Trace::new_root();
        let mut headers = HeaderMap::new();
        in_trace(trace, async { stamp(&mut headers) }).await;
        assert_eq!(Trace::from_headers(Some(&headers)), Some(trace));
        let mut outside = HeaderMap::new();
        stamp(&mut outside);
        let fresh = Trace::from_headers(Some(&outside)).expect("a new trace");
        assert_ne!(fresh.trace_id(), trace.trace_id());
    }
}
