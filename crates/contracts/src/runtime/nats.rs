//! The `[nats]` section every service's config file shares, and the bus settings it becomes.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Environment};
use crate::bus::{BusConfig, DEFAULT_NATS_URL};
use crate::Service;

/// `[nats]`: where and as whom a service connects.
///
/// ```toml
/// [nats]
/// url = "nats://localhost:4222"   # comma-separated for a cluster; ORION_NATS_URL (or NATS_URL) overrides
/// replicas = 1                    # of the streams and buckets the service uses: 1 to 5
/// user = "guardian"               # optional; default the service's identity; ORION_NATS_USER overrides
/// password_file = "guardian.pw"   # optional; see NatsSection::bus_config for the order
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    /// NATS URL(s), comma-separated.
    pub url: String,
    /// Replicas of the streams and buckets the service uses (1, or 3 in a cluster).
    pub replicas: usize,
    /// The NATS user; the service's identity name unless set.
    pub user: Option<String>,
    /// A file holding the NATS password (never the password itself: secrets stay out of
    /// config files).
    pub password_file: Option<PathBuf>,
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.to_string(),
            replicas: 1,
            user: None,
            password_file: None,
        }
    }
}

impl NatsSection {
    /// The defaults with the environment applied: for clients that have no config file.
    pub fn from_environment(env: &dyn Environment) -> Self {
        let mut section = Self::default();
        section.apply_environment(env);
        section
    }

    /// `ORION_NATS_URL` (or the older `NATS_URL`) replaces the URL, `ORION_NATS_USER` the user.
    pub fn apply_environment(&mut self, env: &dyn Environment) {
        if let Some(url) = env.var("ORION_NATS_URL").or_else(|| env.var("NATS_URL")) {
            self.url = url;
        }
        if let Some(user) = env.var("ORION_NATS_USER") {
            self.user = Some(user);
        }
    }

    /// Checks the section: a URL, and 1 to 5 replicas.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(ConfigError::Invalid("`nats.url` is empty".into()));
        }
        if !matches!(self.replicas, 1..=5) {
            return Err(ConfigError::Invalid(format!(
                "`nats.replicas`: {} is out of range: 1 to 5",
                self.replicas
            )));
        }
        Ok(())
    }

    /// The bus settings of identity `S`. The password is the first of: `ORION_NATS_PASSWORD`,
    /// the file named by `ORION_NATS_PASSWORD_FILE`, `ORION_NATS_PASSWORD_<SERVICE>` (what
    /// `cargo xtask up` writes), the file `password_file`; without one the connection has no
    /// credentials.
    pub fn bus_config<S: Service>(&self, env: &dyn Environment) -> Result<BusConfig, ConfigError> {
        let mut config = BusConfig::new(self.url.clone());
        config.replicas = self.replicas;
        let read = |name: &str, path: PathBuf| {
            std::fs::read_to_string(&path)
                .map(|text| text.trim().to_string())
                .map_err(|e| ConfigError::BadVariable {
                    name: name.to_string(),
                    value: path.display().to_string(),
                    why: e.to_string(),
                })
        };
        let password = if let Some(password) = env.var("ORION_NATS_PASSWORD") {
            Some(password)
        } else if let Some(path) = env.var("ORION_NATS_PASSWORD_FILE") {
            Some(read("ORION_NATS_PASSWORD_FILE", path.into())?)
        } else if let Some(password) = env.var(&crate::nats_password_var(S::NAME)) {
            Some(password)
        } else if let Some(path) = &self.password_file {
            Some(read("nats.password_file", path.clone())?)
        } else {
            None
        };
        if let Some(password) = password {
            let user = self.user.clone().unwrap_or_else(|| S::NAME.to_string());
            config = config.with_credentials(user, password);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Guardian;

    #[test]
    fn the_environment_replaces_url_and_user_and_the_password_comes_in_a_fixed_order() {
        let dir = tempfile::tempdir().unwrap();
        let in_file = dir.path().join("file.pw");
        std::fs::write(&in_file, "from-file\n").unwrap();
        let in_env = dir.path().join("env.pw");
        std::fs::write(&in_env, "from-env-file\n").unwrap();
        let mut nats = NatsSection {
            password_file: Some(in_file),
            ..NatsSection::default()
        };
        let none = |_: &str| None::<String>;
        let config = nats.bus_config::<Guardian>(&none).unwrap();
        assert_eq!(
            (config.user.as_deref(), config.password.as_deref()),
            (Some("guardian"), Some("from-file"))
        );
        let env_file = in_env.display().to_string();
        let vars = |name: &str| match name {
            "ORION_NATS_URL" => Some("nats://a:1,nats://b:2".to_string()),
            "ORION_NATS_USER" => Some("other".to_string()),
            "ORION_NATS_PASSWORD_GUARDIAN" => Some("per-service".to_string()),
            "ORION_NATS_PASSWORD_FILE" => Some(env_file.clone()),
            _ => None,
        };
        nats.apply_environment(&vars);
        assert_eq!(nats.url, "nats://a:1,nats://b:2");
        let config = nats.bus_config::<Guardian>(&vars).unwrap();
        assert_eq!(
            (config.user.as_deref(), config.password.as_deref()),
            (Some("other"), Some("from-env-file"))
        );
        let per_service = |name: &str| {
            (name == "ORION_NATS_PASSWORD_GUARDIAN").then(|| "per-service".to_string())
        };
        let config = nats.bus_config::<Guardian>(&per_service).unwrap();
        assert_eq!(config.password.as_deref(), Some("per-service"));
        let missing = |name: &str| {
            (name == "ORION_NATS_PASSWORD_FILE").then(|| "/nonexistent/pw".to_string())
        };
        let refused = nats.bus_config::<Guardian>(&missing).unwrap_err();
        assert!(refused.to_string().contains("ORION_NATS_PASSWORD_FILE"));

        nats.replicas = 0;
        assert!(nats
            .validate()
            .unwrap_err()
            .to_string()
            .contains("nats.replicas"));
    }
}
