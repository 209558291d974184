//! commander's configuration: a TOML file with environment overlays, then environment variables.

use std::path::Path;
use std::time::Duration;

use contracts::signing::{Verifier, BRAIN_SIGNER};
use serde::Deserialize;

/// The file (`commander.toml`, and `commander.<ORION_ENV>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// NATS URL(s), comma-separated.
    pub nats_url: String,
    /// How long to wait for ops-worker's final receipt.
    pub receipt_timeout_s: u64,
    /// After the receipt timeout, how long to keep withdrawing an unanswered ops command
    /// before reporting `ops_unreachable`; keep it above ops-worker's `clock_skew_s`.
    pub reconcile_timeout_s: u64,
    /// Actions executed at once.
    pub max_in_flight: usize,
    /// How long the server waits before redelivering an action commander is working on (it
    /// reports progress meanwhile).
    pub ack_wait_s: u64,
    /// brain's public keys (base64 Ed25519, as `brain keygen` / `brain public-key` print them):
    /// an action runs only if its signature verifies against one of them. Several during a
    /// rotation. Required.
    pub brain_public_keys: Vec<String>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            nats_url: contracts::bus::DEFAULT_NATS_URL.into(),
            receipt_timeout_s: 120,
            reconcile_timeout_s: 600,
            max_in_flight: 16,
            ack_wait_s: 30,
            brain_public_keys: Vec::new(),
        }
    }
}

/// Everything commander runs with, checked.
#[derive(Debug)]
pub struct CommanderConfig {
    pub file: FileConfig,
    pub receipt_timeout: Duration,
    pub reconcile_timeout: Duration,
    pub ack_wait: Duration,
    /// brain's trusted keys.
    pub brain_keys: Verifier,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error("no trusted brain key: commander executes only actions brain signed; set brain_public_keys in the config file or ORION_BRAIN_PUBLIC_KEYS (comma-separated) to brain's public key (`brain keygen` prints it, `brain public-key --signing-key FILE` prints it again)")]
    NoBrainKey,
    #[error("brain public key {index} is not usable: {reason}")]
    BadBrainKey { index: usize, reason: String },
}

impl CommanderConfig {
    /// Loads `path` (+ the `ORION_ENV` overlay); `ORION_NATS_URL` / `NATS_URL` override the URL,
    /// `ORION_BRAIN_PUBLIC_KEYS` the brain keys.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`CommanderConfig::load`] with the environment given by `var`.
    pub fn load_with(
        path: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let environment = var("ORION_ENV").unwrap_or_else(|| "base".into());
        let mut file: FileConfig = contracts::runtime::load_layered(path, &environment)?;
        if let Some(url) = var("ORION_NATS_URL").or_else(|| var("NATS_URL")) {
            file.nats_url = url;
        }
        if let Some(keys) = var("ORION_BRAIN_PUBLIC_KEYS") {
            file.brain_public_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
        }
        if file.receipt_timeout_s == 0 || file.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "receipt_timeout_s and max_in_flight must be above 0".into(),
            ));
        }
        let mut brain_keys = Verifier::default();
        for (index, key) in file.brain_public_keys.iter().enumerate() {
            brain_keys
                .add(BRAIN_SIGNER, key)
                .map_err(|e| ConfigError::BadBrainKey {
                    index: index + 1,
                    reason: e.to_string(),
                })?;
        }
        if brain_keys.key_count(BRAIN_SIGNER) == 0 {
            return Err(ConfigError::NoBrainKey);
        }
        Ok(Self {
            receipt_timeout: Duration::from_secs(file.receipt_timeout_s),
            reconcile_timeout: Duration::from_secs(file.reconcile_timeout_s),
            ack_wait: Duration::from_secs(file.ack_wait_s.max(5)),
            brain_keys,
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::signing::SigningKey;

    #[test]
    fn brain_keys_come_from_the_file_or_the_environment_and_are_required() {
        let (old, _) = SigningKey::generate(BRAIN_SIGNER);
        let (new, _) = SigningKey::generate(BRAIN_SIGNER);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commander.toml");
        std::fs::write(
            &path,
            format!(
                "receipt_timeout_s = 5\nbrain_public_keys = [\"{}\", \"{}\"]\n",
                old.public_key_base64(),
                new.public_key_base64()
            ),
        )
        .unwrap();
        let none = |_: &str| None;
        let config = CommanderConfig::load_with(Some(&path), none).unwrap();
        assert_eq!(config.brain_keys.key_count(BRAIN_SIGNER), 2);
        assert_eq!(config.receipt_timeout, Duration::from_secs(5));

        let only_new = new.public_key_base64();
        let env = |k: &str| (k == "ORION_BRAIN_PUBLIC_KEYS").then(|| format!(" {only_new} ,"));
        let config = CommanderConfig::load_with(Some(&path), env).unwrap();
        assert_eq!(config.brain_keys.key_count(BRAIN_SIGNER), 1);

        // Fail closed: no key, or a key that is not one.
        let refused = CommanderConfig::load_with(None, none).unwrap_err();
        assert!(matches!(refused, ConfigError::NoBrainKey), "{refused}");
        assert!(refused.to_string().contains("ORION_BRAIN_PUBLIC_KEYS"));
        let bad = |k: &str| (k == "ORION_BRAIN_PUBLIC_KEYS").then(|| "AAAA".to_string());
        assert!(matches!(
            CommanderConfig::load_with(None, bad),
            Err(ConfigError::BadBrainKey { index: 1, .. })
        ));
        let empty = |k: &str| (k == "ORION_BRAIN_PUBLIC_KEYS").then(|| ",".to_string());
        assert!(matches!(
            CommanderConfig::load_with(Some(&path), empty),
            Err(ConfigError::NoBrainKey)
        ));
    }
}
