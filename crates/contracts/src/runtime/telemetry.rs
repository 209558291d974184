//! The HTTP endpoint a service opens with `--metrics-listen ADDR` (or `ORION_METRICS_LISTEN`):
//!
//! - `GET /metrics`: Prometheus text exposition of [`crate::metrics::ALL`], rendered by
//!   `metrics-exporter-prometheus`, every series labelled `service="<identity>"`;
//! - `GET /healthz`: 200 while the process serves requests (a supervisor's liveness probe);
//! - `GET /readyz`: 200 once the service is connected to NATS with its provisioning verified
//!   and not draining, else 503 with the reason (a load balancer's or orchestrator's readiness).
//!
//! Off unless an address is given: nothing listens by default. The bootstrap
//! ([`super::ServiceMain`]) opens it before connecting, so `/healthz` answers while the
//! service waits for NATS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::metrics::{self, Kind};

/// How often histograms are compacted when nobody scrapes (the exporter asks for upkeep).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Why the endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen for metrics on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the Prometheus recorder")]
    Recorder(#[source] metrics_exporter_prometheus::BuildError),
}

/// Where a service is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Running = 1,
    Draining = 2,
}

/// What `/readyz` reads: the phase the bootstrap sets and, once connected, the connection.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthState>,
}

#[derive(Default)]
struct HealthState {
    phase: AtomicU8,
    connected: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Health {
    /// Starting → running; a service already draining stays draining.
    pub fn set_running(&self) {
        let _ = self.inner.phase.compare_exchange(
            Phase::Starting as u8,
            Phase::Running as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub fn set_draining(&self) {
        self.inner
            .phase
            .store(Phase::Draining as u8, Ordering::Relaxed);
    }

    /// Gives `/readyz` the live state of the NATS connection.
    pub fn watch_connection(&self, connected: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.inner.connected.set(Box::new(connected));
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        match self.inner.phase.load(Ordering::Relaxed) {
            p if p == Phase::Starting as u8 => Err("starting: not connected to NATS yet"),
            p if p == Phase::Draining as u8 => Err("draining: shutting down"),
            _ => match self.inner.connected.get() {
                Some(connected) if !connected() => Err("the NATS connection is down"),
                _ => Ok(()),
            },
        }
    }
}

/// Installs the Prometheus recorder for service `service` (every metric described, histograms
/// with buckets) and serves the endpoint on `address` until the runtime stops. Returns the
/// address bound (useful with port 0).
pub async fn serve(
    address: SocketAddr,
    service: &'static str,
    version: &'static str,
    health: Health,
) -> Result<SocketAddr, TelemetryError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| TelemetryError::Listen { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Listen { address, source })?;
    let handle = recorder(service)?;
    metrics::BUILD_INFO.set(&[version], 1.0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let endpoint = Arc::new(Endpoint { handle, health });
    tokio::spawn(accept(listener, endpoint));
    tracing::info!(address = %bound, "metrics, /healthz and /readyz served");
    Ok(bound)
}

/// The process's recorder: installed by the first endpoint (one service per process; the
/// `service` label is the first one's), shared by any later one.
fn recorder(service: &'static str) -> Result<PrometheusHandle, TelemetryError> {
    static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let handle = install_recorder(service)?;
    Ok(RECORDER.get_or_init(|| handle).clone())
}

fn install_recorder(service: &'static str) -> Result<PrometheusHandle, TelemetryError> {
    let mut builder = PrometheusBuilder::new().add_global_label("service", service);
    for metric in metrics::ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        builder = builder
            .set_buckets_for_metric(
                Matcher::Full(metric.name.to_string()),
                metrics::buckets_of(metric),
            )
            .map_err(TelemetryError::Recorder)?;
    }
    let handle = builder
        .install_recorder()
        .map_err(TelemetryError::Recorder)?;
    for metric in metrics::ALL {
        match metric.kind {
            Kind::Counter => ::metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => ::metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => ::metrics::describe_histogram!(metric.name, metric.help),
        }
    }
    Ok(handle)
}

struct Endpoint {
    handle: PrometheusHandle,
    health: Health,
}

async fn accept(listener: TcpListener, endpoint: Arc<Endpoint>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = endpoint.respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

impl Endpoint {
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match request.uri().path() {
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.handle.render());
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.health.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
