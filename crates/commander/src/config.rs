//! commander's configuration: a TOML file with environment overlays, then environment variables
//! (`contracts::runtime::load`), then the ops signing keys from the environment.

use std::path::Path;
use std::time::Duration;

use contracts::runtime::{ConfigFile, Environment, NatsSection, ServiceConfig};
use contracts::signing::{Verifier, BRAIN_SIGNER};
use ops_client::SigningKeys;
use serde::Deserialize;

/// The file (`commander.toml`, and `commander.<ORION_ENV>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommanderConfigFile {
    /// `[nats]`, the section every service shares.
    pub nats: NatsSection,
    /// The older spelling of `[nats] url` (NATS URL(s), comma-separated); wins over it when set.
    pub nats_url: Option<String>,
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

impl Default for CommanderConfigFile {
    fn default() -> Self {
        Self {
            nats: NatsSection::default(),
            nats_url: None,
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
    pub file: CommanderConfigFile,
    /// The HMAC keys ops commands are signed with (`OPS_SECRET`, `OPS_SECRET_FILE`, …).
    pub keys: SigningKeys,
    pub receipt_timeout: Duration,
    pub reconcile_timeout: Duration,
    pub ack_wait: Duration,
    /// brain's trusted keys.
    pub brain_keys: Verifier,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, the overlay or the environment (also the checks of the values).
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error("no trusted brain key: commander executes only actions brain signed; set brain_public_keys in the config file or ORION_BRAIN_PUBLIC_KEYS (comma-separated) to brain's public key (`brain keygen` prints it, `brain public-key --signing-key FILE` prints it again)")]
    NoBrainKey,
    #[error("brain public key {index} is not usable: {reason}")]
    BadBrainKey { index: usize, reason: String },
    /// The ops signing keys (`OPS_SECRET`, …), checked last.
    #[error(transparent)]
    Keys(#[from] ops_client::KeysError),
}

impl ConfigFile for CommanderConfigFile {
    fn nats_mut(&mut self) -> &mut NatsSection {
        &mut self.nats
    }

    fn file_read(&mut self, _dir: Option<&Path>) {
        if let Some(url) = self.nats_url.take() {
            self.nats.url = url;
        }
    }

    fn apply_environment(
        &mut self,
        env: &dyn Environment,
    ) -> Result<(), contracts::runtime::ConfigError> {
        if let Some(keys) = env.list("ORION_BRAIN_PUBLIC_KEYS") {
            self.brain_public_keys = keys;
        }
        Ok(())
    }
}

impl ServiceConfig for CommanderConfig {
    fn nats(&self) -> &NatsSection {
        &self.file.nats
    }
}

impl CommanderConfig {
    /// Loads `path` (+ the `ORION_ENV` overlay; `ORION_NATS_URL` / `NATS_URL` override the URL,
    /// `ORION_BRAIN_PUBLIC_KEYS` the brain keys), checks it, and reads the ops signing keys.
    pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Self, ConfigError> {
        let file: CommanderConfigFile = contracts::runtime::load(path, env)?;
        if file.receipt_timeout_s == 0 || file.max_in_flight == 0 {
            return Err(contracts::runtime::ConfigError::Invalid(
                "receipt_timeout_s and max_in_flight must be above 0".into(),
            )
            .into());
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
        let keys = ops_client::keys_from_env(env)?;
        Ok(Self {
            keys,
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

    /// The SPEC's signing test vector key — a TEST KEY.
    const SECRET: &str = "test-ops-secret-32chars!!!!!!!!";

    /// `OPS_SECRET` and the given variables.
    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .chain([&("OPS_SECRET", SECRET)])
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

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
        let config = CommanderConfig::load(Some(&path), &vars(&[])).unwrap();
        assert_eq!(config.brain_keys.key_count(BRAIN_SIGNER), 2);
        assert_eq!(config.receipt_timeout, Duration::from_secs(5));

        let only_new = format!(" {} ,", new.public_key_base64());
        let env = vars(&[("ORION_BRAIN_PUBLIC_KEYS", &only_new)]);
        let config = CommanderConfig::load(Some(&path), &env).unwrap();
        assert_eq!(config.brain_keys.key_count(BRAIN_SIGNER), 1);

        // Fail closed: no key, or a key that is not one.
        let refused = CommanderConfig::load(None, &vars(&[])).unwrap_err();
        assert!(matches!(refused, ConfigError::NoBrainKey), "{refused}");
        assert!(refused.to_string().contains("ORION_BRAIN_PUBLIC_KEYS"));
        let bad = vars(&[("ORION_BRAIN_PUBLIC_KEYS", "AAAA")]);
        assert!(matches!(
            CommanderConfig::load(None, &bad),
            Err(ConfigError::BadBrainKey { index: 1, .. })
        ));
        let empty = vars(&[("ORION_BRAIN_PUBLIC_KEYS", ",")]);
        assert!(matches!(
            CommanderConfig::load(Some(&path), &empty),
            Err(ConfigError::NoBrainKey)
        ));
        // And without the ops signing key.
        let no_secret = |k: &str| (k == "ORION_BRAIN_PUBLIC_KEYS").then(|| only_new.clone());
        let refused = CommanderConfig::load(Some(&path), &no_secret).unwrap_err();
        assert!(matches!(refused, ConfigError::Keys(_)), "{refused}");
    }

    #[test]
    fn the_nats_url_comes_from_nats_url_or_the_nats_section_then_the_environment() {
        let (key, _) = SigningKey::generate(BRAIN_SIGNER);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commander.toml");
        let keys = format!("brain_public_keys = [\"{}\"]\n", key.public_key_base64());
        std::fs::write(&path, format!("nats_url = \"nats://old:4222\"\n{keys}")).unwrap();
        let config = CommanderConfig::load(Some(&path), &vars(&[])).unwrap();
        assert_eq!(config.nats().url, "nats://old:4222");
        std::fs::write(
            &path,
            format!("{keys}[nats]\nurl = \"nats://new:4222\"\nreplicas = 3\n"),
        )
        .unwrap();
        let config = CommanderConfig::load(Some(&path), &vars(&[])).unwrap();
        assert_eq!(
            (config.nats().url.as_str(), config.nats().replicas),
            ("nats://new:4222", 3)
        );
        let env = vars(&[("ORION_NATS_URL", "nats://env:4222")]);
        let config = CommanderConfig::load(Some(&path), &env).unwrap();
        assert_eq!(config.nats().url, "nats://env:4222");
    }
}
