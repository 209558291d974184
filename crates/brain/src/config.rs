//! brain's service configuration (not the policy): a TOML file with environment overlays
//! (`brain.<ORION_ENV>.toml`), then environment variables, then command-line flags.
//!
//! ```toml
//! [nats]
//! url = "nats://localhost:4222"   # ORION_NATS_URL overrides
//! replicas = 1                    # of the streams and bucket brain uses
//!
//! [brain]
//! policy = "policy.toml"          # relative to this file; ORION_BRAIN_POLICY, --policy override
//! expiry_check_s = 5              # how often waiting approval requests are checked for expiry
//! rescan_s = 60                   # how often waiting requests are re-read from brain_state
//! ```
//!
//! The ack wait and deliveries before a dead letter are the durable consumers' settings in
//! `schemas/inventory.toml`, applied by provisioning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::service::Settings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub nats: NatsSection,
    pub brain: BrainSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    pub url: String,
    pub replicas: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainSection {
    pub policy: Option<PathBuf>,
    pub expiry_check_s: u64,
    pub rescan_s: u64,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            nats: NatsSection {
                url: contracts::bus::DEFAULT_NATS_URL.to_string(),
                replicas: 1,
            },
            brain: BrainSection::default(),
        }
    }
}

impl Default for NatsSection {
    fn default() -> Self {
        FileConfig::default().nats
    }
}

impl Default for BrainSection {
    fn default() -> Self {
        Self {
            policy: None,
            expiry_check_s: 5,
            rescan_s: 60,
        }
    }
}

/// Everything brain runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub nats_replicas: usize,
    pub policy: PathBuf,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error("no policy file: pass --policy FILE, set ORION_BRAIN_POLICY, or set [brain] policy in the config file")]
    NoPolicy,
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` (+ the overlay of `ORION_ENV`), applies `ORION_NATS_URL` and
    /// `ORION_BRAIN_POLICY`, then `policy_flag`.
    pub fn load(
        path: Option<&Path>,
        policy_flag: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let environment = var("ORION_ENV").unwrap_or_else(|| "base".into());
        let file: FileConfig = contracts::runtime::load_layered(path, &environment)?;
        let base = path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let policy = match (policy_flag, var("ORION_BRAIN_POLICY"), &file.brain.policy) {
            (Some(flag), _, _) => flag.to_path_buf(),
            (None, Some(env), _) => PathBuf::from(env),
            (None, None, Some(file_policy)) if file_policy.is_relative() => base.join(file_policy),
            (None, None, Some(file_policy)) => file_policy.clone(),
            (None, None, None) => return Err(ConfigError::NoPolicy),
        };
        let b = &file.brain;
        for (name, value) in [
            ("expiry_check_s", b.expiry_check_s),
            ("rescan_s", b.rescan_s),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "[brain] {name} must be above 0"
                )));
            }
        }
        Ok(Self {
            nats_url: var("ORION_NATS_URL").unwrap_or(file.nats.url),
            nats_replicas: file.nats.replicas.max(1),
            policy,
            settings: Settings {
                expiry_check: Duration::from_secs(b.expiry_check_s),
                rescan: Duration::from_secs(b.rescan_s),
                ..Settings::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_environment_beats_file_and_file_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brain.toml");
        std::fs::write(&path, "[nats]\nurl = \"nats://file:4222\"\n[brain]\npolicy = \"p.toml\"\nexpiry_check_s = 2\n").unwrap();
        let none = |_: &str| None;
        let config = Config::load(Some(&path), None, none).unwrap();
        assert_eq!(config.policy, dir.path().join("p.toml"));
        assert_eq!(config.nats_url, "nats://file:4222");
        assert_eq!(config.settings.expiry_check, Duration::from_secs(2));
        let env = |k: &str| match k {
            "ORION_BRAIN_POLICY" => Some("/etc/env.toml".to_string()),
            "ORION_NATS_URL" => Some("nats://env:4222".to_string()),
            _ => None,
        };
        let config = Config::load(Some(&path), None, env).unwrap();
        assert_eq!(config.policy, PathBuf::from("/etc/env.toml"));
        assert_eq!(config.nats_url, "nats://env:4222");
        let config = Config::load(Some(&path), Some(Path::new("flag.toml")), env).unwrap();
        assert_eq!(config.policy, PathBuf::from("flag.toml"));
        assert!(matches!(
            Config::load(None, None, none),
            Err(ConfigError::NoPolicy)
        ));
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("brain.toml");
        let config = Config::load(Some(&shipped), None, none).unwrap();
        assert_eq!(
            config.policy,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.toml")
        );
        assert_eq!(config.settings.expiry_check, Duration::from_secs(5));
        std::fs::write(&path, "[brain]\nunknown = 1\n").unwrap();
        assert!(Config::load(Some(&path), None, none).is_err());
    }
}
