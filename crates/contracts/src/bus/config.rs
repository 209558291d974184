//! How a service reaches NATS: URL, identity, timeouts.

use std::time::Duration;

use super::BusError;
use crate::Service;

/// Where a service connects when nothing else is configured.
pub const DEFAULT_NATS_URL: &str = "nats://localhost:4222";

/// Connection settings of one service instance.
#[derive(Clone)]
pub struct BusConfig {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// NATS user; the service identity's name unless set.
    pub user: Option<String>,
    /// NATS password of that user.
    pub password: Option<String>,
    /// Connection name shown by the server and NATS tooling.
    pub connection_name: Option<String>,
    /// How long to wait for the server when connecting.
    pub connect_timeout: Duration,
    /// How long to wait for a JetStream API answer or publish ack.
    pub request_timeout: Duration,
    /// Replicas of the streams and buckets this service provisions (1, or 3 in a cluster).
    pub replicas: usize,
    /// Version reported by the NATS micro service registration.
    pub service_version: String,
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl BusConfig {
    /// Settings for `url` with no credentials and default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            connection_name: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            replicas: 1,
            service_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Connect as `user` with `password`.
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Reads `ORION_NATS_URL` (default `nats://localhost:4222`), `ORION_NATS_USER` (default: the
    /// service's name) and the password from `ORION_NATS_PASSWORD`, the file named by
    /// `ORION_NATS_PASSWORD_FILE`, or `ORION_NATS_PASSWORD_<SERVICE>` (what `cargo xtask up`
    /// writes for every service).
    pub fn from_env<S: Service>() -> Result<Self, BusError> {
        let url = std::env::var("ORION_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_string());
        let mut config = Self::new(url);
        let password = match (
            std::env::var("ORION_NATS_PASSWORD").ok(),
            std::env::var("ORION_NATS_PASSWORD_FILE").ok(),
        ) {
            (Some(password), _) => Some(password),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| BusError::Config(format!("ORION_NATS_PASSWORD_FILE={path}: {e}")))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => std::env::var(crate::nats_password_var(S::NAME)).ok(),
        };
        if let Some(password) = password {
            let user = std::env::var("ORION_NATS_USER").unwrap_or_else(|_| S::NAME.to_string());
            config = config.with_credentials(user, password);
        }
        Ok(config)
    }
}
