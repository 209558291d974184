//! brain's service configuration (not the policy): a TOML file with environment overlays
//! (`brain.<ORION_ENV>.toml`), then environment variables (`contracts::runtime::load`), then
//! command-line flags; and [`Startup`], everything `brain run` checks before connecting.
//!
//! ```toml
//! [nats]
//! url = "nats://localhost:4222"   # ORION_NATS_URL overrides
//! replicas = 1                    # of the streams and bucket brain uses
//!
//! [brain]
//! policy = "policy.toml"          # relative to this file; ORION_BRAIN_POLICY, --policy override
//! signing_key = "brain.key"       # brain's Ed25519 key (relative to this file; required);
//!                                 # ORION_BRAIN_SIGNING_KEY_FILE, --signing-key override
//! expiry_check_s = 5              # how often waiting approval requests are checked for expiry
//! rescan_s = 60                   # how often waiting requests are re-read from brain_state
//! ```
//!
//! The ack wait and deliveries before a dead letter are the durable consumers' settings in
//! `schemas/inventory.toml`, applied by provisioning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::runtime::{ConfigFile, Environment, NatsSection, ServiceConfig};
use contracts::signing::{KeyFileError, SigningKey, BRAIN_SIGNER};
use serde::Deserialize;

use crate::policy::{Policy, PolicyError};
use crate::service::Settings;

/// The file as written (`brain.toml`, and `brain.<env>.toml`); `[nats]` is the section every
/// service shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainConfigFile {
    pub nats: NatsSection,
    pub brain: BrainSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainSection {
    pub policy: Option<PathBuf>,
    /// brain's private key (a file `brain keygen` writes); every action brain publishes is
    /// signed with it, and commander executes only actions that verify.
    pub signing_key: Option<PathBuf>,
    pub expiry_check_s: u64,
    pub rescan_s: u64,
}

impl Default for BrainSection {
    fn default() -> Self {
        Self {
            policy: None,
            signing_key: None,
            expiry_check_s: 5,
            rescan_s: 60,
        }
    }
}

/// What the command line says (each overrides the environment and the file).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    pub policy: Option<&'a Path>,
    pub signing_key: Option<&'a Path>,
}

/// Everything brain runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsSection,
    pub policy: PathBuf,
    /// The key file brain signs its actions with.
    pub signing_key: PathBuf,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error("no policy file: pass --policy FILE, set ORION_BRAIN_POLICY, or set [brain] policy in the config file")]
    NoPolicy,
    #[error("no signing key: brain signs every action it publishes and commander executes nothing else; pass --signing-key FILE, set ORION_BRAIN_SIGNING_KEY_FILE, or set [brain] signing_key in the config file (create one with `brain keygen --out FILE`)")]
    NoSigningKey,
    #[error("{0}")]
    Invalid(String),
}

impl ConfigFile for BrainConfigFile {
    fn nats_mut(&mut self) -> &mut NatsSection {
        &mut self.nats
    }

    /// The file's paths are relative to the file.
    fn file_read(&mut self, dir: Option<&Path>) {
        let dir = dir.unwrap_or(Path::new(""));
        for path in [&mut self.brain.policy, &mut self.brain.signing_key]
            .into_iter()
            .flatten()
        {
            *path = dir.join(&*path);
        }
    }

    fn apply_environment(
        &mut self,
        env: &dyn Environment,
    ) -> Result<(), contracts::runtime::ConfigError> {
        if let Some(policy) = env.var("ORION_BRAIN_POLICY") {
            self.brain.policy = Some(policy.into());
        }
        if let Some(key) = env.var("ORION_BRAIN_SIGNING_KEY_FILE") {
            self.brain.signing_key = Some(key.into());
        }
        Ok(())
    }
}

impl Config {
    /// Loads `path` (+ the overlay of `ORION_ENV`), applies `ORION_NATS_*`,
    /// `ORION_BRAIN_POLICY` and `ORION_BRAIN_SIGNING_KEY_FILE`, then the flags.
    pub fn load(
        path: Option<&Path>,
        flags: Flags<'_>,
        env: &dyn Environment,
    ) -> Result<Self, ConfigError> {
        let file: BrainConfigFile = contracts::runtime::load(path, env)?;
        let b = file.brain;
        let policy = flags
            .policy
            .map(Path::to_path_buf)
            .or(b.policy)
            .ok_or(ConfigError::NoPolicy)?;
        let signing_key = flags
            .signing_key
            .map(Path::to_path_buf)
            .or(b.signing_key)
            .ok_or(ConfigError::NoSigningKey)?;
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
            nats: file.nats,
            policy,
            signing_key,
            settings: Settings {
                expiry_check: Duration::from_secs(b.expiry_check_s),
                rescan: Duration::from_secs(b.rescan_s),
                ..Settings::default()
            },
        })
    }
}

