//! What every service binary does the same way: layered configuration (a TOML file, an
//! environment overlay file, then environment variables), structured logs, and a shutdown
//! signal.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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
    #[error("configuration: {0}")]
    Invalid(String),
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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?} is not `text` or `json`")),
        }
    }
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default `info`): for services.
pub fn init_tracing(format: LogFormat) {
    init_tracing_at(format, "info");
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default `default_filter`): command-line
/// clients pass `warn`, so that their own output is not buried in connection logs.
pub fn init_tracing_at(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Creates `path` for a secret (a password, a key): readable by its owner only from the first
/// byte on (mode 0600 at creation, never widened and narrowed after), and never over an existing
/// file.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `text` to a new private file at `path` (see [`create_private_file`]), replacing a
/// file that was there.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = create_private_file(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
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
