//! guardian's configuration: a TOML file (`--config`), the overlay `<name>.<ORION_ENV>.toml`
//! next to it, then environment variables. Everything is checked before guardian connects
//! anywhere; every problem in a rule names the rule and the field.

use std::path::Path;
use std::time::Duration;

use contracts::runtime::{ConfigFile, NatsSection, ServiceConfig};
use serde::Deserialize;

use crate::engine::Limits;
use crate::rules::{Rule, RuleError, RuleSpec};

/// The file as written (`guardian.toml`, and `guardian.<env>.toml`); `[nats]` is the section
/// every service shares (`contracts::runtime::NatsSection`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardianConfigFile {
    pub nats: NatsSection,
    pub consumer: ConsumerSection,
    pub limits: LimitsSection,
    pub lease: LeaseSection,
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSection {
    /// Delay before a message that failed on a transient error is redelivered (multiplied
    /// by the delivery attempt, at most 30 s).
    pub retry_delay_ms: u64,
    /// Messages pulled at a time.
    pub batch: usize,
    /// How often quiet incidents and stale state are checked, in milliseconds.
    pub tick_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSection {
    /// Seconds a standby waits for the active guardian to renew its lease before taking over.
    pub ttl_s: u64,
}

impl Default for LeaseSection {
    fn default() -> Self {
        Self { ttl_s: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_groups: usize,
    pub max_seen_event_ids: usize,
    pub seen_ttl_s: u64,
    pub max_event_ids_per_incident: usize,
}

impl Default for ConsumerSection {
    fn default() -> Self {
        Self {
            retry_delay_ms: 1000,
            batch: 50,
            tick_ms: 1000,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_groups: limits.max_groups,
            max_seen_event_ids: limits.max_seen_event_ids,
            seen_ttl_s: limits.seen_ttl.whole_seconds() as u64,
            max_event_ids_per_incident: limits.max_event_ids_per_incident,
        }
    }
}

/// The most event ids one incident may list: an incident must fit the 64 KiB message limit of
/// the ORION_INCIDENTS stream (an id takes 39 bytes in JSON).
pub const MAX_LISTED_EVENT_IDS: usize = 1_200;

/// Settings of the consumer loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    pub retry_delay: Duration,
    pub batch: usize,
    pub tick: Duration,
}

/// Everything guardian runs with, validated.
#[derive(Debug, Clone)]
pub struct GuardianConfig {
    pub nats: NatsSection,
    pub consumer: ConsumerSettings,
    pub limits: Limits,
    /// How long a standby waits for the active guardian's lease renewal (see `crate::lease`).
    pub lease_ttl: Duration,
    pub rules: Vec<Rule>,
}

/// A configuration problem, phrased as what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] contracts::runtime::ConfigError),
    #[error("no configuration file: pass --config FILE (or set GUARDIAN_CONFIG); guardian needs its correlation rules")]
    NoFile,
    #[error("no correlation rules: add at least one [[rules]] table (see guardian.toml)")]
    NoRules,
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("two rules are named {0:?}: rule names must be unique (they become the incidents' `rule` tag)")]
    DuplicateRule(String),
    #[error("`{field}`: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

pub use contracts::runtime::{Environment, ProcessEnvironment};

impl GuardianConfig {
    /// Loads `path`, its overlay for `ORION_ENV` and the environment (`contracts::runtime::load`:
    /// guardian has no variables of its own), and checks everything.
    pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Self, ConfigError> {
        let path = path.ok_or(ConfigError::NoFile)?;
        let file: GuardianConfigFile = contracts::runtime::load(Some(path), env)?;
        file.validate()
    }
}

impl ConfigFile for GuardianConfigFile {
    fn nats_mut(&mut self) -> &mut NatsSection {
        &mut self.nats
    }
}

impl ServiceConfig for GuardianConfig {
    fn nats(&self) -> &NatsSection {
        &self.nats
    }
}

impl GuardianConfigFile {
    /// Checks every section and rule (`[nats]` is checked by `contracts::runtime::load`).
    pub fn validate(self) -> Result<GuardianConfig, ConfigError> {
        let invalid =
            |field: &'static str, problem: String| ConfigError::Invalid { field, problem };
        let c = &self.consumer;
        if c.batch == 0 {
            return Err(invalid("consumer.batch", "must be at least 1".into()));
        }
        if c.tick_ms < 10 {
            return Err(invalid("consumer.tick_ms", "must be at least 10".into()));
        }
        let l = &self.limits;
        if l.max_groups == 0 {
            return Err(invalid("limits.max_groups", "must be at least 1".into()));
        }
        if l.max_seen_event_ids == 0 {
            return Err(invalid(
                "limits.max_seen_event_ids",
                "must be at least 1".into(),
            ));
        }
        if l.seen_ttl_s == 0 {
            return Err(invalid("limits.seen_ttl_s", "must be at least 1".into()));
        }
        if !(1..=MAX_LISTED_EVENT_IDS).contains(&l.max_event_ids_per_incident) {
            return Err(invalid(
                "limits.max_event_ids_per_incident",
                format!(
                    "{} is out of range: 1 to {MAX_LISTED_EVENT_IDS} (an incident must fit in 64 KiB)",
                    l.max_event_ids_per_incident
                ),
            ));
        }
        if self.lease.ttl_s < 2 {
            return Err(invalid(
                "lease.ttl_s",
                format!("{} is too short: at least 2", self.lease.ttl_s),
            ));
        }
        if self.rules.is_empty() {
            return Err(ConfigError::NoRules);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (index, spec) in self.rules.iter().enumerate() {
            let rule = spec.validate(index + 1)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(ConfigError::DuplicateRule(rule.name));
            }
            rules.push(rule);
        }
        Ok(GuardianConfig {
            nats: self.nats,
            consumer: ConsumerSettings {
                retry_delay: Duration::from_millis(c.retry_delay_ms),
                batch: c.batch,
                tick: Duration::from_millis(c.tick_ms),
            },
            limits: Limits {
                max_groups: l.max_groups,
                max_seen_event_ids: l.max_seen_event_ids,
                seen_ttl: time::Duration::seconds(i64::try_from(l.seen_ttl_s).unwrap_or(i64::MAX)),
                max_event_ids_per_incident: l.max_event_ids_per_incident,
            },
            lease_ttl: Duration::from_secs(self.lease.ttl_s),
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    struct Vars(HashMap<&'static str, String>);

    impl Environment for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn vars(pairs: &[(&'static str, &str)]) -> Vars {
        Vars(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    fn example() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guardian.toml")
    }

    #[test]
    fn the_shipped_example_is_valid_and_has_the_documented_rules() {
        let config = GuardianConfig::load(Some(&example()), &vars(&[])).unwrap();
        let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "service-outage",
                "edge-device-failure",
                "metric-anomaly",
                "repeated-api-failures"
            ]
        );
        let metric = &config.rules[2];
        assert_eq!((metric.threshold, metric.window.whole_seconds()), (3, 60));
        let api = &config.rules[3];
        assert_eq!(api.threshold, 3);
        assert_eq!(config.nats.url, "nats://localhost:4222");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let config = GuardianConfig::load(
            Some(&example()),
            &vars(&[("ORION_NATS_URL", "nats://elsewhere:4222")]),
        )
        .unwrap();
        assert_eq!(config.nats.url, "nats://elsewhere:4222");
    }

    #[test]
    fn overlays_apply_per_environment() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("guardian.toml");
        std::fs::copy(example(), &base).unwrap();
        std::fs::write(
            dir.path().join("guardian.prod.toml"),
            "[nats]\nreplicas = 3\n[limits]\nmax_groups = 50\n",
        )
        .unwrap();
        let prod = GuardianConfig::load(Some(&base), &vars(&[("ORION_ENV", "prod")])).unwrap();
        assert_eq!((prod.nats.replicas, prod.limits.max_groups), (3, 50));
        let dev = GuardianConfig::load(Some(&base), &vars(&[("ORION_ENV", "dev")])).unwrap();
        assert_eq!(dev.nats.replicas, 1);
        let bad = GuardianConfig::load(Some(&base), &vars(&[("ORION_ENV", "staging")]))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("staging"), "{bad}");
    }

    fn refused(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guardian.toml");
        std::fs::write(&path, text).unwrap();
        GuardianConfig::load(Some(&path), &vars(&[]))
            .unwrap_err()
            .to_string()
    }

    const RULE: &str = "[[rules]]\nname = \"a\"\nwindow_s = 60\nthreshold = 1\nincident_type = \"service_outage\"\n[rules.match]\nevent_type = [\"service_down\"]\n";

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        assert!(refused("").contains("no correlation rules"));
        let duplicate = refused(&format!("{RULE}{RULE}"));
        assert!(duplicate.contains("\"a\""), "{duplicate}");
        let unknown = refused(&format!("{RULE}colour = \"red\"\n"));
        assert!(unknown.contains("colour"), "{unknown}");
        let limits = refused(&format!(
            "[limits]\nmax_event_ids_per_incident = 5000\n{RULE}"
        ));
        assert!(
            limits.contains("limits.max_event_ids_per_incident"),
            "{limits}"
        );
        let lease = refused(&format!("[lease]\nttl_s = 1\n{RULE}"));
        assert!(lease.contains("lease.ttl_s"), "{lease}");
        let window = refused(&RULE.replace("window_s = 60", "window_s = 0"));
        assert!(
            window.contains("rule \"a\"") && window.contains("window_s"),
            "{window}"
        );
        assert!(GuardianConfig::load(None, &vars(&[]))
            .unwrap_err()
            .to_string()
            .contains("--config"));
    }
}
