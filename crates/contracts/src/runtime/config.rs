//! Configuration, the same way for every service: a TOML file, then its overlay for
//! `ORION_ENV` (`<stem>.<env>.toml` next to it), then environment variables — each layer
//! overriding the one before key by key — then the service's own command-line flags. [`load`]
//! is the one entry point; a service's file type implements [`ConfigFile`].

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::NatsSection;

/// The deployment environments a config file may have an overlay for.
pub const ENVIRONMENTS: &[&str] = &["base", "dev", "ci", "prod"];

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("ORION_ENV={0:?} is not one of base, dev, ci, prod")]
    UnknownEnvironment(String),
    #[error("{name}={value:?} is not valid: {why}")]
    BadVariable {
        name: String,
        value: String,
        why: String,
    },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A service's config file as written: it holds the shared `[nats]` section, and may take its
/// own environment variables. [`load`] reads it the same way for every service.
pub trait ConfigFile: DeserializeOwned {
    /// The `[nats]` section.
    fn nats_mut(&mut self) -> &mut NatsSection;

    /// Called once the file and its overlay are read, before the environment applies, with the
    /// directory of the file (`""` for a relative file name, none without a file): make paths
    /// in the file relative to it, fold old spellings of keys into the current ones.
    fn file_read(&mut self, _dir: Option<&Path>) {}

    /// Applies the service's own environment variables (the `ORION_NATS_*` ones are applied
    /// by [`load`]).
    fn apply_environment(&mut self, _env: &dyn Environment) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Loads a service's configuration: `path` (if any), its overlay for `ORION_ENV` (from `env`;
/// default `base`), [`ConfigFile::file_read`], the `ORION_NATS_*` variables
/// ([`NatsSection::apply_environment`]), the service's own variables
/// ([`ConfigFile::apply_environment`]); then checks the `[nats]` section. Command-line flags
/// are the caller's to apply on top.
pub fn load<T: ConfigFile>(path: Option<&Path>, env: &dyn Environment) -> Result<T, ConfigError> {
    let environment = env.var("ORION_ENV").unwrap_or_else(|| "base".into());
    let mut file: T = load_layered(path, &environment)?;
    file.file_read(path.map(|p| p.parent().unwrap_or(Path::new(""))));
    file.nats_mut().apply_environment(env);
    file.apply_environment(env)?;
    file.nats_mut().validate()?;
    Ok(file)
}

/// Reads `path` (if given), then the overlay `<stem>.<env>.toml` next to it for `env`
/// (`ORION_ENV`, default `base`: no overlay), merging tables key by key, and deserializes the
/// result. Missing keys take the type's defaults (`#[serde(default)]`); unknown keys are errors
/// when the type denies them. Environment variables are applied by the caller on top.
pub fn load_layered<T: DeserializeOwned>(path: Option<&Path>, env: &str) -> Result<T, ConfigError> {
    if !ENVIRONMENTS.contains(&env) {
        return Err(ConfigError::UnknownEnvironment(env.to_string()));
    }
    let mut merged = toml::Table::new();
    if let Some(path) = path {
        merge(&mut merged, read_table(path)?);
        if env != "base" {
            let overlay = overlay_path(path, env);
            if overlay.exists() {
                merge(&mut merged, read_table(&overlay)?);
            }
        }
    }
    let shown = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<defaults>"));
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: shown,
            message: e.to_string(),
        })
}

/// `ops-worker.toml` + `prod` → `ops-worker.prod.toml`.
pub fn overlay_path(path: &Path, env: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}.{env}.toml"))
}

/// The environment variables a service reads, behind a trait so that loading configuration is a
/// pure function of them (tests pass a map).
pub trait Environment {
    /// The variable's value; empty counts as unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// A function of the variable's name (tests: `|name: &str| ...`).
impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.is_empty())
    }
}

impl dyn Environment + '_ {
    /// The variable parsed as `T`; a value that does not parse is refused naming the variable.
    pub fn parsed<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.var(name)
            .map(|value| {
                value.parse().map_err(|e: T::Err| ConfigError::BadVariable {
                    name: name.to_string(),
                    value: value.clone(),
                    why: e.to_string(),
                })
            })
            .transpose()
    }

    /// The variable as a comma-separated list (items trimmed, empty ones dropped).
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.var(name).map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect()
        })
    }
}

