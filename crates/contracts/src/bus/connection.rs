//! A service's connection: one NATS client, its JetStream context, the micro-service
//! registration, and the record of permission errors the server sends back.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use tokio::sync::Notify;

use super::stats::StatsRegistry;
use super::{BusConfig, BusError, NatsError};
use crate::Service;

/// A connection to the bus as the service identity `S`. Cheap to clone.
pub struct Bus<S: Service> {
    pub(super) inner: Arc<Inner>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Clone for Bus<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _service: PhantomData,
        }
    }
}

pub(super) struct Inner {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub user: String,
    pub service: &'static str,
    pub config: BusConfig,
    pub permission_errors: PermissionLog,
    pub stats: Arc<StatsRegistry>,
    pub micro: async_nats::service::Service,
}

/// The subject namespace of the micro-service status endpoints (one per consumer).
pub const MICRO_PREFIX: &str = "orion.micro";

impl<S: Service> Bus<S> {
    /// Whether the connection to the server is up right now (it reconnects by itself).
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Connects as `S` and registers the NATS micro service `S::NAME`.
    pub async fn connect(config: BusConfig) -> Result<Self, BusError> {
        let user = config.user.clone().unwrap_or_else(|| "<anonymous>".into());
        let permission_errors = PermissionLog::default();
        let log = permission_errors.clone();
        let service = S::NAME;
        let mut options = async_nats::ConnectOptions::new()
            .name(
                config
                    .connection_name
                    .clone()
                    .unwrap_or_else(|| service.to_string()),
            )
            // Replies come below the identity's own prefix: the server lets nobody else
            // subscribe there, and this identity nowhere else.
            .custom_inbox_prefix(S::INBOX_PREFIX)
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout))
            .event_callback(move |event| {
                let log = log.clone();
                async move { log.observe(service, event) }
            });
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        let servers: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(|url| url.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| BusError::Config(format!("NATS URL `{}`: {e}", config.url)))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| BusError::Connect {
                url: config.url.clone(),
                user: user.clone(),
                source: e.into(),
            })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.request_timeout);

        let stats = Arc::new(StatsRegistry::default());
        let registry = stats.clone();
        let micro = async_nats::service::ServiceExt::service_builder(&client)
            .description(format!("ORION/TITAN service `{service}`"))
            .stats_handler(move |endpoint, _| registry.snapshot_json(&endpoint))
            .start(service, config.service_version.clone())
            .await
            .map_err(|e| BusError::JetStream {
                what: format!("registering micro service `{service}`"),
                source: NatsError::other(e),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                jetstream,
                user,
                service,
                config,
                permission_errors,
                stats,
                micro,
            }),
            _service: PhantomData,
        })
    }

    /// The underlying NATS client (request/reply, flush).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context, for key-value buckets and object stores. Messages go through
    /// [`Bus::publish`] and [`Bus::subscribe`], never through this.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    /// The settings this connection was made with.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// Flushes, stops the micro service and drains the connection.
    pub async fn close(self) -> Result<(), BusError> {
        let failed = |what: &str, e: NatsError| BusError::JetStream {
            what: what.to_string(),
            source: e,
        };
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| failed("flushing", NatsError::other(e)))?;
        self.inner
            .client
            .drain()
            .await
            .map_err(|e| failed("draining", NatsError::other(e)))
    }
}

/// Permission errors the server reported on this connection, so that a publish refused by the
/// server fails with the server's reason instead of an ack timeout.
#[derive(Clone, Default)]
pub(super) struct PermissionLog {
    inner: Arc<(Mutex<Vec<String>>, Notify)>,
}

impl PermissionLog {
    fn observe(&self, service: &str, event: async_nats::Event) {
        match event {
            async_nats::Event::ServerError(error) => {
                let text = error.to_string();
                if text.to_lowercase().contains("permissions violation") {
                    tracing::error!(service, %text, "NATS refused an operation");
                    self.inner
                        .0
                        .lock()
                        .expect("permission log poisoned")
                        .push(text);
                    self.inner.1.notify_waiters();
                } else {
                    tracing::warn!(service, %text, "NATS server error");
                }
            }
            async_nats::Event::Disconnected => tracing::warn!(service, "disconnected from NATS"),
            async_nats::Event::Connected => tracing::info!(service, "connected to NATS"),
            other => tracing::debug!(service, event = %other, "NATS connection event"),
        }
    }

    /// How many errors have been recorded so far.
    pub fn mark(&self) -> usize {
        self.inner.0.lock().expect("permission log poisoned").len()
    }

    /// Waits until an error about `subject` arrives after `mark`, and returns its text.
    pub async fn wait_for(&self, subject: &str, mark: usize) -> String {
        let quoted = format!("\"{subject}\"");
        loop {
            let notified = self.inner.1.notified();
            if let Some(text) = self.inner.0.lock().expect("permission log poisoned")[mark..]
                .iter()
                .find(|t| t.contains(&quoted))
            {
                return text.clone();
            }
            notified.await;
        }
    }
}
