//! commander's configuration: a TOML file with environment overlays, then environment variables.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The file (`commander.toml`, and `commander.<ORION_ENV>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// NATS URL(s), comma-separated.
    pub nats_url: String,
    /// How long to wait for ops-worker's final receipt.
    pub receipt_timeout_s: u64,
    /// Actions executed at once.
    pub max_in_flight: usize,
    /// How long the server waits before redelivering an action commander is working on (it
    /// reports progress meanwhile).
    pub ack_wait_s: u64,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            nats_url: contracts::bus::DEFAULT_NATS_URL.into(),
            receipt_timeout_s: 120,
            max_in_flight: 16,
            ack_wait_s: 30,
        }
    }
}

/// Everything commander runs with, checked.
#[derive(Debug)]
pub struct CommanderConfig {
    pub file: FileConfig,
    pub receipt_timeout: Duration,
    pub ack_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error("{0}")]
    Invalid(String),
}

impl CommanderConfig {
    /// Loads `path` (+ the `ORION_ENV` overlay); `ORION_NATS_URL` / `NATS_URL` override the URL.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut file: FileConfig =
            contracts::runtime::load_layered(path, &contracts::runtime::environment())?;
        if let Ok(url) = std::env::var("ORION_NATS_URL").or_else(|_| std::env::var("NATS_URL")) {
            file.nats_url = url;
        }
        if file.receipt_timeout_s == 0 || file.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "receipt_timeout_s and max_in_flight must be above 0".into(),
            ));
        }
        Ok(Self {
            receipt_timeout: Duration::from_secs(file.receipt_timeout_s),
            ack_wait: Duration::from_secs(file.ack_wait_s.max(5)),
            file,
        })
    }
}