/// The process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The environment named by `ORION_ENV` (default `base`).
pub fn environment() -> String {
    std::env::var("ORION_ENV").unwrap_or_else(|_| "base".to_string())
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        a: u32,
        #[serde(default)]
        nested: Nested,
    }

    #[derive(serde::Deserialize, Debug, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        #[serde(default)]
        x: String,
        #[serde(default)]
        y: String,
    }

    /// A service's file: the shared `[nats]` section, its own section, its own variables.
    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct ServiceFile {
        nats: NatsSection,
        svc: SvcSection,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct SvcSection {
        limit: u32,
        name: String,
        key_file: Option<std::path::PathBuf>,
    }

    impl ConfigFile for ServiceFile {
        fn nats_mut(&mut self) -> &mut NatsSection {
            &mut self.nats
        }
        fn file_read(&mut self, dir: Option<&Path>) {
            if let (Some(dir), Some(file)) = (dir, &self.svc.key_file) {
                self.svc.key_file = Some(dir.join(file));
            }
        }
        fn apply_environment(&mut self, env: &dyn Environment) -> Result<(), ConfigError> {
            if let Some(limit) = env.parsed("SVC_LIMIT")? {
                self.svc.limit = limit;
            }
            if let Some(key) = env.var("SVC_KEY_FILE") {
                self.svc.key_file = Some(key.into());
            }
            Ok(())
        }
    }

    #[test]
    fn file_then_overlay_then_environment_each_override_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("svc.toml");
        std::fs::write(
            &base,
            "[nats]\nurl = \"nats://file:4222\"\nreplicas = 1\n[svc]\nlimit = 1\nname = \"file\"\nkey_file = \"svc.key\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("svc.prod.toml"),
            "[nats]\nreplicas = 3\n[svc]\nlimit = 2\n",
        )
        .unwrap();
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        // The file alone; its relative paths are relative to it.
        let file: ServiceFile = load(Some(&base), &vars(&[])).unwrap();
        assert_eq!((file.svc.limit, file.nats.replicas), (1, 1));
        assert_eq!(file.svc.key_file, Some(dir.path().join("svc.key")));
        // The overlay of ORION_ENV over the file, key by key.
        let prod: ServiceFile = load(Some(&base), &vars(&[("ORION_ENV", "prod")])).unwrap();
        assert_eq!((prod.svc.limit, prod.nats.replicas), (2, 3));
        assert_eq!(
            (prod.svc.name.as_str(), prod.nats.url.as_str()),
            ("file", "nats://file:4222")
        );
        // The environment over both; a path from it is taken as it is.
        let env = vars(&[
            ("ORION_ENV", "prod"),
            ("SVC_LIMIT", "7"),
            ("SVC_KEY_FILE", "env.key"),
            ("ORION_NATS_URL", "nats://env:4222"),
        ]);
        let all: ServiceFile = load(Some(&base), &env).unwrap();
        assert_eq!((all.svc.limit, all.nats.replicas), (7, 3));
        assert_eq!(all.nats.url, "nats://env:4222");
        assert_eq!(all.svc.key_file, Some("env.key".into()));
        // No file: the defaults, then the environment; an empty variable counts as unset.
        let defaults: ServiceFile = load(None, &vars(&[("ORION_NATS_URL", "")])).unwrap();
        assert_eq!(defaults.nats, NatsSection::default());
        // Refusals name what to fix.
        let bad = load::<ServiceFile>(Some(&base), &vars(&[("SVC_LIMIT", "many")])).unwrap_err();
        assert!(
            matches!(&bad, ConfigError::BadVariable { name, .. } if name == "SVC_LIMIT"),
            "{bad}"
        );
        assert!(bad.to_string().contains("many"), "{bad}");
        std::fs::write(dir.path().join("svc.ci.toml"), "[nats]\nreplicas = 0\n").unwrap();
        let replicas = load::<ServiceFile>(Some(&base), &vars(&[("ORION_ENV", "ci")])).unwrap_err();
        assert!(replicas.to_string().contains("nats.replicas"), "{replicas}");
        assert!(matches!(
            load::<ServiceFile>(Some(&base), &vars(&[("ORION_ENV", "staging")])),
            Err(ConfigError::UnknownEnvironment(_))
        ));
    }

    #[test]
    fn an_environment_reads_lists_and_treats_empty_as_unset() {
        let env = |name: &str| match name {
            "LIST" => Some(" a, b ,,c ".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let env: &dyn Environment = &env;
        assert_eq!(
            env.list("LIST"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(env.var("EMPTY"), None);
        assert_eq!(env.parsed::<u64>("MISSING").unwrap(), None);
    }

    #[test]
    fn overlays_merge_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("svc.toml");
        std::fs::write(&base, "a = 1\n[nested]\nx = \"base\"\ny = \"base\"\n").unwrap();
        std::fs::write(dir.path().join("svc.prod.toml"), "[nested]\ny = \"prod\"\n").unwrap();
        let prod: Sample = load_layered(Some(&base), "prod").unwrap();
        assert_eq!(
            prod,
            Sample {
                a: 1,
                nested: Nested {
                    x: "base".into(),
                    y: "prod".into()
                }
            }
        );
        let plain: Sample = load_layered(Some(&base), "dev").unwrap();
        assert_eq!(plain.nested.y, "base");
        assert!(matches!(
            load_layered::<Sample>(Some(&base), "staging"),
            Err(ConfigError::UnknownEnvironment(_))
        ));
        std::fs::write(&base, "b = 2\n").unwrap();
        let err = load_layered::<Sample>(Some(&base), "base")
            .unwrap_err()
            .to_string();
        assert!(err.contains("svc.toml") && err.contains('b'), "{err}");
    }
}