/// What `brain simulate` takes from the configuration: only the `[nats]` section (the file,
/// its overlay and the environment, as `brain run` reads them). It is given its policy on the
/// command line and signs nothing, so neither is required here.
pub fn load_nats(path: Option<&Path>, env: &dyn Environment) -> Result<NatsSection, ConfigError> {
    let file: BrainConfigFile = contracts::runtime::load(path, env)?;
    Ok(file.nats)
}

/// Everything `brain run` starts with, checked before anything connects: the configuration,
/// the policy it names and brain's signing key.
pub struct Startup {
    pub config: Config,
    pub policy: Policy,
    pub signer: SigningKey,
}

/// Why `brain run` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Every problem of the policy file, with its line.
    #[error("policy refused")]
    Policy(#[from] PolicyError),
    /// Without its key brain could not publish an action commander runs.
    #[error("signing key refused")]
    SigningKey(#[from] KeyFileError),
}

impl Startup {
    /// [`Config::load`], then the policy, then the signing key (a key readable by others is
    /// used, with a warning in the log).
    pub fn load(
        path: Option<&Path>,
        flags: Flags<'_>,
        env: &dyn Environment,
    ) -> Result<Self, StartupError> {
        let config = Config::load(path, flags, env)?;
        let policy = Policy::load(&config.policy)?;
        let loaded = SigningKey::load(BRAIN_SIGNER, &config.signing_key)?;
        if let Some(warning) = &loaded.warning {
            tracing::warn!(%warning, "brain's signing key is readable by others");
        }
        Ok(Self {
            config,
            policy,
            signer: loaded.key,
        })
    }
}

impl ServiceConfig for Startup {
    fn nats(&self) -> &NatsSection {
        &self.config.nats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_environment_beats_file_and_file_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brain.toml");
        std::fs::write(&path, "[nats]\nurl = \"nats://file:4222\"\n[brain]\npolicy = \"p.toml\"\nsigning_key = \"brain.key\"\nexpiry_check_s = 2\n").unwrap();
        let none = &|_: &str| None::<String>;
        let no_flags = Flags::default();
        let config = Config::load(Some(&path), no_flags, none).unwrap();
        assert_eq!(config.policy, dir.path().join("p.toml"));
        assert_eq!(config.signing_key, dir.path().join("brain.key"));
        assert_eq!(config.nats.url, "nats://file:4222");
        assert_eq!(config.settings.expiry_check, Duration::from_secs(2));
        let env = |k: &str| match k {
            "ORION_BRAIN_POLICY" => Some("/etc/env.toml".to_string()),
            "ORION_BRAIN_SIGNING_KEY_FILE" => Some("/etc/brain.key".to_string()),
            "ORION_NATS_URL" => Some("nats://env:4222".to_string()),
            _ => None,
        };
        let config = Config::load(Some(&path), no_flags, &env).unwrap();
        assert_eq!(config.policy, PathBuf::from("/etc/env.toml"));
        assert_eq!(config.signing_key, PathBuf::from("/etc/brain.key"));
        assert_eq!(config.nats.url, "nats://env:4222");
        let flags = Flags {
            policy: Some(Path::new("flag.toml")),
            signing_key: Some(Path::new("flag.key")),
        };
        let config = Config::load(Some(&path), flags, &env).unwrap();
        assert_eq!(config.policy, PathBuf::from("flag.toml"));
        assert_eq!(config.signing_key, PathBuf::from("flag.key"));
        assert!(matches!(
            Config::load(None, no_flags, none),
            Err(ConfigError::NoPolicy)
        ));
        // No key anywhere: refused (fail closed), with how to make one.
        let policy_only = Flags {
            policy: Some(Path::new("p.toml")),
            signing_key: None,
        };
        let refused = Config::load(None, policy_only, none).unwrap_err();
        assert!(matches!(refused, ConfigError::NoSigningKey));
        assert!(refused.to_string().contains("brain keygen"), "{refused}");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("brain.toml");
        let key_env = |k: &str| (k == "ORION_BRAIN_SIGNING_KEY_FILE").then(|| "k".to_string());
        let config = Config::load(Some(&shipped), no_flags, &key_env).unwrap();
        assert_eq!(
            config.policy,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.toml")
        );
        assert_eq!(config.settings.expiry_check, Duration::from_secs(5));
        std::fs::write(&path, "[brain]\nunknown = 1\n").unwrap();
        assert!(Config::load(Some(&path), no_flags, none).is_err());
    }
}
